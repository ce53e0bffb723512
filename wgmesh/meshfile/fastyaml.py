"""A fast reader for plain mesh.yaml, for the commands that only read it (validate, render, plan...).

ruamel's round-trip parser is pure Python at ~20-40 us per value: 5 s or more for a mesh of 10,000 nodes. Almost
every mesh.yaml is plain YAML: block mappings and lists, one-line flow lists and mappings, plain and one-line
quoted scalars, comments. `read()` reads exactly that, line by line, into what validation sees of ruamel's round
trip: mappings and lists (FastMap, FastSeq: a dict and a list with ruamel's `lc` positions and `fa` flow style,
not CommentedMap and CommentedSeq, whose every look-up runs Python code) with the same line and column of every
key, value and item, and the same scalar types (str, int, ScalarInt, bool, None, Single/DoubleQuotedScalarString),
so validation and its `mesh.yaml:LINE:COL` diagnostics cannot tell the two apart (tests/meshfile/test_big.py
compares them). Nothing edits what it reads: the edits go through the round trip.

Anything else raises `Declined` with the line and the reason, before any work that depends on it: anchors,
aliases, tags, merge keys, block scalars, multi-line scalars, escapes in double quotes, tabs, duplicate keys,
keys that are not plain names, numbers that are not plain decimal integers, documents markers, a syntax error.
The caller then lets ruamel's round trip read the document as before (its errors, its limits).

The work is linear in the text (a dict look-up and a few string operations per line); nesting is bounded by
MAX_NESTING and the number of values by `max_values`.
"""

from __future__ import annotations

from typing import Any

from wgmesh.meshfile.fastscalars import (
    _FLOW_KEY,
    _FLOW_STOP,
    _KEY,
    _MISSING,
    _NOT_FIRST,
    _NOT_PLAIN,
    _UNUSUAL,
    MAX_NESTING,
    Declined,
    TooMany,
    _construct,
)


class FastMap(dict[Any, Any]):
    """A mapping read by fastyaml: a dict, and what validation asks of ruamel's CommentedMap: `lc.line`, `lc.col`,
    `lc.data` (key -> [key line, key column, value line, value column], 0-based; None while empty) and
    `fa.flow_style()` (True flow, False block, None unset)."""

    __slots__ = ("_flow", "col", "data", "line")

    def __init__(self, line: int, col: int, flow: bool | None) -> None:
        super().__init__()
        self.line, self.col, self._flow = line, col, flow
        self.data: dict[Any, list[int]] | None = None

    @property
    def lc(self) -> FastMap:
        return self

    @property
    def fa(self) -> FastMap:
        return self

    def flow_style(self) -> bool | None:
        return self._flow

    def set_flow_style(self) -> None:
        self._flow = True

    def at(self, key: Any, where: list[int]) -> None:
        if self.data is None:
            self.data = {}
        self.data[key] = where


class FastSeq(list[Any]):
    """A list read by fastyaml, with CommentedSeq's `lc` (`lc.data`: index -> [line, column]) and `fa`."""

    __slots__ = ("_flow", "col", "data", "line")

    def __init__(self, line: int, col: int, flow: bool | None) -> None:
        super().__init__()
        self.line, self.col, self._flow = line, col, flow
        self.data: dict[Any, list[int]] | None = None

    lc = FastMap.lc
    fa = FastMap.fa
    flow_style = FastMap.flow_style
    set_flow_style = FastMap.set_flow_style
    at = FastMap.at


