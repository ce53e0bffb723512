"""`wgmesh status`, the pure part: handshake classes and the per-node report of what `wg show` says of each peer."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from wgmesh.core.model import Mesh, Node
from wgmesh.core.punch import FRESH as PUNCH_FRESH
from wgmesh.core.relay import relaying
from wgmesh.core.state import LivePeer, LiveState

FRESH_SECONDS = 180  # WireGuard re-keys every 2 minutes while traffic flows: older means stale


class Handshake(StrEnum):
    FRESH = "fresh"
    STALE = "stale"
    NEVER = "never"
    NO_PEER = "no peer"  # the node does not have the other node as a peer
    UNREACHABLE = "unreachable"  # the node could not be read
    SELF = "self"


# seconds after an apply by which a live pair has shaken hands again (WireGuard rekeys a session in use every
# 120-165 s): a handshake older than the apply proves nothing of it, but says nothing against it before this
REKEY_DUE = 180


def classify(latest_handshake: int, now: int) -> tuple[Handshake, int | None]:
    """A handshake time (epoch seconds, 0 = never) -> (class, age in seconds)."""
    if latest_handshake <= 0:
        return Handshake.NEVER, None
    age = max(0, now - latest_handshake)
    return (Handshake.FRESH if age < FRESH_SECONDS else Handshake.STALE), age


@dataclass(frozen=True)
class PeerView:
    """What `source` sees of `peer`: directly, or, for a pair that goes through the relay (`via`), what it sees
of the relay (its leg of the path; the relay's view of `peer` is the other leg)."""

    source: str
    peer: str
    state: Handshake
    age: int | None = None
    latest_handshake: int = 0
    endpoint: str | None = None
    rx_bytes: int = 0
    tx_bytes: int = 0
    via: str | None = None  # the relay: `source` reaches `peer` through it (core/relay.py)
    punched: bool = False  # neither has an endpoint and the pair is direct: hole punched (core/punch.py)
    before_apply: bool = False  # the handshake is older than `source`'s last apply: it proves nothing of it
    # no handshake since `source`'s last apply (one from before it, or none), and that apply was under REKEY_DUE
    # seconds ago: a live pair has not had to shake hands (again) yet
    apply_recent: bool = False
    keepalive: int = 0  # the entry's persistent keepalive (0: off): an idle pair without it never shakes hands

    @property
    def path(self) -> str:
        """`direct`, `hole punched`, `via relay aws`, or empty where there is no path to speak of (self,
        unreachable, no peer)."""
        if self.state in (Handshake.SELF, Handshake.UNREACHABLE, Handshake.NO_PEER):
            return ""
        if self.via:
            return f"via relay {self.via}"
        return "hole punched" if self.punched else "direct"


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
    hints: tuple[str, ...] = ()  # what to check for pairs that never completed a handshake

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
    relay = relaying(mesh)
    me = next((n for n in nodes if n.name == source), None)
    views = []
    for n in others:
        peer = got.peers.get(n.public_key or "")
        via = relay.path(me, n) if me is not None else None
        # a pair of nodes without an endpoint is direct (hole punched) when its own entry carries the addresses;
        # else it rides on the relay's, whether or not it has an entry of its own (punching: core/punch.py)
        punched = via is not None and peer is not None and bool(set(n.allowed_ips) & peer.allowed_ips)
        if punched:
            via = None
        if via is not None and relay.relay is not None:
            peer = got.peers.get(relay.relay.public_key or "")
            if peer is not None and not _carries(peer, n):
                peer = None  # the relay's entry does not route n's addresses: no path through it either
        if peer is None:
            views.append(PeerView(source, n.name, Handshake.NO_PEER))
            continue
        state, age = classify(peer.latest_handshake, t)
        before = got.applied is not None and 0 < peer.latest_handshake < got.applied
        # no handshake since an apply under REKEY_DUE ago (one from before it, or none at all: a first initiation
        # may have gone out before the other side was up, and WireGuard retries): none is due yet
        unproven = before or peer.latest_handshake <= 0
        recent = unproven and got.applied is not None and t - got.applied < REKEY_DUE
        views.append(
            PeerView(source, n.name, state, age, peer.latest_handshake, peer.endpoint, peer.rx_bytes, peer.tx_bytes,
                     via, punched, before, recent, peer.persistent_keepalive or 0)
        )
    known = {n.public_key for n in mesh.nodes if n.public_key}
    unknown = tuple(sorted(k for k in got.peers if k not in known))
    return NodeStatus(source, None, clock, got.interface_exists, got.link_up, unknown), views


def _carries(entry: LivePeer, node: Node) -> bool:
    """Whether a peer entry routes every mesh address of `node`: the relay's entry on a node without an endpoint
    must, for that node to reach `node` through the relay (one narrowed by hand, or left from a hole punching
    whose direct entry was removed, does not)."""
    return all(any(a in net for net in entry.allowed_ips) for a in node.addresses)


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
        mesh.interface, tuple(n.name for n in nodes), tuple(readings), tuple(views), dict(skipped or {}),
        handshake_hints(nodes, views, relaying(mesh).relay is not None),
    )


