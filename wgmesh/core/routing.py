"""What a node needs beyond WireGuard itself, compared with what it has: forwarding and wgmesh's firewall rules
for the subnets it routes, the user's hooks, and the unit that brings the interface back at boot. Pure.

Each difference is a change people review and the step apply runs for it (see core/steps.py). The rendered
config carries the same forwarding and rules as PostUp lines, so `wg-quick up` at boot restores them; the
steps here put a running node in that state without a restart.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from wgmesh.core import nodeos
from wgmesh.core.changes import Action, Change, Value
from wgmesh.core.hooks import RULE_TOOL
from wgmesh.core.render import RERESOLVE_SCRIPT, InterfaceConfig, user_hooks
from wgmesh.core.state import LiveState
from wgmesh.core.steps import Step, StepKind

_VERSION_NAME = {4: "ipv4", 6: "ipv6"}


@dataclass
class Extra:
    changes: list[Change] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    error: str | None = None
    after_up: list[Step] = field(default_factory=list)  # steps a new interface needs after `wg-quick up` too


def forwarding(cfg: InterfaceConfig, live: LiveState, out: Extra) -> None:
    """Forwarding on for each IP version the node routes subnets of, or relays (never turned off by wgmesh)."""
    for v in cfg.forwarding:
        if live.forwarding.get(v) is False:
            out.changes.append(Change(Action.UPDATE, "forwarding", _VERSION_NAME[v], {"enabled": False},
                                      {"enabled": True}))
            out.steps.append(Step(StepKind.SET_FORWARDING, str(v)))


def firewall(cfg: InterfaceConfig, live: LiveState, out: Extra) -> None:
    """wgmesh's FORWARD accept rules (per IP version the node routes subnets of, or relays: iptables for IPv4,
    ip6tables for IPv6) and MASQUERADE rules (per subnet, with the tool of its version)."""
    want_masq = set(cfg.masquerade)
    have = {4: live.has_iptables, 6: live.has_ip6tables}
    for v in (4, 6):
        masq_v = any(n.version == v for n in want_masq)
        if (v in cfg.forwarding or masq_v) and have[v] is False:
            if cfg.relays_for and not masq_v:
                why = "relays " + ("IPv6 traffic " if v == 6 else "") + "for the nodes without an endpoint"
            else:
                why = "routes " + ("IPv6 " if v == 6 else "") + "subnets"
            tool = RULE_TOOL[v]
            out.error = (f"{tool} is not installed, and this node {why}: wgmesh needs it for the FORWARD accept "
                         f"rules and masquerade; install it ({nodeos.install_hint(tool, live.os_family)})")
            return
        # a listing that failed on the node: which of wgmesh's rules are there is not known (a plan would add
        # them again, and apply put in a second pair; or, where they are no longer wanted, leave them in place)
        for table, needed in (("filter", v in cfg.forwarding), ("nat", masq_v)):
            why_failed = live.rules_failed.get((v, table))
            if why_failed is not None and (needed or _had_rules(live, RULE_TOOL[v], table, cfg.interface)):
                listing = "-S FORWARD" if table == "filter" else "-t nat -S POSTROUTING"
                out.error = (f"`{RULE_TOOL[v]} {listing}` fails on this node ({why_failed or 'no reason given'}), "
                             f"so wgmesh cannot tell which of its rules are there; fix {RULE_TOOL[v]} on the node "
                             f"(an iptables-nft and iptables-legacy mix?), then plan again")
                return
        if v in cfg.forwarding and v in live.legacy_tables:
            out.notes.append(f"{RULE_TOOL[v]} says iptables-legacy tables are present too: their rules (a FORWARD "
                             f"policy DROP included) apply besides wgmesh's accept rules, which are iptables-nft's; "
                             f"see them with {RULE_TOOL[v]}-legacy -S")
    iface = cfg.interface
    for v, present in ((4, live.forward_rules), (6, live.forward_rules6)):
        name = f"forward {iface}" if v == 4 else f"forward {iface} ipv6"
        stray = v in live.stray_forward_rules  # one of the two: added back when wanted, else deleted
        if v in cfg.forwarding and not present:
            out.changes.append(Change(Action.CREATE, "firewall", name, None, {"accept": f"in and out of {iface}"}))
            out.steps.append(Step(StepKind.ADD_FORWARD_RULES, str(v)))
        elif (present or stray) and v not in cfg.forwarding:
            old = f"in and out of {iface}" if present else f"one way of {iface} (the other rule is gone)"
            out.changes.append(Change(Action.DELETE, "firewall", name, {"accept": old}, None))
            out.steps.append(Step(StepKind.DELETE_FORWARD_RULES, str(v)))
    for n in sorted(want_masq - live.masquerade, key=lambda n: (n.version, str(n))):
        out.changes.append(Change(Action.CREATE, "masquerade", str(n), None, {"source_nat": "to this node"}))
        out.steps.append(Step(StepKind.ADD_MASQUERADE, str(n)))
    for n in sorted(live.masquerade - want_masq, key=lambda n: (n.version, str(n))):
        out.changes.append(Change(Action.DELETE, "masquerade", str(n), {"source_nat": "to this node"}, None))
        out.steps.append(Step(StepKind.DELETE_MASQUERADE, str(n)))


def _had_rules(live: LiveState, tool: str, table: str, interface: str) -> bool:
    """Whether the node's config file adds wgmesh's rules of that tool and table (its PostUp lines): rules that
    may be in place, to be deleted."""
    chain = "FORWARD" if table == "filter" else "POSTROUTING"
    return any(tool in line.split() and chain in line and ("wgmesh:%i" in line or f"wgmesh:{interface}" in line)
               for line in (live.config_text or "").splitlines() if line.lstrip().lower().startswith("postup"))


def hooks(cfg: InterfaceConfig, live: LiveState, out: Extra) -> None:
    """On a running interface, a changed set of the user's hooks runs the old PostDown lines, then the new PostUp
    lines: what a restart would run, without the restart. (The config diff shows the lines themselves.)"""
    old_up, old_down = user_hooks(live.config_text or "")
    if live.config_text is None or (old_up, old_down) == (cfg.post_up, cfg.post_down):
        return
    value = {"old_down": old_down, "new_up": cfg.post_up, "new_down": cfg.post_down, "old_up": old_up}
    out.steps.append(Step(StepKind.RUN_HOOKS, json.dumps(value)))


def unit(cfg: InterfaceConfig, live: LiveState, out: Extra) -> None:
    """wg-quick@IF enabled where systemd runs; where it does not, say what comes back at boot."""
    name = f"wg-quick@{cfg.interface}"
    if live.wg_quick_unit_enabled is False:
        out.changes.append(Change(Action.UPDATE, "unit", name, {"enabled": False}, {"enabled": True}))
        out.steps.append(Step(StepKind.ENABLE_UNIT))
    elif live.wg_quick_unit_enabled is None:
        out.notes.append(
            f"no systemd: nothing enables {name}; at boot, run `wg-quick up {cfg.interface}` (the interface, "
            f"its routes, forwarding and wgmesh's rules come back with it, from the config's PostUp lines)")


RERESOLVE_EVERY = 30  # seconds between two passes of the node's re-resolution
RERESOLVE_STALE = 135  # a peer whose latest handshake is older is re-resolved (wireguard-tools' reresolve-dns)


def reresolve(cfg: InterfaceConfig, live: LiveState, out: Extra) -> None:
    """A node whose peers have endpoint names re-resolves them by itself (remote/scripts/reresolve.sh): wgmesh
    installs it when the node's config first gets the line that starts it, and removes it with the last name.

    What the node has is taken from its config file (the script and its timer are installed with that line) and
    from the read of the script itself (`live.reresolve`): a script that is missing, from another wgmesh version,
    or whose timer or loop does not run is drift, installed and started again."""
    have = live.config_text is not None and RERESOLVE_SCRIPT in live.config_text
    attrs: dict[str, Value] = {"every": f"{RERESOLVE_EVERY}s", "peers_stale_after": f"{RERESOLVE_STALE}s",
                               "script": RERESOLVE_SCRIPT.replace("%i", cfg.interface)}
    if cfg.reresolve and not have:
        out.changes.append(Change(Action.CREATE, "reresolve", cfg.interface, None, attrs))
        step = Step(StepKind.INSTALL_RERESOLVE)
        out.steps.append(step)
        out.after_up.append(step)
    elif cfg.reresolve and live.reresolve in ("absent", "outdated", "stopped"):
        out.changes.append(Change(Action.UPDATE, "reresolve", cfg.interface, {**attrs, "state": live.reresolve},
                                  {**attrs, "state": "running"}))
        out.steps.append(Step(StepKind.INSTALL_RERESOLVE))
    elif have and not cfg.reresolve:
        out.changes.append(Change(Action.DELETE, "reresolve", cfg.interface,
                                  {"script": RERESOLVE_SCRIPT.replace("%i", cfg.interface)}, None))
        out.steps.append(Step(StepKind.REMOVE_RERESOLVE))


def running_node(cfg: InterfaceConfig, live: LiveState) -> Extra:
    """Everything beyond WireGuard for a node whose interface runs."""
    out = Extra()
    forwarding(cfg, live, out)
    firewall(cfg, live, out)
    hooks(cfg, live, out)
    unit(cfg, live, out)
    reresolve(cfg, live, out)
    return out
