"""The Environment every command gets: streams, terminal-ness, colour, the process environment."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import IO

from rich.console import Console


@dataclass
class Environment:
    """Where output goes and how it looks. Tests build one around StringIO."""

    stdout: IO[str]
    stderr: IO[str]
    color: bool
    stdin_isatty: bool

    @classmethod
    def from_system(cls, no_color: bool = False) -> Environment:
        color = not no_color and "NO_COLOR" not in os.environ and sys.stdout.isatty()
        return cls(sys.stdout, sys.stderr, color, sys.stdin.isatty())

    def console(self, err: bool = False) -> Console:
        stream = self.stderr if err else self.stdout
        return Console(
            file=stream,
            force_terminal=self.color,
            no_color=not self.color,
            highlight=False,
            soft_wrap=True,
            emoji=False,
        )
