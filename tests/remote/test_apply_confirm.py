"""One apply run on a stub node, as `Transport.converse` drives it, under dash and busybox sh: the state printed
under the lock and the question (nothing changes without `go`), the revert timer that holds the lock until the
run is confirmed or reverted (scripts/revert.sh), confirm.sh and rollback.sh racing it, and what a run leaves on
the node (F10: nothing, on any outcome; the snapshot never holds a key; nor does the import backup).

The node is tests/remote/stubs.py's stateful `ip`, a `wg` of this file (its `showconf` prints a private and a
preshared key, as the real one does), the host's flock and setsid; /etc/wireguard and /run/wireguard are
folders of the stub node."""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fakes import script_values
from meshes import converged, four
from remote.stubs import Stubs, ip_calls, ip_state, stateful_ip

from wgmesh.core.model import KEY_DIR, RUN_DIR
from wgmesh.core.plan import diff_node
from wgmesh.core.state import REDACTED, LiveState
from wgmesh.remote import apply as remote_apply
from wgmesh.remote import shell
from wgmesh.remote.adopt import adopt_script
from wgmesh.remote.apply import ApplyScript, apply_script, confirm_script, parse_outcome, rollback_script
from wgmesh.remote.read import parse_pending, parse_settling, read_command
from wgmesh.remote.shell import SYSTEM_PATH
from wgmesh.remote.transport import ASK_MARK, CommandResult

MESH = four()
ROUTE = "192.168.30.0/24"
KEY = "A" * 43 + "="  # 32 zero bytes: a well-formed key that is nobody's secret
RUNNING_KEY = "B" * 43 + "="  # what `wg showconf` prints as the interface's key
PSK = "C" * 43 + "="
SHOWCONF = f"""[Interface]
ListenPort = 51820
PrivateKey = {RUNNING_KEY}

[Peer]
PublicKey = {"D" * 43}=
PresharedKey = {PSK}
AllowedIPs = 10.0.0.2/32
"""
WG = r"""#!/bin/sh
log=$(dirname "$0")/../wg-calls.log
echo "$*" >> "$log"
case "$1 $2" in
"showconf wg0") cat "$(dirname "$0")/../showconf.txt" ;;
"syncconf wg0") cat >> "$(dirname "$0")/../synced.txt"; echo "--" >> "$(dirname "$0")/../synced.txt" ;;
"show wg0") exit 1 ;;
*) : ;;
esac
"""


def _planned() -> LiveState:
    """aws, converged but for one subnet route: its plan writes the config, syncs the peers, adds the route."""
    state = converged(MESH, "aws")
    return dataclasses.replace(state, routes=frozenset(r for r in state.routes if str(r) != ROUTE))


def _as_state(state: LiveState) -> dict[str, object]:
    return {"addresses": sorted(str(a) for a in state.addresses), "routes": sorted(str(r) for r in state.routes),
            "mtu": state.mtu}


@pytest.fixture
def box(node: Stubs) -> Iterator[Stubs]:
    """The stub node, with its WireGuard folders, key file, `ip` in the planned state, `wg`, flock, setsid and
    an `sh` of the shell under test (the revert timer runs `sh`). Timers still running at the end are ended."""
    for folder in ("etc-wireguard", "run-wireguard"):
        (node.root / folder).mkdir(mode=0o700, exist_ok=True)
    (node.root / "etc-wireguard" / "wg0.key").write_text(KEY + "\n")
    (node.root / "showconf.txt").write_text(SHOWCONF)
    stateful_ip(node, _as_state(_planned()))
    node.stub("wg", WG)
    node.host("flock", "setsid")
    if node.shell == "busybox":
        node.busybox_applet("sh")
    else:
        node.host("sh")
    yield node
    for pending in (node.root / "run-wireguard").glob("*.confirm*"):
        with contextlib.suppress(ValueError, OSError):
            os.kill(int(pending.read_text().strip()), signal.SIGKILL)


def _local(box: Stubs, text: str) -> str:
    """A script as the stub node runs it: the node's folders in place of /etc/wireguard and /run/wireguard."""
    return (text.replace(KEY_DIR, str(box.root / "etc-wireguard")).replace(RUN_DIR, str(box.root / "run-wireguard"))
            .replace(SYSTEM_PATH, str(box.base)))


