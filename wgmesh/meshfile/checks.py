"""Checks across nodes: unique addresses and keys, an ssh host for each node, subnet overlaps, and pairs of nodes
that cannot reach each other. They work on drafts: each node as far as its own fields parsed."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from wgmesh.core.model import Endpoint, IPAddress, IPNetwork, Subnet
from wgmesh.meshfile.diagnostics import Pos, Report
from wgmesh.meshfile.fields import SshFields
from wgmesh.meshfile.schema import MAX_PAIR_WARNINGS

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
    has_endpoint: bool = False  # an `endpoint:` was given, valid or not
    mapping: bool = True  # the node's value is a mapping at all
    has_ssh_host: bool = False  # an `ssh.host:` was given, valid or not

    @property
    def enrolled(self) -> bool:
        return self.public_key is not None and not self.decommission


def cross_checks(report: Report, networks: list[IPNetwork], drafts: list[NodeDraft]) -> None:
    unique_addresses(report, drafts)
    unique_keys(report, drafts)
    ssh_hosts(report, drafts)
    subnet_overlaps(report, networks, drafts)
    unreachable_pairs(report, drafts)


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


def unreachable_pairs(report: Report, drafts: list[NodeDraft]) -> None:
    behind_nat: list[str] = []
    for d in drafts:
        if not d.enrolled or d.endpoint is not None:
            continue
        if len(behind_nat) == MAX_PAIR_WARNINGS:
            report.warn(
                d.pos,
                f"nodes.{d.name}",
                "more nodes without an endpoint follow; no pair of them can connect "
                "(give one of each pair an endpoint; relays are not supported yet)",
            )
        elif behind_nat and len(behind_nat) < MAX_PAIR_WARNINGS:
            shown = ", ".join(behind_nat[:3]) + (f" and {len(behind_nat) - 3} more" if len(behind_nat) > 3 else "")
            report.warn(
                d.pos,
                f"nodes.{d.name}",
                f"neither {d.name} nor {shown} has an endpoint: they cannot connect to each other "
                "(give one of each pair an endpoint; relays are not supported yet)",
            )
        behind_nat.append(d.name)


def overlapping(items: list[tuple[IPNetwork, Any]]) -> Iterator[tuple[Any, Any]]:
    """Pairs of overlapping prefixes, in O(n log n + pairs): CIDR blocks nest or are disjoint."""
    for version in (4, 6):
        blocks = sorted(
            (
                (int(net.network_address), -int(net.broadcast_address), i, int(net.broadcast_address), tag)
                for i, (net, tag) in enumerate(items)
                if net.version == version
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
