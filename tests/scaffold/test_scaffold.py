"""`wgmesh init`: the scaffolded repo validates, refuses to overwrite, and ships the CI workflow, the composite
action its jobs share and report.bash (their markdown). The workflow's steps run end to end in
tests/e2e/test_workflow.py; here each script runs alone with a stand-in wgmesh."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from wgmesh import meshfile, scaffold
from wgmesh.scaffold import ACTION_PATH, REPORT_PATH, WORKFLOW_PATH, init_repo, workflow_text

ROOT = Path(__file__).resolve().parents[2]


def test_init_creates_a_valid_repo(tmp_path: Path) -> None:
    repo = tmp_path / "my mesh!"
    created = init_repo(repo)
    assert set(created.values()) == {"created"}
    assert sorted(p.relative_to(repo).as_posix() for p in created) == [
        ".github/actions/wgmesh-setup/action.yml",
        ".github/actions/wgmesh-setup/report.bash",
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


def test_init_force_refreshes_the_pipeline_and_keeps_the_repos_own_files(tmp_path: Path) -> None:
    """Review U: after an upgrade, `init --force` was the only way to the new pipeline files, and it replaced
    mesh.yaml and known_hosts with empty starters while saying "created". It keeps them now."""
    init_repo(tmp_path)
    (tmp_path / "mesh.yaml").write_text("mine\n")
    (tmp_path / "known_hosts").write_text("h ssh-ed25519 AAAA\n")
    (tmp_path / REPORT_PATH).write_text("# an older version's\n")
    assert scaffold.outdated(tmp_path) == [tmp_path / REPORT_PATH]
    done = init_repo(tmp_path, force=True)
    assert {p.relative_to(tmp_path).as_posix(): what for p, what in done.items()} == {
        "mesh.yaml": "kept", "known_hosts": "kept", ".gitignore": "kept",
        ".github/workflows/wgmesh.yml": "unchanged", ".github/actions/wgmesh-setup/action.yml": "unchanged",
        ".github/actions/wgmesh-setup/report.bash": "updated"}
    assert (tmp_path / "mesh.yaml").read_text() == "mine\n"
    assert (tmp_path / "known_hosts").read_text() == "h ssh-ed25519 AAAA\n"
    assert (tmp_path / REPORT_PATH).read_text() == scaffold.report_text() and scaffold.outdated(tmp_path) == []


@pytest.mark.parametrize(
    ("path", "template"),
    [(WORKFLOW_PATH, "wgmesh.yml"), (ACTION_PATH, "wgmesh-setup.yml"), (REPORT_PATH, "report.bash")],
)
def test_example_files_are_the_templates_themselves(path: Path, template: str) -> None:
    """One copy: mesh.example's workflow and action are links to the templates `wgmesh init` writes."""
    example = ROOT / "mesh.example" / path
    assert example.is_symlink()
    assert example.resolve() == (ROOT / "wgmesh" / "scaffold" / "templates" / template).resolve()
    assert example.read_text() == scaffold.starter_files(Path("x"))[Path("x") / path]


def workflow() -> dict:
    return YAML(typ="safe").load(workflow_text())


def action() -> dict:
    return YAML(typ="safe").load(scaffold.action_text())


def test_workflow_triggers_and_jobs() -> None:
    wf = workflow()
    assert set(wf["on"]) == {"pull_request", "push", "schedule", "workflow_dispatch"}
    assert wf["on"]["push"]["branches"] == ["main"]
    assert wf["permissions"] == {"contents": "read"}
    jobs = wf["jobs"]
    assert jobs["plan"]["if"] == (
        "github.event_name == 'pull_request' && github.event.pull_request.head.repo.full_name == github.repository"
    )
    assert jobs["plan"]["permissions"] == {"contents": "read", "pull-requests": "write"}
    assert jobs["plan"]["concurrency"]["cancel-in-progress"] is True  # a newer push replaces an older plan
    assert jobs["apply"]["environment"] == "wgmesh-apply"
    assert "permissions" not in jobs["apply"]  # the workflow's: contents read, nothing else
    assert jobs["apply"]["concurrency"] == {"group": "wgmesh-apply", "cancel-in-progress": False}
    assert jobs["drift"]["permissions"] == {"contents": "read", "issues": "write"}
    assert jobs["drift"]["concurrency"] == {"group": "wgmesh-drift", "cancel-in-progress": False}


