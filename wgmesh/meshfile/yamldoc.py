"""YAML in: reading with limits, node positions; and the one atomic write. The round trip (ruamel's parser,
guarded, and its writer) is meshfile/roundtrip.py, imported when a document or an edit needs it.

Anchors, aliases and merge keys are refused while the parser emits its events, before anything is composed,
so an alias bomb never expands; so are nesting deeper and more values than mesh.yaml ever needs. Files over
`MAX_BYTES` or `MAX_LINES` are refused before they are parsed.

Commands that only read mesh.yaml use `parse_readonly`: plain YAML (nearly every mesh.yaml) is read by
meshfile/fastyaml.py into the same objects, ~30x faster; the round trip reads the rest, and every edit. A mesh
of more than 1,000 nodes in plain YAML may take more than the limits above, as much per node (PER_NODE_*).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from wgmesh.meshfile import fastyaml
from wgmesh.meshfile.diagnostics import Diagnostic, MeshError, Pos, Report

# Bounds on the work a hostile file can cause (ruamel's round-trip parser takes ~20-40 us per value or line):
# a mesh of 2,000 nodes fits inside each, and the worst file under them validates in about 2 s.
MAX_BYTES = 1_000_000
MAX_LINES = 40_000
MAX_VALUES = 40_000  # scalars, sequences and mappings
MAX_DEPTH = 32  # mesh.yaml needs 5 levels; a flow list of lists 2000 deep must not reach the composer
# A bigger mesh in plain YAML (read by fastyaml, ~1 us per byte, linear) may take this much per node, up to
# MAX_NODES nodes: a 10,000-node mesh.yaml is ~2 MB, 50,000-80,000 lines and 130,000-200,000 values.
PER_NODE_BYTES = 1_000
PER_NODE_LINES = 40
PER_NODE_VALUES = 40
MAX_NODES = 16_000
HARD_MAX_BYTES = PER_NODE_BYTES * MAX_NODES  # never read further
HARD_MAX_LINES = PER_NODE_LINES * MAX_NODES
HARD_MAX_VALUES = PER_NODE_VALUES * MAX_NODES
ANCHORS = "anchors and aliases are not supported: write the value out"
MERGE = "merge keys (<<) are not supported: write the keys out"
DEEP = "the document is nested too deeply: mesh.yaml needs only a few levels"
TOO_BIG = (
    f"the file is larger than {MAX_BYTES // 1_000_000} MB: mesh.yaml is a few kilobytes (a mesh of more than 1,000 "
    f"nodes may take {PER_NODE_BYTES // 1000} KB a node in plain YAML); check the path"
)


def too_long(limit: int) -> str:
    return f"the file has more than {limit} lines: mesh.yaml needs far fewer; check the path"


def too_many(limit: int) -> str:
    return f"the document has more than {limit} values: mesh.yaml needs far fewer; check the file"


TOO_LONG = too_long(MAX_LINES)
TOO_MANY = too_many(MAX_VALUES)


# --------------------------------------------------------------------------------------------------
# Reading


def read_text(path: str | Path) -> str:
    """mesh.yaml's text. MeshError (line 0, or the line of a bad byte) when it cannot be read or is too big."""
    shown = str(path)
    try:
        with open(path, "rb") as f:
            raw = f.read(HARD_MAX_BYTES + 1)
    except FileNotFoundError:
        raise MeshError(
            [Diagnostic(shown, 0, 0, "", "no such file: run `wgmesh init` to create one, or pass --file PATH")]
        ) from None
    except OSError as e:
        raise MeshError([Diagnostic(shown, 0, 0, "", f"cannot read: {e.strerror or type(e).__name__}")]) from None
    if len(raw) > HARD_MAX_BYTES:  # (parse and parse_readonly apply the limit that fits the file)
        raise MeshError([Diagnostic(shown, 0, 0, "", TOO_BIG)])
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise MeshError(
            [Diagnostic(shown, line, 0, "", f"not UTF-8 text (byte {e.start}): save the file as UTF-8")]
        ) from None


