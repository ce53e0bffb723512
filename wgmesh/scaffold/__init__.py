"""`wgmesh init [DIR]`: scaffold a mesh repo (commented mesh.yaml, known_hosts, .gitignore, CI workflow and the
composite action its jobs share)."""

from __future__ import annotations

import errno
import re
from importlib import resources
from pathlib import Path

MESH_FILE = "mesh.yaml"
KNOWN_HOSTS = "known_hosts"
GITIGNORE = ".gitignore"
WORKFLOW_PATH = Path(".github/workflows/wgmesh.yml")
ACTION_DIR = Path(".github/actions/wgmesh-setup")  # the steps every job of the workflow shares
ACTION_PATH = ACTION_DIR / "action.yml"
REPORT_PATH = ACTION_DIR / "report.bash"  # the markdown of the plan comment, the drift issue and the summaries

TEMPLATES = resources.files("wgmesh.scaffold") / "templates"  # the only copy of each starter file


def _template(name: str) -> str:
    return (TEMPLATES / name).read_text(encoding="utf-8")


def workflow_text() -> str:
    """A GitHub Actions workflow for a mesh repo: plan on pull requests with the read-only plan key (one comment
    on the pull request, updated on every push, and the job summary), apply on push to main in the environment
    wgmesh-apply (one at a time, never cancelled; a per-node table in the summary), and a nightly plan that
    keeps one issue labelled wgmesh-drift open while the mesh differs."""
    return _template("wgmesh.yml")


def action_text() -> str:
    """The composite action the workflow's jobs share (.github/actions/wgmesh-setup/action.yml)."""
    return _template("wgmesh-setup.yml")


def report_text() -> str:
    """report.bash next to the action: the markdown of the jobs."""
    return _template("report.bash")


def mesh_name_for(directory: Path) -> str:
    """A valid mesh name from the folder's name (or 'mesh')."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", directory.resolve().name).strip("-._")[:63]
    return name or "mesh"


def starter_files(directory: Path) -> dict[Path, str]:
    return {
        directory / MESH_FILE: _template("mesh.yaml").replace("@NAME@", mesh_name_for(directory)),
        directory / KNOWN_HOSTS: "",
        directory / GITIGNORE: _template("gitignore"),
        directory / WORKFLOW_PATH: workflow_text(),
        directory / ACTION_PATH: action_text(),
        directory / REPORT_PATH: report_text(),
    }


def init_repo(directory: Path, force: bool = False) -> list[Path]:
    """Create the mesh repo files in `directory` (made if missing) and return their paths.

    Unless `force`, raises FileExistsError before writing anything; its `filename` lists every file
    that exists already.
    """
    directory = Path(directory)
    files = starter_files(directory)
    existing = [p for p in files if p.exists()]
    if existing and not force:
        names = ", ".join(str(p) for p in existing)
        raise FileExistsError(errno.EEXIST, "already exists (use --force to overwrite)", names)
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return list(files)
