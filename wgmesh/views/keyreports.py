"""What enroll, rotate and import hand to a view (views/reports.py holds the other commands' reports)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal


@dataclass(frozen=True)
class NodeKey:
    """One node's answer to enroll or rotate. Text from the node (status, mode) is data."""

    node: str
    status: str  # what the node did: created, existing, rotated
    public_key: str
    previous: str | None  # the public key mesh.yaml recorded before
    mode: str | None = None  # the key file's mode, as the node reported it
    running: str | None = None  # enroll: the public key the interface runs with now, when it is another one

    @property
    def changed(self) -> bool:
        return self.public_key != self.previous


@dataclass(frozen=True)
class KeysReport:
    """`wgmesh enroll` or `wgmesh rotate`: every node that answered, every node that failed, and whether the new
    public keys are in the file."""

    command: Literal["enroll", "rotate"]
    file: Path
    key_path: str
    nodes: tuple[NodeKey, ...]
    errors: Mapping[str, str] = field(default_factory=dict)
    written: bool = False

    @property
    def changed(self) -> tuple[NodeKey, ...]:
        return tuple(k for k in self.nodes if k.changed)

    def warnings_of(self, k: NodeKey) -> list[str]:
        """What enroll warns of a node: a key file others may read, an interface running with another key."""
        if self.command != "enroll":
            return []
        out = []
        if k.mode not in (None, "600", "400", "unknown"):
            out.append(f"{k.node}: {self.key_path} has mode {k.mode}; it should be 600 (chmod 600 {self.key_path})")
        if k.running is not None:
            out.append(f"{k.node}: its interface runs with another key now ({quote_key(k.running)}, from a config "
                       f"made by hand?): the first apply switches it to the key in {self.key_path}, and the peers "
                       "that know the running key lose this node; to keep that key, import the node "
                       "(`wgmesh import`) rather than enroll it")
        return out


def quote_key(key: str | None) -> str:
    return f'"{key}"' if key else "(none)"


@dataclass(frozen=True)
class ImportEntry:
    node: str
    description: str  # `10.0.0.5, endpoint 203.0.113.5:51820, ssh root@203.0.113.5`
    public_key: str
    fields: Mapping[str, Any]  # the mesh.yaml entry


@dataclass(frozen=True)
class ImportReport:
    """`wgmesh import`: the entries (shown before anything changes), then what each node did."""

    file: Path
    creating: bool
    dry_run: bool
    entries: tuple[ImportEntry, ...]
    warnings: tuple[str, ...] = ()
    residual: tuple[tuple[str, str], ...] = ()  # (node, change the first plan will still show)
    key_path: str = ""
    conf_path: str = ""
    backup_suffix: str = ""
    adopted: tuple[tuple[str, str], ...] = ()  # (node, where its key came from: kept, config, interface)
    failed: Mapping[str, str] = field(default_factory=dict)
    written: bool = False
    config_kept: tuple[str, ...] = ()  # nodes whose own config stays until the first apply (it would change)
    error: str | None = None  # why nothing was imported (a node unread, a node that cannot be imported)

    def all_warnings(self) -> list[str]:
        """The warnings, then a line per change the first plan will still show."""
        return [*self.warnings, *(f"{node}: the first plan will still show {line}" for node, line in self.residual)]
