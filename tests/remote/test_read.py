"""remote/read.py: scripts/read.sh run on stub nodes (dash and busybox), and the parsers of a node's live state
over real output captured in tests/fixtures/live (see capture.sh there), preflight included."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import ipaddress
import json
import os
import re
import shlex
import shutil
import subprocess
import time
from ipaddress import ip_interface, ip_network
from pathlib import Path

import pytest
from nacl.public import PrivateKey
from remote.stubs import Stubs, answering, calls

from wgmesh.core import nodeos
from wgmesh.core.state import InterfaceDump, LivePeer, LiveState, digest, normalized
from wgmesh.remote.read import (
    ParseError,
    ReadError,
    parse_conf_text,
    parse_dump,
    parse_forwarding,
    parse_getent,
    parse_ip_addr,
    parse_ip_route,
    parse_iptables,
    parse_other_routes,
    parse_preflight,
    parse_read_output,
    read_command,
)
from wgmesh.remote.shell import sections

FIXTURES = Path(__file__).parent.parent / "fixtures" / "live"

# Public keys of the throwaway lab (capture.sh): P1/P3 are wg0 of namespaces a/b, P5 is wg1 of a.
P1 = "aj6Hv5ZOCpNOowMFVU7K9L53JCmRmhi5P9FMXuUkmiY="
P2 = "B/9Ach88bIF3MgaBbLZ/U9T1FrJ+dq7N2jAFwDLBZh8="
P3 = "5LPci42qbheKBQbqAqaK2+YCPoprzF4FR+1SZLTllhQ="
P4 = "5kOZ4ewN9E5LMtrSdXDQSUzwUf6Bx7AIz9qqyXaoxRE="
P5 = "ouBkHfdC0EpRi64qk4KxJdnFiMRXer2axTcz3Ge3EGg="
P6 = "o9ofeG2tillusI1+DyVTOQZKyEwoIm/cSHOtVOaJyC8="


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


def nets(*prefixes: str) -> frozenset:
    return frozenset(ip_network(p) for p in prefixes)


def secrets_in(raw_dump: str) -> set[str]:
    """The private and preshared keys printed in clear in a raw `wg show IF dump`."""
    lines = [line.split("\t") for line in raw_dump.splitlines() if line]
    found = {lines[0][0]} | {fields[1] for fields in lines[1:]}
    return found - {"(none)"}


def derive_public(private_b64: str) -> str:
    return base64.b64encode(bytes(PrivateKey(base64.b64decode(private_b64)).public_key)).decode()


# --------------------------------------------------------------------------------------------- wg dump


@pytest.mark.parametrize(
    ("name", "expected", "peer_count"),
    [
        ("wg_dump_a_wg0.txt", InterfaceDump(P1, 51820, 0x1234), 3),
        ("wg_dump_a_wg1.txt", InterfaceDump(P5, 51900, None), 1),
        ("wg_dump_b_wg0.txt", InterfaceDump(P3, 51821, None), 1),
        ("wg_dump_b_wgnokey.txt", InterfaceDump(None, 49532, None), 0),
    ],
)
def test_parse_dump_interface_line(name: str, expected: InterfaceDump, peer_count: int) -> None:
    iface, peers = parse_dump(fixture(name))
    assert iface == expected
    assert len(peers) == peer_count
    assert all(key == peer.public_key for key, peer in peers.items())


@pytest.mark.parametrize(
    ("name", "key", "endpoint", "allowed", "keepalive", "psk"),
    [
        ("wg_dump_a_wg0.txt", P2, "192.0.2.10:51820", ("10.77.0.2/32", "fd77::2/128", "192.168.50.0/24"), 25, True),
        ("wg_dump_a_wg0.txt", P3, "[fd00:abcd::3]:51821", ("10.77.0.3/32", "fd77::3/128", "fd99:1::/48"), 0, False),
        ("wg_dump_a_wg0.txt", P4, None, ("10.77.0.4/32",), 0, False),
        ("wg_dump_a_wg1.txt", P6, "198.51.100.7:51900", ("10.88.0.6/32",), 0, False),
        ("wg_dump_b_wg0.txt", P1, "[fd00:abcd::1]:51820", ("10.77.0.1/32", "fd77::1/128"), 15, False),
    ],
)
def test_parse_dump_peers(
    name: str, key: str, endpoint: str | None, allowed: tuple[str, ...], keepalive: int, psk: bool
) -> None:
    _, peers = parse_dump(fixture(name))
    peer = peers[key]
    assert peer.endpoint == endpoint
    assert peer.allowed_ips == nets(*allowed)
    assert peer.persistent_keepalive == keepalive
    assert peer.has_preshared_key is psk


def test_parse_dump_counters_of_a_peer_that_shook_hands() -> None:
    # b pinged a through the tunnel before the capture: the peer has a handshake and traffic both ways.
    _, peers = parse_dump(fixture("wg_dump_b_wg0.txt"))
    peer = peers[P1]
    assert peer.latest_handshake > 1_600_000_000
    assert peer.rx_bytes > 0
    assert peer.tx_bytes > 0
    _, silent = parse_dump(fixture("wg_dump_a_wg0.txt"))
    assert silent[P4].latest_handshake == 0
    assert silent[P4].rx_bytes == silent[P4].tx_bytes == 0


@pytest.mark.parametrize("name", ["wg_dump_a_wg0.txt", "wg_dump_a_wg1.txt", "wg_dump_b_wg0.txt"])
def test_parse_dump_keeps_no_secret(name: str) -> None:
    raw = fixture(name)
    secrets = secrets_in(raw)
    assert secrets, "the raw fixture holds the lab's private key"
    parsed = repr(parse_dump(raw))
    for secret in secrets:
        assert secret not in parsed


def test_raw_fixture_private_key_matches_its_public_key() -> None:
    # Guards the fixture itself: field 1 really is the private key of field 2.
    first = fixture("wg_dump_a_wg0.txt").splitlines()[0].split("\t")
    assert derive_public(first[0]) == first[1] == P1


def redact(raw: str) -> str:
    """What the node-side awk does, written independently to compare parse results."""
    out = []
    for n, line in enumerate(raw.splitlines()):
        fields = line.split("\t")
        if n == 0:
            fields[0] = "(hidden)"
        elif fields[1] != "(none)":
            fields[1] = "(hidden)"
        out.append("\t".join(fields))
    return "\n".join(out) + "\n"


@pytest.mark.parametrize("name", ["wg_dump_a_wg0.txt", "wg_dump_a_wg1.txt", "wg_dump_b_wgnokey.txt"])
def test_parse_dump_redacted_equals_raw(name: str) -> None:
    raw = fixture(name)
    assert parse_dump(redact(raw)) == parse_dump(raw)


def test_parse_dump_empty_means_no_interface() -> None:
    assert parse_dump("") == (None, {})
    assert parse_dump("\n") == (None, {})


@pytest.mark.parametrize(
    ("fwmark", "expected"),
    [("off", None), ("0x1234", 0x1234), ("0xffffffff", 0xFFFFFFFF), ("4660", 4660), ("0", None)],
)
def test_parse_dump_fwmark(fwmark: str, expected: int | None) -> None:
    iface, _ = parse_dump(f"(hidden)\t{P1}\t51820\t{fwmark}\n")
    assert iface is not None
    assert iface.fwmark == expected


PEER_OK = f"{P2}\t(none)\t192.0.2.10:51820\t10.0.0.2/32\t0\t0\t0\toff"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (f"(hidden)\t{P1}\t51820\n", "interface line has 3 fields"),
        (f"(hidden)\t{P1}\t51820\t0x1234\textra\n", "interface line has 5 fields"),
        (f"(hidden)\t{P1}\tport\toff\n", "listen port is not a number"),
        ("(hidden)\tnot-a-key\t51820\toff\n", "public key is not a WireGuard key"),
        (f"(hidden)\t{P1}\t51820\t0xzz\n", "fwmark"),
        (f"(hidden)\t{P1}\t51820\toff\n{P2}\t(none)\t(none)\t10.0.0.2/32\t0\t0\t0\n", "peer line has 7 fields"),
        (f"(hidden)\t{P1}\t51820\toff\n{PEER_OK}\n{PEER_OK}\n", "listed twice"),
        (f"(hidden)\t{P1}\t51820\toff\n{PEER_OK.replace('10.0.0.2/32', '10.0.0.300/32')}\n", "allowed-ips"),
        (f"(hidden)\t{P1}\t51820\toff\n{PEER_OK.replace('192.0.2.10:51820', 'fd00::1:51820')}\n", "endpoint"),
        (f"(hidden)\t{P1}\t51820\toff\n{PEER_OK.replace('192.0.2.10:51820', '192.0.2.10')}\n", "endpoint"),
        (f"(hidden)\t{P1}\t51820\toff\n{PEER_OK.replace(chr(9) + 'off', chr(9) + '-1')}\n", "keepalive"),
        (f"(hidden)\t{P1}\t51820\toff\n{PEER_OK.replace(P2, P2[:-2] + '==')}\n", "peer public key"),
    ],
)
def test_parse_dump_malformed(text: str, message: str) -> None:
    with pytest.raises(ParseError, match=message):
        parse_dump(text)


def test_parse_error_does_not_quote_a_private_key() -> None:
    raw = fixture("wg_dump_a_wg0.txt")
    first = raw.splitlines()[0]
    with pytest.raises(ParseError) as info:
        parse_dump(first + "\textra\n")  # wrong field count, private key still in the line
    for secret in secrets_in(raw):
        assert secret not in str(info.value)



# --------------------------------------------------------------------------------------------- ip -j


@pytest.mark.parametrize(
    ("name", "addresses", "mtu", "up"),
    [
        ("ip_addr_a_wg0.json", ("10.77.0.1/24", "fd77::1/64"), 1380, True),
        ("ip_addr_a_wg1.json", ("10.88.0.1/24",), 1420, True),
        ("ip_addr_b_wgnokey.json", (), 1420, False),
    ],
)
def test_parse_ip_addr(name: str, addresses: tuple[str, ...], mtu: int, up: bool) -> None:
    assert parse_ip_addr(fixture(name)) == (frozenset(ip_interface(a) for a in addresses), mtu, up)


def test_parse_ip_addr_interface_absent() -> None:
    # `ip -j addr show dev X` prints nothing on stdout when X does not exist
    assert parse_ip_addr("") == (frozenset(), None, False)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[{", "not JSON"),
        ('{"a": 1}', "list of objects"),
        ('[{"addr_info": [{"family": "inet", "scope": "global"}]}]', "malformed"),
        ('[{"mtu": ' + "9" * 5000 + "}]", "not JSON that ip prints"),  # over Python's 4,300 digits
        ("[" * 100_000 + "]" * 100_000, "not JSON that ip prints"),  # nested beyond the stack
        ('[{"mtu": 1e999}]', "mtu is not a number of 32 bits"),
        ('[{"mtu": 4294967296}]', "mtu is not a number of 32 bits"),
        ('[{"mtu": true}]', "mtu is not a number of 32 bits"),
    ],
)
def test_parse_ip_addr_malformed(text: str, message: str) -> None:
    with pytest.raises(ParseError, match=message):
        parse_ip_addr(text)


@pytest.mark.parametrize(
    ("name", "family", "routes"),
    [
        # proto kernel (connected) routes dropped; a host route prints without /32
        ("ip_route4_a_wg0.json", 4, ("10.99.9.9/32", "172.20.0.0/16", "192.168.50.0/24")),
        # fe80::/64 is proto kernel and link-local
        ("ip_route6_a_wg0.json", 6, ("fd55::/64", "fd99:1::/48")),
        # `dst: default` carries no family: the caller says which table it read
        ("ip_route4_a_wg1.json", 4, ("0.0.0.0/0",)),
        ("ip_route6_a_wg1.json", 6, ()),
        ("ip_route4_a_veth.json", 4, ()),
    ],
)
def test_parse_ip_route(name: str, family: int, routes: tuple[str, ...]) -> None:
    assert parse_ip_route(fixture(name), family=family) == nets(*routes)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[{"dst":"10.9.0.0/16","type":"unreachable","flags":[]}]', ()),
        ('[{"dst":"ff00::/8","metric":256,"flags":[],"pref":"medium"}]', ()),
        ('[{"dst":"fe80::/64","metric":1024,"flags":[],"pref":"medium"}]', ()),
        ('[{"dst":"default","gateway":"fd00::1","flags":[]}]', ("::/0",)),
        ('[{"dst":"10.9.0.0/16","protocol":"static","flags":[]}]', ("10.9.0.0/16",)),
        ("", ()),
        ("[]", ()),
    ],
)
def test_parse_ip_route_cases(text: str, expected: tuple[str, ...]) -> None:
    assert parse_ip_route(text) == nets(*expected)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[{"dst":"default","scope":"link","flags":[]}]', "unknown address family"),
        ('[{"dst":"10.0.0.0/33","flags":[]}]', "not a prefix"),
        ('[{"scope":"link"}]', "without a destination"),
        ("not json", "not JSON"),
    ],
)
def test_parse_ip_route_malformed(text: str, message: str) -> None:
    with pytest.raises(ParseError, match=message):
        parse_ip_route(text)


# --------------------------------------------------------------------------------------------- getent


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("getent_dual.txt", ("fd00:abcd::55", "192.0.2.55")),  # the resolver's order: IPv6 first here
        ("getent_localhost.txt", ("::1", "127.0.0.1")),
        ("getent_unknown.txt", ()),
    ],
)
def test_parse_getent(name: str, expected: tuple[str, ...]) -> None:
    assert parse_getent(fixture(name)) == expected


def test_parse_other_routes_of_a_lab_host() -> None:
    """read.sh's `otherroutes` on a lab host (aws, after `ip route replace 192.168.30.0/24 via 10.250.3.13 dev eth0`
    and two unreachable routes): each prefix with the line `ip` printed and its metric (IPv4's default 0)."""
    got = parse_other_routes(fixture("ip_route_other_aws.txt"))
    net = ipaddress.ip_network
    assert got[net("192.168.30.0/24")] == ("192.168.30.0/24 via 10.250.3.13 dev eth0", 0)
    assert got[net("10.77.0.0/16")] == ("unreachable 10.77.0.0/16", 0)
    assert got[net("fd77::/48")] == ("unreachable fd77::/48 dev lo metric 1024 pref medium", 1024)
    assert got[net("fe80::/64")][1] == 256
    assert set(got) == {net(p) for p in ("10.77.0.0/16", "10.250.3.0/24", "192.168.10.0/24", "192.168.30.0/24",
                                         "fd77::/48", "fe80::/64")}


def test_parse_other_routes_keeps_the_lowest_metric_and_skips_what_is_no_route() -> None:
    text = ("default via 10.0.0.1 dev eth0\n10.5.0.0/16 dev eth1 metric 200\n10.5.0.0/16 dev eth2 metric 50\n"
            "garbage here\n10.6.0.0/16 dev eth1 metric x\n10.7.0.0/16 dev \x1b[31meth1\n")
    got = parse_other_routes(text)
    assert got[ipaddress.ip_network("10.5.0.0/16")] == ("10.5.0.0/16 dev eth2 metric 50", 50)
    assert got[ipaddress.ip_network("10.6.0.0/16")][1] == 0
    assert "\x1b" not in got[ipaddress.ip_network("10.7.0.0/16")][0]
    assert len(got) == 3


def test_parse_getent_canonical_and_malformed() -> None:
    assert parse_getent("FD00:0::0055  STREAM x\n") == ("fd00::55",)
    # the order getent gives (wg takes the first), each address once
    assert parse_getent("192.0.2.7 STREAM x\n192.0.2.7 DGRAM\nfd00::7 STREAM\nfd00::7 DGRAM\n") == ("192.0.2.7",
                                                                                                 "fd00::7")
    with pytest.raises(ParseError, match="not an address"):
        parse_getent("garbage STREAM x\n")


# --------------------------------------------------------------------------------------------- whole read


def test_parse_read_output_node_a() -> None:
    state = parse_read_output("wg0", fixture("read_a_wg0.txt"))
    iface, raw_peers = parse_dump(fixture("wg_dump_a_wg0.txt"))
    assert iface is not None
    assert state.interface == "wg0"
    assert state.interface_exists
    assert (state.public_key, state.listen_port, state.fwmark) == (iface.public_key, 51820, 0x1234)
    assert set(state.peers) == {P2, P3, P4}
    for key, peer in raw_peers.items():
        # captured moments apart: counters may move, the configuration may not
        assert dataclasses.replace(state.peers[key], latest_handshake=0, rx_bytes=0, tx_bytes=0) == (
            dataclasses.replace(peer, latest_handshake=0, rx_bytes=0, tx_bytes=0)
        )
    assert state.peers[P2].has_preshared_key
    assert state.addresses == parse_ip_addr(fixture("ip_addr_a_wg0.json"))[0]
    assert (state.mtu, state.link_up) == (1380, True)
    assert state.routes == nets("10.99.9.9/32", "172.20.0.0/16", "192.168.50.0/24", "fd55::/64", "fd99:1::/48")
    assert state.key_file_exists
    assert state.key_file_public_key == P1 == state.public_key
    assert state.config_exists
    assert state.config_sha256 == hashlib.sha256((FIXTURES / "a_wg0.conf").read_bytes()).hexdigest()
    assert state.resolved == {
        "peer.lab.example": ("fd00:abcd::55", "192.0.2.55"),
        "localhost": ("::1", "127.0.0.1"),
        "nothing.invalid": (),
    }
    assert state.wg_quick_unit_enabled is None  # no systemd in the lab


def test_parse_read_output_interface_absent() -> None:
    state = parse_read_output("wg7", fixture("read_b_absent.txt"))
    assert state == LiveState(
        interface="wg7",
        interface_exists=False,
        public_key=None,
        listen_port=None,
        fwmark=None,
        peers={},
        addresses=frozenset(),
        mtu=None,
        link_up=False,
        routes=frozenset(),
        key_file_exists=False,
        key_file_public_key=None,
        config_exists=False,
        config_sha256=None,
        resolved={},
        wg_quick_unit_enabled=None,
        missing=(),
        os_family="debian",
    )


def test_parse_read_output_interface_without_private_key() -> None:
    state = parse_read_output("wgnokey", fixture("read_b_wgnokey.txt"))
    assert state.interface_exists
    assert state.public_key is None
    assert state.peers == {}
    assert state.link_up is False
    assert state.addresses == frozenset()


def test_parse_read_output_link_that_wg_cannot_read_is_an_error() -> None:
    # a veth named like the interface: the link exists, `wg show` fails; planning it as "absent" would be wrong
    with pytest.raises(ReadError, match=r"wgveth0 exists but .* failed: Unable to access interface"):
        parse_read_output("wgveth0", fixture("read_b_notwg.txt"))


def test_read_outputs_hold_no_secret() -> None:
    singles = ["wg_dump_a_wg0.txt", "wg_dump_a_wg1.txt", "wg_dump_b_wg0.txt"]
    secrets = set().union(*(secrets_in(fixture(name)) for name in singles))
    assert len(secrets) == 4  # a/wg0, a/wg1, b/wg0 private keys and the PSK of a/wg0
    for path in FIXTURES.glob("read_*.txt"):
        text = path.read_text()
        for secret in secrets:
            assert secret not in text, path.name


def replace_section(text: str, section: str, body: str) -> str:
    out, skipping = [], False
    for line in text.splitlines():
        if line.startswith("@@wgmesh:"):
            skipping = line == f"@@wgmesh:{section}"
            out.append(line)
            if skipping:
                out.extend(body.splitlines())
            continue
        if not skipping:
            out.append(line)
    return "\n".join(out) + "\n"


@pytest.mark.parametrize(
    ("body", "expected"),
    [("no-systemd", None), ("enabled", True), ("enabled-runtime", True), ("disabled", False), ("", False)],
)
def test_parse_read_output_systemd(body: str, expected: bool | None) -> None:
    text = replace_section(fixture("read_b_absent.txt"), "systemd", body)
    assert parse_read_output("wg7", text).wg_quick_unit_enabled is expected


@pytest.mark.parametrize(
    ("body", "exists", "public_key"),
    [
        ("present\n" + P3, True, P3),
        ("present\n", True, None),
        ("present\nnonsense", True, None),
        ("absent", False, None),
    ],
)
def test_parse_read_output_key_file(body: str, exists: bool, public_key: str | None) -> None:
    state = parse_read_output("wg7", replace_section(fixture("read_b_absent.txt"), "keyfile", body))
    assert (state.key_file_exists, state.key_file_public_key) == (exists, public_key)


def drop_line(text: str, line: str) -> str:
    return "\n".join(x for x in text.splitlines() if x != line) + "\n"


@pytest.mark.parametrize(
    ("mangle", "message"),
    [
        (lambda t: drop_line(t, "@@wgmesh:end"), "truncated"),
        (lambda t: drop_line(t, "@@wgmesh:v1"), "header"),
        (lambda t: drop_line(t, "@@wgmesh:route6"), "missing sections route6"),
        (lambda t: drop_line(t, "@@wgmesh:preflight"), "missing sections preflight"),
        (lambda t: replace_section(t, "preflight", "os debian\nlacks everything"), "preflight section malformed"),
        (lambda t: replace_section(t, "preflight", "hello"), "preflight section malformed"),
        (lambda t: t.replace("@@wgmesh:end", "@@wgmesh:conf\nabsent\n@@wgmesh:end"), "appears twice"),
        (lambda t: replace_section(t, "conf", "present\nnot-a-digest"), "checksum"),
        (lambda t: replace_section(t, "keyfile", "maybe"), "key file"),
        (lambda t: replace_section(t, "addr", "[{"), "ip addr"),
        (lambda t: "", "header"),
    ],
)
def test_parse_read_output_malformed(mangle, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ParseError, match=message):
        parse_read_output("wg0", mangle(fixture("read_a_wg0.txt")))


# --------------------------------------------------------------------------------------------- fingerprint


def base_state() -> LiveState:
    return parse_read_output("wg0", fixture("read_a_wg0.txt"))


def with_peer(state: LiveState, key: str, **changes: object) -> LiveState:
    peers = dict(state.peers)
    peers[key] = dataclasses.replace(peers[key], **changes)  # type: ignore[arg-type]
    return dataclasses.replace(state, peers=peers)


def test_fingerprint_ignores_counters_handshakes_and_order() -> None:
    state = base_state()
    moved = with_peer(state, P2, latest_handshake=1_800_000_000, rx_bytes=10, tx_bytes=20)
    reordered = dataclasses.replace(state, peers=dict(reversed(list(state.peers.items()))))
    assert digest(normalized(moved)) == digest(normalized(state)) == digest(normalized(reordered))
    assert len(digest(normalized(state))) == 64


def test_normalized_is_json_data_without_counters() -> None:
    state = with_peer(base_state(), P2, latest_handshake=1_800_000_000, rx_bytes=10, tx_bytes=20)
    data = normalized(state)
    assert json.loads(json.dumps(data)) == data
    peer = next(p for p in data["peers"] if p["public_key"] == P2)
    assert set(peer) == {"public_key", "endpoint", "allowed_ips", "persistent_keepalive", "has_preshared_key"}
    assert peer["allowed_ips"] == ["10.77.0.2/32", "192.168.50.0/24", "fd77::2/128"]
    assert data["peers"] == sorted(data["peers"], key=lambda p: p["public_key"])


@pytest.mark.parametrize(
    "change",
    [
        lambda s: with_peer(s, P2, endpoint="192.0.2.11:51820"),
        lambda s: with_peer(s, P2, allowed_ips=nets("10.77.0.2/32")),
        lambda s: with_peer(s, P3, persistent_keepalive=25),
        lambda s: with_peer(s, P2, has_preshared_key=False),
        lambda s: dataclasses.replace(s, peers={k: v for k, v in s.peers.items() if k != P4}),
        lambda s: dataclasses.replace(s, addresses=frozenset({ip_interface("10.77.0.1/24")})),
        lambda s: dataclasses.replace(s, routes=s.routes - nets("172.20.0.0/16")),
        lambda s: dataclasses.replace(s, listen_port=51821),
        lambda s: dataclasses.replace(s, fwmark=None),
        lambda s: dataclasses.replace(s, mtu=1420),
        lambda s: dataclasses.replace(s, link_up=False),
        lambda s: dataclasses.replace(s, config_sha256="0" * 64),
        lambda s: dataclasses.replace(s, key_file_public_key=None),
        lambda s: dataclasses.replace(s, resolved={**s.resolved, "peer.lab.example": ("192.0.2.56",)}),
        lambda s: dataclasses.replace(s, wg_quick_unit_enabled=True),
        lambda s: dataclasses.replace(s, forwarding={4: True, 6: False}),
        lambda s: dataclasses.replace(s, has_iptables=False),
        lambda s: dataclasses.replace(s, forward_rules=True),
        lambda s: dataclasses.replace(s, masquerade=nets("192.168.20.0/24")),
    ],
)
def test_fingerprint_changes_with_state(change) -> None:  # type: ignore[no-untyped-def]
    state = base_state()
    assert digest(normalized(change(state))) != digest(normalized(state))


# --------------------------------------------------------------------------------------------- preflight parser


@pytest.mark.parametrize(
    ("body", "missing", "family"),
    [
        ("os debian", (), "debian"),
        ("os ubuntu debian", (), "debian"),
        ("os rocky rhel centos fedora\nlacks flock", ("flock",), "fedora"),
        ("os alpine\nlacks ip-busybox\nlacks wg-quick\nlacks wg", ("wg", "wg-quick", "ip-busybox"), "alpine"),
        ("os\nlacks confdir\nlacks ip", ("ip", "confdir"), None),
        ("os Some$Thing\n", (), None),
        ("", (), None),
    ],
)
def test_parse_preflight(body: str, missing: tuple[str, ...], family: str | None) -> None:
    assert parse_preflight(body) == (missing, family)


def test_a_node_without_wg_is_read_not_refused() -> None:
    # `wg` is missing: its error is no ReadError (the plan says what to install), the link is still seen.
    text = replace_section(fixture("read_b_notwg.txt"), "preflight", "os debian\nlacks wg\nlacks wg-quick")
    state = parse_read_output("wgveth0", text)
    assert state.missing == ("wg", "wg-quick") and state.interface_exists


def test_busybox_ip_is_never_read_as_no_interface() -> None:
    # busybox ip prints no JSON: the wg dump says the interface exists, the ip sections are not trusted
    text = replace_section(fixture("read_a_wg0.txt"), "preflight", "os alpine\nlacks ip-busybox")
    text = replace_section(replace_section(text, "link", ""), "addr", "garbage")
    state = parse_read_output("wg0", text)
    assert state.interface_exists and state.public_key == P1
    assert (state.missing, state.os_family) == (("ip-busybox",), "alpine")
    assert state.addresses == frozenset() and state.routes == frozenset()


# --------------------------------------------------------------------------------------------- routing, config text

IPTABLES = fixture("iptables_forward.txt") + fixture("iptables_nat.txt")  # both tables, as a node prints them


@pytest.mark.parametrize(
    ("interface", "forward", "masquerade"),
    [
        # Docker's chains, a hand-written `-i wg0` ACCEPT, wg01's rules (wg0 is a prefix of its comment) and a
        # MASQUERADE commented "wgmesh:wg0 by hand" are all someone else's
        ("wg0", 2, ("192.168.20.0/24", "10.20.0.0/16")),
        ("wg01", 2, ("192.168.30.0/24",)),
        ("wg1", 0, ()),
        ("docker0", 0, ()),
    ],
)
def test_parse_iptables_captured(interface: str, forward: int, masquerade: tuple[str, ...]) -> None:
    assert parse_iptables(interface, IPTABLES.splitlines()) == (forward, nets(*masquerade))


IP6TABLES = fixture("ip6tables_forward.txt") + fixture("ip6tables_nat.txt")  # the same chains, ip6tables -S


@pytest.mark.parametrize(
    ("interface", "forward", "masquerade"),
    [
        ("wg0", 2, ("fd00:99:20::/64", "2001:db8:20::/48")),
        ("wg01", 2, ("fd00:99:30::/64",)),
        ("wg1", 0, ()),
    ],
)
def test_parse_ip6tables_captured(interface: str, forward: int, masquerade: tuple[str, ...]) -> None:
    assert parse_iptables(interface, IP6TABLES.splitlines()) == (forward, nets(*masquerade))


C = '-m comment --comment "wgmesh:wg0"'
IN, OUT = f"-A FORWARD -i wg0 {C} -j ACCEPT", f"-A FORWARD -o wg0 {C} -j ACCEPT"


@pytest.mark.parametrize(
    ("lines", "forward", "masquerade"),
    [
        ((IN, OUT), 2, ()),
        ((OUT, IN), 2, ()),
        ((IN,), 1, ()),  # one of the two: not in place (forwarded traffic would go one way only)
        ((OUT,), 1, ()),
        ((IN, OUT.replace("ACCEPT", "DROP")), 1, ()),
        ((IN, f"-A FORWARD -o wg1 {C} -j ACCEPT"), 1, ()),
        ((IN, f"-A FORWARD ! -o wg0 {C} -j ACCEPT"), 1, ()),
        ((IN, f"-A FORWARD -s 10.0.0.0/8 -o wg0 {C} -j ACCEPT"), 1, ()),
        ((IN, "-A FORWARD -o wg0 -m comment --comment wgmesh:wg0 -j ACCEPT"), 2, ()),  # unquoted: same words
        ((IN, f"-I FORWARD -o wg0 {C} -j ACCEPT"), 1, ()),  # not an -S line
        ((f"-A POSTROUTING ! -s 192.168.20.0/24 -d 192.168.20.0/24 {C} -j MASQUERADE",), 0,
         ("192.168.20.0/24",)),
        ((f"-A POSTROUTING ! -s fd20::/64 -d fd20::/64 {C} -j MASQUERADE",), 0, ("fd20::/64",)),
        ((f"-A POSTROUTING -s 192.168.20.0/24 -d 192.168.20.0/24 {C} -j MASQUERADE",), 0, ()),
        ((f"-A POSTROUTING ! -s 192.168.0.0/16 -d 192.168.20.0/24 {C} -j MASQUERADE",), 0, ()),
        ((f"-A POSTROUTING -d 192.168.20.0/24 {C} -j MASQUERADE",), 0, ()),
        ((f"-A POSTROUTING ! -s 192.168.20.0/24 -d 192.168.20.0/24 {C} -j SNAT --to-source 10.0.0.1",), 0, ()),
        ((f"-A POSTROUTING ! -s 192.168.20.0/24 -d 192.168.20.0/24 -o eth0 {C} -j MASQUERADE",), 0, ()),
        ((f"-A POSTROUTING ! -s nonsense -d nonsense {C} -j MASQUERADE",), 0, ()),
        (('-A FORWARD -i wg0 -m comment --comment "wgmesh:wg0 -j ACCEPT', "", "-P FORWARD DROP", "-A", "garbage"),
         0, ()),
    ],
)
def test_parse_iptables_counts_only_wgmeshs_own_rules(lines: tuple[str, ...], forward: int,
                                                      masquerade: tuple[str, ...]) -> None:
    assert parse_iptables("wg0", lines) == (forward, nets(*masquerade))


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("4 1\n6 0", {4: True, 6: False}),
        ("4 0", {4: False}),  # IPv6 disabled: its sysctl does not exist
        ("4 2\n6 1\n", {4: True, 6: True}),
        ("", {}),
        ("4 \n6 yes\n5 1\nnoise", {}),
    ],
)
def test_parse_forwarding(body: str, expected: dict[int, bool]) -> None:
    assert parse_forwarding(body) == expected


