"""Hole punching: which pairs of nodes without an endpoint talk directly, which through the relay. Pure.

Two nodes behind NATs they do not control start on the relay (core/relay.py). Each NAT maps the node's UDP port to
a public address and port, which the nodes with an endpoint see in `wg show IF dump` (the endpoint of the NAT'd
node's peer entry, with a recent handshake). When every public node that sees a node sees it at the same address
and port, the NAT maps endpoint-independently (a "cone" NAT, Linux's default MASQUERADE): a packet the node sends
to anyone leaves from that port. Two such nodes that are each given the other's observed endpoint, with
keepalive, open a direct path: each one's first packets open its own NAT for the other's (UDP hole punching).
When two public nodes see different ports (or addresses) for the same node, its NAT picks a new port for every
destination (a symmetric NAT, `MASQUERADE --random-fully`): a direct path never opens, and its pairs stay on the
relay. Telling the two apart takes two sightings: while only one of two (or more) readable public nodes has seen a
node, its endpoint is not known yet and its pairs wait on the relay (a lone sighting of a symmetric NAT looks like a
cone). With a single readable public node, its one sighting is all there is.

A pair of nodes without an endpoint is, on each of the two nodes:
- RELAY:  no peer entry for the other; its addresses ride on the relay's entry (nothing observed yet, or a
          symmetric NAT on either side);
- PUNCH:  a peer entry for the other without addresses (so traffic still goes via the relay), with keepalive and
          the other's observed endpoint, set at runtime with `wg set` (never in the config file, never in the
          `wg syncconf` input: syncconf would overwrite what the tunnel learns). Its handshakes prove the path;
- DIRECT: that entry carries the other's addresses: the relay is out of the pair's way. A pair is direct while
          its direct entry has a fresh handshake (within FRESH seconds of the node's clock); one that goes stale
          moves back to the relay (and punches again). So does one whose entry still points where the other was
          while the public nodes see the other elsewhere now (its NAT gave it a new address or port: a new
          public IP, a new listen port), once the pair has missed a rekey (its handshake older than MISSED_REKEY):
          nothing reaches the old address, and waiting for FRESH would leave the pair dead for minutes with a
          plan of "No changes". (A direct entry that roamed to a new address while the public nodes still see the
          old one is the other way round, and fine: packets came in on the direct path.)

The decision is made from what the plan read of every node, once per plan, the same on both nodes of a pair: it
never flaps on a pair that is fine, because a direct path with keepalive has a handshake at least every ~2
minutes (WireGuard rekeys after 120 s) and FRESH is 5 minutes.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

from wgmesh.core.model import Mesh, Node
from wgmesh.core.relay import relaying

if TYPE_CHECKING:  # (render imports this module: it needs no live state)
    from wgmesh.core.state import LiveState

FRESH = 300  # seconds: a handshake at most this old proves a path (and an observed endpoint) current
# seconds: a direct path with keepalive shakes hands again at least every ~165 s (WireGuard: REKEY_AFTER_TIME 120 s
# for the initiator, REJECT_AFTER_TIME - KEEPALIVE - REKEY_TIMEOUT for the responder); older is a missed rekey
MISSED_REKEY = 180
PUNCH_KEEPALIVE = 25  # seconds: the keepalive of a direct entry when the node's own keepalive is off


class PairPath(StrEnum):
    RELAY = "relay"
    PUNCH = "punch"
    DIRECT = "direct"


@dataclass(frozen=True)
class Seen:
    """Where the public nodes see a NAT'd node: `endpoints` observer -> ADDRESS:PORT (fresh handshakes only), and
    how many sightings make the endpoint known (`needed`: two, or one when only one public node could be read)."""

    endpoints: Mapping[str, str]
    needed: int = 1

    @property
    def endpoint(self) -> str | None:
        """The one endpoint every observer sees, once enough have seen it; else None (too few sightings, or they
        disagree)."""
        found = set(self.endpoints.values())
        return next(iter(found)) if len(found) == 1 and len(self.endpoints) >= self.needed else None

    @property
    def symmetric(self) -> bool:
        return len(set(self.endpoints.values())) > 1

    def describe(self) -> str:
        return ", ".join(f"{who} sees {ep}" for who, ep in sorted(self.endpoints.items()))


@dataclass(frozen=True)
class Punching:
    """The mesh's hole-punching decisions (`punching`). Empty: every pair of NAT'd nodes on the relay."""

    paths: Mapping[frozenset[str], PairPath] = field(default_factory=dict)  # pairs that are not RELAY
    seen: Mapping[str, Seen] = field(default_factory=dict)  # NAT'd node -> where the public nodes see it
    relay: str | None = None

    def path(self, a: str, b: str) -> PairPath:
        return self.paths.get(frozenset((a, b)), PairPath.RELAY)

    def learned(self, name: str) -> str | None:
        """The endpoint the public nodes agree on for NAT'd node `name`, or None."""
        seen = self.seen.get(name)
        return seen.endpoint if seen is not None else None

    def notes(self) -> list[str]:
        """What a plan says of the mesh's NAT'd nodes: the symmetric ones, and the direct pairs."""
        out = []
        for name, seen in self.seen.items():
            if seen.symmetric:
                out.append(f"{name} is behind a symmetric NAT ({seen.describe()}): no direct path can be punched; "
                           f"its pairs with other nodes without an endpoint stay on relay {self.relay}")
        return out

    def __bool__(self) -> bool:
        return bool(self.paths)


