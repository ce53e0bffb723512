"""Relays (core/relay.py, render's desired(), plan): every pair of nodes where neither has an endpoint goes through
the relay; an address sits on one peer entry only; the relay forwards."""

from __future__ import annotations

import dataclasses
import ipaddress

import pytest
from meshes import clouds_behind_nats, converged, pubkey

from wgmesh.core.changes import Action
from wgmesh.core.model import Mesh
from wgmesh.core.plan import diff_node
from wgmesh.core.relay import relay_node, relaying
from wgmesh.core.render import desired, render_all, render_node
from wgmesh.core.state import LivePeer
from wgmesh.core.steps import Step, StepKind


def nat_mesh(*, relay: str | None = None, subnets: bool = True) -> Mesh:
    """aws, azure public (no subnets of their own); gcp, aliyun and tencent behind NAT (gcp and aliyun route
    192.168.30.0/24 and .40.0/24 unless not `subnets`)."""
    m = dataclasses.replace(clouds_behind_nats(), relay=relay)
    if subnets:
        return m
    return dataclasses.replace(m, nodes=tuple(dataclasses.replace(n, subnets=()) for n in m.nodes))


def _with(mesh: Mesh, name: str, **kw):  # type: ignore[no-untyped-def]
    return dataclasses.replace(mesh, nodes=tuple(dataclasses.replace(n, **kw) if n.name == name else n
                                                 for n in mesh.nodes))


def _without(mesh: Mesh, name: str) -> Mesh:
    return dataclasses.replace(mesh, nodes=tuple(n for n in mesh.nodes if n.name != name))


def _peers(mesh: Mesh, name: str) -> dict[str, list[str]]:
    return {p.name: [str(n) for n in p.allowed_ips] for p in desired(mesh, name).peers}


# ------------------------------------------------------------------------------------------- the relay


def test_the_relay_is_the_first_enrolled_node_with_an_endpoint_or_the_one_mesh_yaml_names() -> None:
    assert relay_node(nat_mesh()).name == "aws"  # type: ignore[union-attr]
    assert relay_node(nat_mesh(relay="azure")).name == "azure"  # type: ignore[union-attr]
    # a relay that cannot relay (not enrolled, decommissioned) gives way to the first that can
    assert relay_node(_with(nat_mesh(relay="azure"), "azure", public_key=None)).name == "aws"  # type: ignore[union-attr]
    assert relay_node(_with(nat_mesh(), "aws", decommission=True)).name == "azure"  # type: ignore[union-attr]
    no_public = _with(_with(nat_mesh(), "aws", endpoint=None), "azure", endpoint=None)
    assert relay_node(no_public) is None and not relaying(no_public).active


def test_relayed_pairs_and_paths() -> None:
    r = relaying(nat_mesh())
    assert r.active and [n.name for n in r.nat] == ["gcp", "aliyun", "tencent"]
    assert r.relayed_pairs() == [("gcp", "aliyun"), ("gcp", "tencent"), ("aliyun", "tencent")]
    m = nat_mesh()
    assert r.path(m.node("gcp"), m.node("aliyun")) == "aws"
    assert r.path(m.node("gcp"), m.node("azure")) is None  # direct: gcp dials azure


# ------------------------------------------------------------------------------------------- desired


def test_a_nat_node_reaches_the_other_nat_nodes_through_the_relay_peer_only() -> None:
    peers = _peers(nat_mesh(), "gcp")
    assert list(peers) == ["aws", "azure"]  # no entry for aliyun or tencent
    assert peers["aws"] == ["10.0.0.1/32", "10.0.0.4/32", "192.168.40.0/24", "10.0.0.5/32"]
    assert peers["azure"] == ["10.0.0.2/32"]
    cfg = desired(nat_mesh(), "gcp")
    assert cfg.peers[0].relayed == ("aliyun", "tencent") and cfg.peers[0].persistent_keepalive == 25
    assert cfg.forwarding == (4,) and cfg.relays_for == ()  # gcp forwards for its own subnet only


@pytest.mark.parametrize("name", ["aws", "azure", "gcp", "aliyun", "tencent"])
def test_an_address_sits_on_one_peer_entry_only(name: str) -> None:
    prefixes = [n for p in desired(nat_mesh(), name).peers for n in p.allowed_ips]
    assert len(prefixes) == len(set(prefixes))
    others = {ipaddress.ip_network(a) for n in nat_mesh().nodes if n.name != name for a in n.addresses}
    assert others <= set(prefixes), "every other node is reachable"


def test_the_relay_has_every_node_as_its_own_peer_and_forwards_between_them() -> None:
    m = nat_mesh(subnets=False)
    cfg = desired(m, "aws")
    assert [p.name for p in cfg.peers] == ["azure", "gcp", "aliyun", "tencent"]
    assert all(p.relayed == () for p in cfg.peers)
    assert cfg.relays_for == ("gcp", "aliyun", "tencent")
    assert cfg.forwarding == (4,), "a relay forwards even without subnets of its own"
    text = render_node(m, "aws")
    assert "# relay for gcp, aliyun, tencent: forwards between them\n" in text
    assert "PostUp = sysctl -q -w net.ipv4.ip_forward=1 # wgmesh\n" in text
    accept = "FORWARD -i %i -m comment --comment wgmesh:%i -j ACCEPT"
    assert f"PostUp = iptables -w 5 -C {accept} 2>/dev/null || iptables -w 5 -I {accept}\n" in text
    assert desired(m, "azure").forwarding == () and desired(m, "azure").relays_for == ()


