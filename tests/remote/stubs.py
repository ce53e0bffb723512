"""The one harness for node-script tests: run a script the way a node does (on the standard input of `sh -s`)
with a PATH of stub commands the test writes, under dash and under busybox.

- `dash`: /bin/sh, the host's (GNU) utilities.
- `busybox`: `busybox sh` with busybox's own awk, sed, stat, ... (what an Alpine node has).

Only a fixed list of basic utilities is on PATH besides the stubs (`BASIC`); lib.sh's system folders are
replaced by that list, so a tool the test did not stub (wg, ip, flock, ping, ...) is missing, as on a bare
node. `host(...)` puts the host's real tool on PATH when a test needs it (wg genkey, flock).
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

import pytest

from wgmesh.remote.shell import SYSTEM_PATH
from wgmesh.remote.transport import CommandResult

SHELLS = ("dash", "busybox")

# What node scripts may use without a stub: POSIX utilities every image has (coreutils or busybox).
BASIC = (
    "awk", "basename", "cat", "chmod", "cp", "cut", "date", "dirname", "env", "grep", "head", "id", "kill", "ln",
    "ls", "mkdir", "mktemp", "mv", "readlink", "rm", "sed", "sha256sum", "sleep", "sort", "stat", "sync", "tail",
    "tee", "timeout", "touch", "tr", "uname", "wc",
)
# Not in busybox: taken from the host under both shells.
HOST_ONLY = ("getent",)
_HOST_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def busybox() -> str | None:
    return shutil.which("busybox", path=_HOST_PATH)


def host_tool(name: str) -> str | None:
    return shutil.which(name, path=_HOST_PATH)


def skip_unless_shell(shell: str) -> None:
    if shell == "busybox" and busybox() is None:
        pytest.skip("busybox is not installed (scripts/bootstrap.sh installs it)")
    if shell == "dash" and not Path("/bin/sh").exists():
        pytest.skip("no /bin/sh")


class Stubs:
    """A fake node's PATH in `root`: `root/bin` (stubs and host tools the test asked for), `root/base` (BASIC)."""

    def __init__(self, root: Path, shell: str = "dash") -> None:
        skip_unless_shell(shell)
        self.root = root
        self.shell = shell
        self.bin = root / "bin"
        self.base = root / "base"
        self.bin.mkdir(parents=True, exist_ok=True)
        self.base.mkdir(parents=True, exist_ok=True)
        box = busybox()
        for name in BASIC + HOST_ONLY:
            target = box if shell == "busybox" and name not in HOST_ONLY else host_tool(name)
            if target is not None and not (self.base / name).exists():
                (self.base / name).symlink_to(target)

    def stub(self, name: str, body: str) -> Path:
        """Write the command NAME: a /bin/sh script with `body`."""
        path = self.bin / name
        path.write_text("#!/bin/sh\n" + body if not body.startswith("#!") else body)
        path.chmod(0o755)
        return path

    def host(self, *names: str) -> None:
        """Put the host's real NAME on PATH (skip the test when the host has none)."""
        for name in names:
            target = host_tool(name)
            if target is None:
                pytest.skip(f"needs {name} on this machine")
            if not (self.bin / name).exists():
                (self.bin / name).symlink_to(target)

    def busybox_applet(self, name: str) -> None:
        """NAME is busybox's applet (a symlink to busybox, as on Alpine)."""
        box = busybox()
        if box is None:
            pytest.skip("busybox is not installed")
        (self.bin / name).symlink_to(box)

    def remove(self, name: str) -> None:
        (self.bin / name).unlink(missing_ok=True)
        (self.base / name).unlink(missing_ok=True)

    @property
    def argv(self) -> list[str]:
        return [busybox() or "busybox", "sh", "-s"] if self.shell == "busybox" else ["/bin/sh", "-s"]

    def run(self, script: str, env: Mapping[str, str] | None = None, timeout: float = 30) -> CommandResult:
        """Run `script` as a node would; lib.sh's system folders become the BASIC folder."""
        local = script.replace(SYSTEM_PATH, str(self.base))
        full = {"PATH": f"{self.bin}:{self.base}", "HOME": str(self.root), "TMPDIR": str(self.root),
                "LANG": "C.UTF-8", **(env or {})}
        r = subprocess.run(self.argv, input=local, text=True, capture_output=True, env=full, timeout=timeout,
                           check=False)
        return CommandResult(r.returncode, r.stdout, r.stderr)



