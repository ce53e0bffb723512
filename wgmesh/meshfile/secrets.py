"""Refuse private and preshared keys anywhere in the document. The value is never echoed."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from wgmesh.meshfile.diagnostics import Pos, Report
from wgmesh.meshfile.yamldoc import item_pos, key_pos, val_pos

KEYLIKE_RE = re.compile(r"[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=")
_SECRET_WORDS = ("privatekey", "privkey", "presharedkey", "psk", "secretkey")
_SECRET_MENTION_RE = re.compile(r"private|preshared|psk", re.IGNORECASE)
_FIX = (
    "remove it from the repo (and from git history) and rotate that key: "
    "mesh.yaml holds public keys only; private keys stay on the nodes"
)


def is_secret_name(key: str) -> bool:
    """A key name that holds a private or preshared key (PrivateKey, wg-private-key, psk...)."""
    norm = re.sub(r"[^a-z0-9]", "", key.lower())
    return any(word in norm for word in _SECRET_WORDS) or norm in {"private", "preshared"}


def check_secrets(doc: Any, report: Report) -> None:
    for path, pos, kind in _walk(doc):
        report.error(pos, path, f"{kind} in clear: {_FIX}")


def _walk(doc: Any) -> Iterator[tuple[str, Pos, str]]:
    stack: list[tuple[Any, str, Pos]] = [(doc, "", (1, 1))]
    seen: set[int] = set()
    while stack:
        obj, path, pos = stack.pop()
        if id(obj) in seen:
            continue
        if isinstance(obj, dict):
            seen.add(id(obj))
            yield from _walk_mapping(obj, path, pos, stack)
        elif isinstance(obj, list):
            seen.add(id(obj))
            for i in reversed(range(len(obj))):
                stack.append((obj[i], f"{path}[{i}]", item_pos(obj, i, pos)))
        elif isinstance(obj, str) and _mentions_secret_key(obj):
            yield path, pos, "a private or preshared key"


def _walk_mapping(obj: dict, path: str, pos: Pos, stack: list[tuple[Any, str, Pos]]) -> Iterator[tuple[str, Pos, str]]:
    items = []
    for k in obj:
        sub = f"{path}.{k}" if path else str(k)
        items.append((k, sub, key_pos(obj, k, pos), val_pos(obj, k, pos)))
    for k, sub, kpos, vpos in reversed(items):
        if isinstance(k, str) and is_secret_name(k):
            kind = "preshared key" if "pre" in k.lower() or "psk" in k.lower() else "private key"
            yield sub, kpos, kind
            continue
        stack.append((obj[k], sub, vpos))


def _mentions_secret_key(text: str) -> bool:
    """A key-shaped token next to words like 'private-key' (e.g. pasted into a post_up command)."""
    if not KEYLIKE_RE.search(text):
        return False
    return bool(_SECRET_MENTION_RE.search(KEYLIKE_RE.sub(" ", text)))
