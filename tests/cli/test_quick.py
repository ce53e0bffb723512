"""validate and render without typer (cli/quick.py): the command lines it takes, the ones it leaves to typer, and
the same output, exit status and files either way."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from wgmesh.cli import quick

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "mesh.example"


def _declared(command: str) -> tuple[dict[str, tuple[str, bool]], str]:
    """The options of `command` as app.py declares them to typer (option -> (parameter, takes a value)), and
    its positional argument's name ('' for none)."""
    import typer.main

    from wgmesh.cli.app import app

    cmd: Any = typer.main.get_command(app).commands[command]  # type: ignore[attr-defined]
    options: dict[str, tuple[str, bool]] = {}
    argument = ""
    for p in cmd.params:
        if p.param_type_name == "argument":
            argument = p.name
            continue
        for opt in (*p.opts, *p.secondary_opts):
            options[opt] = (p.name, not p.is_flag)
    return options, argument


@pytest.mark.parametrize("command", sorted(quick.OPTIONS))
def test_the_options_are_typers_own(command: str) -> None:
    """An option added to app.py's command and not here would send that command line to typer (never a wrong
    result); one renamed there and not here would be taken here: this keeps the two equal."""
    options, argument = _declared(command)
    assert quick.OPTIONS[command] == options
    assert quick.ARGUMENT.get(command, "") == argument


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["validate"], ("validate", {})),
        (["validate", "-f", "m.yaml", "--json"], ("validate", {"file": "m.yaml", "json_out": True})),
        (["validate", "--no-color", "--file", "x/m.yaml"], ("validate", {"no_color": True, "file": "x/m.yaml"})),
        (["render", "aws"], ("render", {"node": "aws"})),
        (["render", "--all", "-o", "out", "-f", "m.yaml"],
         ("render", {"all_nodes": True, "out": "out", "file": "m.yaml"})),
        (["render", "--out", "d", "--all"], ("render", {"out": "d", "all_nodes": True})),
        (["render", "aws", "--json"], ("render", {"node": "aws", "json_out": True})),
    ],
)
def test_plain_command_lines_are_taken(args: list[str], expected: Any) -> None:
    assert quick.parse(args, {}) == expected


@pytest.mark.parametrize(
    "args",
    [
        [], ["plan"], ["--version"], ["lab", "up"], ["validate", "--help"], ["validate", "-h"], ["render", "--help"],
        ["validate", "--file=m.yaml"],  # typer's spelling, not this one's
        ["validate", "-fm.yaml"],
        ["validate", "-f"],  # a value missing: typer's message
        ["validate", "-f", ""],  # an empty path
        ["validate", "-f", "-x"],  # a value that looks like an option
        ["validate", "-f", "a", "-f", "b"],  # given twice
        ["validate", "--json", "--json"],
        ["validate", "extra"],  # validate takes no argument
        ["render", "a", "b"],  # one NODE only
        ["render", "--", "a"],
        ["render", "--bogus"],
        ["render", "--no-color", "a"],  # validate's option, not render's
        ["render", "--all", "--out"],
    ],
)
def test_anything_else_is_left_to_typer(args: list[str]) -> None:
    assert quick.parse(args, {}) is None


def test_shell_completion_is_left_to_typer() -> None:
    assert quick.parse(["validate"], {"_WGMESH_COMPLETE": "bash_source"}) is None


# ----------------------------------------------------------------------------------------- the same result

_BY_QUICK = """
import sys
from wgmesh.cli import quick
args = sys.argv[1:]
taken = quick.parse(args, {})
assert taken is not None, args
code = quick.run(*taken)
sys.stdout.flush()
print("\\n@@typer imported:", "typer" in sys.modules, file=sys.stderr)
sys.exit(code)
"""

_BY_TYPER = """
import sys
from wgmesh.cli.app import main
sys.exit(main(sys.argv[1:]))
"""


