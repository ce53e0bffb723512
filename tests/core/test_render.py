"""Rendering: desired per-node configs and their wg-quick text."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wgmesh.core.model import Endpoint, Mesh, Node, Ssh, Subnet
from wgmesh.core.render import (
    KEY_POST_UP,
    PeerConfig,
    desired,
    render,
    render_all,
    render_all_pieces,
    render_node,
    user_hooks,
)
from wgmesh.meshfile import load, loads

EXAMPLE = Path(__file__).resolve().parents[2] / "mesh.example" / "mesh.yaml"
KA = "76g31p64QmeSkdVYkRCDqqshYcBF71jU5GtKfq2gmWU="
KB = "fiVvTzvLW+guc0/puGdPheeZRsT4FHHsU1WwyvhO9Xk="
KC = "kboCx4oulgy0stckZnLMK1xFMRdj8ULP4vNc0WelB2E="
KD = "5uFXVPvqrtal3oKhyUmquIZKBhQ5dN/lBUSJBKQ5OHs="

SMALL = f"""version: 1
mesh:
  name: small
  interface: wgm
  network: [10.9.0.0/24, "fd09::/64"]
  persistent_keepalive: 21
  mtu: 1380
nodes:
  hub:
    address: [10.9.0.1, "fd09::1"]
    public_key: {KA}
    endpoint: hub.example.com:51820
    subnets: [192.168.1.0/24]
    post_up: [sysctl -w net.ipv4.ip_forward=1]
    post_down: echo down %i
  v6:
    address: 10.9.0.2
    public_key: {KB}
    endpoint: "[2001:db8::2]:51999"
    listen_port: 51999
  nat:
    address: 10.9.0.3
    public_key: {KC}
    ssh: {{host: 203.0.113.3}}
  new:
    address: 10.9.0.4
    ssh: {{host: 203.0.113.4}}
  gone:
    address: 10.9.0.5
    public_key: {KD}
    endpoint: gone.example.com:51820
    decommission: true
"""

_IN = "FORWARD -i %i -m comment --comment wgmesh:%i -j ACCEPT"
ACCEPT_IN = f"iptables -w 5 -C {_IN} 2>/dev/null || iptables -w 5 -I {_IN}"  # inserted only when missing
ACCEPT_OUT = ACCEPT_IN.replace("-i %i", "-o %i")

HUB = f"""# Managed by wgmesh (mesh small, node hub). Local edits are overwritten by wgmesh apply.
[Interface]
Address = 10.9.0.1/24, fd09::1/64
ListenPort = 51820
MTU = 1380
PostUp = wg set %i private-key /etc/wireguard/%i.key
PostUp = sysctl -q -w net.ipv4.ip_forward=1 # wgmesh
PostUp = {ACCEPT_IN}
PostUp = {ACCEPT_OUT}
PostUp = sysctl -w net.ipv4.ip_forward=1
PostDown = echo down %i
PostDown = iptables -w 5 -D FORWARD -o %i -m comment --comment wgmesh:%i -j ACCEPT || true
PostDown = iptables -w 5 -D FORWARD -i %i -m comment --comment wgmesh:%i -j ACCEPT || true

# v6
[Peer]
PublicKey = {KB}
AllowedIPs = 10.9.0.2/32
Endpoint = [2001:db8::2]:51999

# nat
[Peer]
PublicKey = {KC}
AllowedIPs = 10.9.0.3/32
"""

NAT = f"""# Managed by wgmesh (mesh small, node nat). Local edits are overwritten by wgmesh apply.
[Interface]
Address = 10.9.0.3/24
ListenPort = 51820
MTU = 1380
PostUp = wg set %i private-key /etc/wireguard/%i.key
PostUp = [ ! -x /etc/wireguard/wgmesh-reresolve-%i.sh ] || /etc/wireguard/wgmesh-reresolve-%i.sh start # wgmesh
PostDown = [ ! -x /etc/wireguard/wgmesh-reresolve-%i.sh ] || /etc/wireguard/wgmesh-reresolve-%i.sh stop # wgmesh

