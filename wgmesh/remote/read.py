"""Reading a node: scripts/read.sh, and pure parsers of what it prints.

The script prints marked sections (`@@wgmesh:NAME` lines, see remote/shell.py), among them the preflight:
what the node lacks for what wgmesh does there (core/nodeos.py). Secrets never leave the node: the script
replaces the interface private key and every preshared key in the `wg show IF dump` output before printing
it, and the value of every PrivateKey and PresharedKey line of IF.conf before printing its text. The parsers
below turn the text into a `LiveState` and never keep a private key, even when handed one. Routing is read too:
IP forwarding, and wgmesh's own iptables rules for the interface (comment `wgmesh:IF`), other rules ignored.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import re
import shlex
from collections.abc import Iterable, Sequence
from typing import Any

from wgmesh.core import nodeos
from wgmesh.core.model import KEY_DIR, IPInterface, IPNetwork
from wgmesh.core.state import InterfaceDump, LivePeer, LiveState
from wgmesh.remote import shell

MARK = shell.MARK
FORMAT = "v1"
HIDDEN = "(hidden)"
NONE = "(none)"
_DUMP_IFACE_FIELDS = 4
_DUMP_PEER_FIELDS = 8
_LINK_LOCAL = (ipaddress.ip_network("fe80::/10"), ipaddress.ip_network("169.254.0.0/16"))
_MULTICAST = (ipaddress.ip_network("ff00::/8"), ipaddress.ip_network("224.0.0.0/4"))


class ParseError(ValueError):
    """Output of a node that cannot be understood. Messages never quote key material."""


class ReadError(ParseError):
    """The node answered, but its WireGuard state could not be read (e.g. `wg show` failed on a link)."""


# ---------------------------------------------------------------------------------------------
# The remote command


def read_command(interface: str, resolve_hosts: Iterable[str] = (), *, key_dir: str = KEY_DIR) -> str:
    """scripts/read.sh: every section `parse_read_output` needs, in one round trip.

    Exits 0 even when the interface does not exist. Private and preshared keys are replaced on the node.
    Each name in `resolve_hosts` is resolved once (a name with a line break cannot be one: left out).
    """
    hosts = [h for h in dict.fromkeys(resolve_hosts) if h and "\n" not in h and "\r" not in h]
    return shell.script("read", **shell.node_paths(interface, key_dir=key_dir), HOSTS="\n".join(hosts))


# ---------------------------------------------------------------------------------------------
# Pure parsers


def _is_key(value: str) -> bool:
    if len(value) != 44:
        return False
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return False
    return len(raw) == 32 and base64.b64encode(raw).decode() == value


def _public_key(value: str, what: str, line_no: int) -> str:
    if not _is_key(value):
        raise ParseError(f"wg dump line {line_no}: {what} is not a WireGuard key")
    return value


def _int(value: str, what: str, line_no: int) -> int:
    try:
        number = int(value, 10)
    except ValueError:
        raise ParseError(f"wg dump line {line_no}: {what} is not a number") from None
    if number < 0:
        raise ParseError(f"wg dump line {line_no}: {what} is negative")
    return number


def _fwmark(value: str, line_no: int) -> int | None:
    if value in ("off", "0"):
        return None
    try:
        return int(value, 0)
    except ValueError:
        raise ParseError(f"wg dump line {line_no}: fwmark {value!r} is not a number") from None


def _endpoint(value: str, line_no: int) -> str | None:
    if value == NONE:
        return None
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
    if not sep or not port.isdigit() or version != want_version or not 0 < int(port) < 65536:
        raise ParseError(f"wg dump line {line_no}: endpoint {value!r} is not address:port")
    return value


def _allowed_ips(value: str, line_no: int) -> frozenset[IPNetwork]:
    if value == NONE:
        return frozenset()
    try:
        return frozenset(ipaddress.ip_network(p, strict=False) for p in value.split(","))
    except ValueError:
        raise ParseError(f"wg dump line {line_no}: allowed-ips {value!r} is not a list of prefixes") from None


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
    keepalive = fields[7]
    return LivePeer(
        public_key=_public_key(fields[0], "peer public key", line_no),
        endpoint=_endpoint(fields[2], line_no),
        allowed_ips=_allowed_ips(fields[3], line_no),
        persistent_keepalive=0 if keepalive == "off" else _int(keepalive, "keepalive", line_no),
        latest_handshake=_int(fields[4], "latest handshake", line_no),
        rx_bytes=_int(fields[5], "rx bytes", line_no),
        tx_bytes=_int(fields[6], "tx bytes", line_no),
        has_preshared_key=fields[1] != NONE,
    )


def _add_peer(peers: dict[str, LivePeer], peer: LivePeer, line_no: int) -> None:
    if peer.public_key in peers:
        raise ParseError(f"wg dump line {line_no}: peer {peer.public_key} listed twice")
    peers[peer.public_key] = peer


def _lines(text: str) -> list[tuple[int, str]]:
    return [(n, line.rstrip("\r")) for n, line in enumerate(text.split("\n"), 1) if line.strip()]


def parse_dump(text: str) -> tuple[InterfaceDump | None, dict[str, LivePeer]]:
    """`wg show IF dump`: the interface line, then one line per peer. Empty text: no interface."""
    rows = _lines(text)
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
    if mtu is not None and not isinstance(mtu, int):
        raise ParseError("ip addr: mtu is not a number")
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


def parse_getent(text: str) -> frozenset[str]:
    """`getent ahosts NAME` -> the set of addresses (canonical strings). Empty text: not resolved."""
    out: set[str] = set()
    for line_no, line in _lines(text):
        token = line.split()[0].split("%", 1)[0]
        try:
            out.add(str(ipaddress.ip_address(token)))
        except ValueError:
            raise ParseError(f"getent line {line_no}: {token!r} is not an address") from None
    return frozenset(out)


# ---------------------------------------------------------------------------------------------
# The whole read


_READ_SECTIONS = frozenset({"preflight", "wg", "link", "addr", "route4", "route6", "keyfile", "conf", "systemd"})
_IP_SECTIONS = ("link", "addr", "route4", "route6")
_OS_WORD = re.compile(r"[a-z0-9._-]{1,40}")


def _read_sections(found: Sequence[shell.Section]) -> tuple[dict[str, str], dict[str, str]]:
    """The read's sections as {name: body} and {resolve host: body}; what precedes them (status's clock,
    import's config) is left alone."""
    bodies: dict[str, str] = {}
    resolves: dict[str, str] = {}
    seen_end = False
    for s in found:
        if s.name == "resolve":
            resolves.setdefault(s.rest, s.body)
        elif s.name == "end":
            seen_end = True
            break
        elif s.name in bodies:
            raise ParseError(f"read output: section {s.name!r} appears twice")
        else:
            bodies[s.name] = s.body
    if FORMAT not in bodies:
        raise ParseError(f"read output: missing the {MARK}{FORMAT} header (not wgmesh read output?)")
    if not seen_end:
        raise ParseError("read output: truncated (no end marker)")
    missing = _READ_SECTIONS - bodies.keys()
    if missing:
        raise ParseError(f"read output: missing sections {', '.join(sorted(missing))}")
    return bodies, resolves