KEY_LIKE = re.compile(r"[A-Za-z0-9+/]{43}=")


def redact_conf(text: str) -> str:
    """What read.sh's awk prints of IF.conf, written independently (wg reads keys without case or blanks)."""
    out = []
    for line in text.splitlines():
        key = "".join(line.lower().split()).lstrip("#;")
        if key.startswith(("privatekey=", "presharedkey=")):
            line = line[: line.index("=") + 1] + " (redacted)"
        elif not key.startswith("publickey="):
            line = KEY_LIKE.sub("(redacted)", line)
        else:  # a PublicKey's value is kept: its first key before any `#`, nothing in its comment
            value, _, comment = line.partition("#")
            first = KEY_LIKE.search(value)
            cut = first.end() if first else 0
            line = value[:cut] + KEY_LIKE.sub("(redacted)", value[cut:] + ("#" + comment if _ else ""))
        out.append(line + "\n")
    return "".join(out)


def conf_secrets(text: str) -> set[str]:
    return {line.split("=", 1)[1].strip() for line in text.splitlines()
            if "".join(line.lower().split()).lstrip("#").startswith(("privatekey=", "presharedkey="))}


def test_parse_conf_text() -> None:
    assert parse_conf_text("|[Interface]\n|\n|PostUp = echo '@@wgmesh:end'") == (
        "[Interface]\n\nPostUp = echo '@@wgmesh:end'\n")
    assert parse_conf_text("") == ""
    with pytest.raises(ParseError, match="config text section malformed"):
        parse_conf_text("|[Interface]\nListenPort = 1")
    assert parse_conf_text("\n|[Peer]\n  \t\n||x\n") == "[Peer]\n|x\n"  # blank lines between are no part of it
    with pytest.raises(ParseError, match="config text section malformed"):
        parse_conf_text("|[Peer]\n  x |y")


