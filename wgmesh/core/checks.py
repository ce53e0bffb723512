"""`wgmesh check`, the pure part: which nodes ping which targets, and the N x N report of the answers.

Every node pings every other node's mesh addresses and the probe address of each of its subnets. Then, for
subnet-to-subnet traffic, it pings each of those probes again from its own address inside each of its own
subnets (a source-address ping, `ping -I`): the far node must forward into its subnet and route the answer
back to the near subnet through the mesh, and the far network must send the answer back (a route, or the
far node's masquerade). Since every node does this, a node that does not forward fails the pairs whose probe
is behind it. A subnet without an explicit `probe` is pinged at its first address, which is often the node
itself or a cloud's VPC router: both answer without forwarding, so the report warns about it.
"""

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
# peer that did not know its key yet (tests/fixtures/check/aws_after_apply.txt). After a peer restarted, the side
# that still has a session sends on it until WireGuard gives up on it, 15 s after its first unanswered packet
# (KEEPALIVE_TIMEOUT + REKEY_TIMEOUT), and shakes hands again; when only that side can dial (the restarted node
# does not know where a NAT'd peer is), the pair answers after about 16 s (review B6: 10 attempts failed it).
# Working pairs answer the first ping; only dead ones take ATTEMPTS seconds.
ATTEMPTS = 20


# Of two nodes that ping each other, the later one in mesh.yaml waits this long first. Both sending their
# first packet at once makes both start a handshake at once; each then answers the other's initiation,
# which discards its own, and neither can send until WireGuard retries 5 s later (and under load the
# retries can collide again). One side going first avoids the race.
HEAD_START = 0.3


# At most WAVE probes run at once on a node (each is a few processes: the job, `ip`, `ping`); a node with more
# targets pings them in waves, each waited for. The first wave holds every peer's mesh address (targets()
# lists those first, up to 64 of them), so every handshake starts at once and the later waves, the subnets
# behind those peers, find their tunnels up. 48 lab hosts x 141 targets at once on one kernel came near its
# 32768 process ids.
WAVE = 64


# A probe the node stopped (no more retries) or never started because the check's deadline on the node had
# passed ends with this result status (coreutils `timeout`'s).
LATE_EXIT = 124


# The node stops its probes this long before the controller's deadline (at most a third of it), so that what
# it has still arrives: the check then names the probes that ran out of time instead of failing the node.
NODE_MARGIN = 5.0