def parse_preflight(body: str) -> tuple[tuple[str, ...], str | None]:
    """The preflight section -> (what the node lacks, in nodeos.KNOWN order; its OS family or None)."""
    lacks: set[str] = set()
    words: list[str] = []
    for _, line in _lines(body):
        key, _, value = line.strip().partition(" ")
        if key == "os":
            words = [w for w in value.lower().split() if _OS_WORD.fullmatch(w)]
        elif key == "lacks" and value in nodeos.KNOWN:
            lacks.add(value)
        else:
            raise ParseError("read output: preflight section malformed")
    os_family = nodeos.family(words[0], tuple(words[1:])) if words else None
    return tuple(k for k in nodeos.KNOWN if k in lacks), os_family


def _keyfile(body: str) -> tuple[bool, str | None]:
    rows = [line for _, line in _lines(body)]
    if not rows or rows[0] not in ("present", "absent"):
        raise ParseError("read output: key file section malformed")
    if rows[0] == "absent":
        return False, None
    pub = rows[1].strip() if len(rows) > 1 else ""
    return True, pub if _is_key(pub) else None


def _conf(body: str) -> tuple[bool, str | None]:
    rows = [line.strip() for _, line in _lines(body)]
    if not rows or rows[0] not in ("present", "absent"):
        raise ParseError("read output: config section malformed")
    if rows[0] == "absent":
        return False, None
    digest = rows[1] if len(rows) > 1 else ""
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise ParseError("read output: config checksum malformed")
    return True, digest


def _systemd(body: str) -> bool | None:
    rows = [line.strip() for _, line in _lines(body)]
    if rows == ["no-systemd"]:
        return None
    return bool(rows) and rows[0] in ("enabled", "enabled-runtime")


def parse_forwarding(body: str) -> dict[int, bool]:
    """The forwarding section (`4 1`, `6 0`: IP version and the sysctl's value) -> {4: True, 6: False}.
    A version not printed, or printed with a value that is no number, is absent (not known)."""
    out: dict[int, bool] = {}
    for _, line in _lines(body):
        version, _, value = line.strip().partition(" ")
        value = value.strip()
        if version in ("4", "6") and value.isdigit():
            out[int(version)] = int(value) != 0
    return out


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