def test_parse_read_output_routing_and_config_text_captured() -> None:
    text = fixture("read_c_routing.txt")
    conf = (FIXTURES / "c_wg0.conf").read_text()
    secrets = conf_secrets(conf)
    assert len(secrets) == 2  # the private key (three times, one commented out) and the preshared key
    for secret in secrets:
        assert secret not in text
    state = parse_read_output("wg0", text)
    assert state.forwarding == {4: True, 6: False}
    assert (state.has_iptables, state.forward_rules) == (True, True)
    assert state.masquerade == nets("192.168.20.0/24", "10.20.0.0/16")
    assert state.config_text == redact_conf(conf)
    assert "@@wgmesh:end\nAllowedIPs" in state.config_text  # a line of the file, not the end of the output
    assert state.config_sha256 == hashlib.sha256(conf.encode()).hexdigest()
    assert not state.interface_exists
    for secret in secrets:
        assert secret not in repr(state)


def test_parse_read_output_node_a_routing() -> None:
    state = parse_read_output("wg0", fixture("read_a_wg0.txt"))
    assert state.forwarding == {4: False, 6: False}
    assert (state.has_iptables, state.forward_rules, state.masquerade) == (True, False, frozenset())
    assert state.config_text == redact_conf((FIXTURES / "a_wg0.conf").read_text())
    assert "PrivateKey = (redacted)" in state.config_text and "PresharedKey = (redacted)" in state.config_text


