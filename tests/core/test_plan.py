from __future__ import annotations

import dataclasses
import ipaddress

import pytest
from meshes import converged, four, fresh, pubkey

from wgmesh.core.changes import Action
from wgmesh.core.model import Endpoint
from wgmesh.core.peers import endpoint_matches
from wgmesh.core.plan import build_plan, diff_node
from wgmesh.core.state import LivePeer

MESH = four()


def plan_for(name: str, state):  # type: ignore[no-untyped-def]
    return diff_node(MESH, MESH.node(name), state)


def summary(p) -> list[str]:  # type: ignore[no-untyped-def]
    return [f"{c.action.symbol} {c.address}" for c in p.changes]


def _peer(state, name: str):  # type: ignore[no-untyped-def]
    return state.peers[MESH.node(name).public_key]


def _with_peer(state, name: str, **kw):  # type: ignore[no-untyped-def]
    p = _peer(state, name)
    return dataclasses.replace(state, peers={**state.peers, p.public_key: dataclasses.replace(p, **kw)})


# ------------------------------------------------------------------------------------------ no false changes


@pytest.mark.parametrize("name", ["aws", "azure", "gcp", "aliyun"])
def test_converged_node_has_no_changes(name: str) -> None:
    assert plan_for(name, converged(MESH, name)).changes == ()


@pytest.mark.parametrize(
    ("description", "peer", "overrides"),
    [
        ("handshake and counters are not state", "gcp", {"latest_handshake": 0, "rx_bytes": 9, "tx_bytes": 9}),
        ("a NAT peer roams to any endpoint", "aliyun", {"endpoint": "100.64.7.9:40211"}),
        ("a NAT peer seen with no endpoint yet", "aliyun", {"endpoint": None}),
        ("a DNS endpoint resolved by the node", "azure", {"endpoint": "203.0.113.2:51820"}),
    ],
)
def test_no_false_change(description: str, peer: str, overrides: dict) -> None:
    state = _with_peer(converged(MESH, "aws"), peer, **overrides)
    assert plan_for("aws", state).changes == (), description


def test_allowed_ips_compared_as_sets() -> None:
    state = converged(MESH, "aws")
    p = _peer(state, "gcp")
    assert len(p.allowed_ips) == 2
    state = _with_peer(state, "gcp", allowed_ips=frozenset(reversed(sorted(p.allowed_ips, key=str))))
    assert plan_for("aws", state).changes == ()


# ------------------------------------------------------------------------------------------ change kinds


def test_fresh_node_creates_interface_peers_and_routes() -> None:
    p = plan_for("aws", fresh(MESH, "aws"))
    assert p.creates_interface
    assert summary(p) == [
        "+ interface wg0",
        "+ peer azure",
        "+ peer gcp",
        "+ peer aliyun",
        "+ route 192.168.20.0/24",
        "+ route 192.168.30.0/24",
        "+ route 192.168.40.0/24",
        "~ forwarding ipv4",  # wg-quick up does these (the config's PostUp lines); shown for review
        "+ firewall forward wg0",
        "+ reresolve wg0",  # its peer azure's endpoint is a name
    ]
    assert [s.kind.value for s in p.steps] == ["write_config", "interface_up", "enable_unit", "install_reresolve"]
    iface = p.changes[0].after
    assert iface is not None
    assert iface["addresses"] == ["10.0.0.1/24"]
    assert iface["listen_port"] == 51820
    assert iface["public_key"] == pubkey(1)


def test_nat_node_sends_keepalive_only_toward_endpoints() -> None:
    p = plan_for("aliyun", fresh(MESH, "aliyun"))
    keepalive = {c.name: c.after["persistent_keepalive"] for c in p.changes if c.kind == "peer"}  # type: ignore[index]
    assert keepalive == {"aws": 25, "azure": 25, "gcp": 25}
    p = plan_for("aws", fresh(MESH, "aws"))
    keepalive = {c.name: c.after["persistent_keepalive"] for c in p.changes if c.kind == "peer"}  # type: ignore[index]
    assert keepalive == {"azure": 0, "gcp": 0, "aliyun": 0}


