"""Desired config + live state -> a list of typed changes. Pure: no I/O.

Resources on a node, as Terraform would name them:
- `interface IF`: addresses, listen_port, mtu, public_key, fwmark, up, config_file
- `peer NAME`:    public_key, allowed_ips, endpoint, persistent_keepalive, preshared_key
- `route PREFIX`: a route through the interface for an AllowedIPs prefix that the interface's own
                  addresses do not already cover (what wg-quick adds at `up` and syncconf never touches)

Comparison is normalized (canonical CIDRs, sets instead of lists) and never reports what is not state:
handshakes and counters, the roamed endpoint of a peer without a declared endpoint, or an endpoint given
as a name that the node resolved to the address it is using.
"""

from __future__ import annotations

import difflib
import hashlib
import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from functools import lru_cache

from wgmesh.core import routing
from wgmesh.core.changes import Action, Change, Value
from wgmesh.core.model import Endpoint, IPInterface, IPNetwork, Mesh, Node
from wgmesh.core.nodeos import preflight_error
from wgmesh.core.plankey import plan_key_notes
from wgmesh.core.relay import relay_notes
from wgmesh.core.render import (
    RERESOLVE_SCRIPT,
    InterfaceConfig,
    PeerConfig,
    PeerEntries,
    desired,
    render,
    resolve_hosts,
    wanted_routes,
)
from wgmesh.core.state import LivePeer, LiveState, wanted_mtu
from wgmesh.core.steps import Step, create_steps, remove_steps, update_steps


@dataclass(frozen=True)
class NodePlan:
    node: str
    changes: tuple[Change, ...] = ()
    error: str | None = None
    notes: tuple[str, ...] = ()
    fingerprint: str | None = None  # of the live state the plan was made from
    creates_interface: bool = False
    removes_interface: bool = False
    steps: tuple[Step, ...] = ()  # what apply runs, in order (empty when there is nothing to change)
    config_diff: tuple[str, ...] = ()  # the node's IF.conf against the new one (unified diff lines), for review

    @property
    def has_changes(self) -> bool:
        return bool(self.changes)

    def counts(self) -> tuple[int, int, int]:
        """(to add, to change, to destroy), as Terraform counts them: a replacement adds and destroys."""
        add = sum(1 for c in self.changes if c.action in (Action.CREATE, Action.REPLACE))
        change = sum(1 for c in self.changes if c.action is Action.UPDATE)
        destroy = sum(1 for c in self.changes if c.action in (Action.DELETE, Action.REPLACE))
        return add, change, destroy


@dataclass(frozen=True)
class Plan:
    nodes: tuple[NodePlan, ...]
    warnings: tuple[str, ...] = field(default=())

    @property
    def errors(self) -> list[NodePlan]:
        return [n for n in self.nodes if n.error]

    @property
    def has_changes(self) -> bool:
        return any(n.has_changes for n in self.nodes)

    def counts(self) -> tuple[int, int, int]:
        per_node = [n.counts() for n in self.nodes]
        return (sum(c[0] for c in per_node), sum(c[1] for c in per_node), sum(c[2] for c in per_node))


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


def config_digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _split_endpoint(text: str) -> tuple[str, int] | None:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        return None
    return host.strip("[]"), int(port)


def endpoint_matches(want: Endpoint | None, live: str | None, resolved: Mapping[str, frozenset[str]]) -> bool:
    """Does the live endpoint satisfy the declared one?

    No declared endpoint: anything goes (the peer is behind NAT and roams). A declared IP literal must match
    exactly; a declared name matches any address the node resolves that name to.
    """
    if want is None:
        return True
    if live is None:
        return False
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
    addresses = {ip for ip in map(_ip, resolved.get(want.host, frozenset())) if ip is not None}
    mapped = live_ip.ipv4_mapped if isinstance(live_ip, ipaddress.IPv6Address) else None
    return live_ip in addresses or (mapped is not None and mapped in addresses)


def _interface_attrs(cfg: InterfaceConfig, public_key: str | None, digest: str) -> dict[str, Value]:
    attrs: dict[str, Value] = {
        "public_key": public_key,
        "addresses": _ifaces(cfg.addresses),
        "listen_port": cfg.listen_port,
    }
    if cfg.mtu is not None:
        attrs["mtu"] = cfg.mtu
    attrs["config_file"] = f"sha256:{digest[:12]}"
    return attrs