def test_output_without_routing_sections_knows_nothing_of_them() -> None:
    """A read that printed no routing or config text sections: unknown, never "off" or "absent"."""
    state = parse_read_output("wg0", fixture("read_b_wg0.txt"))
    assert (state.forwarding, state.has_iptables, state.config_text) == ({}, None, None)
    text = replace_section(fixture("read_c_routing.txt"), "conf", "absent")  # conftext of a file now gone
    assert parse_read_output("wg0", text).config_text is None


@pytest.mark.parametrize(
    ("mangle", "message"),
    [
        (lambda t: replace_section(t, "iptables", "maybe"), "iptables section malformed"),
        (lambda t: replace_section(t, "iptables", ""), "iptables section malformed"),
        (lambda t: t.replace("\n@@wgmesh:end", "\n@@wgmesh:ip6tables\nmaybe\n@@wgmesh:end"),
         "ip6tables section malformed"),
        (lambda t: replace_section(t, "conftext", "[Interface]"), "config text section malformed"),
    ],
)
def test_parse_read_output_routing_malformed(mangle, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ParseError, match=message):
        parse_read_output("wg0", mangle(fixture("read_c_routing.txt")))


# --------------------------------------------------------------------------------------------- read.sh on stub nodes


def ip_answers(interface: str, *, link: str = "", addr: str = "", route4: str = "", route6: str = "") -> dict:
    """What a JSON-speaking `ip` answers to read.sh (absent interface: nothing, status 1)."""
    def ok(text: str) -> tuple[str, int]:
        return (text + "\n", 0) if text else ("", 1)

    return {
        "-j link show dev lo": '[{"ifindex":1,"ifname":"lo","flags":["LOOPBACK","UP"],"mtu":65536}]\n',
        f"-j link show dev {interface}": ok(link),
        f"-j addr show dev {interface}": ok(addr),
        f"-j -4 route show table main dev {interface}": ok(route4 or ("[]" if link else "")),
        f"-j -6 route show table main dev {interface}": ok(route6 or ("[]" if link else "")),
    }


