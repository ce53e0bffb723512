"""The desired mesh as plain, frozen data. No I/O here.

`config.load()` builds a `Mesh` from mesh.yaml after validation; everything downstream
(render, plan, apply) reads only these types.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface

KEY_DIR = "/etc/wireguard"


@dataclass(frozen=True)
class Endpoint:
    """`host:port` where peers reach a node. `host` is a name or an IP literal (no brackets)."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def is_literal(self) -> bool:
        try:
            ipaddress.ip_address(self.host)
        except ValueError:
            return False
        return True


@dataclass(frozen=True)
class Ssh:
    """How the controller reaches a node. Paths are already resolved against mesh.yaml's folder."""

    host: str
    port: int = 22
    user: str = "root"
    known_hosts: Path = Path("known_hosts")
    identity_file: Path | None = None
    proxy_jump: str | None = None


@dataclass(frozen=True)
class Subnet:
    """A private network routed into the mesh through a node; `probe` is what `wgmesh check` pings."""

    prefix: IPNetwork
    probe: IPAddress | None = None

    @property
    def probe_address(self) -> IPAddress:
        if self.probe is not None:
            return self.probe
        if self.prefix.num_addresses == 1:
            return self.prefix.network_address
        return self.prefix.network_address + 1


@dataclass(frozen=True)
class Node:
    name: str
    addresses: tuple[IPAddress, ...]
    public_key: str | None
    endpoint: Endpoint | None
    ssh: Ssh
    subnets: tuple[Subnet, ...] = ()
    listen_port: int = 51820
    mtu: int | None = None
    persistent_keepalive: int = 25
    post_up: tuple[str, ...] = ()
    post_down: tuple[str, ...] = ()
    decommission: bool = False

    @property
    def enrolled(self) -> bool:
        """Has a public key and is not being decommissioned: it takes part in peer lists."""
        return self.public_key is not None and not self.decommission

    @property
    def allowed_ips(self) -> tuple[IPNetwork, ...]:
        """What peers route to this node: its addresses as host routes, then its subnets."""
        hosts = tuple(ipaddress.ip_network(a) for a in self.addresses)
        return hosts + tuple(s.prefix for s in self.subnets)


@dataclass(frozen=True)
class Mesh:
    name: str
    interface: str
    networks: tuple[IPNetwork, ...]
    nodes: tuple[Node, ...]
    listen_port: int = 51820
    persistent_keepalive: int = 25
    mtu: int | None = None
    path: Path = Path("mesh.yaml")
    # line numbers of nodes in mesh.yaml, for messages about a node (name -> line)
    node_lines: dict[str, int] = field(default_factory=dict, compare=False, hash=False)

    @property
    def directory(self) -> Path:
        return self.path.parent

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
                    out.append(ipaddress.ip_interface(f"{addr}/{net.prefixlen}"))
                    break
            else:
                out.append(ipaddress.ip_interface(f"{addr}/{addr.max_prefixlen}"))
        return tuple(out)

    def key_path(self) -> str:
        return f"{KEY_DIR}/{self.interface}.key"

    def conf_path(self) -> str:
        return f"{KEY_DIR}/{self.interface}.conf"
