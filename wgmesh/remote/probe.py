"""`wgmesh check` and `wgmesh status`, the pure part: probe scripts, their parsers and the N x N matrices.

check: every node runs one script that pings, in parallel, every other node's mesh addresses and the probe
address of each subnet routed through that node (`Subnet.probe_address`). Each ping writes to its own file in
a temporary folder; after `wait` the script prints them in order behind marker lines, so output of parallel
jobs never interleaves. The script also asks `ip route get` which device each probe leaves by: an answer
that did not come through the mesh interface proves nothing about the mesh.

status: what every node's `wg show` says of each peer (handshake age, endpoint, bytes), with the node's own
clock read in the same round trip so ages do not depend on the controller's clock.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from wgmesh.core.checks import ATTEMPTS, FORMAT_VERSION, HEAD_START, PING_WAIT, Probe, Target
from wgmesh.remote import read as live

MARK = live.MARK


_RTT = re.compile(r"\btime[=<]\s*([0-9]+(?:\.[0-9]+)?)\s*ms\b")


_DEV = re.compile(r"\sdev\s+(\S+)")


_UNREACHABLE = re.compile(r"^From (\S+?):? .*?\b(Destination [A-Za-z ]+?|Time to live exceeded)\s*$", re.M)


class CheckParseError(ValueError):
    """Output of a probe script that cannot be understood."""


def _probe_job(index: int, target: Target) -> str:
    """One background job: its own file, three processes (the subshell, `ip`, `ping` per attempt)."""
    q = shlex.quote(str(target.address))
    return (
        f'( exec > "$d/{index}" 2>&1; {f"sleep {HEAD_START}; " if target.after_peer else ""}'
        f'echo "{MARK}ping {index} {target.address}"; echo "{MARK}route"; '
        f"ip -o route get {q}; n=0; while [ $n -lt {ATTEMPTS} ]; do n=$((n + 1)); "
        f'echo "{MARK}attempt $n"; ping -{target.address.version} -c 1 -W {PING_WAIT} -n {q}; r=$?; '
        f'[ $r -eq 1 ] || break; done; echo "{MARK}result $r $n" ) &'
    )


def probe_script(targets: Sequence[Target]) -> str:
    """A POSIX sh script that pings every target at once. Each probe prints one block:

        @@wgmesh:ping INDEX ADDRESS
        @@wgmesh:route
        <ip -o route get ADDRESS>
        @@wgmesh:attempt N            (once per ping sent)
        <ping's output>
        @@wgmesh:result EXIT ATTEMPTS

    between `@@wgmesh:check 1` and `@@wgmesh:end`; `@@wgmesh:noping` when the node has no ping command.
    """
    lines = [
        "LC_ALL=C; export LC_ALL",
        'PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin:/bin:/usr/bin"; export PATH',
        f"echo '{MARK}check {FORMAT_VERSION}'",
        f"if ! command -v ping >/dev/null 2>&1; then echo '{MARK}noping'; echo '{MARK}end'; exit 0; fi",
        "d=$(mktemp -d 2>/dev/null || mktemp -d -t wgmesh.XXXXXX) || exit 1",
        "trap 'rm -rf \"$d\"' EXIT",
    ]
    lines += [_probe_job(i, t) for i, t in enumerate(targets)]
    lines.append("wait")
    if targets:
        lines.append('cd "$d" && cat ' + " ".join(str(i) for i in range(len(targets))))
    lines.append(f"echo '{MARK}end'")
    return "\n".join(lines) + "\n"


def _reason(exit_status: int, output: str) -> str:
    """Why a ping failed, in ping's own words where it said something."""
    m = _UNREACHABLE.search(output)
    if m:
        return f"{m.group(2).lower()} (from {m.group(1)})"
    said = [line.strip() for line in output.splitlines() if line.strip().startswith("ping:")]
    if said:
        return said[-1].removeprefix("ping:").strip()[:200]
    if exit_status == 1:
        return "no reply"
    return f"ping exited with status {exit_status}"


