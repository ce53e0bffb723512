"""`wgmesh node add|remove`: read mesh.yaml, make the comment-keeping edit, validate it, write it atomically,
and return the lines to print."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wgmesh.core.addresses import free_addresses
from wgmesh.core.model import Mesh, command_line
from wgmesh.meshfile import (
    EditError,
    add_node_text,
    editing,
    load,
    read_text,
    remove_node_text,
    validated,
    write_text,
)


@dataclass(frozen=True)
class NodeSpec:
    """What `wgmesh node add` was given. Values are checked by validating the edited file."""

    name: str
    addresses: tuple[str, ...] = ()
    endpoint: str | None = None
    ssh_host: str | None = None
    ssh_user: str | None = None
    ssh_port: int | None = None
    subnets: tuple[str, ...] = ()
    listen_port: int | None = None


def node_fields(spec: NodeSpec, addresses: Sequence[str]) -> dict[str, Any]:
    """The mesh.yaml fields of a new node, in the order people write them."""
    fields: dict[str, Any] = {"address": addresses[0] if len(addresses) == 1 else list(addresses)}
    if spec.endpoint:
        fields["endpoint"] = spec.endpoint
    if spec.subnets:
        fields["subnets"] = list(spec.subnets)
    if spec.listen_port is not None:
        fields["listen_port"] = spec.listen_port
    ssh: dict[str, Any] = {}
    if spec.ssh_host:
        ssh["host"] = spec.ssh_host
    if spec.ssh_user:
        ssh["user"] = spec.ssh_user
    if spec.ssh_port is not None:
        ssh["port"] = spec.ssh_port
    if ssh:
        fields["ssh"] = ssh
    return fields


def plan_add(text: str, path: Path, mesh: Mesh, spec: NodeSpec) -> tuple[str, Mesh]:
    """The edited text and the mesh it validates to. Pure."""
    if spec.name in mesh.node_names:
        raise EditError(f"node {spec.name!r} already exists in {path.name}")
    try:
        addresses = list(spec.addresses) or [str(a) for a in free_addresses(mesh)]
    except ValueError as e:
        raise EditError(str(e)) from None
    new_text = add_node_text(text, spec.name, node_fields(spec, addresses))
    return new_text, validated(new_text, path)


def plan_remove(text: str, path: Path, mesh: Mesh, name: str) -> tuple[str, Mesh]:
    if name not in mesh.node_names:
        shown = ", ".join(mesh.node_names) or "none"
        raise EditError(f"no node {name!r} in {path.name} (nodes: {shown})")
    new_text = remove_node_text(text, name)
    return new_text, validated(new_text, path)


def describe(mesh: Mesh, name: str) -> str:
    """`10.0.0.5, endpoint 203.0.113.5:51820, ssh root@203.0.113.5`: a node in one line."""
    node = mesh.node(name)
    parts = [", ".join(str(a) for a in node.addresses)]
    if node.endpoint:
        parts.append(f"endpoint {node.endpoint}")
    if node.subnets:
        parts.append("subnets " + ", ".join(str(s.prefix) for s in node.subnets))
    if node.listen_port != mesh.listen_port:
        parts.append(f"listen_port {node.listen_port}")
    port = f":{node.ssh.port}" if node.ssh.port != 22 else ""
    parts.append(f"ssh {node.ssh.user}@{node.ssh.host}{port}")
    return ", ".join(parts)


def add(path: Path, spec: NodeSpec) -> list[str]:
    """`wgmesh node add`: edit, validate, write. Returns the lines to print."""
    with editing(path):
        mesh, _warnings = load(path)
        text = read_text(path)
        new_text, new_mesh = plan_add(text, path, mesh, spec)
        write_text(path, new_text)
    return [
        f"+ node {spec.name}: {describe(new_mesh, spec.name)}",
        f"Added {spec.name} to {path}. Next: `{command_line('enroll ' + spec.name, path)}` makes its key on the "
        f"node, then `{command_line('apply', path)}`.",
    ]


def remove(path: Path, name: str) -> list[str]:
    """`wgmesh node remove`: edit, validate, write. Returns the lines to print."""
    with editing(path):
        mesh, _warnings = load(path)
        text = read_text(path)
        if name not in mesh.node_names:
            raise EditError(f"no node {name!r} in {path} (nodes: {', '.join(mesh.node_names) or 'none'})")
        line = f"- node {name}: {describe(mesh, name)}"
        new_text, _new_mesh = plan_remove(text, path, mesh, name)
        write_text(path, new_text)
    return [
        line,
        f"Removed {name} from {path}. The next `wgmesh apply` removes it from every peer; its own interface "
        f"is left as it is (to take it down with wgmesh, set `decommission: true` and apply before removing).",
    ]
