"""The typed steps of a node's plan: what apply runs on the node, in order. Pure.

The plan is the single source of what changes: `diff_node` decides the steps from the same comparison that
produces the changes people review, and `remote/apply.py` turns each step into one call of a node-side shell
function. Nothing downstream diffs again. Each reconcile step is idempotent on the node (it checks, under the
node lock, whether it is still needed) and records its own undo there.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from wgmesh.core.model import Endpoint, IPInterface, IPNetwork
from wgmesh.core.render import InterfaceConfig, render, syncconf_text, wanted_routes
from wgmesh.core.state import LiveState, wanted_mtu


class StepKind(StrEnum):
    WRITE_CONFIG = "write_config"  # value: the wg-quick config text (no PrivateKey line)
    INTERFACE_UP = "interface_up"  # wg-quick up IF on a node that has no interface yet
    SYNC_PEERS = "sync_peers"  # value: the `wg syncconf` input; its PrivateKey is filled in on the node
    ADD_ADDRESS = "add_address"  # value: an interface address (CIDR)
    DELETE_ADDRESS = "delete_address"
    SET_MTU = "set_mtu"  # value: the MTU
    LINK_UP = "link_up"
    ADD_ROUTE = "add_route"  # value: a prefix routed through the interface
    DELETE_ROUTE = "delete_route"
    CLEAR_KEEPALIVE = "clear_keepalive"  # value: a peer's public key (syncconf keeps a keepalive left out)
    SET_ENDPOINT = "set_endpoint"  # value: `KEY ADDRESS:PORT`: hole punching's learned endpoint (`wg set`)
    CLEAR_PRESHARED_KEY = "clear_preshared_key"  # value: a peer's public key (likewise), unless the pair keeps it
    SAVE_PRESHARED_KEYS = "save_preshared_keys"  # the runtime's preshared keys into IF.psk on the node (never shown)
    SET_FORWARDING = "set_forwarding"  # value: the IP version (4 or 6) to forward, at runtime
    ADD_FORWARD_RULES = "add_forward_rules"  # value: 4 or 6: wgmesh's FORWARD accept rules in and out of IF
    DELETE_FORWARD_RULES = "delete_forward_rules"
    ADD_MASQUERADE = "add_masquerade"  # value: a subnet (IPv4 or IPv6) whose incoming mesh traffic is source-NATed
    DELETE_MASQUERADE = "delete_masquerade"
    RUN_HOOKS = "run_hooks"  # value: JSON {old_down, new_up, new_down, old_up}: the user's changed hooks
    ENABLE_UNIT = "enable_unit"  # systemctl enable wg-quick@IF, where systemd runs
    REMOVE_INTERFACE = "remove_interface"  # decommission: down, disabled, config removed, key kept
    INSTALL_RERESOLVE = "install_reresolve"  # the node re-resolves its peers' endpoint names (scripts/reresolve.sh)
    REMOVE_RERESOLVE = "remove_reresolve"
    # value: a run id: confirm that apply's pending change, before the lock (its revert timer holds it; the
    # controller sends confirm.sh for the run, not a step of apply.sh)
    CONFIRM_PENDING = "confirm_pending"


@dataclass(frozen=True)
class Step:
    kind: StepKind
    value: str = ""

    def __str__(self) -> str:
        if self.kind in (StepKind.WRITE_CONFIG, StepKind.SYNC_PEERS, StepKind.RUN_HOOKS):
            return self.kind.value  # the text itself is shown by the plan, not here
        return f"{self.kind.value} {self.value}".rstrip()


def _sorted(items: Iterable[IPInterface | IPNetwork]) -> list[str]:
    return [str(x) for x in sorted(items, key=lambda x: (x.version, str(x)))]


def create_steps(cfg: InterfaceConfig, mesh_name: str) -> tuple[Step, ...]:
    """A node without the interface: write the config, then wg-quick brings everything up at once."""
    return (Step(StepKind.WRITE_CONFIG, render(cfg, mesh_name)), Step(StepKind.INTERFACE_UP),
            *learned_endpoints(cfg, None), Step(StepKind.ENABLE_UNIT))


def learned_endpoints(cfg: InterfaceConfig, live: LiveState | None) -> list[Step]:
    """Hole punching (core/punch.py): the observed endpoint of each punching peer whose live entry has another
    one, set at runtime (the config file and the syncconf input never carry it)."""
    steps = []
    for p in cfg.peers:
        if p.learned is None:
            continue
        lp = live.peers.get(p.public_key) if live is not None else None
        if lp is None or lp.endpoint != p.learned:
            steps.append(Step(StepKind.SET_ENDPOINT, f"{p.public_key} {p.learned}"))
    return steps


def remove_steps(reresolve: bool = False) -> tuple[Step, ...]:
    """Decommission: the interface goes (its PostDown stops a re-resolution loop); then the re-resolution's script
    and timer, when the node's config had them."""
    return (Step(StepKind.REMOVE_INTERFACE), *([Step(StepKind.REMOVE_RERESOLVE)] if reresolve else []))


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip("[]").split("%", 1)[0])
    except ValueError:
        return None


