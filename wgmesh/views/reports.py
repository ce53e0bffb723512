"""What the commands without a core report type hand to a view: plain data, built by commands/, shown by
views/ (human or JSON). Plans, apply results, check and status reports are core types (core/plan.py,
core/checks.py, core/status.py). This module holds the local commands' (validate, render, init, and the
findings every command shows); keyreports.py holds enroll's, rotate's and import's (validate and render start
without them: a frozen dataclass costs ~0.4 ms to define)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Finding:
    """One mesh.yaml diagnostic, as text (`mesh.yaml:3:5: nodes.a.address: ...`) and as fields."""

    text: str
    file: str
    line: int
    col: int
    path: str
    message: str
    severity: str = "error"


@dataclass(frozen=True)
class ValidateReport:
    """`wgmesh validate`: valid or not, its findings, and what the mesh holds."""

    file: Path
    valid: bool
    findings: tuple[Finding, ...] = ()  # errors (when not valid) and warnings
    mesh: str = ""
    interface: str = ""
    nodes: int = 0
    enrolled: int = 0

    @property
    def warnings(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity == "warning")


@dataclass(frozen=True)
class RenderedConfig:
    """One node's config, printed or written to a file."""

    node: str
    config: str
    path: Path | None = None  # where it was written; None: printed


@dataclass(frozen=True)
class RenderReport:
    """`wgmesh render`: one node's config, or every node's written to a folder (--all)."""

    configs: tuple[RenderedConfig, ...]
    all_nodes: bool = False
    out: Path | None = None
    warnings: tuple[Finding, ...] = ()
    decommissioned: tuple[str, ...] = ()  # --all: nodes with no config to write (apply removes theirs)


@dataclass(frozen=True)
class InitReport:
    """`wgmesh init`: the files it created, updated, kept or found unchanged."""

    directory: Path
    created: tuple[Path, ...]
    updated: tuple[Path, ...] = ()  # --force: pipeline files this version wrote anew
    kept: tuple[Path, ...] = ()  # --force: the repo's own files (mesh.yaml, known_hosts, .gitignore), untouched
    unchanged: tuple[Path, ...] = ()  # --force: pipeline files already this version's
