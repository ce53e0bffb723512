"""validate, render and init through the real typer app (no hosts involved)."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from wgmesh.cli.app import app, main
from wgmesh.core import render as render_mod
from wgmesh.meshfile import load
from wgmesh.views.env import Environment

EXAMPLE = Path(__file__).resolve().parents[2] / "mesh.example"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    dest = tmp_path / "mesh"
    shutil.copytree(EXAMPLE, dest)
    return dest


def _run(*args: str) -> tuple[int, str, str]:
    r = CliRunner().invoke(app, list(args))
    return r.exit_code, r.stdout, r.stderr


def test_validate_the_example(repo: Path) -> None:
    code, out, _ = _run("validate", "-f", str(repo / "mesh.yaml"))
    assert code == 0 and "valid" in out and "4 node(s), 4 enrolled" in out


@pytest.mark.parametrize("node", ["aws", "azure", "gcp", "aliyun"])
def test_render_each_node_of_the_example(repo: Path, node: str) -> None:
    code, out, _ = _run("render", node, "-f", str(repo / "mesh.yaml"))
    assert code == 0
    mesh, _ = load(repo / "mesh.yaml")
    assert out == render_mod.render_node(mesh, node)
    assert "PrivateKey" not in out and f"node {node}" in out


def test_render_all_writes_one_file_per_node(repo: Path, tmp_path: Path) -> None:
    out_dir = tmp_path / "out"
    code, out, _ = _run("render", "--all", "--out", str(out_dir), "-f", str(repo / "mesh.yaml"))
    assert code == 0 and "Wrote 4 config(s)" in out
    assert sorted(p.name for p in out_dir.iterdir()) == ["aliyun.conf", "aws.conf", "azure.conf", "gcp.conf"]


@pytest.mark.parametrize(
    ("args", "message"),
    [(("render", "nope"), "no node 'nope'"), (("render",), "name a node to render"),
     (("render", "--all"), "--all needs --out DIR"), (("render", "aws", "--all", "--out", "x"), "not both")],
)
def test_render_usage_errors(repo: Path, args: tuple[str, ...], message: str) -> None:
    code, _, err = _run(*args, "-f", str(repo / "mesh.yaml"))
    assert code == 1 and message in err and "Traceback" not in err


def test_wgmesh_file_env_points_elsewhere(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WGMESH_FILE", str(repo / "mesh.yaml"))
    code, out, _ = _run("validate")
    assert code == 0 and "valid" in out


def test_init_scaffolds_a_valid_repo_and_refuses_to_overwrite(tmp_path: Path) -> None:
    target = tmp_path / "newmesh"
    code, out, _ = _run("init", str(target))
    assert "created" in out
    assert code == 0
    for name in ("mesh.yaml", "known_hosts", ".gitignore", ".github/workflows/wgmesh.yml"):
        assert (target / name).exists(), name
    assert _run("validate", "-f", str(target / "mesh.yaml"))[0] == 0
    code, _, err = _run("init", str(target))
    assert code == 1 and "already exists; use --force" in err
    assert _run("init", str(target), "--force")[0] == 0


def test_a_mesh_repo_with_another_versions_pipeline_is_told_how_to_refresh_it(tmp_path: Path) -> None:
    """Review U: an upgrade left the repo's report.bash as it was (without this version's fixes), and nothing
    said so."""
    target = tmp_path / "m"
    assert _run("init", str(target))[0] == 0
    code, _, err = _run("validate", "-f", str(target / "mesh.yaml"))
    assert code == 0 and "init --force" not in err
    report = target / ".github/actions/wgmesh-setup/report.bash"
    report.write_text(report.read_text().replace("esc()", "old_esc()"))
    code, _, err = _run("validate", "-f", str(target / "mesh.yaml"))
    assert code == 0
    assert f"{report}: not what this wgmesh writes (made by another version, or changed by hand); `wgmesh init " \
           f"--force {target}` refreshes the pipeline's files, the workflow too (review its diff), and keeps " \
           "mesh.yaml, known_hosts and .gitignore" in err
    code, out, _ = _run("init", str(target), "--force")
    assert code == 0 and f"updated {report}" in out and f"kept {target / 'mesh.yaml'}" in out
    assert "init --force" not in _run("validate", "-f", str(target / "mesh.yaml"))[2]


def test_init_force_keeps_a_linked_mesh_yaml_and_quotes_the_folder_it_names(tmp_path: Path) -> None:
    """Review R4: the warning named `init --force my mesh` (two words for the shell), and init --force refused a
    mesh.yaml that links to the real file, which it would keep anyway."""
    target = tmp_path / "my mesh"
    assert _run("init", str(target))[0] == 0
    (target / "meshes").mkdir()
    (target / "mesh.yaml").rename(target / "meshes" / "prod.yaml")
    (target / "mesh.yaml").symlink_to("meshes/prod.yaml")
    report = target / ".github/actions/wgmesh-setup/report.bash"
    report.write_text("# older\n")
    err = _run("validate", "-f", str(target / "mesh.yaml"))[2]
    assert f"`wgmesh init --force '{target}'`" in err
    code, out, err = _run("init", str(target), "--force")
    assert code == 0, err
    assert f"kept {target / 'mesh.yaml'}" in out and (target / "mesh.yaml").is_symlink()
    (target / "known_hosts").unlink()
    (target / "known_hosts").symlink_to(tmp_path / "nowhere")  # dangling: init would write through it
    code, _, err = _run("init", str(target), "--force")
    assert code == 1 and "is a symbolic link" in err and not (tmp_path / "nowhere").exists()


def test_init_of_a_file_or_an_unwritable_place_is_one_clear_line(tmp_path: Path) -> None:
    """`init FILE --force` said "FILE already exists; use --force to overwrite"; `init /proc/xx` was an internal
    error (review A6, A5)."""
    target = tmp_path / "afile"
    target.write_text("x")
    code, _, err = _run("init", str(target), "--force")
    assert code == 1 and f"{target} is a file, not a folder" in err and "--force" not in err
    code, _, err = _run("init", "/proc/wgmesh-no-such-dir")
    assert code == 1 and "cannot write /proc/wgmesh-no-such-dir" in err and "internal error" not in err


def test_init_writes_through_no_link(tmp_path: Path) -> None:
    """A dangling link as the folder said "already exists; use --force" even with --force; a link planted as
    DIR/mesh.yaml was written through, creating its target anywhere (review R1)."""
    dangling = tmp_path / "d"
    dangling.symlink_to(tmp_path / "nowhere")
    code, _, err = _run("init", str(dangling), "--force")
    assert code == 1 and "is a symbolic link to nothing" in err
    repo = tmp_path / "r"
    repo.mkdir()
    (repo / "mesh.yaml").symlink_to(tmp_path / "planted")
    code, _, err = _run("init", str(repo))
    assert code == 1 and f"{repo / 'mesh.yaml'} is a symbolic link" in err
    assert not (tmp_path / "planted").exists() and not (tmp_path / "nowhere").exists()
    (repo / "mesh.yaml").unlink()
    (repo / ".github").mkdir()
    (tmp_path / "outside").mkdir()
    (repo / ".github" / "workflows").symlink_to(tmp_path / "outside")  # a folder on the way
    code, _, err = _run("init", str(repo))
    assert code == 1 and f"{repo / '.github' / 'workflows'} is a symbolic link" in err
    assert list((tmp_path / "outside").iterdir()) == []


# ------------------------------------------------------------------------------------------------ --json, Environment


def _main(*args: str, environ: dict[str, str] | None = None) -> tuple[int, str, str]:
    """The real entry point with an injected Environment: no process stream or variable is read."""
    env = Environment(io.StringIO(), io.StringIO(), environ=environ or {})
    code = main(list(args), env)
    return code, env.stdout.getvalue(), env.stderr.getvalue()  # type: ignore[attr-defined]


def test_main_takes_the_mesh_file_from_the_injected_environment(repo: Path) -> None:
    code, out, err = _main("validate", environ={"WGMESH_FILE": str(repo / "mesh.yaml")})
    assert code == 0 and "4 node(s), 4 enrolled" in out, err
    code, _, err = _main("validate", environ={})
    assert code == 1 and "mesh.yaml" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("plan", "--detailed-exitcode", "--bogus"), "Error: No such option: --bogus"),
        (("plan", "--timeout", "1e19"), "Error: Invalid value for '--timeout'"),
        (("nosuch",), "Error: No such command 'nosuch'."),
    ],
)
def test_a_command_line_error_is_one_line_and_exit_1(args: tuple[str, ...], message: str) -> None:
    """Not click's exit 2 with a usage block: 2 is `--detailed-exitcode`'s "changes", and the pipeline read a typo
    in a CI job's options as a plan to review (review A2)."""
    code, out, err = _main(*args, environ={})
    assert code == 1 and out == ""
    assert err.startswith(message) and err.count("\n") == 1, err
    assert err.rstrip().endswith("--help`)")


