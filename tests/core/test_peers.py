"""core/peers.py: when a live endpoint satisfies the declared one. An IPv4-mapped IPv6 address (::ffff:a.b.c.d) is
not the IPv4 address: WireGuard on Linux (kernel and wireguard-go) has an IPv4 socket and an IPv6-only one, so
packets never come from one, and an endpoint set to one by hand sends nothing (review R2: taking it for the IPv4
address hid a dead endpoint)."""

from __future__ import annotations

import dataclasses

import pytest
from meshes import converged, four

from wgmesh.core.model import Endpoint
from wgmesh.core.peers import endpoint_matches
from wgmesh.core.plan import diff_node

MESH = four()  # gcp's endpoint is the literal 198.51.100.3:51820, azure's the name azure.example.com:51820


@pytest.mark.parametrize(
    ("want", "live", "ok"),
    [
        (Endpoint("10.250.3.12", 51820), "[::ffff:10.250.3.12]:51820", False),  # declared IPv4, live mapped
        (Endpoint("::ffff:10.250.3.12", 51820), "10.250.3.12:51820", False),  # declared mapped, live IPv4
        (Endpoint("::ffff:10.250.3.12", 51820), "[::ffff:10.250.3.12]:51820", True),
        (Endpoint("10.250.3.12", 51820), "[::ffff:10.250.3.13]:51820", False),  # another address
        (Endpoint("10.250.3.12", 51820), "[::ffff:10.250.3.12]:51821", False),  # another port
        # the peer's address of the other family is another address (dual-stack meshes: names or one family)
        (Endpoint("10.250.3.12", 51820), "[fd50:3::12]:51820", False),
        (Endpoint("a.example", 51820), "[::ffff:10.9.9.9]:51820", False),  # a name: the same
        (Endpoint("a.example", 51820), "10.9.9.9:51820", True),
        (Endpoint("a.example", 51820), "[fd00::9]:51820", True),
    ],
)
def test_an_ipv4_mapped_endpoint_is_not_its_ipv4_address(want: Endpoint, live: str, ok: bool) -> None:
    assert endpoint_matches(want, live, {"a.example": ("fd00::9", "10.9.9.9")}) is ok


@pytest.mark.parametrize("peer", ["gcp", "azure"])  # a literal, a name
def test_a_peer_set_to_a_mapped_address_is_a_change_apply_repairs(peer: str) -> None:
    state = converged(MESH, "aws", resolved={"azure.example.com": ("203.0.113.2",)})
    lp = state.peers[MESH.node(peer).public_key]
    address = "198.51.100.3" if peer == "gcp" else "203.0.113.2"
    moved = dataclasses.replace(lp, endpoint=f"[::ffff:{address}]:51820")
    state = dataclasses.replace(state, peers={**state.peers, lp.public_key: moved})
    plan = diff_node(MESH, MESH.node("aws"), state)
    assert [c.address for c in plan.changes] == [f"peer {peer}"]
    assert f"Endpoint = {address}:51820" in _sync(plan, MESH.node(peer).public_key)


def _sync(plan: object, key: str | None) -> str:
    """The syncconf input's stanza of the peer with `key`."""
    from wgmesh.core.steps import StepKind

    text = next(s.value for s in plan.steps if s.kind is StepKind.SYNC_PEERS)  # type: ignore[attr-defined]
    return text[text.index(key or ""):].split("\n\n")[0]