# hub
[Peer]
PublicKey = {KA}
AllowedIPs = 10.9.0.1/32, fd09::1/128, 192.168.1.0/24
Endpoint = hub.example.com:51820
PersistentKeepalive = 21

# v6
[Peer]
PublicKey = {KB}
AllowedIPs = 10.9.0.2/32
Endpoint = [2001:db8::2]:51999
PersistentKeepalive = 21
"""


@pytest.fixture
def small() -> Mesh:
    mesh, warnings = loads(SMALL)
    # only the hub has an IPv6 address (what renders for a mixed mesh is tested here); validate says what that costs
    assert [w.path for w in warnings] == ["nodes.v6.address", "nodes.nat.address"]
    return mesh


def test_exact_text_for_endpoint_node(small: Mesh) -> None:
    assert render_node(small, "hub") == HUB


def test_exact_text_for_nat_node(small: Mesh) -> None:
    assert render_node(small, "nat") == NAT


def test_keepalive_only_from_nat_node_toward_endpoint_nodes(small: Mesh) -> None:
    for name in small.node_names:
        cfg = desired(small, name)
        for peer in cfg.peers:
            node, other = small.node(name), small.node(peer.name)
            expect = 21 if node.endpoint is None and other.endpoint is not None else 0
            assert peer.persistent_keepalive == expect, (name, peer.name)


def test_unenrolled_and_decommissioned_nodes_are_left_out_of_peer_lists(small: Mesh) -> None:
    for name in small.node_names:
        peers = [p.name for p in desired(small, name).peers]
        assert "new" not in peers and "gone" not in peers
        assert name not in peers


def test_unenrolled_node_still_gets_its_config(small: Mesh) -> None:
    cfg = desired(small, "new")
    # "new" has no endpoint, nor has "nat": it reaches "nat" through the relay, hub (the first with an endpoint)
    assert [p.name for p in cfg.peers] == ["hub", "v6"]
    assert [p.persistent_keepalive for p in cfg.peers] == [21, 21]
    assert cfg.peers[0].relayed == ("nat",)
    assert "[Peer]" in render_node(small, "new")


def test_desired_fields(small: Mesh) -> None:
    cfg = desired(small, "v6")
    assert cfg.interface == "wgm" and cfg.listen_port == 51999 and cfg.mtu == 1380
    assert cfg.addresses == (ipaddress.ip_interface("10.9.0.2/24"),)
    assert cfg.key_post_up == KEY_POST_UP == "wg set %i private-key /etc/wireguard/%i.key"
    assert cfg.peers[0] == PeerConfig(
        "hub",
        KA,
        (
            ipaddress.ip_network("10.9.0.1/32"),
            ipaddress.ip_network("fd09::1/128"),
            ipaddress.ip_network("192.168.1.0/24"),
        ),
        Endpoint("hub.example.com", 51820),
        0,
    )


def test_unknown_node(small: Mesh) -> None:
    with pytest.raises(KeyError, match=r"no node named 'nope'.*hub, v6, nat, new, gone"):
        desired(small, "nope")


def test_render_all_equals_render_node_and_skips_decommissioned(small: Mesh) -> None:
    rendered = dict(render_all(small))
    assert list(rendered) == ["hub", "v6", "nat", "new"]
    for name, text in rendered.items():
        assert text == render_node(small, name)


def test_render_all_pieces_share_each_stanza_between_files() -> None:
    """A big mesh's files are not copied per node: every file's peers are views of the one joined copy of the
    stanzas, and each file's pieces are its text."""
    mesh, _ = load(EXAMPLE)
    pieces = dict(render_all_pieces(mesh))
    assert {n: b"".join(p).decode() for n, p in pieces.items()} == dict(render_all(mesh))
    public = [n.name for n in mesh.nodes if n.endpoint is not None]
    assert len(public) >= 2 and all(isinstance(p, memoryview) for n in public for p in pieces[n][1:])
    assert len({id(p.obj) for n in public for p in pieces[n][1:]}) == 1
    assert b"\n# aws\n" in bytes(pieces["azure"][1]) and not any(b"\n# aws\n" in bytes(p) for p in pieces["aws"])