def full_node(node: Stubs, raw_dump: str = "", interface: str = "wg0") -> None:
    """Every tool read.sh looks for; `wg` prints a raw dump (secrets in clear) when given one."""
    dump = (raw_dump, 0) if raw_dump else ("", 1)
    answering(node, "wg", {f"show {interface} dump": dump,
                           f"show {interface} public-key": ("", 1)})
    answering(node, "ip", ip_answers(interface))
    for tool in ("wg-quick", "flock"):
        node.stub(tool, "exit 0\n")


def read(node: Stubs, interface: str = "wg0", hosts: tuple[str, ...] = (), key_dir: Path | None = None) -> str:
    kd = key_dir or node.root / "etc-wireguard"
    r = node.run(read_command(interface, hosts, key_dir=str(kd)))
    assert r.exit_status == 0, r.stderr
    return r.stdout


def test_read_of_a_captured_node_gives_the_captured_state(node: Stubs) -> None:
    """Stubs answer with node a's captured wg dump (secrets in clear) and ip JSON: read.sh's output parses
    to what the captured read of that node parses to, and holds no secret."""
    raw = fixture("wg_dump_a_wg0.txt")
    full_node(node, raw)
    answering(node, "ip", ip_answers(
        "wg0", link=fixture("ip_link_a_wg0.json").strip(), addr=fixture("ip_addr_a_wg0.json").strip(),
        route4=fixture("ip_route4_a_wg0.json").strip(), route6=fixture("ip_route6_a_wg0.json").strip()))
    routing_node(node, forward4="0", forward6="0")
    out = read(node)
    for secret in secrets_in(raw):
        assert secret not in out
    got, want = parse_read_output("wg0", out), parse_read_output("wg0", fixture("read_a_wg0.txt"))
    same = {"key_file_exists": False, "key_file_public_key": None, "config_exists": False, "config_sha256": None,
            "resolved": {}, "os_family": got.os_family, "missing": (),
            "has_ip6tables": None}  # (the capture predates read.sh's ip6tables section)
    # captured moments apart: counters and handshakes may differ, nothing else
    assert normalized(dataclasses.replace(want, **same)) == normalized(dataclasses.replace(got, **same))
    assert (got.missing, got.interface_exists, got.mtu, got.link_up) == ((), True, 1380, True)


@pytest.mark.parametrize("name", ["wg_dump_a_wg0.txt", "wg_dump_b_wg0.txt", "wg_dump_b_wgnokey.txt"])
def test_read_redacts_secrets_on_the_node(node: Stubs, name: str) -> None:
    raw = fixture(name)
    full_node(node, raw)
    out = read(node)
    for secret in secrets_in(raw):
        assert secret not in out
    state = parse_read_output("wg0", out)
    iface, peers = parse_dump(raw)
    assert iface is not None
    assert (state.public_key, state.listen_port, state.fwmark, state.peers) == (
        iface.public_key, iface.listen_port, iface.fwmark, peers)
    assert not state.interface_exists  # ip knows no such link


def routing_node(node: Stubs, *, forward4: str = "1", forward6: str = "0", rules: str = "",
                 rules6: str | None = None) -> None:
    """`sysctl` answering the two forwarding settings, `iptables` listing `rules` in both tables (and
    `ip6tables` listing `rules6`, when given)."""
    answering(node, "sysctl", {"-n net.ipv4.ip_forward": forward4 + "\n",
                               "-n net.ipv6.conf.all.forwarding": forward6 + "\n"})
    answering(node, "iptables", {"-w 5 -S FORWARD": "-P FORWARD ACCEPT\n" + rules,
                                 "-w 5 -t nat -S POSTROUTING": "-P POSTROUTING ACCEPT\n" + rules})
    if rules6 is not None:
        answering(node, "ip6tables", {"-w 5 -S FORWARD": "-P FORWARD ACCEPT\n" + rules6,
                                      "-w 5 -t nat -S POSTROUTING": "-P POSTROUTING ACCEPT\n" + rules6})


def test_read_routing(node: Stubs) -> None:
    full_node(node)
    routing_node(node, forward4="1", forward6="0", rules=IPTABLES)
    state = parse_read_output("wg0", read(node))
    assert state.forwarding == {4: True, 6: False}
    assert (state.has_iptables, state.forward_rules) == (True, True)
    assert state.masquerade == nets("192.168.20.0/24", "10.20.0.0/16")
    assert calls(node, "iptables") == [["-w", "5", "-S", "FORWARD"], ["-w", "5", "-t", "nat", "-S", "POSTROUTING"]]
    assert state.has_ip6tables is False and not state.forward_rules6  # (no ip6tables on this node)


def test_read_routing_ipv6(node: Stubs) -> None:
    """ip6tables read as iptables is: its own section, wgmesh's IPv6 rules; both tables' MASQUERADE subnets."""
    full_node(node)
    routing_node(node, forward4="1", forward6="1", rules=IPTABLES, rules6=IP6TABLES)
    state = parse_read_output("wg0", read(node))
    assert state.forwarding == {4: True, 6: True}
    assert (state.has_iptables, state.forward_rules, state.has_ip6tables, state.forward_rules6) == (
        True, True, True, True)
    assert state.masquerade == nets("192.168.20.0/24", "10.20.0.0/16", "fd00:99:20::/64", "2001:db8:20::/48")
    assert calls(node, "ip6tables") == [["-w", "5", "-S", "FORWARD"], ["-w", "5", "-t", "nat", "-S", "POSTROUTING"]]


def test_read_routing_ipv6_without_wgmeshs_rules(node: Stubs) -> None:
    full_node(node)
    routing_node(node, forward6="1", rules=IPTABLES, rules6="-A FORWARD -i wg0 -j ACCEPT\n")
    state = parse_read_output("wg0", read(node))
    assert (state.forward_rules, state.has_ip6tables, state.forward_rules6) == (True, True, False)
    assert state.masquerade == nets("192.168.20.0/24", "10.20.0.0/16")
    assert calls(node, "sysctl") == [["-n", "net.ipv4.ip_forward"], ["-n", "net.ipv6.conf.all.forwarding"]]


def test_read_routing_one_of_the_two_forward_rules_is_a_stray(node: Stubs) -> None:
    """One of wgmesh's FORWARD rules, the other deleted by hand: not in place, and named (plan deletes it when
    the node no longer forwards that version)."""
    full_node(node)
    routing_node(node, forward6="1", rules=IPTABLES, rules6=f"-A FORWARD -o wg0 {C} -j ACCEPT\n")
    state = parse_read_output("wg0", read(node))
    assert (state.forward_rules, state.forward_rules6, state.stray_forward_rules) == (True, False, frozenset({6}))


def test_read_routing_prints_only_wgmeshs_lines(node: Stubs) -> None:
    full_node(node)
    routing_node(node, rules=IPTABLES)
    body = next(s.body for s in sections(read(node)) if s.name == "iptables")
    assert body.splitlines() == ["present"] + [ln for ln in IPTABLES.splitlines() if "wgmesh:wg0" in ln] * 2


