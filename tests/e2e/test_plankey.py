"""The read-only plan key on lab hosts (issue 15's "Done when"): `wgmesh plan-key` installed with the admin key;
`WGMESH_SSH_IDENTITY=<plan key> wgmesh plan` gives the same plan as the admin key; with the plan key, apply,
enroll and a plain `ssh node 'touch ...'` fail and change nothing; `--remove` takes it away.

Cloud-like hosts (a sudo user: the forced command goes through `sudo -n` and the sudoers drop-in) and root-login
hosts (the forced command is the script itself). /etc/sudoers.d is the machine's (not namespaced): the drop-in
is removed at the end, whatever happened.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from e2e import labkit as labmod
from wgmesh.lab import Lab
from wgmesh.remote import plankey

pytestmark = pytest.mark.e2e

WgmeshRunner = Callable[..., "subprocess.CompletedProcess[str]"]
SCRIPT = "/etc/wireguard/wgmesh-read-wg0.sh"
NOTE = "read-only plan key: installed"


def _keygen(directory: Path, name: str = "plan_key") -> Path:
    key = directory / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "ci-plan", "-f", str(key)], check=True)
    return key


def _drop_sudoers(lab: Lab) -> None:
    """The machine-wide drop-in, if it is ours and names this lab's user (a failed test must not leave it)."""
    path = Path(plankey.sudoers_path("wg0"))
    with contextlib.suppress(OSError):
        if path.read_text().startswith(f"# wgmesh plan-key: the read-only plan key of {lab.ssh_user} "):
            path.unlink()


@contextlib.contextmanager
def _plan_key(lab: Lab, run_wgmesh: WgmeshRunner) -> Iterator[Path]:
    key = _keygen(lab.dir)
    try:
        r = run_wgmesh(lab.dir, "plan-key", str(key.with_suffix(".pub")))
        assert r.returncode == 0, r.stdout + r.stderr
        yield key
    finally:
        run_wgmesh(lab.dir, "plan-key", "--remove", str(key.with_suffix(".pub")))
        _drop_sudoers(lab)


def _as_plan_key(key: Path) -> dict[str, str]:
    return {"WGMESH_SSH_IDENTITY": str(key)}


def _plain_ssh(lab: Lab, node: str, key: Path, command: str) -> subprocess.CompletedProcess[str]:
    argv = labmod.ssh_argv(lab, node, command)
    argv[argv.index(str(lab.identity_file))] = str(key)
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


