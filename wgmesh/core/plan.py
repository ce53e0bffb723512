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
from typing import Any

from wgmesh.core import routing
from wgmesh.core.changes import Action, Change, Value
from wgmesh.core.model import IPNetwork, Mesh, Node
from wgmesh.core.nodeos import preflight_error
from wgmesh.core.peers import _ifaces, _peer_attrs, _peer_changes, _route_changes, unresolved, unresolved_warnings
from wgmesh.core.plankey import plan_key_notes
from wgmesh.core.punch import NONE, Punching, punching
from wgmesh.core.relay import relay_notes
from wgmesh.core.render import (
    RERESOLVE_SCRIPT,
    InterfaceConfig,
    PeerEntries,
    desired,
    render,
    wanted_routes,
)
from wgmesh.core.state import LiveState, wanted_mtu
from wgmesh.core.steps import Step, StepKind, create_steps, remove_steps, update_steps


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


def config_digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


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


@dataclass(frozen=True)
class MeshIndex:
    """What the diff of every node needs of the whole mesh, made once per plan rather than once per node (a
    plan of N nodes would otherwise do N² work before comparing anything)."""

    names: dict[str, str]  # public key -> node name
    hosts: dict[IPNetwork, str]  # each node's host prefixes (its /32 and /128) -> its name
    entries: PeerEntries  # the peer entries of the desired configs (core/render.py)
    known: dict[Any, Any] = field(default_factory=dict)  # facts of those entries (_wanted_ips, _same_set)


def mesh_index(mesh: Mesh, punch: Punching = NONE) -> MeshIndex:
    """`punch`: the paths of the pairs of nodes without an endpoint, from the live state of the whole mesh
    (`punching`); without it every such pair is on the relay."""
    return MeshIndex(
        names={n.public_key: n.name for n in mesh.nodes if n.public_key},
        hosts={ipaddress.ip_network(a): n.name for n in mesh.nodes for a in n.addresses},
        entries=PeerEntries(mesh, punch),
    )


def plan_index(mesh: Mesh, results: Mapping[str, LiveState | str]) -> MeshIndex:
    """The index of a plan made from `results` (every planned node's state, or why it could not be read): the
    same for the plan and for the apply of it (verification included)."""
    return mesh_index(mesh, punching(mesh, results))


PENDING_BEFORE = {"confirmation": "awaited: the node undoes this apply by itself unless it is confirmed"}
PENDING_AFTER = {"confirmation": "confirmed"}


def route_conflict(cfg: InterfaceConfig, live: LiveState) -> str | None:
    """A route the mesh wants through the interface that the node has through another device already, at the same
    or a lower metric (its own LAN, another mesh, one added by hand): `ip route add` refuses it ("File exists") or
    it goes unused, and `wg-quick up` fails on it at boot. wgmesh replaces no route it did not make."""
    for prefix in sorted(wanted_routes(cfg) - live.routes, key=lambda n: (n.version, n)):
        other = live.other_routes.get(prefix)
        if other is not None and other[1] <= (0 if prefix.version == 4 else 1024):
            return (f"the node routes {prefix} already ({other[0]}), so a route through {cfg.interface} would fail "
                    "or go unused; apply refuses this node. Delete that route on the node; if the node is on that "
                    f"network itself, the mesh cannot route {prefix} to it as well: take {prefix} out of mesh.yaml's "
                    "subnets")
    return None


def _key_file_error(mesh: Mesh, node: Node, live: LiveState) -> str:
    """A key file that is gone or holds no key. When the interface still runs with the key mesh.yaml names, the
    fix is to write that key back: `wgmesh enroll` would make a new one, which every peer switches to."""
    path = mesh.key_path()
    what = f"no key file {path} on the node" if not live.key_file_exists else \
        f"{path} on the node does not hold a WireGuard private key"
    if live.public_key is not None and live.public_key == node.public_key:
        return (f"{what}, but {mesh.interface} runs with the key mesh.yaml names: write it back as root on the node "
                f"(`umask 077; wg show {mesh.interface} private-key > {path}`); "
                f"`{mesh.command('enroll ' + node.name)}` would "
                "make a new key instead, which every peer switches to at the next apply")
    fix = f"run `{mesh.command('enroll ' + node.name)}`" if not live.key_file_exists else \
        f"move it away and run `{mesh.command('enroll ' + node.name)}`"
    return f"{what}; restore it from a backup, or {fix} (a new key: every peer switches to it at the next apply)"


