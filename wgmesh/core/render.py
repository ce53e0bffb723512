"""Mesh -> each node's desired WireGuard config, and its wg-quick text. Pure: no I/O.

The rendered file never holds a private key: wg-quick loads it on the node from
/etc/wireguard/<interface>.key through the first PostUp line. It never sets SaveConfig.
"""

from __future__ import annotations

import operator
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from functools import lru_cache
from typing import Any

from wgmesh.core.hooks import (  # noqa: F401  (re-exported: other modules import them from render)
    KEY_POST_UP,
    MANAGED_MARK,
    RERESOLVE_SCRIPT,
    RULE_COMMENT,
    is_managed_hook,
    psk_hooks,
    reresolve_hooks,
    routing_hooks,
    user_hooks,
)
from wgmesh.core.model import Endpoint, IPInterface, IPNetwork, Mesh, Node
from wgmesh.core.punch import NONE, PUNCH_KEEPALIVE, PairPath, Punching
from wgmesh.core.relay import Relaying, relaying

# A node whose peers have endpoint names re-resolves them (remote/scripts/reresolve.sh, installed by apply): a
# systemd timer where systemd runs; elsewhere a loop that the config's PostUp starts and PostDown stops (both
# lines do nothing while the script is not installed, so `wg-quick up` never fails over it).


@dataclass(frozen=True)
class PeerConfig:
    """One [Peer] of a node's config: the peer's key, what is routed to it, where to dial it, and how."""

    name: str
    public_key: str
    allowed_ips: tuple[IPNetwork, ...]
    endpoint: Endpoint | None
    persistent_keepalive: int  # 0 = off
    relayed: tuple[str, ...] = ()  # nodes reached through this peer, the relay (their addresses are in allowed_ips)
    keep_preshared_key: bool = False  # the pair keeps the preshared key it has (`shared_keys: {PEER: keep}`)
    # both nodes have no endpoint (core/punch.py): "punch" (no addresses yet: the relay carries them) or "direct";
    # None for every other entry
    path: str | None = None
    learned: str | None = None  # punch: the endpoint the public nodes see the peer at, set at runtime (`wg set`)
    via: str | None = None  # punch and direct: the relay the pair uses when it is not direct


@dataclass(frozen=True)
class InterfaceConfig:
    """A node's desired wg-quick config: [Interface] (without the private key), its hooks' inputs, and its peers."""

    node: str
    interface: str
    addresses: tuple[IPInterface, ...]
    listen_port: int
    mtu: int | None
    post_up: tuple[str, ...]
    post_down: tuple[str, ...]
    peers: tuple[PeerConfig, ...]
    forwarding: tuple[int, ...] = ()  # IP versions this node forwards (it routes subnets of them)
    masquerade: tuple[IPNetwork, ...] = ()  # subnets whose incoming mesh traffic it source-NATs
    relays_for: tuple[str, ...] = ()  # this node is the relay: the nodes without an endpoint it forwards between
    reresolve: bool = False  # some peer's endpoint is a name: the node re-resolves it (RERESOLVE_SCRIPT)
    kept_preshared_keys: tuple[str, ...] = ()  # public keys of the peers whose pair keeps its preshared key

    @property
    def key_post_up(self) -> str:
        """The PostUp that loads the node's private key from its key file (always first)."""
        return KEY_POST_UP

    @property
    def all_post_up(self) -> tuple[str, ...]:
        return (KEY_POST_UP, *psk_hooks(self)[0], *routing_hooks(self)[0], *reresolve_hooks(self)[0], *self.post_up)

    @property
    def all_post_down(self) -> tuple[str, ...]:
        return (*self.post_down, *routing_hooks(self)[1], *reresolve_hooks(self)[1])

    @property
    def all_pre_down(self) -> tuple[str, ...]:
        """wgmesh's PreDown lines: the kept preshared keys saved while the interface still exists."""
        return psk_hooks(self)[1]