def _env(box: Stubs) -> dict[str, str]:
    return {"PATH": f"{box.bin}:{box.base}", "HOME": str(box.root), "TMPDIR": str(box.root), "LANG": "C.UTF-8"}


def _script(confirm_timeout: int = 30) -> ApplyScript:
    plan = diff_node(MESH, MESH.node("aws"), _planned())
    return apply_script(MESH, MESH.node("aws"), plan, lock_timeout=5, confirm_timeout=confirm_timeout)


def _converse(box: Stubs, script: ApplyScript, answer: str | None) -> tuple[CommandResult, str]:
    """Run the script as `SshTransport.converse` does: `first`, then (once ASK_MARK is printed) `answer` and
    the rest, or end-of-file for None. Returns the result and what was printed before the question."""
    proc = subprocess.Popen(box.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=_env(box), text=True)
    assert proc.stdin and proc.stdout
    proc.stdin.write(_local(box, script.first))
    proc.stdin.flush()
    before = []
    for line in proc.stdout:
        if line == ASK_MARK + "\n":
            break
        before.append(line)
    else:
        pytest.fail(f"the script never asked: {proc.communicate(timeout=30)}")
    if answer is not None:
        proc.stdin.write(f"{answer}\n" + _local(box, script.rest))
    out, err = proc.communicate(timeout=60)
    return CommandResult(proc.returncode, out, err), "".join(before)


def _run(box: Stubs, text: str) -> CommandResult:
    r = subprocess.run(box.argv, input=_local(box, text), text=True, capture_output=True, env=_env(box), timeout=60,
                       check=False)
    return CommandResult(r.returncode, r.stdout, r.stderr)


def _lock_free(box: Stubs) -> bool:
    lock = box.root / "run-wireguard" / "wgmesh-wg0.lock"
    return subprocess.run(["flock", "-n", str(lock), "true"], check=False).returncode == 0


def _run_files(box: Stubs) -> list[str]:
    """The run's files left on the node (the lock and the last confirmed apply's stamp are the node's own)."""
    return sorted(p.name for p in (box.root / "run-wireguard").iterdir()
                  if p.name not in ("wgmesh-wg0.lock", "wgmesh-wg0.applied"))


def _wait(cond, timeout: float = 20) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return False


# ------------------------------------------------------------------------------------------- the question


def test_the_state_under_the_lock_comes_before_the_question(box: Stubs) -> None:
    script = _script()
    assert script.first.rstrip().endswith(f"wgm_mark {ASK_MARK.removeprefix('@@wgmesh:')}\nwgm_wait_go")
    assert "\nwgm_begin\n" not in script.first and "\nwgm_lock\n" in script.first
    assert script.rest.startswith("wgm_steps() {\nwgm_expect_interface present\nwgm_begin\n")
    result, before = _converse(box, script, "stop")
    assert before.startswith("@@wgmesh:v1\n") and "@@wgmesh:end\n" in before  # read.sh's sections
    assert result.exit_status == remote_apply.STOPPED_EXIT
    assert "changed since this plan: run plan again" in result.stderr


@pytest.mark.parametrize("answer", ["stop", None, "yes"])
def test_without_go_nothing_changes_and_nothing_is_left(box: Stubs, answer: str | None) -> None:
    result, _ = _converse(box, _script(), answer)
    assert result.exit_status == remote_apply.STOPPED_EXIT, result.stderr
    assert not any(c.startswith(("route", "address", "link set")) for c in ip_calls(box))
    assert not (box.root / "etc-wireguard" / "wg0.conf").exists()
    assert _run_files(box) == []
    assert _lock_free(box)


