"""`wgmesh check` and `wgmesh status`, the pure part: probe scripts, their parsers and the N x N matrices.

check: every node runs one script that pings, in parallel, every other node's mesh addresses and the probe
address of each subnet routed through that node (`Subnet.probe_address`). Each ping writes to its own file in
a temporary folder; after `wait` the script prints them in order behind marker lines, so output of parallel
jobs never interleaves. The script also asks `ip route get` which device each probe leaves by: an answer
that did not come through the mesh interface proves nothing about the mesh. A subnet-to-subnet target
(`Target.from_subnet`) is pinged from the node's own address inside that subnet, which the script finds with
`ip addr show to PREFIX`; a node without one skips the probe (`Probe.skipped`; core/checks.py warns).
(scripts/probe.sh)

status: what every node's `wg show` says of each peer (handshake age, endpoint, bytes), with the node's own
clock read in the same round trip so ages do not depend on the controller's clock.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from wgmesh.core.checks import (
    ATTEMPTS,
    FORMAT_VERSION,
    HEAD_START,
    LATE_EXIT,
    PING_WAIT,
    WAVE,
    Probe,
    Target,
    wave_seconds,
)
from wgmesh.core.model import IPAddress
from wgmesh.remote import shell

MARK = shell.MARK


_RTT = re.compile(r"\btime[=<]\s*([0-9]+(?:\.[0-9]+)?)\s*ms\b")


_DEV = re.compile(r"\sdev\s+(\S+)")


_UNREACHABLE = re.compile(r"^From (\S+?):? .*?\b(Destination [A-Za-z ]+?|Time to live exceeded)\s*$", re.M)


class CheckParseError(ValueError):
    """Output of a probe script that cannot be understood."""


def probe_script(targets: Sequence[Target], deadline: int = 0) -> str:
    """scripts/probe.sh: pings the targets in parallel, WAVE at a time. Each probe prints one block:

        @@wgmesh:ping INDEX ADDRESS
        @@wgmesh:source SOURCE        (subnet-to-subnet: the node's address inside target.from_subnet)
        @@wgmesh:route
        <ip -o route get ADDRESS [from SOURCE]>
        @@wgmesh:attempt N            (once per ping sent)
        <ping's output>
        @@wgmesh:result EXIT ATTEMPTS

    between `@@wgmesh:check 1` and `@@wgmesh:end` (`@@wgmesh:wave N` lines before them mark the waves started);
    `@@wgmesh:noping` when the node has no ping command; `@@wgmesh:nosource PREFIX` in place of source, route
    and attempts when the node has no address inside target.from_subnet. A target whose node pings this one
    first (`after_peer`) is pinged HEAD_START seconds later. `deadline`: whole seconds the probes may take on
    the node (0: no limit); past it a probe is not retried and no wave starts (`result LATE_EXIT N`).
    """
    rows = [
        f"{i} {t.address} {t.address.version} {HEAD_START if t.after_peer else 0} {t.from_subnet or '-'}"
        for i, t in enumerate(targets)
    ]
    return shell.script("probe", FORMAT=FORMAT_VERSION, ATTEMPTS=ATTEMPTS, PING_WAIT=PING_WAIT, WAVE=WAVE,
                        WAVE_TICKS=WAVE_TICKS, DEADLINE=max(0, deadline), LATE=LATE_EXIT, TARGETS="\n".join(rows))


_ENOBUFS = "No buffer space available"


# A wave's probes still running after this many quarter seconds (longer than their attempts can take) are
# stopped by the script.
WAVE_TICKS = int(4 * (wave_seconds() + 5))


def _reason(exit_status: int, output: str) -> str:
    """Why a ping failed, in ping's own words where it said something."""
    m = _UNREACHABLE.search(output)
    if m:
        return f"{m.group(2).lower()} (from {m.group(1)})"
    said = [line.strip() for line in output.splitlines() if line.strip().startswith("ping:")]
    if said:
        reason = said[-1].removeprefix("ping:").strip()[:200]
        if _ENOBUFS in reason:  # the lab's 48 hosts on one kernel overflowed its (shared) ARP table
            reason += (" (the kernel dropped the packet: a full neighbour table? see `dmesg` and "
                       "net.ipv4.neigh.default.gc_thresh3)")
        return reason
    if exit_status == 1:
        return "no reply"
    return f"ping exited with status {exit_status}"


def _rtt(output: str) -> float | None:
    m = _RTT.search(output)
    if m is None:
        return None
    rtt = float(m.group(1))
    return rtt if math.isfinite(rtt) else None  # (a node's `time=` of 400 digits: no round trip, and no JSON)


def probe_result(
    source: str, target: Target, result: tuple[int, int] | None, route: str, output: str, interface: str,
    *, from_address: IPAddress | None = None, no_source: bool = False,
) -> Probe:
    """One probe from its result (ping's exit status, attempts), `ip route get` and the last ping's output.
    `from_address`: the address a subnet-to-subnet probe was sent from; `no_source`: the node had none."""
    if no_source and target.from_subnet is not None:
        return Probe(source, target, False, None, f"{source} has no address inside {target.from_subnet}", 0,
                     skipped=True)
    m = _DEV.search(route)
    dev = m.group(1) if m else None
    if result is None:
        return Probe(source, target, False, None, "the probe did not finish", 0, dev, from_address)
    exit_status, attempts = result
    if exit_status == LATE_EXIT:
        error = ("no reply before the check's deadline on the node" if attempts else
                 "not sent: the check's deadline on the node had passed") + " (--command-timeout)"
        return Probe(source, target, False, None, error, attempts, dev, from_address)
    if exit_status == 0:
        if dev is not None and dev != interface:
            return Probe(source, target, False, _rtt(output), f"answered, but routed through {dev}, not {interface}",
                         attempts, dev, from_address)
        return Probe(source, target, True, _rtt(output), None, attempts, dev, from_address)
    error = _reason(exit_status, output)
    if dev is not None and dev != interface:
        error = f"routed through {dev}, not {interface} ({error})"
    return Probe(source, target, False, None, error, attempts, dev, from_address)


@dataclass
class _Block:
    route: list[str] = field(default_factory=list)
    output: list[str] = field(default_factory=list)  # of the last attempt
    result: tuple[int, int] | None = None
    from_address: IPAddress | None = None
    no_source: bool = False


def _source(marker: str, rest: str, target: Target) -> IPAddress:
    """The address a subnet-to-subnet probe was sent from: an address inside the target's from_subnet."""
    try:
        address = ipaddress.ip_address(rest.strip())
    except ValueError:
        raise CheckParseError(f"malformed source line {marker!r}") from None
    subnet = target.from_subnet
    if subnet is None or address.version != subnet.version or address not in subnet:
        raise CheckParseError(f"source line {marker!r} does not match the probes sent")
    return address


def _result(line: str, rest: str) -> tuple[int, int]:
    fields = rest.split()
    if len(fields) != 2 or not all(f.isdigit() and len(f) <= 10 for f in fields):
        raise CheckParseError(f"malformed result line {line!r}")
    return int(fields[0]), int(fields[1])


def _blocks(found: Iterable[shell.Section], targets: Sequence[Target]) -> dict[int, _Block]:
    blocks: dict[int, _Block] = {}
    block: _Block | None = None
    target: Target | None = None
    for s in found:
        if s.name == "ping":
            head = s.args
            if len(head) != 2 or not head[0].isdigit() or len(head[0]) > 10:
                raise CheckParseError(f"malformed probe line {s.marker!r}")
            index = int(head[0])
            if index >= len(targets) or head[1] != str(targets[index].address):
                raise CheckParseError(f"probe line {s.marker!r} does not match the probes sent")
            if index in blocks:
                raise CheckParseError(f"probe {index} reported twice")
            block = blocks[index] = _Block()
            target = targets[index]
        elif block is not None and target is not None and s.name == "source":
            block.from_address = _source(s.marker, s.rest, target)
        elif block is not None and s.name == "nosource":
            block.no_source = True
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
    """The output of `probe_script(targets)` run on `source` -> one Probe per target, in target order; whatever
    the node printed, that or a CheckParseError (the node's error, never the run's)."""
    try:
        return _parse_probe_output(source, targets, text, interface)
    except CheckParseError:
        raise
    except shell.UNFORESEEN as e:
        raise CheckParseError(shell.unforeseen(e)) from None


def _parse_probe_output(source: str, targets: Sequence[Target], text: str, interface: str) -> tuple[Probe, ...]:
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
        probe_result(source, t, b.result, "\n".join(b.route), "\n".join(b.output), interface,
                     from_address=b.from_address, no_source=b.no_source)
        for t, b in ((t, blocks.get(i, _Block())) for i, t in enumerate(targets))
    )


def status_script(interface: str, deadline: float | None = None) -> str:
    """scripts/status.sh: the node's clock (seconds since the epoch), then the read of remote/read.py (which the
    node stops itself a little after `deadline`, the controller's)."""
    return shell.script("status", **shell.node_paths(interface), HOSTS="", STOP_AFTER=shell.stop_after(deadline))


def parse_clock(text: str) -> int | None:
    """The node's clock from `status_script` output, or None when it is missing or garbled."""
    for s in shell.sections(text):
        if s.name == "clock":
            value = s.lines[0].strip() if s.lines else ""
            return int(value) if value.isdigit() and len(value) <= 20 else None
    return None
