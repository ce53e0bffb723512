"""The desired mesh as plain, frozen data, and the pure parsers of its values. No I/O here.

`wgmesh.meshfile.load()` builds a `Mesh` from mesh.yaml after validation; everything downstream
(render, plan, apply) reads only these types. The grammars of keys, endpoints and `[user@]host[:port]`
live here so that meshfile (which adds `mesh.yaml:LINE:COL`) and the command line share one of each.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface

# Node-side paths (scripts get them as values: remote/shell.py node_paths, lock_path)
KEY_DIR = "/etc/wireguard"  # IF.key, IF.conf
RUN_DIR = "/run/wireguard"  # the lock and apply's runtime files (a tmpfs; wireguard-go's sockets live here too)

DEFAULT_LISTEN_PORT = 51820
DEFAULT_KEEPALIVE = 25
DEFAULT_INTERFACE = "wg0"
DEFAULT_KNOWN_HOSTS = "known_hosts"
DEFAULT_SSH_PORT = 22
DEFAULT_SSH_USER = "root"
DEFAULT_PARALLELISM = 10  # nodes worked on at once
DEFAULT_TIMEOUT = 10.0  # seconds to connect to a node


def command_line(command: str, file: Path) -> str:
    """`wgmesh COMMAND` as a hint to copy: with `-f FILE` when the mesh file is not ./mesh.yaml (the command run
    from the same folder must act on the same file)."""
    if file == Path("mesh.yaml"):
        return f"wgmesh {command}"
    text = str(file)
    quoted = text if re.fullmatch(r"[A-Za-z0-9_./~@%+=:,-]+", text) else "'" + text.replace("'", "'\\''") + "'"
    return f"wgmesh {command} -f {quoted}"

USER_RE = re.compile(r"[a-z_][a-z0-9_.-]{0,31}")
_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
_HOSTNAME_RE = re.compile(rf"(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*\.?")
_SCOPE_RE = re.compile(r"[A-Za-z0-9_.-]{1,15}")


# --------------------------------------------------------------------------------------------------
# Value grammars (each raises ValueError with a message that says what to write instead)


def validate_key(text: str) -> bool:
    """A WireGuard key: 32 bytes in canonical base64 (44 characters ending in one '=')."""
    if not isinstance(text, str) or len(text) != 44:
        return False
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        return False
    return len(raw) == 32 and base64.b64encode(raw).decode("ascii") == text


_OCTET = r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_QUAD = rf"{_OCTET}\.{_OCTET}\.{_OCTET}\.{_OCTET}"
_IPV4 = re.compile(_QUAD)
_IPV4_NETWORK = re.compile(rf"{_QUAD}/(3[0-2]|[12]?[0-9])")


def _quad(m: re.Match[str]) -> int:
    """The integer of a dotted quad matched by _IPV4 or _IPV4_NETWORK."""
    a, b, c, d = m.group(1, 2, 3, 4)
    return int(a) << 24 | int(b) << 16 | int(c) << 8 | int(d)


def ip_address(text: str) -> IPAddress:
    """`ipaddress.ip_address(text)`; a dotted quad made from its integer (mesh.yaml has one or more per node, and
    ipaddress parses each octet in Python). Anything else is ipaddress's, its ValueError included."""
    m = _IPV4.fullmatch(text)
    if m is None:
        return ipaddress.ip_address(text)
    return ipaddress.IPv4Address(_quad(m))


def ip_network(text: str) -> IPNetwork:
    """`ipaddress.ip_network(text, strict=True)`, an IPv4 network made from its integer as in `ip_address`."""
    m = _IPV4_NETWORK.fullmatch(text)
    if m is not None:
        value, length = _quad(m), int(m.group(5))
        if not value & ((1 << (32 - length)) - 1):  # (host bits set: ipaddress words the error)
            return ipaddress.IPv4Network((value, length))
    return ipaddress.ip_network(text, strict=True)


def is_ip(text: str, version: int) -> bool:
    """`text` is an IP address of that version, without a %scope."""
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return False
    return addr.version == version and "%" not in text


def is_hostname(text: str) -> bool:
    """A DNS name: labels of letters, digits, '-' (and '_'), no empty label, at most 253 characters."""
    return bool(_HOSTNAME_RE.fullmatch(text))


