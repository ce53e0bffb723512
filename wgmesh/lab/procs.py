"""Processes: the commands the lab runs, and the processes it started, known by PID and start time (so a
reused PID is never taken for ours), found by network namespace, and stopped."""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from wgmesh.lab.hosts import INSTALL_LINE, LabError, Proc

SBIN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def env() -> dict[str, str]:
    out = dict(os.environ)
    out["PATH"] = SBIN_PATH + (":" + out["PATH"] if out.get("PATH") else "")
    return out


def run(argv: Sequence[str], *, input: str | None = None, timeout: float = 60,
        label: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run a command (sbin on PATH), capturing its text output. Not checked. `label`: what a timeout names (the
    command that was meant, not the namespace wrapper that runs it)."""
    try:
        return subprocess.run(
            list(argv), input=input, capture_output=True, text=True, env=env(), timeout=timeout, check=False
        )
    except FileNotFoundError as e:
        raise LabError(f"{argv[0]}: not found ({INSTALL_LINE})") from e
    except subprocess.TimeoutExpired as e:
        raise LabError(f"{(label or shlex.join(argv))[:200]}: no answer after {timeout:g} s") from e


def check(argv: Sequence[str], what: str, *, input: str | None = None) -> str:
    """Run a command; LabError with its last line of output unless it succeeds. Returns its stdout."""
    r = run(argv, input=input)
    if r.returncode != 0:
        detail = (r.stderr.strip() or r.stdout.strip()).splitlines()
        raise LabError(f"{what}: {detail[-1] if detail else f'exit {r.returncode}'}")
    return r.stdout


def which(cmd: str) -> str | None:
    return shutil.which(cmd, path=env()["PATH"])


def parse_stat_start(stat: str) -> tuple[str, int]:
    """(state, start time) from the text of /proc/PID/stat."""
    fields = stat[stat.rfind(")") + 2 :].split()
    return fields[0], int(fields[19])


def comm(pid: int) -> str | None:
    """Process `pid`'s name, or None once it has exited (a listed process may end before it is read)."""
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return None


def argv_of(pid: int) -> list[bytes] | None:
    """Process `pid`'s command line, or None once it has exited."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return None


def proc_of(pid: int) -> Proc | None:
    """The live (non-zombie) process `pid`, or None."""
    try:
        state, start = parse_stat_start(Path(f"/proc/{pid}/stat").read_text())
    except (OSError, ValueError, IndexError):
        return None
    return None if state in ("Z", "X") else Proc(pid, start)


def alive(proc: Proc) -> bool:
    return proc_of(proc.pid) == proc


def _netns_inode(netns: str) -> int | None:
    try:
        return os.stat(f"/run/netns/{netns}").st_ino
    except OSError:
        return None


def pids_in_netns(netns_names: Sequence[str]) -> list[int]:
    """Every process whose network namespace is one of these (what `ip netns pids` does, in one pass)."""
    inodes = {i for i in (_netns_inode(n) for n in netns_names) if i is not None}
    if not inodes:
        return []
    out = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            link = os.readlink(f"/proc/{entry.name}/ns/net")
        except OSError:
            continue
        m = re.fullmatch(r"net:\[(\d+)\]", link)
        if m and int(m.group(1)) in inodes:
            out.append(int(entry.name))
    return out


def kill_all(procs: Sequence[Proc], timeout: float = 3.0) -> None:
    """SIGTERM, wait, then SIGKILL whatever is left. Only processes that are still exactly `procs`."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        live = [p for p in procs if alive(p)]
        for p in live:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p.pid, sig)
        deadline = time.monotonic() + timeout
        while live and time.monotonic() < deadline:
            time.sleep(0.01)
            live = [p for p in live if alive(p)]
        if not live:
            return
    if any(alive(p) for p in procs):
        raise LabError(f"processes did not stop: {', '.join(str(p.pid) for p in procs if alive(p))}")