def answering(stubs: Stubs, name: str, table: Mapping[str, str | tuple[str, int]], *, otherwise: int = 1) -> None:
    """Stub NAME answering by its whole argument string ("$*"): `table[args]` is stdout, or (stdout, status).
    Other arguments: a message on stderr and exit `otherwise`. Every call is logged (see `calls`)."""
    log = stubs.root / "calls" / name
    log.parent.mkdir(exist_ok=True)
    lines = [f"for a; do printf '[%s]' \"$a\"; done >> {shlex.quote(str(log))}", f"echo >> {shlex.quote(str(log))}",
             'case "$*" in']
    for i, (args, answer) in enumerate(table.items()):
        text, status = answer if isinstance(answer, tuple) else (answer, 0)
        out = stubs.root / "calls" / f"{name}.{i}.out"
        out.write_text(text)
        lines.append(f"{shlex.quote(args)}) cat {shlex.quote(str(out))}; exit {status} ;;")
    lines += [f'*) echo "{name}: no such answer: $*" >&2; exit {otherwise} ;;', "esac"]
    stubs.stub(name, "\n".join(lines) + "\n")


def calls(stubs: Stubs, name: str) -> list[list[str]]:
    """The argument lists NAME was called with (by a stub from `answering`), in order."""
    log = stubs.root / "calls" / name
    if not log.exists():
        return []
    return [line[1:-1].split("][") if line != "" else [] for line in log.read_text().splitlines()]


# ---------------------------------------------------------------------------------------------- stub commands
# `ping` and `ip route get` for probe.sh, driven by FAKE_* variables: FAKE_LOG (every ping's address is
# appended), FAKE_BARRIER (N: each ping waits until N pings have started, proving they run at once),
# FAKE_DOWN / FAKE_FLAKY (no reply / no reply twice), FAKE_ERROR (ping fails), FAKE_RTT, FAKE_DEV.

FAKE_PING = r"""#!/bin/sh
for a; do addr=$a; done
echo "$addr" >> "$FAKE_LOG"
if [ -n "$FAKE_BARRIER" ]; then
    # every probe must be running at once: wait (10 s at most) until FAKE_BARRIER pings have started
    : > "$FAKE_LOG.started.$addr"
    i=0
    while [ "$(ls "$FAKE_LOG".started.* | wc -l)" -lt "$FAKE_BARRIER" ]; do
        i=$((i + 1)); [ $i -le 100 ] || { echo "ping: barrier: the probes do not run in parallel" >&2; exit 2; }
        sleep 0.1
    done
fi
echo "PING $addr ($addr) 56(84) bytes of data."
tries=$(grep -cx "$addr" "$FAKE_LOG")
case " $FAKE_DOWN " in
*" $addr "*) lost=1;;
*) case " $FAKE_FLAKY " in *" $addr "*) [ "$tries" -lt 3 ] && lost=1;; esac;;
esac
if [ -n "$lost" ]; then
    echo; echo "--- $addr ping statistics ---"
    echo "1 packets transmitted, 0 received, 100% packet loss, time 0ms"; echo
    exit 1
fi
case " $FAKE_ERROR " in
*" $addr "*) echo "ping: sendmsg: Required key not available" >&2; exit 2;;
esac
echo "64 bytes from $addr: icmp_seq=1 ttl=64 time=${FAKE_RTT:-0.5} ms"
echo; echo "--- $addr ping statistics ---"
echo "1 packets transmitted, 1 received, 0% packet loss, time 0ms"
echo "rtt min/avg/max/mdev = ${FAKE_RTT:-0.5}/${FAKE_RTT:-0.5}/${FAKE_RTT:-0.5}/0.000 ms"
"""

FAKE_IP = r"""#!/bin/sh
for a; do addr=$a; done
echo "$addr dev ${FAKE_DEV:-wg0} src 10.0.0.1 uid 0 \    cache "
"""
