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


USER_FILES = (MESH_FILE, KNOWN_HOSTS, GITIGNORE)  # the repo's own data once made: init never replaces them
PIPELINE = (WORKFLOW_PATH, ACTION_PATH, REPORT_PATH)  # what `init --force` refreshes


def kept_files(directory: Path) -> set[Path]:
    """The repo's own files that are there (a link to one that exists included): `init --force` keeps them."""
    return {directory / name for name in USER_FILES if (directory / name).exists()}


def init_repo(directory: Path, force: bool = False) -> dict[Path, str]:
    """Create the mesh repo files in `directory` (made if missing); each path -> what was done: `created`, or
    with `force`, for a file already there, `updated` or `unchanged` (the pipeline's files: refreshed to this
    version's) or `kept` (mesh.yaml, known_hosts, .gitignore: the repo's own, never replaced).

    Unless `force`, raises FileExistsError before writing anything; its `filename` lists every file
    that exists already.
    """
    directory = Path(directory)
    files = starter_files(directory)
    existing = [p for p in files if p.exists()]
    if existing and not force:
        names = ", ".join(str(p) for p in existing)
        raise FileExistsError(errno.EEXIST, "already exists (use --force to overwrite)", names)
    done: dict[Path, str] = {}
    kept = kept_files(directory)
    for path, text in files.items():
        if path in kept:
            done[path] = "kept"
            continue
        if path.exists():
            try:
                same = path.read_text(encoding="utf-8") == text
            except (OSError, UnicodeDecodeError):
                same = False
            if same:
                done[path] = "unchanged"
                continue
        done[path] = "updated" if path.exists() else "created"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return done


def outdated(directory: Path) -> list[Path]:
    """The files of the action the pipeline's jobs share (action.yml, report.bash: wgmesh's own, unlike the
    workflow, which people adapt) in the mesh repo in `directory` that differ from what this wgmesh generates:
    made by another version, or changed by hand. A file that is not there is none of them."""
    out = []
    for rel, make in ((ACTION_PATH, action_text), (REPORT_PATH, report_text)):
        path = directory / rel
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        if text != make():
            out.append(path)
    return out
