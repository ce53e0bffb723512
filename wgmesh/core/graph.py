"""`wgmesh graph`, the pure part: the mesh as a picture's data (nodes, pairs, paths, handshake health).

- A node carries its addresses and subnets; one without an endpoint is behind NAT; one without a public key
  is drawn without pairs (not enrolled); decommissioned nodes are left out.
- Every pair of enrolled nodes is one edge. Its path, from mesh.yaml: `direct` when at least one of the two has
  an endpoint (the other dials it); `relayed` when neither has one, through the relay of core/relay.py
  (`mesh.relay`, else the first enrolled node with an endpoint); `none` when no node has an endpoint at all.
- With live data (core/status.py's report of what each node's `wg show` says of each peer), a pair's health is
  the better of what its two nodes see of each other (fresh < 3 min, stale, never, unknown when neither node
  could be read), and its path is `direct` whenever that direct handshake is fresh (a hole-punched NAT pair
  too); a relayed pair otherwise takes the health of its worse relay leg.
The views (views/graph.py) turn a Graph into Mermaid or Graphviz text.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from itertools import combinations

from wgmesh.core.model import Mesh, Node
from wgmesh.core.relay import Relaying, relaying
from wgmesh.core.status import Handshake, StatusReport


class PathKind(StrEnum):
    DIRECT = "direct"
    RELAYED = "relayed"
    NONE = "none"  # neither node has an endpoint and no node could relay


class Health(StrEnum):
    FRESH = "fresh"
    STALE = "stale"
    NEVER = "never"
    UNKNOWN = "unknown"  # neither side could be read, or neither has the other as a peer


_RANK = {Health.FRESH: 3, Health.STALE: 2, Health.NEVER: 1, Health.UNKNOWN: 0}
_FROM_HANDSHAKE = {Handshake.FRESH: Health.FRESH, Handshake.STALE: Health.STALE, Handshake.NEVER: Health.NEVER}


@dataclass(frozen=True)
class GraphNode:
    name: str
    addresses: tuple[str, ...]
    subnets: tuple[str, ...]
    nat: bool  # no endpoint: behind NAT (it dials out; nobody dials it)
    enrolled: bool
    reachable: bool | None = None  # live: could the node be read (None: not live)


@dataclass(frozen=True)
class Edge:
    a: str
    b: str
    path: PathKind
    relay: str | None = None  # the relay of a relayed pair
    health: Health | None = None  # live only
    age: int | None = None  # live: seconds since the pair's handshake (of its worse leg when relayed)

    @property
    def label(self) -> str:
        """`via aws`, `direct 12s`, `via aws stale 9m`, `no path`; empty for a plain direct pair."""
        if self.path is PathKind.NONE:
            return "no path"
        where = f"via {self.relay}" if self.path is PathKind.RELAYED else "direct"
        if self.health is None:
            return where if self.path is PathKind.RELAYED else ""
        if self.health is Health.FRESH:
            return f"{where} {format_age(self.age)}" if self.age is not None else where
        if self.health is Health.STALE:
            return f"{where} stale {format_age(self.age)}" if self.age is not None else f"{where} stale"
        return f"{where} {self.health.value}"


@dataclass(frozen=True)
class Graph:
    mesh: str
    interface: str
    nodes: tuple[GraphNode, ...]
    edges: tuple[Edge, ...]
    live: bool = False

    def node(self, name: str) -> GraphNode:
        return next(n for n in self.nodes if n.name == name)

    def edge(self, a: str, b: str) -> Edge:
        return next(e for e in self.edges if {e.a, e.b} == {a, b})


def format_age(seconds: int | None) -> str:
    if seconds is None:
        return "never"
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 2 * 3600:
        return f"{seconds // 60}m"
    if seconds < 2 * 86400:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"


def static_path(relay: Relaying, a: Node, b: Node) -> tuple[PathKind, str | None]:
    """A pair's path from mesh.yaml: direct when either node has an endpoint, else through the relay."""
    if a.endpoint is not None or b.endpoint is not None:
        return PathKind.DIRECT, None
    via = relay.path(a, b)
    return (PathKind.RELAYED, via) if via is not None else (PathKind.NONE, None)


def _seen(report: StatusReport, a: str, b: str) -> tuple[Health, int | None]:
    """The better of what a sees of b and b sees of a (fresh beats stale beats never)."""
    best: tuple[Health, int | None] = (Health.UNKNOWN, None)
    for src, dst in ((a, b), (b, a)):
        try:
            view = report.view(src, dst)
        except KeyError:
            continue
        if view.via:  # reached through a relay: not a direct handshake of this pair
            continue
        health = _FROM_HANDSHAKE.get(view.state, Health.UNKNOWN)
        better = _RANK[health] > _RANK[best[0]]
        younger = health is best[0] and view.age is not None and (best[1] is None or view.age < best[1])
        if better or younger:
            best = (health, view.age)
    return best


def _worse(x: tuple[Health, int | None], y: tuple[Health, int | None]) -> tuple[Health, int | None]:
    if _RANK[x[0]] != _RANK[y[0]]:
        return x if _RANK[x[0]] < _RANK[y[0]] else y
    return x if (x[1] or 0) >= (y[1] or 0) else y


def _live_edge(edge: Edge, report: StatusReport) -> Edge:
    direct = _seen(report, edge.a, edge.b)
    if direct[0] is Health.FRESH or edge.path is not PathKind.RELAYED or edge.relay is None:
        path = PathKind.DIRECT if direct[0] is Health.FRESH else edge.path
        return Edge(edge.a, edge.b, path, edge.relay if path is PathKind.RELAYED else None, *direct)
    legs = _worse(_seen(report, edge.relay, edge.a), _seen(report, edge.relay, edge.b))
    return Edge(edge.a, edge.b, PathKind.RELAYED, edge.relay, *legs)


def build_graph(mesh: Mesh, report: StatusReport | None = None) -> Graph:
    """The picture's data; `report` (a status report over the enrolled nodes) makes it live."""
    shown = [n for n in mesh.nodes if not n.decommission]
    enrolled = [n for n in shown if n.enrolled]
    relay = relaying(mesh)
    errors = {r.node for r in report.readings if r.error is not None} if report else set()
    read = {r.node for r in report.readings} if report else set()
    nodes = tuple(
        GraphNode(
            name=n.name,
            addresses=tuple(str(a) for a in n.addresses),
            subnets=tuple(str(s.prefix) for s in n.subnets),
            nat=n.endpoint is None,
            enrolled=n.enrolled,
            reachable=(n.name in read and n.name not in errors) if report is not None and n.enrolled else None,
        )
        for n in shown
    )
    edges = []
    for a, b in combinations(enrolled, 2):
        path, via = static_path(relay, a, b)
        edge = Edge(a.name, b.name, path, via)
        edges.append(_live_edge(edge, report) if report is not None and path is not PathKind.NONE else edge)
    return Graph(mesh.name, mesh.interface, nodes, tuple(edges), live=report is not None)
