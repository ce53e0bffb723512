"""remote/plankey.py and its scripts on stub nodes (dash and busybox, as root, in a temporary folder):
plankey.sh installs and removes the read-only plan key (the read script, the sudoers drop-in checked by the real
visudo, the authorized_keys line, owner and mode kept); the installed read script, run as sshd runs a forced
command, serves wgmesh's read and status and refuses everything else before printing a byte."""

from __future__ import annotations

import base64
import os
import shutil
import stat
import struct
import subprocess
from pathlib import Path

import pytest
from remote.stubs import Stubs

from wgmesh.remote import plankey
from wgmesh.remote.probe import parse_clock, status_script
from wgmesh.remote.read import ParseError, parse_read_output, read_command
from wgmesh.remote.shell import SYSTEM_PATH, sections

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="plankey.sh runs as root (chown, root-owned files)")



def _ed25519(seed: int, comment: str) -> str:
    blob = struct.pack(">I", 11) + b"ssh-ed25519" + struct.pack(">I", 32) + bytes([seed]) * 32
    return f"ssh-ed25519 {base64.b64encode(blob).decode()} {comment}"


PLAN = _ed25519(1, "wgmesh-plan")
ADMIN = _ed25519(2, "admin@laptop")


def _key(line: str) -> plankey.PublicKey:
    kind, data, *_ = line.split()
    return plankey.PublicKey(kind, data)


class Node:
    """A stub node whose WireGuard folder, sudoers.d and the login user's home are under `root`."""

    def __init__(self, stubs: Stubs) -> None:
        self.stubs = stubs
        self.key_dir = stubs.root / "etc-wireguard"
        self.key_dir.mkdir(mode=0o700)
        self.sudoers_d = stubs.root / "sudoers.d"
        self.sudoers_d.mkdir(mode=0o755)
        self.ssh_dir = stubs.root / "home" / ".ssh"
        self.ssh_dir.mkdir(parents=True, mode=0o700)
        self.keys = self.ssh_dir / "authorized_keys"
        self.keys.write_text(ADMIN + "\n")
        self.keys.chmod(0o600)
        stubs.host("chown", "getent")

    @property
    def script_file(self) -> Path:
        return self.key_dir / "wgmesh-read-wg0.sh"

    @property
    def sudoers(self) -> Path:
        return self.sudoers_d / "wgmesh-plan-wg0"

    @property
    def legacy_sudoers(self) -> Path:
        return self.sudoers_d / "wgmesh-plan"

    def plankey(self, action: str, user: str | None = None, key: str = PLAN, hosts: tuple[str, ...] = (),  # type: ignore[no-untyped-def]
                interface: str = "wg0"):
        text = plankey.plankey_script(interface, action, key=_key(key) if action == "install" else None,
                                      authorized_keys=str(self.keys), hosts=hosts, key_dir=str(self.key_dir))
        text = text.replace(f"\nSUDOERS={plankey.sudoers_path(interface)}\n",
                            f"\nSUDOERS={self.sudoers_d / plankey.sudoers_path(interface).rsplit('/', 1)[1]}\n")
        text = text.replace(f"\nLEGACY_SUDOERS={plankey.LEGACY_SUDOERS}\n", f"\nLEGACY_SUDOERS={self.legacy_sudoers}\n")
        return self.stubs.run(text, env={"SUDO_USER": user} if user else {})

    def forced(self, data: str, original: str | None = "/bin/sh -s") -> subprocess.CompletedProcess[str]:
        """The installed script as sshd runs a forced command: stdin is what the client sent."""
        local = self.stubs.root / "read-local.sh"  # lib.sh's system folders become the stub node's, as in run()
        local.write_text(self.script_file.read_text().replace(SYSTEM_PATH, str(self.stubs.base)))
        env = {"PATH": f"{self.stubs.bin}:{self.stubs.base}", "HOME": str(self.stubs.root), "LANG": "C.UTF-8"}
        if original is not None:
            env["SSH_ORIGINAL_COMMAND"] = original
        argv = [*self.stubs.argv[:-1], str(local)]  # `busybox sh FILE` or `/bin/sh FILE`
        return subprocess.run(argv, input=data, text=True, capture_output=True, env=env, timeout=30, check=False,
                              start_new_session=True)  # its own session, as sshd runs it


@pytest.fixture
def box(node: Stubs) -> Node:
    return Node(node)


def _sent(script: str) -> str:
    """What wgmesh's transport writes on the command's stdin."""
    return "echo '@@wgmesh:ready'\n" + script


# ---------------------------------------------------------------------------------------------- install, remove


