"""Refuse private and preshared keys anywhere in the document. The value is never echoed."""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import lru_cache
from typing import Any

from wgmesh.meshfile.diagnostics import KEYLIKE_RE, Pos, Report
from wgmesh.meshfile.yamldoc import item_pos, key_pos, val_pos

_SECRET_WORDS = ("privatekey", "privkey", "presharedkey", "psk", "secretkey")
_SECRET_MENTION_RE = re.compile(r"private|preshared|psk", re.IGNORECASE)
_FIX = (
    "remove it from the repo (and from git history) and rotate that key: "
    "mesh.yaml holds public keys only; private keys stay on the nodes"
)


@lru_cache(maxsize=1024)
def is_secret_name(key: str) -> bool:
    """A key name that holds a private or preshared key (PrivateKey, wg-private-key, psk...)."""
    norm = re.sub(r"[^a-z0-9]", "", key.lower())
    return any(word in norm for word in _SECRET_WORDS) or norm in {"private", "preshared"}


def check_secrets(doc: Any, report: Report) -> None:
    for path, pos, kind in _walk(doc):
        report.error(pos, path, f"{kind} in clear: {_FIX}")


_HASH_TO_END = re.compile(r"#[^\n]*")


def check_comment_secrets(text: str, report: Report) -> None:
    """A key-shaped token next to words like 'PrivateKey' in a comment (a config pasted in, commented out) is a
    private key in the repo as much as a value is; a key-shaped token alone may be a public key, and stays."""
    for m in _HASH_TO_END.finditer(text):
        if not _mentions_secret_key(m.group()):  # (a superset: the comment starts at this `#` or after it)
            continue
        start = text.rfind("\n", 0, m.start()) + 1
        at = _comment_start(text[start : m.end()])
        if at is not None and _mentions_secret_key(text[start + at : m.end()]):
            line = text.count("\n", 0, start) + 1
            report.error((line, at + 1), "", f"a private or preshared key in a comment: {_FIX}")


def _comment_start(line: str) -> int | None:
    """Where the YAML comment of `line` starts (its `#`), or None: a `#` at the start or after a blank, outside
    quotes."""
    quote = None
    for i, ch in enumerate(line):
        if quote is not None:
            if ch == quote:
                quote = None
        elif ch in "'\"" and (i == 0 or line[i - 1] in " \t:[{,-"):
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1] in " \t"):
            return i
    return None


# Where a value sits: its container's place (None for the document), the container, and its key or index. The
# path and the line are worked out only for a value that is reported (a 1,000-node file has thousands of values).
_Place = tuple[Any, Any, Any] | None


def _walk(doc: Any) -> Iterator[tuple[str, Pos, str]]:
    stack: list[tuple[Any, _Place]] = [(doc, None)]
    seen: set[int] = set()
    while stack:
        obj, place = stack.pop()
        if isinstance(obj, dict):
            if id(obj) in seen:
                continue
            seen.add(id(obj))
            here = (place, obj)
            for k in reversed(list(obj)):
                if isinstance(k, str) and is_secret_name(k):
                    kind = "preshared key" if "pre" in k.lower() or "psk" in k.lower() else "private key"
                    yield _path(place, k), key_pos(obj, k, _pos(place)), kind
                    continue
                stack.append((obj[k], (here, k, False)))
        elif isinstance(obj, list):
            if id(obj) in seen:
                continue
            seen.add(id(obj))
            here = (place, obj)
            for i in reversed(range(len(obj))):
                stack.append((obj[i], (here, i, True)))
        elif isinstance(obj, str) and _mentions_secret_key(obj):
            yield _path(place), _pos(place), "a private or preshared key"


def _path(place: _Place, key: Any = None) -> str:
    """`nodes.a.post_up[1]`: the place's path, and `key` under it."""
    parts: list[str] = [] if key is None else [f".{key}"]
    while place is not None:
        (parent, _), k, index = place
        parts.append(f"[{k}]" if index else f".{k}")
        place = parent
    return "".join(reversed(parts)).removeprefix(".")


def _pos(place: _Place) -> Pos:
    """The line and column of the value at `place` (each container's own when a value has none)."""
    chain = []
    while place is not None:
        chain.append(place)
        place = place[0][0]
    pos: Pos = (1, 1)
    for (_, container), k, index in reversed(chain):
        pos = item_pos(container, k, pos) if index else val_pos(container, k, pos)
    return pos


def _mentions_secret_key(text: str) -> bool:
    """A key-shaped token next to words like 'private-key' (e.g. pasted into a post_up command)."""
    if not KEYLIKE_RE.search(text):
        return False
    return bool(_SECRET_MENTION_RE.search(KEYLIKE_RE.sub(" ", text)))