def test_a_controller_that_never_answers_does_not_keep_the_lock(box: Stubs) -> None:
    """Its connection died unnoticed (sshd keeps the session): the script ends by itself, changing nothing."""
    script = _script()
    first = script.first.replace(f"ANSWER_TIMEOUT={remote_apply.ANSWER_TIMEOUT}\n", "ANSWER_TIMEOUT=1\n")
    assert first != script.first
    proc = subprocess.Popen(box.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=_env(box), text=True)
    assert proc.stdin
    proc.stdin.write(_local(box, first))
    proc.stdin.flush()  # and stdin stays open: no answer, no end-of-file
    started = time.monotonic()
    assert proc.wait(timeout=20) != 0
    assert time.monotonic() - started < 10
    assert _lock_free(box) and _run_files(box) == []
    assert not any(c.startswith(("route", "address", "link set")) for c in ip_calls(box))
    for pipe in (proc.stdin, proc.stdout, proc.stderr):
        pipe.close()  # type: ignore[union-attr]


def _cut_after_the_first_step(rest: str) -> str:
    """The steps as far as the line after the config file's text (the first step): a connection that ended there."""
    end = rest.index("\n__WGMESH_CONF__\n") + len("\n__WGMESH_CONF__\n")
    assert "wgm_finish" not in rest[:end]
    return rest[:end]


def test_a_connection_that_ends_while_the_steps_arrive_changes_nothing(box: Stubs) -> None:
    """The shell runs `sh -s`'s lines as they come: the steps are one function, run once all of it is there."""
    script = _script()
    cut = ApplyScript(script.run, script.first, _cut_after_the_first_step(script.rest))
    result, _ = _converse(box, cut, "go")
    assert result.exit_status != 0
    assert not (box.root / "etc-wireguard" / "wg0.conf").exists(), "the first step did not run"
    assert not any(c.startswith(("route", "address", "link set")) for c in ip_calls(box))
    assert _run_files(box) == []
    assert _wait(lambda: _lock_free(box), 5)  # (once seen held a moment after the exit, on a loaded machine)


def test_steps_that_stop_arriving_do_not_keep_the_lock(box: Stubs) -> None:
    """After `go`, the connection stalls in the middle of the steps (sshd keeps the session): the script ends by
    itself after ANSWER_TIMEOUT, changing nothing."""
    script = _script()
    first = script.first.replace(f"ANSWER_TIMEOUT={remote_apply.ANSWER_TIMEOUT}\n", "ANSWER_TIMEOUT=1\n")
    proc = subprocess.Popen(box.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=_env(box), text=True)
    assert proc.stdin and proc.stdout
    proc.stdin.write(_local(box, first))
    proc.stdin.flush()
    for line in proc.stdout:
        if line == ASK_MARK + "\n":
            break
    proc.stdin.write("go\n" + _local(box, _cut_after_the_first_step(script.rest)))
    proc.stdin.flush()  # and stdin stays open: the rest never comes
    started = time.monotonic()
    assert proc.wait(timeout=20) != 0
    assert time.monotonic() - started < 10
    assert not (box.root / "etc-wireguard" / "wg0.conf").exists()
    assert _lock_free(box) and _run_files(box) == []
    for pipe in (proc.stdin, proc.stdout, proc.stderr):
        pipe.close()  # type: ignore[union-attr]


# ------------------------------------------------------------------------------------------- go, then confirm


def test_go_changes_the_node_and_leaves_it_pending_under_the_lock(box: Stubs) -> None:
    script = _script()
    result, _ = _converse(box, script, "go")
    assert result.exit_status == 0, result.stderr
    assert remote_apply.VERIFY_MARK in result.stdout
    assert ROUTE in ip_state(box)["routes"]  # type: ignore[operator]
    run = script.run
    pending = box.root / "run-wireguard" / f"wgmesh-wg0.{run}.confirm"
    assert pending.read_text().strip().isdigit()  # the timer's PID: armed
    assert not _lock_free(box), "the revert timer holds the node lock until the run is confirmed or reverted"
    snapshot = (box.root / "run-wireguard" / f"wgmesh-wg0.{run}.snapshot").read_text()
    assert "[Peer]" in snapshot and "AllowedIPs = 10.0.0.2/32" in snapshot
    assert RUNNING_KEY not in snapshot and "PrivateKey" not in snapshot  # F10: no key on disk
    assert PSK not in snapshot
    for f in (box.root / "run-wireguard").iterdir():
        assert KEY not in f.read_text() and RUNNING_KEY not in f.read_text(), f.name

    confirmed = _run(box, confirm_script(MESH, run, lock_timeout=5))
    assert confirmed.exit_status == 0, confirmed.stderr
    assert parse_outcome(confirmed.stdout) == "confirmed"
    stamp, stamped_run = (box.root / "run-wireguard" / "wgmesh-wg0.applied").read_text().split()
    assert abs(int(stamp) - time.time()) < 30, "a confirmed run stamps when the node last changed"
    assert stamped_run == run
    assert _wait(lambda: _lock_free(box)), "the woken timer ends and frees the lock"
    assert _run_files(box) == []
    assert ROUTE in ip_state(box)["routes"]  # type: ignore[operator]
    time.sleep(0.3)
    assert ROUTE in ip_state(box)["routes"], "a confirmed run is never reverted"  # type: ignore[operator]


