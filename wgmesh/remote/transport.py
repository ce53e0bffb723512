"""What the rest of wgmesh needs from a transport; `remote.ssh.SshTransport` is the real one."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from wgmesh.core.model import Node


class SshError(Exception):
    """A node could not be reached or refused us; the message names the reason and the fix."""


@dataclass(frozen=True)
class CommandResult:
    exit_status: int
    stdout: str
    stderr: str


class Transport(Protocol):
    """What the rest of wgmesh needs from a transport. `ssh.SshTransport` is the real one."""

    def connect(self, nodes: Iterable[Node]) -> dict[str, str]:
        """Open connections; returns {node name: error message} for the nodes that failed."""
        ...

    def run(self, node: str, script: str, timeout: float | None = None) -> CommandResult:
        """Run a script on a connected node; raises SshError when the connection fails."""
        ...

    def run_many(self, scripts: Mapping[str, str], timeout: float | None = None) -> dict[str, CommandResult | str]:
        """One script per node, in parallel; a node's failure comes back as its message."""
        ...

    def close(self) -> None: ...
