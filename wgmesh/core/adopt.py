"""`wgmesh import`, the pure part: running nodes -> mesh.yaml entries, and what would still differ."""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from wgmesh.core.changes import Action
from wgmesh.core.model import (
    DEFAULT_LISTEN_PORT,
    KEY_DIR,
    IPInterface,
    IPNetwork,
    Mesh,
    parse_endpoint,
    parse_ssh_target,
)
from wgmesh.core.plan import config_digest, diff_node
from wgmesh.core.render import is_managed_hook, render_node
from wgmesh.core.state import REDACTED, LiveState, WgQuick


class ImportProblem(ValueError):
    """A node cannot be imported; the message names the node and the fix."""


@dataclass(frozen=True)
class Target:
    """`NAME=[USER@]HOST[:PORT]` from the command line."""

    name: str
    host: str
    user: str | None = None
    port: int | None = None


def parse_target(text: str) -> Target:
    name, sep, rest = text.partition("=")
    if not sep or not name or not rest:
        raise ValueError(f"{text!r}: write NAME=[USER@]HOST[:PORT], e.g. aws=root@203.0.113.10")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}", name):
        raise ValueError(f"{text!r}: invalid node name {name!r} (letters, digits, '_', '.', '-')")
    try:
        t = parse_ssh_target(rest)
    except ValueError as e:
        raise ValueError(f"{text!r}: {e}") from None
    return Target(name, t.host, t.user, t.port)


def parse_endpoint_override(text: str) -> tuple[str, str]:
    name, sep, endpoint = text.partition("=")
    if not sep or not name or not endpoint:
        raise ValueError(f"--endpoint {text!r}: write NAME=HOST:PORT, e.g. aws=vpn.example.com:51820")
    try:
        parse_endpoint(endpoint)
    except ValueError as e:
        raise ValueError(f"--endpoint {text!r}: {e}") from None
    return name, endpoint


@dataclass(frozen=True)
class NodeRead:
    target: Target
    live: LiveState
    conf: WgQuick | None


@dataclass(frozen=True)
class Context:
    """What the entries must fit: the mesh (existing or about to be created) and its defaults."""

    interface: str
    networks: tuple[IPNetwork, ...]
    listen_port: int = DEFAULT_LISTEN_PORT
    existing_keys: Mapping[str, str] = field(default_factory=dict)  # public key -> node name
    existing_names: frozenset[str] = frozenset()
    ssh_user: str = "root"
    ssh_port: int = 22


@dataclass(frozen=True)
class Entry:
    name: str
    public_key: str
    fields: dict[str, Any]
    key_file: bool  # IF.key already holds the running key (nothing to move)


def _in_mesh(net: IPNetwork, networks: Sequence[IPNetwork]) -> bool:
    return any(net.version == m.version and net.overlaps(m) for m in networks)  # type: ignore[arg-type]


def _in_networks(a: IPInterface, networks: Sequence[IPNetwork]) -> bool:
    return any(a.version == m.version and a.ip in m for m in networks)


def derive_networks(reads: Mapping[str, NodeRead]) -> tuple[IPNetwork, ...]:
    """The mesh networks the interfaces' address prefixes describe (e.g. 10.0.0.1/24 -> 10.0.0.0/24)."""
    found: set[IPNetwork] = set()
    for r in reads.values():
        for a in r.live.addresses:
            if a.network.prefixlen < a.max_prefixlen:
                found.add(a.network)
    nets = sorted(found, key=lambda n: (n.version, n.network_address, n.prefixlen))
    for i, a in enumerate(nets):
        for b in nets[i + 1 :]:
            if a.version == b.version and a.overlaps(b):
                raise ImportProblem(f"the interfaces use overlapping prefixes {a} and {b}: pass --network CIDR")
    if not nets:
        raise ImportProblem("the interface addresses have no network prefix (/32 or /128): pass --network CIDR")
    return tuple(nets)


def _check(name: str, r: NodeRead, ctx: Context, interface: str) -> None:
    live = r.live
    if not live.interface_exists:
        raise ImportProblem(f"{name}: no interface {interface} on the node (import adopts a running interface)")
    if live.public_key is None:
        raise ImportProblem(f"{name}: interface {interface} has no private key")
    if live.key_file_exists and live.key_file_public_key != live.public_key:
        raise ImportProblem(
            f"{name}: {KEY_DIR}/{interface}.key does not hold the key {interface} runs with ({live.public_key}): "
            "move it away, then import again"
        )
    if live.public_key in ctx.existing_keys:
        raise ImportProblem(f"{name}: its key is already in mesh.yaml as node {ctx.existing_keys[live.public_key]}")
    if name in ctx.existing_names:
        raise ImportProblem(f"{name}: a node of that name is already in mesh.yaml (remove it or pick another name)")


def _common(values: Iterable[str]) -> tuple[str | None, bool]:
    """The most common value and whether there was disagreement."""
    counts = Counter(values)
    if not counts:
        return None, False
    return counts.most_common(1)[0][0], len(counts) > 1


def _sort_nets(items: Iterable[IPNetwork]) -> list[IPNetwork]:
    return sorted(set(items), key=lambda n: (n.version, n.network_address, n.prefixlen))