def diff_node(
    mesh: Mesh, node: Node, live: LiveState, fingerprint: str | None = None, index: MeshIndex | None = None
) -> NodePlan:
    """The plan for one node that was read successfully. `index`: `mesh_index(mesh)`, shared by the nodes of a
    plan (made here when not given).

    An apply whose change still awaits its confirmation (its controller stopped in between) is a change of its
    own, first: the state read is what the node keeps only if that apply is confirmed, so apply confirms it
    before anything else (or it would be undone under the plan's feet); plan made from it says so."""
    if live.settling_runs:  # what it reads now may be undone in a moment: no plan from it
        return NodePlan(node.name, fingerprint=fingerprint, error=(
            f"the node is settling apply {', '.join(live.settling_runs)} right now (confirming it, or undoing it "
            "because its confirmation came too late): run wgmesh plan again in a few seconds"))
    if live.busy_runs:  # half-way through another controller's steps: what it reads is neither before nor after
        return NodePlan(node.name, fingerprint=fingerprint, error=(
            f"another wgmesh apply (run {', '.join(live.busy_runs)}) is changing this node right now: run wgmesh "
            "plan again when it has ended"))
    plan = _diff_node(mesh, node, live, fingerprint, index)
    if not live.pending_runs or plan.error:
        return plan
    pending = tuple(Change(Action.UPDATE, "pending", f"apply {run}", PENDING_BEFORE, PENDING_AFTER)
                    for run in live.pending_runs)
    return replace(plan, changes=(*pending, *plan.changes),
                   steps=(*(Step(StepKind.CONFIRM_PENDING, run) for run in live.pending_runs), *plan.steps))


