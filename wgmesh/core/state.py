"""What a node has, as read: LiveState and its normalized, digestible form. Pure."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from operator import attrgetter
from typing import Any

from wgmesh.core.model import IPInterface, IPNetwork

REDACTED = "(redacted)"  # what a node prints in place of a secret value (wg-quick import)


@dataclass(frozen=True)
class InterfaceDump:
    """The interface line of `wg show IF dump`, without the private key."""

    public_key: str | None
    listen_port: int | None
    fwmark: int | None


@dataclass(frozen=True)
class LivePeer:
    public_key: str
    endpoint: str | None
    allowed_ips: frozenset[IPNetwork]
    persistent_keepalive: int
    latest_handshake: int
    rx_bytes: int
    tx_bytes: int
    has_preshared_key: bool


_new = object.__new__


def live_peer(public_key: str, endpoint: str | None, allowed_ips: frozenset[IPNetwork], persistent_keepalive: int,
              latest_handshake: int, rx_bytes: int, tx_bytes: int, has_preshared_key: bool) -> LivePeer:
    """`LivePeer(...)` for the dump parser, which makes one per peer of every node (N² for a full mesh): the same
    object, its fields set in its __dict__ at once rather than by the frozen dataclass's __init__, which calls
    object.__setattr__ once per field (0.5 us a peer). Equal to, and hashed like, one built the usual way."""
    peer = _new(LivePeer)
    d = peer.__dict__
    d["public_key"] = public_key
    d["endpoint"] = endpoint
    d["allowed_ips"] = allowed_ips
    d["persistent_keepalive"] = persistent_keepalive
    d["latest_handshake"] = latest_handshake
    d["rx_bytes"] = rx_bytes
    d["tx_bytes"] = tx_bytes
    d["has_preshared_key"] = has_preshared_key
    return peer


@dataclass(frozen=True)
class LiveState:
    interface: str
    interface_exists: bool
    public_key: str | None
    listen_port: int | None
    fwmark: int | None
    peers: Mapping[str, LivePeer]
    addresses: frozenset[IPInterface]
    mtu: int | None
    link_up: bool
    routes: frozenset[IPNetwork]
    key_file_exists: bool
    key_file_public_key: str | None
    config_exists: bool
    config_sha256: str | None
    resolved: Mapping[str, tuple[str, ...]]  # name -> its addresses in the node resolver's order (first: wg's)
    wg_quick_unit_enabled: bool | None
    # preflight (core/nodeos.py): what the node lacks for what wgmesh does there, and its OS family
    missing: tuple[str, ...] = ()
    os_family: str | None = None
    # the folders that made it lack confowner or runowner (another user owns or may write them)
    unsafe_dirs: tuple[str, ...] = ()
    # routing (subnets): IP forwarding per IP version as the kernel has it now ({4: True, 6: False}; a version
    # the node did not report is absent), whether the node has iptables (the tool of wgmesh's IPv4 rules), whether
    # wgmesh's FORWARD accept rules for IF (in and out, comment `wgmesh:IF`) are in place, the same for ip6tables
    # and IPv6, and the subnets (of both versions) that have wgmesh's MASQUERADE rule for IF
    forwarding: Mapping[int, bool] = field(default_factory=dict)
    has_iptables: bool | None = None
    forward_rules: bool = False
    masquerade: frozenset[IPNetwork] = frozenset()
    has_ip6tables: bool | None = None
    forward_rules6: bool = False
    # the IP versions where only one of those two rules is there (the other deleted by hand): not in place, and
    # still wgmesh's to delete when the node no longer forwards that version
    stray_forward_rules: frozenset[int] = frozenset()
    # (IP version, table: filter or nat) -> why listing wgmesh's rules failed there (plan cannot tell what is in
    # place); the IP versions where iptables-nft says iptables-legacy tables are present too (their rules, a
    # DROP included, apply besides wgmesh's). Left out of normalized(): no apply changes them.
    rules_failed: Mapping[tuple[int, str], str] = field(default_factory=dict)
    legacy_tables: frozenset[int] = frozenset()
    # IF.conf as it is on the node, every PrivateKey and PresharedKey value redacted on the node (None: no file)
    config_text: str | None = None
    # the MTU `wg-quick up` would give the interface from a config without MTU (route MTU - 80, read.sh's
    # `automtu`): what the interface should have when mesh.yaml sets none (F11). None: not read. Left out of
    # normalized(): it follows the node's routes, not anything an apply changes.
    auto_mtu: int | None = None
    # the main table's routes through other devices: prefix -> (the route as the node printed it, its metric).
    # A prefix the mesh routes through IF that one of these has at the same or a lower metric cannot be added (or
    # would go unused): plan names it (core/plan.py). Empty: none, or not read. Left out of normalized() (a
    # router's table is long); a saved plan compares those of the mesh's prefixes (commands/read.py).
    other_routes: Mapping[IPNetwork, tuple[str, int]] = field(default_factory=dict)
    # `wgmesh plan-key` on the node (core/plankey.py): installed, outdated, incomplete or absent; None: not read.
    # Not WireGuard state: left out of normalized() and digest() (a saved plan does not go stale over it).
    plan_key: str | None = None
    # the node's clock when it was read (epoch seconds; None: not read): the time that peers' handshakes are
    # measured against (core/punch.py). Not state: left out of normalized() and digest().
    clock: int | None = None
    # the re-resolution of endpoint names (remote/scripts/reresolve.sh) on the node: "running", "stopped",
    # "outdated" (another wgmesh version's script) or "absent"; None: not read. Left out of normalized().
    reresolve: str | None = None
    # when the last confirmed apply ended on the node (epoch seconds, its clock; None: none since it booted):
    # a handshake older than that proves nothing of what the apply changed (status). Left out of normalized().
    applied: int | None = None
    # the run ids of applies whose change awaits confirmation: the node undoes each by itself unless it is
    # confirmed (a controller stopped between its apply and its confirmation)
    pending_runs: tuple[str, ...] = ()
    # runs being confirmed or undone on the node right now (their revert timer or a confirmation claimed them)
    settling_runs: tuple[str, ...] = ()
    # applies whose steps change the node right now (another controller's; read.sh `busy RUN`)
    busy_runs: tuple[str, ...] = ()


def wanted_mtu(configured: int | None, state: LiveState) -> int | None:
    """The MTU the interface should have: mesh.yaml's, else wg-quick's own choice on that node (so that the
    running interface and a `wg-quick up` from the written config, at the next boot, agree). None: unknown."""
    return configured if configured is not None else state.auto_mtu


def normalized(state: LiveState) -> dict[str, Any]:
    """The state as plain JSON-able data, sorted, without handshakes and traffic counters."""
    prefixes = _prefix_strings
    return {
        "interface": state.interface,
        "interface_exists": state.interface_exists,
        "public_key": state.public_key,
        "listen_port": state.listen_port,
        "fwmark": state.fwmark,
        "peers": [
            {
                "public_key": p.public_key,
                "endpoint": p.endpoint,
                "allowed_ips": list(prefixes(p.allowed_ips)),
                "persistent_keepalive": p.persistent_keepalive,
                "has_preshared_key": p.has_preshared_key,
            }
            for p in sorted(state.peers.values(), key=_by_public_key)
        ],
        "addresses": sorted(str(a) for a in state.addresses),
        "mtu": state.mtu,
        "link_up": state.link_up,
        "routes": sorted(str(r) for r in state.routes),
        "key_file_exists": state.key_file_exists,
        "key_file_public_key": state.key_file_public_key,
        "config_exists": state.config_exists,
        "config_sha256": state.config_sha256,
        "resolved": {h: sorted(a) for h, a in sorted(state.resolved.items())},
        "wg_quick_unit_enabled": state.wg_quick_unit_enabled,
        "forwarding": {str(v): on for v, on in sorted(state.forwarding.items())},
        "has_iptables": state.has_iptables,
        "forward_rules": state.forward_rules,
        "masquerade": sorted(str(n) for n in state.masquerade),
        "has_ip6tables": state.has_ip6tables,
        "forward_rules6": state.forward_rules6,
        "stray_forward_rules": sorted(state.stray_forward_rules),
        "pending_runs": sorted(state.pending_runs),
        "settling_runs": sorted(state.settling_runs),
        "busy_runs": sorted(state.busy_runs),
    }


_by_public_key = attrgetter("public_key")



@lru_cache(maxsize=1 << 16)
def _prefix_strings(prefixes: frozenset[IPNetwork]) -> tuple[str, ...]:
    """A peer's allowed-ips as `normalized` shows them, worked out once per distinct set: every node reports each
    peer's (and the dump's parser hands them all the same set object, so the lookup is by identity)."""
    return tuple(sorted(str(n) for n in prefixes))


def digest(doc: Mapping[str, Any]) -> str:
    """sha256 hex of a normalized state (see `normalized`), independent of key order."""
    blob = json.dumps(doc, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


@dataclass(frozen=True)
class QuickPeer:
    public_key: str
    endpoint: str | None = None
    allowed_ips: tuple[str, ...] = ()
    persistent_keepalive: int | None = None


@dataclass(frozen=True)
class WgQuick:
    """What wgmesh needs from a wg-quick config (never a private or preshared key)."""

    addresses: tuple[str, ...] = ()
    listen_port: int | None = None
    mtu: int | None = None
    post_up: tuple[str, ...] = ()
    post_down: tuple[str, ...] = ()
    ignored: tuple[str, ...] = ()  # [Interface] settings wgmesh does not manage (DNS, Table, ...)
    table: str | None = None  # `Table = off` or a table: wg-quick does not route AllowedIPs in the main table
    peers: tuple[QuickPeer, ...] = ()