def test_a_group_without_its_command_shows_its_help_and_exits_1() -> None:
    code, _, err = _main("lab", environ={})
    assert code == 1 and err.startswith("Usage: wgmesh lab ") and "Commands:" in err


def test_validate_json(repo: Path) -> None:
    code, out, _ = _main("validate", "--json", "-f", str(repo / "mesh.yaml"))
    doc = json.loads(out)
    assert code == 0 and (doc["format_version"], doc["type"], doc["valid"]) == ("1", "validate", True)
    assert doc["mesh"]["nodes"] == 4 and doc["errors"] == []
    bad = repo / "bad.yaml"
    bad.write_text((repo / "mesh.yaml").read_text().replace("address: 10.0.0.1", "address: 10.0.0.300", 1))
    code, out, err = _main("validate", "--json", "-f", str(bad))
    doc = json.loads(out)
    assert code == 1 and doc["valid"] is False and doc["errors"][0]["line"] > 0
    assert "bad.yaml:" in err and "nothing was changed" in err


def test_render_json(repo: Path, tmp_path: Path) -> None:
    code, out, _ = _main("render", "aws", "--json", "-f", str(repo / "mesh.yaml"))
    mesh, _ = load(repo / "mesh.yaml")
    assert code == 0
    assert json.loads(out) == {"format_version": "1", "type": "render", "node": "aws",
                               "config": render_mod.render_node(mesh, "aws"), "path": None}
    code, out, _ = _main("render", "--all", "--out", str(tmp_path / "o"), "--json", "-f", str(repo / "mesh.yaml"))
    assert code == 0 and [n["node"] for n in json.loads(out)["nodes"]] == ["aws", "azure", "gcp", "aliyun"]