def test_read_routing_without_iptables_or_sysctl(node: Stubs) -> None:
    """No iptables: said so. No sysctl (a minimal image): /proc/sys, where the kernel keeps the settings."""
    full_node(node)
    state = parse_read_output("wg0", read(node))
    assert (state.has_iptables, state.forward_rules, state.masquerade) == (False, False, frozenset())
    expected = {}
    for version, path in ((4, "/proc/sys/net/ipv4/ip_forward"), (6, "/proc/sys/net/ipv6/conf/all/forwarding")):
        if Path(path).exists():
            expected[version] = Path(path).read_text().strip() != "0"
    assert state.forwarding == expected


def test_a_read_with_a_deadline_is_stopped_by_the_node_a_little_after_it(node: Stubs) -> None:
    """The controller's deadline reaches the node (the read stops itself NODE_GRACE seconds later: lib.sh's
    wgm_stop_after), and a read that resolves names in parallel waits for its lookups, not for that watcher."""
    assert "\nSTOP_AFTER=35\n" in read_command("wg0", deadline=30.0)
    assert "\nSTOP_AFTER=36\n" in read_command("wg0", deadline=30.2)  # whole seconds, rounded up
    assert "\nSTOP_AFTER=''\n" in read_command("wg0")  # the read inside apply's scripts: never
    full_node(node)
    started = time.monotonic()
    r = node.run(read_command("wg0", ["a.example", "b.example"], key_dir=str(node.root / "etc"), deadline=30.0))
    assert r.exit_status == 0 and time.monotonic() - started < 5, r.stderr
    assert {"a.example", "b.example"} <= set(parse_read_output("wg0", r.stdout).resolved)


def test_read_routing_when_iptables_fails(node: Stubs) -> None:
    """iptables that cannot list (no permission, no kernel support): no rules are seen, the read goes on."""
    full_node(node)
    node.stub("iptables", "echo 'iptables: Permission denied (you must be root).' >&2\nexit 4\n")
    node.stub("sysctl", "echo 'sysctl: cannot stat /proc/sys/net/ipv6/conf/all/forwarding' >&2\nexit 255\n")
    state = parse_read_output("wg0", read(node))
    assert (state.has_iptables, state.forward_rules, state.masquerade) == (True, False, frozenset())


def test_read_config_text_is_redacted_on_the_node(node: Stubs) -> None:
    full_node(node)
    kd = node.root / "etc-wireguard"
    kd.mkdir()
    conf = (FIXTURES / "c_wg0.conf").read_text()
    extra = "\n".join([  # every way wg would still read a key
        f"PrivateKey={derive_public(base64.b64encode(os.urandom(32)).decode())}",
        f"  Preshared Key =\t{base64.b64encode(os.urandom(32)).decode()}",
        f"PRIVATEKEY = {base64.b64encode(os.urandom(32)).decode()}\r",
        f"## presharedkey = {base64.b64encode(os.urandom(32)).decode()}",
        f"PostUp = wg set %i private-key <(echo {base64.b64encode(os.urandom(32)).decode()})",
    ])
    text = conf + extra + "\n"
    (kd / "wg0.conf").write_text(text)
    out = read(node)
    secrets = conf_secrets(text) | set(KEY_LIKE.findall(extra.splitlines()[-1]))
    assert len(secrets) == 7
    for secret in secrets:
        assert secret not in out
    state = parse_read_output("wg0", out)
    assert state.config_text == redact_conf(text).replace("\r", "")
    assert state.config_text.endswith(
        "PrivateKey= (redacted)\n  Preshared Key = (redacted)\nPRIVATEKEY = (redacted)\n## presharedkey = (redacted)\n"
        "PostUp = wg set %i private-key <(echo (redacted))\n")
    assert "PublicKey = qy3w0SD7Fu22AOmHoq5eaNw2BEI62o56JuC/tYXphCA=\n" in state.config_text  # public: kept
    assert state.config_sha256 == hashlib.sha256(text.encode()).hexdigest()


def test_read_redacts_a_key_in_a_public_key_lines_comment(node: Stubs) -> None:
    """Review P: a PublicKey line was passed whole, so a key written in its comment (`PublicKey = PUB # psk: PSK`)
    reached the plan, --json, a saved plan and the CI comment. Only the value (the first key before `#`) is kept."""
    full_node(node)
    kd = node.root / "etc-wireguard"
    kd.mkdir()
    pub = "qy3w0SD7Fu22AOmHoq5eaNw2BEI62o56JuC/tYXphCA="
    psks = [base64.b64encode(os.urandom(32)).decode() for _ in range(3)]
    text = (f"[Interface]\nListenPort = 51820\n[Peer]\nPublicKey = {pub} # psk: {psks[0]}\n"
            f"  publickey={pub}#{psks[1]}\nPublicKey = # {psks[2]}\n")
    (kd / "wg0.conf").write_text(text)
    out = read(node)
    for psk in psks:
        assert psk not in out
    state = parse_read_output("wg0", out)
    assert state.config_text == redact_conf(text)
    assert state.config_text.splitlines()[-3:] == [
        f"PublicKey = {pub} # psk: (redacted)", f"  publickey={pub}#(redacted)", "PublicKey = # (redacted)"]


def test_read_quotes_everything_from_outside(node: Stubs) -> None:
    full_node(node, interface="wg0;x")
    out = read(node, "wg0;x", ("a.example", "b$(touch pwned).example", "c d"))
    assert calls(node, "wg")[0] == ["show", "wg0;x", "dump"]
    assert ["-j", "link", "show", "dev", "wg0;x"] in calls(node, "ip")
    state = parse_read_output("wg0;x", out)
    assert set(state.resolved) == {"a.example", "b$(touch pwned).example", "c d"}
    assert not (node.root / "pwned").exists() and not Path("pwned").exists()


def test_read_resolves_each_host_once_in_parallel(node: Stubs) -> None:
    full_node(node)
    log = node.root / "getent.log"
    node.stub("getent", f'echo "$2" >> {log}\nsleep 1\n'
                        'case $2 in a.example) echo "192.0.2.1  STREAM a.example";; esac\n')
    started = time.monotonic()
    state = parse_read_output("wg0", read(node, hosts=("a.example", "b.example", "a.example", "c.example")))
    assert time.monotonic() - started < 2.8, "the lookups run at once"
    assert sorted(log.read_text().split()) == ["a.example", "b.example", "c.example"]
    assert state.resolved == {"a.example": ("192.0.2.1",), "b.example": (), "c.example": ()}
    out = read(node)
    assert "@@wgmesh:resolve" not in out


def test_read_key_file_config_and_systemd(node: Stubs) -> None:
    full_node(node)
    kd = node.root / "etc-wireguard"
    kd.mkdir()
    (kd / "wg0.key").write_text("private\n")
    (kd / "wg0.conf").write_text("[Interface]\n")
    answering(node, "wg", {"show wg0 dump": ("", 1), "show wg0 public-key": ("", 1), "pubkey": P3 + "\n"})
    state = parse_read_output("wg0", read(node))
    assert (state.key_file_exists, state.key_file_public_key) == (True, P3)
    assert state.config_sha256 == hashlib.sha256(b"[Interface]\n").hexdigest()
    assert state.wg_quick_unit_enabled is None  # no systemctl on this node


def test_preflight_of_a_complete_node(node: Stubs) -> None:
    full_node(node)
    state = parse_read_output("wg0", read(node))
    assert state.missing == ()
    ids = {k: v.strip('"') for k, _, v in (ln.partition("=") for ln in Path("/etc/os-release").read_text().split("\n"))}
    assert state.os_family == nodeos.family(ids.get("ID"), tuple(ids.get("ID_LIKE", "").split()))


