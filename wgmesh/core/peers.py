"""The peer and route part of a node's diff: desired peers against the live ones, keyed by public key.

Endpoints that roam or were resolved on the node are no change; a rotated key is one `-/+` replacement; routes
through the interface are those wg-quick would add. Pure.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any

from wgmesh.core.changes import Action, Change, Value
from wgmesh.core.model import Endpoint, IPInterface, IPNetwork, Mesh
from wgmesh.core.render import (
    InterfaceConfig,
    PeerConfig,
    endpoint_names,
    wanted_routes,
)
from wgmesh.core.state import LivePeer, LiveState


def _net(n: IPNetwork) -> str:
    return str(n)


def _nets(items: Iterable[IPNetwork]) -> list[str]:
    if isinstance(items, tuple | frozenset):  # a peer's prefixes: the same ones on every node's plan
        return list(_nets_of(items))
    return [str(n) for n in sorted(set(items), key=lambda n: (n.version, n.network_address, n.prefixlen))]


@lru_cache(maxsize=1 << 16)
def _nets_of(items: tuple[IPNetwork, ...] | frozenset[IPNetwork]) -> tuple[str, ...]:
    return tuple(str(n) for n in sorted(set(items), key=lambda n: (n.version, n.network_address, n.prefixlen)))


@lru_cache(maxsize=1 << 16)
def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """An IP address, or None: parsed once, as plan compares the same endpoints on every node."""
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _ifaces(items: Iterable[IPInterface]) -> list[str]:
    return [str(i) for i in sorted(set(items), key=lambda i: (i.version, i.ip, i.network.prefixlen))]


def _split_endpoint(text: str) -> tuple[str, int] | None:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        return None
    return host.strip("[]"), int(port)


def endpoint_matches(want: Endpoint | None, live: str | None, resolved: Mapping[str, tuple[str, ...]]) -> bool:
    """Does the live endpoint satisfy the declared one?

    No declared endpoint: anything goes (the peer is behind NAT and roams). A declared IP literal must match
    exactly; a declared name matches any address the node resolves that name to. An IPv4-mapped IPv6 address
    (::ffff:a.b.c.d) is not the IPv4 address: WireGuard on Linux (the kernel module and wireguard-go) has an IPv4
    socket and an IPv6-only one, so packets never come from such an address, and one set by hand sends nothing.
    """
    if want is None:
        return True
    if live is None:
        return False
    if _ip(want.host) is not None:  # a literal: the answer depends on the two texts only, the same on every node
        return _literal_matches(want.host, want.port, live)
    return _matches(want, live, resolved)


@lru_cache(maxsize=1 << 16)
def _literal_matches(host: str, port: int, live: str) -> bool:
    return _matches(Endpoint(host, port), live, {})


def _matches(want: Endpoint, live: str, resolved: Mapping[str, tuple[str, ...]]) -> bool:
    parsed = _split_endpoint(live)
    if parsed is None:
        return False
    host, port = parsed
    if port != want.port:
        return False
    live_ip = _ip(host.split("%", 1)[0])
    if live_ip is None:
        return host == want.host
    want_ip = _ip(want.host)
    if want_ip is not None:  # want.is_literal
        return live_ip == want_ip
    return live_ip in {ip for ip in map(_ip, resolved.get(want.host, ())) if ip is not None}


def _peer_attrs(p: PeerConfig) -> dict[str, Value]:
    attrs: dict[str, Value] = {
        "public_key": p.public_key,
        "allowed_ips": _nets(p.allowed_ips),
        "endpoint": str(p.endpoint) if p.endpoint else None,
        "persistent_keepalive": p.persistent_keepalive,
    }
    if p.relayed:
        attrs["relays"] = list(p.relayed)  # the nodes reached through this peer (core/relay.py)
    if p.path is not None:  # a pair of nodes without an endpoint (core/punch.py)
        attrs["path"] = "direct" if p.path == "direct" else f"via relay {p.via}"
        if p.learned is not None:
            attrs["endpoint"] = p.learned
    return attrs


def _live_path(lp: LivePeer, p: PeerConfig, hosts: Mapping[IPNetwork, str]) -> str:
    """The path a live entry for a node without an endpoint gives: direct when it carries the node's addresses."""
    return "direct" if any(hosts.get(ip) == p.name for ip in lp.allowed_ips) else f"via relay {p.via}"


