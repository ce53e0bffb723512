"""`wgmesh graph`: the picture's data (core/graph.py) and its two texts (views/graph.py).

The Mermaid text is checked by a small grammar of the subset wgmesh writes (every line is a header, a comment,
a node, an edge between declared nodes, a classDef, a class line or a linkStyle of an existing edge); the dot
text by Graphviz itself when `dot` is installed. The graph of mesh.example is rendered too.
"""

from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from meshes import converged, four, node

from wgmesh import meshfile
from wgmesh.core.graph import Edge, Health, PathKind, build_graph, format_age
from wgmesh.core.model import Mesh
from wgmesh.core.state import LivePeer
from wgmesh.core.status import status_report
from wgmesh.views.graph import dot, mermaid

ROOT = Path(__file__).resolve().parents[2]
NOW = 1_700_000_000


def two_nats() -> Mesh:
    """aws, azure public; gcp and aliyun behind NAT (their pair goes through aws)."""
    m = four()
    nodes = tuple(dataclasses.replace(n, endpoint=None) if n.name == "gcp" else n for n in m.nodes)
    return dataclasses.replace(m, nodes=nodes)


# ---------------------------------------------------------------------------------------------- the data


def test_static_graph_of_the_four_cloud_mesh() -> None:
    g = build_graph(four())
    assert [n.name for n in g.nodes] == ["aws", "azure", "gcp", "aliyun"]
    assert g.node("aws").subnets == ("192.168.10.0/24",) and g.node("aws").addresses == ("10.0.0.1",)
    assert [n.name for n in g.nodes if n.nat] == ["aliyun"]
    assert len(g.edges) == 6 and all(e.path is PathKind.DIRECT for e in g.edges)
    assert not g.live and all(e.health is None for e in g.edges)


def test_a_pair_of_nat_nodes_is_relayed_through_the_first_public_node() -> None:
    g = build_graph(two_nats())
    e = g.edge("gcp", "aliyun")
    assert (e.path, e.relay, e.label) == (PathKind.RELAYED, "aws", "via aws")
    assert g.edge("aws", "gcp").path is PathKind.DIRECT


def test_mesh_relay_chooses_the_relay() -> None:
    e = build_graph(dataclasses.replace(two_nats(), relay="azure")).edge("gcp", "aliyun")
    assert (e.path, e.relay) == (PathKind.RELAYED, "azure")


def test_no_public_node_means_no_path() -> None:
    m = four()
    m = dataclasses.replace(m, nodes=tuple(dataclasses.replace(n, endpoint=None) for n in m.nodes))
    assert {e.path for e in build_graph(m).edges} == {PathKind.NONE}


def test_not_enrolled_nodes_have_no_pairs_and_decommissioned_ones_are_left_out() -> None:
    m = four()
    nodes = (*m.nodes, node(5, "new", public_key=None), node(6, "old", decommission=True))
    g = build_graph(dataclasses.replace(m, nodes=nodes))
    assert [n.name for n in g.nodes] == ["aws", "azure", "gcp", "aliyun", "new"]
    assert not g.node("new").enrolled
    assert all("new" not in (e.a, e.b) for e in g.edges) and len(g.edges) == 6


def _live(mesh: Mesh, handshakes: dict[tuple[str, str], int], unreachable: tuple[str, ...] = (),
          direct: tuple[tuple[str, str], ...] = (), removed: tuple[tuple[str, str], ...] = (),
          no_interface: tuple[str, ...] = ()):  # type: ignore[no-untyped-def]
    """A status report where `handshakes[(a, b)]` is when a last saw b (0: never), and b saw a then too unless
    `handshakes[(b, a)]` says otherwise (a handshake is the pair's); other peers: never.
    `direct`: pairs that have a direct peer entry each way, with the other's addresses, although mesh.yaml relays
    them (hole punched: core/punch.py). `removed`: (a, b) where a has no peer entry for b (`wg set wg0 peer B
    remove` on a); `no_interface`: nodes read without their interface (`wg-quick down wg0`)."""
    results = {}
    by_name = {m.name: m for m in mesh.nodes}
    for n in mesh.nodes:
        if n.name in unreachable:
            results[n.name] = "cannot connect: timed out"
            continue
        if n.name in no_interface:
            results[n.name] = converged(mesh, n.name, interface_exists=False, link_up=False, peers={})
            continue
        state = converged(mesh, n.name)
        names = {m.public_key: m.name for m in mesh.nodes}
        extra = {}
        for a, b in direct:
            other = b if n.name == a else a if n.name == b else None
            if other is not None:
                key = by_name[other].public_key
                assert key is not None
                extra[key] = LivePeer(key, None, frozenset(by_name[other].allowed_ips), 0, 0, 0, 0, False)
        peers = {k: dataclasses.replace(p, latest_handshake=handshakes.get((n.name, names[k]),
                                                                           handshakes.get((names[k], n.name), 0)))
                 for k, p in {**state.peers, **extra}.items() if (n.name, names[k]) not in removed}
        results[n.name] = dataclasses.replace(state, peers=peers)
    names = [n.name for n in mesh.nodes]
    return status_report(mesh, mesh.nodes, names, results, dict.fromkeys(names, NOW), NOW)


