"""The one harness for node-script tests: run a script the way a node does (on the standard input of `sh -s`)
with a PATH of stub commands the test writes, under dash and under busybox.

- `dash`: /bin/sh, the host's (GNU) utilities.
- `busybox`: `busybox sh` with busybox's own awk, sed, stat, ... (what an Alpine node has).

Only a fixed list of basic utilities is on PATH besides the stubs (`BASIC`); lib.sh's system folders are
replaced by that list (and `sh`, the shell under test), so a tool the test did not stub (wg, ip, flock, ping,
...) is missing, as on a bare node. `host(...)` puts the host's real tool on PATH when a test needs it (wg
genkey, flock).

Stub commands: `answering` (answers by argument string, logs calls), FAKE_PING/FAKE_IP (probe.sh), and for
apply.sh a stateful `ip` (`stateful_ip`: addresses, routes and MTU in a JSON file) and a `wg` (`fake_wg`: it
refuses a malformed key as wg does, quoting it).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
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
        # `sh` is the shell under test (a script that starts another one, like apply.sh's revert timer)
        if not (self.base / "sh").exists():
            (self.base / "sh").symlink_to(box if shell == "busybox" and box else "/bin/sh")
        self.read_only: tuple[Path, ...] = ()  # folders `run` shows its script read-only (see make_read_only)

    def make_read_only(self, *folders: Path) -> None:
        """`run`'s scripts see `folders` on a read-only file system (a read-only bind mount in a mount namespace
        of their own: the test's files stay as they are). Needs root and unshare; else the test is skipped."""
        if os.geteuid() != 0 or shutil.which("unshare") is None or shutil.which("mount") is None:
            pytest.skip("a read-only bind mount needs root, unshare and mount")
        self.read_only = folders

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
        shell = [busybox() or "busybox", "sh", "-s"] if self.shell == "busybox" else ["/bin/sh", "-s"]
        if not self.read_only:
            return shell
        mount = shutil.which("mount") or "mount"
        binds = " && ".join(f"{mount} --bind {shlex.quote(str(d))} {shlex.quote(str(d))} && {mount} -o "
                            f"remount,ro,bind {shlex.quote(str(d))}" for d in self.read_only)
        return [shutil.which("unshare") or "unshare", "-m", "--propagation", "private", "/bin/sh", "-c",
                f"{binds} && exec {shlex.join(shell)}"]

    def run(self, script: str, env: Mapping[str, str] | None = None, timeout: float = 30) -> CommandResult:
        """Run `script` as a node would; lib.sh's system folders become the BASIC folder."""
        local = script.replace(SYSTEM_PATH, str(self.base))
        full = {"PATH": f"{self.bin}:{self.base}", "HOME": str(self.root), "TMPDIR": str(self.root),
                "LANG": "C.UTF-8", **(env or {})}
        # a session of its own, as sshd gives each command: a read's wgm_stop_after signals its process group
        r = subprocess.run(self.argv, input=local, text=True, capture_output=True, env=full, timeout=timeout,
                           start_new_session=True, check=False)
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
# `ping` and `ip` for probe.sh, driven by FAKE_* variables: FAKE_LOG (every ping is appended: its address, or
# SOURCE>ADDRESS for a ping from a source address, `ping -I SOURCE`), FAKE_BARRIER (N: each ping waits until
# N pings have started, proving they run at once), FAKE_DOWN / FAKE_FLAKY (no reply / no reply twice),
# FAKE_ERROR (ping fails): each a list of ADDRESS (any source) or SOURCE>ADDRESS; FAKE_RTT, FAKE_DEV.
# `ip -o addr show to PREFIX` prints the node's address inside PREFIX: FAKE_SRC's PREFIX=ADDRESS entry, or
# FAKE_SRC=none for no address at all, else the prefix's first address (as the lab hosts have).

FAKE_PING = r"""#!/bin/sh
src=
prev=
for a; do
    [ "$prev" = -I ] && src=$a
    prev=$a
    addr=$a
done
key=${src:+$src>}$addr
echo "$key" >> "$FAKE_LOG"
if [ -n "$FAKE_BARRIER" ]; then
    # every probe must be running at once: wait (10 s at most) until FAKE_BARRIER pings have started
    : > "$FAKE_LOG.started.$key"
    i=0
    while [ "$(ls "$FAKE_LOG".started.* | wc -l)" -lt "$FAKE_BARRIER" ]; do
        i=$((i + 1)); [ $i -le 100 ] || { echo "ping: barrier: the probes do not run in parallel" >&2; exit 2; }
        sleep 0.1
    done
fi
echo "PING $addr ($addr) 56(84) bytes of data."
tries=$(grep -cxF "$key" "$FAKE_LOG")
case " $FAKE_DOWN " in
*" $addr "*|*" $key "*) lost=1;;
*) case " $FAKE_FLAKY " in *" $addr "*|*" $key "*) [ "$tries" -lt 3 ] && lost=1;; esac;;
esac
if [ -n "$lost" ]; then
    echo; echo "--- $addr ping statistics ---"
    echo "1 packets transmitted, 0 received, 100% packet loss, time 0ms"; echo
    exit 1
fi
case " $FAKE_ERROR " in
*" $addr "*|*" $key "*) echo "ping: sendmsg: Required key not available" >&2; exit 2;;
esac
echo "64 bytes from $addr: icmp_seq=1 ttl=64 time=${FAKE_RTT:-0.5} ms"
echo; echo "--- $addr ping statistics ---"
echo "1 packets transmitted, 1 received, 0% packet loss, time 0ms"
echo "rtt min/avg/max/mdev = ${FAKE_RTT:-0.5}/${FAKE_RTT:-0.5}/${FAKE_RTT:-0.5}/0.000 ms"
"""

