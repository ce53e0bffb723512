"""The model's types and the pure grammars of its values (keys, endpoints, hosts, [user@]host[:port])."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from meshes import four

from wgmesh.core.model import (
    Endpoint,
    Ssh,
    SshTarget,
    Subnet,
    parse_endpoint,
    parse_host,
    parse_ssh_target,
    validate_key,
)

KA = "76g31p64QmeSkdVYkRCDqqshYcBF71jU5GtKfq2gmWU="
KB = "fiVvTzvLW+guc0/puGdPheeZRsT4FHHsU1WwyvhO9Xk="


@pytest.mark.parametrize(
    ("endpoint", "text", "literal"),
    [
        (Endpoint("aws.example.com", 51820), "aws.example.com:51820", False),
        (Endpoint("203.0.113.1", 1), "203.0.113.1:1", True),
        (Endpoint("2001:db8::1", 51820), "[2001:db8::1]:51820", True),
        (Endpoint("fe80::1%eth0", 1), "[fe80::1%eth0]:1", True),
        (Endpoint("1.2.3", 1), "1.2.3:1", False),  # digits and dots, and still a name
        (Endpoint("10.0.0.256", 1), "10.0.0.256:1", False),
        (Endpoint("\u0663.\u0663.\u0663.\u0663", 1), "\u0663.\u0663.\u0663.\u0663:1", False),  # digits, not ASCII
        (Endpoint("1e100.net", 1), "1e100.net:1", False),
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


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        (KA, True),
        (KB, True),
        (KA[:42] + "l=", False),  # non-canonical: padding bits set
        (KA[:43], False),
        (KA + "=", False),
        (" " + KA[1:], False),
        ("A" * 43 + "=", True),
        ("", False),
        ("é" * 44, False),
        ("YWJj" * 11, False),  # 33 bytes, no padding
    ],
)
def test_validate_key(text: str, ok: bool) -> None:
    assert validate_key(text) is ok


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("aws.example.com:51820", Endpoint("aws.example.com", 51820)),
        ("198.51.100.7:1", Endpoint("198.51.100.7", 1)),
        ("[2001:db8::1]:65535", Endpoint("2001:db8::1", 65535)),
        ("localhost:51820", Endpoint("localhost", 51820)),
    ],
)
def test_parse_endpoint_ok(text: str, expected: Endpoint) -> None:
    assert parse_endpoint(text) == expected
    assert str(parse_endpoint(text)) == text


@pytest.mark.parametrize(
    "text",
    ["aws", "aws:", "aws:0", "aws:65536", "2001:db8::1:51820", "[2001:db8::1]", "[10.0.0.1]:5", "a b:1",
     "-x.com:1", "999.1.1.1:5", "[fe80::1%eth0]:5", "host:+5", "host:٥", "[2001:db8::1]:٥١٨٢٠"],
)  # fmt: skip
def test_parse_endpoint_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_endpoint(text)


def test_an_ipv4_mapped_endpoint_is_refused_with_the_ipv4_address_to_write() -> None:
    """It validated, and the pair was dead while plan said "No changes" (review R3): WireGuard on Linux sends
    nothing to such an address."""
    with pytest.raises(ValueError, match=r"IPv4-mapped address does not work as an endpoint.*10\.250\.1\.11:51999"):
        parse_endpoint("[::ffff:10.250.1.11]:51999")


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("bastion", SshTarget(None, "bastion", None)),
        ("admin@bastion.example.com", SshTarget("admin", "bastion.example.com", None)),
        ("root@203.0.113.1:2222", SshTarget("root", "203.0.113.1", 2222)),
        ("[2001:db8::1]", SshTarget(None, "2001:db8::1", None)),
        ("ops@[2001:db8::1]:22", SshTarget("ops", "2001:db8::1", 22)),
        ("2001:db8::1", SshTarget(None, "2001:db8::1", None)),
        ("u@fe80::1%eth0", SshTarget("u", "fe80::1%eth0", None)),
    ],
)
def test_parse_ssh_target(text: str, want: SshTarget) -> None:
    assert parse_ssh_target(text) == want


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty: write [user@]host[:port]"),
        ("admin@bastion:abc", "the SSH port after ':' must be a number from 1 to 65535"),
        ("admin@bastion:0", "the SSH port must be from 1 to 65535"),
        ("admin@bastion:65536", "the SSH port must be from 1 to 65535"),
        ("bastion:٥", "must be a number"),
        ("bastion:", "empty port after ':'"),
        ("@bastion", "empty user before '@'"),
        ("admin@", "empty host"),
        ("admin@:22", "empty host"),
        ("Root@host", "invalid user name 'Root'"),
        ("a@b@c", "invalid user name"),
        ("-oProxyCommand=x", "not starting with '-'"),
        ("root@bastion -p 22", "without spaces"),
        ("[::1", "IPv6 host"),
        ("[bastion]:22", "IPv6 host"),
        ("[::1]x", "IPv6 host"),
        ("a..b", "empty label between dots"),
        ("999.1.1.1:22", "not a valid IPv4 address"),
    ],
)
def test_parse_ssh_target_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_ssh_target(text)
    assert message in str(info.value)


@pytest.mark.parametrize(
    "text", ["h", "node-1.example.com", "node1.example.com.", "203.0.113.7", "2001:db8::7", "fe80::1%eth0", "a_b"]
)
def test_parse_host_ok(text: str) -> None:
    assert parse_host(text) == text


@pytest.mark.parametrize(
    "text", ["", "a..b", ".a", "-h", "a b", "h\x00", "[::1]", "1.2.3", "h:22", "fe80::1%a;b", "a.-b", "x" * 254, "é"]
)
def test_parse_host_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_host(text)


@pytest.mark.parametrize(
    ("target", "text"),
    [
        (SshTarget("u", "h", 22), "u@h:22"),
        (SshTarget(None, "h", None), "h"),
        (SshTarget("u", "2001:db8::1", 2200), "u@[2001:db8::1]:2200"),
        (SshTarget(None, "2001:db8::1", None), "[2001:db8::1]"),
    ],
)
def test_ssh_target_text_round_trips(target: SshTarget, text: str) -> None:
    assert str(target) == text
    assert parse_ssh_target(text) == target


@pytest.mark.parametrize(
    ("user", "sudo", "use"),
    [("root", None, False), ("ubuntu", None, True), ("ubuntu", False, False), ("root", True, True)],
)
def test_use_sudo(user: str, sudo: bool | None, use: bool) -> None:
    assert Ssh(host="h", user=user, sudo=sudo).use_sudo is use


def test_a_hint_names_the_mesh_file_unless_it_is_the_default() -> None:
    """Review C8: hints said `wgmesh enroll newn` after `node add ... -f OTHER/mesh.yaml`: copied as shown, the
    command acted on ./mesh.yaml."""
    from wgmesh.core.model import command_line

    assert command_line("enroll a", Path("mesh.yaml")) == "wgmesh enroll a"
    assert command_line("enroll a", Path("./mesh.yaml")) == "wgmesh enroll a"
    assert command_line("apply", Path("/srv/mesh/mesh.yaml")) == "wgmesh apply -f /srv/mesh/mesh.yaml"
    assert command_line("apply", Path("my mesh/it's.yaml")) == "wgmesh apply -f 'my mesh/it'\\''s.yaml'"


_DOTTED = st.text(alphabet="0123456789./:%", max_size=22)
_QUADS = st.tuples(*[st.integers(0, 300)] * 4, st.integers(0, 40)).map(
    lambda t: f"{t[0]}.{t[1]}.{t[2]}.{t[3]}/{t[4]}")


def _outcome(parse: Any, text: str) -> Any:
    try:
        return parse(text)
    except ValueError:
        return ValueError


@given(st.one_of(_DOTTED, _QUADS, _QUADS.map(lambda s: s.partition("/")[0])))
def test_ip_address_and_ip_network_are_ipaddress_own(text: str) -> None:
    """mesh.yaml's addresses and networks are parsed the faster way for a dotted quad; the result, or the
    ValueError, is ipaddress's."""
    from wgmesh.core.model import ip_address, ip_network

    assert _outcome(ip_address, text) == _outcome(ipaddress.ip_address, text)
    assert _outcome(ip_network, text) == _outcome(lambda t: ipaddress.ip_network(t, strict=True), text)


@pytest.mark.parametrize("text", [
    "10.0.0.1", "0.0.0.0", "255.255.255.255", "010.0.0.1", "01.2.3.4", "1.2.3.256", "10.0.0.0/8", "01.0.0.0/8",
    "10.0.0.1/8", "10.0.0.0/08", "10.0.0.0/33", "0.0.0.0/0", "fd00::/64", "fd00::1",
])
def test_ip_address_and_ip_network_on_the_edges(text: str) -> None:
    from wgmesh.core.model import ip_address, ip_network

    assert _outcome(ip_address, text) == _outcome(ipaddress.ip_address, text)
    assert _outcome(ip_network, text) == _outcome(lambda t: ipaddress.ip_network(t, strict=True), text)
