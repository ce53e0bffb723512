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
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from wgmesh.core.model import IPAddress, IPNetwork, Mesh, Node
from wgmesh.core.state import LiveState
from wgmesh.remote import read as live

FORMAT_VERSION = "1"
MARK = live.MARK
PING_WAIT = 1  # seconds to wait for the reply (ping -W)
# A probe with no reply is sent again, up to ATTEMPTS times: a lost packet is not a broken mesh, and a first
# handshake that failed is retried by WireGuard only after REKEY_TIMEOUT (5 s). Right after an apply, a node
# behind NAT (which only it can reach out from) answers after about 5 s when its first initiation reached a
# peer that did not know its key yet (tests/fixtures/check/aws_after_apply.txt). Working pairs answer the
# first ping; only dead ones take ATTEMPTS seconds.
ATTEMPTS = 10
# Of two nodes that ping each other, the later one in mesh.yaml waits this long first. Both sending their
# first packet at once makes both start a handshake at once; each then answers the other's initiation,
# which discards its own, and neither can send until WireGuard retries 5 s later (and under load the
# retries can collide again). One side going first avoids the race.
HEAD_START = 0.3
FRESH_SECONDS = 180  # WireGuard re-keys every 2 minutes while traffic flows: older means stale
_RTT = re.compile(r"\btime[=<]\s*([0-9]+(?:\.[0-9]+)?)\s*ms\b")
_DEV = re.compile(r"\sdev\s+(\S+)")
_UNREACHABLE = re.compile(r"^From (\S+?):? .*?\b(Destination [A-Za-z ]+?|Time to live exceeded)\s*$", re.M)


class CheckParseError(ValueError):
    """Output of a probe script that cannot be understood."""


# ---------------------------------------------------------------------------------------------- which nodes


def checked_nodes(mesh: Mesh) -> tuple[list[Node], dict[str, str]]:
    """The nodes that take part in the mesh, and {name: why not} for the others."""
    nodes: list[Node] = []
    skipped: dict[str, str] = {}
    for n in mesh.nodes:
        if n.decommission:
            skipped[n.name] = "being decommissioned"
        elif n.public_key is None:
            skipped[n.name] = "no public key yet"
        else:
            nodes.append(n)
    return nodes, skipped


# ---------------------------------------------------------------------------------------------- check: script


@dataclass(frozen=True)
class Target:
    """One address a source node pings: a mesh address of `node`, or the probe of one of its subnets."""

    node: str
    address: IPAddress
    subnet: IPNetwork | None = None
    after_peer: bool = False  # the target node pings the source first: wait HEAD_START before pinging it

    @property
    def label(self) -> str:
        return f"{self.address}" if self.subnet is None else f"{self.address} (subnet {self.subnet})"


def targets(source: Node, nodes: Iterable[Node]) -> tuple[Target, ...]:
    """What `source` pings: each other node's addresses, then its subnets' probe addresses."""
    out: list[Target] = []
    earlier = True  # nodes before the source in mesh order ping it first
    for n in nodes:
        if n.name == source.name:
            earlier = False
            continue
        out += [Target(n.name, a, after_peer=earlier) for a in n.addresses]
        out += [Target(n.name, s.probe_address, s.prefix, after_peer=earlier) for s in n.subnets]
    return tuple(out)


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


# ---------------------------------------------------------------------------------------------- check: parse


@dataclass(frozen=True)
class Probe:
    """The result of pinging one target from one node."""

    source: str
    target: Target
    ok: bool
    rtt_ms: float | None = None
    error: str | None = None
    attempts: int = 1
    device: str | None = None

    def failure_line(self) -> str:
        return f"{self.source} -> {self.target.node} {self.target.label}: {self.error}"


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


# ---------------------------------------------------------------------------------------------- check: matrix


class Cell(StrEnum):
    OK = "ok"
    FAILED = "failed"
    NOT_CHECKED = "not checked"  # the source node could not be reached or could not run the probes
    SELF = "self"


@dataclass(frozen=True)
class Pair:
    source: str
    dest: str
    cell: Cell
    rtt_ms: float | None = None  # the slowest of the pair's probes when all passed
    probes: tuple[Probe, ...] = ()


