"""The round trip: ruamel's parser for the documents the fast reader declines and for every edit (comments kept),
guarded against anchors, aliases, merge keys, deep nesting and too many values; and ruamel's writer. Imported only
when needed: ruamel's import is 7 ms of every start, and nearly every mesh.yaml is read by meshfile/fastyaml.py.
"""

from __future__ import annotations

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

from wgmesh.meshfile.diagnostics import Pos, Report
from wgmesh.meshfile.yamldoc import (
    ANCHORS,
    DEEP,
    MAX_BYTES,
    MAX_DEPTH,
    MAX_LINES,
    MAX_VALUES,
    MERGE,
    TOO_BIG,
    TOO_LONG,
    TOO_MANY,
)


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


