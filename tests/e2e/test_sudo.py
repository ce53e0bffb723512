"""The one wrapper around every node command, against real OpenSSH on lab hosts: a login refused by a
forced command, sudo that wants a password, a command that never ends. Each is that node's error, with the
reason and the fix, within 15 s, while the other nodes are planned and converge.

Today's lab hosts log in as root and have no sudo, so one host is made hostile by its own sshd_config
(the lab's file, restored after each test):
- `ForceCommand` with cloud-init's line: what root's authorized_keys holds on AWS and Azure images;
- `SetEnv PATH=` a folder of the host's own with a `sudo` that answers as `sudo -n` does for a user without
  NOPASSWD (the node's mesh.yaml entry sets `sudo: true`), or a `wg` that never returns.
The same cases with a real sudo and a non-root user need the cloud-like lab (`wgmesh lab up` without
`--root-login`, issue 11).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from e2e import labkit as labmod

pytestmark = pytest.mark.e2e

LabFactory = Callable[..., labmod.Lab]
WgmeshRunner = Callable[..., "subprocess.CompletedProcess[str]"]

HOSTILE = "gcp"
CLOUD_INIT = 'echo \'Please login as the user "ubuntu" rather than the user "root".\';echo;sleep 10;exit 142'
SUDO_WANTS_PASSWORD = """#!/bin/sh
echo "sudo: a terminal is required to read the password; either use the -S option to read from standard \
input or configure an askpass helper" >&2
echo "sudo: a password is required" >&2
exit 1
"""
SBIN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@pytest.fixture(scope="module")
def trio(lab: LabFactory) -> labmod.Lab:
    return lab(names=("aws", "azure", HOSTILE), nat=())


@contextlib.contextmanager
def _sshd_with(lab: labmod.Lab, node: str, *lines: str) -> Iterator[Path]:
    """The host's sshd restarted with `lines` added to its sshd_config; yields a folder of the host's own."""
    spec = labmod.load(lab.dir)
    hd = spec.host_dir(spec.host(node))
    config = hd / "sshd_config"
    original = config.read_text()
    tools = hd / "test-bin"
    tools.mkdir(exist_ok=True)
    labmod.stop_sshd(lab.dir, node)
    try:
        config.write_text(original + "\n".join(lines) + "\n")
        labmod.start_sshd(lab.dir, node)
        yield tools
    finally:
        labmod.stop_sshd(lab.dir, node)
        config.write_text(original)
        labmod.start_sshd(lab.dir, node)
        for pidfile in tools.glob("*.pid"):  # what a test's tools left running on the host, by PID
            with contextlib.suppress(ValueError, ProcessLookupError):
                os.kill(int(pidfile.read_text()), signal.SIGKILL)
            pidfile.unlink()


@contextlib.contextmanager
def _mesh_edit(lab: labmod.Lab, old: str, new: str) -> Iterator[None]:
    mesh = lab.dir / "mesh.yaml"
    original = mesh.read_text()
    assert old in original
    mesh.write_text(original.replace(old, new))
    try:
        yield
    finally:
        mesh.write_text(original)


def _timed(run_wgmesh: WgmeshRunner, lab: labmod.Lab, *args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    r = run_wgmesh(lab.dir, *args, timeout=90)
    return r, time.monotonic() - started


def _others_converged(lab: labmod.Lab, run_wgmesh: WgmeshRunner) -> None:
    r = run_wgmesh(lab.dir, "plan", "--target", "aws", "--target", "azure", "--detailed-exitcode")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "No changes." in r.stdout


def test_a_login_refused_by_a_forced_command_is_named_with_its_banner(
    trio: labmod.Lab, run_wgmesh: WgmeshRunner
) -> None:
    with _sshd_with(trio, HOSTILE, f"ForceCommand {CLOUD_INIT}"):
        r, took = _timed(run_wgmesh, trio, "apply", "--auto-approve")
    out = r.stdout + r.stderr
    assert r.returncode == 1, out
    assert took < 15, (took, out)  # the forced command sleeps 10 s after its banner: not waited for
    assert "Traceback" not in out
    line = next(ln for ln in out.splitlines() if "Please login as" in ln)
    assert HOSTILE in line
    assert "the login as root" in line and 'the user "ubuntu" rather than the user "root".' in line
    assert "set ssh.user: ubuntu" in line
    _others_converged(trio, run_wgmesh)


def test_sudo_that_wants_a_password_is_named_with_the_fix(trio: labmod.Lab, run_wgmesh: WgmeshRunner) -> None:
    host = trio.host(HOSTILE)
    with (
        _mesh_edit(trio, f"ssh: {{host: {host.ip}}}", f"ssh: {{host: {host.ip}, sudo: true}}"),
        _sshd_with(trio, HOSTILE, f"SetEnv PATH={_tools(trio)}:{SBIN_PATH}") as tools,
    ):
        (tools / "sudo").write_text(SUDO_WANTS_PASSWORD)
        (tools / "sudo").chmod(0o755)
        r, took = _timed(run_wgmesh, trio, "apply", "--auto-approve")
    out = r.stdout + r.stderr
    assert r.returncode == 1, out
    assert took < 15, (took, out)
    assert (
        f"sudo on {HOSTILE} wants a password for root: give root passwordless sudo (a sudoers line "
        '"root ALL=(ALL) NOPASSWD: ALL") or set ssh.sudo: false if root already has the rights'
    ) in out
    assert "Traceback" not in out
    _others_converged(trio, run_wgmesh)


def test_a_command_that_never_ends_is_stopped_at_the_deadline(trio: labmod.Lab, run_wgmesh: WgmeshRunner) -> None:
    with _sshd_with(trio, HOSTILE, f"SetEnv PATH={_tools(trio)}:{SBIN_PATH}") as tools:
        hung = tools / "wg"
        hung.write_text(f"#!/bin/sh\necho $$ > {tools}/wg.pid\nexec sleep 600\n")
        hung.chmod(0o755)
        r, took = _timed(run_wgmesh, trio, "plan", "--json", "--command-timeout", "4")
    assert r.returncode == 1, r.stdout + r.stderr
    assert took < 12, (took, r.stderr)
    errors = {n["node"]: n["error"] for n in json.loads(r.stdout)["nodes"]}
    assert errors == {"aws": None, "azure": None, HOSTILE: "no answer within 4s (--command-timeout)"}
    assert "Traceback" not in r.stderr


def _tools(lab: labmod.Lab) -> Path:
    spec = labmod.load(lab.dir)
    return spec.host_dir(spec.host(HOSTILE)) / "test-bin"
