"""`wgmesh check`, the pure part: which nodes ping which targets, and the N x N report of the answers."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from wgmesh.core.model import IPAddress, IPNetwork, Mesh, Node

FORMAT_VERSION = "1"


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
