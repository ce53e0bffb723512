"""remote/keys.py: scripts/enroll.sh and scripts/rotate.sh run for real (the host's wg, on temporary folders)
on stub nodes under dash and busybox, and the parser of their key reports."""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import time
from pathlib import Path

import pytest
from meshes import pubkey
from remote.stubs import Stubs

from wgmesh.remote import keys
from wgmesh.remote.keys import KeyReport, enroll_script, parse_key_output, rotate_script
from wgmesh.remote.shell import MARK
from wgmesh.remote.transport import CommandResult


def public_of(path: Path) -> str:
    r = subprocess.run(["wg", "pubkey"], stdin=path.open("rb"), capture_output=True, check=True)
    return r.stdout.decode().strip()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def wg_node(node: Stubs) -> Stubs:
    node.host("wg")
    return node


def enroll(node: Stubs, kd: Path) -> CommandResult:
    return node.run(enroll_script("wg0", key_dir=str(kd)))


# ------------------------------------------------------------------------------------------ enroll


def test_enroll_creates_a_key_with_mode_600_and_prints_only_its_public_key(wg_node: Stubs, tmp_path: Path) -> None:
    kd = tmp_path / "wg"
    r = enroll(wg_node, kd)
    assert r.exit_status == 0, r.stderr
    key = kd / "wg0.key"
    assert parse_key_output(r.stdout) == KeyReport("created", public_of(key), "600")
    assert mode(key) == 0o600 and mode(kd) == 0o700
    assert key.read_text().strip() not in r.stdout + r.stderr
    assert sorted(os.listdir(kd)) == ["wg0.key"]


@pytest.mark.parametrize("script", ["enroll", "rotate"])
def test_a_killed_runs_new_key_is_removed_by_the_next_run(wg_node: Stubs, tmp_path: Path, script: str) -> None:
    """Review P: an enroll or rotate killed between `wg genkey` and the rename left its new private key in
    IF.key.wgmesh-tmp.PID for good (its EXIT trap cannot run on SIGKILL). The next enroll or rotate removes such a
    file once its PID runs no more; a running one's (here: this test's own PID) is left alone."""
    wg_node.host("flock")
    kd = tmp_path / "wg"
    old = parse_key_output(enroll(wg_node, kd).stdout).public_key
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale, live = kd / f"wg0.key.wgmesh-tmp.{dead.pid}", kd / f"wg0.key.wgmesh-tmp.{os.getpid()}"
    for leftover in (stale, live):
        leftover.write_text(f"{'B' * 42}E=\n")
        leftover.chmod(0o600)
    if script == "enroll":
        r = enroll(wg_node, kd)
    else:
        r = wg_node.run(rotate_script("wg0", old, key_dir=str(kd), run_dir=str(tmp_path / "run")))
    assert r.exit_status == 0, r.stderr
    assert sorted(os.listdir(kd)) == ["wg0.key", live.name]


def test_enroll_refuses_a_key_folder_another_user_may_write(wg_node: Stubs, tmp_path: Path) -> None:
    """Review F: a link planted at the temporary key name had the new private key written into the planter's
    file. No key is made where another user may write."""
    kd = tmp_path / "wg"
    kd.mkdir(mode=0o700)
    kd.chmod(0o777)
    r = enroll(wg_node, kd)
    assert r.exit_status == 3
    assert r.stderr.strip() == (f"{kd} must be root's and writable by root only: another user could plant a link "
                                f"where wgmesh writes keys and configs as root (chown root: {kd}; chmod go-w {kd})")
    assert os.listdir(kd) == []


def test_enroll_names_the_key_a_running_interface_has_when_it_is_another(node: Stubs, tmp_path: Path) -> None:
    """Review F: a node running a config made by hand (its own PrivateKey) got a new IF.key without a word; the
    first apply then switched the interface to it and cut the config's own peers off."""
    real = shutil.which("wg")
    assert real is not None
    running = "Xf7dO2vUf2+ijuFdlp1bsOpTd01Ii9r53xxuASSz7yI="
    node.stub("wg", f'#!/bin/sh\nif [ "$1" = show ]; then echo {running}; exit 0; fi\nexec {real} "$@"\n')
    report = parse_key_output(enroll(node, tmp_path / "wg").stdout)
    assert report.status == "created" and report.running == running
    node.stub("wg", f'#!/bin/sh\nif [ "$1" = show ]; then echo "Unable to access interface" >&2; exit 1; fi\n'
                    f'exec {real} "$@"\n')
    assert parse_key_output(enroll(node, tmp_path / "wg").stdout).running is None  # no interface
    same = public_of(tmp_path / "wg" / "wg0.key")
    node.stub("wg", f'#!/bin/sh\nif [ "$1" = show ]; then echo {same}; exit 0; fi\nexec {real} "$@"\n')
    assert parse_key_output(enroll(node, tmp_path / "wg").stdout).running is None  # runs this very key