class _Reader:
    def __init__(self, text: str, max_values: int) -> None:
        self.text = text
        self.lines = text.split("\n")
        self.n = len(self.lines)
        self.max_values = max_values
        self.values = 0
        self.nodes = 0
        self.tags: dict[str, Any] = {}  # plain scalar -> its value (or _NOT_PLAIN): resolved once
        self.indents = _indents(self.lines)  # read as a list where the reader loops: a call per look-up was 15%

    # ---------------------------------------------------------------------------------------- lines

    def next_content(self, i: int) -> int:
        indents, n = self.indents, self.n
        while i < n and indents[i] == -2:
            i += 1
        return i

    def end_mark(self) -> tuple[int, int]:
        return self.n - 1, len(self.lines[-1])

    def count(self, line: int, col: int) -> None:
        self.values += 1
        if self.values > self.max_values:
            raise TooMany((line, col))

    # ---------------------------------------------------------------------------------------- document

    def document(self) -> FastMap:
        for i, line in enumerate(self.lines):
            if line.startswith(("---", "...", "%")):
                raise Declined(i, "a document marker or directive")
        found = _UNUSUAL.search(self.text)
        if found:
            raise Declined(self.text.count("\n", 0, found.start()), "a tab, carriage return or control character")
        i = self.next_content(0)
        if i >= self.n:
            raise Declined(0, "an empty document")
        col = self.indents[i]
        if not _KEY.match(self.lines[i], col):
            raise Declined(i, "a top level that is not a mapping of plain keys")
        doc, i = self.mapping(i, col, col, 1)
        if i < self.n:
            raise Declined(i, "content after the top-level mapping")
        nodes = doc.get("nodes")
        self.nodes = len(nodes) if isinstance(nodes, dict) else 0
        return doc

    # ---------------------------------------------------------------------------------------- block

    def block(self, i: int, depth: int) -> tuple[Any, int]:
        """The block collection that starts on content line i (a list if it starts with '- ')."""
        col = self.indents[i]
        line = self.lines[i]
        if line.startswith("-", col) and (len(line) == col + 1 or line[col + 1] == " "):
            return self.sequence(i, col, depth)
        if not _KEY.match(line, col):
            raise Declined(i, "a value that is neither a mapping of plain keys nor a list")
        return self.mapping(i, col, col, depth)

    def mapping(self, i: int, indent: int, first_col: int, depth: int) -> tuple[FastMap, int]:
        """A block mapping whose keys sit at column `indent`; its first key is on line i at `first_col` (the
        same, or further right after a list's '- ')."""
        if depth > MAX_NESTING:
            raise Declined(i, "nesting deeper than mesh.yaml needs")
        m = FastMap(i, first_col, False)
        self.count(i, first_col)
        col = first_col
        while True:
            line = self.lines[i]
            km = _KEY.match(line, col)
            if km is None:
                raise Declined(i, "a line that is not `key: value`")
            key = km.group(1)
            if type(self.scalar_value(key, i)) is not str:
                raise Declined(i, "a key that YAML reads as a number, a boolean or null")
            if key in m:
                raise Declined(i, "a duplicate key")
            self.count(i, col)
            vcol = km.end()
            rest = line[vcol:]
            if not rest or rest[0] == "#":  # the value is on the following lines, or null
                if rest:  # a comment after `key:`: where the round trip puts a null there is its own affair
                    j = self.next_content(i + 1)
                    if j >= self.n or self.indents[j] <= indent:
                        raise Declined(i, "an empty value followed by a comment")
                j = self.next_content(i + 1)
                jcol = self.indents[j] if j < self.n else -1
                if j < self.n and (jcol > indent or (jcol == indent and self._dash(j, jcol))):
                    value, nxt = self.block(j, depth + 1)
                    vpos = (j, jcol)
                else:
                    if any(self.indents[k] == -2 and self.lines[k].strip() for k in range(i + 1, j)):
                        raise Declined(i, "an empty value followed by a comment")
                    value, nxt = None, j
                    vpos = (j, jcol) if j < self.n else self.end_mark()
                    self.count(*vpos)
            else:
                value = self.inline(i, vcol, depth)
                vpos = (i, vcol)
                nxt = self.next_content(i + 1)
                if nxt < self.n and self.indents[nxt] > indent:
                    raise Declined(nxt, "a value that continues on the next line")
            m[key] = value
            m.at(key, [i, col, vpos[0], vpos[1]])
            i = nxt
            if i >= self.n:
                return m, i
            col = self.indents[i]
            if col < indent:
                return m, i
            if col > indent:
                raise Declined(i, "unexpected indentation")
            if self._dash(i, col):  # a list item at the keys' column: ends an indentless list's mapping
                return m, i

    def _dash(self, i: int, col: int) -> bool:
        line = self.lines[i]
        return line.startswith("-", col) and (len(line) == col + 1 or line[col + 1] == " ")

    def sequence(self, i: int, indent: int, depth: int) -> tuple[FastSeq, int]:
        if depth > MAX_NESTING:
            raise Declined(i, "nesting deeper than mesh.yaml needs")
        s = FastSeq(i, indent, False)
        self.count(i, indent)
        idx = 0
        while True:
            line = self.lines[i]
            c = indent + 1
            while c < len(line) and line[c] == " ":
                c += 1
            rest = line[c:]
            if not rest or rest[0] == "#":
                if rest:
                    raise Declined(i, "a list item that is only a comment")
                j = self.next_content(i + 1)
                if j >= self.n or self.indents[j] <= indent:
                    raise Declined(i, "an empty list item")
                value, nxt = self.block(j, depth + 1)
                ipos = (j, self.indents[j])
            elif _KEY.match(line, c):  # `- key: value`: a mapping whose keys line up with this one
                value, nxt = self.mapping(i, c, c, depth + 1)
                ipos = (i, c)
            else:
                if rest.startswith("-") and (len(rest) == 1 or rest[1] == " "):
                    raise Declined(i, "a list directly inside a list item")
                value = self.inline(i, c, depth)
                ipos = (i, c)
                nxt = self.next_content(i + 1)
                if nxt < self.n and self.indents[nxt] > indent:
                    raise Declined(nxt, "a list item that continues on the next line")
            s.append(value)
            s.at(idx, [ipos[0], ipos[1]])
            idx += 1
            i = nxt
            if i >= self.n:
                return s, i
            col = self.indents[i]
            if col < indent:
                return s, i
            if col > indent:
                raise Declined(i, "unexpected indentation")
            if not self._dash(i, col):
                return s, i  # a key at the list's column: the list was an indentless value

    # ---------------------------------------------------------------------------------------- one line

    def inline(self, i: int, col: int, depth: int) -> Any:
        """The value that starts at column col of line i and ends on it (then only spaces and a comment)."""
        line = self.lines[i]
        ch = line[col]
        if ch == "[" or ch == "{":
            value, end = self.flow(i, col, depth + 1)
            self._rest_is_comment(i, end)
            return value
        if ch == "'" or ch == '"':
            value, end = self.quoted(i, col)
            self._rest_is_comment(i, end)
            return value
        if ch in _NOT_FIRST:
            raise Declined(i, "a value that starts with a YAML indicator")
        hashed = line.find(" #", col)
        text = (line[col:] if hashed < 0 else line[col:hashed]).rstrip(" ")
        if ": " in text or text.endswith(":"):
            raise Declined(i, "a value that holds ': '")
        self.count(i, col)
        return self.scalar_value(text, i)

    def _rest_is_comment(self, i: int, end: int) -> None:
        rest = self.lines[i][end:]
        stripped = rest.lstrip(" ")
        if stripped and not (stripped[0] == "#" and len(stripped) < len(rest)):
            raise Declined(i, "text after a closed value")

    def scalar_value(self, text: str, i: int) -> Any:
        """A plain scalar as the round trip constructs it (str, int, ScalarInt, bool, None)."""
        got = self.tags.get(text, _MISSING)
        if got is _MISSING:
            got = self.tags[text] = _construct(text)
        if got is _NOT_PLAIN:
            raise Declined(i, "a value YAML reads as something other than text, a whole number, a boolean or null")
        return got

    def quoted(self, i: int, col: int) -> tuple[Any, int]:
        line = self.lines[i]
        q = line[col]
        if q == '"':
            end = line.find('"', col + 1)
            if end < 0:
                raise Declined(i, "a quoted value that goes on to the next line")
            body = line[col + 1 : end]
            if "\\" in body:
                raise Declined(i, "an escape in double quotes")
            self.count(i, col)
            return _quoted('"', body), end + 1
        parts = []
        k = col + 1
        while True:
            end = line.find("'", k)
            if end < 0:
                raise Declined(i, "a quoted value that goes on to the next line")
            parts.append(line[k:end])
            if line.startswith("''", end):
                parts.append("'")
                k = end + 2
                continue
            break
        self.count(i, col)
        return _quoted("'", "".join(parts)), end + 1

    def flow(self, i: int, col: int, depth: int) -> tuple[Any, int]:
        """`[a, b]` or `{k: v, ...}` on one line, of scalars only; returns it and the column after it."""
        if depth > MAX_NESTING:
            raise Declined(i, "nesting deeper than mesh.yaml needs")
        line = self.lines[i]
        is_map = line[col] == "{"
        close = "}" if is_map else "]"
        out: Any = FastMap(i, col, None) if is_map else FastSeq(i, col, None)
        self.count(i, col)
        k = self._skip(line, col + 1)
        if k < len(line) and line[k] == close:
            return out, k + 1  # (the round trip gives an empty one no flow style)
        out.set_flow_style()
        idx = 0
        while True:
            if k >= len(line):
                raise Declined(i, "a flow list or mapping that goes on to the next line")
            if is_map:
                km = _FLOW_KEY.match(line, k)
                if km is None:
                    raise Declined(i, "a flow mapping entry that is not `key: value`")
                key = km.group(1)
                if type(self.scalar_value(key, i)) is not str or key in out:
                    raise Declined(i, "a flow mapping key that is not a plain name, or a duplicate")
                self.count(i, k)
                kpos = k
                colon_end = km.end()
                k = self._skip(line, colon_end)
            vstart = k
            if k < len(line) and line[k] in "'\"":
                value, k = self.quoted(i, k)
            elif is_map and k < len(line) and line[k] in ",}":
                value = None  # `{k: , ...}`: null, placed right after the ':' as the round trip does
                vstart = colon_end
                self.count(i, vstart)
            else:
                stop = _FLOW_STOP.search(line, k)
                end = stop.start() if stop else len(line)
                if stop is None or line[end] == "#":
                    raise Declined(i, "a flow list or mapping that goes on to the next line, or a comment in it")
                text = line[k:end].rstrip(" ")
                if not text or text[0] in _NOT_FIRST or ": " in text or text.endswith(":"):
                    raise Declined(i, "a flow item that is not a plain or quoted scalar")
                self.count(i, k)
                value = self.scalar_value(text, i)
                k = end
            if is_map:
                out[key] = value
                out.at(key, [i, kpos, i, vstart])
            else:
                out.append(value)
                out.at(idx, [i, vstart])
                idx += 1
            k = self._skip(line, k)
            if k < len(line) and line[k] == close:
                return out, k + 1
            if k >= len(line) or line[k] != ",":
                raise Declined(i, "a flow list or mapping that is not `[a, b]` or `{k: v}` on one line")
            k = self._skip(line, k + 1)
            if k < len(line) and line[k] in ",]}":
                raise Declined(i, "an empty entry in a flow list or mapping")

    @staticmethod
    def _skip(line: str, k: int) -> int:
        while k < len(line) and line[k] == " ":
            k += 1
        return k


def read(text: str, max_values: int) -> tuple[FastMap, int, int]:
    """The round-trip document of plain YAML `text`, its number of values and of nodes (keys under `nodes:`).
    Raises Declined for anything else, TooMany past `max_values`."""
    reader = _Reader(text, max_values)
    doc = reader.document()
    return doc, reader.values, reader.nodes


def _quoted(quote: str, body: str) -> str:
    """A quoted scalar as the round trip makes it (its style kept). ruamel is imported only for a file that quotes
    a value: its import is 7 ms of every start."""
    from ruamel.yaml.scalarstring import DoubleQuotedScalarString, SingleQuotedScalarString

    return DoubleQuotedScalarString(body) if quote == '"' else SingleQuotedScalarString(body)


def _indents(lines: list[str]) -> list[int]:
    """Each line's indentation, or -2 for a line with nothing but spaces or a comment."""
    out = []
    for line in lines:
        stripped = line.lstrip(" ")
        out.append(-2 if not stripped or stripped[0] == "#" else len(line) - len(stripped))
    return out
