"""core/peers.py: when a live endpoint satisfies the declared one. WireGuard moves a peer's endpoint to wherever its
packets come from; on a dual-stack socket an IPv4 peer's packets come from its IPv4-mapped IPv6 address
(::ffff:a.b.c.d), the same address, which must not be drift."""

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
        (Endpoint("10.250.3.12", 51820), "[::ffff:10.250.3.12]:51820", True),  # declared IPv4, live mapped
        (Endpoint("::ffff:10.250.3.12", 51820), "10.250.3.12:51820", True),  # declared mapped, live IPv4
        (Endpoint("::ffff:10.250.3.12", 51820), "[::ffff:10.250.3.12]:51820", True),
        (Endpoint("10.250.3.12", 51820), "[::ffff:10.250.3.13]:51820", False),  # another address
        (Endpoint("10.250.3.12", 51820), "[::ffff:10.250.3.12]:51821", False),  # another port
        # the peer's address of the other family is another address (dual-stack meshes: names or one family)
        (Endpoint("10.250.3.12", 51820), "[fd50:3::12]:51820", False),
        (Endpoint("a.example", 51820), "[::ffff:10.9.9.9]:51820", True),  # a name: as before
        (Endpoint("a.example", 51820), "[fd00::9]:51820", True),
    ],
)
def test_an_ipv4_mapped_endpoint_is_its_ipv4_address(want: Endpoint, live: str, ok: bool) -> None:
    assert endpoint_matches(want, live, {"a.example": ("fd00::9", "10.9.9.9")}) is ok


def test_a_literal_peer_seen_at_its_mapped_address_is_no_change() -> None:
    state = converged(MESH, "aws")
    gcp = state.peers[MESH.node("gcp").public_key]
    moved = dataclasses.replace(gcp, endpoint="[::ffff:198.51.100.3]:51820")
    state = dataclasses.replace(state, peers={**state.peers, gcp.public_key: moved})
    assert diff_node(MESH, MESH.node("aws"), state).changes == ()