def parse_endpoint(text: str) -> Endpoint:
    """`host:port` or `[v6]:port`; raises ValueError with a message saying what to write instead."""
    host, port_text = _endpoint_v6(text) if text.startswith("[") else _endpoint_host(text)
    port = int(port_text)
    if not 1 <= port <= 65535:
        raise ValueError("the port must be from 1 to 65535")
    return Endpoint(host, port)


def _endpoint_v6(text: str) -> tuple[str, str]:
    m = re.fullmatch(r"\[([^\]]*)\]:([0-9]{1,5})", text)  # (ASCII digits, as for host:port)
    if m is None:
        raise ValueError("write an IPv6 endpoint as [2001:db8::1]:51820")
    if not is_ip(m.group(1), 6):
        raise ValueError("the part in brackets must be an IPv6 address, e.g. [2001:db8::1]:51820")
    mapped = ipaddress.IPv6Address(m.group(1)).ipv4_mapped
    if mapped is not None:  # WireGuard on Linux has an IPv4 socket and an IPv6-only one: nothing reaches it
        raise ValueError(f"an IPv4-mapped address does not work as an endpoint (WireGuard sends nothing to one): "
                         f"write the IPv4 address, {mapped}:{m.group(2)}")
    return m.group(1), m.group(2)


def _endpoint_host(text: str) -> tuple[str, str]:
    if ":" not in text:
        example = text if is_hostname(text) or is_ip(text, 4) else "vpn.example.com"
        raise ValueError(f"missing port: write host:port, e.g. {example}:51820")
    host, _, port_text = text.rpartition(":")
    if ":" in host:
        raise ValueError("put an IPv6 address in brackets: [2001:db8::1]:51820")
    if not port_text.isascii() or not port_text.isdigit() or len(port_text) > 5:
        raise ValueError("the port after ':' must be a number from 1 to 65535")
    if re.fullmatch(r"[0-9.]+", host):
        if not is_ip(host, 4):
            raise ValueError("not a valid IPv4 address before ':'")
    elif not is_hostname(host):
        raise ValueError("the host must be a DNS name or an IP address, e.g. vpn.example.com:51820")
    return host, port_text


def parse_host(text: str) -> str:
    """An SSH host: a DNS name or an IP literal (IPv6 without brackets, an optional %scope). Returns it."""
    if not text:
        raise ValueError("empty host: write a host name or IP address, e.g. 203.0.113.10")
    if text.startswith("-") or re.search(r"\s", text) or not text.isprintable():
        raise ValueError("not a host name or IP: write one without spaces and not starting with '-', e.g. 203.0.113.10")
    if text.startswith("[") and text.endswith("]"):
        raise ValueError(f"write the IPv6 address without brackets: {text[1:-1]}")
    if ":" in text:
        address, percent, scope = text.partition("%")
        if is_ip(address, 6) and (not percent or _SCOPE_RE.fullmatch(scope)):
            return text
        raise ValueError("not an IPv6 address: write e.g. 2001:db8::10 (a port goes in ssh.port)")
    if re.fullmatch(r"[0-9.]+", text):
        if is_ip(text, 4):
            return text
        raise ValueError("not a valid IPv4 address: write e.g. 203.0.113.10")
    if ".." in text or text.startswith("."):
        raise ValueError("empty label between dots: write a host name like node1.example.com")
    if not is_hostname(text):
        raise ValueError(
            "not a host name or IP address: use letters, digits, '-' and dots, e.g. node1.example.com"
        )
    return text


def _parse_port(text: str) -> int:
    if not text:
        raise ValueError("empty port after ':': write the SSH port, e.g. :22, or leave out the ':'")
    if not text.isascii() or not text.isdigit():
        raise ValueError("the SSH port after ':' must be a number from 1 to 65535")
    port = int(text)
    if not 1 <= port <= 65535:
        raise ValueError("the SSH port must be from 1 to 65535")
    return port


def _split_user(text: str) -> tuple[str | None, str]:
    if "@" not in text:
        return None, text
    user, _, rest = text.rpartition("@")
    if not user:
        raise ValueError("empty user before '@': write user@host, or leave out the '@'")
    if not USER_RE.fullmatch(user):
        raise ValueError(f"invalid user name {user!r}: use lowercase letters, digits, '_', '.', '-'")
    return user, rest