def _peer_attrs(p: PeerConfig) -> dict[str, Value]:
    attrs: dict[str, Value] = {
        "public_key": p.public_key,
        "allowed_ips": _nets(p.allowed_ips),
        "endpoint": str(p.endpoint) if p.endpoint else None,
        "persistent_keepalive": p.persistent_keepalive,
    }
    if p.relayed:
        attrs["relays"] = list(p.relayed)  # the nodes reached through this peer (core/relay.py)
    return attrs


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
    for node in mesh.nodes:
        live = results.get(node.name)
        if not isinstance(live, LiveState) or node.decommission or node.public_key is None:
            continue
        for host in resolve_hosts(mesh, node):
            if host in live.resolved and not live.resolved[host]:
                peers = [n.name for n in mesh.nodes if n.endpoint is not None and n.endpoint.host == host]
                out.append(f"{node.name}: {host} (the endpoint of {', '.join(peers)}) does not resolve on the node: "
                           f"the peer keeps the endpoint it has; apply leaves it out of wg syncconf, and the node's "
                           f"re-resolution tries again every 30 s")
    return out


def _same_peer(p: PeerConfig, lp: LivePeer, live: LiveState, hosts: Mapping[IPNetwork, str]) -> bool:
    """The live peer is as wanted, in every attribute `_peer_changes` shows (the common case: a quick yes)."""
    return (
        not p.relayed
        and (not lp.has_preshared_key or p.keep_preshared_key)
        and lp.persistent_keepalive == p.persistent_keepalive
        and lp.allowed_ips == frozenset(p.allowed_ips)
        and endpoint_matches(p.endpoint, lp.endpoint, live.resolved)
        and not _relayed_live(lp, p.name, hosts)
    )


def _peer_changes(
    cfg: InterfaceConfig, live: LiveState, names: Mapping[str, str], hosts: Mapping[IPNetwork, str] | None = None
) -> list[Change]:
    """`hosts`: each node's host prefixes (its /32 and /128) -> its name, to say whom a peer relays."""
    changes: list[Change] = []
    want = {p.public_key: p for p in cfg.peers}
    for key, p in want.items():
        lp = live.peers.get(key)
        if lp is not None and _same_peer(p, lp, live, hosts or {}):
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
        shown_after = dict(after)
        # wgmesh sets no preshared key: a live one is cleared, unless the pair keeps it (`shared_keys`)
        shown_after["preshared_key"] = before["preshared_key"] if p.keep_preshared_key else None
        if endpoint_matches(p.endpoint, lp.endpoint, live.resolved):
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
    changes: list[Change], cfg: InterfaceConfig, resolved: Mapping[str, frozenset[str]]
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


def _route_changes(cfg: InterfaceConfig, live: LiveState) -> list[Change]:
    want = wanted_routes(cfg)
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


@dataclass(frozen=True)
class MeshIndex:
    """What the diff of every node needs of the whole mesh, made once per plan rather than once per node (a
    plan of N nodes would otherwise do N² work before comparing anything)."""

    names: dict[str, str]  # public key -> node name
    hosts: dict[IPNetwork, str]  # each node's host prefixes (its /32 and /128) -> its name
    entries: PeerEntries  # the peer entries of the desired configs (core/render.py)


def mesh_index(mesh: Mesh) -> MeshIndex:
    return MeshIndex(
        names={n.public_key: n.name for n in mesh.nodes if n.public_key},
        hosts={ipaddress.ip_network(a): n.name for n in mesh.nodes for a in n.addresses},
        entries=PeerEntries(mesh),
    )


