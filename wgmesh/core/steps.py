"""The typed steps of a node's plan: what apply runs on the node, in order. Pure.

The plan is the single source of what changes: `diff_node` decides the steps from the same comparison that
produces the changes people review, and `remote/apply.py` turns each step into one call of a node-side shell
function. Nothing downstream diffs again. Each reconcile step is idempotent on the node (it checks, under the
node lock, whether it is still needed) and records its own undo there.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from wgmesh.core.model import IPInterface, IPNetwork
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
    CLEAR_PRESHARED_KEY = "clear_preshared_key"  # value: a peer's public key (likewise)
    SET_FORWARDING = "set_forwarding"  # value: the IP version (4 or 6) to forward, at runtime
    ADD_FORWARD_RULES = "add_forward_rules"  # wgmesh's FORWARD accept rules in and out of IF (iptables)
    DELETE_FORWARD_RULES = "delete_forward_rules"
    ADD_MASQUERADE = "add_masquerade"  # value: a subnet whose incoming mesh traffic is source-NATed
    DELETE_MASQUERADE = "delete_masquerade"
    RUN_HOOKS = "run_hooks"  # value: JSON {old_down, new_up, new_down, old_up}: the user's changed hooks
    ENABLE_UNIT = "enable_unit"  # systemctl enable wg-quick@IF, where systemd runs
    REMOVE_INTERFACE = "remove_interface"  # decommission: down, disabled, config removed, key kept


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
            Step(StepKind.ENABLE_UNIT))


def remove_steps() -> tuple[Step, ...]:
    return (Step(StepKind.REMOVE_INTERFACE),)


def update_steps(cfg: InterfaceConfig, live: LiveState, mesh_name: str) -> tuple[Step, ...]:
    """A node whose interface runs: write the config, sync the peers (sessions of unchanged peers stay), then
    reconcile what syncconf does not touch, each difference one step."""
    steps = [Step(StepKind.WRITE_CONFIG, render(cfg, mesh_name)), Step(StepKind.SYNC_PEERS, syncconf_text(cfg))]
    want_addrs = set(cfg.addresses)
    steps += [Step(StepKind.ADD_ADDRESS, a) for a in _sorted(want_addrs - live.addresses)]
    steps += [Step(StepKind.DELETE_ADDRESS, a) for a in _sorted(live.addresses - want_addrs)]
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
        if lp.has_preshared_key:
            steps.append(Step(StepKind.CLEAR_PRESHARED_KEY, p.public_key))
    return tuple(steps)