def _split_port(text: str) -> tuple[str, int | None]:
    if text.startswith("["):
        m = re.fullmatch(r"\[([^\]]+)\](?::(.*))?", text)
        if m is None or ":" not in m.group(1):
            raise ValueError("write an IPv6 host as [2001:db8::1] or [2001:db8::1]:22")
        return m.group(1), None if m.group(2) is None else _parse_port(m.group(2))
    if text.count(":") == 1:
        host, _, port_text = text.partition(":")
        return host, _parse_port(port_text)
    return text, None  # a name, an IPv4 address, or a bare IPv6 address (no port)


def parse_ssh_target(text: str) -> SshTarget:
    """`[user@]host[:port]`, `[user@][v6]:port` or `[user@]v6`; raises ValueError saying what to write."""
    if not text:
        raise ValueError("empty: write [user@]host[:port], e.g. admin@bastion.example.com:22")
    if re.search(r"\s", text):
        raise ValueError("must be [user@]host[:port] without spaces, e.g. admin@bastion.example.com:22")
    user, rest = _split_user(text)
    host, port = _split_port(rest)
    if not host:
        raise ValueError("empty host: write [user@]host[:port], e.g. admin@bastion.example.com:22")
    return SshTarget(user, parse_host(host), port)


# --------------------------------------------------------------------------------------------------
# The model