def test_one_nat_node_needs_no_relay() -> None:
    m = _without(_without(nat_mesh(subnets=False), "aliyun"), "tencent")
    assert not relaying(m).active
    assert desired(m, "aws").forwarding == () and desired(m, "aws").relays_for == ()
    assert _peers(m, "gcp") == {"aws": ["10.0.0.1/32"], "azure": ["10.0.0.2/32"]}


def test_render_says_which_peer_carries_whom() -> None:
    text = render_node(nat_mesh(), "gcp")
    assert "\n# aws\n# aliyun: via relay aws\n# tencent: via relay aws\n[Peer]\n" in text
    assert "# aliyun\n[Peer]" not in text
    assert dict(render_all(nat_mesh())) == {n.name: render_node(nat_mesh(), n.name) for n in nat_mesh().nodes}


@pytest.mark.parametrize("unenrolled", ["gcp", "aliyun", "tencent"])
def test_render_all_writes_every_relayed_node_as_render_node_does(unenrolled: str) -> None:
    """render --all writes the relay's entry of each relayed node from one joined text, all but the node's own
    part: the first, a middle and the last of them, with one not enrolled yet (it reaches every relayed node)."""
    for m in (nat_mesh(), _with(nat_mesh(), unenrolled, public_key=None)):
        assert dict(render_all(m)) == {n.name: render_node(m, n.name) for n in m.nodes}


def test_mesh_relay_picks_the_relay_and_removing_it_re_routes_through_the_next() -> None:
    assert list(_peers(nat_mesh(relay="azure"), "gcp")) == ["aws", "azure"]
    assert _peers(nat_mesh(relay="azure"), "gcp")["azure"][1:] == ["10.0.0.4/32", "192.168.40.0/24", "10.0.0.5/32"]
    assert desired(nat_mesh(relay="azure"), "azure").relays_for == ("gcp", "aliyun", "tencent")
    gone = _without(nat_mesh(), "aws")
    assert _peers(gone, "gcp") == {"azure": ["10.0.0.2/32", "10.0.0.4/32", "192.168.40.0/24", "10.0.0.5/32"]}
    assert desired(gone, "azure").relays_for == ("gcp", "aliyun", "tencent")


def test_a_relayed_ipv6_address_turns_on_ipv6_forwarding_on_the_relay() -> None:
    m = dataclasses.replace(nat_mesh(subnets=False),
                            networks=(ipaddress.ip_network("10.0.0.0/24"), ipaddress.ip_network("fd00::/64")))
    m = _with(m, "aliyun", addresses=(ipaddress.ip_address("10.0.0.4"), ipaddress.ip_address("fd00::4")))
    assert desired(m, "aws").forwarding == (4, 6)
    assert "fd00::4/128" in _peers(m, "gcp")["aws"]


def test_no_node_with_an_endpoint_keeps_the_direct_entries() -> None:
    m = _with(_with(nat_mesh(), "aws", endpoint=None), "azure", endpoint=None)
    assert list(_peers(m, "gcp")) == ["aws", "azure", "aliyun", "tencent"]


# ------------------------------------------------------------------------------------------- plan


def test_a_converged_relayed_mesh_has_no_changes() -> None:
    m = nat_mesh()
    for n in m.nodes:
        plan = diff_node(m, n, converged(m, n.name))
        assert plan.changes == () and plan.steps == (), n.name


def _direct(mesh: Mesh, name: str) -> dict[str, LivePeer]:
    """The peers a NAT'd node had before relays: every other node on its own entry."""
    peers = {}
    for n in mesh.nodes:
        if n.name != name:
            key = pubkey(mesh.nodes.index(n) + 1)
            peers[key] = LivePeer(key, None, frozenset(n.allowed_ips), 0, 0, 0, 0, False)
    return peers


def test_moving_a_pair_onto_the_relay_is_one_plan() -> None:
    m = nat_mesh()
    state = converged(m, "gcp")
    old = {**state.peers, **{k: v for k, v in _direct(m, "gcp").items() if k in (pubkey(4), pubkey(5))}}
    aws = state.peers[pubkey(1)]
    old[pubkey(1)] = dataclasses.replace(aws, allowed_ips=frozenset(m.node("aws").allowed_ips))
    plan = diff_node(m, m.node("gcp"), dataclasses.replace(state, peers=old))
    by = {(c.action, c.name): c for c in plan.changes}
    assert set(by) == {(Action.UPDATE, "aws"), (Action.DELETE, "aliyun"), (Action.DELETE, "tencent")}
    change = by[(Action.UPDATE, "aws")]
    assert (change.before or {})["relays"] == [] and (change.after or {})["relays"] == ["aliyun", "tencent"]
    assert any("reaches aliyun, tencent via relay aws" in n for n in plan.notes)
    sync = next(s for s in plan.steps if s.kind is StepKind.SYNC_PEERS)
    assert sync.value.count("[Peer]") == 2 and "10.0.0.4/32" in sync.value