def test_endpoint_resolving_elsewhere_is_a_change() -> None:
    state = _with_peer(converged(MESH, "aws"), "azure", endpoint="203.0.113.99:51820")
    p = plan_for("aws", state)
    assert summary(p) == ["~ peer azure"]
    attrs = p.changes[0].changed_attributes()
    assert attrs == [("endpoint", "203.0.113.99:51820", "azure.example.com:51820")]


def test_literal_endpoint_change() -> None:
    state = _with_peer(converged(MESH, "aws"), "gcp", endpoint="198.51.100.77:51820")
    assert plan_for("aws", state).changes[0].changed_attributes() == [
        ("endpoint", "198.51.100.77:51820", "198.51.100.3:51820")
    ]


def test_stray_peer_is_destroyed_and_named_by_key() -> None:
    stray = LivePeer(pubkey(99), None, frozenset({ipaddress.ip_network("10.0.0.99/32")}), 0, 0, 0, 0, False)
    state = converged(MESH, "aws")
    state = dataclasses.replace(state, peers={**state.peers, stray.public_key: stray})
    p = plan_for("aws", state)
    assert summary(p) == [f"- peer {pubkey(99)[:8]}…"]
    assert p.changes[0].action is Action.DELETE


def test_removed_node_drops_out_with_its_routes() -> None:
    smaller = dataclasses.replace(MESH, nodes=MESH.nodes[:3])
    p = diff_node(smaller, smaller.node("aws"), converged(MESH, "aws"))
    # The node is gone from mesh.yaml, so its peer is named by its public key.
    assert summary(p) == ["~ interface wg0", f"- peer {pubkey(4)[:8]}…", "- route 192.168.40.0/24"]
    assert [k for k, _, _ in p.changes[0].changed_attributes()] == ["config_file"]


def test_missing_peer_deleted_by_hand_is_recreated() -> None:
    state = converged(MESH, "aws")
    gone = MESH.node("gcp").public_key
    state = dataclasses.replace(state, peers={k: v for k, v in state.peers.items() if k != gone})
    assert summary(plan_for("aws", state)) == ["+ peer gcp"]


@pytest.mark.parametrize(
    ("overrides", "attribute", "before", "after"),
    [
        ({"listen_port": 40000}, "listen_port", 40000, 51820),
        ({"fwmark": 0x1234}, "fwmark", "0x1234", None),
        ({"link_up": False}, "up", False, True),
        ({"config_sha256": "0" * 64}, "config_file", "sha256:000000000000", None),
        ({"public_key": pubkey(50)}, "public_key", pubkey(50), pubkey(1)),
    ],
)
def test_interface_attribute_changes(overrides: dict, attribute: str, before: object, after: object) -> None:
    p = plan_for("aws", converged(MESH, "aws", **overrides))
    assert summary(p) == ["~ interface wg0"]
    changed = {k: (b, a) for k, b, a in p.changes[0].changed_attributes()}
    assert attribute in changed
    assert changed[attribute][0] == before
    if after is not None:
        assert changed[attribute][1] == after


def test_address_change() -> None:
    state = converged(MESH, "aws", addresses=frozenset({ipaddress.ip_interface("10.0.0.9/24")}))
    assert plan_for("aws", state).changes[0].changed_attributes()[0] == (
        "addresses", ["10.0.0.9/24"], ["10.0.0.1/24"])


def test_keepalive_and_preshared_key_cleared() -> None:
    state = _with_peer(converged(MESH, "aws"), "gcp", persistent_keepalive=25, has_preshared_key=True)
    changes = dict((k, (b, a)) for k, b, a in plan_for("aws", state).changes[0].changed_attributes())
    assert changes == {"persistent_keepalive": (25, 0), "preshared_key": ("(set)", None)}