def test_live_pairs_take_their_latest_handshake() -> None:
    m = four()
    report = _live(m, {("aws", "azure"): NOW - 12, ("azure", "aws"): NOW - 100, ("aws", "gcp"): NOW - 600})
    g = build_graph(m, report)
    assert g.live
    ab = g.edge("aws", "azure")
    assert (ab.health, ab.age, ab.label) == (Health.FRESH, 12, "direct 12s")
    ag = g.edge("aws", "gcp")
    assert (ag.health, ag.label) == (Health.STALE, "direct stale 10m")
    assert g.edge("gcp", "aliyun").label == "direct never"


def test_live_relayed_pair_takes_its_worse_leg_and_a_fresh_direct_handshake_makes_it_direct() -> None:
    m = two_nats()
    legs = {("aws", "gcp"): NOW - 5, ("aws", "aliyun"): NOW - 30}
    e = build_graph(m, _live(m, legs)).edge("gcp", "aliyun")
    assert (e.path, e.relay, e.health, e.age, e.label) == (PathKind.RELAYED, "aws", Health.FRESH, 30, "via aws 30s")
    # a hole punched later (issue 13): the pair has direct peer entries again, with a fresh handshake
    report = _live(m, legs)
    assert report.view("gcp", "aliyun").via == "aws"  # relayed: no direct entry today
    punched = _live(m, {**legs, ("gcp", "aliyun"): NOW - 3}, direct=(("gcp", "aliyun"),))
    e = build_graph(m, punched).edge("gcp", "aliyun")
    assert (e.path, e.relay, e.label) == (PathKind.DIRECT, None, "direct 3s")


def test_an_unreadable_node_is_marked_and_its_pairs_use_the_other_side() -> None:
    m = four()
    g = build_graph(m, _live(m, {("aws", "azure"): NOW - 20}, unreachable=("azure",)))
    assert g.node("azure").reachable is False and g.node("aws").reachable is True
    assert g.edge("aws", "azure").health is Health.FRESH
    assert g.edge("azure", "gcp").health is Health.NEVER  # gcp answered: it never saw azure


def test_a_pair_is_as_good_as_its_worse_side_that_was_read() -> None:
    """The lab repros: on aws `wg set wg0 peer <gcp> remove` (gcp still shows a fresh handshake with aws); a
    pair that never shook hands on one side; both sides removed. Each was drawn green or grey."""
    m = four()
    g = build_graph(m, _live(m, {("aws", "gcp"): NOW - 34, ("aws", "azure"): NOW - 5, ("azure", "aws"): 0},
                             removed=(("aws", "gcp"), ("azure", "gcp"), ("gcp", "azure"))))
    ag = g.edge("aws", "gcp")
    assert (ag.path, ag.health, ag.label) == (PathKind.DIRECT, Health.NO_PEER, "direct no peer")
    assert g.edge("aws", "azure").label == "direct never"  # azure never shook hands since its interface came up
    assert g.edge("azure", "gcp").health is Health.NO_PEER  # both removed: both were read, so not unknown
    unread = build_graph(m, _live(m, {}, unreachable=("azure", "gcp"))).edge("azure", "gcp")
    assert (unread.health, unread.label) == (Health.UNKNOWN, "direct unknown")  # unknown: neither side was read
    doc = parse_mermaid(mermaid(g))
    edges = [(_name(doc["nodes"], a), _name(doc["nodes"], b)) for a, _, b, _ in doc["edges"]]
    assert "#cf222e" in doc["styles"][edges.index(("aws", "gcp"))]  # red