def test_the_relay_plans_forwarding_and_its_rules() -> None:
    m = nat_mesh(subnets=False)
    before = converged(m, "aws", forwarding={4: False, 6: False}, forward_rules=False)
    plan = diff_node(m, m.node("aws"), before)
    assert [(c.action.value, c.kind, c.name) for c in plan.changes if c.kind in ("forwarding", "firewall")] == [
        ("update", "forwarding", "ipv4"), ("create", "firewall", "forward wg0")]
    assert Step(StepKind.SET_FORWARDING, "4") in plan.steps and Step(StepKind.ADD_FORWARD_RULES, "4") in plan.steps
    assert any(n.startswith("relay for the nodes without an endpoint (gcp, aliyun, tencent)") for n in plan.notes)


def test_a_relay_without_iptables_is_an_error_that_says_why() -> None:
    m = nat_mesh(subnets=False)
    plan = diff_node(m, m.node("aws"), converged(m, "aws", has_iptables=False))
    assert plan.error is not None and "relays for the nodes without an endpoint" in plan.error


def test_a_relay_that_is_no_longer_one_drops_its_rules() -> None:
    m = nat_mesh(subnets=False)
    moved = dataclasses.replace(m, relay="azure")
    plan = diff_node(moved, moved.node("aws"), converged(m, "aws"))
    assert ("delete", "firewall", "forward wg0") in [(c.action.value, c.kind, c.name) for c in plan.changes]
    plan = diff_node(moved, moved.node("gcp"), converged(m, "gcp"))
    peers = {(c.action.value, c.name) for c in plan.changes if c.kind == "peer"}
    assert peers == {("update", "aws"), ("update", "azure")}


# ------------------------------------------------------------------------------------------- status


def _status(mesh: Mesh, handshakes: dict[tuple[str, str], int]):  # type: ignore[no-untyped-def]
    from wgmesh.core.status import status_report

    now = 1_700_000_100
    results = {}
    for n in mesh.nodes:
        state = converged(mesh, n.name)
        names = {m.public_key: m.name for m in mesh.nodes}
        peers = {k: dataclasses.replace(p, latest_handshake=handshakes.get((n.name, names[k]), 0))
                 for k, p in state.peers.items()}
        results[n.name] = dataclasses.replace(state, peers=peers)
    return status_report(mesh, mesh.nodes, mesh.node_names, results, {}, now)


def test_status_shows_a_relayed_pair_with_the_leg_to_the_relay() -> None:
    from wgmesh.core.status import Handshake
    from wgmesh.views.json import status_to_dict

    m = nat_mesh()
    report = _status(m, {("gcp", "aws"): 1_700_000_090, ("aws", "gcp"): 1_700_000_090})
    v = report.view("gcp", "aliyun")
    assert (v.state, v.age, v.via, v.path) == (Handshake.FRESH, 10, "aws", "via relay aws")
    assert report.view("gcp", "aws").path == "direct" and report.view("aws", "gcp").via is None
    never = report.view("aliyun", "gcp")
    assert (never.state, never.path) == (Handshake.NEVER, "via relay aws")
    # a relayed pair gets no hint of its own: its legs (pairs with aws) do
    assert not any(h.startswith(("gcp <-> aliyun", "aliyun <-> gcp")) for h in report.hints)
    assert any(h.startswith("aws <-> aliyun: never a handshake: aws's UDP port") for h in report.hints)
    doc = status_to_dict(report)
    gcp = next(r for r in doc["readings"] if r["node"] == "gcp")
    peer = next(p for p in gcp["peers"] if p["peer"] == "aliyun")
    assert (peer["path"], peer["via"], peer["handshake"]) == ("via relay aws", "aws", "fresh")


def test_status_matrix_and_details_name_the_relay() -> None:
    import io

    from rich.console import Console

    from wgmesh.views.observe_human import status_details, status_matrix

    report = _status(nat_mesh(), {("gcp", "aws"): 1_700_000_090})
    console = Console(file=io.StringIO(), width=300, color_system=None)
    console.print(status_matrix(report))
    console.print(status_details(report))
    text = console.file.getvalue()  # type: ignore[attr-defined]
    gcp_row = next(line for line in text.splitlines() if line.split()[:1] == ["gcp"])
    assert "via aws 10s" in gcp_row
    assert any(line.split()[:4] == ["gcp", "aliyun", "via", "relay"] for line in text.splitlines())


def test_without_a_relay_a_pair_without_endpoints_still_gets_its_hint() -> None:
    m = _with(_with(nat_mesh(), "aws", endpoint=None), "azure", endpoint=None)
    report = _status(m, {})
    assert any("no node has an endpoint to relay through" in h for h in report.hints)