def _diff_node(
    mesh: Mesh, node: Node, live: LiveState, fingerprint: str | None = None, index: MeshIndex | None = None
) -> NodePlan:
    preflight = preflight_error(live.missing, live.os_family, live.unsafe_dirs)
    if preflight:  # the node lacks a tool wgmesh needs there: nothing changes on it
        if not node.decommission and node.public_key is not None:  # and the firewall's tool, if it lacks that too
            tools = routing.Extra()
            routing.firewall(desired(mesh, node.name), live, tools)
            preflight += f"; {tools.error}" if tools.error else ""
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
        note = f"not enrolled: no public_key in mesh.yaml; run `{mesh.command('enroll ' + node.name)}`"
        return NodePlan(node.name, (), notes=(note,), fingerprint=fingerprint)
    if not live.key_file_exists or live.key_file_public_key is None:
        return NodePlan(node.name, error=_key_file_error(mesh, node, live), fingerprint=fingerprint)
    if live.key_file_public_key != node.public_key:
        return NodePlan(
            node.name,
            error=(
                f"the key in {mesh.key_path()} on the node has public key {live.key_file_public_key}, "
                f"but mesh.yaml says {node.public_key}; apply refuses this node. Run "
                f"`{mesh.command('enroll ' + node.name)}` to record the node's key, or fix public_key in mesh.yaml"
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
    taken = route_conflict(cfg, live)
    if taken:
        return NodePlan(node.name, error=taken, fingerprint=fingerprint)
    config_diff = _config_diff(live.config_text, text)

    if not live.interface_exists:
        names = sorted({p.endpoint.host for p in cfg.peers if p.endpoint is not None and unresolved(p.endpoint, live)})
        if names:  # wg-quick up would wait ~72 s on the name, fail, and delete the interface again
            return NodePlan(node.name, fingerprint=fingerprint, error=(
                f"{', '.join(names)} does not resolve on the node, and `wg-quick up {iface}` would wait about "
                "72 s for it, then fail and bring no tunnel up; apply refuses to bring the interface up until it "
                "resolves: fix the name in mesh.yaml (or give the address)"))
        changes = [Change(Action.CREATE, "interface", iface, None, after)]
        changes += [Change(Action.CREATE, "peer", p.name, None, _peer_attrs(p)) for p in cfg.peers]
        changes += _route_changes(cfg, live, index.known)
        changes += extra.changes  # forwarding, rules, unit: wg-quick up does them (PostUp), shown for review
        return NodePlan(node.name, tuple(changes), fingerprint=fingerprint, creates_interface=True,
                        steps=(*create_steps(cfg, mesh.name), *extra.after_up), config_diff=config_diff,
                        notes=(*relay_notes(mesh, node, _direct(cfg)), *extra.notes))  # (no systemd: say so)

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
    changes += _peer_changes(cfg, live, index.names, index.hosts, index.known)
    changes += _route_changes(cfg, live, index.known)
    changes += extra.changes
    steps = (*update_steps(cfg, live, mesh.name), *extra.steps) if changes else ()
    notes = (*relay_notes(mesh, node, _direct(cfg)), *extra.notes)
    return NodePlan(node.name, tuple(changes), fingerprint=fingerprint, steps=steps,
                    notes=notes if changes else (), config_diff=config_diff if changes else ())


def _direct(cfg: InterfaceConfig) -> list[str]:
    return [p.name for p in cfg.peers if p.path == "direct"]


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
    punch = punching(mesh, results)
    # a node whose config depends on what the whole mesh's state says (hole punching) is diffed again here
    redo = {name for pair in punch.paths for name in pair}
    for node in mesh.nodes:
        if node.name not in results:
            continue
        got = results[node.name]
        fp = (fingerprints or {}).get(node.name)
        if isinstance(got, str):
            nodes.append(NodePlan(node.name, error=got))
        elif planned is not None and node.name in planned and node.name not in redo:
            nodes.append(planned[node.name])
        else:
            index = index or mesh_index(mesh, punch)
            nodes.append(diff_node(mesh, node, got, fp, index))
    key_notes = plan_key_notes({name: got for name, got in results.items() if not isinstance(got, str)})
    nodes = [replace(n, notes=(*n.notes, key_notes[n.node])) if n.node in key_notes and not n.error else n
             for n in nodes]
    return Plan(tuple(nodes), (*warnings, *unresolved_warnings(mesh, results), *punch.notes()))


_HELD_BY_PEERS = {"public_key": "public key", "addresses": "address", "listen_port": "listen port"}


def outside_targets(mesh: Mesh, plan: Plan, targeted: Iterable[str]) -> tuple[str, ...]:
    """Warnings for a targeted plan (`--target`) that changes what the nodes left out hold of a targeted node:
    its public key, addresses or listen port. Those nodes keep the old values and lose the node until they are
    applied too (what `wgmesh rotate NODE` followed by `apply -t NODE` did, silently)."""
    chosen = set(targeted)
    others = [n.name for n in mesh.nodes if n.name not in chosen and not n.decommission]
    if not others:
        return ()
    out = []
    for node in plan.nodes:
        held = [label for c in node.changes if c.kind == "interface" and c.action is Action.UPDATE
                for attr, label in _HELD_BY_PEERS.items() if (c.before or {}).get(attr) != (c.after or {}).get(attr)]
        if held:
            what = " and ".join(dict.fromkeys(held))
            out.append(f"--target: {node.node}'s {what} change{'' if len(held) > 1 else 's'}, and the nodes outside "
                       f"--target ({', '.join(others)}) keep the old one: they lose {node.node} until they are "
                       "applied too (wgmesh apply without --target)")
        # and the other way: a targeted node takes up a left-out node's new key, address or port, which that node
        # may not run until it is applied (`rotate aws`, then `apply -t azure`)
        for c in node.changes:
            if c.kind != "peer" or c.name in chosen or c.name not in others or c.before is None or c.after is None:
                continue
            moved = _taken_up(c, mesh.node(c.name))
            if moved:
                out.append(f"--target: {node.node}'s entry for {c.name} takes up {c.name}'s new {' and '.join(moved)}; "
                           f"if {c.name} (outside --target) does not run it yet, the pair stops working until "
                           f"{c.name} is applied too (wgmesh apply without --target)")
    return tuple(out)


def _taken_up(c: Change, peer: Node) -> list[str]:
    """What a peer entry's change takes up of the peer's mesh.yaml that the peer itself must run too: its public
    key, a mesh address the entry did not have, the port of its declared endpoint."""
    before, after = c.before or {}, c.after or {}
    moved = []
    if before.get("public_key") != after.get("public_key"):
        moved.append("public key")
    had = before.get("allowed_ips")
    had = {str(v) for v in had} if isinstance(had, list | tuple) else set()
    if {str(ipaddress.ip_network(a)) for a in peer.addresses} - had:
        moved.append("address")
    old, new = before.get("endpoint"), after.get("endpoint")
    if peer.endpoint is not None and peer.endpoint.is_literal and isinstance(old, str) and isinstance(new, str) \
            and old.rpartition(":")[2] != new.rpartition(":")[2]:
        moved.append("listen port")
    return moved


NOT_STARTED = "not applied: the apply was interrupted (Ctrl-C) before it started this node"  # a FAILED result


class Outcome(StrEnum):
    CHANGED = "changed"
    UNCHANGED = "unchanged"
    FAILED = "failed"


@dataclass(frozen=True)
class NodeResult:
    node: str
    outcome: Outcome
    message: str = ""