@dataclass(frozen=True)
class CheckReport:
    nodes: tuple[str, ...]  # columns: every node that takes part
    sources: tuple[str, ...]  # rows: the nodes pinged from (--target)
    probes: tuple[Probe, ...]
    errors: Mapping[str, str] = field(default_factory=dict)  # source -> why it could not be checked
    skipped: Mapping[str, str] = field(default_factory=dict)  # node -> why it is not part of the check

    def pair(self, source: str, dest: str) -> Pair:
        if source == dest:
            return Pair(source, dest, Cell.SELF)
        if source in self.errors:
            return Pair(source, dest, Cell.NOT_CHECKED)
        probes = tuple(p for p in self.probes if p.source == source and p.target.node == dest)
        if not all(p.ok for p in probes):
            return Pair(source, dest, Cell.FAILED, None, probes)
        rtts = [p.rtt_ms for p in probes if p.rtt_ms is not None]
        return Pair(source, dest, Cell.OK, max(rtts) if rtts else None, probes)

    def pairs(self) -> list[Pair]:
        return [self.pair(s, d) for s in self.sources for d in self.nodes if s != d]

    @property
    def ok(self) -> bool:
        return not self.errors and all(p.ok for p in self.probes)

    def failures(self) -> list[str]:
        """One line per problem: unreachable sources first, then every failed probe."""
        lines = [f"{name}: {reason}" for name, reason in self.errors.items()]
        return lines + [p.failure_line() for p in self.probes if not p.ok]

    def suspects(self) -> list[str]:
        """Nodes with which no checked pair works, in either direction, while some other pair does."""
        pairs = [p for p in self.pairs() if p.cell in (Cell.OK, Cell.FAILED)]
        if not any(p.cell is Cell.OK for p in pairs):
            return []
        out = []
        for n in self.nodes:
            involved = [p for p in pairs if n in (p.source, p.dest)]
            if involved and all(p.cell is Cell.FAILED for p in involved):
                out.append(n)
        return out


def check_report(
    nodes: Sequence[str],
    sources: Sequence[str],
    results: Mapping[str, tuple[Probe, ...] | str],
    skipped: Mapping[str, str] | None = None,
) -> CheckReport:
    """Gather per-source results (probes, or the reason the source failed) into the report."""
    probes: list[Probe] = []
    errors: dict[str, str] = {}
    for s in sources:
        got = results.get(s, "no result")
        if isinstance(got, str):
            errors[s] = got
        else:
            probes += got
    return CheckReport(tuple(nodes), tuple(sources), tuple(probes), errors, dict(skipped or {}))


def _probe_dict(p: Probe) -> dict[str, Any]:
    return {
        "from": p.source,
        "to": p.target.node,
        "address": str(p.target.address),
        "subnet": None if p.target.subnet is None else str(p.target.subnet),
        "ok": p.ok,
        "rtt_ms": p.rtt_ms,
        "attempts": p.attempts,
        "device": p.device,
        "error": p.error,
    }


def check_to_dict(report: CheckReport) -> dict[str, Any]:
    """The `wgmesh check --json` document."""
    return {
        "format_version": FORMAT_VERSION,
        "type": "check",
        "ok": report.ok,
        "nodes": list(report.nodes),
        "sources": list(report.sources),
        "skipped": [{"node": n, "reason": r} for n, r in report.skipped.items()],
        "errors": [{"node": n, "error": e} for n, e in report.errors.items()],
        "pairs": [
            {"from": p.source, "to": p.dest, "result": p.cell.value, "rtt_ms": p.rtt_ms} for p in report.pairs()
        ],
        "probes": [_probe_dict(p) for p in report.probes],
        "failures": report.failures(),
        "suspects": report.suspects(),
    }


# ---------------------------------------------------------------------------------------------- status


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


class Handshake(StrEnum):
    FRESH = "fresh"
    STALE = "stale"
    NEVER = "never"
    NO_PEER = "no peer"  # the node does not have the other node as a peer
    UNREACHABLE = "unreachable"  # the node could not be read
    SELF = "self"


def classify(latest_handshake: int, now: int) -> tuple[Handshake, int | None]:
    """A handshake time (epoch seconds, 0 = never) -> (class, age in seconds)."""
    if latest_handshake <= 0:
        return Handshake.NEVER, None
    age = max(0, now - latest_handshake)
    return (Handshake.FRESH if age < FRESH_SECONDS else Handshake.STALE), age


@dataclass(frozen=True)
class PeerView:
    """What `source` sees of `peer`."""

    source: str
    peer: str
    state: Handshake
    age: int | None = None
    latest_handshake: int = 0
    endpoint: str | None = None
    rx_bytes: int = 0
    tx_bytes: int = 0


@dataclass(frozen=True)
class NodeStatus:
    node: str
    error: str | None = None
    clock: int | None = None
    interface_exists: bool = False
    link_up: bool = False
    unknown_peers: tuple[str, ...] = ()  # public keys of peers that are not nodes of the mesh

    @property
    def notes(self) -> list[str]:
        if self.error is not None:
            return []
        notes = []
        if not self.interface_exists:
            notes.append("interface does not exist")
        elif not self.link_up:
            notes.append("interface is down")
        if self.unknown_peers:
            notes.append(f"{len(self.unknown_peers)} peer(s) not in the mesh: {', '.join(self.unknown_peers)}")
        return notes