def test_enroll_twice_keeps_the_key(wg_node: Stubs, tmp_path: Path) -> None:
    kd = tmp_path / "wg"
    first = parse_key_output(enroll(wg_node, kd).stdout)
    before = (kd / "wg0.key").stat()
    second = parse_key_output(enroll(wg_node, kd).stdout)
    after = (kd / "wg0.key").stat()
    assert second == KeyReport("existing", first.public_key, "600")
    assert (before.st_ino, before.st_mtime_ns) == (after.st_ino, after.st_mtime_ns)


def test_enroll_reports_a_loose_mode(wg_node: Stubs, tmp_path: Path) -> None:
    kd = tmp_path / "wg"
    enroll(wg_node, kd)
    os.chmod(kd / "wg0.key", 0o644)
    assert parse_key_output(enroll(wg_node, kd).stdout).mode == "644"


def test_enroll_refuses_a_file_that_is_not_a_key(wg_node: Stubs, tmp_path: Path) -> None:
    kd = tmp_path / "wg"
    kd.mkdir()
    (kd / "wg0.key").write_text("not a key\n")
    r = enroll(wg_node, kd)
    assert r.exit_status == keys.NOT_ENROLLED_EXIT
    assert "does not hold a WireGuard private key" in r.stderr
    assert (kd / "wg0.key").read_text() == "not a key\n"


def test_enroll_without_wg(node: Stubs, tmp_path: Path) -> None:
    r = enroll(node, tmp_path)
    assert r.exit_status == keys.NOT_ENROLLED_EXIT
    assert r.stderr == "wg is not installed on this node: install wireguard-tools\n"


# ------------------------------------------------------------------------------------------ rotate


def test_rotate_replaces_the_key(wg_node: Stubs, tmp_path: Path) -> None:
    wg_node.host("flock")
    kd, run = tmp_path / "wg", tmp_path / "run"
    old = parse_key_output(enroll(wg_node, kd).stdout).public_key
    old_private = (kd / "wg0.key").read_text()
    r = wg_node.run(rotate_script("wg0", old, key_dir=str(kd), run_dir=str(run)))
    assert r.exit_status == 0, r.stderr
    report = parse_key_output(r.stdout)
    assert report.status == "rotated"
    assert report.public_key == public_of(kd / "wg0.key") != old
    assert mode(kd / "wg0.key") == 0o600
    assert sorted(os.listdir(kd)) == ["wg0.key"], "no copy of the old key, no temporary file"
    assert (kd / "wg0.key").read_text() not in r.stdout + r.stderr
    assert old_private not in r.stdout + r.stderr
    assert (run / "wgmesh-wg0.lock").exists(), "the lock apply takes"


@pytest.mark.parametrize(
    ("setup", "exit_status", "message"),
    [
        ("absent", keys.NOT_ENROLLED_EXIT, "no key file"),
        ("other", keys.MISMATCH_EXIT, "not the"),
        ("garbage", keys.NOT_ENROLLED_EXIT, "does not hold a WireGuard private key"),
    ],
)
def test_rotate_refuses(wg_node: Stubs, tmp_path: Path, setup: str, exit_status: int, message: str) -> None:
    wg_node.host("flock")
    kd, run = tmp_path / "wg", tmp_path / "run"
    kd.mkdir()
    if setup == "other":
        enroll(wg_node, kd)
    if setup == "garbage":
        (kd / "wg0.key").write_text("x\n")
    before = (kd / "wg0.key").read_bytes() if (kd / "wg0.key").exists() else None
    r = wg_node.run(rotate_script("wg0", pubkey(1), key_dir=str(kd), run_dir=str(run)))
    assert r.exit_status == exit_status
    assert message in r.stderr
    assert ((kd / "wg0.key").read_bytes() if (kd / "wg0.key").exists() else None) == before