def waves(targets: int) -> int:
    """How many waves a node with this many targets runs."""
    return -(-max(0, targets) // WAVE)


def wave_seconds() -> float:
    """The longest a wave takes: a probe's head start and every attempt without a reply, and some slack."""
    return HEAD_START + ATTEMPTS * (PING_WAIT + 0.5)


def node_deadline(limit: float) -> int:
    """Whole seconds the probes may take on a node whose command has `limit` seconds (at least 1)."""
    return max(1, int(limit - min(NODE_MARGIN, limit / 3)))


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
    """One address a source node pings: a mesh address of `node`, or the probe of one of its subnets; with
    `from_subnet`, that probe pinged from the source's own address inside `from_subnet`, one of its subnets."""

    node: str
    address: IPAddress
    subnet: IPNetwork | None = None
    after_peer: bool = False  # the target node pings the source first: wait HEAD_START before pinging it
    from_subnet: IPNetwork | None = None
    default_probe: bool = False  # the subnet has no `probe`: its first address stands in

    @property
    def label(self) -> str:
        if self.from_subnet is not None:
            return f"{self.from_subnet} -> {self.address}"
        return f"{self.address}" if self.subnet is None else f"{self.address} (subnet {self.subnet})"


def targets(source: Node, nodes: Iterable[Node]) -> tuple[Target, ...]:
    """What `source` pings: each other node's addresses, then its subnets' probe addresses; after all of
    those, each such probe again from each of the source's own subnets (of the same IP version)."""
    out: list[Target] = []
    subnet_to_subnet: list[Target] = []
    earlier = True  # nodes before the source in mesh order ping it first
    for n in nodes:
        if n.name == source.name:
            earlier = False
            continue
        out += [Target(n.name, a, after_peer=earlier) for a in n.addresses]
        for s in n.subnets:
            default = s.probe is None
            out.append(Target(n.name, s.probe_address, s.prefix, after_peer=earlier, default_probe=default))
            subnet_to_subnet += [
                Target(n.name, s.probe_address, s.prefix, after_peer=earlier, from_subnet=own.prefix,
                       default_probe=default)
                for own in source.subnets
                if own.prefix.version == s.prefix.version
            ]
    return tuple(out + subnet_to_subnet)


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
    from_address: IPAddress | None = None  # the source's address inside target.from_subnet, pinged from
    skipped: bool = False  # not run (the source has no address inside target.from_subnet): no failure

    def failure_line(self) -> str:
        if self.target.from_subnet is not None:
            return f"{self.source} -> {self.target.node}: {self.target.label} failed: {self.error}"
        return f"{self.source} -> {self.target.node} {self.target.label}: {self.error}"

    @property
    def counts(self) -> bool:
        """Whether this probe's answer says anything of the mesh (it ran)."""
        return not self.skipped


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
class SubnetPair:
    """Machines in `from_subnet` (behind `source`) reaching `address`, the probe of `to_subnet` (behind
    `dest`): the result of the source-address ping."""

    source: str
    from_subnet: IPNetwork
    dest: str
    to_subnet: IPNetwork
    address: IPAddress
    cell: Cell
    error: str | None = None

    @property
    def label(self) -> str:
        return f"{self.from_subnet} -> {self.address}"


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
        probes = tuple(p for p in self.probes if p.source == source and p.target.node == dest and p.counts)
        if not all(p.ok for p in probes):
            return Pair(source, dest, Cell.FAILED, None, probes)
        rtts = [p.rtt_ms for p in probes if p.rtt_ms is not None]
        return Pair(source, dest, Cell.OK, max(rtts) if rtts else None, probes)

    def pairs(self) -> list[Pair]:
        return [self.pair(s, d) for s in self.sources for d in self.nodes if s != d]

    @property
    def ok(self) -> bool:
        return not self.errors and all(p.ok for p in self.probes if p.counts)

    def failures(self) -> list[str]:
        """One line per problem: unreachable sources first, then every failed probe (a subnet-to-subnet one
        names the subnet pair: `aws -> azure: 192.168.10.0/24 -> 192.168.20.10 failed: no reply`)."""
        lines = [f"{name}: {reason}" for name, reason in self.errors.items()]
        return lines + [p.failure_line() for p in self.probes if p.counts and not p.ok]

    def subnet_pairs(self) -> list[SubnetPair]:
        """Every subnet-to-subnet probe of the checked sources, in probe order (skipped ones: not checked)."""
        out = []
        for p in self.probes:
            t = p.target
            if t.from_subnet is None or t.subnet is None:
                continue
            cell = Cell.NOT_CHECKED if p.skipped else Cell.OK if p.ok else Cell.FAILED
            out.append(SubnetPair(p.source, t.from_subnet, t.node, t.subnet, t.address, cell,
                                  None if p.ok else p.error))
        return out

    def warnings(self) -> list[str]:
        """What the check could not prove, though nothing failed: subnets pinged at their first address for
        want of a `probe`, and subnets whose node has no address inside them to ping from."""
        lines: list[str] = []
        for p in self.probes:
            t = p.target
            if t.default_probe and t.subnet is not None and t.from_subnet is None:
                lines.append(
                    f"{t.node}: subnet {t.subnet} has no probe, so check pings {t.address}, its first address. "
                    "That is often the node itself or a cloud's VPC router, which answer without forwarding: "
                    "it proves nothing about the machines behind the subnet. Set the subnet's `probe` to the "
                    "address of a machine inside it."
                )
            elif p.skipped and t.from_subnet is not None:
                lines.append(
                    f"{p.source}: no address inside its subnet {t.from_subnet} to ping from, so traffic from "
                    f"{t.from_subnet} to the other subnets was not checked."
                )
        return list(dict.fromkeys(lines))

    def suspects(self) -> list[str]:
        """Nodes with which no checked pair works, in either direction, while some other pair does: pairs in both
        directions checked (a check of one node's probes, `--target`, tells nothing of the way back)."""
        pairs = [p for p in self.pairs() if p.cell in (Cell.OK, Cell.FAILED)]
        if not any(p.cell is Cell.OK for p in pairs):
            return []
        out = []
        for n in self.nodes:
            involved = [p for p in pairs if n in (p.source, p.dest)]
            both_ways = any(p.source == n for p in involved) and any(p.dest == n for p in involved)
            if both_ways and all(p.cell is Cell.FAILED for p in involved):
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