def test_init_json(tmp_path: Path) -> None:
    code, out, _ = _main("init", str(tmp_path / "m"), "--json")
    doc = json.loads(out)
    assert code == 0 and doc["type"] == "init" and str(tmp_path / "m" / "mesh.yaml") in doc["created"]


def test_every_reporting_command_has_json() -> None:
    for cmd in ("plan", "apply", "check", "status", "enroll", "rotate", "import", "validate", "render", "init"):
        r = CliRunner().invoke(app, [cmd, "--help"])
        assert r.exit_code == 0 and "--json" in r.output, cmd


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (("plan", "--command-timeout", "1e19"), "--command-timeout"),
        (("plan", "--command-timeout", "86401"), "--command-timeout"),
        (("plan", "--timeout", "1e19"), "--timeout"),
        (("apply", "--lock-timeout", "99999999999999999999"), "--lock-timeout"),
        (("apply", "--confirm-timeout", "86401"), "--confirm-timeout"),
    ],
)
def test_a_timeout_past_what_can_be_counted_is_a_usage_error(repo: Path, args: tuple[str, ...], option: str) -> None:
    """A timeout longer than a day (an hour to connect) is refused before anything connects: sockets, timers and
    the node scripts' arithmetic cannot count to 1e19 seconds (a read would stop itself at once)."""
    code, _, err = _run(*args, "-f", str(repo / "mesh.yaml"))
    assert code == 2 and option in err and "less than or equal to" in err, err


# ------------------------------------------------------------------------------------------------ closed output


def _console(repo: Path, *args: str, **kw: object) -> subprocess.Popen[bytes]:
    """The console script's entry (wgmesh.cli.entry:run) in a new process."""
    code = "import sys; from wgmesh.cli.entry import run; sys.argv[0] = 'wgmesh'; run()"
    return subprocess.Popen([sys.executable, "-c", code, *args, "-f", str(repo / "mesh.yaml")], **kw)  # type: ignore[call-overload]


def test_output_closed_by_its_reader_ends_quietly_with_exit_1(repo: Path) -> None:
    """`wgmesh graph | true`: "internal error: BrokenPipeError ... please report it" (review R1). The reader went
    away: nothing more to say, and exit 1 (the output is not whole)."""
    proc = _console(repo, "graph", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # before wgmesh writes: its write meets a closed pipe
    err = proc.stderr.read()
    assert proc.wait(timeout=60) == 1
    assert err == b"", err


def test_a_stream_closed_from_the_start_is_no_traceback(repo: Path) -> None:
    """`wgmesh validate >&-`: Python starts with sys.stdout None, and the import raised (review R1)."""
    proc = _console(repo, "validate", stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                    preexec_fn=lambda: os.close(1))
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0 and b"Traceback" not in err, err


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full")
@pytest.mark.parametrize("command", ["validate", "graph"])
def test_a_full_disk_under_the_output_is_named_not_a_bug(repo: Path, command: str) -> None:
    """`wgmesh plan > /dev/full` said "internal error: OSError: [Errno 28] ... please report it" (review C4)."""
    with open("/dev/full", "w") as full:
        proc = _console(repo, command, stdout=full, stderr=subprocess.PIPE)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert err.decode().splitlines()[-1] == "Error: cannot write the output: No space left on device"