def _runs(steps: list[dict]) -> str:
    return "\n".join(step.get("run", "") for step in steps)


def _setup(job: dict) -> dict:
    (step,) = [s for s in job["steps"] if s.get("uses") == "./.github/actions/wgmesh-setup"]
    return step


@pytest.mark.parametrize(("job", "secret"), [
    ("plan", "WGMESH_PLAN_SSH_KEY"), ("apply", "WGMESH_SSH_KEY"), ("drift", "WGMESH_PLAN_SSH_KEY"),
])  # fmt: skip
def test_each_job_gets_its_own_key_through_the_shared_action(job: str, secret: str) -> None:
    steps = workflow()["jobs"][job]["steps"]
    uses = [s.get("uses") for s in steps]
    assert uses[0] == "actions/checkout@v4"
    # the key right after the checkout; apply first checks that its commit is still the branch's newest
    assert uses.index("./.github/actions/wgmesh-setup") == (2 if job == "apply" else 1)
    assert _setup(workflow()["jobs"][job])["with"] == {
        "ssh-key": f"${{{{ secrets.{secret} }}}}", "pip-spec": "${{ vars.WGMESH_PIP_SPEC }}"}
    assert "secrets." not in _runs(steps) and "vars." not in _runs(steps)  # never spliced into a script
    assert steps[-1] == {"name": "Remove SSH key", "if": "always()", "run": 'rm -f "$RUNNER_TEMP/wgmesh_ssh_key"'}
    # the admin key appears in the apply job only
    assert ("WGMESH_SSH_KEY }}" in str(workflow()["jobs"][job])) == (job == "apply")


def test_the_shared_action_installs_the_pinned_wgmesh_writes_the_key_and_validates() -> None:
    a = action()
    assert a["runs"]["using"] == "composite"
    assert set(a["inputs"]) == {"ssh-key", "pip-spec", "python-version"}
    steps = a["runs"]["steps"]
    assert steps[0]["uses"] == "actions/setup-python@v5"
    install = next(s for s in steps if s.get("name") == "Install wgmesh")
    assert install["env"] == {"WGMESH_PIP_SPEC": "${{ inputs.pip-spec }}"}
    run = _runs(steps)
    assert 'pip install "$WGMESH_PIP_SPEC"' in run
    assert "pip install wgmesh" not in run  # never the bare PyPI name: another project, and the job holds a key
    key = next(s for s in steps if s.get("name") == "SSH key")
    assert key["env"] == {"WGMESH_SSH_KEY": "${{ inputs.ssh-key }}"}
    assert 'echo "WGMESH_SSH_IDENTITY=$key" >> "$GITHUB_ENV"' in run and "umask 077" in run
    assert "wgmesh validate" in run
    assert all(s.get("shell") == "bash" for s in steps if "run" in s)
    assert "${{" not in run  # inputs reach the scripts through env only


def test_workflow_commands() -> None:
    jobs = workflow()["jobs"]
    assert "wgmesh plan --detailed-exitcode --no-color" in _runs(jobs["plan"]["steps"])
    assert "wgmesh graph --live --format mermaid" in _runs(jobs["plan"]["steps"])
    assert "wgmesh apply --auto-approve --json" in _runs(jobs["apply"]["steps"])
    assert "wgmesh plan --detailed-exitcode" in _runs(jobs["drift"]["steps"])
    for job in jobs.values():
        assert "GITHUB_STEP_SUMMARY" in _runs(job["steps"])
    comment = next(s for s in jobs["plan"]["steps"] if s.get("name") == "Comment on the pull request")
    assert comment["env"]["GH_TOKEN"] == "${{ github.token }}"
    assert "gh api" in comment["run"] and "<!-- wgmesh-plan -->" in comment["run"]
    assert "github-actions[bot]" in comment["run"]  # only our own comment is ever updated