def test_routes_missing_and_stale() -> None:
    routes = frozenset({ipaddress.ip_network("192.168.20.0/24"), ipaddress.ip_network("172.16.0.0/16")})
    p = plan_for("aws", converged(MESH, "aws", routes=routes))
    assert summary(p) == ["+ route 192.168.30.0/24", "+ route 192.168.40.0/24", "- route 172.16.0.0/16"]


# ------------------------------------------------------------------------------------------ node-level cases


def test_not_enrolled_node_is_noted_not_changed() -> None:
    mesh = dataclasses.replace(MESH, nodes=(*MESH.nodes[:3], dataclasses.replace(MESH.nodes[3], public_key=None)))
    p = diff_node(mesh, mesh.node("aliyun"), fresh(MESH, "aliyun"))
    assert p.changes == () and p.error is None
    assert "wgmesh enroll aliyun" in p.notes[0]
    # and nobody lists it as a peer
    assert "+ peer aliyun" not in summary(diff_node(mesh, mesh.node("aws"), fresh(mesh, "aws")))


def test_missing_key_file_is_an_error() -> None:
    p = plan_for("aws", dataclasses.replace(fresh(MESH, "aws"), key_file_exists=False, key_file_public_key=None))
    assert p.error and "/etc/wireguard/wg0.key" in p.error


def test_a_lost_key_file_of_a_running_node_says_to_write_the_key_back_not_to_enroll() -> None:
    """The interface still runs with the key mesh.yaml names: `wgmesh enroll` (what the message said) made a new
    key and rotated the node across the mesh (review D6)."""
    p = plan_for("aws", converged(MESH, "aws", key_file_exists=False, key_file_public_key=None))
    assert p.error == ("no key file /etc/wireguard/wg0.key on the node, but wg0 runs with the key mesh.yaml names: "
                       "write it back as root on the node (`umask 077; wg show wg0 private-key > "
                       "/etc/wireguard/wg0.key`); `wgmesh enroll aws` would make a new key instead, which every peer "
                       "switches to at the next apply")


def test_a_key_file_that_holds_no_key_is_named_as_such() -> None:
    """It said the file "has public key None" and to run enroll, which then refused the file (review D6)."""
    p = plan_for("aws", dataclasses.replace(fresh(MESH, "aws"), key_file_public_key=None))
    assert p.error == ("/etc/wireguard/wg0.key on the node does not hold a WireGuard private key; restore it from a "
                       "backup, or move it away and run `wgmesh enroll aws` (a new key: every peer switches to it at "
                       "the next apply)")
    assert "None" not in p.error


def test_a_route_the_node_has_through_another_device_fails_the_node_in_plan() -> None:
    """aws routes gcp's subnet through eth0 (by hand, another mesh, or its own LAN): plan promised `+ route` and
    every apply failed with "RTNETLINK answers: File exists" (reviews D2, C2, B7)."""
    prefix = ipaddress.ip_network("192.168.30.0/24")
    other = {prefix: ("192.168.30.0/24 via 10.250.3.13 dev eth0", 0)}
    live = converged(MESH, "aws", routes=converged(MESH, "aws").routes - {prefix}, other_routes=other)
    p = plan_for("aws", live)
    assert p.error == ("the node routes 192.168.30.0/24 already (192.168.30.0/24 via 10.250.3.13 dev eth0), so a "
                       "route through wg0 would fail or go unused; apply refuses this node. Delete that route on the "
                       "node; if the node is on that network itself, the mesh cannot route 192.168.30.0/24 to it as "
                       "well: take 192.168.30.0/24 out of mesh.yaml's subnets")
    # also where the interface is to be made (wg-quick up would fail on it)
    assert plan_for("aws", dataclasses.replace(fresh(MESH, "aws"), other_routes=other)).error == p.error
    # a route of a higher metric loses to the mesh's, and one the interface has already is the mesh's
    assert not plan_for("aws", dataclasses.replace(live, other_routes={prefix: ("... metric 100", 100)})).error
    assert not plan_for("aws", converged(MESH, "aws", other_routes=other)).error


