"""The Environment every command gets: streams, terminal-ness, colour, the process environment.

It is the only way wgmesh (outside the CLI) reaches stdin, stdout, stderr and environment variables, so a test
injects one around StringIO: `Environment(io.StringIO(), io.StringIO(), stdin=io.StringIO("yes\\n"),
stdin_isatty=True, environ={})`.
"""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console


def _empty_stdin() -> IO[str]:
    return io.StringIO("")


def _process_environ() -> dict[str, str]:
    return dict(os.environ)


@dataclass
class Environment:
    """Where output goes, where answers come from, how output looks, and the environment variables."""

    stdout: IO[str]
    stderr: IO[str]
    color: bool = False
    stdin_isatty: bool = False
    stdin: IO[str] = field(default_factory=_empty_stdin)
    environ: Mapping[str, str] = field(default_factory=_process_environ)

    @classmethod
    def from_system(cls, no_color: bool = False, environ: Mapping[str, str] | None = None) -> Environment:
        """The process's streams and a copy of its environment. Colour only on a terminal, never with
        --no-color or a non-empty NO_COLOR (no-color.org)."""
        env = _process_environ() if environ is None else environ
        color = not no_color and not env.get("NO_COLOR") and sys.stdout.isatty()
        return cls(sys.stdout, sys.stderr, color, sys.stdin.isatty(), sys.stdin, env)

    @property
    def debug(self) -> bool:
        """WGMESH_DEBUG=1: let an internal error's traceback through."""
        return bool(self.environ.get("WGMESH_DEBUG"))

    def read_line(self) -> str | None:
        """One line from stdin without its line break; None at end of input."""
        line = self.stdin.readline()
        return line.rstrip("\r\n") if line else None

    def console(self, err: bool = False) -> Console:
        from rich.console import Console  # rich only where something is drawn: a fast start elsewhere

        stream = self.stderr if err else self.stdout
        return Console(
            file=stream,
            force_terminal=self.color,
            no_color=not self.color,
            highlight=False,
            soft_wrap=True,
            emoji=False,
            _environ=dict(self.environ),  # rich reads COLUMNS, TERM...: from this Environment, not the process
        )