def sync_endpoint(want: Endpoint, live: str | None, resolved: Mapping[str, tuple[str, ...]]) -> Endpoint | None:
    """The endpoint `wg syncconf` gets for a peer whose endpoint is `want`, on a node whose read resolved names
    into `resolved`: never a name (syncconf would resolve it once more, and a name that does not resolve makes wg
    retry ~72 s and then abort the whole sync). A literal stays; a name becomes the address in use when the name
    still resolves to it (no change), else the node resolver's first address, the one wg and wg-quick take
    (getaddrinfo's order: IPv6 first where the node has IPv6); None when the name did not resolve: the Endpoint
    line is left out and the peer keeps the endpoint it has."""
    if want.is_literal or want.host not in resolved:
        return want  # a literal, or a name the read was not asked about: as written
    addresses = [a for a in map(_address, resolved[want.host]) if a is not None]  # the resolver's order
    current = live.rpartition(":") if live else None
    in_use = _address(current[0]) if current is not None and current[2] == str(want.port) else None
    if in_use is not None and in_use in addresses:
        return Endpoint(str(in_use), want.port)
    return Endpoint(str(addresses[0]), want.port) if addresses else None


def sync_config(cfg: InterfaceConfig, live: LiveState) -> InterfaceConfig:
    """`cfg` with every endpoint name replaced for `wg syncconf` (see sync_endpoint)."""
    peers = []
    for p in cfg.peers:
        if p.endpoint is not None and not p.endpoint.is_literal:
            lp = live.peers.get(p.public_key)
            p = dataclasses.replace(p, endpoint=sync_endpoint(p.endpoint, lp.endpoint if lp else None, live.resolved))
        peers.append(p)
    return dataclasses.replace(cfg, peers=tuple(peers))


def update_steps(cfg: InterfaceConfig, live: LiveState, mesh_name: str) -> tuple[Step, ...]:
    """A node whose interface runs: write the config, sync the peers (sessions of unchanged peers stay), then
    reconcile what syncconf does not touch, each difference one step. The config file keeps endpoint names (wg-quick
    resolves them at boot); the syncconf input has the addresses the node resolved them to (`sync_config`)."""
    steps = [Step(StepKind.WRITE_CONFIG, render(cfg, mesh_name)),
             Step(StepKind.SYNC_PEERS, syncconf_text(sync_config(cfg, live))), *learned_endpoints(cfg, live)]
    want_addrs = set(cfg.addresses)
    adding, deleting = want_addrs - live.addresses, live.addresses - want_addrs
    # the same IPv6 address with a new prefix length: the kernel refuses a second one ("address already
    # assigned"), so the old one goes first; anything else is added before the old one goes (the node keeps an
    # address of each family throughout, and with it its routes)
    first = {a for a in deleting if a.version == 6 and any(n.ip == a.ip for n in adding)}
    steps += [Step(StepKind.DELETE_ADDRESS, a) for a in _sorted(first)]
    steps += [Step(StepKind.ADD_ADDRESS, a) for a in _sorted(adding)]
    steps += [Step(StepKind.DELETE_ADDRESS, a) for a in _sorted(deleting - first)]
    mtu = wanted_mtu(cfg.mtu, live)  # mtu unset in mesh.yaml: wg-quick's own choice (F11)
    if mtu is not None and mtu != live.mtu:
        steps.append(Step(StepKind.SET_MTU, str(int(mtu))))
    if not live.link_up:
        steps.append(Step(StepKind.LINK_UP))
    want_routes = wanted_routes(cfg)
    steps += [Step(StepKind.ADD_ROUTE, r) for r in _sorted(want_routes - live.routes)]
    steps += [Step(StepKind.DELETE_ROUTE, r) for r in _sorted(live.routes - want_routes)]
    for p in cfg.peers:
        lp = live.peers.get(p.public_key)
        if lp is None:
            continue
        if p.persistent_keepalive == 0 and lp.persistent_keepalive:
            steps.append(Step(StepKind.CLEAR_KEEPALIVE, p.public_key))
        if lp.has_preshared_key and not p.keep_preshared_key:
            steps.append(Step(StepKind.CLEAR_PRESHARED_KEY, p.public_key))
    if cfg.kept_preshared_keys:  # the kept ones, into the node's own file for the next `wg-quick up`
        steps.append(Step(StepKind.SAVE_PRESHARED_KEYS))
    return tuple(steps)