def test_example_renders_every_node_without_private_key() -> None:
    mesh, _ = load(EXAMPLE)
    outputs = dict(render_all(mesh))
    assert list(outputs) == ["aws", "azure", "gcp", "aliyun"]
    for name, text in outputs.items():
        assert text == render_node(mesh, name)
        assert "PrivateKey" not in text and "SaveConfig" not in text
        assert text.count("[Peer]") == 3
        lines = text.splitlines()
        assert lines[lines.index("[Interface]") + 1].startswith("Address = ")
        first_post_up = next(line for line in lines if line.startswith("PostUp"))
        assert first_post_up == f"PostUp = {KEY_POST_UP}"
    assert "PersistentKeepalive" in outputs["aliyun"]
    assert all("PersistentKeepalive" not in outputs[n] for n in ("aws", "azure", "gcp"))


def test_render_without_mesh_name_and_keepalive_off() -> None:
    mesh, _ = loads(SMALL.replace("persistent_keepalive: 21", "persistent_keepalive: 0"))
    assert "PersistentKeepalive" not in "".join(t for _, t in render_all(mesh))
    assert render(desired(mesh, "hub")).startswith("# Managed by wgmesh (node hub).")


# ---- render_all and render_node agree on arbitrary meshes built from the model


def _key(i: int) -> str:
    import base64

    return base64.b64encode(i.to_bytes(32, "big")).decode()


@st.composite
def meshes(draw: st.DrawFn) -> Mesh:
    n = draw(st.integers(0, 8))
    keepalive = draw(st.sampled_from([0, 25]))
    nodes = []
    for i in range(n):
        nodes.append(
            Node(
                name=f"n{i}",
                addresses=(ipaddress.ip_address(f"10.0.0.{i + 1}"),),
                public_key=draw(st.sampled_from([None, _key(i + 1)])),
                endpoint=draw(st.sampled_from([None, Endpoint(f"n{i}.example.com", 51820 + i)])),
                ssh=Ssh(host=f"h{i}"),
                subnets=tuple(
                    Subnet(ipaddress.ip_network(f"192.168.{i}.0/24")) for _ in range(draw(st.integers(0, 1)))
                ),
                listen_port=51820 + i,
                mtu=draw(st.sampled_from([None, 1420])),
                persistent_keepalive=keepalive,
                post_up=tuple(draw(st.lists(st.sampled_from(["true", "echo %i"]), max_size=2))),
                decommission=draw(st.booleans()),
            )
        )
    return Mesh("m", "wg0", (ipaddress.ip_network("10.0.0.0/24"),), tuple(nodes), persistent_keepalive=keepalive)


@settings(max_examples=200, deadline=None)
@given(meshes())
def test_render_all_matches_render_node(mesh: Mesh) -> None:
    out = list(render_all(mesh))
    assert [name for name, _ in out] == [n.name for n in mesh.nodes if not n.decommission]
    for name, text in out:
        assert text == render_node(mesh, name)
        this = mesh.node(name)
        relay = any(n.enrolled and n.endpoint is not None for n in mesh.nodes)
        # a node without an endpoint has no peer entry for the others without one when a relay carries them
        expect = sum(1 for n in mesh.nodes if n.enrolled and n.name != name
                     and not (relay and this.endpoint is None and n.endpoint is None))
        assert text.count("[Peer]") == expect


