"""YAML in and out: the one ruamel setup, reading with limits, node positions, parse errors as diagnostics,
and the one atomic write.

Anchors, aliases and merge keys are refused while the parser emits its events, before anything is composed,
so an alias bomb never expands; so are nesting deeper and more values than mesh.yaml ever needs. Files over
`MAX_BYTES` or `MAX_LINES` are refused before they are parsed.

Commands that only read mesh.yaml use `parse_readonly`: plain YAML (nearly every mesh.yaml) is read by
meshfile/fastyaml.py into the same objects, ~30x faster; the round trip reads the rest, and every edit. A mesh
of more than 1,000 nodes in plain YAML may take more than the limits above, as much per node (PER_NODE_*).
"""

from __future__ import annotations

import os
import re
from io import StringIO
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.constructor import DuplicateKeyError
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.events import (
    AliasEvent,
    CollectionEndEvent,
    CollectionStartEvent,
    MappingStartEvent,
    NodeEvent,
    ScalarEvent,
)
from ruamel.yaml.parser import RoundTripParser

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


class _Refused(MarkedYAMLError):
    """A construct mesh.yaml does not allow; `problem` is the whole message."""


class _GuardedParser(RoundTripParser):
    """Refuses anchors, aliases, merge keys and deep nesting as the composer takes each event."""

    def __init__(self, loader: Any) -> None:
        super().__init__(loader)
        self._in_mapping: list[bool] = []  # one entry per open collection: is it a mapping
        self._key_next: list[bool] = []  # per open collection: the next node is a mapping key
        self._values = 0

    def get_event(self) -> Any:
        event = super().get_event()
        if isinstance(event, NodeEvent | CollectionEndEvent):
            self._check(event)
        return event

    def _check(self, event: Any) -> None:
        mark = event.start_mark
        if isinstance(event, AliasEvent) or getattr(event, "anchor", None) is not None:
            raise _Refused(None, None, ANCHORS, mark)
        is_key = bool(self._in_mapping) and self._in_mapping[-1] and self._key_next[-1]
        tag = str(getattr(event, "tag", None) or "")
        if tag.endswith(":merge") or (
            is_key and isinstance(event, ScalarEvent) and event.style is None and event.value == "<<"
        ):
            raise _Refused(None, None, MERGE, mark)
        self._values += not isinstance(event, CollectionEndEvent)
        if self._values > MAX_VALUES:
            raise _Refused(None, None, TOO_MANY, mark)
        if isinstance(event, CollectionStartEvent):
            if len(self._in_mapping) >= MAX_DEPTH:
                raise _Refused(None, None, DEEP, mark)
            self._in_mapping.append(isinstance(event, MappingStartEvent))
            self._key_next.append(True)
        elif isinstance(event, CollectionEndEvent):
            self._in_mapping.pop()
            self._key_next.pop()
            self._done()
        else:
            self._done()

    def _done(self) -> None:
        """A whole node was read: in a mapping, keys and values alternate."""
        if self._in_mapping and self._in_mapping[-1]:
            self._key_next[-1] = not self._key_next[-1]


def make_yaml() -> YAML:
    """The one ruamel setup: round trip (comments kept), no duplicate keys, the guarded parser."""
    yaml = YAML(typ="rt")
    yaml.Parser = _GuardedParser
    yaml.allow_duplicate_keys = False
    yaml.preserve_quotes = True
    yaml.width = 4096
    yaml.indent(mapping=2, sequence=4, offset=2)
    return yaml


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


def parse(text: str, report: Report, unplaced: Pos = (1, 0)) -> Any:
    """The round-trip document, or None with the problem in `report`. Never raises. `unplaced`: where to put an
    error ruamel gives no position for (a value its constructor refuses, such as the date 2001-13-45)."""
    if len(text) > MAX_BYTES or len(text.encode("utf-8", "surrogatepass")) > MAX_BYTES:
        report.error((0, 0), "", TOO_BIG)
        return None
    if text.count("\n") > MAX_LINES:
        report.error((MAX_LINES + 1, 0), "", TOO_LONG)
        return None
    try:
        return make_yaml().load(text)
    except _Refused as e:
        report.error(_mark(e, text), "", str(e.problem))
    except DuplicateKeyError as e:
        m = re.search(r'found duplicate key "(.*?)" with value', str(e.problem or ""))
        what = f'duplicate key "{m.group(1)[:60]}"' if m else "duplicate key"
        report.error(_mark(e, text), "", f"{what}: a key may appear only once in a mapping; remove one")
    except YAMLError as e:
        report.error(_mark(e, text), "", _syntax_message(e))
    except RecursionError:
        report.error((1, 0), "", DEEP)
    except Exception as e:  # ruamel raises plain ValueError etc. for some scalars (e.g. bad timestamps)
        why = str(e).splitlines()[0][:120] if str(e) else type(e).__name__
        where = "a value" if unplaced == (1, 0) else "a value on this line or further down"
        report.error(unplaced, "", f"{where} could not be read ({why}): quote values that look like dates or "
                     "numbers but are not, and remove YAML tags (!!int, !!float, ...)")
    return None


def _mark(e: Exception, text: str) -> Pos:
    mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
    if mark is not None and getattr(mark, "line", None) is not None:
        return (mark.line + 1, mark.column + 1)
    position = getattr(e, "position", None)
    if isinstance(position, int):
        before = text[:position]
        return (before.count("\n") + 1, position - (before.rfind("\n") + 1) + 1)
    return (1, 0)


def _syntax_message(e: YAMLError) -> str:
    if "ReaderError" in type(e).__name__:
        return "invalid character: mesh.yaml must be printable UTF-8 text"
    problem = str(getattr(e, "problem", None) or "").strip()[:120] or "invalid YAML"
    if "\\t" in problem or "'\\t'" in problem or "\t" in problem:
        return f"YAML syntax error: {problem}: indent with spaces, not tabs"
    if "expected a single document" in problem:
        return f"YAML syntax error: {problem}: keep one document (remove the extra '---')"
    return f"YAML syntax error: {problem}: check indentation, quoting and ':' on this line"


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


def to_yaml(value: Any) -> Any:
    """Plain data as ruamel round-trip nodes: mappings block style, lists of scalars flow style."""
    if isinstance(value, dict):
        out = CommentedMap()
        for k, v in value.items():
            out[k] = to_yaml(v)
        return out
    if isinstance(value, list | tuple):
        seq = CommentedSeq(to_yaml(v) for v in value)
        if all(isinstance(v, str | int) for v in value):
            seq.fa.set_flow_style()
        return seq
    if isinstance(value, Path):
        return str(value)
    return value


def dumps(doc: Any, yaml: YAML | None = None) -> str:
    out = StringIO()
    (yaml or make_yaml()).dump(doc, out)
    return out.getvalue()


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