def test_key_mismatch_is_an_error_apply_refuses() -> None:
    p = plan_for("aws", converged(MESH, "aws", key_file_public_key=pubkey(77)))
    assert p.error and "apply refuses" in p.error and pubkey(77) in p.error


def test_decommission_removes_interface() -> None:
    gone = dataclasses.replace(MESH.nodes[2], decommission=True)
    mesh = dataclasses.replace(MESH, nodes=(*MESH.nodes[:2], gone, MESH.nodes[3]))
    p = diff_node(mesh, gone, converged(MESH, "gcp"))
    assert p.removes_interface and summary(p) == ["- interface wg0"]
    assert "- peer gcp" in summary(diff_node(mesh, mesh.node("aws"), converged(MESH, "aws")))


def test_build_plan_counts_and_errors() -> None:
    plan = build_plan(MESH, {"aws": fresh(MESH, "aws"), "gcp": "cannot connect", "azure": converged(MESH, "azure")})
    assert [n.node for n in plan.nodes] == ["aws", "azure", "gcp"]
    assert plan.counts() == (9, 1, 0)  # interface, 3 peers, 3 routes, FORWARD rules, reresolve; forwarding on
    assert [n.node for n in plan.errors] == ["gcp"]


@pytest.mark.parametrize(
    ("want", "live", "ok"),
    [
        (None, "1.2.3.4:5", True),
        (Endpoint("1.2.3.4", 5), "1.2.3.4:5", True),
        (Endpoint("1.2.3.4", 5), "1.2.3.4:6", False),
        (Endpoint("fd00::1", 51820), "[fd00::1]:51820", True),
        (Endpoint("fd00:0::1", 51820), "[fd00::1]:51820", True),
        (Endpoint("a.example", 1), "10.9.9.9:1", True),
        (Endpoint("a.example", 1), "10.9.9.8:1", False),
        (Endpoint("a.example", 1), None, False),
        (Endpoint("unresolved.example", 1), "10.9.9.9:1", False),
    ],
)
def test_endpoint_matches(want: Endpoint | None, live: str | None, ok: bool) -> None:
    assert endpoint_matches(want, live, {"a.example": frozenset({"10.9.9.9"})}) is ok


def test_rotated_peer_is_one_replacement() -> None:
    rotated = dataclasses.replace(MESH.nodes[2], public_key=pubkey(33))
    mesh = dataclasses.replace(MESH, nodes=(*MESH.nodes[:2], rotated, MESH.nodes[3]))
    p = diff_node(mesh, mesh.node("aws"), converged(MESH, "aws"))
    assert summary(p) == ["~ interface wg0", "-/+ peer gcp"]
    replace = p.changes[1]
    assert replace.action is Action.REPLACE
    assert replace.changed_attributes() == [("public_key", pubkey(3), pubkey(33))]
    assert p.counts() == (1, 1, 1)


def test_unrelated_add_and_remove_are_not_paired() -> None:
    smaller = dataclasses.replace(MESH, nodes=MESH.nodes[:3])
    state = converged(smaller, "aws")
    p = diff_node(MESH, MESH.node("aws"), dataclasses.replace(
        state, peers={**state.peers, pubkey(99): LivePeer(
            pubkey(99), None, frozenset({ipaddress.ip_network("10.0.0.99/32")}), 0, 0, 0, 0, False)}))
    assert {c.action for c in p.changes if c.kind == "peer"} == {Action.CREATE, Action.DELETE}


def test_a_node_that_lacks_flock_and_iptables_is_told_both_at_once() -> None:
    """It named flock, and iptables only on the plan after flock was installed (review A9)."""
    live = converged(MESH, "aws", missing=("flock",), os_family="debian", has_iptables=False)
    error = plan_for("aws", live).error
    assert error is not None and error.startswith("preflight: this node lacks flock")
    assert "iptables is not installed, and this node routes subnets" in error
    assert "iptables" not in (plan_for("aws", converged(MESH, "aws", missing=("flock",), os_family="debian")).error
                              or "")
