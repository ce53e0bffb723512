"""core/state.py: `normalized` remembers each distinct allowed-ips set's sorted strings; its documents stay
independent (a caller may change one: commands/read.py blanks endpoints)."""

from __future__ import annotations

from ipaddress import ip_interface, ip_network

import pytest

from wgmesh.core.state import LivePeer, LiveState, digest, normalized

K1 = "aj6Hv5ZOCpNOowMFVU7K9L53JCmRmhi5P9FMXuUkmiY="
K2 = "B/9Ach88bIF3MgaBbLZ/U9T1FrJ+dq7N2jAFwDLBZh8="


def state(*prefixes: str) -> LiveState:
    ips = frozenset(ip_network(p) for p in prefixes)  # a new set each time: equal, never the same object
    peers = {k: LivePeer(k, None, ips, 0, 0, 0, 0, False) for k in (K2, K1)}
    return LiveState("wg0", True, K1, 51820, None, peers, frozenset({ip_interface("10.0.0.1/24")}), None, True,
                     frozenset(), True, K1, True, None, {}, None)


def test_allowed_ips_sorted_as_text_for_equal_sets() -> None:
    a = normalized(state("10.0.0.9/32", "10.0.0.10/32", "fd00::1/128"))
    b = normalized(state("fd00::1/128", "10.0.0.10/32", "10.0.0.9/32"))
    assert a == b and digest(a) == digest(b)
    assert [p["public_key"] for p in a["peers"]] == [K2, K1]  # sorted by key ("B" < "a")
    assert a["peers"][0]["allowed_ips"] == ["10.0.0.10/32", "10.0.0.9/32", "fd00::1/128"]


def test_documents_do_not_share_lists() -> None:
    a, b = normalized(state("10.0.0.2/32")), normalized(state("10.0.0.2/32"))
    a["peers"][0]["allowed_ips"].append("changed")
    a["peers"][1]["endpoint"] = "changed"
    assert b["peers"][0]["allowed_ips"] == ["10.0.0.2/32"] and b["peers"][1]["endpoint"] is None
    assert normalized(state("10.0.0.2/32")) == b


def test_live_peer_is_the_dataclass_built_the_usual_way() -> None:
    import dataclasses

    from wgmesh.core.state import live_peer

    ips = frozenset([ip_network("10.0.0.2/32")])
    values = ("k" * 43 + "=", "198.51.100.1:51820", ips, 25, 1_700_000_000, 5, 6, True)
    fast, usual = live_peer(*values), LivePeer(*values)
    assert type(fast) is LivePeer and fast == usual and hash(fast) == hash(usual) and repr(fast) == repr(usual)
    assert dataclasses.astuple(fast) == values
    assert dataclasses.replace(fast, endpoint=None) == dataclasses.replace(usual, endpoint=None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.endpoint = None  # type: ignore[misc]