def test_install_for_root(box: Node) -> None:
    r = box.plankey("install")
    assert r.exit_status == 0, r.stderr
    assert plankey.parse_plankey_output(r.stdout) == plankey.PlanKeyReport("installed", "root", "root", str(box.keys))
    st = box.script_file.stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, 0, 0o755)
    text = box.script_file.read_text()
    assert text.startswith("#!/bin/sh\n") and f"# wgmesh-read-version: {plankey.script_version()}\n" in text
    assert f"\n# authorized_keys: {box.keys}\n" in text
    kind, data, _ = PLAN.split()
    assert box.keys.read_text() == f'{ADMIN}\nrestrict,command="{box.script_file}" {kind} {data} wgmesh-plan-key\n'
    assert stat.S_IMODE(box.keys.stat().st_mode) == 0o600
    assert not box.sudoers.exists()
    assert not list(box.ssh_dir.glob(".*tmp*")) and not list(box.key_dir.glob("*tmp*"))


def test_install_twice_keeps_one_line_and_the_files_owner_and_mode(box: Node) -> None:
    os.chown(box.keys, 65534, 65534)
    box.keys.chmod(0o644)
    assert box.plankey("install").exit_status == 0
    assert box.plankey("install").exit_status == 0
    assert box.keys.read_text().count("wgmesh-plan-key") == 1 and box.keys.read_text().startswith(ADMIN)
    st = box.keys.stat()
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (65534, 0o644)


@pytest.mark.skipif(shutil.which("visudo") is None, reason="needs visudo (sudo)")
def test_install_for_a_sudo_user_writes_a_sudoers_file_visudo_accepts(box: Node) -> None:
    box.stubs.host("visudo")
    box.stubs.stub("sudo", "exit 0\n")
    r = box.plankey("install", user="nobody")
    assert r.exit_status == 0, r.stderr
    assert plankey.parse_plankey_output(r.stdout).via == "sudo"
    assert f'restrict,command="sudo -n {box.script_file}" ' in box.keys.read_text()
    st = box.sudoers.stat()
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (0, 0o440)
    lines = box.sudoers.read_text().splitlines()
    assert lines[0].startswith("# wgmesh plan-key: the read-only plan key of nobody")
    assert lines[1] == f'Defaults!{box.script_file} !requiretty, env_keep += "SSH_ORIGINAL_COMMAND"'
    assert lines[2] == f'nobody ALL=(root) NOPASSWD: {box.script_file} ""'  # that script, without arguments
    assert subprocess.run(["visudo", "-cf", str(box.sudoers)], capture_output=True).returncode == 0
    assert not list(box.sudoers_d.glob("*.*"))  # no temporary file left where sudo looks
    # back to a root login: the drop-in is not needed any more
    assert box.plankey("install").exit_status == 0 and not box.sudoers.exists()


def test_a_key_with_full_access_is_refused_and_nothing_changes(box: Node) -> None:
    before = box.keys.read_text()
    r = box.plankey("install", key=ADMIN)
    assert r.exit_status == plankey.REFUSED_EXIT
    assert "already logs in as root without restriction" in r.stderr and "a key of its own" in r.stderr
    assert box.keys.read_text() == before and not box.script_file.exists()


def test_a_folder_others_may_write_is_refused(box: Node) -> None:
    box.key_dir.chmod(0o777)
    r = box.plankey("install")
    assert r.exit_status == plankey.REFUSED_EXIT and "must be root's and writable by root only" in r.stderr
    assert not box.script_file.exists() and "wgmesh-plan-key" not in box.keys.read_text()


@pytest.mark.parametrize("folder", ["key_dir", "sudoers_d", "ssh_dir"])
def test_a_read_only_folder_is_named_before_anything_is_installed(box: Node, folder: str) -> None:
    """Review F: with /etc read-only (sudoers.d) but /etc/wireguard writable, the read script was installed, then
    the sudoers file failed with the shell's own message; plan then reported the plan key as incomplete."""
    box.stubs.host("visudo")
    box.stubs.stub("sudo", "exit 0\n")
    read_only = getattr(box, folder)
    box.stubs.make_read_only(read_only)
    before = box.keys.read_text()
    r = box.plankey("install", user="nobody")
    assert r.exit_status == plankey.REFUSED_EXIT, r.stderr
    assert r.stderr.strip().endswith(f"{read_only} is not writable (a read-only file system?): the plan key needs "
                                     "it; nothing was installed")
    assert not box.script_file.exists() and not box.sudoers.exists() and box.keys.read_text() == before