def test_a_node_without_its_interface_is_down_and_its_pairs_are_broken() -> None:
    """`wg-quick down wg0` on gcp: the others still show their old handshakes with gcp, fresh for a while."""
    m = four()
    g = build_graph(m, _live(m, {("aws", "gcp"): NOW - 20, ("azure", "gcp"): NOW - 20}, no_interface=("gcp",)))
    assert g.node("gcp").down and g.node("gcp").reachable and not g.node("aws").down
    assert {g.edge("gcp", n).health for n in ("aws", "azure", "aliyun")} == {Health.NO_PEER}
    doc = parse_mermaid(mermaid(g))
    assert doc["members"]["down"] == ["n2"] and "no interface" in doc["nodes"]["n2"]
    assert '"gcp" [label="gcp\\nno interface' in dot(g) and 'fillcolor="#ffebe9"' in dot(g)


def test_a_removed_punched_peer_is_not_drawn_as_a_working_path() -> None:
    """After a hole punching, `wg set wg0 peer <aliyun> remove` on gcp: gcp's aws entry carries aws only, so gcp
    has no path to aliyun (the edge was green `direct 12s`, from aliyun's side)."""
    from meshes import KEYS, punch_states
    from meshes import NOW as T
    from meshes import clouds_behind_nats as nat_mesh

    from wgmesh.core.punch import punching
    from wgmesh.core.state import LiveState

    nm = nat_mesh()
    direct = punching(nm, punch_states(nm, punching(nm, punch_states(nm)), handshakes=T - 5))
    results = punch_states(nm, direct, handshakes=T - 12)
    report = status_report(nm, nm.nodes, nm.node_names, results, {}, T)
    assert build_graph(nm, report).edge("gcp", "aliyun").label == "direct 12s"
    gcp = results["gcp"]
    assert isinstance(gcp, LiveState)
    results["gcp"] = dataclasses.replace(gcp, peers={k: v for k, v in gcp.peers.items() if k != KEYS["aliyun"]})
    e = build_graph(nm, status_report(nm, nm.nodes, nm.node_names, results, {}, T)).edge("gcp", "aliyun")
    assert (e.health, e.label) == (Health.NO_PEER, "via aws no peer")


@pytest.mark.parametrize(("seconds", "text"), [(None, "never"), (0, "0s"), (119, "119s"), (120, "2m"),
                                               (7199, "119m"), (7200, "2h"), (172800, "2d")])
def test_format_age(seconds: int | None, text: str) -> None:
    assert format_age(seconds) == text


def test_labels() -> None:
    assert Edge("a", "b", PathKind.DIRECT).label == ""
    assert Edge("a", "b", PathKind.NONE).label == "no path"
    assert Edge("a", "b", PathKind.RELAYED, "r", Health.UNKNOWN).label == "via r unknown"


# ---------------------------------------------------------------------------------------------- Mermaid

_NODE = re.compile(r'  (n\d+)(?:\["([^"<>]*(?:<br/>[^"<>]*)*)"\]|\(\["([^"<>]*(?:<br/>[^"<>]*)*)"\]\))')
_EDGE = re.compile(r"  (n\d+) (---|-\.-)(?:\|([^|\"<>]+)\|)? (n\d+)")
_CLASSDEF = re.compile(r"  classDef ([a-z]+) ([a-z-]+:[^,;]+)(,[a-z-]+:[^,;]+)*")
_CLASS = re.compile(r"  class (n\d+(?:,n\d+)*) ([a-z]+)")
_LINKSTYLE = re.compile(r"  linkStyle (\d+) stroke:#[0-9a-f]{6},stroke-width:[\d.]+px")


def parse_mermaid(text: str) -> dict[str, object]:
    """The subset of Mermaid's flowchart grammar wgmesh writes; raises AssertionError on anything else."""
    lines = text.rstrip("\n").split("\n")
    assert lines[0] == "flowchart LR", lines[0]
    nodes: dict[str, str] = {}
    edges: list[tuple[str, str, str, str | None]] = []
    classes: dict[str, str] = {}
    members: dict[str, list[str]] = {}
    styles: dict[int, str] = {}
    for line in lines[1:]:
        if line.startswith("  %%"):
            continue
        if m := _NODE.fullmatch(line):
            assert m.group(1) not in nodes, f"node declared twice: {line}"
            nodes[m.group(1)] = m.group(2) if m.group(2) is not None else m.group(3)
        elif m := _EDGE.fullmatch(line):
            assert m.group(1) in nodes and m.group(4) in nodes, f"edge between undeclared nodes: {line}"
            edges.append((m.group(1), m.group(2), m.group(4), m.group(3)))
        elif m := _CLASSDEF.fullmatch(line):
            classes[m.group(1)] = line
        elif m := _CLASS.fullmatch(line):
            assert m.group(2) in classes, f"class before its classDef: {line}"
            ids = m.group(1).split(",")
            assert all(i in nodes for i in ids), line
            members[m.group(2)] = ids
        elif m := _LINKSTYLE.fullmatch(line):
            assert int(m.group(1)) < len(edges), f"linkStyle of a missing edge: {line}"
            styles[int(m.group(1))] = line
        else:
            raise AssertionError(f"not in the grammar: {line!r}")
    return {"nodes": nodes, "edges": edges, "classes": classes, "members": members, "styles": styles}