def _peer(this: Node, peer: Node, via: tuple[Node, ...] = ()) -> PeerConfig:
    """`this` node's entry for `peer`; `via`: the nodes `this` reaches through `peer`, the relay."""
    assert peer.public_key is not None
    keepalive = this.persistent_keepalive if this.endpoint is None and peer.endpoint is not None else 0
    allowed = peer.allowed_ips + tuple(ip for n in via for ip in n.allowed_ips)
    return PeerConfig(peer.name, peer.public_key, allowed, peer.endpoint, keepalive, tuple(n.name for n in via),
                      keeps_shared_key(this, peer))


def _nat_peer(this: Node, peer: Node, path: PairPath, punch: Punching) -> PeerConfig:
    """`this` node's own entry for `peer`, both without an endpoint, on a pair that punches or is direct."""
    assert peer.public_key is not None
    keepalive = this.persistent_keepalive or PUNCH_KEEPALIVE
    direct = path is PairPath.DIRECT
    return PeerConfig(peer.name, peer.public_key, peer.allowed_ips if direct else (), None, keepalive, (),
                      keeps_shared_key(this, peer), path.value, None if direct else punch.learned(peer.name),
                      punch.relay)


def keeps_shared_key(a: Node, b: Node) -> bool:
    """The pair a-b keeps its preshared key: either node says so (`shared_keys: {OTHER: keep}`)."""
    return b.name in a.keep_shared_keys or a.name in b.keep_shared_keys


class _MeshFacts:
    """What `_interface` asks of the whole mesh for every node, worked out once per mesh (render_all and plan
    ask for every node: N walks over N nodes otherwise)."""

    def __init__(self, mesh: Mesh) -> None:
        # enrolled nodes whose endpoint is a name
        self.named = {id(n) for n in mesh.nodes if n.endpoint is not None and not n.endpoint.is_literal and n.enrolled}
        self.order = {n.name: i for i, n in enumerate(mesh.nodes)}
        self.nodes = mesh.nodes
        self.named_by: dict[str, set[str]] = {}  # node -> the nodes whose shared_keys name it
        for n in mesh.nodes:
            for other in n.keep_shared_keys:
                self.named_by.setdefault(other, set()).add(n.name)

    def names_elsewhere(self, node: Node) -> bool:
        """Some other enrolled node has an endpoint name."""
        return len(self.named) > (id(node) in self.named)

    def kept_keys(self, node: Node) -> tuple[str, ...]:
        """The public keys of the enrolled peers whose pair with `node` keeps its preshared key, in file order."""
        pair = set(node.keep_shared_keys) | self.named_by.get(node.name, set())
        if not pair:
            return ()
        found = sorted(self.order[name] for name in pair if name in self.order)
        return tuple(n.public_key for n in (self.nodes[i] for i in found)
                     if n.enrolled and n is not node and n.public_key and keeps_shared_key(node, n))


_FACTS: dict[int, tuple[Mesh, _MeshFacts]] = {}  # the last meshes asked about (a few: kept small)


def _facts(mesh: Mesh) -> _MeshFacts:
    got = _FACTS.get(id(mesh))
    if got is not None and got[0] is mesh:
        return got[1]
    facts = _MeshFacts(mesh)
    if len(_FACTS) >= 8:
        _FACTS.clear()
    _FACTS[id(mesh)] = (mesh, facts)
    return facts


def _find(mesh: Mesh, name: str) -> Node:
    try:
        return mesh.node(name)
    except KeyError:
        names = mesh.node_names
        shown = ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")
        raise KeyError(f"no node named {name!r} in {mesh.path} (nodes: {shown or 'none'})") from None