def test_a_run_awaiting_its_confirmation_is_read_as_pending_until_it_is_confirmed(box: Stubs) -> None:
    """read.sh names the runs whose change awaits confirmation (a controller stopped in between): plan shows
    them, and apply confirms them before anything else."""
    script = _script()
    result, _ = _converse(box, script, "go")
    assert result.exit_status == 0, result.stderr

    def pending() -> tuple[str, ...]:
        out = _run(box, read_command("wg0")).stdout
        (section,) = [s for s in shell.sections(out) if s.name == "pending"]
        return parse_pending(section.text or "")

    assert pending() == (script.run,)
    assert parse_outcome(_run(box, confirm_script(MESH, script.run, lock_timeout=5)).stdout) == "confirmed"
    assert pending() == ()


def test_a_run_another_connection_confirmed_first_is_confirmed(box: Stubs) -> None:
    """Two applies confirm the same pending run (one of them the next apply, one the run's own, late): the one that
    loses the claim says `confirmed` too (the change stays), not `no record of this apply`. The node's stamp of
    its last confirmed apply names the run (read.sh's `applied` is still its time)."""
    script = _script()
    result, _ = _converse(box, script, "go")
    assert result.exit_status == 0, result.stderr
    confirm = confirm_script(MESH, script.run, lock_timeout=5)
    assert parse_outcome(_run(box, confirm).stdout) == "confirmed"
    late = _run(box, confirm)
    assert late.exit_status == 0 and parse_outcome(late.stdout) == "confirmed", late.stderr
    assert _wait(lambda: _lock_free(box)) and _run_files(box) == []
    stamp = (box.root / "run-wireguard" / "wgmesh-wg0.applied").read_text().split()
    assert stamp[1] == script.run and abs(int(stamp[0]) - time.time()) < 30
    out = _run(box, read_command("wg0")).stdout
    (applied,) = [s for s in shell.sections(out) if s.name == "applied"]
    assert (applied.text or "").strip() == stamp[0]
    nothing = _run(box, confirm_script(MESH, "other1", lock_timeout=5))
    assert nothing.exit_status == 3 and "no record of this apply" in nothing.stderr  # a run never known: an error


def test_a_run_being_undone_is_read_as_settling_and_plan_waits(box: Stubs) -> None:
    """Its revert timer claimed it (no confirmation in time) and is undoing it: what a read sees now is about to
    change, so the plan of that node is an error saying to plan again, not "No changes"."""
    script = _script()
    result, _ = _converse(box, script, "go")
    assert result.exit_status == 0, result.stderr
    pending = box.root / "run-wireguard" / f"wgmesh-wg0.{script.run}.confirm"
    pending.rename(pending.with_name(pending.name + ".claimed"))  # as revert.sh claims it, before it undoes
    out = _run(box, read_command("wg0")).stdout
    (section,) = [s for s in shell.sections(out) if s.name == "pending"]
    assert parse_pending(section.text or "") == ()
    assert parse_settling(section.text or "") == (script.run,)
    state = dataclasses.replace(converged(MESH, "aws"), settling_runs=(script.run,))
    plan = diff_node(MESH, MESH.node("aws"), state)
    assert plan.error and plan.error.startswith(f"the node is settling apply {script.run} right now")
    assert not plan.changes and not plan.steps
    claimed = pending.with_name(pending.name + ".claimed")
    timer = int(claimed.read_text())
    os.kill(timer, signal.SIGKILL)  # a timer killed before it could settle: the file settles nothing
    assert _wait(lambda: not Path(f"/proc/{timer}").exists() or "Z" in Path(f"/proc/{timer}/stat").read_text())
    out = _run(box, read_command("wg0")).stdout
    (section,) = [s for s in shell.sections(out) if s.name == "pending"]
    assert parse_settling(section.text or "") == ()


