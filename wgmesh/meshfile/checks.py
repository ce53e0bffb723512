"""Checks across nodes: unique addresses and keys, an ssh host for each node, subnet overlaps, and pairs of nodes
that cannot reach each other. They work on drafts: each node as far as its own fields parsed."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from wgmesh.core.model import Endpoint, IPAddress, IPNetwork, Subnet
from wgmesh.meshfile.diagnostics import Pos, Report
from wgmesh.meshfile.fields import SshFields
from wgmesh.meshfile.schema import MAX_PAIR_WARNINGS, show, suggest

Located = tuple[Any, Pos, str]  # a parsed value, where it is, its field path


@dataclass
class NodeDraft:
    """One node as far as it parsed; None marks a field that was missing or wrong."""

    name: str
    pos: Pos
    addresses: list[tuple[IPAddress, Pos, str]] = field(default_factory=list)
    public_key: str | None = None
    key_pos: Pos = (0, 0)
    endpoint: Endpoint | None = None
    subnets: list[tuple[Subnet, Pos, str]] = field(default_factory=list)
    ssh: SshFields = field(default_factory=SshFields)
    listen_port: int | None = None
    mtu: int | None = None
    post_up: tuple[str, ...] = ()
    post_down: tuple[str, ...] = ()
    decommission: bool = False
    masquerade: bool = False
    port_forward: bool = False
    shared_keys: list[tuple[str, Pos, str]] = field(default_factory=list)  # peers that keep their preshared key
    has_endpoint: bool = False  # an `endpoint:` was given, valid or not
    mapping: bool = True  # the node's value is a mapping at all
    has_ssh_host: bool = False  # an `ssh.host:` was given, valid or not

    @property
    def enrolled(self) -> bool:
        return self.public_key is not None and not self.decommission


def cross_checks(
    report: Report, networks: list[IPNetwork], drafts: list[NodeDraft], relay: tuple[str, Pos] | None = None
) -> None:
    unique_addresses(report, drafts)
    unique_keys(report, drafts)
    ssh_hosts(report, drafts)
    subnet_overlaps(report, networks, drafts)
    relay_node(report, drafts, relay)
    unreachable_pairs(report, drafts)
    shared_keys(report, drafts)
    address_families(report, networks, drafts)


def unique_addresses(report: Report, drafts: list[NodeDraft]) -> None:
    owner: dict[IPAddress, str] = {}
    for d in drafts:
        for addr, p, sub in d.addresses:
            if addr in owner:
                report.error(p, sub, f"{addr} is already the address of {owner[addr]}: pick a free one")
            else:
                owner[addr] = d.name


def unique_keys(report: Report, drafts: list[NodeDraft]) -> None:
    owner: dict[str, str] = {}
    for d in drafts:
        if d.public_key is None:
            continue
        if d.public_key in owner:
            report.error(
                d.key_pos,
                f"nodes.{d.name}.public_key",
                f"the same key as {owner[d.public_key]}: each node needs its own key pair "
                "(generate a new one on this node)",
            )
        else:
            owner[d.public_key] = d.name


def ssh_hosts(report: Report, drafts: list[NodeDraft]) -> None:
    for d in drafts:
        if d.mapping and not d.has_ssh_host and not d.has_endpoint:
            report.error(
                d.pos,
                f"nodes.{d.name}.ssh.host",
                "no ssh host: set `ssh: {host: ...}` (a node without an endpoint needs one)",
            )


def subnet_overlaps(report: Report, networks: list[IPNetwork], drafts: list[NodeDraft]) -> None:
    entries: list[tuple[IPNetwork, Pos, str, str, int]] = []
    for d in drafts:
        for subnet, p, sub in d.subnets:
            net = next((n for n in networks if subnet.prefix.overlaps(n)), None)
            if net is not None:
                report.error(p, sub, f"{subnet.prefix} overlaps the mesh network {net}: pick a prefix outside it")
            else:
                entries.append((subnet.prefix, p, sub, d.name, len(entries)))
    for first, second in overlapping([(e[0], e) for e in entries]):
        a, b = sorted((first, second), key=lambda e: e[4])
        if a[0] == b[0]:
            who = "this node" if a[3] == b[3] else a[3]
            report.error(
                b[1],
                b[2],
                f"{b[0]} is already routed to {who} ({a[2]}): WireGuard would silently move it to one peer; remove one",
            )
        else:
            report.warn(b[1], b[2], f"{b[0]} overlaps {a[0]} of {a[3]} ({a[2]}): the longer prefix wins for its range")


def relay_node(report: Report, drafts: list[NodeDraft], relay: tuple[str, Pos] | None) -> None:
    """`mesh.relay` names a node with an endpoint (core/relay.py). One that is not enrolled or is being
    decommissioned is a warning: the first enrolled node with an endpoint relays meanwhile."""
    if relay is None:
        return
    name, pos = relay
    node = next((d for d in drafts if d.name == name), None)
    if node is None:
        names = [d.name for d in drafts if d.has_endpoint]
        hint = suggest(name, tuple(names)) if names else None
        fix = f'did you mean "{hint}"?' if hint else (
            f"name one with an endpoint: {', '.join(names[:5])}" if names else "no node has an endpoint")
        report.error(pos, "mesh.relay", f"no node named {show(name)}: {fix}")
    elif not node.has_endpoint:
        report.error(pos, "mesh.relay", f"{name} has no endpoint: the relay must be a node the others can dial "
                     "(give it an endpoint, or name a node that has one)")
    elif not node.enrolled:
        why = "is being decommissioned" if node.decommission else "is not enrolled yet"
        fallback = next((d.name for d in drafts if d.enrolled and d.endpoint is not None), None)
        meanwhile = f"{fallback} relays meanwhile" if fallback else "no other node can relay meanwhile"
        report.warn(pos, "mesh.relay", f"{name} {why}: {meanwhile}")


def unreachable_pairs(report: Report, drafts: list[NodeDraft]) -> None:
    """Pairs of nodes without an endpoint go through the relay (core/relay.py): only a mesh where no enrolled
    node has an endpoint leaves them without a way to each other."""
    if any(d.enrolled and d.endpoint is not None for d in drafts):
        return
    behind_nat: list[str] = []
    for d in drafts:
        if not d.enrolled or d.endpoint is not None:
            continue
        if len(behind_nat) == MAX_PAIR_WARNINGS:
            report.warn(
                d.pos,
                f"nodes.{d.name}",
                "more nodes without an endpoint follow; no pair of them can connect "
                "(give one node an endpoint: it relays for the others)",
            )
        elif behind_nat and len(behind_nat) < MAX_PAIR_WARNINGS:
            shown = ", ".join(behind_nat[:3]) + (f" and {len(behind_nat) - 3} more" if len(behind_nat) > 3 else "")
            report.warn(
                d.pos,
                f"nodes.{d.name}",
                f"neither {d.name} nor {shown} has an endpoint: they cannot connect to each other, and no node "
                "has an endpoint to relay through (give one node an endpoint: it relays for the others)",
            )
        behind_nat.append(d.name)


def address_families(report: Report, networks: list[IPNetwork], drafts: list[NodeDraft]) -> None:
    """Warnings for what validates but cannot work: a node without an address of a family the mesh network has
    (its pairs over that family never answer), and a subnet of a family the mesh has no network of (no node has
    a mesh address to reach it from, and `check` cannot probe it). At most MAX_PAIR_WARNINGS, then how many more."""
    families = {n.version for n in networks}
    if not families:
        return
    found: list[tuple[Pos, str, str]] = []
    for d in drafts:
        if not d.enrolled or not d.addresses:
            continue
        mine = {a.version for a, _, _ in d.addresses}
        for version in sorted(families - mine):
            net = next(n for n in networks if n.version == version)
            _, pos, path = d.addresses[0]
            found.append((pos, path, f"the mesh network has IPv{version} ({net}) but {d.name} has no IPv{version} "
                          f"address: its pairs over IPv{version} cannot work; give it one from {net} (a list: "
                          "address: [IPv4, IPv6])"))
    for d in drafts:
        for subnet, pos, path in d.subnets:
            v = subnet.prefix.version
            if v not in families:
                found.append((pos, path, f"{subnet.prefix} is IPv{v} but the mesh network has no IPv{v}: no node has "
                              f"a mesh address to reach it from, and check cannot probe it; add an IPv{v} network to "
                              "mesh.network and an address of it to each node"))
    for pos, path, message in found[:MAX_PAIR_WARNINGS]:
        report.warn(pos, path, message)
    if len(found) > MAX_PAIR_WARNINGS:
        pos, path, _ = found[MAX_PAIR_WARNINGS]
        report.warn(pos, path, f"{len(found) - MAX_PAIR_WARNINGS} more like these (an address family missing on a "
                    "node, or a subnet of a family the mesh has no network of)")


def shared_keys(report: Report, drafts: list[NodeDraft]) -> None:
    """Each `shared_keys` entry names another node."""
    names = tuple(d.name for d in drafts)
    for d in drafts:
        for peer, pos, path in d.shared_keys:
            if peer == d.name:
                report.error(pos, path, "a node has no pair with itself: name another node")
            elif peer not in names:
                hint = suggest(peer, names)
                report.error(pos, path, f"no node named {show(peer)}" + (f': did you mean "{hint}"?' if hint else ""))


def overlapping(items: list[tuple[IPNetwork, Any]]) -> Iterator[tuple[Any, Any]]:
    """Pairs of overlapping prefixes, in O(n log n + pairs): CIDR blocks nest or are disjoint."""
    for version in (4, 6):
        blocks = sorted(
            (
                (start, -end, i, end, tag)
                for i, (net, tag) in enumerate(items)
                if net.version == version
                # the block's first and last address as integers (not the address objects ipaddress would make)
                for start in (int(net.network_address),)
                for end in (start | ((1 << (net.max_prefixlen - net.prefixlen)) - 1),)
            ),
            key=lambda b: b[:3],
        )
        stack: list[tuple[int, Any]] = []
        for start, _, _, end, tag in blocks:
            while stack and stack[-1][0] < start:
                stack.pop()
            for _, outer in stack:
                yield outer, tag
            stack.append((end, tag))