def diff_node(
    mesh: Mesh, node: Node, live: LiveState, fingerprint: str | None = None, index: MeshIndex | None = None
) -> NodePlan:
    """The plan for one node that was read successfully. `index`: `mesh_index(mesh)`, shared by the nodes of a
    plan (made here when not given)."""
    preflight = preflight_error(live.missing, live.os_family)
    if preflight:  # the node lacks a tool wgmesh needs there: nothing changes on it
        return NodePlan(node.name, error=preflight, fingerprint=fingerprint)
    iface = mesh.interface

    if node.decommission:
        changes: list[Change] = []
        if live.interface_exists or live.config_exists:
            before: dict[str, Value] = {"public_key": live.public_key, "addresses": _ifaces(live.addresses)}
            changes.append(Change(Action.DELETE, "interface", iface, before, None))
        note = (
            "decommission: interface brought down and disabled, config removed, key kept"
            if changes
            else "decommissioned: nothing runs; remove the node from mesh.yaml when you are done with it"
        )
        return NodePlan(node.name, tuple(changes), fingerprint=fingerprint, removes_interface=bool(changes),
                        notes=(note,),
                        steps=remove_steps(RERESOLVE_SCRIPT in (live.config_text or "")) if changes else ())

    if node.public_key is None:
        note = f"not enrolled: no public_key in mesh.yaml; run `wgmesh enroll {node.name}`"
        return NodePlan(node.name, (), notes=(note,), fingerprint=fingerprint)
    if not live.key_file_exists:
        return NodePlan(
            node.name,
            error=f"no key file {mesh.key_path()} on the node; run `wgmesh enroll {node.name}`",
            fingerprint=fingerprint,
        )
    if live.key_file_public_key != node.public_key:
        return NodePlan(
            node.name,
            error=(
                f"the key in {mesh.key_path()} on the node has public key {live.key_file_public_key}, "
                f"but mesh.yaml says {node.public_key}; apply refuses this node. Run `wgmesh enroll "
                f"{node.name}` to record the node's key, or fix public_key in mesh.yaml"
            ),
            fingerprint=fingerprint,
        )

    index = index or mesh_index(mesh)
    cfg = desired(mesh, node.name, index.entries)
    text = render(cfg, mesh.name, index.entries)
    digest = config_digest(text)
    after = _interface_attrs(cfg, node.public_key, digest)
    extra = routing.running_node(cfg, live)
    if extra.error:
        return NodePlan(node.name, error=extra.error, fingerprint=fingerprint)
    config_diff = _config_diff(live.config_text, text)

    if not live.interface_exists:
        changes = [Change(Action.CREATE, "interface", iface, None, after)]
        changes += [Change(Action.CREATE, "peer", p.name, None, _peer_attrs(p)) for p in cfg.peers]
        changes += _route_changes(cfg, live)
        changes += extra.changes  # forwarding, rules, unit: wg-quick up does them (PostUp), shown for review
        return NodePlan(node.name, tuple(changes), fingerprint=fingerprint, creates_interface=True,
                        steps=(*create_steps(cfg, mesh.name), *extra.after_up), config_diff=config_diff,
                        notes=tuple(relay_notes(mesh, node)))

    before: dict[str, Value] = {
        "public_key": live.public_key,
        "addresses": _ifaces(live.addresses),
        "listen_port": live.listen_port,
    }
    if cfg.mtu is not None:
        before["mtu"] = live.mtu
    elif (auto := wanted_mtu(None, live)) is not None and auto != live.mtu:
        # no mtu in mesh.yaml: the interface should have what wg-quick gives it at boot (F11)
        before["mtu"] = live.mtu
        after = {**after, "mtu": auto}
    before["config_file"] = f"sha256:{live.config_sha256[:12]}" if live.config_sha256 else None
    if live.fwmark:
        before["fwmark"] = hex(live.fwmark)
        after = {**after, "fwmark": None}
    if not live.link_up:
        before["up"] = False
        after = {**after, "up": True}

    changes = []
    if before != after:
        changes.append(Change(Action.UPDATE, "interface", iface, before, after))
    changes += _peer_changes(cfg, live, index.names, index.hosts)
    changes += _route_changes(cfg, live)
    changes += extra.changes
    steps = (*update_steps(cfg, live, mesh.name), *extra.steps) if changes else ()
    notes = (*relay_notes(mesh, node), *extra.notes)
    return NodePlan(node.name, tuple(changes), fingerprint=fingerprint, steps=steps,
                    notes=notes if changes else (), config_diff=config_diff if changes else ())


def _config_diff(old: str | None, new: str) -> tuple[str, ...]:
    """The node's IF.conf against the new one, line by line (`-`/`+`, one line of context), for review."""
    if old is None or old == new:
        return ()
    lines = difflib.unified_diff(old.splitlines(), new.splitlines(), lineterm="", n=1)
    return tuple(line for line in lines if not line.startswith(("---", "+++")))


def build_plan(
    mesh: Mesh,
    results: Mapping[str, LiveState | str],
    fingerprints: Mapping[str, str] | None = None,
    warnings: Iterable[str] = (),
    planned: Mapping[str, NodePlan] | None = None,
) -> Plan:
    """`results` maps each planned node to its live state or to the reason it could not be read. `planned`: the
    plans of nodes already diffed (`diff_node` with this mesh, each as its state arrived), used as they are."""
    nodes: list[NodePlan] = []
    index: MeshIndex | None = None
    for node in mesh.nodes:
        if node.name not in results:
            continue
        got = results[node.name]
        fp = (fingerprints or {}).get(node.name)
        if isinstance(got, str):
            nodes.append(NodePlan(node.name, error=got))
        elif planned is not None and node.name in planned:
            nodes.append(planned[node.name])
        else:
            index = index or mesh_index(mesh)
            nodes.append(diff_node(mesh, node, got, fp, index))
    key_notes = plan_key_notes({name: got for name, got in results.items() if not isinstance(got, str)})
    nodes = [replace(n, notes=(*n.notes, key_notes[n.node])) if n.node in key_notes and not n.error else n
             for n in nodes]
    return Plan(tuple(nodes), (*warnings, *unresolved_warnings(mesh, results)))


class Outcome(StrEnum):
    CHANGED = "changed"
    UNCHANGED = "unchanged"
    FAILED = "failed"


@dataclass(frozen=True)
class NodeResult:
    node: str
    outcome: Outcome
    message: str = ""