def _interface(mesh: Mesh, node: Node, peers: tuple[PeerConfig, ...], relay: Relaying | None = None) -> InterfaceConfig:
    relay = relay or relaying(mesh)
    relays_for = tuple(n.name for n in relay.nat) if relay.active and relay.relay is node else ()
    # a relay forwards the traffic of the nodes it relays for (their addresses and subnets), as a node forwards
    # for its own subnets
    versions = {s.prefix.version for s in node.subnets}
    if relays_for:
        versions |= {ip.version for n in relay.nat for ip in n.allowed_ips}
    facts = _facts(mesh)
    names = facts.names_elsewhere(node)
    kept = facts.kept_keys(node)
    return InterfaceConfig(
        node=node.name,
        interface=mesh.interface,
        addresses=mesh.interface_addresses(node),
        listen_port=node.listen_port,
        mtu=node.mtu,
        post_up=node.post_up,
        post_down=node.post_down,
        peers=peers,
        forwarding=tuple(sorted(versions)),
        masquerade=node.masqueraded,
        relays_for=relays_for,
        reresolve=names,
        kept_preshared_keys=kept,
    )


class PeerEntries:
    """The mesh-wide part of `desired`, done once for a whole mesh: the relay, and each node's peer entry, built
    once per keepalive variant and shared by every node that has it (plan calls `desired` for every node: N peer
    entries built once, not N² of them, each re-parsing its addresses)."""

    def __init__(self, mesh: Mesh, punch: Punching = NONE) -> None:
        self.mesh = mesh
        self.relay = relaying(mesh)
        self.punch = punch  # the paths of the pairs of nodes without an endpoint, from live state (plan)
        self._made: dict[tuple[str, int], PeerConfig] = {}
        self._stanzas: dict[int, tuple[PeerConfig, str]] = {}  # id of an entry made here -> it, its stanza

    def entry(self, this: Node, peer: Node, via: tuple[Node, ...] = ()) -> PeerConfig:
        """`_peer(this, peer, via)`, shared: without `via` it depends on `peer` and the keepalive only."""
        if via or keeps_shared_key(this, peer):  # entries only this node has
            return _peer(this, peer, via)
        keepalive = this.persistent_keepalive if this.endpoint is None and peer.endpoint is not None else 0
        made = self._made.get((peer.name, keepalive))
        if made is None:  # (threads may race here: the first entry stored wins, the same for everyone)
            made = _peer(this, peer)
            self._stanzas.setdefault(id(made), (made, peer_stanza(made)))
            made = self._made.setdefault((peer.name, keepalive), made)
        return made

    def stanza(self, peer: PeerConfig) -> str:
        """`peer_stanza(peer)`, written once for an entry made here."""
        known = self._stanzas.get(id(peer))
        return known[1] if known is not None and known[0] is peer else peer_stanza(peer)


def desired(mesh: Mesh, name: str, entries: PeerEntries | None = None) -> InterfaceConfig:
    """The config node `name` should run. Works for any node, enrolled or not; peers are the other
    enrolled nodes in file order. KeyError for an unknown name. `entries` (for the same mesh): the mesh-wide part,
    shared when the configs of many nodes are wanted.

    A node without an endpoint reaches the other nodes without one through the relay (core/relay.py): they get
    no peer entry of their own, their addresses and subnets ride on the relay's; unless the plan found their pair
    punching or direct (core/punch.py, in `entries`): then the other gets an entry of its own, with its addresses
    when the pair is direct."""
    node = _find(mesh, name)
    relay = entries.relay if entries is not None else relaying(mesh)
    punch = entries.punch if entries is not None else NONE
    entry = entries.entry if entries is not None else _peer
    via = relay.through_relay(node)
    nat = {n.name for n in via}
    paths = {n.name: punch.path(node.name, n.name) for n in via} if punch else {}
    if paths:
        via = tuple(n for n in via if paths[n.name] is not PairPath.DIRECT)
    peers: list[PeerConfig] = []
    for p in mesh.nodes:
        if not p.enrolled or p is node:
            continue
        path = paths.get(p.name)
        if path is not None and path is not PairPath.RELAY:
            peers.append(_nat_peer(node, p, path, punch))
        elif p.name in nat:
            continue  # on the relay's entry
        else:
            peers.append(entry(node, p, via if relay.relay is p else ()))
    return _interface(mesh, node, tuple(peers), relay)


def header(mesh_name: str, node: str) -> str:
    what = f"mesh {mesh_name}, node {node}" if mesh_name else f"node {node}"
    return f"# Managed by wgmesh ({what}). Local edits are overwritten by wgmesh apply.\n"