def test_a_node_that_routes_subnets_forwards_and_accepts_forwarded_traffic_at_every_up(small: Mesh) -> None:
    """wg-quick runs these at `up` (and at boot): forwarding on, wgmesh's FORWARD accept rules in and out,
    removed again at `down` (forwarding is left on). A node without subnets gets none of it."""
    hub = render_node(small, "hub")
    assert "PostUp = sysctl -q -w net.ipv4.ip_forward=1 # wgmesh\n" in hub
    assert hub.index("PostUp = iptables -w 5 -C FORWARD -i %i") < hub.index("PostUp = sysctl -w")  # before the user's
    assert "iptables -t nat" not in hub  # no masquerade unless asked
    assert "sysctl" not in render_node(small, "nat") and "iptables" not in render_node(small, "nat")


def test_user_hooks_read_keys_as_wg_quick_does() -> None:
    text = ("[Interface]\r\n  postup=echo a \r\nPOSTDOWN\t =  echo b\n# PostUp = commented\nPostUpX = no\n"
            f"PostUp = {KEY_POST_UP}\nPreUp = echo c\n[Peer]\nPublicKey = k\nPostDown = echo d\n")
    assert user_hooks(text) == (("echo a",), ("echo b", "echo d"))
    assert user_hooks("") == ((), ())
    assert user_hooks("# café\nPostUp = echo é\nPublicKey = aPoStb=\n") == (("echo é",), ())  # not ASCII
    assert user_hooks("PublicKey = aPoStb=\n  PostDown=x") == ((), ("x",))


def test_masquerade_rules_per_subnet() -> None:
    old = "    subnets: [192.168.1.0/24]"
    mesh, _ = loads(SMALL.replace(old, "    masquerade: true\n" + old))
    hub = render_node(mesh, "hub")
    rule = "POSTROUTING ! -s 192.168.1.0/24 -d 192.168.1.0/24 -m comment --comment wgmesh:%i -j MASQUERADE"
    assert f"PostUp = iptables -w 5 -t nat -C {rule} 2>/dev/null || iptables -w 5 -t nat -I {rule}\n" in hub
    assert f"PostDown = iptables -w 5 -t nat -D {rule} || true\n" in hub
    assert user_hooks(hub) == (("sysctl -w net.ipv4.ip_forward=1",), ("echo down %i",))


@pytest.mark.parametrize("sep", [", ", ""])
@pytest.mark.parametrize("texts", [["a"], ["a", "bb"], ["a", "bb", "ccc"], ["x", "", "z"]])
def test_all_but_one_is_the_join_without_it(texts: list[str], sep: str) -> None:
    from wgmesh.core.render import _AllBut

    joined = _AllBut(texts, sep)
    assert joined.joined == sep.join(texts)
    for i in range(len(texts)):
        assert joined.but(i) == sep.join(texts[:i] + texts[i + 1:]), i


def test_the_rest_of_interface_made_once_per_kind_is_the_same_text() -> None:
    """interface_section keeps the relay, MTU and hook lines by what they are made of: a config differing in any
    one of those fields gets its own lines, the same as when nothing is kept."""
    import dataclasses
    import ipaddress

    from wgmesh.core import render as r

    base = r.InterfaceConfig("a", "wg0", (ipaddress.ip_interface("10.0.0.1/24"),), 51820, None, (), (), ())
    variants = [base, dataclasses.replace(base, node="b", listen_port=51821),
                dataclasses.replace(base, interface="wg1"), dataclasses.replace(base, mtu=1380),
                dataclasses.replace(base, post_up=("echo up",)), dataclasses.replace(base, post_down=("echo down",)),
                dataclasses.replace(base, forwarding=(4,)),
                dataclasses.replace(base, masquerade=(ipaddress.ip_network("192.168.1.0/24"),)),
                dataclasses.replace(base, relays_for=("x", "y")), dataclasses.replace(base, reresolve=True),
                dataclasses.replace(base, kept_preshared_keys=("k",))]
    fresh = []
    for cfg in variants:
        r._REST.clear()
        fresh.append(r.interface_section(cfg))
    kept = [r.interface_section(cfg) for cfg in variants + variants]  # (the second round from what is kept)
    assert kept == fresh + fresh
    assert len(set(fresh)) == len(variants) - 1  # (all differ but wg1's: the hooks say %i, not its name)