def _converge(lab: Lab, run_wgmesh: WgmeshRunner) -> None:
    r = run_wgmesh(lab.dir, "apply", "--auto-approve", timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr


def _edit(lab: Lab, old: str, new: str) -> str:
    text = lab.mesh_path.read_text()
    assert old in text
    lab.mesh_path.write_text(text.replace(old, new, 1))
    return text


@pytest.fixture(scope="module")
def cloud(lab: Callable[..., Lab], run_wgmesh: WgmeshRunner) -> Lab:
    made = lab()  # aws, azure, gcp, aliyun (NAT); login wgmlabID with sudo, root refused
    _converge(made, run_wgmesh)
    return made


def test_plan_key_on_cloud_like_hosts(cloud: Lab, run_wgmesh: WgmeshRunner) -> None:
    lab = cloud
    with _plan_key(lab, run_wgmesh) as key:
        # installed: the script (root's, 0755), the drop-in, the line in the sudo user's authorized_keys
        for h in lab.hosts:
            st = labmod.host_exec(lab.dir, h.name, ["stat", "-c", "%u %a", SCRIPT])
            assert st.stdout.split() == ["0", "755"], st.stderr
            keys = labmod.host_exec(lab.dir, h.name, ["cat", str(lab.home / ".ssh" / "authorized_keys")]).stdout
            assert f'restrict,command="sudo -n {SCRIPT}" ssh-ed25519 ' in keys and keys.count("wgmesh-plan-key") == 1
        drop_in = Path(plankey.sudoers_path("wg0")).read_text()
        assert f'{lab.ssh_user} ALL=(root) NOPASSWD: {SCRIPT} ""' in drop_in
        assert subprocess.run(["visudo", "-cf", plankey.sudoers_path("wg0")], capture_output=True).returncode == 0

        # the admin plan shows it on every node; the plan key's plan is the same, word for word
        admin = run_wgmesh(lab.dir, "plan", "--detailed-exitcode")
        assert admin.returncode == 0, admin.stdout + admin.stderr
        assert admin.stdout.count(NOTE) == len(lab.hosts) and "No changes." in admin.stdout
        ro = run_wgmesh(lab.dir, "plan", "--detailed-exitcode", env=_as_plan_key(key))
        assert (ro.returncode, ro.stdout) == (admin.returncode, admin.stdout), ro.stderr

        # a change to review: the same plan (and the same JSON) with either key
        original = _edit(lab, "persistent_keepalive: 25", "persistent_keepalive: 21")
        try:
            admin = run_wgmesh(lab.dir, "plan", "--detailed-exitcode")
            ro = run_wgmesh(lab.dir, "plan", "--detailed-exitcode", env=_as_plan_key(key))
            assert admin.returncode == 2 and "Plan: 0 to add" in admin.stdout, admin.stdout + admin.stderr
            assert (ro.returncode, ro.stdout) == (admin.returncode, admin.stdout), ro.stderr
            admin_json = json.loads(run_wgmesh(lab.dir, "plan", "--json").stdout)
            ro_json = json.loads(run_wgmesh(lab.dir, "plan", "--json", env=_as_plan_key(key)).stdout)
            assert ro_json == admin_json

            # with the plan key, apply fails on every node and changes nothing
            r = run_wgmesh(lab.dir, "apply", "--auto-approve", env=_as_plan_key(key), timeout=300)
            out = r.stdout + r.stderr
            assert r.returncode == 1, out
            assert "Traceback" not in out and "read-only plan key" in out
            after = run_wgmesh(lab.dir, "plan", "--detailed-exitcode")
            assert (after.returncode, after.stdout) == (admin.returncode, admin.stdout)
        finally:
            lab.mesh_path.write_text(original)

        # enroll and rotate: refused, mesh.yaml untouched
        before = lab.mesh_path.read_text()
        for command in (["enroll", "--all"], ["rotate", "aws"]):
            r = run_wgmesh(lab.dir, *command, env=_as_plan_key(key))
            assert r.returncode == 1 and "read-only plan key" in r.stdout + r.stderr, r.stdout + r.stderr
        assert lab.mesh_path.read_text() == before

        # status and the live picture work with it (the same read, and the clock)
        r = run_wgmesh(lab.dir, "status", env=_as_plan_key(key))
        assert r.returncode == 0, r.stdout + r.stderr
        r = run_wgmesh(lab.dir, "graph", "--live", env=_as_plan_key(key))
        assert r.returncode == 0 and r.stdout.startswith("flowchart LR") and "direct" in r.stdout, r.stderr

        # a plain ssh with the key runs nothing it asks for
        marker = f"/tmp/wgmesh-plankey-{uuid.uuid4().hex}"
        for command in (f"touch {marker}", f"sudo touch {marker}", f"/bin/sh -c 'touch {marker}'"):
            r = _plain_ssh(lab, "aws", key, command)
            assert r.returncode != 0 and r.stdout == "", (command, r.stdout, r.stderr)
            assert "wgmesh read-only plan key" in r.stderr
        r = _plain_ssh(lab, "aws", key, "/bin/sh -s")  # wgmesh's own command line, but no wgmesh script
        assert r.returncode != 0 and r.stdout == ""
        assert not Path(marker).exists()
        assert labmod.host_exec(lab.dir, "aws", ["test", "-e", marker]).returncode != 0

    # removed: the key no longer logs in, nothing of it is left, the admin plan has no note
    ro = run_wgmesh(lab.dir, "plan", env=_as_plan_key(key))
    assert ro.returncode == 1 and "authentication failed" in ro.stdout + ro.stderr
    for h in lab.hosts:
        assert labmod.host_exec(lab.dir, h.name, ["test", "-e", SCRIPT]).returncode != 0
        keys = labmod.host_exec(lab.dir, h.name, ["cat", str(lab.home / ".ssh" / "authorized_keys")]).stdout
        assert "wgmesh-plan-key" not in keys and keys.strip()  # the admin key's line stays
    assert not Path(plankey.sudoers_path("wg0")).exists()
    admin = run_wgmesh(lab.dir, "plan", "--detailed-exitcode")
    assert admin.returncode == 0 and "plan key" not in admin.stdout, admin.stdout + admin.stderr


def test_plan_key_on_root_login_hosts(lab: Callable[..., Lab], run_wgmesh: WgmeshRunner) -> None:
    made = lab(names=("one", "two"), nat=(), root_login=True)
    _converge(made, run_wgmesh)
    with _plan_key(made, run_wgmesh) as key:
        keys = labmod.host_exec(made.dir, "one", ["cat", "/root/.ssh/authorized_keys"]).stdout
        assert f'restrict,command="{SCRIPT}" ssh-ed25519 ' in keys
        drop_in = Path(plankey.sudoers_path("wg0"))
        assert not drop_in.exists() or made.ssh_user not in drop_in.read_text()
        admin = run_wgmesh(made.dir, "plan", "--detailed-exitcode")
        ro = run_wgmesh(made.dir, "plan", "--detailed-exitcode", env=_as_plan_key(key))
        assert admin.returncode == 0 and admin.stdout.count(NOTE) == 2, admin.stdout + admin.stderr
        assert (ro.returncode, ro.stdout) == (admin.returncode, admin.stdout), ro.stderr
        marker = f"/tmp/wgmesh-plankey-{uuid.uuid4().hex}"
        r = _plain_ssh(made, "one", key, f"touch {marker}")
        assert r.returncode != 0 and not Path(marker).exists()
        r = run_wgmesh(made.dir, "apply", "--auto-approve", env=_as_plan_key(key))
        assert r.returncode in (0, 1) and "Traceback" not in r.stdout + r.stderr  # nothing to change: no script
    assert run_wgmesh(made.dir, "plan", env=_as_plan_key(key)).returncode == 1
