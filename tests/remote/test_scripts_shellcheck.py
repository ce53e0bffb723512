"""Every node script passes `shellcheck -s sh`: each file in wgmesh/remote/scripts alone, and each script as it
is sent (values, lib.sh, the body), so that what lib.sh defines and what a script uses are checked together.

shellcheck is installed by scripts/bootstrap.sh; without it the test fails in CI (CI set) and is skipped here.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from importlib import resources

import pytest

from wgmesh.core.checks import Target
from wgmesh.remote import adopt, keys, probe, read, shell

SCRIPTS = sorted(p.name for p in resources.files("wgmesh.remote").joinpath("scripts").iterdir()
                 if p.name.endswith(".sh"))


def shellcheck() -> str:
    path = shutil.which("shellcheck")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("shellcheck is not installed (scripts/bootstrap.sh installs it)")
        pytest.skip("shellcheck is not installed (scripts/bootstrap.sh installs it); CI fails without it")
    return path


def check(text: str, name: str, *exclude: str) -> None:
    argv = [shellcheck(), "-s", "sh", *(["-e", ",".join(exclude)] if exclude else []), "-"]
    r = subprocess.run(argv, input=text, text=True, capture_output=True, check=False)
    assert r.returncode == 0, f"{name}:\n{r.stdout}{r.stderr}"


def test_the_scripts_are_there() -> None:
    assert {"lib.sh", "read.sh", "probe.sh", "status.sh", "enroll.sh", "rotate.sh", "import.sh",
            "adopt.sh"} <= set(SCRIPTS)


@pytest.mark.parametrize("name", SCRIPTS)
def test_each_file(name: str) -> None:
    check(resources.files("wgmesh.remote").joinpath("scripts", name).read_text(), name)


def _sent() -> dict[str, str]:
    import ipaddress

    key = "aj6Hv5ZOCpNOowMFVU7K9L53JCmRmhi5P9FMXuUkmiY="
    return {
        "read": read.read_command("wg0", ["a.example"]),
        "probe": probe.probe_script((Target("b", ipaddress.ip_address("10.0.0.2"), after_peer=True),)),
        "status": probe.status_script("wg0"),
        "enroll": keys.enroll_script("wg0"),
        "rotate": keys.rotate_script("wg0", key),
        "import": adopt.import_script("wg0"),
        "adopt": adopt.adopt_script("wg0", key, "[Interface]\nListenPort = 51820\n"),
    }


@pytest.mark.parametrize("name", sorted(_sent()))
def test_each_script_as_sent(name: str) -> None:
    text = _sent()[name]
    assert shell.script_name(text) == name
    # Not here: SC2034 (a value this script does not use: node_paths gives every path) and SC2317 (a lib.sh
    # function this script does not call). Each file alone is checked with everything on.
    check("#!/bin/sh\n" + text, name, "SC2034", "SC2317")