def _rtt(output: str) -> float | None:
    m = _RTT.search(output)
    return float(m.group(1)) if m else None


def probe_result(
    source: str, target: Target, result: tuple[int, int] | None, route: str, output: str, interface: str
) -> Probe:
    """One probe from its result (ping's exit status, attempts), `ip route get` and the last ping's output."""
    m = _DEV.search(route)
    dev = m.group(1) if m else None
    if result is None:
        return Probe(source, target, False, None, "the probe did not finish", 0, dev)
    exit_status, attempts = result
    if exit_status == 0:
        if dev is not None and dev != interface:
            return Probe(source, target, False, _rtt(output), f"answered through {dev}, not {interface}",
                         attempts, dev)
        return Probe(source, target, True, _rtt(output), None, attempts, dev)
    error = _reason(exit_status, output)
    if dev is not None and dev != interface:
        error = f"routed through {dev}, not {interface} ({error})"
    return Probe(source, target, False, None, error, attempts, dev)


@dataclass
class _Block:
    route: list[str] = field(default_factory=list)
    output: list[str] = field(default_factory=list)  # of the last attempt
    result: tuple[int, int] | None = None


def _result(line: str, rest: str) -> tuple[int, int]:
    fields = rest.split()
    if len(fields) != 2 or not all(f.isdigit() for f in fields):
        raise CheckParseError(f"malformed result line {line!r}")
    return int(fields[0]), int(fields[1])


def _blocks(lines: Iterable[str], targets: Sequence[Target]) -> dict[int, _Block]:
    blocks: dict[int, _Block] = {}
    block: _Block | None = None
    current: list[str] | None = None
    for line in lines:
        if not line.startswith(MARK):
            if current is not None:
                current.append(line)
            continue
        word, _, rest = line[len(MARK) :].partition(" ")
        if word == "ping":
            head = rest.split(" ")
            if len(head) != 2 or not head[0].isdigit():
                raise CheckParseError(f"malformed probe line {line!r}")
            index = int(head[0])
            if index >= len(targets) or head[1] != str(targets[index].address):
                raise CheckParseError(f"probe line {line!r} does not match the probes sent")
            if index in blocks:
                raise CheckParseError(f"probe {index} reported twice")
            block = blocks[index] = _Block()
            current = None
        elif block is not None and word == "route":
            current = block.route
        elif block is not None and word == "attempt":
            block.output = current = []
        elif block is not None and word == "result":
            block.result = _result(line, rest)
            block = current = None
        else:
            block = current = None
    return blocks


def parse_probe_output(source: str, targets: Sequence[Target], text: str, interface: str) -> tuple[Probe, ...]:
    """The output of `probe_script(targets)` run on `source` -> one Probe per target, in target order."""
    lines = [line.rstrip("\r") for line in text.split("\n")]
    if f"{MARK}check {FORMAT_VERSION}" not in lines:
        raise CheckParseError("missing the check header (not wgmesh check output?)")
    if f"{MARK}end" not in lines:
        raise CheckParseError("truncated output (no end marker)")
    if f"{MARK}noping" in lines:
        raise CheckParseError("no ping command on the node (install iputils-ping)")
    blocks = _blocks(lines, targets)
    return tuple(
        probe_result(source, t, b.result, "\n".join(b.route), "\n".join(b.output), interface)
        for t, b in ((t, blocks.get(i, _Block())) for i, t in enumerate(targets))
    )


def status_script(interface: str) -> str:
    """The read script of `live`, preceded by the node's clock (seconds since the epoch)."""
    return f"echo '{MARK}clock'\ndate +%s\n" + live.read_command(interface)


def parse_clock(text: str) -> int | None:
    """The node's clock from `status_script` output, or None when it is missing or garbled."""
    lines = [line.rstrip("\r") for line in text.split("\n")]
    try:
        value = lines[lines.index(f"{MARK}clock") + 1].strip()
    except (ValueError, IndexError):
        return None
    return int(value) if value.isdigit() else None
