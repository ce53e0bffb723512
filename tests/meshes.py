"""Small meshes and live states for unit tests, built from the model directly (no YAML)."""

from __future__ import annotations

import base64
import dataclasses
import ipaddress
from pathlib import Path
from typing import Any

from nacl.public import PrivateKey

from wgmesh.core.model import Endpoint, Mesh, Node, Ssh, Subnet
from wgmesh.core.plan import config_digest
from wgmesh.core.render import desired, render
from wgmesh.core.state import LivePeer, LiveState


def pubkey(seed: int) -> str:
    """A deterministic, valid public key (the private half is thrown away)."""
    sk = PrivateKey(bytes([seed]) * 32)
    return base64.b64encode(bytes(sk.public_key)).decode()


def node(i: int, name: str, *, endpoint: str | None = "default", subnets: tuple[str, ...] = (), **kw: Any) -> Node:
    ep: Endpoint | None
    if endpoint == "default":
        ep = Endpoint(f"198.51.100.{i}", 51820)
    elif endpoint is None:
        ep = None
    else:
        host, _, port = endpoint.rpartition(":")
        ep = Endpoint(host, int(port))
    fields: dict[str, Any] = {
        "name": name,
        "addresses": (ipaddress.ip_address(f"10.0.0.{i}"),),
        "public_key": pubkey(i),
        "endpoint": ep,
        "ssh": Ssh(host=f"192.0.2.{i}", known_hosts=Path("known_hosts")),
        "subnets": tuple(Subnet(ipaddress.ip_network(s)) for s in subnets),
    }
    fields.update(kw)
    return Node(**fields)


def four() -> Mesh:
    """The classic four-cloud mesh; aliyun is behind NAT."""
    return Mesh(
        name="demo",
        interface="wg0",
        networks=(ipaddress.ip_network("10.0.0.0/24"),),
        nodes=(
            node(1, "aws", subnets=("192.168.10.0/24",)),
            node(2, "azure", endpoint="azure.example.com:51820", subnets=("192.168.20.0/24",)),
            node(3, "gcp", subnets=("192.168.30.0/24",)),
            node(4, "aliyun", endpoint=None, subnets=("192.168.40.0/24",)),
        ),
    )


def converged(mesh: Mesh, name: str, **changes: Any) -> LiveState:
    """The live state a node has right after a successful apply; `changes` override fields."""
    cfg = desired(mesh, name)
    n = mesh.node(name)
    peers = {}
    for p in cfg.peers:
        ep = None
        if p.endpoint is not None:
            ep = "203.0.113.2:51820" if not p.endpoint.is_literal else str(p.endpoint)
        peers[p.public_key] = LivePeer(
            public_key=p.public_key,
            endpoint=ep,
            allowed_ips=frozenset(p.allowed_ips),
            persistent_keepalive=p.persistent_keepalive,
            latest_handshake=1700000000,
            rx_bytes=1000,
            tx_bytes=2000,
            has_preshared_key=False,
        )
    from wgmesh.core.render import wanted_routes

    state = LiveState(
        interface=mesh.interface,
        interface_exists=True,
        public_key=n.public_key,
        listen_port=cfg.listen_port,
        fwmark=None,
        peers=peers,
        addresses=frozenset(cfg.addresses),
        mtu=1420,
        link_up=True,
        routes=wanted_routes(cfg),
        key_file_exists=True,
        key_file_public_key=n.public_key,
        config_exists=True,
        config_sha256=config_digest(render(cfg, mesh.name)),
        resolved={"azure.example.com": frozenset({"203.0.113.2"})},
        wg_quick_unit_enabled=None,
        forwarding={4: bool(cfg.forwarding), 6: False},
        has_iptables=True,
        forward_rules=4 in cfg.forwarding,
        masquerade=frozenset(n for n in cfg.masquerade if n.version == 4),
        config_text=render(cfg, mesh.name),
    )
    return dataclasses.replace(state, **changes)


def fresh(mesh: Mesh, name: str) -> LiveState:
    """A node that has its key file but no interface yet."""
    return converged(
        mesh, name, interface_exists=False, public_key=None, listen_port=None, peers={}, addresses=frozenset(),
        mtu=None, link_up=False, routes=frozenset(), config_exists=False, config_sha256=None,
        forwarding={4: False, 6: False}, forward_rules=False, masquerade=frozenset(), config_text=None,
    )
