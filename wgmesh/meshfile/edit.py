"""Comment-keeping edits of mesh.yaml: add and remove a node, set public keys.

Edits are made on the text, line by line, so that every comment, the key order and the formatting of
the rest of the file stay exactly as they were. Each text edit is checked: the edited text must parse to
the original data with exactly the intended change. When the layout is one the line editor does not
handle (flow-style `nodes: {...}`, say), the edit falls back to a ruamel.yaml round trip
(`add_node`, `remove_node`, `set_public_key`), which keeps comments but may re-indent. Callers validate
the result with `validated()` before they write it with `write_text()` (atomically, keeping the file's mode).

Comments and a removed node: comment lines directly above the node's key, at its indentation and with
no blank line between, describe the node and go with it; every other comment stays.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from ruamel.yaml.comments import CommentedMap

from wgmesh.core.model import Mesh, validate_key
from wgmesh.meshfile import roundtrip, yamldoc
from wgmesh.meshfile.diagnostics import EditError, MeshError, Report
from wgmesh.meshfile.document import loads
from wgmesh.meshfile.roundtrip import dumps, make_yaml, to_yaml
from wgmesh.meshfile.schema import NAME_RE

# ----------------------------------------------------------------------------------------------- documents


def parse(text: str) -> Any:
    """The round-trip document (with line numbers). EditError when the text is not usable YAML."""
    report = Report("mesh.yaml")
    doc = roundtrip.parse(text, report)
    if report.failed:
        raise EditError(f"cannot parse mesh.yaml: {report.diags[0]}")
    return doc


def load_document(path: str | Path) -> CommentedMap:
    """The raw round-trip document of a file, for edits. Raises MeshError if it cannot be read or parsed."""
    shown = str(path)
    text = yamldoc.read_text(path)
    report = Report(shown)
    doc = roundtrip.parse(text, report)
    report.raise_if_failed()
    if not isinstance(doc, CommentedMap):
        report.error((1, 0), "", "the top level must be a mapping: fix it by hand first")
        report.raise_if_failed()
    return doc


def dumps_document(doc: CommentedMap) -> str:
    return dumps(doc)


def write_document(path: str | Path, doc: CommentedMap) -> None:
    """Write atomically, keeping the file's mode."""
    write_text(Path(path), dumps(doc))


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


# ----------------------------------------------------------------------------------------------- round-trip edits


def _nodes_map(doc: CommentedMap) -> CommentedMap:
    nodes = doc.get("nodes")
    if nodes is None:
        nodes = CommentedMap()
        doc["nodes"] = nodes
    if not isinstance(nodes, CommentedMap):
        raise ValueError("`nodes:` in mesh.yaml is not a mapping: fix it by hand first")
    return nodes


def add_node(doc: CommentedMap, name: str, fields: dict[str, Any]) -> None:
    """Append node `name` with `fields` (plain values) at the end of `nodes:`; ValueError if it exists."""
    if not NAME_RE.fullmatch(name):
        raise ValueError(f"invalid node name {name!r}: use letters, digits, '_', '.', '-' (at most 63)")
    nodes = _nodes_map(doc)
    if name in nodes:
        raise ValueError(f"node {name!r} already exists in mesh.yaml")
    nodes[name] = to_yaml(fields)


def remove_node(doc: CommentedMap, name: str) -> None:
    """Remove node `name` from `nodes:`; KeyError if there is no such node."""
    nodes = _nodes_map(doc)
    if name not in nodes:
        raise KeyError(f"no node named {name!r} in mesh.yaml")
    del nodes[name]


def set_public_key(doc: CommentedMap, name: str, key: str) -> None:
    """Set nodes.NAME.public_key (placed after `address` when new); ValueError for a non-canonical key."""
    if not validate_key(key):
        raise ValueError("not a WireGuard public key (44 base64 characters ending in '=')")
    nodes = _nodes_map(doc)
    if name not in nodes:
        raise KeyError(f"no node named {name!r} in mesh.yaml")
    node = nodes[name]
    if not isinstance(node, CommentedMap):
        raise ValueError(f"nodes.{name} in mesh.yaml is not a mapping: fix it by hand first")
    if "public_key" in node:
        node["public_key"] = key
    else:
        keys = list(node)
        at = keys.index("address") + 1 if "address" in keys else len(keys)
        node.insert(at, "public_key", key)


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
    body = to_yaml(dict(fields))
    ssh = body.get("ssh")
    if isinstance(ssh, CommentedMap):
        ssh.fa.set_flow_style()
    doc = CommentedMap()
    doc[name] = body
    yaml = make_yaml()
    yaml.indent(mapping=field_indent, sequence=field_indent + 2, offset=field_indent)
    pad = " " * key_col
    return "".join(pad + line if line.strip() else line for line in dumps(doc, yaml).splitlines(keepends=True))


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
    # the round trip writes "\n" (comments keep a "\r" of their own) and drops a byte-order mark: give the text
    # back the file's line endings and mark, so that an edit is not a change of every line
    out = dumps_document(expected).replace("\r\n", "\n")
    if newline == "\r\n":
        out = out.replace("\n", "\r\n")
    if text.startswith("\ufeff") and not out.startswith("\ufeff"):
        out = "\ufeff" + out
    return out


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

    return _edit(text, by_lines, lambda doc: add_node(doc, name, dict(fields)))


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

    return _edit(text, by_lines, lambda doc: remove_node(doc, name))