def interface_section(cfg: InterfaceConfig) -> str:
    lines = ["[Interface]"]
    if cfg.addresses:
        lines.append("Address = " + ", ".join(str(a) for a in cfg.addresses))
    lines.append(f"ListenPort = {cfg.listen_port}\n")
    key = _rest_of(cfg)
    rest = _REST.get(key)
    if rest is None:
        if len(_REST) >= 256:
            _REST.clear()
        rest = _REST[key] = _interface_rest(cfg)
    return "\n".join(lines) + rest


# The rest of [Interface] (relay, MTU and hook lines) by what it may be made of: every field of InterfaceConfig
# but the node's name, addresses, port and peers. render --all has a few kinds of node: each its lines once.
_REST: dict[tuple[object, ...], str] = {}
_rest_of = operator.attrgetter(*(f.name for f in fields(InterfaceConfig)
                                 if f.name not in ("node", "addresses", "listen_port", "peers")))


def _interface_rest(cfg: InterfaceConfig) -> str:
    lines = []
    if cfg.relays_for:
        lines.append(f"# relay for {', '.join(cfg.relays_for)}: forwards between them")
    if cfg.mtu is not None:
        lines.append(f"MTU = {cfg.mtu}")
    lines.extend(f"PostUp = {c}" for c in cfg.all_post_up)
    lines.extend(f"PreDown = {c}" for c in cfg.all_pre_down)
    lines.extend(f"PostDown = {c}" for c in cfg.all_post_down)
    return "".join(f"{line}\n" for line in lines)


def peer_stanza(peer: PeerConfig, allowed_text: str | None = None, relayed_text: str | None = None) -> str:
    """One peer: a blank line, `# name` (and `# other: via relay name` for each node reached through it), then
    [Peer] and its fields. `allowed_text`, `relayed_text`: its AllowedIPs and its `via relay` lines already
    written out (the same prefixes and nodes, in order)."""
    via = relayed_text if relayed_text is not None else "".join(f"# {n}: via relay {peer.name}\n" for n in peer.relayed)
    if peer.path == PairPath.PUNCH.value:
        via += f"# hole punching: its addresses ride on relay {peer.via} until a direct handshake\n"
    elif peer.path == PairPath.DIRECT.value:
        via += "# direct: hole punched (no endpoint in the file: the tunnel learns it)\n"
    text = f"\n# {peer.name}\n{via}[Peer]\nPublicKey = {peer.public_key}\n"
    if peer.allowed_ips or peer.path is None:
        if allowed_text is None:
            allowed_text = ", ".join(str(n) for n in peer.allowed_ips)
        text += f"AllowedIPs = {allowed_text}\n"
    if peer.endpoint is not None:
        text += f"Endpoint = {peer.endpoint}\n"
    if peer.persistent_keepalive > 0:
        text += f"PersistentKeepalive = {peer.persistent_keepalive}\n"
    return text


def render(cfg: InterfaceConfig, mesh_name: str = "", entries: PeerEntries | None = None) -> str:
    """wg-quick text for `cfg`: header comment, [Interface] (no PrivateKey), one [Peer] per peer. `entries`: the
    `PeerEntries` that made cfg's peers (their stanzas are then written once for all nodes)."""
    stanza = entries.stanza if entries is not None else peer_stanza
    return header(mesh_name, cfg.node) + interface_section(cfg) + "".join(stanza(p) for p in cfg.peers)


def render_node(mesh: Mesh, name: str) -> str:
    return render(desired(mesh, name), mesh.name)


def render_all(mesh: Mesh) -> Iterator[tuple[str, str]]:
    """(name, text) for every node that is not decommissioned, identical to render_node() for each."""
    for name, pieces in render_all_pieces(mesh):
        yield name, b"".join(pieces).decode()