def _both(tmp_path: Path, args: list[str]) -> list[tuple[int, str, str, dict[str, bytes]]]:
    """Each way in a fresh interpreter, in its own copy of the mesh repo: exit status, stdout, stderr (paths
    made alike) and the files written under out/."""
    results = []
    for name, code in (("quick", _BY_QUICK), ("typer", _BY_TYPER)):
        repo = tmp_path / "repo"
        shutil.rmtree(repo, ignore_errors=True)
        shutil.copytree(tmp_path / "source", repo)
        done = subprocess.run([sys.executable, "-c", code, *args], cwd=repo, capture_output=True, text=True,
                              timeout=60, env={"PATH": "/usr/bin:/bin", "NO_COLOR": "1"}, check=False)
        err = done.stderr
        if name == "quick":
            err, _, marker = err.rpartition("\n@@typer imported: ")
            assert marker.strip() == "False", "the quick way imported typer"
        out_dir = repo / "out"
        files = {p.name: p.read_bytes() for p in sorted(out_dir.glob("*"))} if out_dir.is_dir() else {}
        results.append((done.returncode, done.stdout, err, files))
    return results


BROKEN = "version: 1\nmesh:\n  name: x\n  interface: wg0\n  network: 10.0.0.0/24\nnodes:\n  a:\n    address: 10.9.0.1\n"


@pytest.mark.parametrize(
    "args",
    [
        ["validate"],
        ["validate", "--json"],
        ["validate", "-f", "broken.yaml"],
        ["validate", "-f", "broken.yaml", "--json"],
        ["validate", "-f", "missing.yaml"],
        ["render", "aws"],
        ["render", "aws", "--json"],
        ["render", "nosuchnode"],
        ["render"],
        ["render", "--all", "--out", "out"],
        ["render", "--all", "-o", "out", "--json"],
        ["render", "--all"],
        ["render", "aws", "--all", "--out", "out"],
        ["render", "aws", "--out", "out/aws.conf"],
        ["render", "--all", "--out", "out", "-f", "broken.yaml"],
    ],
)
def test_quick_and_typer_give_the_same_output_status_and_files(tmp_path: Path, args: list[str]) -> None:
    shutil.copytree(EXAMPLE, tmp_path / "source")
    (tmp_path / "source" / "broken.yaml").write_text(BROKEN)
    (tmp_path / "source" / "out").mkdir()
    by_quick, by_typer = _both(tmp_path, args)
    assert by_quick == by_typer
    code, out, err, files = by_quick
    assert out or err  # (each says something)
    assert (len(files) == 4) == (code == 0 and "--all" in args), files.keys()


def test_the_console_script_takes_the_quick_way_for_plain_lines_only(tmp_path: Path) -> None:
    """The `wgmesh` entry (cli/entry.py) in a fresh interpreter: which way each command line went."""
    probe = (
        "import sys\n"
        "from wgmesh.cli import entry\n"
        "sys.argv = ['wgmesh', *sys.argv[1:]]\n"
        "entry.run()\n"
    )
    mesh = str(EXAMPLE / "mesh.yaml")

    def imported_typer(*args: str) -> tuple[int, bool]:
        done = subprocess.run([sys.executable, "-X", "importtime", "-c", probe, *args], cwd=tmp_path,
                              capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin"}, check=False)
        modules = {line.rpartition("|")[2].strip() for line in done.stderr.splitlines() if "|" in line}
        return done.returncode, "typer" in modules

    assert imported_typer("validate", "-f", mesh) == (0, False)
    assert imported_typer("render", "--all", "--out", "o", "-f", mesh) == (0, False)
    assert imported_typer("validate", "--file=" + mesh) == (0, True)
    assert imported_typer("validate", "-f", mesh, "--bogus") == (1, True)
    assert json.loads(subprocess.run([sys.executable, "-c", probe, "validate", "--json", "-f", mesh],
                                     capture_output=True, text=True, timeout=60, check=True).stdout)["valid"]


def test_an_install_made_before_still_starts(tmp_path: Path) -> None:
    """A venv installed before cli/entry.py has a `wgmesh` script that calls wgmesh.cli.app:run."""
    done = subprocess.run([sys.executable, "-c", "import sys; sys.argv[0] = 'wgmesh'; from wgmesh.cli.app import run; "
                           "run()", "validate", "-f", str(EXAMPLE / "mesh.yaml")], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0 and ": valid." in done.stdout, done.stderr
