"""`wgmesh init`: the scaffolded repo validates, refuses to overwrite, and ships the CI workflow."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from wgmesh import meshfile, scaffold
from wgmesh.scaffold import WORKFLOW_PATH, init_repo, workflow_text

ROOT = Path(__file__).resolve().parent.parent


def test_init_creates_a_valid_repo(tmp_path: Path) -> None:
    repo = tmp_path / "my mesh!"
    created = init_repo(repo)
    assert sorted(p.relative_to(repo).as_posix() for p in created) == [
        ".github/workflows/wgmesh.yml",
        ".gitignore",
        "known_hosts",
        "mesh.yaml",
    ]
    mesh, warnings = meshfile.load(repo / "mesh.yaml")
    assert warnings == [] and mesh.nodes == ()
    assert mesh.name == "my-mesh"
    assert (repo / "known_hosts").read_text() == ""
    ignored = (repo / ".gitignore").read_text().splitlines()
    assert {"*.key", "*.tfplan", "lab_id_*"} <= set(ignored)
    assert (repo / WORKFLOW_PATH).read_text() == workflow_text()


def test_uncommenting_the_example_node_gives_a_precise_error(tmp_path: Path) -> None:
    init_repo(tmp_path)
    text = (tmp_path / "mesh.yaml").read_text()
    lines = [
        line.replace("  # ", "  ", 1) if line.startswith("  #   ") or line == "  # aws:" else line
        for line in text.splitlines()
    ]
    (tmp_path / "mesh.yaml").write_text("\n".join(lines) + "\n")
    with pytest.raises(meshfile.MeshError) as info:
        meshfile.load(tmp_path / "mesh.yaml")
    assert [d.path for d in info.value.errors] == ["nodes.aws.public_key"]
    without_key = [line for line in lines if "public_key:" not in line]
    (tmp_path / "mesh.yaml").write_text("\n".join(without_key) + "\n")
    mesh, _ = meshfile.load(tmp_path / "mesh.yaml")
    assert mesh.node("aws").post_up == ("sysctl -w net.ipv4.ip_forward=1",)


def test_init_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    (tmp_path / "mesh.yaml").write_text("mine\n")
    (tmp_path / ".gitignore").write_text("mine\n")
    with pytest.raises(FileExistsError) as info:
        init_repo(tmp_path)
    assert info.value.filename == f"{tmp_path / 'mesh.yaml'}, {tmp_path / '.gitignore'}"
    assert (tmp_path / "mesh.yaml").read_text() == "mine\n"
    assert not (tmp_path / "known_hosts").exists()  # nothing written when refusing
    init_repo(tmp_path, force=True)
    meshfile.load(tmp_path / "mesh.yaml")


def test_example_workflow_is_the_template_itself() -> None:
    """One copy: mesh.example's workflow is a link to the template `wgmesh init` writes."""
    example = ROOT / "mesh.example" / WORKFLOW_PATH
    assert example.is_symlink()
    assert example.resolve() == (ROOT / "wgmesh" / "scaffold" / "templates" / "wgmesh.yml").resolve()
    assert example.read_text() == workflow_text()


def workflow() -> dict:
    return YAML(typ="safe").load(workflow_text())


def test_workflow_triggers_and_jobs() -> None:
    wf = workflow()
    assert set(wf["on"]) == {"pull_request", "push", "schedule", "workflow_dispatch"}
    assert wf["on"]["push"]["branches"] == ["main"]
    jobs = wf["jobs"]
    assert jobs["plan"]["if"] == "github.event_name == 'pull_request'"
    assert "concurrency" not in jobs["plan"]
    assert jobs["apply"]["concurrency"] == {"group": "wgmesh-apply", "cancel-in-progress": False}
    assert jobs["drift"]["concurrency"] == {"group": "wgmesh-drift", "cancel-in-progress": False}


def _runs(job: dict) -> str:
    return "\n".join(step.get("run", "") for step in job["steps"])


def test_workflow_commands() -> None:
    jobs = workflow()["jobs"]
    for job in jobs.values():
        run = _runs(job)
        assert "wgmesh validate" in run and 'pip install "$WGMESH_PIP_SPEC"' in run
        # never the bare PyPI name: "wgmesh" on PyPI is another project, and the job holds the SSH key
        assert "pip install wgmesh" not in run
        install = next(s for s in job["steps"] if s.get("name") == "Install wgmesh")
        assert install["env"] == {"WGMESH_PIP_SPEC": "${{ vars.WGMESH_PIP_SPEC }}"}
        assert 'echo "WGMESH_SSH_IDENTITY=$key" >> "$GITHUB_ENV"' in run
        ssh_step = next(s for s in job["steps"] if s.get("name") == "SSH key")
        assert ssh_step["env"] == {"WGMESH_SSH_KEY": "${{ secrets.WGMESH_SSH_KEY }}"}
        assert "secrets." not in run  # secrets only through env, never spliced into a script
    assert "wgmesh plan --detailed-exitcode --no-color" in _runs(jobs["plan"])
    assert "GITHUB_STEP_SUMMARY" in _runs(jobs["plan"])
    assert "wgmesh apply --auto-approve" in _runs(jobs["apply"])
    assert "wgmesh plan --detailed-exitcode" in _runs(jobs["drift"])


def _plan_script(job: str) -> str:
    step = next(s for s in workflow()["jobs"][job]["steps"] if s.get("name", "").startswith("Plan"))
    return step["run"]


@pytest.mark.parametrize(("job", "plan_exit", "expected"), [
    ("plan", 0, 0), ("plan", 2, 0), ("plan", 1, 1),
    ("drift", 0, 0), ("drift", 2, 2), ("drift", 1, 1),
])  # fmt: skip
def test_plan_exit_codes(tmp_path: Path, job: str, plan_exit: int, expected: int) -> None:
    """Run the job's real shell script against a stand-in `wgmesh` that exits with a given code."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "wgmesh"
    fake.write_text(f"#!/bin/sh\necho 'Plan: 1 to add, 0 to change, 0 to destroy.'\nexit {plan_exit}\n")
    fake.chmod(0o755)
    summary = tmp_path / "summary.md"
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "GITHUB_STEP_SUMMARY": str(summary)}
    done = subprocess.run(["bash", "-e", "-c", _plan_script(job)], cwd=tmp_path, env=env, capture_output=True)
    assert done.returncode == expected
    assert "Plan: 1 to add" in summary.read_text()


@pytest.mark.skipif(shutil.which("actionlint") is None and not (ROOT / ".venv/bin/actionlint").exists(),
                    reason="actionlint not installed")  # fmt: skip
def test_workflow_passes_actionlint(tmp_path: Path) -> None:
    exe = shutil.which("actionlint") or str(ROOT / ".venv/bin/actionlint")
    path = tmp_path / "wgmesh.yml"
    path.write_text(workflow_text())
    done = subprocess.run([exe, "-shellcheck=", str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_mesh_name_for(tmp_path: Path) -> None:
    assert scaffold.mesh_name_for(tmp_path / "prod-eu") == "prod-eu"
    assert scaffold.mesh_name_for(tmp_path / "!!!") == "mesh"