def parse_readonly(text: str, report: Report) -> Any:
    """The document for a command that only reads mesh.yaml, or None with the problem in `report`. Never raises.

    Plain YAML is read by fastyaml (the same objects, positions and types as `parse`); anything else by `parse`.
    The limits scale with the number of nodes of a plain file: MAX_* or PER_NODE_* a node, whichever is more."""
    size = len(text.encode("utf-8", "surrogatepass")) if len(text) <= HARD_MAX_BYTES else len(text)
    if size > HARD_MAX_BYTES:
        report.error((0, 0), "", TOO_BIG)
        return None
    lines = text.count("\n")
    if lines > HARD_MAX_LINES:
        report.error((HARD_MAX_LINES + 1, 0), "", too_long(HARD_MAX_LINES))
        return None
    try:
        doc, values, nodes = fastyaml.read(text, HARD_MAX_VALUES)
    except fastyaml.TooMany as e:
        report.error((e.pos[0] + 1, e.pos[1] + 1), "", too_many(HARD_MAX_VALUES))
        return None
    except fastyaml.Declined as e:
        from wgmesh.meshfile.roundtrip import parse  # (ruamel: only now)

        doc = parse(text, report, (e.line + 1, 0))  # (where the fast reader stopped: the line a value without a
        # position of its own is on, when one is all that is wrong)
        if report.failed and (size > MAX_BYTES or lines > MAX_LINES):  # say why the bigger limits did not apply
            report.error((e.line + 1, 0), "", f"{e.why}: a mesh.yaml over {MAX_BYTES // 1_000_000} MB or {MAX_LINES} "
                         "lines must keep to plain YAML (mappings, lists, one-line scalars, comments)")
        return doc
    n = min(nodes, MAX_NODES)
    max_lines, max_values = max(MAX_LINES, PER_NODE_LINES * n), max(MAX_VALUES, PER_NODE_VALUES * n)
    if size > max(MAX_BYTES, PER_NODE_BYTES * n):
        report.error((0, 0), "", TOO_BIG)
        return None
    if lines > max_lines:
        report.error((max_lines + 1, 0), "", too_long(max_lines))
        return None
    if values > max_values:
        try:  # again, counting, for the position of the first value over
            fastyaml.read(text, max_values)
        except fastyaml.TooMany as e:
            report.error((e.pos[0] + 1, e.pos[1] + 1), "", too_many(max_values))
        return None
    return doc


# --------------------------------------------------------------------------------------------------
# Positions of parsed nodes (1-based; `fallback` when ruamel has none)


def start(obj: Any, fallback: Pos) -> Pos:
    lc = getattr(obj, "lc", None)
    if lc is None or getattr(lc, "line", None) is None:
        return fallback
    return (lc.line + 1, lc.col + 1)


def _lc_pos(m: Any, k: Any, first: int, fallback: Pos) -> Pos:
    """ruamel's `m.lc.key(k)` (first=0), `.value(k)` (2) or `.item(k)` (0), 1-based, else `fallback` (read
    directly: validation asks this for every key and value)."""
    try:
        entry = m.lc.data[k]
        line, col = entry[first], entry[first + 1]
    except (AttributeError, KeyError, TypeError, IndexError):
        return fallback
    if line is None:
        return fallback
    return (line + 1, col + 1)


def key_pos(m: Any, k: Any, fallback: Pos) -> Pos:
    return _lc_pos(m, k, 0, fallback)


def val_pos(m: Any, k: Any, fallback: Pos) -> Pos:
    return _lc_pos(m, k, 2, fallback)


def item_pos(seq: Any, i: int, fallback: Pos) -> Pos:
    return _lc_pos(seq, i, 0, fallback)


# --------------------------------------------------------------------------------------------------
# Writing


def write_atomic(path: str | Path, text: str | bytes, mode: int) -> None:
    """Replace `path` with `text`: a temporary file in the same folder, fsync, chmod `mode`, rename, fsync the
    folder. Readers see the old file or the new one, never a part; nothing is left behind on failure."""
    target = Path(path)
    data = text.encode("utf-8") if isinstance(text, str) else text
    import tempfile  # (only for a write: 2 ms of every read-only start)

    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    try:
        dir_fd = os.open(target.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def file_mode(path: str | Path, default: int = 0o644) -> int:
    """The permission bits of `path`, or `default` when it does not exist (to keep a file's mode on rewrite)."""
    try:
        return os.stat(path).st_mode & 0o7777
    except OSError:
        return default