def test_an_unconfirmed_run_is_reverted_by_the_node(box: Stubs) -> None:
    script = _script(confirm_timeout=2)
    result, _ = _converse(box, script, "go")
    assert result.exit_status == 0, result.stderr
    assert ROUTE in ip_state(box)["routes"]  # type: ignore[operator]
    conf = box.root / "etc-wireguard" / "wg0.conf"
    assert conf.exists()
    started = time.monotonic()
    assert _wait(lambda: _lock_free(box)), "the timer reverts and ends"
    assert 1.5 < time.monotonic() - started < 15
    assert ip_state(box)["routes"] == _as_state(_planned())["routes"]
    assert not conf.exists(), "the run wrote the first config: reverted, it is gone again"
    synced = (box.root / "synced.txt").read_text().split("--\n")
    restore = synced[-2]  # the snapshot, with the key file's key put back
    assert restore.startswith(f"[Interface]\nPrivateKey = {KEY}\nListenPort = 51820\n")
    assert "AllowedIPs = 10.0.0.2/32" in restore
    assert _run_files(box) == [f"wgmesh-wg0.{script.run}.reverted"]
    late = _run(box, confirm_script(MESH, script.run, lock_timeout=5))
    assert late.exit_status == 0, late.stderr
    assert parse_outcome(late.stdout) == "reverted"
    assert _run_files(box) == []


def test_a_confirmation_for_a_run_the_node_does_not_know_is_an_error(box: Stubs) -> None:
    got = _run(box, confirm_script(MESH, "abc123", lock_timeout=1))
    assert got.exit_status == 3 and "no record of this apply" in got.stderr
    assert parse_outcome(got.stdout) is None


def test_rollback_wakes_the_timer_and_the_run_is_undone_at_once(box: Stubs) -> None:
    script = _script(confirm_timeout=60)
    result, _ = _converse(box, script, "go")
    assert result.exit_status == 0, result.stderr
    started = time.monotonic()
    back = _run(box, rollback_script(MESH, script.run, lock_timeout=10))
    assert time.monotonic() - started < 10, "not the timer's 60 s"
    assert back.exit_status == 0, back.stderr
    assert parse_outcome(back.stdout) == "rolledback"
    assert remote_apply.VERIFY_MARK in back.stdout  # the state after it, for the controller to check
    assert ip_state(box)["routes"] == _as_state(_planned())["routes"]
    assert _run_files(box) == []
    assert _wait(lambda: _lock_free(box))


def test_rollback_after_the_node_reverted_by_itself_says_so(box: Stubs) -> None:
    """The controller lost the apply's connection and reaches the node again only after its timer fired."""
    script = _script(confirm_timeout=1)
    result, _ = _converse(box, script, "go")
    assert result.exit_status == 0, result.stderr
    assert _wait(lambda: _lock_free(box))
    back = _run(box, rollback_script(MESH, script.run, lock_timeout=10))
    assert back.exit_status == 0, back.stderr
    assert parse_outcome(back.stdout) == "reverted"
    assert ip_state(box)["routes"] == _as_state(_planned())["routes"]
    assert _run_files(box) == []


def test_rollback_without_its_timer_undoes_the_run_itself(box: Stubs) -> None:
    """The timer was killed (a session manager that kills a session's processes): its record is still there."""
    script = _script(confirm_timeout=60)
    result, _ = _converse(box, script, "go")
    assert result.exit_status == 0, result.stderr
    pending = box.root / "run-wireguard" / f"wgmesh-wg0.{script.run}.confirm"
    os.kill(int(pending.read_text()), signal.SIGKILL)
    assert _wait(lambda: _lock_free(box))
    back = _run(box, rollback_script(MESH, script.run, lock_timeout=10))
    assert back.exit_status == 0, back.stderr
    assert parse_outcome(back.stdout) == "rolledback"
    assert ip_state(box)["routes"] == _as_state(_planned())["routes"]
    assert _run_files(box) == []