def parse_iptables(interface: str, lines: Iterable[str]) -> tuple[bool, frozenset[IPNetwork]]:
    """Lines of `iptables -S FORWARD` and `iptables -t nat -S POSTROUTING` -> (wgmesh's two FORWARD accept
    rules for the interface are both there, the subnets S that have its rule
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
    return accept_in and accept_out, frozenset(masquerade)


def _iptables(interface: str, body: str) -> tuple[bool, bool, frozenset[IPNetwork]]:
    """The iptables section -> (the node has iptables, wgmesh's forward rules are there, masqueraded subnets)."""
    rows = [line for _, line in _lines(body)]
    if not rows or rows[0].strip() not in ("present", "absent"):
        raise ParseError("read output: iptables section malformed")
    if rows[0].strip() == "absent":
        return False, False, frozenset()
    forward, masquerade = parse_iptables(interface, rows[1:])
    return True, forward, masquerade


def parse_conf_text(body: str) -> str:
    """The conftext section -> IF.conf's text (each line was printed behind `|`; keys already redacted)."""
    lines = []
    for line in body.split("\n"):
        if line.startswith("|"):
            lines.append(line[1:])
        elif line.strip():
            raise ParseError("read output: config text section malformed")
    return "".join(f"{line}\n" for line in lines)


def parse_read_output(interface: str, text: str) -> LiveState:
    """The output of `read_command(interface, hosts)` -> LiveState. Pure."""
    return parse_read_sections(interface, shell.sections(text))


def parse_read_sections(interface: str, found: Sequence[shell.Section]) -> LiveState:
    """`parse_read_output` over sections already split (status and import print theirs first)."""
    _check_served(found)
    sections, resolves = _read_sections(found)
    missing, os_family = parse_preflight(sections["preflight"])
    iface, peers = parse_dump(sections["wg"])
    if {nodeos.IP, nodeos.IP_BUSYBOX, nodeos.IP_JSON} & set(missing):
        # No ip that speaks JSON: nothing is known of links and routes. The plan is an error (preflight);
        # the interface exists if wg could dump it, never "absent" because ip could not say.
        exists, addresses, mtu, up, routes = iface is not None, frozenset(), None, False, frozenset()
    else:
        exists = parse_ip_link(sections["link"])
        addresses, mtu, up = parse_ip_addr(sections["addr"])
        routes = parse_ip_route(sections["route4"], family=4) | parse_ip_route(sections["route6"], family=6)
    if exists and "wgerror" in sections and nodeos.WG not in missing:
        reason = "".join(c for c in sections["wgerror"].strip() if c.isprintable())[:200] or "no reason given"
        raise ReadError(f"interface {interface} exists but `wg show {interface}` failed: {reason}")
    key_exists, key_pub = _keyfile(sections["keyfile"])
    conf_exists, conf_sha = _conf(sections["conf"])
    # Routing and the config text: an output without these sections (a fake, an older capture) says nothing
    # of them, which is not the same as "off" or "absent".
    has_iptables: bool | None = None
    forward_rules = False
    masquerade: frozenset[IPNetwork] = frozenset()
    if "iptables" in sections:
        has_iptables, forward_rules, masquerade = _iptables(interface, sections["iptables"])
    conf_text = parse_conf_text(sections["conftext"]) if conf_exists and "conftext" in sections else None
    return LiveState(
        interface=interface,
        interface_exists=exists,
        public_key=iface.public_key if iface else None,
        listen_port=iface.listen_port if iface else None,
        fwmark=iface.fwmark if iface else None,
        peers=peers,
        addresses=addresses,
        mtu=mtu,
        link_up=up,
        routes=routes,
        key_file_exists=key_exists,
        key_file_public_key=key_pub,
        config_exists=conf_exists,
        config_sha256=conf_sha,
        resolved={host: parse_getent(body) for host, body in resolves.items()},
        wg_quick_unit_enabled=_systemd(sections["systemd"]),
        missing=missing,
        os_family=os_family,
        forwarding=parse_forwarding(sections.get("forwarding", "")),
        has_iptables=has_iptables,
        forward_rules=forward_rules,
        masquerade=masquerade,
        config_text=conf_text,
        plan_key=_plan_key(sections.get("plankey")),
        auto_mtu=parse_auto_mtu(sections.get("automtu", "")),
    )


def parse_auto_mtu(body: str) -> int | None:
    """read.sh's `automtu` section: the MTU wg-quick would set (a number in 576..65535), or None."""
    text = body.strip()
    if not text:
        return None
    if not text.isdigit() or not 68 <= int(text) <= 65535:
        raise ParseError(f"automtu: {text[:20]!r} is not an MTU")
    return int(text)


# ---------------------------------------------------------------------------------------------
# The read-only plan key (remote/plankey.py): read.sh's `plankey` section, and the output of the read script
# `wgmesh plan-key` installed, which says `@@wgmesh:served VERSION`


def _plan_key(body: str | None) -> str | None:
    from wgmesh.remote import plankey

    return plankey.plan_key_state(body)


def _check_served(found: Sequence[shell.Section]) -> None:
    """Refuse the output of an installed read script from another wgmesh version: its sections may no longer
    be what this parser expects, and a plan from them could show changes that are not there."""
    from wgmesh.remote import plankey

    served = plankey.served_version(found)
    if served is not None and served != plankey.script_version():
        raise ParseError(
            f"the read script that `wgmesh plan-key` installed on this node is from another wgmesh version "
            f"({served[:16]}, this one reads {plankey.script_version()}): run `wgmesh plan-key KEY.pub` again "
            "with the admin key"
        )