def _tried(v: PeerView | None) -> bool:
    """The side `v` shows it tried to reach the other: with no handshake ever, it sent something (handshake
    initiations count in the sent bytes); with only one from before the last apply, its keepalive has been due
    since (without keepalive, an idle pair has no reason to shake hands again)."""
    if v is None or v.state is Handshake.UNREACHABLE:
        return False
    if v.latest_handshake == 0:
        return v.tx_bytes > 0
    return v.before_apply and not v.apply_recent and v.keepalive > 0


def handshake_hints(nodes: Sequence[Node], views: Sequence[PeerView], relayed: bool = False) -> tuple[str, ...]:
    """For each pair that never completed a handshake (seen from both sides, or from the one side that could be
    read), which node's UDP port must be reachable from which: the most common first-day failure is a security
    group, NSG, VPC firewall, ufw or firewalld dropping it. A pair where neither node has an endpoint goes through
    the relay (`relayed`): its legs, pairs with the relay, get their own hints."""
    # a handshake from before an apply proves nothing of it, but only once a live pair must have shaken hands
    # again (REKEY_DUE after the apply): until then a pair that carries traffic gets no firewall hint
    before = {(v.source, v.peer) for v in views if v.before_apply and not v.apply_recent}
    seen = {(v.source, v.peer): (Handshake.NEVER if (v.source, v.peer) in before else v.state) for v in views}
    hints = []
    recent = sorted({v.source for v in views if v.apply_recent})
    if recent:
        hints.append(f"the last apply on {', '.join(recent)} was under {REKEY_DUE // 60} minutes ago: a handshake "
                     "from before it proves nothing of what it changed, and a live pair shakes hands again within "
                     f"{REKEY_DUE // 60} minutes: run status again then (or `wgmesh check` now)")
    punched = {frozenset((v.source, v.peer)) for v in views if v.punched}
    by_pair = {(v.source, v.peer): v for v in views}

    def sides(a: Node, b: Node) -> list[PeerView]:
        """What a shows of b and b of a, where read."""
        return [v for k in ((a.name, b.name), (b.name, a.name)) if (v := by_pair.get(k)) is not None]
    for i, a in enumerate(nodes):
        for b in nodes[i + 1:]:
            dialed = [n for n in (a, b) if n.endpoint is not None]
            if not dialed and relayed:
                pair = {seen.get((a.name, b.name)), seen.get((b.name, a.name))} - {None, Handshake.UNREACHABLE}
                # as old as plan needs to see it (punch.FRESH): the hint's plan and apply then do something
                quiet = all(v.latest_handshake <= 0 or (v.age or 0) > PUNCH_FRESH for v in sides(a, b))
                if frozenset((a.name, b.name)) in punched and pair and pair <= {Handshake.NEVER, Handshake.STALE} \
                        and quiet:
                    # none at all: since the interface came up (a reboot), not "for 5 minutes"
                    since = "since the interface came up" if any(v.latest_handshake <= 0 for v in sides(a, b)) \
                        else f"for {PUNCH_FRESH // 60} minutes"
                    hints.append(f"{a.name} <-> {b.name}: hole punched, but no handshake on the direct path {since}: "
                                 "run wgmesh plan and apply (it punches again, or moves the pair back to the relay)")
                continue
            states = {seen.get((a.name, b.name)), seen.get((b.name, a.name))} - {None, Handshake.UNREACHABLE}
            if states != {Handshake.NEVER}:
                continue
            if any(v.apply_recent for v in sides(a, b)):
                continue  # no handshake due yet since an apply on either side: the "under 3 minutes" line says so
            if not any(_tried(v) for v in sides(a, b)):
                continue  # an idle pair: WireGuard shakes hands only when there is something to send
            # a handshake older than the last apply on that side counts as none: it proves nothing of the change
            never = ("no handshake since the last apply" if {(a.name, b.name), (b.name, a.name)} & before
                     else "never a handshake")
            if not dialed:
                hints.append(f"{a.name} <-> {b.name}: {never}, and neither has an endpoint: "
                             f"they can only meet through a relay, and no node has an endpoint to relay through")
                continue
            ports = " and ".join(
                f"{n.name}'s UDP port {n.endpoint.port if n.endpoint else n.listen_port} must be reachable from "
                f"{(b if n is a else a).name}" for n in dialed)
            hints.append(f"{a.name} <-> {b.name}: {never}: {ports} (check security groups, NSGs, "
                         f"VPC firewalls, ufw or firewalld on the way)")
    return tuple(hints)