def test_another_apply_waits_while_a_run_is_pending(box: Stubs) -> None:
    script = _script(confirm_timeout=60)
    result, _ = _converse(box, script, "go")
    assert result.exit_status == 0, result.stderr
    second = _script()
    proc = subprocess.Popen(box.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=_env(box), text=True)
    out, err = proc.communicate(_local(box, second.first.replace("WGM_LOCK_TIMEOUT=5", "WGM_LOCK_TIMEOUT=1")),
                                timeout=30)
    assert proc.returncode == 75 and "holds" in err, (out, err)  # the pending run's timer holds the lock
    assert parse_outcome(_run(box, confirm_script(MESH, script.run, lock_timeout=5)).stdout) == "confirmed"


# ------------------------------------------------------------------------------------------- F10: failures


def test_a_failing_step_rolls_back_and_leaves_no_file(box: Stubs) -> None:
    script = _script()
    proc = subprocess.Popen(box.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**_env(box), "FAKE_IP_FAIL": f"route add {ROUTE}"}, text=True)
    assert proc.stdin and proc.stdout
    proc.stdin.write(_local(box, script.first))
    proc.stdin.flush()
    for line in proc.stdout:
        if line == ASK_MARK + "\n":
            break
    proc.stdin.write("go\n" + _local(box, script.rest))
    _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0 and "steps were undone" in err
    assert ROUTE not in ip_state(box)["routes"]  # type: ignore[operator]
    assert not (box.root / "etc-wireguard" / "wg0.conf").exists()
    assert _run_files(box) == []
    assert sorted(p.name for p in (box.root / "etc-wireguard").iterdir()) == ["wg0.key"]
    assert _lock_free(box)


def test_a_killed_run_leaves_no_file(box: Stubs) -> None:
    """TERM in the middle of the steps (a stuck `ip` killed by someone): the trap rolls back and cleans up."""
    script = _script()
    proc = subprocess.Popen(box.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=_env(box), text=True)
    assert proc.stdin and proc.stdout
    proc.stdin.write(_local(box, script.first))
    proc.stdin.flush()
    for line in proc.stdout:
        if line == ASK_MARK + "\n":
            break
    rest = _local(box, script.rest).replace("wgm_finish\n", "wgm_finish_slow\n", 1)
    proc.stdin.write("go\nwgm_finish_slow() { sleep 30 >/dev/null 2>&1 9>&- & wait $!; }\n" + rest)
    proc.stdin.flush()
    assert _wait(lambda: any(p.name.endswith(".snapshot") for p in (box.root / "run-wireguard").iterdir()))
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode != 0 and "steps were undone" in err, (out, err)
    assert _run_files(box) == [] and _lock_free(box)



# ------------------------------------------------------------------------------------------- F10: import backup


def test_the_import_backup_holds_no_key_material(node: Stubs, tmp_path: Path) -> None:
    """adopt.sh keeps the old config once: without its PrivateKey, its PresharedKey lines and any key written
    into a hook; peers' public keys stay (they are not secrets, and say who the peers were)."""
    from nacl.public import PrivateKey

    node.host("wg")
    raw = PrivateKey(bytes(range(1, 33)))
    priv = base64.b64encode(bytes(raw)).decode()
    pub = base64.b64encode(bytes(raw.public_key)).decode()
    peer = base64.b64encode(bytes(PrivateKey(bytes(range(2, 34))).public_key)).decode()
    old = (f"[Interface]\nPrivateKey = {priv}\nPostUp = echo {priv} > /dev/null\nListenPort = 51820\n"
           f"[Peer]\nPublicKey = {peer}\nPresharedKey = {PSK}\nAllowedIPs = 10.0.0.2/32\n")
    d = tmp_path / "wg"
    d.mkdir(mode=0o700)
    (d / "wg0.conf").write_text(old)
    r = node.run(adopt_script("wg0", pub, "# new\n", key_dir=str(d)))
    assert r.exit_status == 0, r.stderr
    backup = (d / "wg0.conf.wgmesh-import").read_text()
    assert priv not in backup and PSK not in backup and "PresharedKey" not in backup
    assert f"PublicKey = {peer}" in backup and "ListenPort = 51820" in backup
    assert f"PostUp = echo {REDACTED} > /dev/null" in backup
    assert sorted(os.listdir(d)) == ["wg0.conf", "wg0.conf.wgmesh-import", "wg0.key"]