def _relayed_live(lp: LivePeer, peer: str | None, hosts: Mapping[IPNetwork, str]) -> list[str]:
    """The other nodes whose host address sits on a live peer entry: whom that peer relays today."""
    found = {name for name in map(hosts.get, lp.allowed_ips) if name is not None and name != peer}
    if not found:  # the common case, and the order below walks every node
        return []
    return [name for name in dict.fromkeys(hosts.values()) if name in found]


def _live_peer_attrs(p: LivePeer) -> dict[str, Value]:
    return {
        "public_key": p.public_key,
        "allowed_ips": _nets(p.allowed_ips),
        "endpoint": p.endpoint,
        "persistent_keepalive": p.persistent_keepalive,
        "preshared_key": "(set)" if p.has_preshared_key else None,
    }


def unresolved(want: Endpoint | None, live: LiveState) -> bool:
    """`want` is a name that the node was asked to resolve and could not."""
    return want is not None and not want.is_literal and want.host in live.resolved and not live.resolved[want.host]


def unresolved_warnings(mesh: Mesh, results: Mapping[str, LiveState | str]) -> list[str]:
    """One warning per node and endpoint name of its peers that does not resolve there."""
    out = []
    names_of = endpoint_names(mesh)  # resolve_hosts for every node, the mesh scanned once
    for node in mesh.nodes:
        live = results.get(node.name)
        if not isinstance(live, LiveState) or node.decommission or node.public_key is None:
            continue
        if not live.interface_exists:  # its plan fails instead (core/plan.py): nothing keeps an endpoint there
            continue
        for host in names_of(node):
            if host in live.resolved and not live.resolved[host]:
                peers = [n.name for n in mesh.nodes if n.endpoint is not None and n.endpoint.host == host]
                out.append(f"{node.name}: {host} (the endpoint of {', '.join(peers)}) does not resolve on the node: "
                           f"the peer keeps the endpoint it has; apply leaves it out of wg syncconf, and the node's "
                           f"re-resolution tries again every 30 s. Until it resolves, a restart of the interface (a "
                           f"reboot) fails: wg-quick up waits about 72 s for the name, then brings no tunnel up")
    return out


def _same_peer(
    p: PeerConfig, lp: LivePeer, live: LiveState, hosts: Mapping[IPNetwork, str], known: dict[Any, Any] | None = None
) -> bool:
    """The live peer is as wanted, in every attribute `_peer_changes` shows (the common case: a quick yes)."""
    if p.relayed or (lp.has_preshared_key and not p.keep_preshared_key):
        return False
    if lp.persistent_keepalive != p.persistent_keepalive:
        return False
    if p.learned is not None and lp.endpoint != p.learned:
        return False
    ips, relays = _wanted_ips(p, hosts, known)
    # with the same prefixes, the live entry relays whom `relays` says (_relayed_live over the same set)
    return not relays and _same_set(lp.allowed_ips, ips, known) and endpoint_matches(p.endpoint, lp.endpoint,
                                                                                      live.resolved)


def _same_set(a: frozenset[IPNetwork], b: frozenset[IPNetwork], known: dict[Any, Any] | None) -> bool:
    """a == b, remembered in `known` for a pair of sets that many nodes share: the parser gives every node that
    reports a value the same set (remote/read_parsers.py), the plan every node the same wanted entry, and
    comparing prefixes costs their Python-level hashing and equality each time."""
    if a is b:
        return True
    if known is None:
        return a == b
    key = (id(a), id(b))
    got = known.get(key)
    if got is not None and got[0] is a and got[1] is b:
        return bool(got[2])
    same = a == b
    known[key] = (a, b, same)  # holds both: their ids stay theirs for the plan's life
    return same


def _wanted_ips(
    p: PeerConfig, hosts: Mapping[IPNetwork, str], known: dict[Any, Any] | None
) -> tuple[frozenset[IPNetwork], bool]:
    """p's prefixes as a set, and whether one is another node's host prefix; remembered in `known` for an entry
    that many nodes share (the id is checked against the entry itself, which `known` keeps alive)."""
    got = known.get(id(p)) if known is not None else None
    if got is not None and got[0] is p:
        return got[1], got[2]
    ips = frozenset(p.allowed_ips)
    relays = any(name is not None and name != p.name for name in map(hosts.get, ips))
    if known is not None:
        known[id(p)] = (p, ips, relays)
    return ips, relays