def render_all_pieces(mesh: Mesh) -> Iterator[tuple[str, list[bytes | memoryview]]]:
    """(name, pieces) for every node that is not decommissioned: its file's UTF-8 bytes in pieces, whose
    concatenation is render_node()'s text, encoded.

    Fast for big meshes: each enrolled node's stanza is built and encoded once in both variants (with and
    without keepalive), each variant's stanzas joined once into one bytes object, and every file's pieces are
    views of it: a node's peer list is the mesh-wide list minus its own stanza (the views before and after it),
    nothing rendered, encoded or copied per file (a writer hands the views to `os.writev`). A node without an
    endpoint, when there is a relay, gets the stanzas of the nodes with one, the relay's built for it.
    """
    enrolled = [n for n in mesh.nodes if n.enrolled]
    relay = relaying(mesh)
    keepalive = mesh.persistent_keepalive
    ka_line = f"PersistentKeepalive = {keepalive}\n" if keepalive > 0 else ""
    plain: list[bytes] = []
    nat: list[bytes] = []  # the stanzas as a node behind NAT sees them
    for n in enrolled:
        base = PeerConfig(n.name, n.public_key or "", n.allowed_ips, n.endpoint, 0)
        text = peer_stanza(base)
        plain.append(text.encode())
        nat.append((text + ka_line).encode() if n.endpoint is not None else plain[-1])
    index = {n.name: i for i, n in enumerate(enrolled)}
    plain_all, nat_all = _Joined(plain), _Joined(nat)
    before = after = b""  # relayed: the stanzas of the nodes with an endpoint before and after the relay's
    if relay.relay is not None:
        public = [(n, nat[i]) for i, n in enumerate(enrolled) if n.endpoint is not None]
        r = next(i for i, (n, _) in enumerate(public) if n is relay.relay)
        before, after = b"".join(t for _, t in public[:r]), b"".join(t for _, t in public[r + 1:])
        # A relayed node's entry for the relay carries every other relayed node's prefixes and a `via relay` line
        # for each: each written out once, and each node's entry takes all of them but its own
        relay_text = ", ".join(str(ip) for ip in relay.relay.allowed_ips)
        ips_text = _AllBut([", ".join(str(ip) for ip in n.allowed_ips) for n in relay.nat], ", ")
        via_lines = _AllBut([f"# {n.name}: via relay {relay.relay.name}\n" for n in relay.nat], "")
        nat_index = {n.name: i for i, n in enumerate(relay.nat)}
    for node in mesh.nodes:
        if node.decommission:
            continue
        head = (header(mesh.name, node.name) + interface_section(_interface(mesh, node, (), relay))).encode()
        if node.endpoint is not None:
            yield node.name, plain_all.without(head, index.get(node.name))
        elif node.persistent_keepalive != keepalive:  # a node keepalive unlike the mesh's (not from mesh.yaml)
            yield node.name, [render_node(mesh, node.name).encode()]
        elif relay.relay is not None:
            assert relay.relay.public_key is not None
            r_peer = _peer(node, relay.relay, relay.through_relay(node))
            k = nat_index.get(node.name)  # (None: a node not enrolled yet, which reaches every relayed node)
            others, via = (ips_text.joined, via_lines.joined) if k is None else (ips_text.but(k), via_lines.but(k))
            text = ", ".join(t for t in (relay_text, others) if t)
            yield node.name, [head, before, peer_stanza(r_peer, text, via).encode(), after]
        else:
            yield node.name, nat_all.without(head, index.get(node.name))


class _AllBut:
    """Texts joined once with `sep`, and where each starts: `but(i)` is the join of all but text i, made from at
    most two slices (a relayed node's entry for the relay names every other relayed node: N-1 of N, N times)."""

    def __init__(self, texts: list[str], sep: str) -> None:
        self.joined = sep.join(texts)
        self.sep = sep
        self.starts = [0]
        for t in texts:
            self.starts.append(self.starts[-1] + len(t) + len(sep))

    def but(self, i: int) -> str:
        start, end = self.starts[i], self.starts[i + 1]  # text i and the separator after it
        if end > len(self.joined):  # the last text: the separator before it goes instead
            return self.joined[: max(start - len(self.sep), 0)]
        return self.joined[:start] + self.joined[end:]