# ------------------------------------------------------------------------------------------- as sent


def test_the_scripts_as_sent_pass_shellcheck() -> None:
    """apply (both parts), rollback, confirm and the revert timer, each as the node receives it. Not here, as
    in test_scripts_shellcheck.py: SC2034/SC2317 (values and lib.sh functions a script does not use), and for
    apply.sh included in the others SC2016 (its undo lines are single-quoted on purpose: the file disables it
    at its top) and SC2153 (REVERT: a value of the apply script only)."""
    checker = shutil.which("shellcheck")
    if checker is None:
        pytest.skip("shellcheck is not installed (scripts/bootstrap.sh installs it)")
    script = _script()
    values = {k: v for k, v in script_values(script).items() if k != "REVERT"}
    texts = {
        "apply": script.first + "go\n" + script.rest,
        "rollback": rollback_script(MESH, script.run),
        "confirm": confirm_script(MESH, script.run),
        "revert": shell.script("revert", **values),
    }
    for name, text in texts.items():
        # the apply script reads the state in a subshell that has lib.sh again: its functions defined twice
        # (SC2218) and PATH set in the subshell (SC2030/SC2031), both on purpose
        excluded = "SC2034,SC2317,SC2016,SC2153" + (",SC2218,SC2030,SC2031" if name == "apply" else "")
        r = subprocess.run([checker, "-s", "sh", "-e", excluded, "-"], input="#!/bin/sh\n" + text,
                           text=True, capture_output=True, check=False)
        assert r.returncode == 0, f"{name}:\n{r.stdout}{r.stderr}"


def _pending_section(box: Stubs) -> str:
    out = _run(box, read_command("wg0")).stdout
    (section,) = [s for s in shell.sections(out) if s.name == "pending"]
    return section.text or ""


def test_a_read_while_another_apply_changes_the_node_says_busy_and_plan_waits(box: Stubs) -> None:
    """Review K: a plan made while another controller's apply was half-way through its steps said "No changes",
    and that apply then failed and was undone. The run marks itself busy from its first change to wgm_finish,
    by its shell's PID and start time; a read meanwhile says so, and the plan of that node is an error."""
    real = box.bin / "ip"
    real.rename(box.bin / "ip.real")
    seen = box.root / "busy-seen.txt"
    box.stub("ip", f'case "$*" in *"route add"*) ls {box.root / "run-wireguard"} >> {seen} ;; esac\n'
                   f'exec {box.bin / "ip.real"} "$@"\n')
    script = _script()
    result, _ = _converse(box, script, "go")
    assert result.exit_status == 0, result.stderr
    assert f"wgmesh-wg0.{script.run}.busy" in seen.read_text()  # during the steps
    assert not list((box.root / "run-wireguard").glob("*.busy"))  # not once they are done
    assert parse_settling(_pending_section(box), "busy") == ()
    # a live process (this test's, by its PID and start time) as the holder: busy; another start time, or a
    # process that is gone: not (a killed run's file, a reused PID)
    busy = box.root / "run-wireguard" / "wgmesh-wg0.abc123.busy"
    start = Path(f"/proc/{os.getpid()}/stat").read_text().rsplit(") ", 1)[1].split()[19]
    busy.write_text(f"{os.getpid()} {start}\n")
    assert parse_settling(_pending_section(box), "busy") == ("abc123",)
    busy.write_text(f"{os.getpid()} {int(start) + 1}\n")
    assert parse_settling(_pending_section(box), "busy") == ()
    gone = subprocess.Popen(["true"])
    gone.wait()
    busy.write_text(f"{gone.pid} {start}\n")
    assert parse_settling(_pending_section(box), "busy") == ()
    plan = diff_node(MESH, MESH.node("aws"), dataclasses.replace(converged(MESH, "aws"), busy_runs=("abc123",)))
    assert plan.error == ("another wgmesh apply (run abc123) is changing this node right now: run wgmesh plan again "
                          "when it has ended")
    assert not plan.changes and not plan.steps
