"""The fast reader's vocabulary: what a plain scalar, a key and a flow item may look like, YAML 1.2 core tags for
plain scalars, and the two ways the fast reader gives up (to the full parser)."""

from __future__ import annotations

import re
from typing import Any

MAX_NESTING = 16  # mesh.yaml needs 5 levels


# Keys: plain names (node names, field names); anything else (quoted, "<<", "?") goes to the round trip.
_KEY = re.compile(r"([A-Za-z0-9_][A-Za-z0-9_.\-]*):(?: +|$)")


_FLOW_KEY = re.compile(r"([A-Za-z0-9_][A-Za-z0-9_.\-]*):(?= )")


_DECIMAL = re.compile(r"[-+]?[0-9]+")


# Characters the round trip's reader refuses, a byte-order mark, tabs and carriage returns: declined up front.
_UNUSUAL = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\ufeff\ud800-\udfff\ufffe\uffff]")


# A plain scalar may not start with these (YAML indicators: flow, quotes, anchors, tags, block scalars, ...).
_NOT_FIRST = frozenset("-?:,[]{}#&*!|>'\"%@`")


_FLOW_STOP = re.compile(r"[,\[\]{}#]")


_STR = "tag:yaml.org,2002:str"


_INT = "tag:yaml.org,2002:int"


_BOOL = "tag:yaml.org,2002:bool"


_NULL = "tag:yaml.org,2002:null"


class Declined(Exception):
    """The document is not plain mesh.yaml: the round-trip parser reads it. `line` is 0-based."""

    def __init__(self, line: int, why: str) -> None:
        super().__init__(why)
        self.line = line
        self.why = why


class TooMany(Exception):
    """More than `max_values` values; `pos` is the (0-based) line and column of the first one over."""

    def __init__(self, pos: tuple[int, int]) -> None:
        super().__init__("too many values")
        self.pos = pos


# ruamel's YAML 1.2 implicit resolvers (ruamel.yaml 0.18-0.19, VersionedResolver().versioned_resolver): the tag,
# the first characters it is tried for ("": the empty value), its flags and its pattern. Written out here, not
# asked of ruamel, whose import is 7 ms of every start; tests/meshfile/test_big.py keeps them equal to ruamel's.
_RESOLVERS: tuple[tuple[str, tuple[str, ...], int, str], ...] = (
    ("tag:yaml.org,2002:bool", tuple("tTfF"), re.X, r"^(?:true|True|TRUE|false|False|FALSE)$"),
    ("tag:yaml.org,2002:float", tuple("-+0123456789."), re.X, r"""^(?:
         [-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |[-+]?\.[0-9_]+(?:[eE][-+][0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$"""),
    ("tag:yaml.org,2002:int", tuple("-+0123456789"), re.X, r"""^(?:[-+]?0b[0-1_]+
        |[-+]?0o?[0-7_]+
        |[-+]?[0-9_]+
        |[-+]?0x[0-9a-fA-F_]+)$"""),
    ("tag:yaml.org,2002:timestamp", tuple("0123456789"), re.X, r"""^(?:[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]
        |[0-9][0-9][0-9][0-9] -[0-9][0-9]? -[0-9][0-9]?
        (?:[Tt]|[ \t]+)[0-9][0-9]?
        :[0-9][0-9] :[0-9][0-9] (?:\.[0-9]*)?
        (?:[ \t]*(?:Z|[-+][0-9][0-9]?(?::[0-9][0-9])?))?)$"""),
    ("tag:yaml.org,2002:merge", ("<",), 0, r"^(?:<<)$"),
    ("tag:yaml.org,2002:null", ("~", "n", "N", ""), re.X, r"""^(?: ~
        |null|Null|NULL
        | )$"""),
    ("tag:yaml.org,2002:value", ("=",), 0, r"^(?:=)$"),
    ("tag:yaml.org,2002:yaml", ("!", "&", "*"), 0, r"^(?:!|&|\*)$"),
)

_TABLE: dict[Any, list[tuple[str, re.Pattern[str]]]] | None = None


def _table() -> dict[Any, list[tuple[str, re.Pattern[str]]]]:
    """The resolvers by first character, in ruamel's order, each pattern compiled once."""
    global _TABLE
    if _TABLE is None:
        table: dict[Any, list[tuple[str, re.Pattern[str]]]] = {}
        for tag, firsts, flags, pattern in _RESOLVERS:
            compiled = re.compile(pattern, flags)
            for first in firsts:
                table.setdefault(first, []).append((tag, compiled))
        _TABLE = table
    return _TABLE


_BY_FIRST: dict[str, tuple[re.Pattern[str], dict[str, str]]] | None = None


def _by_first() -> dict[str, tuple[re.Pattern[str], dict[str, str]]]:
    """Per first character, its resolvers as one pattern (their alternation, in order, each with its own flags
    and anchors: the first that matches wins, as when they are tried one by one) and the tag of each group."""
    global _BY_FIRST
    if _BY_FIRST is None:
        by_first = {}
        for first, resolvers in _table().items():
            parts, tags = [], {}
            for k, (tag, regexp) in enumerate(resolvers):
                flags = "x" if regexp.flags & re.X else ""
                parts.append(f"(?P<t{k}>(?{flags}:{regexp.pattern}))" if flags else f"(?P<t{k}>{regexp.pattern})")
                tags[f"t{k}"] = tag
            by_first[first] = (re.compile("|".join(parts)), tags)
        _BY_FIRST = by_first
    return _BY_FIRST


def _implicit(value: str) -> str:
    """The tag ruamel's resolver gives a plain scalar (YAML 1.2, as the round trip reads mesh.yaml): one match
    of the resolvers for its first character (most names, keys and addresses have none)."""
    got = _by_first().get(value[0] if value else "")
    if got is None:
        return _STR
    regexp, tags = got
    m = regexp.match(value)
    return _STR if m is None or m.lastgroup is None else tags[m.lastgroup]


_MAX_DIGITS = 4300  # sys.get_int_max_str_digits()' default


_MISSING = object()


_NOT_PLAIN = object()


def _construct(text: str) -> Any:
    tag = _implicit(text)
    if tag == _STR:
        return text
    if tag == _NULL:
        return None
    if tag == _BOOL:
        return text.lower() == "true"
    if tag == _INT and _DECIMAL.fullmatch(text):
        sign = -1 if text[0] == "-" else 1
        digits = text.lstrip("+-")
        if len(digits) > _MAX_DIGITS:  # more than Python turns into an int: the field says it is no number it takes
            return text
        if digits[0] == "0":  # leading zeros (and 0 itself): the round trip keeps the width
            from ruamel.yaml.scalarint import ScalarInt  # (ruamel: only for such a number)

            return ScalarInt(sign * int(digits), width=len(digits))
        return sign * int(digits)
    return _NOT_PLAIN