class _Joined:
    """Stanzas joined once, and where each starts: any file's peers are at most two views of the one copy."""

    def __init__(self, stanzas: list[bytes]) -> None:
        self.blob = memoryview(b"".join(stanzas))
        self.starts = [0]
        for t in stanzas:
            self.starts.append(self.starts[-1] + len(t))

    def without(self, head: bytes, i: int | None) -> list[bytes | memoryview]:
        """A node's file: its head, then every enrolled node's stanza but its own (i)."""
        if i is None:
            return [head, self.blob]
        return [head, self.blob[: self.starts[i]], self.blob[self.starts[i + 1] :]]


def syncconf_text(cfg: InterfaceConfig) -> str:
    """The `wg syncconf` input without its PrivateKey line: the node inserts it after the first line, from its
    own key file. ListenPort is always set and FwMark is explicit, because syncconf zeroes what is left out."""
    lines = ["[Interface]", f"ListenPort = {cfg.listen_port}", "FwMark = off"]
    for p in cfg.peers:
        lines += ["", "[Peer]", f"PublicKey = {p.public_key}"]
        if p.allowed_ips or p.path is None:  # left out: syncconf replaces them with none
            lines.append("AllowedIPs = " + ", ".join(str(n) for n in p.allowed_ips))
        if p.endpoint is not None:
            lines.append(f"Endpoint = {p.endpoint}")
        if p.persistent_keepalive:
            lines.append(f"PersistentKeepalive = {p.persistent_keepalive}")
    return "\n".join(lines) + "\n"


def resolve_hosts(mesh: Mesh, node: Node) -> list[str]:
    """Endpoint names of the node's peers, which the node resolves so the plan can compare addresses."""
    return endpoint_names(mesh)(node)


def endpoint_names(mesh: Mesh) -> Callable[[Node], list[str]]:
    """`resolve_hosts(mesh, node)` for any node of `mesh`, the mesh scanned once (a plan asks for every node)."""
    owners = [(n.name, n.endpoint.host) for n in mesh.nodes if n.endpoint and not n.endpoint.is_literal]
    count = Counter(host for _, host in owners)
    everyone = sorted(count)
    own = dict(owners)

    def names(node: Node) -> list[str]:
        mine = own.get(node.name)
        if mine is None or count[mine] > 1:  # no name of its own, or another node has the same one
            return list(everyone)
        return [h for h in everyone if h != mine]

    return names


def wanted_routes(cfg: InterfaceConfig, known: dict[Any, Any] | None = None) -> frozenset[IPNetwork]:
    """AllowedIPs prefixes that need a route through the interface: those the interface's own
    addresses (connected routes) do not cover. This is what wg-quick adds at `up`. `known` (a plan's
    MeshIndex.known): each shared peer entry's prefixes to route, worked out once for every node with the same
    connected networks (prefixes hash and compare in Python: once per entry, not once per node and entry)."""
    connected = tuple(a.network for a in cfg.addresses)
    out: set[IPNetwork] = set()
    if known is None:
        for peer in cfg.peers:
            out.update(p for p in peer.allowed_ips if not _covered(p, connected))
        return frozenset(out)
    same = known.setdefault(("connected", connected), connected)  # one object per distinct networks
    for peer in cfg.peers:
        key = (id(peer), id(same))
        got = known.get(key)
        if got is None or got[0] is not peer:
            got = (peer, tuple(p for p in peer.allowed_ips if not _covered(p, connected)))
            known[key] = got  # holds the entry: its id stays its own for the plan's life
        if got[1]:
            out.update(got[1])
    return frozenset(out)


@lru_cache(maxsize=1 << 16)
def _covered(prefix: IPNetwork, connected: tuple[IPNetwork, ...]) -> bool:
    """Whether one of the interface's connected networks covers `prefix` (the same answer for every node with
    the same networks: remembered, since plan asks it for every peer of every node)."""
    return any(prefix.version == c.version and prefix.subnet_of(c) for c in connected)  # type: ignore[arg-type]
