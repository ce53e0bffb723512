"""What is wrong with a mesh.yaml: `Diagnostic` (file:line:col, field path, message), `MeshError`, `EditError`,
and `Report`, the collector every validator writes to.

Messages say what is wrong and how to fix it. They never quote the content of a file other than mesh.yaml, and
what they quote of mesh.yaml is short and has its control characters escaped (a key may hold an escape sequence).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

Pos = tuple[int, int]  # 1-based (line, col); 0 when unknown

MAX_PATH = 120  # characters of a field path shown in a message
MAX_MESSAGE = 400
MAX_DIAGNOSTICS = 200  # per file; beyond them one line says how many more there are

# A WireGuard key as base64 (32 bytes: 43 characters, the last of them carrying 4 bits, then "="): a public or a
# private key, which no message shows (a private key pasted as a field name, a node name or a list).
KEYLIKE_RE = re.compile(r"[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=")
KEY_SHOWN_AS = "(a key, not shown)"


def clean(text: str, limit: int) -> str:
    """One line of printable text: control characters escaped, key-like text replaced, at most `limit`
    characters."""
    out = "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text)
    out = KEYLIKE_RE.sub(KEY_SHOWN_AS, out)
    return out if len(out) <= limit else out[: limit - 3] + "..."


@dataclass(frozen=True)
class Diagnostic:
    """One problem of mesh.yaml: where (file:line:col), the field, what is wrong and the fix."""

    file: str
    line: int
    col: int
    path: str
    message: str
    severity: Literal["error", "warning"] = "error"

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", clean(self.path, MAX_PATH))
        object.__setattr__(self, "message", clean(self.message, MAX_MESSAGE))

    def __str__(self) -> str:
        if self.line <= 0:
            loc = self.file
        elif self.col <= 0:
            loc = f"{self.file}:{self.line}"
        else:
            loc = f"{self.file}:{self.line}:{self.col}"
        parts = [loc]
        if self.severity == "warning":
            parts.append("warning")
        if self.path:
            parts.append(self.path)
        parts.append(self.message)
        return ": ".join(parts)


class MeshError(Exception):
    """mesh.yaml is unusable. `diagnostics` holds every error found, and the warnings too."""

    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        self.diagnostics = list(diagnostics)
        super().__init__("\n".join(str(d) for d in self.diagnostics))

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "error"]


class EditError(Exception):
    """An edit of mesh.yaml cannot be made (unknown node, name taken, the result would not validate): one line."""


@dataclass
class Report:
    """Collects the diagnostics of one file (the first MAX_DIAGNOSTICS of them; the rest are counted)."""

    file: str
    diags: list[Diagnostic] = field(default_factory=list)
    dropped: int = 0
    _failed: bool = False

    def error(self, pos: Pos, path: str, message: str) -> None:
        self._failed = True
        self._add(pos, path, message, "error")

    def warn(self, pos: Pos, path: str, message: str) -> None:
        self._add(pos, path, message, "warning")

    def _add(self, pos: Pos, path: str, message: str, severity: Literal["error", "warning"]) -> None:
        if self.full:
            self.dropped += 1
            return
        self.diags.append(Diagnostic(self.file, pos[0], pos[1], path, message, severity))

    @property
    def full(self) -> bool:
        """Enough has been said: callers may skip the work of finding a better message."""
        return len(self.diags) >= MAX_DIAGNOSTICS

    @property
    def failed(self) -> bool:
        return self._failed

    @property
    def warnings(self) -> list[Diagnostic]:
        return [d for d in self.diags if d.severity == "warning"]

    def sorted(self) -> list[Diagnostic]:
        """By position; then, when some were dropped, one line that says so."""
        out = sorted(self.diags, key=lambda d: (d.line, d.col))
        if self.dropped:
            out.append(Diagnostic(self.file, 0, 0, "", f"and {self.dropped} more: fix these first"))
        return out

    def raise_if_failed(self) -> None:
        if self.failed:
            raise MeshError(self.sorted())
