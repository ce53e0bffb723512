"""`wgmesh graph`, the pure part: the mesh as a picture's data (nodes, pairs, paths, handshake health).

- A node carries its addresses and subnets; one without an endpoint is behind NAT; one without a public key
  is drawn without pairs (not enrolled); decommissioned nodes are left out.
- Every pair of enrolled nodes is one edge. Its path, from mesh.yaml: `direct` when at least one of the two has
  an endpoint (the other dials it); `relayed` when neither has one, through the relay of core/relay.py
  (`mesh.relay`, else the first enrolled node with an endpoint); `none` when no node has an endpoint at all.
- With live data (core/status.py's report of what each node's `wg show` says of each peer), a pair is as good as
  its worse side that was read: each node read shows its path to the other (its own entry, or the relay's, whose
  health is then that of the worse relay leg) as fresh (< 3 min), stale or never, or has none (`no peer`: a
  removed peer, a node without its interface); `unknown` only when neither node could be read. The path is
  `relayed` when a side goes through the relay, else `direct` (a hole-punched NAT pair too).
- A node is down when it could not be read or its interface does not exist.
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
    NO_PEER = "no peer"  # a side that was read has no path to the other: nothing gets through
    UNKNOWN = "unknown"  # neither side could be read


# worse first: a failure a node showed outranks what could not be read, which outranks a working handshake
_RANK = {Health.NO_PEER: 0, Health.NEVER: 1, Health.UNKNOWN: 2, Health.STALE: 3, Health.FRESH: 4}
_FROM_HANDSHAKE = {Handshake.FRESH: Health.FRESH, Handshake.STALE: Health.STALE, Handshake.NEVER: Health.NEVER,
                   Handshake.NO_PEER: Health.NO_PEER}
Seen = tuple[Health, int | None]


@dataclass(frozen=True)
class GraphNode:
    name: str
    addresses: tuple[str, ...]
    subnets: tuple[str, ...]
    nat: bool  # no endpoint: behind NAT (it dials out; nobody dials it)
    enrolled: bool
    reachable: bool | None = None  # live: could the node be read (None: not live)
    interface: bool | None = None  # live: does its interface exist (None: not live, or not read)

    @property
    def down(self) -> bool:
        """Live: nothing gets through it (it could not be read, or it has no interface)."""
        return self.reachable is False or self.interface is False


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


def _side(report: StatusReport, src: str, dst: str) -> tuple[Seen, str | None] | None:
    """What `src` shows of its path to `dst` and the relay it goes through; None when `src` was not read."""
    try:
        view = report.view(src, dst)
    except KeyError:
        return None
    health = _FROM_HANDSHAKE.get(view.state)
    if health is None:  # unreachable (or self)
        return None
    if view.via:  # src's leg is its handshake with the relay; the relay's with dst is the other
        return _worse(_pair(report, src, view.via)[0], _pair(report, view.via, dst)[0]), view.via
    return (health, view.age), None


def _pair(report: StatusReport, a: str, b: str) -> tuple[Seen, str | None]:
    """The worse of the two sides that were read (a handshake is the pair's: among equals, the youngest age) and
    the relay a side goes through; unknown when neither was read."""
    sides = [s for s in (_side(report, a, b), _side(report, b, a)) if s is not None]
    if not sides:
        return (Health.UNKNOWN, None), None
    health = min((seen[0] for seen, _ in sides), key=_RANK.__getitem__)
    ages = [seen[1] for seen, _ in sides if seen[0] is health and seen[1] is not None]
    return (health, min(ages) if ages else None), next((via for _, via in sides if via), None)


def _worse(x: Seen, y: Seen) -> Seen:
    if _RANK[x[0]] != _RANK[y[0]]:
        return x if _RANK[x[0]] < _RANK[y[0]] else y
    return x if (x[1] or 0) >= (y[1] or 0) else y


def _live_edge(edge: Edge, report: StatusReport) -> Edge:
    (health, age), via = _pair(report, edge.a, edge.b)
    if via is not None:
        return Edge(edge.a, edge.b, PathKind.RELAYED, via, health, age)
    if health in (Health.NO_PEER, Health.UNKNOWN):  # no side shows a path: keep mesh.yaml's
        return Edge(edge.a, edge.b, edge.path, edge.relay, health, age)
    return Edge(edge.a, edge.b, PathKind.DIRECT, None, health, age)


def build_graph(mesh: Mesh, report: StatusReport | None = None) -> Graph:
    """The picture's data; `report` (a status report over the enrolled nodes) makes it live."""
    shown = [n for n in mesh.nodes if not n.decommission]
    enrolled = [n for n in shown if n.enrolled]
    relay = relaying(mesh)
    errors = {r.node for r in report.readings if r.error is not None} if report else set()
    read = {r.node for r in report.readings} if report else set()
    interface = {r.node: r.interface_exists for r in report.readings if r.error is None} if report else {}
    nodes = tuple(
        GraphNode(
            name=n.name,
            addresses=tuple(str(a) for a in n.addresses),
            subnets=tuple(str(s.prefix) for s in n.subnets),
            nat=n.endpoint is None,
            enrolled=n.enrolled,
            reachable=(n.name in read and n.name not in errors) if report is not None and n.enrolled else None,
            interface=interface.get(n.name) if n.enrolled else None,
        )
        for n in shown
    )
    edges = []
    for a, b in combinations(enrolled, 2):
        path, via = static_path(relay, a, b)
        edge = Edge(a.name, b.name, path, via)
        edges.append(_live_edge(edge, report) if report is not None and path is not PathKind.NONE else edge)
    return Graph(mesh.name, mesh.interface, nodes, tuple(edges), live=report is not None)