def _commands(name: str, which: str, commands: Sequence[str], warnings: list[str]) -> list[str]:
    kept = []
    for c in commands:
        if REDACTED in c:
            warnings.append(f"{name}: a {which} command holds key material; it is not imported")
        elif is_managed_hook(c) or "private-key" in c:
            continue  # wgmesh writes these itself (the key loader, forwarding, its own firewall rules)
        else:
            kept.append(c)
    return kept


def check_reads(reads: Mapping[str, NodeRead], ctx: Context) -> dict[str, str]:
    """{name: running public key}; ImportProblem for the first node that cannot be imported. Pure."""
    keys: dict[str, str] = {}
    for name, r in reads.items():
        _check(name, r, ctx, ctx.interface)
        key = r.live.public_key or ""
        if key in keys.values():
            other = next(n for n, k in keys.items() if k == key)
            raise ImportProblem(f"{name} and {other} run the same key: each node needs its own key pair")
        keys[name] = key
    return keys


def build_entries(
    reads: Mapping[str, NodeRead], ctx: Context, endpoints: Mapping[str, str] | None = None
) -> tuple[list[Entry], list[str]]:
    """mesh.yaml entries for the nodes read, in the order given, and warnings. ImportProblem if a node
    cannot be imported. Pure."""
    endpoints = endpoints or {}
    warnings: list[str] = []
    keys = check_reads(reads, ctx)
    known = set(keys.values()) | set(ctx.existing_keys)
    entries = []
    names = {**ctx.existing_keys, **{key: n for n, key in keys.items()}}
    kept_pairs: set[frozenset[str]] = set()
    for name, r in reads.items():
        entries.append(_entry(name, r, reads, keys, ctx, endpoints.get(name), warnings, names, kept_pairs))
        for key, peer in r.live.peers.items():
            if key not in known:
                nets = ", ".join(str(n) for n in _sort_nets(peer.allowed_ips)) or "no AllowedIPs"
                warnings.append(
                    f"{name}: peer {key[:8]}… ({nets}) is neither imported nor in mesh.yaml: "
                    "the next apply removes it from this node (import it too, or add it to mesh.yaml)"
                )
    return entries, warnings


def _entry(
    name: str,
    r: NodeRead,
    reads: Mapping[str, NodeRead],
    keys: Mapping[str, str],
    ctx: Context,
    endpoint_override: str | None,
    warnings: list[str],
    names: Mapping[str, str] | None = None,
    kept_pairs: set[frozenset[str]] | None = None,
) -> Entry:
    """`names`: public key -> node name, of every node imported or in mesh.yaml; `kept_pairs`: the pairs whose
    preshared key an earlier entry keeps already (each pair is written once, on its first node)."""
    names = names if names is not None else {}
    kept_pairs = kept_pairs if kept_pairs is not None else set()
    key = keys[name]
    live = r.live
    addresses = sorted((a for a in live.addresses if _in_networks(a, ctx.networks)), key=_iface_key)
    for a in sorted(live.addresses - set(addresses), key=_iface_key):
        warnings.append(f"{name}: address {a} is outside the mesh network; not imported")
    if not addresses:
        shown = ", ".join(str(a) for a in sorted(live.addresses, key=_iface_key)) or "none"
        nets = ", ".join(str(n) for n in ctx.networks)
        raise ImportProblem(f"{name}: none of the interface's addresses ({shown}) is in the mesh network {nets}")
    fields: dict[str, Any] = {}
    fields["address"] = str(addresses[0].ip) if len(addresses) == 1 else [str(a.ip) for a in addresses]
    fields["public_key"] = key

    others = [o for n, o in reads.items() if n != name]
    endpoint = endpoint_override
    if endpoint is None:
        declared = [p.endpoint for o in others if o.conf for p in o.conf.peers if p.public_key == key and p.endpoint]
        usable = []
        for given in declared:  # one peer's broken Endpoint line does not outvote another's usable one
            try:
                parse_endpoint(given)
                usable.append(given)
            except ValueError as e:
                warnings.append(f"{name}: endpoint {given!r} in a peer's config is not usable ({e}); left out")
        endpoint, split = _common(usable)
        if split:
            warnings.append(f"{name}: its peers' configs give different endpoints; using {endpoint}")
    dialed: int | None = None  # the port the peers dial
    if endpoint is not None:
        try:
            dialed = parse_endpoint(endpoint).port
            fields["endpoint"] = endpoint
        except ValueError as e:
            warnings.append(f"{name}: endpoint {endpoint!r} is not usable ({e}); none imported")

    own = {ipaddress.ip_network(a.ip) for a in addresses}
    views = [frozenset(o.live.peers[key].allowed_ips) for o in others if key in o.live.peers]
    if len(set(views)) > 1:
        warnings.append(f"{name}: its peers route different AllowedIPs to it; importing all of them")
    subnets = []
    for net in _sort_nets(n for v in views for n in v):
        if net in own:
            continue
        if _in_mesh(net, ctx.networks):
            warnings.append(f"{name}: AllowedIPs {net} overlaps the mesh network; not imported as a subnet")
            continue
        subnets.append(str(net))
    if subnets:
        fields["subnets"] = subnets
    listen = _listen_port(name, live.listen_port, r.conf, dialed, fields, warnings)
    if listen is not None and listen != ctx.listen_port:
        fields["listen_port"] = listen
    kept = [p for p in _with_preshared_key(name, r, names, kept_pairs)]
    if kept:
        fields["shared_keys"] = dict.fromkeys(kept, "keep")
        warnings.append(
            f"{name}: a preshared key on its pair{'s' if len(kept) > 1 else ''} with {', '.join(kept)}: kept as it "
            f"is (`shared_keys: {{{', '.join(f'{p}: keep' for p in kept)}}}`); wgmesh never reads or moves the value")
    if r.conf is not None:
        post_up = _commands(name, "PostUp", r.conf.post_up, warnings)  # the node's own (not wgmesh's lines)
        hooks = [h for h in ("PreUp", "PostUp") if h in r.conf.ignored or (h == "PostUp" and post_up)]
        if r.conf.table is not None and hooks:
            raise ImportProblem(
                f"{name}: its {ctx.interface}.conf sets `Table = {r.conf.table}` (wg-quick routes none of its peers' "
                f"AllowedIPs) and has {' and '.join(hooks)} lines, which route instead, presumably. wgmesh's config "
                "lets wg-quick route every peer's AllowedIPs, and a route line kept beside that fails `wg-quick up` "
                f"(\"File exists\") at the next start. On the node, take `Table` and the route lines out of "
                f"{ctx.interface}.conf, then import again"
            )
        if r.conf.mtu is not None:
            fields["mtu"] = r.conf.mtu
        post_down = _commands(name, "PostDown", r.conf.post_down, warnings)
        if post_up:
            fields["post_up"] = post_up
        if post_down:
            fields["post_down"] = post_down
        if r.conf.ignored:
            warnings.append(
                f"{name}: {ctx.interface}.conf sets {', '.join(r.conf.ignored)}: wgmesh does not manage "
                f"{'it' if len(r.conf.ignored) == 1 else 'them'}; the new config leaves "
                f"{'it' if len(r.conf.ignored) == 1 else 'them'} out"
            )
    ssh: dict[str, Any] = {"host": r.target.host}
    if r.target.user and r.target.user != ctx.ssh_user:
        ssh["user"] = r.target.user
    if r.target.port and r.target.port != ctx.ssh_port:
        ssh["port"] = r.target.port
    fields["ssh"] = ssh
    return Entry(name, key, fields, key_file=live.key_file_exists)


