"""Relays: how a pair of nodes where neither has an endpoint reaches each other. Pure.

Two nodes behind NATs they do not control can never dial each other. Plain WireGuard routes them through a node
that both can dial, the relay R (the way netmaker relays and Kilo locations do):
- on a node A without an endpoint, R's peer entry carries R's own addresses and subnets *and* those of every
  other node without an endpoint; those nodes get no peer entry of their own on A (an address sits on one peer
  of an interface only: the last write wins, and WireGuard drops what arrives from a peer with a source address
  that belongs to another one);
- R has every node as a peer anyway, and forwards between them: forwarding on, and wgmesh's FORWARD accept rules
  in and out of the mesh interface (core/routing.py), even when R routes no subnets.

The relay is `mesh.relay` when it names an enrolled node with an endpoint, else the first enrolled node with an
endpoint in mesh.yaml: deterministic, and removing the relay from mesh.yaml re-routes through the next one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from wgmesh.core.model import Mesh, Node


@dataclass(frozen=True)
class Relaying:
    """The mesh's relay and the nodes whose pairs go through it."""

    relay: Node | None  # None: no enrolled node has an endpoint (nothing can relay)
    nat: tuple[Node, ...]  # the enrolled nodes without an endpoint, in mesh.yaml order

    @property
    def active(self) -> bool:
        """Whether the relay forwards anything: it has at least one pair of nodes to carry."""
        return self.relay is not None and len(self.nat) >= 2

    def through_relay(self, node: Node) -> tuple[Node, ...]:
        """The nodes that `node` reaches through the relay (empty for a node with an endpoint)."""
        if self.relay is None or node.endpoint is not None:
            return ()
        return tuple(n for n in self.nat if n.name != node.name)

    def relayed_pairs(self) -> list[tuple[str, str]]:
        """Every pair that goes through the relay, in mesh.yaml order."""
        if not self.active:
            return []
        return [(a.name, b.name) for i, a in enumerate(self.nat) for b in self.nat[i + 1:]]

    def path(self, a: Node, b: Node) -> str | None:
        """The relay's name when the pair a-b goes through it, else None (direct, or no way at all)."""
        if self.relay is None or a.endpoint is not None or b.endpoint is not None:
            return None
        return self.relay.name


def relay_node(mesh: Mesh) -> Node | None:
    """`mesh.relay` when it names an enrolled node with an endpoint, else the first such node in mesh.yaml."""
    candidates = [n for n in mesh.nodes if n.enrolled and n.endpoint is not None]
    chosen = next((n for n in candidates if n.name == mesh.relay), None) if mesh.relay else None
    return chosen or (candidates[0] if candidates else None)


def relaying(mesh: Mesh) -> Relaying:
    return Relaying(relay_node(mesh), tuple(n for n in mesh.nodes if n.enrolled and n.endpoint is None))


def relay_notes(mesh: Mesh, node: Node, direct: Sequence[str] = ()) -> list[str]:
    """What a plan says of relaying on `node`: whom it reaches through the relay, or whom it relays for. `direct`:
    the nodes without an endpoint that `node` reaches directly (hole punched: core/punch.py)."""
    r = relaying(mesh)
    if r.relay is None or not r.active:
        return []
    if node.name == r.relay.name:
        return [f"relay for the nodes without an endpoint ({_names(r.nat)}): forwards between them on "
                f"{mesh.interface} (forwarding on, FORWARD accept)"]
    via = [n for n in r.through_relay(node) if n.name not in direct]
    notes = [f"reaches {', '.join(direct)} directly (hole punched)"] if direct else []
    if via:
        notes.append(f"reaches {_names(via)} via relay {r.relay.name} (neither side has an endpoint; their "
                     f"addresses ride on peer {r.relay.name})")
    return notes


def _names(nodes: Sequence[Node]) -> str:
    names = [n.name for n in nodes]
    return ", ".join(names[:8]) + (f" and {len(names) - 8} more" if len(names) > 8 else "")
