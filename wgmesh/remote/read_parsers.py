"""Pure parsers of what the tools on a node print, as scripts/read.sh passes it on (read.py splits its
sections): `wg show IF dump`, `ip -j` (link, addr, route), `getent ahosts` and `iptables -S`.

The script replaces the interface private key and every preshared key in the dump before printing it; the
parsers never keep a private key, even when handed one, and their errors never quote key material.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import shlex
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

from wgmesh.core.model import IPInterface, IPNetwork
from wgmesh.core.state import InterfaceDump, LivePeer, live_peer

HIDDEN = "(hidden)"
NONE = "(none)"
_DUMP_IFACE_FIELDS = 4
_DUMP_PEER_FIELDS = 8
_LINK_LOCAL = (ipaddress.ip_network("fe80::/10"), ipaddress.ip_network("169.254.0.0/16"))
_MULTICAST = (ipaddress.ip_network("ff00::/8"), ipaddress.ip_network("224.0.0.0/4"))
# Every node of a mesh reports the same public keys, endpoints and allowed-ips of its peers (N-1 of them each):
# the values of a peer line are checked and parsed once per distinct value, in memos shared by all the nodes of
# a run (bounded; lru_cache is thread-safe: the nodes are parsed in the workers that read them). Only public
# values: never a private or preshared key (the dump's interface private key is dropped unread).
_MEMO_SIZE = 1 << 16


class ParseError(ValueError):
    """Output of a node that cannot be understood. Messages never quote key material."""


def is_key(value: str) -> bool:
    if len(value) != 44:
        return False
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return False
    return len(raw) == 32 and base64.b64encode(raw).decode() == value


@lru_cache(maxsize=_MEMO_SIZE)
def _is_public_key(value: str) -> bool:
    """`is_key`, remembered: for the public keys of the dump only."""
    return is_key(value)


def _public_key(value: str, what: str, line_no: int) -> str:
    if not _is_public_key(value):
        raise ParseError(f"wg dump line {line_no}: {what} is not a WireGuard key")
    return value


U64_DIGITS = 20  # wg's counters and timestamps are 64-bit: a longer number is no dump of wg's


def _int(value: str, what: str, line_no: int) -> int:
    if len(value) > U64_DIGITS + 1:
        raise ParseError(f"wg dump line {line_no}: {what} is too large for a 64-bit number")
    if value.isascii() and value.isdigit():  # the common case, without the checks below
        number = int(value)
    else:
        try:
            number = int(value, 10)
        except ValueError:
            raise ParseError(f"wg dump line {line_no}: {what} is not a number") from None
        if number < 0:
            raise ParseError(f"wg dump line {line_no}: {what} is negative")
    if number >= 1 << 64:
        raise ParseError(f"wg dump line {line_no}: {what} is too large for a 64-bit number")
    return number


def _fwmark(value: str, line_no: int) -> int | None:
    if value in ("off", "0"):
        return None
    try:
        if len(value) > U64_DIGITS:
            raise ValueError
        return int(value, 0)
    except ValueError:
        raise ParseError(f"wg dump line {line_no}: fwmark {value!r} is not a number") from None


def _endpoint(value: str, line_no: int) -> str | None:
    if value == NONE:
        return None
    if not _is_endpoint(value):
        raise ParseError(f"wg dump line {line_no}: endpoint {value!r} is not address:port")
    return value


@lru_cache(maxsize=_MEMO_SIZE)
def _is_endpoint(value: str) -> bool:
    """`value` is ADDRESS:PORT or [ADDRESS]:PORT (an IPv6 address may carry a %zone)."""
    host, sep, port = value.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        want_version = 6
    else:
        want_version = 4
    try:
        version = ipaddress.ip_address(host.split("%", 1)[0]).version
    except ValueError:
        version = 0
    return bool(sep) and port.isdigit() and version == want_version and 0 < int(port) < 65536


def _allowed_ips(value: str, line_no: int) -> frozenset[IPNetwork]:
    if value == NONE:
        return frozenset()
    prefixes = _prefixes(value)
    if prefixes is None:
        raise ParseError(f"wg dump line {line_no}: allowed-ips {value!r} is not a list of prefixes")
    return prefixes


@lru_cache(maxsize=_MEMO_SIZE)
def _prefixes(value: str) -> frozenset[IPNetwork] | None:
    """The prefixes of a comma-separated list, or None when one is not a prefix. The same (immutable) set for
    every node that reports the value."""
    try:
        return frozenset(ipaddress.ip_network(p, strict=False) for p in value.split(","))
    except ValueError:
        return None


def _interface_line(fields: list[str], line_no: int) -> InterfaceDump:
    if len(fields) != _DUMP_IFACE_FIELDS:
        raise ParseError(
            f"wg dump line {line_no}: interface line has {len(fields)} fields, expected {_DUMP_IFACE_FIELDS}"
        )
    # fields[0] is the private key (or "(hidden)"/"(none)"): dropped unread.
    public_key = None if fields[1] == NONE else _public_key(fields[1], "public key", line_no)
    port = _int(fields[2], "listen port", line_no)
    return InterfaceDump(public_key=public_key, listen_port=port or None, fwmark=_fwmark(fields[3], line_no))


def _peer_line(fields: list[str], line_no: int) -> LivePeer:
    if len(fields) != _DUMP_PEER_FIELDS:
        raise ParseError(f"wg dump line {line_no}: peer line has {len(fields)} fields, expected {_DUMP_PEER_FIELDS}")
    key, preshared, endpoint, allowed_ips, handshake, rx_bytes, tx_bytes, keepalive = fields
    return live_peer(  # positional, in LivePeer's order
        _public_key(key, "peer public key", line_no),
        _endpoint(endpoint, line_no),
        _allowed_ips(allowed_ips, line_no),
        0 if keepalive == "off" else _int(keepalive, "keepalive", line_no),
        _int(handshake, "latest handshake", line_no),
        _int(rx_bytes, "rx bytes", line_no),
        _int(tx_bytes, "tx bytes", line_no),
        preshared != NONE,
    )


def _add_peer(peers: dict[str, LivePeer], peer: LivePeer, line_no: int) -> None:
    if peer.public_key in peers:
        raise ParseError(f"wg dump line {line_no}: peer {peer.public_key} listed twice")
    peers[peer.public_key] = peer


def numbered_lines(text: str) -> list[tuple[int, str]]:
    return [(n, line.rstrip("\r")) for n, line in enumerate(text.split("\n"), 1) if line.strip()]


def parse_dump(text: str) -> tuple[InterfaceDump | None, dict[str, LivePeer]]:
    """`wg show IF dump`: the interface line, then one line per peer. Empty text: no interface."""
    rows = numbered_lines(text)
    if not rows:
        return None, {}
    first_no, first = rows[0]
    iface = _interface_line(first.split("\t"), first_no)
    peers: dict[str, LivePeer] = {}
    for line_no, line in rows[1:]:
        _add_peer(peers, _peer_line(line.split("\t"), line_no), line_no)
    return iface, peers


def _json_list(json_text: str, what: str) -> list[dict[str, Any]]:
    if not json_text.strip():
        return []
    try:
        data = json.loads(json_text)
    except json.JSONDecodeError as e:
        raise ParseError(f"{what}: not JSON ({e.msg} at line {e.lineno})") from None
    except (ValueError, RecursionError) as e:  # a number of over 4,300 digits, lists nested beyond the stack
        raise ParseError(f"{what}: not JSON that ip prints ({type(e).__name__})") from None
    if not isinstance(data, list) or not all(isinstance(x, dict) for x in data):
        raise ParseError(f"{what}: expected a JSON list of objects")
    return data


def _in_any(net: IPNetwork, blocks: tuple[IPNetwork, ...]) -> bool:
    return any(net.version == b.version and net.subnet_of(b) for b in blocks)  # type: ignore[arg-type]


def parse_ip_addr(json_text: str) -> tuple[frozenset[IPInterface], int | None, bool]:
    """`ip -j addr show dev IF` -> (global addresses, mtu, link up). Empty text: no interface."""
    links = _json_list(json_text, "ip addr")
    if not links:
        return frozenset(), None, False
    if len(links) != 1:
        raise ParseError(f"ip addr: expected one interface, got {len(links)}")
    link = links[0]
    addresses: set[IPInterface] = set()
    try:
        for info in link.get("addr_info", []):
            if info.get("scope") != "global" or info.get("family") not in ("inet", "inet6"):
                continue
            iface = ipaddress.ip_interface(f"{info['local']}/{info['prefixlen']}")
            if not _in_any(iface.network, _LINK_LOCAL):
                addresses.add(iface)
        mtu = link.get("mtu")
        flags = link.get("flags", [])
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise ParseError(f"ip addr: malformed address entry ({e})") from None
    if mtu is not None and (not isinstance(mtu, int) or isinstance(mtu, bool) or not 0 <= mtu < 1 << 32):
        raise ParseError("ip addr: mtu is not a number of 32 bits")
    return frozenset(addresses), mtu, "UP" in flags


def parse_ip_link(json_text: str) -> bool:
    """`ip -j link show dev IF` -> whether the interface exists."""
    return bool(_json_list(json_text, "ip link"))


def _route_dst(route: dict[str, Any], family: int | None) -> IPNetwork:
    dst = route.get("dst")
    if not isinstance(dst, str):
        raise ParseError("ip route: route without a destination")
    if dst == "default":
        version = family
        for hint in ("gateway", "prefsrc"):
            if version is None and isinstance(route.get(hint), str):
                version = ipaddress.ip_address(route[hint]).version
        if version is None:
            raise ParseError("ip route: default route of unknown address family")
        return ipaddress.ip_network("0.0.0.0/0" if version == 4 else "::/0")
    try:
        return ipaddress.ip_network(dst, strict=False)
    except ValueError:
        raise ParseError(f"ip route: destination {dst!r} is not a prefix") from None


def parse_ip_route(json_text: str, *, family: int | None = None) -> frozenset[IPNetwork]:
    """`ip -j [-4|-6] route show table main dev IF` -> the routes the tool manages.

    Skips connected routes (proto kernel), non-unicast types, link-local and multicast prefixes.
    `family` (4 or 6) tells what a `default` destination means; without it, it is taken from the gateway.
    """
    out: set[IPNetwork] = set()
    for route in _json_list(json_text, "ip route"):
        if route.get("protocol") == "kernel" or route.get("type", "unicast") != "unicast":
            continue
        net = _route_dst(route, family)
        if not _in_any(net, _LINK_LOCAL + _MULTICAST):
            out.add(net)
    return frozenset(out)


_ROUTE_TYPES = frozenset({"unicast", "unreachable", "blackhole", "prohibit", "throw", "local", "broadcast", "anycast",
                          "multicast", "nat"})
OTHER_ROUTE_SHOWN = 160  # characters of a route line kept to show (the line is the node's text)


def parse_other_routes(text: str) -> dict[IPNetwork, tuple[str, int]]:
    """read.sh's `otherroutes` (`ip -o route show table main` of both families, without the interface's own
    routes) -> {prefix: (the route as `ip` printed it, its metric)}, the lowest metric of each prefix. `default`
    routes are left out (the mesh routes no default); so is a line that is not a route."""
    out: dict[IPNetwork, tuple[str, int]] = {}
    for _, line in numbered_lines(text):
        words = line.split()
        if words and words[0] in _ROUTE_TYPES:
            words = words[1:]
        if not words or words[0] == "default":
            continue
        try:
            net = ipaddress.ip_network(words[0], strict=False)
        except ValueError:
            continue
        metric = 0 if net.version == 4 else 1024
        if "metric" in words[:-1]:
            value = words[words.index("metric") + 1]
            metric = int(value) if value.isdigit() and len(value) <= 10 else metric
        if net not in out or metric < out[net][1]:
            shown = "".join(c for c in " ".join(line.split()) if c.isprintable())[:OTHER_ROUTE_SHOWN]
            out[net] = (shown, metric)
    return out


def parse_getent(text: str) -> tuple[str, ...]:
    """`getent ahosts NAME` -> the addresses (canonical strings), in the resolver's order, each once. The order
    matters: wg and wg-quick take the first answer (getaddrinfo's, RFC 6724: IPv6 first where the node has IPv6),
    and apply does too (core/steps.py sync_endpoint). Empty text: not resolved."""
    out: dict[str, None] = {}  # an ordered set: getent repeats each address per socket type
    for line_no, line in numbered_lines(text):
        token = line.split()[0].split("%", 1)[0]
        try:
            out.setdefault(str(ipaddress.ip_address(token)))
        except ValueError:
            raise ParseError(f"getent line {line_no}: {token!r} is not an address") from None
    return tuple(out)


def _rule_words(line: str) -> list[str] | None:
    try:
        return shlex.split(line)
    except ValueError:
        return None


def _option(words: list[str], name: str) -> tuple[str | None, bool]:
    """The value of option NAME in a rule (`-i wg0`), and whether `!` negates it (`! -s 10.0.0.0/8`)."""
    for i, word in enumerate(words[:-1]):
        if word == name:
            return words[i + 1], i > 0 and words[i - 1] == "!"
    return None, False


def _prefix(value: str | None) -> IPNetwork | None:
    if value is None:
        return None
    try:
        return ipaddress.ip_network(value, strict=False)
    except ValueError:
        return None


def parse_iptables(interface: str, lines: Iterable[str]) -> tuple[int, frozenset[IPNetwork]]:
    """Lines of `iptables -S FORWARD` and `iptables -t nat -S POSTROUTING` -> (how many of wgmesh's two FORWARD
    accept rules for the interface are there: 0, 1 (the other deleted by hand) or 2, the subnets S that have its
    rule
    `-A POSTROUTING ! -s S -d S -m comment --comment wgmesh:IF -j MASQUERADE`).

    Only rules whose comment is exactly `wgmesh:IF` count, and only in the form wgmesh writes them; every
    other line (policies, other tools' rules, other interfaces, rules changed by hand) is left alone."""
    comment = f"wgmesh:{interface}"
    accept_in = accept_out = False
    masquerade: set[IPNetwork] = set()
    for line in lines:
        words = _rule_words(line.strip())
        if not words or len(words) < 2 or words[0] != "-A" or _option(words, "--comment") != (comment, False):
            continue
        chain, (target, _) = words[1], _option(words, "-j")
        inbound, outbound = _option(words, "-i"), _option(words, "-o")
        source, dest = _option(words, "-s"), _option(words, "-d")
        if chain == "FORWARD" and target == "ACCEPT" and source[0] is None and dest[0] is None:
            if inbound == (interface, False) and outbound[0] is None:
                accept_in = True
            elif outbound == (interface, False) and inbound[0] is None:
                accept_out = True
        elif chain == "POSTROUTING" and target == "MASQUERADE" and inbound[0] is None and outbound[0] is None:
            src, dst = _prefix(source[0]), _prefix(dest[0])
            if src is not None and src == dst and source[1] and not dest[1]:
                masquerade.add(src)
    return accept_in + accept_out, frozenset(masquerade)
