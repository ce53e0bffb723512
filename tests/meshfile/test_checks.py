"""meshfile/checks.py: the overlap search across all prefixes of a mesh, held to the pairwise definition."""

from __future__ import annotations

import ipaddress

from hypothesis import given
from hypothesis import strategies as st

from wgmesh.meshfile.checks import overlapping

V4 = st.builds(lambda a, p: ipaddress.ip_network((a, p), strict=False), st.integers(0, 2**32 - 1), st.integers(0, 32))
V6 = st.builds(lambda a, p: ipaddress.ip_network((a, p), strict=False), st.integers(0, 2**128 - 1),
               st.integers(0, 128))


@given(st.lists(st.one_of(V4, V6), max_size=30))
def test_overlapping_finds_exactly_the_pairs_that_overlap(nets: list) -> None:
    items = [(n, i) for i, n in enumerate(nets)]
    got = {frozenset(p) for p in overlapping(items)}
    want = {frozenset((i, j)) for i, a in enumerate(nets) for j, b in enumerate(nets)
            if i < j and a.version == b.version and a.overlaps(b)}
    assert got == want


def test_nested_and_disjoint_blocks() -> None:
    nets = [ipaddress.ip_network(t) for t in ("10.0.0.0/8", "10.1.0.0/16", "10.1.2.0/24", "192.168.0.0/24",
                                               "10.1.2.3/32", "fd00::/8", "fd00::1/128")]
    got = {frozenset(p) for p in overlapping([(n, str(n)) for n in nets])}
    assert frozenset(("10.0.0.0/8", "10.1.2.3/32")) in got and frozenset(("fd00::/8", "fd00::1/128")) in got
    assert not any("192.168.0.0/24" in p for p in got)
    assert len(got) == 7