def _peer_changes(
    cfg: InterfaceConfig,
    live: LiveState,
    names: Mapping[str, str],
    hosts: Mapping[IPNetwork, str] | None = None,
    known: dict[Any, Any] | None = None,
) -> list[Change]:
    """`hosts`: each node's host prefixes (its /32 and /128) -> its name, to say whom a peer relays. `known`: what
    was worked out of the peer entries that the nodes of one plan share (MeshIndex.known)."""
    changes: list[Change] = []
    want = {p.public_key: p for p in cfg.peers}
    for key, p in want.items():
        lp = live.peers.get(key)
        if lp is not None and _same_peer(p, lp, live, hosts or {}, known):
            continue  # what the comparison below finds too, without building what it shows
        after = _peer_attrs(p)
        if lp is None:
            changes.append(Change(Action.CREATE, "peer", p.name, None, after))
            continue
        before = _live_peer_attrs(lp)
        relayed_before = _relayed_live(lp, p.name, hosts or {})
        if relayed_before or p.relayed:
            before["relays"] = relayed_before
            after.setdefault("relays", [])
        if p.path is not None:
            before["path"] = _live_path(lp, p, hosts or {})
        shown_after = dict(after)
        # wgmesh sets no preshared key: a live one is cleared, unless the pair keeps it (`shared_keys`)
        shown_after["preshared_key"] = before["preshared_key"] if p.keep_preshared_key else None
        if p.learned is not None:
            pass  # hole punching: the endpoint the public nodes see the peer at (core/punch.py)
        elif endpoint_matches(p.endpoint, lp.endpoint, live.resolved):
            # Not a change: a roamed endpoint, or a name the node resolved to this address.
            shown_after["endpoint"] = before["endpoint"]
        elif lp.endpoint is not None and unresolved(p.endpoint, live):
            # Not a change either: the name does not resolve on the node, which keeps the endpoint it has (the
            # plan warns; syncconf never gets the name: core/steps.py sync_endpoint)
            shown_after["endpoint"] = before["endpoint"]
        if set(before["allowed_ips"] or []) == set(after["allowed_ips"] or []):  # type: ignore[arg-type]
            shown_after["allowed_ips"] = before["allowed_ips"]
        if before != shown_after:
            changes.append(Change(Action.UPDATE, "peer", p.name, before, shown_after))
    for key, lp in live.peers.items():
        if key not in want:
            name = names.get(key) or f"{key[:8]}…"
            changes.append(Change(Action.DELETE, "peer", name, _live_peer_attrs(lp), None))
    return _pair_replacements(changes, cfg, live.resolved)


def _pair_replacements(
    changes: list[Change], cfg: InterfaceConfig, resolved: Mapping[str, tuple[str, ...]]
) -> list[Change]:
    """A peer added while a peer with the same mesh address goes away is the same node with a new key
    (a rotation, or a node rebuilt): show it as one replacement, as Terraform shows `-/+`."""
    actions = {c.action for c in changes}
    if Action.CREATE not in actions or Action.DELETE not in actions:
        return changes  # nothing to pair (the tables below cost a walk over every peer)
    peers = {p.name: p for p in cfg.peers}
    hosts = {p.name: {n for n in p.allowed_ips if n.prefixlen == n.max_prefixlen} for p in cfg.peers}
    out = list(changes)
    for new in [c for c in changes if c.action is Action.CREATE]:
        for old in [c for c in out if c.action is Action.DELETE]:
            before_ips = {ipaddress.ip_network(x) for x in (old.before or {}).get("allowed_ips") or []}  # type: ignore[union-attr]
            if hosts.get(new.name, set()) & before_ips:
                after = dict(new.after or {})
                before_endpoint = (old.before or {}).get("endpoint")
                if endpoint_matches(peers[new.name].endpoint, before_endpoint, resolved):  # type: ignore[arg-type]
                    after["endpoint"] = before_endpoint  # not a change: the same place, or a roaming peer
                after["preshared_key"] = None
                out[out.index(new)] = Change(Action.REPLACE, "peer", new.name, old.before, after)
                out.remove(old)
                break
    return out


def _route_changes(cfg: InterfaceConfig, live: LiveState, known: dict[Any, Any] | None = None) -> list[Change]:
    want = wanted_routes(cfg, known)
    have = live.routes if live.interface_exists else frozenset()
    changes = [
        Change(Action.CREATE, "route", _net(r), None, {"dev": cfg.interface})
        for r in _nets_sorted(want - have)
    ]
    changes += [
        Change(Action.DELETE, "route", _net(r), {"dev": cfg.interface}, None) for r in _nets_sorted(have - want)
    ]
    return changes


def _nets_sorted(items: Iterable[IPNetwork]) -> list[IPNetwork]:
    return sorted(items, key=lambda n: (n.version, n.network_address, n.prefixlen))