def _listen_port(
    name: str, live: int | None, conf: WgQuick | None, dialed: int | None, fields: dict[str, Any], warnings: list[str]
) -> int | None:
    """The port the node should listen on. Where its peers dial another port than it listens on, say what was found
    and choose the consistent fix: a config without ListenPort (WireGuard picked a random port) listens on the port
    the peers dial; an explicit ListenPort that differs is a port forward (`port_forward: true`)."""
    if live is None or dialed is None or dialed == live:
        return live
    if conf is None or conf.listen_port is None:
        warnings.append(
            f"{name}: listens on {live} (its config sets no ListenPort: a random port) while its peers dial "
            f"{dialed}: imported as `listen_port: {dialed}`; the first apply moves it there")
        return dialed
    fields["port_forward"] = True
    warnings.append(
        f"{name}: listens on {live} (ListenPort in its config) while its peers dial {dialed}: imported as a port "
        f"forward (`port_forward: true`); if no router forwards {dialed} to {live}, set `listen_port: {dialed}` "
        "instead")
    return live


def _with_preshared_key(name: str, r: NodeRead, names: Mapping[str, str], kept: set[frozenset[str]]) -> list[str]:
    """The mesh nodes whose pair with `name` has a preshared key on this node and is not kept by an entry yet."""
    out = []
    for key, peer in r.live.peers.items():
        other = names.get(key)
        if peer.has_preshared_key and other is not None and other != name and frozenset((name, other)) not in kept:
            kept.add(frozenset((name, other)))
            out.append(other)
    return sorted(out)


def _iface_key(a: IPInterface) -> tuple[int, Any]:
    return (a.version, a.ip)


def residual(mesh: Mesh, name: str, live: LiveState) -> list[str]:
    """What the first plan would still show for an imported node (once its key is in IF.key and its
    config is wgmesh's): `~ peer gcp (persistent_keepalive)`, `- peer AbCd…`, ... Pure."""
    text = render_node(mesh, name)
    after = dataclasses.replace(
        live,
        key_file_exists=True,
        key_file_public_key=live.public_key,
        config_exists=True,
        config_sha256=config_digest(text),
    )
    plan = diff_node(mesh, mesh.node(name), after)
    if plan.error:
        return [plan.error]
    out = []
    for c in plan.changes:
        what = f"{c.action.symbol} {c.address}"
        if c.action is Action.UPDATE:
            what += " (" + ", ".join(k for k, _, _ in c.changed_attributes()) + ")"
        out.append(what)
    return out