@dataclass(frozen=True)
class Endpoint:
    """`host:port` where peers reach a node. `host` is a name or an IP literal (no brackets)."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def is_literal(self) -> bool:
        if ":" not in self.host and not self.host.replace(".", "").isdigit():
            return False  # a name (not IPv6, not digits and dots): no parse, no exception
        try:
            ipaddress.ip_address(self.host)
        except ValueError:
            return False
        return True


@dataclass(frozen=True)
class SshTarget:
    """`[user@]host[:port]`, parsed: a jump host (ssh.proxy_jump) or an `import` target.

    None means "not given". In a loaded Mesh, `Ssh.proxy_jump` has both filled in (the node's user, port 22).
    """

    user: str | None
    host: str
    port: int | None = None

    def __str__(self) -> str:
        user = f"{self.user}@" if self.user else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        port = f":{self.port}" if self.port is not None else ""
        return f"{user}{host}{port}"


@dataclass(frozen=True)
class Ssh:
    """How the controller reaches a node. Paths are already resolved against mesh.yaml's folder."""

    host: str
    port: int = DEFAULT_SSH_PORT
    user: str = DEFAULT_SSH_USER
    known_hosts: Path = Path(DEFAULT_KNOWN_HOSTS)
    identity_file: Path | None = None
    proxy_jump: SshTarget | None = None
    proxy_command: str | None = None  # ssh.proxy_command as written (core/proxycommand.py); exclusive with proxy_jump
    sudo: bool | None = None  # None: use sudo when the user is not root

    @property
    def use_sudo(self) -> bool:
        """Wrap node commands in `sudo -n`: as set by ssh.sudo, else whenever the user is not root."""
        return self.sudo if self.sudo is not None else self.user != "root"


@dataclass(frozen=True)
class SshDefaults:
    """The mesh-wide `ssh:` section, resolved (for commands that reach hosts that are not nodes yet)."""

    port: int = DEFAULT_SSH_PORT
    user: str = DEFAULT_SSH_USER
    known_hosts: Path = Path(DEFAULT_KNOWN_HOSTS)
    identity_file: Path | None = None
    proxy_jump: SshTarget | None = None  # as written: user and port may be None
    proxy_command: str | None = None
    sudo: bool | None = None


@dataclass(frozen=True)
class Subnet:
    """A private network routed into the mesh through a node; `probe` is what `wgmesh check` pings."""

    prefix: IPNetwork
    probe: IPAddress | None = None
    masquerade: bool | None = None  # None: the node's `masquerade` (for an IPv4 subnet; an IPv6 one: no)

    @property
    def probe_address(self) -> IPAddress:
        if self.probe is not None:
            return self.probe
        if self.prefix.num_addresses == 1:
            return self.prefix.network_address
        return self.prefix.network_address + 1


@dataclass(frozen=True)
class Node:
    """One node of mesh.yaml, validated: its mesh addresses, public key (None until enrolled), endpoint, SSH
    access, routed subnets and per-node settings."""

    name: str
    addresses: tuple[IPAddress, ...]
    public_key: str | None
    endpoint: Endpoint | None
    ssh: Ssh
    subnets: tuple[Subnet, ...] = ()
    listen_port: int = DEFAULT_LISTEN_PORT
    mtu: int | None = None
    persistent_keepalive: int = DEFAULT_KEEPALIVE
    post_up: tuple[str, ...] = ()
    post_down: tuple[str, ...] = ()
    decommission: bool = False
    masquerade: bool = False  # source-NAT mesh traffic into the node's IPv4 subnets (a subnet may say otherwise)
    # the endpoint's port is forwarded to listen_port by a router in front of the node (a different port is
    # then not a mistake)
    port_forward: bool = False
    # the peers (node names) whose pair with this node keeps the preshared key it has (`shared_keys: {NAME:
    # keep}`); either node of a pair may say so. wgmesh never sees the value.
    keep_shared_keys: tuple[str, ...] = ()

    @property
    def masqueraded(self) -> tuple[IPNetwork, ...]:
        """The subnets whose incoming mesh traffic this node source-NATs to its own address: a subnet's own
        `masquerade`, else the node's for an IPv4 subnet. NAT66 is asked for per subnet: the node-wide field meant
        IPv4 before IPv6 subnets had rules, and an upgrade must not start translating a node's IPv6 traffic."""
        return tuple(s.prefix for s in self.subnets
                     if (s.masquerade if s.masquerade is not None else self.masquerade and s.prefix.version == 4))

    @property
    def enrolled(self) -> bool:
        """Has a public key and is not being decommissioned: it takes part in peer lists."""
        return self.public_key is not None and not self.decommission

    @cached_property
    def allowed_ips(self) -> tuple[IPNetwork, ...]:
        """What peers route to this node: its addresses as host routes, then its subnets (worked out once: a
        plan and render --all ask for it once per peer)."""
        hosts = tuple(_host_network(a) for a in self.addresses)
        return hosts + tuple(s.prefix for s in self.subnets)


def _host_network(addr: IPAddress) -> IPNetwork:
    """ADDR/32 (or /128), built from the address's integer (the ipaddress constructors given an address object
    parse its text again)."""
    if addr.version == 4:
        return ipaddress.IPv4Network((int(addr), 32))
    return ipaddress.IPv6Network((int(addr), 128))


def _interface_of(addr: IPAddress, prefixlen: int) -> IPInterface:
    """ADDR/PREFIXLEN as an interface, built from the address's integer."""
    if addr.version == 4:
        return ipaddress.IPv4Interface((int(addr), prefixlen))
    return ipaddress.IPv6Interface((int(addr), prefixlen))


@dataclass(frozen=True)
class Mesh:
    """mesh.yaml, validated: the mesh-wide settings and every node, in file order."""

    name: str
    interface: str
    networks: tuple[IPNetwork, ...]
    nodes: tuple[Node, ...]
    listen_port: int = DEFAULT_LISTEN_PORT
    persistent_keepalive: int = DEFAULT_KEEPALIVE
    mtu: int | None = None
    relay: str | None = None  # mesh.relay: the node that relays pairs without an endpoint (core/relay.py)
    path: Path = Path("mesh.yaml")
    ssh: SshDefaults = field(default=SshDefaults(), compare=False)
    # line numbers of nodes in mesh.yaml, for messages about a node (name -> line)
    node_lines: dict[str, int] = field(default_factory=dict, compare=False, hash=False)

    @property
    def directory(self) -> Path:
        return self.path.parent

    def command(self, command: str) -> str:
        """`wgmesh COMMAND` for this mesh's file, as a hint (`command_line`)."""
        return command_line(command, self.path)

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    @property
    def node_names(self) -> tuple[str, ...]:
        return tuple(n.name for n in self.nodes)

    def interface_addresses(self, node: Node) -> tuple[IPInterface, ...]:
        """The node's addresses with the prefix length of the mesh network that holds each."""
        out: list[IPInterface] = []
        for addr in node.addresses:
            for net in self.networks:
                if net.version == addr.version and addr in net:
                    out.append(_interface_of(addr, net.prefixlen))
                    break
            else:
                out.append(_interface_of(addr, addr.max_prefixlen))
        return tuple(out)

    def key_path(self) -> str:
        return f"{KEY_DIR}/{self.interface}.key"

    def conf_path(self) -> str:
        return f"{KEY_DIR}/{self.interface}.conf"