FAKE_IP = r"""#!/bin/sh
case " $* " in
*" addr show to "*)
    for a; do prefix=$a; done
    [ "$FAKE_SRC" = none ] && exit 0
    found=
    for pair in $FAKE_SRC; do
        case $pair in "$prefix="*) found=${pair#*=};; esac
    done
    if [ -z "$found" ]; then
        found=${prefix%/*}
        case $found in *::) found=${found}1;; *.0) found=${found%.0}.1;; esac
    fi
    case $found in *:*) family=inet6;; *) family=inet;; esac
    echo "5: sub0    $family $found/${prefix#*/} scope global sub0\       valid_lft forever preferred_lft forever"
    exit 0;;
esac
src=
while [ "$#" -gt 0 ]; do
    case $1 in get) addr=$2;; from) src=$2;; esac
    shift
done
echo "$addr ${src:+from $src }dev ${FAKE_DEV:-wg0} src ${src:-10.0.0.1} uid 0 \    cache "
"""


# ---------------------------------------------------------------------------------------------- a node's link
# A stateful `ip` for apply.sh's reconcile steps: the interface's addresses, routes and MTU live in a JSON file
# (`ip_state`), every call is logged (`ip_calls`), and a call whose arguments contain $FAKE_IP_FAIL fails as
# the kernel would refuse it. It answers what apply.sh asks (`link show`, `-o address show`, `-4|-6 -o route
# show table main exact P [dev D]`, `-o link show`) and does what it changes (`address add|del`, `route add|del`,
# `link set mtu N`, `link set up`); anything else fails loudly, so a new kind of step is never passed silently.

STATEFUL_IP = r"""
import json, os, sys
args = sys.argv[1:]
with open(LOG, "a") as log:
    log.write(" ".join(args) + "\n")
st = json.load(open(STATE))
fail = os.environ.get("FAKE_IP_FAIL", "")
if fail and fail in " ".join(args):
    sys.exit("RTNETLINK answers: Operation not permitted")
family, oneline = None, False
while args and args[0] in ("-4", "-6", "-o"):
    flag = args.pop(0)
    if flag == "-o":
        oneline = True
    else:
        family = flag
words = " ".join(args)
dev = args[args.index("dev") + 1] if "dev" in args[:-1] else None
if dev is not None and (dev != st["interface"] or not st.get("link", True)):
    sys.exit(f'Device "{dev}" does not exist.')
flags = "<POINTOPOINT,NOARP" + (",UP,LOWER_UP>" if st.get("up", True) else ">")
if words == f"link show dev {dev}":
    print(f"4: {dev}: {flags} mtu {st['mtu']} qdisc noqueue state UNKNOWN mode DEFAULT group default qlen 1000")
    if not oneline:
        print("    link/none")
elif words == f"address show dev {dev}" and oneline:
    for a in st["addresses"]:
        print(f"4: {dev}    {'inet6' if ':' in a else 'inet'} {a} scope global {dev}\\       valid_lft forever")
elif args[:5] == ["route", "show", "table", "main", "exact"] and args[6:] == ["dev", dev]:
    if args[5] in st["routes"] and (family or "-4") == ("-6" if ":" in args[5] else "-4"):
        print(f"{args[5]} scope link")
elif args[:5] == ["route", "show", "table", "main", "exact"] and len(args) == 6:
    # any device: the interface's routes, and others' from "other_routes" (prefix -> the line `ip` prints)
    line = st.get("other_routes", {}).get(args[5])
    if line is None and args[5] in st["routes"]:
        line = f"{args[5]} dev {st['interface']} scope link"
    if line is not None and (family or "-4") == ("-6" if ":" in args[5] else "-4"):
        print(line)
elif args[:2] in (["address", "add"], ["address", "del"], ["route", "add"], ["route", "del"]) and len(args) == 5:
    items = st["addresses" if args[0] == "address" else "routes"]
    if args[1] == "add":
        if args[2] in items or (args[0] == "route" and args[2] in st.get("other_routes", {})):
            sys.exit("RTNETLINK answers: File exists")
        items.append(args[2])
    else:
        if args[2] not in items:
            sys.exit("RTNETLINK answers: No such process" if args[0] == "route" else
                     "RTNETLINK answers: Cannot assign requested address")
        items.remove(args[2])
elif args[:3] == ["link", "set", "mtu"] and args[4:] == ["dev", dev]:
    st["mtu"] = int(args[3])
elif args == ["link", "set", "up", "dev", dev]:
    st["up"] = True
else:
    sys.exit(f"stub ip: not supported: {words}")
json.dump(st, open(STATE, "w"))
"""