def test_preflight_names_what_a_bare_node_lacks(node: Stubs, tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    out = read(node, key_dir=tmp_path / "file" / "wireguard")
    state = parse_read_output("wg0", out)
    assert state.missing == ("wg", "wg-quick", "ip", "flock", "confdir")
    assert not state.interface_exists and state.peers == {}


def test_preflight_creatable_key_dir_is_fine(node: Stubs, tmp_path: Path) -> None:
    full_node(node)
    assert parse_read_output("wg0", read(node, key_dir=tmp_path / "new")).missing == ()


def test_preflight_names_a_key_folder_another_user_may_write(node: Stubs, tmp_path: Path) -> None:
    """Review F: with /etc/wireguard writable by another user, a link planted at apply's temporary name had the
    config written over any file as root (enroll: the new private key into the planter's file). Plan now fails
    such a node first (and the writing scripts refuse it: test_apply, test_keys)."""
    full_node(node)
    kd = tmp_path / "etc" / "wireguard"
    kd.mkdir(parents=True, mode=0o700)
    assert parse_read_output("wg0", read(node, key_dir=kd)).missing == ()
    kd.chmod(0o777)
    assert parse_read_output("wg0", read(node, key_dir=kd)).missing == ("confowner",)
    kd.chmod(0o700)
    kd.parent.chmod(0o775)  # the parent: a link could replace the folder itself
    assert parse_read_output("wg0", read(node, key_dir=kd)).missing == ("confowner",)
    kd.parent.chmod(0o755)
    assert parse_read_output("wg0", read(node, key_dir=kd)).missing == ()
    if os.geteuid() == 0:  # another owner, with no write bit for others
        os.chown(kd, 65534, -1)
        assert parse_read_output("wg0", read(node, key_dir=kd)).missing == ("confowner",)


def test_preflight_names_a_read_only_key_folder_under_busybox_too(node: Stubs, tmp_path: Path) -> None:
    """Review R2: busybox's `test -w` is true for root on a read-only file system: plan promised changes an
    Alpine node could not write, and apply failed. The read tells by the mount, writing nothing."""
    full_node(node)
    kd = tmp_path / "etc" / "wireguard"
    kd.mkdir(parents=True, mode=0o700)
    assert parse_read_output("wg0", read(node, key_dir=kd)).missing == ()
    node.make_read_only(kd)
    assert parse_read_output("wg0", read(node, key_dir=kd)).missing == ("confdir",)
    assert sorted(os.listdir(kd)) == []


def test_preflight_names_a_read_only_run_folder(node: Stubs, tmp_path: Path) -> None:
    """Review R3: a read-only /run/wireguard passed plan; apply then failed with the shell's own `cannot create
    /run/wireguard/wgmesh-wg0.lock`."""
    full_node(node)
    run = Path("/run/wireguard") if Path("/run/wireguard").is_dir() else Path("/run")
    node.make_read_only(run)
    state = parse_read_output("wg0", read(node))
    assert state.missing == ("rundir",)
    assert nodeos.preflight_error(state.missing, "debian") == (
        "preflight: /run/wireguard is not writable (nor can it be created): wgmesh keeps its lock and a run's records "
        "there; wgmesh changes nothing on this node until then")


def test_preflight_follows_a_linked_key_folder(node: Stubs, tmp_path: Path) -> None:
    """Review R2: /etc/wireguard as a symbolic link (mode 777, as every link) to a folder of root's alone was
    refused with a fix that could not help. The folder is judged as it is on disk, and the link's own folder."""
    full_node(node)
    real = tmp_path / "data" / "wg-real"
    real.mkdir(parents=True, mode=0o700)
    (tmp_path / "etc").mkdir(mode=0o755)
    link = tmp_path / "etc" / "wireguard"
    link.symlink_to(real)
    assert parse_read_output("wg0", read(node, key_dir=link)).missing == ()
    real.parent.chmod(0o777)  # where the folder really is, another user may replace it
    assert parse_read_output("wg0", read(node, key_dir=link)).missing == ("confowner",)
    real.parent.chmod(0o755)
    link.parent.chmod(0o777)  # where the link is, another user may replace the link
    assert parse_read_output("wg0", read(node, key_dir=link)).missing == ("confowner",)
    link.parent.chmod(0o1777)  # ...unless the sticky bit keeps others from renaming what is not theirs
    assert parse_read_output("wg0", read(node, key_dir=link)).missing == ()
    if os.geteuid() == 0:  # a folder further up that another user owns could swap the whole path (review R3)
        os.chown(tmp_path / "data", 65534, -1)
        state = parse_read_output("wg0", read(node, key_dir=link))
        assert state.missing == ("confowner",)
        assert state.unsafe_dirs == (str(tmp_path / "data"),)  # named: the fix is there (review R4)
        assert nodeos.preflight_error(state.missing, "debian", state.unsafe_dirs) == (
            f"preflight: {tmp_path / 'data'} must be root's, and written by no one else (another user could plant "
            "a link where wgmesh writes keys, configs, its lock and a run's records as root, under /etc/wireguard and "
            f"/run/wireguard): chown root: {tmp_path / 'data'}; chmod go-w {tmp_path / 'data'}; wgmesh changes "
            "nothing on this node until then")


def test_preflight_busybox_ip_with_a_running_interface(node: Stubs) -> None:
    """busybox's ip (a symlink to busybox, as on Alpine) has no -j: preflight says so, and the interface that
    wg dumps is there, never "absent" (that would plan a second `wg-quick up`)."""
    full_node(node, fixture("wg_dump_b_wg0.txt"))
    node.remove("ip")
    node.busybox_applet("ip")
    state = parse_read_output("wg0", read(node))
    assert state.missing == ("ip-busybox",)
    assert state.interface_exists and state.public_key == P3


def test_preflight_ip_without_json(node: Stubs) -> None:
    full_node(node)
    node.stub("ip", 'echo \'Option "-j" is unknown, try "ip -help".\' >&2\nexit 255\n')
    assert parse_read_output("wg0", read(node)).missing == ("ip-json",)


def test_preflight_busybox_ip_found_by_its_output(node: Stubs) -> None:
    full_node(node)
    node.stub("ip", "echo 'BusyBox v1.36.1 (2023-07-27) multi-call binary.' >&2\nexit 1\n")
    assert parse_read_output("wg0", read(node)).missing == ("ip-busybox",)


# --------------------------------------------------------------------------------------------- e2e


def _can_run_lab() -> bool:
    tools = ("wg", "wg-quick", "wireguard-go", "ip", "unshare")
    return hasattr(os, "geteuid") and os.geteuid() == 0 and all(shutil.which(t) for t in tools)


@pytest.mark.e2e
@pytest.mark.skipif(not _can_run_lab(), reason="needs root, wireguard-tools, wireguard-go, iproute2")
def test_read_command_in_a_namespace_never_returns_a_secret(tmp_path: Path) -> None:
    def run(*args: str, **kw: object) -> subprocess.CompletedProcess[str]:
        return subprocess.run(list(args), capture_output=True, text=True, check=False, timeout=60, **kw)  # type: ignore[call-overload]

    private, peer_private = (run("wg", "genkey").stdout.strip() for _ in range(2))
    psk = run("wg", "genpsk").stdout.strip()
    public, peer_public = derive_public(private), derive_public(peer_private)
    etc, rund = tmp_path / "etc", tmp_path / "run"
    etc.mkdir(mode=0o700)
    rund.mkdir(mode=0o700)
    conf = etc / "wgt0.conf"
    conf.write_text(
        f"[Interface]\nPrivateKey = {private}\nListenPort = 51830\nAddress = 10.66.0.1/24, fd66::1/64\n\n"
        f"[Peer]\nPublicKey = {peer_public}\nPresharedKey = {psk}\nEndpoint = [fd66:ffff::2]:51830\n"
        "AllowedIPs = 10.66.0.2/32, fd66::2/128, 10.67.0.0/16\nPersistentKeepalive = 21\n"
    )
    conf.chmod(0o600)
    (etc / "wgt0.key").write_text(private + "\n")
    (etc / "wgt0.key").chmod(0o600)
    Path("/run/wireguard").mkdir(mode=0o700, exist_ok=True)
    netns = f"wglive-t{os.getpid()}"[:15]
    assert run("ip", "netns", "add", netns).returncode == 0
    try:
        inner = (
            f"mount --bind {etc} /etc/wireguard && mount --bind {rund} /run/wireguard && "
            'ip link set lo up && wg-quick up wgt0 >/dev/null 2>&1 && sysctl -qw net.ipv4.ip_forward=1 && '
            + ("iptables -A FORWARD -i wgt0 -m comment --comment wgmesh:wgt0 -j ACCEPT && "
               "iptables -A FORWARD -o wgt0 -m comment --comment wgmesh:wgt0 -j ACCEPT && "
               "iptables -t nat -A POSTROUTING ! -s 10.67.0.0/16 -d 10.67.0.0/16 -m comment "
               "--comment wgmesh:wgt0 -j MASQUERADE && " if shutil.which("iptables") else "")
            + 'sh -c "$WGMESH_READ"'
        )
        env = {**os.environ, "WGMESH_READ": read_command("wgt0", ["localhost"])}
        result = run(
            "ip", "netns", "exec", netns, "unshare", "-m", "--propagation", "private", "sh", "-c", inner, env=env
        )
    finally:
        for pid in run("ip", "netns", "pids", netns).stdout.split():
            run("kill", pid)
        run("ip", "netns", "del", netns)
    assert result.returncode == 0, result.stderr
    for secret in (private, psk, peer_private):
        assert secret not in result.stdout
        assert secret not in result.stderr
    state = parse_read_output("wgt0", result.stdout)
    assert state.public_key == public == state.key_file_public_key
    assert state.listen_port == 51830
    peer = state.peers[peer_public]
    assert peer == LivePeer(
        public_key=peer_public,
        endpoint="[fd66:ffff::2]:51830",
        allowed_ips=nets("10.66.0.2/32", "fd66::2/128", "10.67.0.0/16"),
        persistent_keepalive=21,
        latest_handshake=0,
        rx_bytes=peer.rx_bytes,
        tx_bytes=peer.tx_bytes,
        has_preshared_key=True,
    )
    assert state.addresses == {ip_interface("10.66.0.1/24"), ip_interface("fd66::1/64")}
    assert state.routes == nets("10.67.0.0/16")
    assert state.config_sha256 == hashlib.sha256(conf.read_bytes()).hexdigest()
    assert state.config_text == redact_conf(conf.read_text())
    assert "PrivateKey = (redacted)" in state.config_text and "PresharedKey = (redacted)" in state.config_text
    assert "127.0.0.1" in state.resolved["localhost"]
    assert state.forwarding.get(4) is True
    if shutil.which("iptables"):
        assert (state.has_iptables, state.forward_rules, state.masquerade) == (True, True, nets("10.67.0.0/16"))


def test_parse_clock_reads_the_nodes_epoch_seconds() -> None:
    from wgmesh.remote.read import parse_clock

    assert parse_clock("1796000000\n") == 1796000000
    assert parse_clock("") is None
    assert parse_clock("not a date\n") is None


def test_parse_reresolve_tells_running_stopped_outdated_and_absent() -> None:
    from wgmesh.remote.apply import reresolve_version
    from wgmesh.remote.read import parse_reresolve

    current = reresolve_version("wg0")
    assert parse_reresolve("wg0", f"script {current}\nrunning\n") == "running"
    assert parse_reresolve("wg0", f"script {current}\n") == "stopped"
    assert parse_reresolve("wg0", "script 0123456789abcdef\nrunning\n") == "outdated"
    assert parse_reresolve("wg0", "script none\n") == "absent"
    assert parse_reresolve("wg0", None) is None
    assert parse_reresolve("wg0", "garbage") is None
    assert reresolve_version("wg1") != current


def test_read_reports_the_re_resolution_script_it_finds(node: Stubs) -> None:
    """The `reresolve` section: no script, this wgmesh's script (not running: no systemd, no loop here), another
    version's."""
    from wgmesh.remote.apply import reresolve_script

    full_node(node)
    key_dir = node.root / "etc-wireguard"
    key_dir.mkdir(parents=True, exist_ok=True)
    assert parse_read_output("wg0", read(node)).reresolve == "absent"
    script = key_dir / "wgmesh-reresolve-wg0.sh"
    script.write_text(reresolve_script("wg0"))
    assert parse_read_output("wg0", read(node)).reresolve == "stopped"
    script.write_text("#!/bin/sh\n# wgmesh-reresolve-version: 0123456789abcdef\n")
    assert parse_read_output("wg0", read(node)).reresolve == "outdated"
    state = parse_read_output("wg0", read(node))
    assert state.clock is not None and abs(state.clock - time.time()) < 60, "the node's clock is read too"



def _table(n: int) -> str:
    """A routing table of `n` routes through eth0, as a BGP router's `ip -o -4 route show table main`, with a
    host route, an unreachable route and the interface's own route among them."""
    lines = [f"10.{64 + i // 65536}.{i // 256 % 256}.{i % 256 // 8 * 8}/29 via 10.250.6.1 dev eth0 proto bgp metric 20"
             for i in range(n)]
    lines[100] = "192.168.30.0/24 via 10.250.6.13 dev eth0"
    lines[200] = "10.0.0.5 via 10.250.6.1 dev eth0"
    lines[300] = "unreachable 10.77.0.0/16 "
    lines[400] = "192.168.40.0/24 dev wg0 scope link "  # the interface's own: never reported
    return "\n".join(lines) + "\n"


def test_the_read_reports_the_routes_of_other_devices_up_to_20000_a_family(node: Stubs) -> None:
    """The whole table went over the SSH output cap on a BGP router (hundreds of thousands of routes: the node could
    not be read at all; review R2); a list of the prefixes to ask of did not fit in awk's environment past ~8,000
    prefixes and was not there for the plan key's read (review R3). The read sends the first 20,000 of each family
    and the controller compares them parsed."""
    full_node(node)
    answering(node, "ip", {**ip_answers("wg0"), "-o -4 route show table main": _table(30_000),
                           "-o -6 route show table main": "unreachable ::ffff:10.99.0.0/112 dev lo metric 1024\n"})
    r = node.run(read_command("wg0", key_dir=str(node.root / "etc-wireguard")))
    assert r.exit_status == 0, r.stderr
    (body,) = [s.body for s in sections(r.stdout) if s.name == "otherroutes"]
    lines = body.splitlines()
    assert len(lines) == 20_001 and "dev wg0" not in body
    got = parse_other_routes(body)
    net = ipaddress.ip_network
    assert got[net("192.168.30.0/24")] == ("192.168.30.0/24 via 10.250.6.13 dev eth0", 0)
    assert got[net("10.0.0.5/32")][0] == "10.0.0.5 via 10.250.6.1 dev eth0"
    assert net("10.77.0.0/16") in got and net("192.168.40.0/24") not in got
    assert net("::ffff:a63:0/112") in got  # (ip writes ::ffff:10.99.0.0/112: compared parsed, not as text)


def test_an_output_no_parser_foresaw_is_a_parse_error_not_a_crash(monkeypatch: pytest.MonkeyPatch) -> None:
    """Review E: whatever a node prints is that node's error (a ParseError every caller names), never the run's."""
    from wgmesh.remote import read as read_mod

    def boom(interface: str, found: object) -> object:
        raise OverflowError("int too large to convert to float\x1b]0;PWN\x07")

    monkeypatch.setattr(read_mod, "_parse_read_sections", boom)
    with pytest.raises(ParseError, match=r"^unexpected output \(OverflowError: int too large to convert to float"
                                         r"\]0;PWN\)$"):
        read_mod.parse_read_output("wg0", "@@wgmesh:v1\n")


def test_read_routing_names_a_listing_that_fails_and_legacy_tables(node: Stubs) -> None:
    """Review F: a failed `iptables -S` was dropped (2>/dev/null) and read as "no rules"; iptables-nft's warning
    that iptables-legacy tables are present too was dropped with it."""
    full_node(node)
    answering(node, "sysctl", {"-n net.ipv4.ip_forward": "1\n", "-n net.ipv6.conf.all.forwarding": "0\n"})
    incompatible = "iptables v1.8.7 (nf_tables): table `filter' is incompatible, use 'nft' tool."
    warning = "# Warning: iptables-legacy tables present, use iptables-legacy to see them\n"
    answering(node, "iptables", {
        "-w 5 -S FORWARD": (f"{warning}{incompatible}\n", 1),
        "-w 5 -t nat -S POSTROUTING": f"{warning}-P POSTROUTING ACCEPT\n"
                                      f"-A POSTROUTING ! -s 192.168.20.0/24 -d 192.168.20.0/24 {C} -j MASQUERADE\n"})
    state = parse_read_output("wg0", read(node))
    assert state.rules_failed == {(4, "filter"): incompatible}
    assert state.legacy_tables == frozenset({4})
    assert state.has_iptables and not state.forward_rules and state.masquerade == nets("192.168.20.0/24")


@pytest.mark.parametrize(("mounts", "folder", "read_only"), [
    (["/ ext4 rw", "/run tmpfs rw", "/run/wireguard tmpfs ro,nosuid"], "/run/wireguard", True),
    (["/ ext4 rw", "/run tmpfs rw", "/run/wireguard tmpfs ro"], "/run/wireguardx", False),
    # a read-only mount hidden under a later one on its parent (review R4): the later one is what is there
    (["/ ext4 rw", "/run tmpfs rw", "/run/wireguard tmpfs ro", "/run tmpfs rw"], "/run/wireguard", False),
    (["/ ext4 ro", "/etc ext4 rw"], "/etc/wireguard", False),
    (["/ ext4 ro", "/etc ext4 rw"], "/opt/wireguard", True),
    (["/ ext4 rw", "/my\\040dir tmpfs ro"], "/my dir/wg", True),
])
def test_the_read_tells_a_read_only_folder_by_the_mount_table(
    node: Stubs, tmp_path: Path, mounts: list[str], folder: str, read_only: bool
) -> None:
    """read.sh's read_ro, as it is in the script, over a mount table of our own."""
    script = (Path(__file__).resolve().parents[2] / "wgmesh" / "remote" / "scripts" / "read.sh").read_text()
    function = re.search(r"^read_ro\(\) \{.*?^\}$", script, re.S | re.M)
    assert function is not None
    table = tmp_path / "mounts"
    table.write_text("".join(f"dev{i} {m} 0 0\n" for i, m in enumerate(mounts)))
    text = function.group(0).replace("/proc/self/mounts", str(table))
    r = node.run(f"{text}\nif read_ro {shlex.quote(folder)}; then echo ro; else echo rw; fi\n")
    assert r.stdout.strip() == ("ro" if read_only else "rw"), r.stderr