def _replace_key(lines: list[str], node: CommentedMap, key: str) -> bool:
    """Replace the value of an existing `public_key:` in place (quotes kept). False when it cannot."""
    old = node["public_key"]
    if not isinstance(old, str) or not old:
        return False
    line, col = node.lc.value("public_key")
    at = lines[line].find(old, col)
    if at < 0:
        return False
    lines[line] = lines[line][:at] + key + lines[line][at + len(old) :]
    return True


def _key_insert(lines: list[str], nodes: CommentedMap, name: str, key: str) -> tuple[int, str] | None:
    """Where a new `public_key:` line of node `name` goes (after `address`), and the line. None when unsure."""
    node = nodes[name]
    key_line, key_col = nodes.lc.key(name)
    fields = list(node)
    first_line, field_col = node.lc.key(fields[0])
    if first_line <= key_line or not _key_at(lines, first_line, field_col, str(fields[0])):
        return None
    if "address" in fields and fields.index("address") + 1 < len(fields):
        next_line = node.lc.key(fields[fields.index("address") + 1])[0]
        at = _content_end(lines, node.lc.key("address")[0], next_line, field_col)
    else:
        at = _content_end(lines, key_line, _block_end(lines, key_line, key_col), key_col)
    return at, " " * field_col + f"public_key: {key}\n"


def _set_keys_by_lines(lines: list[str], doc: Any, keys: Mapping[str, str]) -> list[str] | None:
    nodes = _nodes(doc)
    if nodes is None:
        return None
    inserts: list[tuple[int, str]] = []
    for name, key in keys.items():
        node = nodes.get(name)
        if not isinstance(node, CommentedMap) or not len(node):
            return None
        if "public_key" in node:
            if not _replace_key(lines, node, key):
                return None
            continue
        insert = _key_insert(lines, nodes, name, key)
        if insert is None:
            return None
        inserts.append(insert)
    for at, line in sorted(inserts, reverse=True):
        lines.insert(at, line)
    return lines


def set_public_keys_text(text: str, keys: Mapping[str, str]) -> str:
    """Set nodes.NAME.public_key for each NAME in `keys` (placed after `address` when new)."""
    if not keys:
        return text

    def by_document(doc: Any) -> None:
        for name, key in keys.items():
            set_public_key(doc, name, key)

    return _edit(text, lambda lines, doc: _set_keys_by_lines(lines, doc, keys), by_document)


# ----------------------------------------------------------------------------------------------- files


def validated(text: str, path: Path) -> Mesh:
    """`loads` on edited text; its errors become one EditError line (they refer to the edit)."""
    try:
        mesh, _warnings = loads(text, path)
    except MeshError as e:
        problems = "; ".join(f"{d.path}: {d.message}" if d.path else d.message for d in e.errors[:3])
        more = f" (and {len(e.errors) - 3} more)" if len(e.errors) > 3 else ""
        raise EditError(f"the edited {path.name} would not be valid: {problems}{more}") from None
    return mesh


def read_text(path: Path) -> str:
    """The text of mesh.yaml, for an edit. EditError (one line) when it cannot be read."""
    try:
        return yamldoc.read_text(path)
    except MeshError as e:
        if not path.exists():
            raise EditError(f"{path}: no such file (run `wgmesh init`, or pass --file PATH)") from None
        raise EditError(f"{path}: {e.errors[0].message}") from None


def write_text(path: Path, text: str) -> None:
    """Write atomically (temporary file in the same folder, fsync, rename), keeping the file's mode. A mesh.yaml
    that is a symbolic link is written where it points (the link stays a link), as an editor would."""
    real = Path(os.path.realpath(path))
    yamldoc.write_atomic(real, text, yamldoc.file_mode(real))


@contextlib.contextmanager
def editing(path: Path) -> Iterator[None]:
    """Hold mesh.yaml for one read, edit and write: an exclusive lock on the folder of the real file, which
    every wgmesh edit takes, so that two edits at once (two `node add`, an enroll beside a `node add`) each see
    the other's result instead of writing over it. The lock goes with the process (flock)."""
    folder = Path(os.path.realpath(path)).parent
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as e:
        raise EditError(f"{path}: cannot open its folder {folder}: {e.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
