"""`wgmesh check` and `wgmesh status`, the pure part: probe scripts, their parsers and the N x N matrices.

check: every node runs one script that pings, in parallel, every other node's mesh addresses and the probe
address of each subnet routed through that node (`Subnet.probe_address`). Each ping writes to its own file in
a temporary folder; after `wait` the script prints them in order behind marker lines, so output of parallel
jobs never interleaves. The script also asks `ip route get` which device each probe leaves by: an answer
that did not come through the mesh interface proves nothing about the mesh. (scripts/probe.sh)

status: what every node's `wg show` says of each peer (handshake age, endpoint, bytes), with the node's own
clock read in the same round trip so ages do not depend on the controller's clock.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from wgmesh.core.checks import ATTEMPTS, FORMAT_VERSION, HEAD_START, PING_WAIT, Probe, Target
from wgmesh.remote import shell

MARK = shell.MARK


_RTT = re.compile(r"\btime[=<]\s*([0-9]+(?:\.[0-9]+)?)\s*ms\b")


_DEV = re.compile(r"\sdev\s+(\S+)")


_UNREACHABLE = re.compile(r"^From (\S+?):? .*?\b(Destination [A-Za-z ]+?|Time to live exceeded)\s*$", re.M)


class CheckParseError(ValueError):
    """Output of a probe script that cannot be understood."""


def probe_script(targets: Sequence[Target]) -> str:
    """scripts/probe.sh: pings every target at once. Each probe prints one block:

        @@wgmesh:ping INDEX ADDRESS
        @@wgmesh:route
        <ip -o route get ADDRESS>
        @@wgmesh:attempt N            (once per ping sent)
        <ping's output>
        @@wgmesh:result EXIT ATTEMPTS

    between `@@wgmesh:check 1` and `@@wgmesh:end`; `@@wgmesh:noping` when the node has no ping command.
    A target whose node pings this one first (`after_peer`) is pinged HEAD_START seconds later.
    """
    rows = [f"{i} {t.address} {t.address.version} {HEAD_START if t.after_peer else 0}" for i, t in enumerate(targets)]
    return shell.script("probe", FORMAT=FORMAT_VERSION, ATTEMPTS=ATTEMPTS, PING_WAIT=PING_WAIT,
                        TARGETS="\n".join(rows))


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


def _blocks(found: Iterable[shell.Section], targets: Sequence[Target]) -> dict[int, _Block]:
    blocks: dict[int, _Block] = {}
    block: _Block | None = None
    for s in found:
        if s.name == "ping":
            head = s.args
            if len(head) != 2 or not head[0].isdigit():
                raise CheckParseError(f"malformed probe line {s.marker!r}")
            index = int(head[0])
            if index >= len(targets) or head[1] != str(targets[index].address):
                raise CheckParseError(f"probe line {s.marker!r} does not match the probes sent")
            if index in blocks:
                raise CheckParseError(f"probe {index} reported twice")
            block = blocks[index] = _Block()
        elif block is not None and s.name == "route":
            block.route = list(s.lines)
        elif block is not None and s.name == "attempt":
            block.output = list(s.lines)
        elif block is not None and s.name == "result":
            block.result = _result(s.marker, s.rest)
            block = None
        else:
            block = None
    return blocks


def parse_probe_output(source: str, targets: Sequence[Target], text: str, interface: str) -> tuple[Probe, ...]:
    """The output of `probe_script(targets)` run on `source` -> one Probe per target, in target order."""
    found = shell.sections(text)
    names = [(s.name, s.rest) for s in found]
    if ("check", FORMAT_VERSION) not in names:
        raise CheckParseError("missing the check header (not wgmesh check output?)")
    if ("end", "") not in names:
        raise CheckParseError("truncated output (no end marker)")
    if ("noping", "") in names:
        raise CheckParseError("no ping command on the node (install iputils-ping)")
    blocks = _blocks(found, targets)
    return tuple(
        probe_result(source, t, b.result, "\n".join(b.route), "\n".join(b.output), interface)
        for t, b in ((t, blocks.get(i, _Block())) for i, t in enumerate(targets))
    )


def status_script(interface: str) -> str:
    """scripts/status.sh: the node's clock (seconds since the epoch), then the read of remote/read.py."""
    return shell.script("status", **shell.node_paths(interface), HOSTS="")


def parse_clock(text: str) -> int | None:
    """The node's clock from `status_script` output, or None when it is missing or garbled."""
    for s in shell.sections(text):
        if s.name == "clock":
            value = s.lines[0].strip() if s.lines else ""
            return int(value) if value.isdigit() else None
    return None
