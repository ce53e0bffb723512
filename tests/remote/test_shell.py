"""remote/shell.py (script assembly, values, heredoc, the marker parser) and lib.sh's functions, run under
dash and busybox."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from remote.stubs import Stubs

from wgmesh.lab.procs import proc_of
from wgmesh.remote import shell
from wgmesh.remote.shell import Section, heredoc, script, sections


def lib(body: str, **values: str | int) -> str:
    """lib.sh + `body`, as script() sends it (the body is not a file in scripts/)."""
    return "# wgmesh test.sh\n" + shell.assignments(values) + shell.source("lib.sh") + body


# ------------------------------------------------------------------------------------------ assembly


def test_script_is_header_values_lib_and_body() -> None:
    text = script("enroll", KEY_DIR="/etc/wireguard", KEY="/etc/wireguard/wg0.key")
    assert text.startswith("# wgmesh enroll.sh\nKEY_DIR=/etc/wireguard\nKEY=/etc/wireguard/wg0.key\n")
    assert shell.source("lib.sh") + shell.source("enroll.sh") in text
    assert shell.script_name(text) == "enroll"
    assert shell.script_name("echo hi\n") is None


def test_includes_are_expanded() -> None:
    status = shell.source("status.sh")
    assert "wgmesh-include" not in status
    assert status.endswith(shell.source("read.sh"))


@pytest.mark.parametrize("value", ["wg0;reboot", "$(reboot)", "`reboot`", "a'b\"c", "line\nbreak", "", " x "])
def test_values_reach_the_script_as_they_are(dash_node: Stubs, value: str) -> None:
    r = dash_node.run(lib('printf "[%s]" "$V"\n', V=value))
    assert r.exit_status == 0, r.stderr
    assert r.stdout == f"[{value}]"


@pytest.mark.parametrize(
    ("name", "value", "error"),
    [("lower", "x", ValueError), ("1X", "x", ValueError), ("PATH", "/tmp", ValueError), ("IFS", " ", ValueError),
     ("A-B", "x", ValueError), ("X", "nul\0", ValueError), ("X", True, TypeError), ("X", None, TypeError)],
)
def test_values_refused(name: str, value: object, error: type[Exception]) -> None:
    with pytest.raises(error):
        shell.assignments({name: value})  # type: ignore[dict-item]


def test_ints_are_values() -> None:
    assert shell.assignments({"WGM_LOCK_TIMEOUT": 7}) == "WGM_LOCK_TIMEOUT=7\n"


def test_heredoc(dash_node: Stubs) -> None:
    body = "a $X `b` $(c)\n'quoted'\n"
    r = dash_node.run(lib(f"X=1\ncat {heredoc('T', body)}\ncat {heredoc('T', 'v=$X', expand=True)}\n"))
    assert r.stdout == body + "v=1\n", r.stderr
    assert heredoc("T", "") == "<<'T'\nT"
    for bad in ("x\nT\ny", "T", "x\nT"):
        with pytest.raises(ValueError, match="terminator"):
            heredoc("T", bad)
    with pytest.raises(ValueError):
        heredoc("t x", "body")


def test_lock_path_and_node_paths() -> None:
    assert shell.lock_path("wg0") == "/run/wireguard/wgmesh-wg0.lock"
    assert shell.node_paths("wg1", key_dir="/k") == {"IF": "wg1", "KEY_DIR": "/k", "KEY": "/k/wg1.key",
                                                     "CONF": "/k/wg1.conf"}


# ------------------------------------------------------------------------------------------ sections


def test_sections() -> None:
    text = "noise\n@@wgmesh:v1\n@@wgmesh:resolve a.example\r\n1.2.3.4 STREAM\r\n\n@@wgmesh:end\n"
    assert sections(text) == [
        Section("v1", "", None, 2),
        Section("resolve", "a.example", "1.2.3.4 STREAM\n", 3),
        Section("end", "", "", 6),
    ]
    assert [s.lines for s in sections(text)] == [(), ("1.2.3.4 STREAM", ""), ("",)]
    found = sections("@@wgmesh:ping 3 10.0.0.1\nx\n@@wgmesh:\n")
    assert found[0].args == ["3", "10.0.0.1"] and found[0].marker == "@@wgmesh:ping 3 10.0.0.1"
    assert found[0].body == "x" and found[1].name == ""
    assert sections("") == [] and sections("no markers\n") == []
    assert sections(" @@wgmesh:x\n@@wgmesh-key:y\n") == []


def _sections_line_by_line(text: str) -> list[Section]:
    """The definition `sections` keeps: every line, in order; a marker line starts a section."""
    out: list[Section] = []
    head: tuple[str, str, int] | None = None
    lines: list[str] = []
    for n, line in enumerate(text.split("\n"), 1):
        line = line.rstrip("\r")
        if not line.startswith("@@wgmesh:"):
            if head is not None:
                lines.append(line)
            continue
        if head is not None:
            out.append(Section(head[0], head[1], "\n".join(lines) if lines else None, head[2]))
        name, _, rest = line[len("@@wgmesh:") :].partition(" ")
        head, lines = (name, rest.strip(), n), []
    if head is not None:
        out.append(Section(head[0], head[1], "\n".join(lines) if lines else None, head[2]))
    return out


@given(st.lists(st.sampled_from(["@@wgmesh:", "@@wgmesh:a b ", "x", " ", "\n", "\r", "\r\n", "@@wgmesh"]),
                max_size=30).map("".join))
@settings(max_examples=400, deadline=None)
def test_sections_are_the_line_by_line_reading(text: str) -> None:
    assert sections(text) == _sections_line_by_line(text)


# ------------------------------------------------------------------------------------------ lib.sh


def test_settings_and_mark(node: Stubs) -> None:
    r = node.run(lib('wgm_mark v1\nwgm_mark resolve "a b" c\numask\necho "$LC_ALL"\n'
                     'case $- in *e*u*|*u*e*) echo eu ;; esac\n'))
    assert r.exit_status == 0, r.stderr
    assert r.stdout.splitlines() == ["@@wgmesh:v1", "@@wgmesh:resolve a b c", "0077", "C", "eu"]
    assert [s.name for s in sections(r.stdout)] == ["v1", "resolve"]


def test_path_gets_the_system_folders(dash_node: Stubs) -> None:
    r = subprocess.run(["/bin/sh", "-s"], input=lib('echo "$PATH"\n'), text=True, capture_output=True,
                       env={"PATH": "/opt/x"}, check=False)
    assert r.stdout.strip() == f"/opt/x:{shell.SYSTEM_PATH}"
    r = subprocess.run(["/bin/sh", "-s"], input=lib('echo "$PATH"\n'), text=True, capture_output=True, env={},
                       check=False)
    assert r.stdout.strip().startswith(shell.SYSTEM_PATH), "never an empty entry (the current folder)"


def test_die(node: Stubs) -> None:
    r = node.run(lib('wgm_die "it broke: do this" 7\necho never\n'))
    assert (r.exit_status, r.stdout, r.stderr) == (7, "", "it broke: do this\n")
    assert node.run(lib("wgm_die oops\n")).exit_status == 1


def test_have(node: Stubs) -> None:
    node.stub("wg", "exit 0\n")
    r = node.run(lib("wgm_have wg && echo wg\nwgm_have flock || echo no-flock\n"))
    assert r.stdout == "wg\nno-flock\n"


def test_lock_times_out_with_75(node: Stubs, tmp_path: Path) -> None:
    node.host("flock")
    lock = tmp_path / "run" / "wgmesh-wg0.lock"
    holder = None
    try:
        lock.parent.mkdir()
        holder = subprocess.Popen(["flock", str(lock), "sleep", "10"], start_new_session=True)
        for _ in range(100):
            if subprocess.run(["flock", "-n", str(lock), "true"], check=False).returncode != 0:
                break
            time.sleep(0.05)
        started = time.monotonic()
        r = node.run(lib("wgm_lock\necho locked\n", WGM_LOCK=str(lock), WGM_LOCK_TIMEOUT=1))
    finally:
        if holder:
            os.killpg(holder.pid, signal.SIGKILL)  # flock and its sleep, which holds the lock too
            holder.wait()
    assert r.exit_status == shell.LOCK_EXIT == 75
    assert r.stdout == ""
    assert r.stderr == (f"another wgmesh apply or rotate holds {lock} on this node (waited 1s), or the revert timer "
                        "of a change awaiting confirmation: wgmesh plan shows it as a pending apply (the next apply "
                        "confirms it; else it is undone within --confirm-timeout); then run this again\n")
    assert time.monotonic() - started < 5
    r = node.run(lib("wgm_lock\necho locked\n", WGM_LOCK=str(lock), WGM_LOCK_TIMEOUT=1))
    assert (r.exit_status, r.stdout) == (0, "locked\n")


def test_lock_creates_its_folder_and_is_held_until_exit(node: Stubs, tmp_path: Path) -> None:
    node.host("flock")
    lock = tmp_path / "new" / "dir" / "x.lock"
    body = f'wgm_lock\nif flock -n {lock} true; then echo free; else echo held; fi\n'
    r = node.run(lib(body, WGM_LOCK=str(lock)))
    assert (r.exit_status, r.stdout) == (0, "held\n"), r.stderr


def test_lock_without_flock_says_so(node: Stubs, tmp_path: Path) -> None:
    r = node.run(lib("wgm_lock\necho locked\n", WGM_LOCK=str(tmp_path / "x.lock")))
    assert r.exit_status == shell.NO_FLOCK_EXIT == 69
    assert "flock is not installed on this node" in r.stderr and "util-linux" in r.stderr
    assert "holds" not in r.stderr


def test_write_is_atomic_with_mode_600(node: Stubs, tmp_path: Path) -> None:
    dest = tmp_path / "etc" / "wg0.conf"
    dest.parent.mkdir()
    dest.write_text("old\n")
    dest.chmod(0o644)
    r = node.run(lib('printf "%s" "$TEXT" | wgm_write "$DEST"\n', TEXT="new\n$(x)\n", DEST=str(dest)))
    assert r.exit_status == 0, r.stderr
    assert dest.read_text() == "new\n$(x)\n"
    assert dest.stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in dest.parent.iterdir()) == ["wg0.conf"]


def test_write_failure_stops_the_script_and_leaves_no_temporary(node: Stubs, tmp_path: Path) -> None:
    dest = tmp_path / "etc" / "wg0.conf"
    dest.parent.mkdir()
    dest.write_text("old\n")
    r = node.run(lib('echo new | wgm_write "$DEST/nope"\necho after\n', DEST=str(dest)))
    assert r.exit_status != 0 and "after" not in r.stdout
    assert dest.read_text() == "old\n"
    assert sorted(p.name for p in dest.parent.iterdir()) == ["wg0.conf"]


# ------------------------------------------------------------------------------------------ wgm_stop_after


def _alive(pid: int) -> bool:
    return proc_of(pid) is not None  # there, and not a zombie


def test_stop_after_stops_a_hung_script_and_the_command_it_waits_on(node: Stubs) -> None:
    """A read that hangs in a command (here `hang`, as a `wg` stuck on its socket) is stopped with that command,
    SECONDS on: the node does not keep it after the controller gave up."""
    pidfile = node.root / "hang.pid"
    node.stub("hang", f"echo $$ > {pidfile}\nexec sleep 30\n")
    started = time.monotonic()
    r = node.run(lib("wgm_stop_after 1\necho started\nhang\necho never\n"))
    took = time.monotonic() - started
    hung = int(pidfile.read_text())
    try:
        assert (r.exit_status, r.stdout) == (-signal.SIGTERM, "started\n"), r.stderr
        assert 0.9 < took < 5, took
        for _ in range(40):
            if not _alive(hung):
                break
            time.sleep(0.05)
        assert not _alive(hung), "the hung command outlived the script"
    finally:
        if _alive(hung) and Path(f"/proc/{hung}/comm").read_text().strip() == "sleep":
            os.kill(hung, signal.SIGKILL)


@pytest.mark.parametrize("seconds", ["99999999999999999999", "1e19", "", "5s"])
def test_stop_after_a_value_it_cannot_count_down_stops_nothing(node: Stubs, seconds: str) -> None:
    """A value the shell's arithmetic cannot take (too big, not digits) starts no watcher: the script is not
    stopped at once, as a failed `[ -gt ]` that ended the countdown would do."""
    r = node.run(lib(f"wgm_stop_after '{seconds}'\nsleep 1.2\necho done\n"))
    assert (r.exit_status, r.stdout) == (0, "done\n"), r.stderr


def test_stop_after_leaves_nothing_behind_a_script_that_ends_in_time(node: Stubs) -> None:
    """The watcher ends within about a second of the script and holds none of its output (the script's end, and
    so the command's, is not delayed)."""
    started = time.monotonic()
    r = node.run(lib("wgm_stop_after 30\necho $$\n"))
    assert r.exit_status == 0 and time.monotonic() - started < 1, r.stderr
    group = int(r.stdout)  # the script leads its own process group (a session of its own, as under sshd)
    deadline = time.monotonic() + 3
    while True:
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            break
        assert time.monotonic() < deadline, "the watcher outlived the script by more than a second"
        time.sleep(0.05)