@dataclass(frozen=True)
class StatusReport:
    interface: str
    nodes: tuple[str, ...]
    readings: tuple[NodeStatus, ...]  # one per source row
    views: tuple[PeerView, ...]
    skipped: Mapping[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(r.error is None for r in self.readings)

    def view(self, source: str, peer: str) -> PeerView:
        for v in self.views:
            if v.source == source and v.peer == peer:
                return v
        if source == peer:
            return PeerView(source, peer, Handshake.SELF)
        raise KeyError((source, peer))

    def errors(self) -> list[str]:
        return [f"{r.node}: {r.error}" for r in self.readings if r.error is not None]


def node_status(
    mesh: Mesh, nodes: Sequence[Node], source: str, got: LiveState | str, clock: int | None, now: int
) -> tuple[NodeStatus, list[PeerView]]:
    """One row of the status matrix. `now` is used when the node's clock is unknown."""
    others = [n for n in nodes if n.name != source]
    if isinstance(got, str):
        return NodeStatus(source, error=got), [PeerView(source, n.name, Handshake.UNREACHABLE) for n in others]
    t = clock if clock is not None else now
    views = []
    for n in others:
        peer = got.peers.get(n.public_key or "")
        if peer is None:
            views.append(PeerView(source, n.name, Handshake.NO_PEER))
            continue
        state, age = classify(peer.latest_handshake, t)
        views.append(
            PeerView(source, n.name, state, age, peer.latest_handshake, peer.endpoint, peer.rx_bytes, peer.tx_bytes)
        )
    known = {n.public_key for n in mesh.nodes if n.public_key}
    unknown = tuple(sorted(k for k in got.peers if k not in known))
    return NodeStatus(source, None, clock, got.interface_exists, got.link_up, unknown), views


def status_report(
    mesh: Mesh,
    nodes: Sequence[Node],
    sources: Sequence[str],
    results: Mapping[str, LiveState | str],
    clocks: Mapping[str, int | None],
    now: int,
    skipped: Mapping[str, str] | None = None,
) -> StatusReport:
    readings: list[NodeStatus] = []
    views: list[PeerView] = []
    for s in sources:
        reading, row = node_status(mesh, nodes, s, results.get(s, "no result"), clocks.get(s), now)
        readings.append(reading)
        views += row
    return StatusReport(
        mesh.interface, tuple(n.name for n in nodes), tuple(readings), tuple(views), dict(skipped or {})
    )


def status_to_dict(report: StatusReport) -> dict[str, Any]:
    """The `wgmesh status --json` document."""
    by_source: dict[str, list[PeerView]] = {}
    for v in report.views:
        by_source.setdefault(v.source, []).append(v)
    return {
        "format_version": FORMAT_VERSION,
        "type": "status",
        "ok": report.ok,
        "interface": report.interface,
        "fresh_seconds": FRESH_SECONDS,
        "nodes": list(report.nodes),
        "skipped": [{"node": n, "reason": r} for n, r in report.skipped.items()],
        "readings": [
            {
                "node": r.node,
                "error": r.error,
                "clock": r.clock,
                "interface_exists": r.interface_exists if r.error is None else None,
                "link_up": r.link_up if r.error is None else None,
                "unknown_peers": list(r.unknown_peers),
                "peers": [
                    {
                        "peer": v.peer,
                        "handshake": v.state.value,
                        "handshake_age_s": v.age,
                        "latest_handshake": v.latest_handshake or None,
                        "endpoint": v.endpoint,
                        "rx_bytes": v.rx_bytes,
                        "tx_bytes": v.tx_bytes,
                    }
                    for v in by_source.get(r.node, [])
                ],
            }
            for r in report.readings
        ],
        "errors": report.errors(),
    }


# ---------------------------------------------------------------------------------------------- formatting


def format_age(seconds: int | None) -> str:
    """12s, 3m 05s, 2h 07m, 4d 03h."""
    if seconds is None:
        return "never"
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    if seconds < 86400:
        return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d {seconds % 86400 // 3600:02d}h"


def format_bytes(n: int) -> str:
    """1023 B, 1.5 KiB, 12.0 MiB."""
    if n < 1024:
        return f"{n} B"
    value = float(n)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        value /= 1024
        if value < 1024 or unit == "TiB":
            return f"{value:.1f} {unit}"
    raise AssertionError("unreachable")


def format_rtt(ms: float | None) -> str:
    if ms is None:
        return "ok"
    return f"ok {ms:.2f} ms" if ms < 1 else f"ok {ms:.1f} ms" if ms < 100 else f"ok {ms:.0f} ms"
