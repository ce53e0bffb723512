"""Fixtures for end-to-end tests against `wgmesh lab` hosts (root, Linux).

- `lab`: a factory, `lab(nodes=None, names=(), nat=None, keys=True, dns=(), root_login=False) -> wgmesh.lab.Lab`,
  that brings a fresh lab up in a new temporary folder with a free lab id (10..50) and takes every lab it made
  down at the end of the module, whatever happened. The returned `Lab` has `.dir` (the mesh repo: mesh.yaml,
  known_hosts, id_ed25519), `.hosts` (`.name`, `.ip`, `.address`, `.subnet`, `.netns`, `.machine_netns`,
  `.machine_ip`), `.host(name)`, `.ssh_user`. By default the hosts are cloud-like (root refused with
  cloud-init's banner, a sudo user in mesh.yaml's ssh.user, forwarding off); `root_login=True` gives hosts
  that take root (a few tests keep them). Behind each host's subnet is a machine (`.machine_ip`, the subnet's
  .10, default route via the host), the subnet's `probe` in mesh.yaml.
  `labkit` (`from e2e import labkit as labmod`) has `host_exec(lab.dir, node, argv)` to act inside a host,
  `machine_exec`/`machine_ping` for the machine behind it, `reboot(lab.dir, node)` (`wgmesh lab reboot`),
  `bind_in_host` to change a file for one host's logins, `ssh_argv` for plain OpenSSH,
  `stop_sshd`/`start_sshd`, and re-exports wgmesh.lab.
- `lab4`: one default 4-node lab (aws, azure, gcp; aliyun behind a cone NAT router) shared by the module.
  `nat=["gcp", "tencent:symmetric"]` puts hosts behind NAT routers of their own (cone unless `:symmetric`).
- `run_wgmesh`: `run_wgmesh(cwd, *args, input=None, env=None, timeout=120, check=False)` runs the real
  `wgmesh` command (`python -m wgmesh`) in `cwd` and returns the CompletedProcess (text).

Every e2e test is skipped, with the reason, when not root, not Linux or a package is missing.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import pytest

from e2e import labkit as labmod

FIRST_ID, LAST_ID = 10, labmod.MAX_ID

LabFactory = Callable[..., labmod.Lab]
WgmeshRunner = Callable[..., "subprocess.CompletedProcess[str]"]


def _skip_reason() -> str | None:
    if sys.platform != "linux":
        return "end-to-end tests need Linux (network namespaces)"
    if os.geteuid() != 0:
        return "end-to-end tests need root (network namespaces, mounts)"
    missing = labmod.missing_packages()
    if missing:
        return f"missing packages {', '.join(missing)}: {labmod.INSTALL_LINE}"
    return None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    reason = _skip_reason()
    for item in items:
        if "e2e" in item.nodeid.split("::")[0].split("/"):
            item.add_marker(pytest.mark.e2e)
            if reason:
                item.add_marker(pytest.mark.skip(reason=reason))


def _reclaim_orphans() -> None:
    """Take down test labs whose folder is gone (a killed run's, after pytest removed its tmp dirs)."""
    for lab_id in range(FIRST_ID, LAST_ID + 1):
        owner = labmod.runtime_owner(lab_id)
        if owner is not None and not owner.exists():
            labmod.down_id(lab_id)


def _candidate_ids() -> list[int]:
    """Free-looking ids, starting at a place that depends on the PID (parallel runs rarely collide)."""
    _reclaim_orphans()
    ids = list(range(FIRST_ID, LAST_ID + 1))
    start = os.getpid() % len(ids)
    return [i for i in ids[start:] + ids[:start] if not labmod.lab_in_use(i)]


def free_lab_id() -> int:
    ids = _candidate_ids()
    if not ids:
        pytest.fail(f"no free lab id in {FIRST_ID}..{LAST_ID} (see `ip link show type bridge`)")
    return ids[0]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabFactory]:
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    made: list[Path] = []

    def make(
        nodes: int | None = None,
        names: Sequence[str] = (),
        nat: Sequence[str] | None = None,
        keys: bool = True,
        dns: Sequence[str] = (),
        root_login: bool = False,  # cloud-like hosts by default: wgmesh runs node commands through sudo -n
    ) -> labmod.Lab:
        directory = tmp_path_factory.mktemp("lab")
        made.append(directory)
        for lab_id in _candidate_ids():
            spec = labmod.make_lab(lab_id, directory, nodes, names, nat, keys, dns, root_login=root_login)
            try:
                return labmod.up(spec)
            except labmod.LabInUse:  # another run claimed it since we looked
                continue
        pytest.fail(f"no free lab id in {FIRST_ID}..{LAST_ID}")

    try:
        yield make
    finally:
        errors = []
        for directory in made:
            try:
                labmod.down(directory)
            except Exception as e:
                errors.append(f"{directory}: {e}")
        if errors:
            pytest.fail("lab down failed: " + "; ".join(errors))


@pytest.fixture(scope="module")
def lab4(lab: LabFactory) -> labmod.Lab:
    return lab()


@pytest.fixture(scope="session")
def run_wgmesh() -> WgmeshRunner:
    def run(
        cwd: Path,
        *args: str,
        input: str | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float = 120,
        check: bool = False,
    ) -> subprocess.CompletedProcess[str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith("WGMESH_")}
        full_env = base | {"NO_COLOR": "1", "COLUMNS": "200", "PYTHONUNBUFFERED": "1"} | dict(env or {})
        result = subprocess.run(
            [sys.executable, "-m", "wgmesh", *args],
            cwd=cwd,
            input=input,
            capture_output=True,
            text=True,
            env=full_env,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"wgmesh {' '.join(args)} exited {result.returncode}\n"
                f"--- stdout\n{result.stdout}--- stderr\n{result.stderr}"
            )
        return result

    return run