def _name(nodes: dict[str, str], node_id: str) -> str:
    return nodes[node_id].split("<br/>")[0]


def test_mermaid_of_a_relayed_live_mesh() -> None:
    m = two_nats()
    text = mermaid(build_graph(m, _live(m, {("aws", "gcp"): NOW - 5, ("aws", "aliyun"): NOW - 30})))
    doc = parse_mermaid(text)
    nodes = doc["nodes"]
    assert [_name(nodes, i) for i in nodes] == ["aws", "azure", "gcp", "aliyun"]
    assert nodes["n0"] == "aws<br/>10.0.0.1<br/>192.168.10.0/24"
    assert nodes["n3"] == "aliyun<br/>behind NAT<br/>10.0.0.4<br/>192.168.40.0/24"
    assert "  n3([\"aliyun" in text  # a NAT'd node is a stadium
    edges = {(_name(nodes, a), _name(nodes, b)): (link, label) for a, link, b, label in doc["edges"]}
    assert edges[("gcp", "aliyun")] == ("-.-", "via aws 30s")
    assert edges[("aws", "gcp")] == ("---", "direct 5s")
    assert edges[("aws", "azure")] == ("---", "direct never")
    assert set(doc["members"]["nat"]) == {"n2", "n3"}
    assert len(doc["styles"]) == len(doc["edges"]) == 6
    assert "#2da44e" in doc["styles"][list(edges).index(("aws", "gcp"))]
    assert "#cf222e" in doc["styles"][list(edges).index(("aws", "azure"))]


def test_mermaid_static_and_unreachable() -> None:
    m = four()
    doc = parse_mermaid(mermaid(build_graph(m)))
    assert all(label is None for *_, label in doc["edges"])
    assert doc["styles"] == {}  # static: Mermaid's own line colour
    live = parse_mermaid(mermaid(build_graph(m, _live(m, {}, unreachable=("gcp",)))))
    assert live["members"]["down"] == ["n2"]
    assert "not read" in live["nodes"]["n2"]  # unreachable, or reached and refused (review U)


def test_mermaid_ids_survive_names_mermaid_would_misread() -> None:
    m = four()
    nodes = tuple(dataclasses.replace(n, name=f"{n.name}-eu.1") for n in m.nodes)
    doc = parse_mermaid(mermaid(build_graph(dataclasses.replace(m, nodes=nodes))))
    assert _name(doc["nodes"], "n0") == "aws-eu.1"


def test_the_grammar_check_catches_broken_output() -> None:
    with pytest.raises(AssertionError):
        parse_mermaid('flowchart LR\n  n0["a"]\n  n0 --- n9\n')
    with pytest.raises(AssertionError):
        parse_mermaid('flowchart LR\n  n0["a "quoted""]\n')


def test_mesh_example_renders() -> None:
    mesh, _ = meshfile.load(ROOT / "mesh.example" / "mesh.yaml")
    doc = parse_mermaid(mermaid(build_graph(mesh)))
    assert len(doc["nodes"]) == len([n for n in mesh.nodes if not n.decommission])


# ---------------------------------------------------------------------------------------------- dot


@pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz is not installed (apt-get install graphviz)")
@pytest.mark.parametrize("live", [False, True])
def test_dot_is_valid_graphviz(live: bool) -> None:
    m = two_nats()
    g = build_graph(m, _live(m, {("aws", "gcp"): NOW - 5}, unreachable=("azure",)) if live else None)
    text = dot(g)
    done = subprocess.run(["dot", "-Tplain"], input=text, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    plain = done.stdout.splitlines()
    assert sum(1 for ln in plain if ln.startswith("node ")) == 4
    assert sum(1 for ln in plain if ln.startswith("edge ")) == 6


def test_dot_text() -> None:
    text = dot(build_graph(two_nats()))
    assert text.startswith('graph "demo" {\n')
    assert '"aliyun" [label="aliyun\\nbehind NAT\\n10.0.0.4\\n192.168.40.0/24", style="rounded,dashed"];' in text
    assert '"gcp" -- "aliyun" [color="#57606a", style=dashed, label="via aws"];' in text