def _step(job: str, name: str) -> dict:
    return next(s for s in workflow()["jobs"][job]["steps"] if s.get("name") == name)


def _run_step(tmp_path: Path, job: str, name: str, wgmesh_exit: int, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    """Run one step's real script with a stand-in `wgmesh` that exits with `wgmesh_exit`, the real report.bash."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    fake = bin_dir / "wgmesh"
    fake.write_text(
        "#!/bin/sh\n"
        'case "$1" in graph) printf \'flowchart LR\\n  n0["a"]\\n\'; exit 0;; esac\n'
        f"echo 'Plan: 1 to add, 0 to change, 0 to destroy.'\nexit {wgmesh_exit}\n"
    )
    fake.chmod(0o755)
    (tmp_path / "report.bash").write_text(scaffold.report_text())
    for f in ("step_summary.md", "output", "env"):
        (tmp_path / f).write_text("")
    full = {"PATH": f"{bin_dir}:/usr/local/bin:/usr/bin:/bin", "GITHUB_STEP_SUMMARY": str(tmp_path / "step_summary.md"),
            "GITHUB_OUTPUT": str(tmp_path / "output"), "GITHUB_ENV": str(tmp_path / "env"),
            "WGMESH_REPORT": str(tmp_path / "report.bash"), **(env or {})}
    return subprocess.run(["bash", "-e", "-c", _step(job, name)["run"]], cwd=tmp_path, env=full, capture_output=True,
                          text=True)


@pytest.mark.parametrize("job", ["plan", "drift"])
@pytest.mark.parametrize("plan_exit", [0, 1, 2])
def test_plan_steps_record_the_exit_code_and_never_fail_on_their_own(tmp_path: Path, job: str, plan_exit: int) -> None:
    done = _run_step(tmp_path, job, "Plan", plan_exit)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "output").read_text() == f"exitcode={plan_exit}\n"
    summary = (tmp_path / "step_summary.md").read_text()
    assert "Plan: 1 to add" in summary and "```mermaid\nflowchart LR\n" in summary


@pytest.mark.parametrize(("job", "plan_exit", "expected"), [
    ("plan", "0", 0), ("plan", "2", 0), ("plan", "1", 1), ("plan", "", 1),
    ("drift", "0", 0), ("drift", "2", 2), ("drift", "1", 1),
])  # fmt: skip
def test_result_steps(tmp_path: Path, job: str, plan_exit: str, expected: int) -> None:
    done = _run_step(tmp_path, job, "Result", 0, {"CODE": plan_exit})
    assert done.returncode == expected


@pytest.mark.parametrize("apply_exit", [0, 1])
def test_apply_step_exits_with_wgmesh(tmp_path: Path, apply_exit: int) -> None:
    done = _run_step(tmp_path, "apply", "Apply", apply_exit)
    assert done.returncode == apply_exit
    summary = (tmp_path / "step_summary.md").read_text()
    assert "### wgmesh apply failed (exit status" in summary  # the stand-in writes no JSON


def _git_repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    init_repo(repo)
    subprocess.run(["git", "init", "-q", str(repo)], check=True)  # actionlint finds local actions from the root
    return repo


@pytest.mark.skipif(shutil.which("actionlint") is None and not (ROOT / ".venv/bin/actionlint").exists(),
                    reason="actionlint not installed")  # fmt: skip
def test_workflow_passes_actionlint_with_its_action(tmp_path: Path) -> None:
    exe = shutil.which("actionlint") or str(ROOT / ".venv/bin/actionlint")
    repo = _git_repo(tmp_path)
    done = subprocess.run([exe, "-no-color"], cwd=repo, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    # and actionlint does read the local action: a wrong input name is caught
    path = repo / WORKFLOW_PATH
    path.write_text(path.read_text().replace("ssh-key:", "ssh_key:", 1))
    done = subprocess.run([exe, "-no-color"], cwd=repo, capture_output=True, text=True)
    assert done.returncode != 0 and 'input "ssh_key" is not defined' in done.stdout


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck not installed")
def test_report_sh_passes_shellcheck() -> None:
    done = subprocess.run(["shellcheck", "-"], input=scaffold.report_text(), capture_output=True, text=True)
    assert done.returncode == 0, done.stdout


# ---------------------------------------------------------------------------------------------- report.bash

HOSTILE = "node evil: ```\n</pre><img src=x onerror=alert(1)> [click](https://evil.example) @everyone & more"


def _report(tmp_path: Path, *args: str, files: dict[str, str]) -> str:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    script = tmp_path / "report.bash"
    script.write_text(scaffold.report_text())
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "GITHUB_RUN_ID": "42", "GITHUB_REPOSITORY": "acme/mesh",
           "HEAD_SHA": "a" * 40}
    done = subprocess.run(["bash", str(script), *args], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_report_plan_comment(tmp_path: Path) -> None:
    plan = "  ~ peer gcp\n      ~ persistent_keepalive = 25 -> 21\n\nPlan: 0 to add, 1 to change, 0 to destroy.\n"
    out = _report(tmp_path, "plan", "2", "plan.txt", "graph.mmd",
                  files={"plan.txt": plan, "graph.mmd": 'flowchart LR\n  n0["a"]\n'})
    assert out.startswith("<!-- wgmesh-plan -->\n### wgmesh plan: Plan: 0 to add, 1 to change, 0 to destroy.\n")
    assert "Commit aaaaaaaaaaaa · [workflow run](https://github.com/acme/mesh/actions/runs/42)" in out
    assert '```mermaid\nflowchart LR\n  n0["a"]\n```' in out
    assert "<pre>\n  ~ peer gcp\n      ~ persistent_keepalive = 25 -&gt; 21\n" in out


def test_report_escapes_what_nodes_and_mesh_yaml_say(tmp_path: Path) -> None:
    out = _report(tmp_path, "plan", "1", "plan.txt", "graph.mmd", files={"plan.txt": HOSTILE, "graph.mmd": ""})
    body = out.split("<pre>\n", 1)[1].split("</pre>", 1)[0]
    assert "<" not in body and ">" not in body and "&lt;/pre&gt;&lt;img" in body and "&amp; more" in body
    assert "### wgmesh plan: the plan failed (exit status 1)" in out and "```mermaid" not in out


def test_report_skips_a_graph_that_is_not_ours_and_cuts_long_plans(tmp_path: Path) -> None:
    out = _report(tmp_path, "drift", "2", "plan.txt", "graph.mmd",
                  files={"plan.txt": "x" * 60000 + "\nPlan: 1 to add, 0 to change, 0 to destroy.\n",
                         "graph.mmd": "flowchart LR\n```\n<script>\n"})
    assert "```mermaid" not in out and "cut: the whole text is in the job log" in out
    assert len(out) < 60000
    assert out.startswith("### wgmesh: the live mesh differs from mesh.yaml")


@pytest.mark.skipif(shutil.which("jq") is None, reason="jq not installed (GitHub's runners have it)")
def test_report_apply_table(tmp_path: Path) -> None:
    doc = {
        "type": "apply", "format_version": "1", "summary": {"add": 1, "change": 2, "destroy": 0, "errors": 1},
        "nodes": [
            {"node": "aws", "changes": [{"action": "create"}, {"action": "update"}]},
            {"node": "gcp", "changes": [{"action": "update"}]},
            {"node": "evil|node", "changes": []},
        ],
        "results": [
            {"node": "aws", "outcome": "changed", "message": "1 added, 1 changed, 0 destroyed"},
            {"node": "gcp", "outcome": "failed", "message": "verification failed | rolled back\n<b>x</b>"},
            {"node": "evil|node", "outcome": "unchanged", "message": HOSTILE},
        ],
    }
    import json

    out = _report(tmp_path, "apply", "1", "apply.json", "graph.mmd",
                  files={"apply.json": json.dumps(doc), "graph.mmd": 'flowchart LR\n  n0["a"]\n'})
    lines = out.splitlines()
    assert lines[0] == "### wgmesh apply: failed on 1 node(s)"
    rows = [ln for ln in lines if ln.startswith("| ")]
    assert rows[0] == "| node | result | changes | message |"
    assert rows[1] == "| aws | changed | +1 ~1 -0 | 1 added, 1 changed, 0 destroyed |"
    assert rows[2] == "| gcp | **failed** | +0 ~1 -0 | verification failed &#124; rolled back &lt;b&gt;x&lt;/b&gt; |"
    evil = rows[3]
    assert evil.startswith("| evil&#124;node | unchanged | +0 ~0 -0 | ") and evil.count("|") == 5
    for bad in ("<", ">", "`", "@everyone", "](", "://"):
        assert bad not in evil, bad
    assert "```mermaid" in out
    assert "Warnings:" not in out
    doc["warnings"] = ["aws: a.invalid does not resolve <b>now</b>", "two"]  # review C1: never shown before
    out = _report(tmp_path, "apply", "1", "apply.json", "graph.mmd",
                  files={"apply.json": json.dumps(doc), "graph.mmd": ""})
    assert "Warnings:\n<pre>\naws: a.invalid does not resolve &lt;b&gt;now&lt;/b&gt;\ntwo\n</pre>\n" in out
    # review R2: warnings over the text limit ended the script (jq's SIGPIPE under pipefail), the summary lost
    doc["warnings"] = [f"w{i}: " + "x" * 150 for i in range(2000)]
    out = _report(tmp_path, "apply", "0", "apply.json", "graph.mmd",
                  files={"apply.json": json.dumps(doc), "graph.mmd": 'flowchart LR\n  n0["a"]\n'})
    assert "... (cut: the whole text is in the job log)\n</pre>\n" in out and "```mermaid" in out
    assert len(out) < 60000


def test_mesh_name_for(tmp_path: Path) -> None:
    assert scaffold.mesh_name_for(tmp_path / "prod-eu") == "prod-eu"
    assert scaffold.mesh_name_for(tmp_path / "!!!") == "mesh"


@pytest.mark.skipif(shutil.which("jq") is None, reason="jq not installed (GitHub's runners have it)")
@pytest.mark.parametrize("content", ["", "\n", "null\n", '{"type": "apply"}\n', "not json\n"])
def test_report_apply_without_results_says_it_failed_before_any_change(tmp_path: Path, content: str) -> None:
    """`apply --json` that wrote nothing (jq 1.6, Debian 12's, reads an empty file as no input and exits 0)."""
    out = _report(tmp_path, "apply", "1", "apply.json", "graph.mmd", "err.txt",
                  files={"apply.json": content, "graph.mmd": "", "err.txt": "Error: cannot read mesh.yaml\n"})
    assert out.startswith("### wgmesh apply failed (exit status 1) before any node was changed\n")
    assert "Error: cannot read mesh.yaml" in out and "| node |" not in out


@pytest.mark.skipif(shutil.which("jq") is None, reason="jq not installed (GitHub's runners have it)")
def test_report_passes_no_control_character_to_the_log(tmp_path: Path) -> None:
    """Review E: a node's message with ESC/BEL/CSI sequences reached the apply job's log and step summary raw
    (only [ ] and CR/LF/TAB were taken out): a terminal title, a screen clear, ESC c. None passes now."""
    import json

    nasty = "\x1b]0;PWN\x07\x1b[2J\x1bc\x1bP+q\x1b\\\u009b31m::error::x\r\n\x00\x7f"
    doc = {"type": "apply", "format_version": "1", "summary": {"add": 0, "change": 1, "destroy": 0, "errors": 1},
           "nodes": [{"node": "aws", "changes": [{"action": "update"}]}],
           "results": [{"node": "aws", "outcome": "failed", "message": nasty}]}
    out = _report(tmp_path, "apply", "1", "apply.json", "graph.mmd",
                  files={"apply.json": json.dumps(doc), "graph.mmd": ""})
    plan = _report(tmp_path, "plan", "1", "plan.txt", "graph.mmd", files={"plan.txt": nasty, "graph.mmd": ""})
    for text in (out, plan):
        assert not [c for c in text if (ord(c) < 32 and c != "\n") or 0x7f <= ord(c) <= 0x9f], repr(text)
    assert "| aws | **failed** | +0 ~1 -0 |  0;PWN 2J c P+q \\ 31m::error::x  |" in out
