"""`wgmesh node add|remove`, and the mesh.yaml edits that enroll, rotate and import share.

Edits are made on the text, line by line, so that every comment, the key order and the formatting of
the rest of the file stay exactly as they were. Each text edit is checked: the edited text must parse to
the original data with exactly the intended change. When the layout is one the line editor does not
handle (flow-style `nodes: {...}`, say), the edit falls back to a ruamel.yaml round trip
(`config.add_node`, `config.remove_node`, `config.set_public_key`), which keeps comments but may
re-indent. Either way the result is validated with `config.loads` before anything is written, and it is
written atomically (temporary file in the same folder, then rename).

Comments and a removed node: comment lines directly above the node's key, at its indentation and with
no blank line between, describe the node and go with it; every other comment stays.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from io import StringIO
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap

from wgmesh import config
from wgmesh.core.model import IPAddress, IPNetwork, Mesh


class EditError(Exception):
    """The edit cannot be made (unknown node, name taken, the result would not validate): one line."""


# ----------------------------------------------------------------------------------------------- parsing


def _yaml() -> YAML:
    yaml = YAML(typ="rt")
    yaml.allow_duplicate_keys = False
    yaml.preserve_quotes = True
    yaml.width = 4096
    return yaml


def parse(text: str) -> Any:
    """The round-trip document (with line numbers). EditError when the text is not YAML."""
    try:
        return _yaml().load(text)
    except Exception as e:  # ruamel raises many types; the file was validated before, so this is rare
        raise EditError(f"cannot parse mesh.yaml: {type(e).__name__}") from None


def plain(value: Any) -> Any:
    """Data without comments or layout; mappings become ordered pair lists so key order counts."""
    if isinstance(value, dict):
        return [(str(k), plain(v)) for k, v in value.items()]
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, str):
        return str(value)
    return value


def _same(got: Any, want: Any) -> bool:
    """Equal data, where an empty `nodes:` may be null or an empty mapping."""
    if isinstance(got, list) and isinstance(want, list) and len(got) == len(want):
        return all(_same(g, w) for g, w in zip(got, want, strict=True))
    if isinstance(got, tuple) and isinstance(want, tuple) and len(got) == 2 and len(want) == 2:
        if got[0] == want[0] == "nodes" and {repr(got[1]), repr(want[1])} <= {"None", "[]"}:
            return True
        return got[0] == want[0] and _same(got[1], want[1])
    return bool(got == want)


# ----------------------------------------------------------------------------------------------- line helpers


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _is_comment(line: str) -> bool:
    return line.strip().startswith("#")


def _is_blank(line: str) -> bool:
    return not line.strip()


def _block_end(lines: Sequence[str], key_line: int, key_col: int) -> int:
    """Index of the first line after `key_line` that starts something at or left of `key_col`."""
    for j in range(key_line + 1, len(lines)):
        line = lines[j]
        if not _is_blank(line) and not _is_comment(line) and _indent(line) <= key_col:
            return j
    return len(lines)


def _content_end(lines: Sequence[str], start: int, end: int, col: int) -> int:
    """One past the last line in [start, end) that is content: not blank, and not a comment at or left of
    `col` (those belong to what follows)."""
    last = start
    for j in range(start, end):
        line = lines[j]
        if _is_blank(line):
            continue
        if _is_comment(line) and _indent(line) <= col:
            continue
        last = j
    return last + 1


def _leading_comments(lines: Sequence[str], key_line: int, key_col: int) -> int:
    """Index of the first of the comment lines directly above `key_line` at exactly `key_col`."""
    start = key_line
    while start > 0 and _is_comment(lines[start - 1]) and _indent(lines[start - 1]) == key_col:
        start -= 1
    return start


def _key_at(lines: Sequence[str], line: int, col: int, key: str) -> bool:
    """The block-style key `key:` starts the line at `col` (not a flow mapping, not a `? key`)."""
    if line >= len(lines):
        return False
    text = lines[line]
    if _indent(text) != col:
        return False
    rest = text[col:]
    return bool(re.match(rf"""(['"]?){re.escape(key)}\1\s*:(\s|$)""", rest))


# ----------------------------------------------------------------------------------------------- rendering a node


def node_block(name: str, fields: Mapping[str, Any], key_col: int, field_indent: int = 2) -> str:
    """The YAML lines of one node, its key at column `key_col`; `ssh` and lists of scalars in flow style."""
    body = config.to_yaml(dict(fields))
    ssh = body.get("ssh")
    if isinstance(ssh, CommentedMap):
        ssh.fa.set_flow_style()
    doc = CommentedMap()
    doc[name] = body
    yaml = _yaml()
    yaml.indent(mapping=field_indent, sequence=field_indent + 2, offset=field_indent)
    out = StringIO()
    yaml.dump(doc, out)
    pad = " " * key_col
    return "".join(pad + line if line.strip() else line for line in out.getvalue().splitlines(keepends=True))


# ----------------------------------------------------------------------------------------------- edits


def _edit(
    text: str,
    by_lines: Callable[[list[str], Any], list[str] | None],
    by_document: Callable[[Any], None],
) -> str:
    """Apply an edit by lines when possible, else by a ruamel round trip; both must give the same data."""
    expected = parse(text)
    try:
        by_document(expected)
    except (KeyError, ValueError) as e:
        raise EditError(str(e.args[0]) if e.args else str(e)) from None
    want = plain(expected)
    newline = "\r\n" if "\r\n" in text else "\n"
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += newline
    edited = by_lines(lines, parse(text))
    if edited is not None:
        # new lines follow the file's line endings
        candidate = "".join(line if line.endswith("\r\n") or newline == "\n" else line.replace("\n", newline)
                            for line in edited)
        try:
            ok = _same(plain(parse(candidate)), want)
        except EditError:
            ok = False
        if ok:
            return candidate
    return config.dumps_document(expected)


def _nodes(doc: Any) -> CommentedMap | None:
    nodes = doc.get("nodes") if isinstance(doc, dict) else None
    return nodes if isinstance(nodes, CommentedMap) else None


def _field_indent(lines: Sequence[str], nodes: CommentedMap, key_col: int) -> int:
    for name in nodes:
        node = nodes[name]
        if isinstance(node, CommentedMap) and len(node):
            line, col = node.lc.key(next(iter(node)))
            if line > nodes.lc.key(name)[0] and col > key_col:
                return col - key_col
    return 2


def add_node_text(text: str, name: str, fields: Mapping[str, Any]) -> str:
    """Append node `name` at the end of `nodes:`. EditError if the name is taken or invalid."""

    def by_lines(lines: list[str], doc: Any) -> list[str] | None:
        nodes = _nodes(doc)
        if nodes is not None and len(nodes):
            last = list(nodes)[-1]
            key_line, key_col = nodes.lc.key(last)
            if not _key_at(lines, key_line, key_col, str(last)):
                return None
            end = _block_end(lines, key_line, key_col)
            at = _content_end(lines, key_line, end, key_col)
            block = node_block(name, fields, key_col, _field_indent(lines, nodes, key_col))
            return [*lines[:at], block, *lines[at:]]
        if isinstance(doc, dict) and "nodes" in doc and doc["nodes"] is None:
            line, col = doc.lc.key("nodes")
            if not re.fullmatch(r"\s*nodes\s*:\s*(#.*)?\n?", lines[line]):
                return None
            return [*lines[:line + 1], node_block(name, fields, col + 2), *lines[line + 1:]]
        return None

    return _edit(text, by_lines, lambda doc: config.add_node(doc, name, dict(fields)))


def remove_node_text(text: str, name: str) -> str:
    """Remove node `name` and the comment lines directly above it. EditError if there is no such node."""

    def by_lines(lines: list[str], doc: Any) -> list[str] | None:
        nodes = _nodes(doc)
        if nodes is None or name not in nodes:
            return None
        key_line, key_col = nodes.lc.key(name)
        if not _key_at(lines, key_line, key_col, name):
            return None
        end = _block_end(lines, key_line, key_col)
        stop = _content_end(lines, key_line, end, key_col)
        start = _leading_comments(lines, key_line, key_col)
        return lines[:start] + lines[stop:]

    return _edit(text, by_lines, lambda doc: config.remove_node(doc, name))


def set_public_keys_text(text: str, keys: Mapping[str, str]) -> str:
    """Set nodes.NAME.public_key for each NAME in `keys` (placed after `address` when new)."""
    if not keys:
        return text

    def by_lines(lines: list[str], doc: Any) -> list[str] | None:
        nodes = _nodes(doc)
        if nodes is None:
            return None
        inserts: list[tuple[int, str]] = []
        for name, key in keys.items():
            node = nodes.get(name)
            if not isinstance(node, CommentedMap) or not len(node):
                return None
            key_line, key_col = nodes.lc.key(name)
            if "public_key" in node:
                old = node["public_key"]
                if not isinstance(old, str) or not old:
                    return None
                line, col = node.lc.value("public_key")
                at = lines[line].find(old, col)
                if at < 0:
                    return None
                lines[line] = lines[line][:at] + key + lines[line][at + len(old) :]
                continue
            fields = list(node)
            first_line, field_col = node.lc.key(fields[0])
            if first_line <= key_line or not _key_at(lines, first_line, field_col, str(fields[0])):
                return None
            node_end = _block_end(lines, key_line, key_col)
            if "address" in fields and fields.index("address") + 1 < len(fields):
                nxt = fields[fields.index("address") + 1]
                next_line = node.lc.key(nxt)[0]
                at = _content_end(lines, node.lc.key("address")[0], next_line, field_col)
            else:
                at = _content_end(lines, key_line, node_end, key_col)
            inserts.append((at, " " * field_col + f"public_key: {key}\n"))
        for at, line in sorted(inserts, reverse=True):
            lines.insert(at, line)
        return lines

    def by_document(doc: Any) -> None:
        for name, key in keys.items():
            config.set_public_key(doc, name, key)

    return _edit(text, by_lines, by_document)


# ----------------------------------------------------------------------------------------------- validation


def validated(text: str, path: Path) -> Mesh:
    """`config.loads` on edited text; its errors become one EditError line (they refer to the edit)."""
    try:
        mesh, _warnings = config.loads(text, path)
    except config.MeshError as e:
        problems = "; ".join(f"{d.path}: {d.message}" if d.path else d.message for d in e.errors[:3])
        more = f" (and {len(e.errors) - 3} more)" if len(e.errors) > 3 else ""
        raise EditError(f"the edited {path.name} would not be valid: {problems}{more}") from None
    return mesh


# ----------------------------------------------------------------------------------------------- addresses


def _host_range(net: IPNetwork) -> tuple[int, int]:
    first, last = int(net.network_address), int(net.broadcast_address)
    if net.num_addresses > 2:
        first += 1
        if net.version == 4:
            last -= 1
    return first, last


def lowest_free(net: IPNetwork, used: Iterable[IPAddress]) -> IPAddress | None:
    """The lowest host address of `net` not in `used` (skips the network address, and IPv4 broadcast)."""
    taken = {int(a) for a in used if a.version == net.version and a in net}
    first, last = _host_range(net)
    candidate = first
    while candidate <= last:
        if candidate not in taken:
            return ipaddress.ip_address(candidate) if net.version == 4 else ipaddress.IPv6Address(candidate)
        candidate += 1
    return None


def free_addresses(mesh: Mesh) -> tuple[IPAddress, ...]:
    """One free address in each mesh network, lowest first. EditError when a network is full."""
    used = [a for n in mesh.nodes for a in n.addresses]
    out: list[IPAddress] = []
    for net in mesh.networks:
        addr = lowest_free(net, used)
        if addr is None:
            raise EditError(f"no free address left in {net}: pass --address or widen mesh.network")
        out.append(addr)
    return tuple(out)


# ----------------------------------------------------------------------------------------------- node add / remove


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
    addresses = list(spec.addresses) or [str(a) for a in free_addresses(mesh)]
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


# ----------------------------------------------------------------------------------------------- files


def read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise EditError(f"{path}: no such file (run `wgmesh init`, or pass --file PATH)") from None
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        raise EditError(f"{path}: cannot read: {reason}") from None


def write_text(path: Path, text: str) -> None:
    """Write atomically: a temporary file in the same folder, fsync, then rename over `path`."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or Path("."))
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, path.stat().st_mode & 0o7777 if path.exists() else 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def add(path: Path, spec: NodeSpec) -> list[str]:
    """`wgmesh node add`: edit, validate, write. Returns the lines to print."""
    mesh, _warnings = config.load(path)
    text = read_text(path)
    new_text, new_mesh = plan_add(text, path, mesh, spec)
    write_text(path, new_text)
    return [
        f"+ node {spec.name}: {describe(new_mesh, spec.name)}",
        f"Added {spec.name} to {path}. Next: `wgmesh enroll {spec.name}` makes its key on the node, "
        "then `wgmesh apply`.",
    ]


def remove(path: Path, name: str) -> list[str]:
    """`wgmesh node remove`: edit, validate, write. Returns the lines to print."""
    mesh, _warnings = config.load(path)
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