def test_rotate_waits_for_the_apply_lock(wg_node: Stubs, tmp_path: Path) -> None:
    wg_node.host("flock")
    kd, run = tmp_path / "wg", tmp_path / "run"
    run.mkdir()
    old = parse_key_output(enroll(wg_node, kd).stdout).public_key
    holder = subprocess.Popen(["flock", str(run / "wgmesh-wg0.lock"), "sleep", "10"], start_new_session=True)
    try:
        for _ in range(100):
            if subprocess.run(["flock", "-n", str(run / "wgmesh-wg0.lock"), "true"], check=False).returncode:
                break
            time.sleep(0.05)
        r = wg_node.run(rotate_script("wg0", old, key_dir=str(kd), run_dir=str(run), lock_timeout=1))
    finally:
        os.killpg(holder.pid, signal.SIGKILL)
        holder.wait()
    assert r.exit_status == keys.LOCK_EXIT
    assert "holds" in r.stderr
    assert public_of(kd / "wg0.key") == old


def test_rotate_without_flock_changes_nothing(wg_node: Stubs, tmp_path: Path) -> None:
    kd = tmp_path / "wg"
    old = parse_key_output(enroll(wg_node, kd).stdout).public_key
    r = wg_node.run(rotate_script("wg0", old, key_dir=str(kd), run_dir=str(tmp_path / "run")))
    assert r.exit_status == 69 and "flock is not installed" in r.stderr
    assert public_of(kd / "wg0.key") == old


def test_rotate_script_refuses_a_bad_expected_key() -> None:
    with pytest.raises(ValueError):
        rotate_script("wg0", "$(reboot)")


# ------------------------------------------------------------------------------------------ the report


@pytest.mark.parametrize(
    ("stdout", "want"),
    [
        (f"noise\n{MARK}key created {pubkey(1)} 600\n", KeyReport("created", pubkey(1), "600")),
        (f"{MARK}key rotated {pubkey(2)}\n", KeyReport("rotated", pubkey(2), None)),
        (f"{MARK}key existing {pubkey(3)} 640\n", KeyReport("existing", pubkey(3), "640")),
        (f"{MARK}other\n{MARK}key existing {pubkey(3)} 640\n", KeyReport("existing", pubkey(3), "640")),
        (f"{MARK}key created nope 600\n", ValueError),
        (f"{MARK}key stolen {pubkey(1)}\n", ValueError),
        (f"@@wgmesh-key:created {pubkey(1)} 600\n", ValueError),
        ("", ValueError),
    ],
)
def test_parse_key_output(stdout: str, want: object) -> None:
    if want is ValueError:
        with pytest.raises(ValueError):
            parse_key_output(stdout)
    else:
        assert parse_key_output(stdout) == want


def test_rotate_refuses_a_run_folder_another_user_may_write(wg_node: Stubs, tmp_path: Path) -> None:
    """Review R2: the lock (`exec 9>LOCK`, as root) went through a link another user planted in a /run/wireguard
    anyone could write, and emptied the file it pointed at."""
    wg_node.host("flock")
    kd, run = tmp_path / "wg", tmp_path / "run"
    run.mkdir()
    old = parse_key_output(enroll(wg_node, kd).stdout).public_key
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    run.chmod(0o777)
    (run / "wgmesh-wg0.lock").symlink_to(victim)
    r = wg_node.run(rotate_script("wg0", old, key_dir=str(kd), run_dir=str(run), lock_timeout=1))
    assert r.exit_status == 3
    assert r.stderr.strip().startswith(f"{run} must be root's and writable by root only")
    assert victim.read_text() == "precious\n" and public_of(kd / "wg0.key") == old


def test_a_key_script_killed_on_the_node_says_so() -> None:
    """Review P: a rotate whose shell was SIGKILLed failed with `exit status -1` (sshd sends the signal, not a
    status): the message says what that means."""
    killed = "the node's shell ended without an exit status (killed by a signal?)"
    assert keys.node_failure(CommandResult(-1, "", "")) == killed
    assert keys.node_failure(CommandResult(3, "", "")) == "exit status 3"
    assert keys.node_failure(CommandResult(3, "", "no key file\n")) == "no key file"