def test_remove_takes_everything_away_and_keeps_the_rest(box: Node) -> None:
    box.stubs.stub("sudo", "exit 0\n")
    box.stubs.host("visudo")
    assert box.plankey("install", user="nobody").exit_status == 0
    other = box.sudoers_d / "wgmesh-lab9"
    other.write_text("# someone else's\n")
    r = box.plankey("remove", user="nobody")
    assert r.exit_status == 0, r.stderr
    assert plankey.parse_plankey_output(r.stdout).action == "removed"
    assert box.keys.read_text() == ADMIN + "\n"
    assert not box.script_file.exists() and not box.sudoers.exists() and other.exists()
    assert box.plankey("remove").exit_status == 0  # again: nothing to do, no error


def test_each_interface_has_its_own_plan_key_and_sudoers_file(box: Node) -> None:
    """Two meshes on one node (wg0, wg1): installing or removing one's plan key leaves the other's line and
    sudoers file; one key cannot be both (sshd runs the first line of a key)."""
    box.stubs.stub("sudo", "exit 0\n")
    box.stubs.host("visudo")
    other = _ed25519(3, "wgmesh-plan-wg1")
    assert box.plankey("install", user="nobody").exit_status == 0
    assert box.plankey("install", user="nobody", key=other, interface="wg1").exit_status == 0
    lines = box.keys.read_text().splitlines()
    assert len(lines) == 3 and "wgmesh-read-wg0.sh" in lines[1] and "wgmesh-read-wg1.sh" in lines[2]
    assert box.sudoers.exists() and (box.sudoers_d / "wgmesh-plan-wg1").exists()
    r = box.plankey("install", user="nobody", key=PLAN, interface="wg1")  # wg0's key for wg1 too
    assert r.exit_status == plankey.REFUSED_EXIT
    assert "this key is already the plan key of another interface's mesh on this node" in r.stderr
    assert box.keys.read_text().splitlines() == lines, "nothing changed"
    assert box.plankey("remove", user="nobody", interface="wg1").exit_status == 0
    assert box.keys.read_text().splitlines() == lines[:2] and box.sudoers.exists()
    assert not (box.sudoers_d / "wgmesh-plan-wg1").exists()


def test_the_one_sudoers_file_of_an_older_version_goes_with_its_interface(box: Node) -> None:
    box.stubs.stub("sudo", "exit 0\n")
    box.stubs.host("visudo")
    box.legacy_sudoers.write_text(f"# wgmesh plan-key: the read-only plan key of nobody\nnobody ALL=(root) NOPASSWD: "
                                  f'{box.script_file} ""\n')
    assert box.plankey("install", user="nobody", key=_ed25519(3, "x"), interface="wg1").exit_status == 0
    assert box.legacy_sudoers.exists(), "it allows wg0's script, not wg1's"
    assert box.plankey("install", user="nobody").exit_status == 0
    assert not box.legacy_sudoers.exists() and box.sudoers.exists()


def test_the_interface_names_a_sudoers_file_sudo_reads_and_no_other_interface_shares() -> None:
    assert plankey.sudoers_path("wg0") == "/etc/sudoers.d/wgmesh-plan-wg0"
    assert plankey.sudoers_path("wg.mesh+1") == "/etc/sudoers.d/wgmesh-plan-wg_2emesh_2b1"  # no '.': sudo skips those
    names = ["wg.5", "wg_5", "wg+5", "wg=5", "wg-5", "wg_2e5", "wg_5f5"]
    paths = [plankey.sudoers_path(n) for n in names]
    assert len(set(paths)) == len(names), paths
    assert all("." not in p.rsplit("/", 1)[1] and not p.endswith("~") for p in paths)


def test_the_older_sudoers_file_goes_also_when_its_path_was_escaped(box: Node) -> None:
    r"""sudoers has `\=` for an `=` in a path: the older file written for wg=5's script is found all the same."""
    box.stubs.stub("sudo", "exit 0\n")
    box.stubs.host("visudo")
    escaped = str(box.key_dir / "wgmesh-read-wg\\=5.sh")
    box.legacy_sudoers.write_text(f"# wgmesh plan-key: the read-only plan key of nobody\nnobody ALL=(root) NOPASSWD: "
                                  f'{escaped} ""\n')
    assert box.plankey("remove", user="nobody", interface="wg=5").exit_status == 0
    assert not box.legacy_sudoers.exists()


# ---------------------------------------------------------------------------------------------- the forced command