NONE = Punching()


def _endpoint(text: str | None) -> str | None:
    """An endpoint as `wg show dump` prints it (ADDRESS:PORT, [V6]:PORT), or None for anything else: what a node
    says is data, and it ends up as a `wg set` argument on another node."""
    if not text:
        return None
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        return None
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        ip = ipaddress.ip_address(bare)
    except ValueError:
        return None
    return text if (ip.version == 6) == (bare != host) else None


def _fresh(handshake: int, clock: int | None) -> bool:
    return handshake > 0 and clock is not None and clock - handshake <= FRESH


def observe(mesh: Mesh, states: Mapping[str, LiveState]) -> dict[str, Seen]:
    """For each enrolled node without an endpoint: where the nodes with an endpoint see it (fresh only)."""
    public = [n for n in mesh.nodes if n.enrolled and n.endpoint is not None and n.name in states]
    needed = min(2, len(public))
    out: dict[str, Seen] = {}
    for node in mesh.nodes:
        if not node.enrolled or node.endpoint is not None or not node.public_key:
            continue
        seen = {}
        for p in public:
            live = states[p.name]
            lp = live.peers.get(node.public_key)
            endpoint = _endpoint(lp.endpoint) if lp is not None else None
            if lp is not None and endpoint and _fresh(lp.latest_handshake, live.clock):
                seen[p.name] = endpoint
        out[node.name] = Seen(seen, needed)
    return out


def _direct_handshake(a: Node, b: Node, states: Mapping[str, LiveState]) -> bool:
    """Either side of the pair has a fresh handshake on its own entry for the other: the direct path works."""
    for this, other in ((a, b), (b, a)):
        live = states.get(this.name)
        if live is None or other.public_key is None:
            continue
        lp = live.peers.get(other.public_key)
        if lp is not None and _fresh(lp.latest_handshake, live.clock):
            return True
    return False


def _left_behind(a: Node, b: Node, states: Mapping[str, LiveState], seen: Mapping[str, Seen]) -> bool:
    """Either side's entry for the other points where the other was, while the public nodes see it elsewhere now,
    and the pair has missed a rekey: the direct path lost the other when its NAT mapping changed."""
    for this, other in ((a, b), (b, a)):
        live = states.get(this.name)
        learned = seen[other.name].endpoint if other.name in seen else None
        if live is None or other.public_key is None or learned is None or live.clock is None:
            continue
        lp = live.peers.get(other.public_key)
        endpoint = _endpoint(lp.endpoint) if lp is not None else None
        if lp is not None and endpoint is not None and endpoint != learned \
                and live.clock - lp.latest_handshake > MISSED_REKEY:
            return True
    return False


def punching(mesh: Mesh, results: Mapping[str, LiveState | str]) -> Punching:
    """The path of every pair of enrolled nodes without an endpoint, from what the plan read (`results`: each
    node's state, or why it could not be read)."""
    relay = relaying(mesh)
    if not relay.active:
        return NONE
    states = {name: got for name, got in results.items() if not isinstance(got, str)}  # str: why it was not read
    seen = observe(mesh, states)
    paths: dict[frozenset[str], PairPath] = {}
    nat = relay.nat
    for i, a in enumerate(nat):
        for b in nat[i + 1:]:
            if _direct_handshake(a, b, states) and not _left_behind(a, b, states, seen):
                paths[frozenset((a.name, b.name))] = PairPath.DIRECT
            elif all(seen.get(n.name) is not None and seen[n.name].endpoint is not None for n in (a, b)):
                paths[frozenset((a.name, b.name))] = PairPath.PUNCH
    assert relay.relay is not None
    return Punching(paths, seen, relay.relay.name)

