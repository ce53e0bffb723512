"""The lowest free address of each mesh network."""

from __future__ import annotations

import ipaddress

import pytest
from meshes import four

from wgmesh.core.addresses import NetworkFull, free_addresses, lowest_free
from wgmesh.core.model import Mesh, Node, Ssh


@pytest.mark.parametrize(
    ("network", "used", "want"),
    [
        ("10.0.0.0/24", [], "10.0.0.1"),
        ("10.0.0.0/24", ["10.0.0.1", "10.0.0.2", "10.0.0.4"], "10.0.0.3"),
        ("10.0.0.0/30", ["10.0.0.1"], "10.0.0.2"),
        ("10.0.0.0/30", ["10.0.0.1", "10.0.0.2"], None),
        ("10.0.0.0/31", ["10.0.0.0"], "10.0.0.1"),
        ("10.0.0.7/32", [], "10.0.0.7"),
        ("fd00::/64", ["fd00::1"], "fd00::2"),
        ("fd00::/127", ["fd00::"], "fd00::1"),
        ("10.0.0.0/24", ["10.0.1.1", "fd00::1"], "10.0.0.1"),
    ],
)
def test_lowest_free(network: str, used: list[str], want: str | None) -> None:
    got = lowest_free(ipaddress.ip_network(network), [ipaddress.ip_address(u) for u in used])
    assert got == (ipaddress.ip_address(want) if want else None)


def _mesh(networks: list[str], addresses: list[list[str]]) -> Mesh:
    nodes = tuple(
        Node(f"n{i}", tuple(ipaddress.ip_address(a) for a in addrs), None, None, Ssh(host=f"h{i}"))
        for i, addrs in enumerate(addresses)
    )
    return Mesh("m", "wg0", tuple(ipaddress.ip_network(n) for n in networks), nodes)


def test_free_addresses_in_every_network_and_full() -> None:
    mesh = _mesh(["10.1.0.0/24", "fd10::/64"], [["10.1.0.1", "fd10::1"], ["10.1.0.2", "fd10::2"]])
    assert [str(a) for a in free_addresses(mesh)] == ["10.1.0.3", "fd10::3"]
    assert [str(a) for a in free_addresses(four())] == ["10.0.0.5"]
    small = _mesh(["10.0.0.0/30"], [["10.0.0.1"], ["10.0.0.2"]])
    with pytest.raises(NetworkFull, match=r"no free address left in 10\.0\.0\.0/30: pass --address"):
        free_addresses(small)
    with pytest.raises(ValueError):  # a core ValueError: callers choose how to report it
        free_addresses(small)