def test_the_installed_script_serves_the_read_as_plan_parses_it(box: Node) -> None:
    assert box.plankey("install", hosts=("a.example",)).exit_status == 0
    got = box.forced(_sent(read_command("wg0", ["a.example"], key_dir=str(box.key_dir))))
    assert got.returncode == 0, got.stderr
    assert got.stdout.startswith(f"@@wgmesh:ready\n@@wgmesh:served {plankey.script_version()} wg0\n")
    state = parse_read_output("wg0", got.stdout.split("@@wgmesh:ready\n", 1)[1])
    assert state.plan_key == "installed" and not state.interface_exists
    assert "a.example" in state.resolved  # the names baked in at install time are resolved


def test_the_same_read_through_the_admin_path_reports_the_key(box: Node) -> None:
    """read.sh itself (the admin key's read) finds the script and the line."""
    assert box.plankey("install").exit_status == 0
    r = box.stubs.run(read_command("wg0", [], key_dir=str(box.key_dir)))
    assert parse_read_output("wg0", r.stdout).plan_key == "installed"
    box.keys.write_text(ADMIN + "\n")
    r = box.stubs.run(read_command("wg0", [], key_dir=str(box.key_dir)))
    assert parse_read_output("wg0", r.stdout).plan_key == "incomplete"


def test_status_gets_the_clock_first(box: Node) -> None:
    assert box.plankey("install").exit_status == 0
    got = box.forced(_sent(status_script("wg0").replace("/etc/wireguard", str(box.key_dir))))
    assert got.returncode == 0, got.stderr
    assert parse_clock(got.stdout) is not None
    assert [s.name for s in sections(got.stdout)][:4] == ["ready", "served", "clock", "v1"]


@pytest.mark.parametrize(
    ("original", "data", "said"),
    [
        ("touch /tmp/x", "", "does not run the command asked for"),
        (None, "", "opens no shell and no session"),
        ("/bin/sh -s", _sent("# wgmesh apply.sh\ntouch /tmp/x\n"), "cannot run apply.sh"),
        ("/bin/sh -s", _sent("# wgmesh enroll.sh\n"), "cannot run enroll.sh"),
        ("sudo -n /bin/sh -s", "touch /tmp/x\n", "cannot run that script"),
        ("/bin/sh -s", _sent("# wgmesh $(reboot).sh\n"), "cannot run that script"),
    ],
)
def test_anything_else_is_refused_before_a_byte_is_printed(box: Node, original: str | None, data: str,
                                                           said: str) -> None:
    assert box.plankey("install").exit_status == 0
    marker = box.stubs.root / "x"
    got = box.forced(data.replace("/tmp/x", str(marker)), original)
    assert got.returncode == 1
    assert got.stdout == ""
    assert said in got.stderr and got.stderr.startswith("wgmesh read-only plan key: ")
    assert not marker.exists()


def test_output_of_a_script_from_another_version_is_refused() -> None:
    out = "@@wgmesh:served 0123456789abcdef\n@@wgmesh:v1\n@@wgmesh:end\n"
    with pytest.raises(ParseError, match=r"from another wgmesh version .* run `wgmesh plan-key KEY.pub` again"):
        parse_read_output("wg0", out)


def test_output_of_another_interfaces_plan_key_is_refused() -> None:
    out = f"@@wgmesh:served {plankey.script_version()} wg1\n@@wgmesh:v1\n@@wgmesh:end\n"
    with pytest.raises(ParseError, match=r"is the plan key of interface wg1 on this node, not of wg0: each mesh on a "
                                         r"node needs a plan key of its own"):
        parse_read_output("wg0", out)


# ---------------------------------------------------------------------------------------------- pure parts


@pytest.mark.parametrize(
    ("body", "state"),
    [
        (None, None),
        ("script none", "absent"),
        (f"script {plankey.script_version()}\nkey", "installed"),
        ("script 0123456789abcdef\nkey", "outdated"),
        (f"script {plankey.script_version()}", "incomplete"),
        ("script none\nkey", "incomplete"),
    ],
)
def test_plan_key_state(body: str | None, state: str | None) -> None:
    assert plankey.plan_key_state(body) == state


def test_parse_public_key() -> None:
    k = plankey.parse_public_key(f"# made for CI\n{PLAN}\n")
    assert (k.type, k.comment) == ("ssh-ed25519", "wgmesh-plan") and k.fingerprint.startswith("SHA256:")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "no public key in the file"),
        (f"{PLAN}\n{ADMIN}\n", "more than one line"),
        ("-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n-----END OPENSSH PRIVATE KEY-----\n", "this is a private key"),
        (f'command="sh" {PLAN}', "not an OpenSSH public key"),
        ("ssh-ed25519 not-base64!", "not valid base64"),
        (PLAN.replace("ssh-ed25519", "ssh-rsa", 1), "is a 'ssh-ed25519' key"),
    ],
)
def test_bad_public_keys(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        plankey.parse_public_key(text)