# `wg` beside it: every call logged (`wg_calls`); the input of `wg syncconf IF /dev/stdin` kept (`wg_synced`);
# `wg showconf IF` prints a runtime config without keys.
FAKE_WG = r"""
import base64, binascii, sys
args = sys.argv[1:]
with open(LOG, "a") as log:
    log.write(" ".join(args) + "\n")

def key_ok(text):
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return False
    return len(text) == 44 and base64.b64encode(raw).decode() == text

if args[:1] == ["syncconf"] and args[2:] == ["/dev/stdin"]:
    text = sys.stdin.read()
    for line in text.splitlines():  # as wg: a key it refuses is quoted in its error
        name, _, value = line.partition("=")
        if name.strip().lower() == "privatekey" and not key_ok(value.strip()):
            sys.exit(f"Key is not the correct length or format: `{value.strip()}'\nConfiguration parsing error")
    open(SYNC, "w").write(text)
elif args[:1] == ["pubkey"]:
    text = sys.stdin.read().strip()
    if not key_ok(text):
        sys.exit("wg: Key is not the correct length or format")
    from nacl.public import PrivateKey
    print(base64.b64encode(bytes(PrivateKey(base64.b64decode(text)).public_key)).decode())
elif args[:1] == ["showconf"]:
    print("[Interface]\nListenPort = 51820\n")
elif args[:1] not in (["syncconf"], ["set"]):
    sys.exit(f"stub wg: not supported: {' '.join(args)}")
"""


def _python_stub(stubs: Stubs, name: str, code: str, **paths: Path) -> None:
    head = "".join(f"{k} = {str(v)!r}\n" for k, v in paths.items())
    stubs.stub(name, f"#!{sys.executable}\n{head}{code}")


def stateful_ip(stubs: Stubs, state: Mapping[str, object], interface: str = "wg0") -> None:
    """The stateful `ip` (above), its interface starting as `state`: addresses, routes (lists of str), mtu."""
    (stubs.root / "ip-state.json").write_text(json.dumps({"interface": interface, **state}))
    _python_stub(stubs, "ip", STATEFUL_IP, STATE=stubs.root / "ip-state.json", LOG=stubs.root / "ip-calls.log")


def ip_state(stubs: Stubs) -> dict[str, object]:
    """The interface as the stateful `ip` has it now: addresses, routes, mtu."""
    st = json.loads((stubs.root / "ip-state.json").read_text())
    return {k: st[k] for k in ("addresses", "routes", "mtu")}


def ip_calls(stubs: Stubs) -> list[str]:
    log = stubs.root / "ip-calls.log"
    return log.read_text().splitlines() if log.exists() else []


def fake_wg(stubs: Stubs) -> None:
    _python_stub(stubs, "wg", FAKE_WG, LOG=stubs.root / "wg-calls.log", SYNC=stubs.root / "wg-synced.txt")


def wg_calls(stubs: Stubs) -> list[str]:
    log = stubs.root / "wg-calls.log"
    return log.read_text().splitlines() if log.exists() else []


def wg_synced(stubs: Stubs) -> str:
    """What the last `wg syncconf IF /dev/stdin` read ("" when there was none)."""
    path = stubs.root / "wg-synced.txt"
    return path.read_text() if path.exists() else ""


STATEFUL_IPTABLES = """
import json, sys
args = sys.argv[1:]
with open(LOG, "a") as log:
    log.write(" ".join(args) + "\\n")
if args[:1] == ["-w"]:  # wgmesh waits for the xtables lock: `-w 5`
    args = args[2:]
table = "filter"
if args[:2] == ["-t", "nat"]:
    table, args = "nat", args[2:]
op, rule = args[0], " ".join(args[1:])
state = json.load(open(STATE))
rules = state.setdefault(table, [])
if op == "-C":
    sys.exit(0 if rule in rules else 1)
elif op == "-I":
    rules.insert(0, rule)
elif op == "-D":
    if rule not in rules:
        sys.exit("iptables: Bad rule (does a matching rule exist in that chain?).")
    rules.remove(rule)
else:
    sys.exit(f"stub iptables: not supported: {' '.join(sys.argv[1:])}")
json.dump(state, open(STATE, "w"))
"""


def stateful_iptables(stubs: Stubs, *tools: str) -> None:
    """Stateful `iptables` / `ip6tables`: -C, -I and -D of whole rules, per table, each tool its own rules."""
    for tool in tools:
        (stubs.root / f"{tool}-state.json").write_text("{}")
        _python_stub(stubs, tool, STATEFUL_IPTABLES, STATE=stubs.root / f"{tool}-state.json",
                     LOG=stubs.root / f"{tool}-calls.log")


def iptables_state(stubs: Stubs, tool: str) -> dict[str, list[str]]:
    """The rules the stateful TOOL has now, {table: [rule, ...]} (newest first, as -I puts them)."""
    return json.loads((stubs.root / f"{tool}-state.json").read_text())
