from __future__ import annotations

import ipaddress

import pytest
from meshes import four

from wgmesh.core.model import Endpoint, Subnet


@pytest.mark.parametrize(
    ("endpoint", "text", "literal"),
    [
        (Endpoint("aws.example.com", 51820), "aws.example.com:51820", False),
        (Endpoint("203.0.113.1", 1), "203.0.113.1:1", True),
        (Endpoint("2001:db8::1", 51820), "[2001:db8::1]:51820", True),
    ],
)
def test_endpoint(endpoint: Endpoint, text: str, literal: bool) -> None:
    assert str(endpoint) == text
    assert endpoint.is_literal is literal


@pytest.mark.parametrize(
    ("prefix", "probe", "expected"),
    [("192.168.10.0/24", None, "192.168.10.1"), ("192.168.10.0/24", "192.168.10.7", "192.168.10.7"),
     ("10.9.9.9/32", None, "10.9.9.9"), ("fd00:99::/64", None, "fd00:99::1")],
)
def test_subnet_probe_address(prefix: str, probe: str | None, expected: str) -> None:
    s = Subnet(ipaddress.ip_network(prefix), ipaddress.ip_address(probe) if probe else None)
    assert s.probe_address == ipaddress.ip_address(expected)


def test_interface_addresses_take_the_network_prefix_and_allowed_ips_are_host_routes() -> None:
    mesh = four()
    aws = mesh.node("aws")
    assert [str(a) for a in mesh.interface_addresses(aws)] == ["10.0.0.1/24"]
    assert [str(n) for n in aws.allowed_ips] == ["10.0.0.1/32", "192.168.10.0/24"]
    assert mesh.key_path() == "/etc/wireguard/wg0.key" and mesh.conf_path() == "/etc/wireguard/wg0.conf"
