"""A fast start (issue 16): the command line imports only what the command that runs needs.

These are behaviour tests, not timings (bench/startup.py times them): which modules a fresh interpreter holds
after importing the CLI, after `--version`, after `validate`; and that the plain option converter
(cli/fastparams.py) gives exactly what typer's own pydantic converter gives, errors included.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("paramiko", "rich", "pydantic", "ruamel", "nacl")


def _modules_after(code: str) -> tuple[list[str], str]:
    """Run `code` in a fresh interpreter; the heavy top-level packages and wgmesh modules it ended up with."""
    probe = (
        "import sys, json\n"
        f"{code}\n"
        "mods = sorted({m.split('.')[0] for m in sys.modules} & set(" + repr(HEAVY) + "))\n"
        "mods += sorted(m for m in sys.modules if m.startswith(('wgmesh.commands', 'wgmesh.meshfile',"
        " 'wgmesh.remote.ssh', 'wgmesh.views.human', 'wgmesh.views.json')))\n"
        "print('\\n@@' + json.dumps(mods))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=60,
                          env={"PATH": "/usr/bin:/bin", "NO_COLOR": "1"}, check=False)
    assert done.returncode == 0, done.stderr
    out, _, mods = done.stdout.rpartition("\n@@")
    return json.loads(mods), out


def test_importing_the_cli_imports_no_command_and_no_heavy_library() -> None:
    mods, _ = _modules_after("import wgmesh.cli.app")
    assert mods == []
    mods, _ = _modules_after("import sys, wgmesh.cli.app\nassert 'wgmesh.remote.transport' not in sys.modules")


def test_version_runs_on_typer_alone() -> None:
    mods, out = _modules_after("from wgmesh.cli.app import main\nrc = main(['--version'])\nassert rc == 0, rc")
    assert out.startswith("wgmesh ")
    assert mods == []


def test_validate_needs_no_ssh_no_rich_and_no_pydantic() -> None:
    mesh = ROOT / "mesh.example" / "mesh.yaml"
    mods, out = _modules_after(f"from wgmesh.cli.app import main\nrc = main(['validate', '-f', {str(mesh)!r}])\n"
                               "assert rc == 0, rc")
    assert ": valid." in out
    assert not {"paramiko", "rich", "pydantic", "nacl", "ruamel"} & set(mods)  # (ruamel: mesh.example is plain YAML)


def test_render_all_imports_no_planner_and_no_live_state(tmp_path: Path) -> None:
    mesh = ROOT / "mesh.example" / "mesh.yaml"
    check = "\nassert not {'wgmesh.core.plan', 'wgmesh.core.state', 'wgmesh.core.status'} & set(sys.modules)"
    mods, out = _modules_after(f"from wgmesh.cli.app import main\nrc = main(['render', '--all', '--out', "
                               f"{str(tmp_path)!r}, '-f', {str(mesh)!r}])\nassert rc == 0, rc{check}")
    assert "Wrote 4 config(s)" in out and len(list(tmp_path.glob("*.conf"))) == 4
    assert not {"paramiko", "pydantic", "nacl"} & set(mods)
    mods, _ = _modules_after(f"from wgmesh.cli.app import main\nrc = main(['validate', '-f', {str(mesh)!r}])\n"
                             f"assert rc == 0, rc{check}")


def test_ssh_commands_still_find_paramiko_lazily() -> None:
    mods, _ = _modules_after("import wgmesh.remote.ssh")
    assert "paramiko" not in mods


# ------------------------------------------------------------------------------------ the plain converter


def _params() -> list[Any]:
    import typer.main

    from wgmesh.cli.app import app

    out: list[Any] = []

    def walk(cmd: Any) -> None:
        out.extend(p for p in cmd.params if hasattr(p, "type_descriptor"))
        for sub in getattr(cmd, "commands", {}).values():
            walk(sub)

    walk(typer.main.get_command(app))
    return out


VALUES: list[Any] = [None, True, False, 0, 1, 7, 65535, 65536, 10.0, 0.05, "", "0", "1", "5", "10", "65536",
                     "-3", "+3", " 10", "1_0", "1.5", "0.05", ".5", "5.", "1e3", "inf", "x", "٣", "a/b", "a//b",
                     "dir/", "./x", "~/x", "mesh.yaml", ("a", "b"), ["c"], (), ("a", 1)]


def _convert(build: Any, param: Any, value: Any) -> tuple[str, Any]:
    import click
    from typer._click.exceptions import BadParameter

    ctx = click.Context(click.Command("x"))
    try:
        return "ok", build(param.type_descriptor).coerce(value, param=param, ctx=ctx)
    except BadParameter as e:
        return "error", e.format_message()
    except Exception as e:  # what typer's own converter raises, the plain one must raise too
        return "raised", type(e).__name__


def test_the_plain_converter_agrees_with_typers_own_on_every_option_of_wgmesh() -> None:
    import typer.core
    from typer import _coercion

    from wgmesh.cli import fastparams

    fastparams.install()
    fast, slow = typer.core.build_runtime_param, _coercion.build_runtime_param
    assert fast is not slow, "cli/fastparams.py no longer hooks typer: pydantic is back on every command"
    seen = set()
    for param in _params():
        d = param.type_descriptor
        key = (repr(d.annotation), d.parameter_info.min, d.parameter_info.max, param.multiple, param.nargs)
        if key in seen:
            continue
        seen.add(key)
        for value in VALUES:
            assert _convert(fast, param, value) == _convert(slow, param, value), (key, value)
    assert len(seen) >= 6


@pytest.mark.parametrize(("argv", "message"), [
    (["plan", "--parallelism", "0"], "Input should be greater than or equal to 1"),
    (["plan", "--timeout", "abc"], "Input should be a valid number"),
])
def test_a_bad_value_gets_typers_own_message(argv: list[str], message: str) -> None:
    from typer.testing import CliRunner

    from wgmesh.cli.app import app

    r = CliRunner().invoke(app, argv, env={"COLUMNS": "200"})
    assert r.exit_code == 2
    assert message in " ".join(r.output.replace("│", " ").split())


def test_the_lazy_lab_group_says_what_wgmesh_lab_says() -> None:
    from wgmesh.cli.app import LAB_HELP
    from wgmesh.lab.cli import app as lab_app

    assert lab_app.info.help == LAB_HELP


def test_wgmesh_lab_lists_and_runs_the_lab_commands() -> None:
    from typer.testing import CliRunner

    from wgmesh.cli.app import app

    r = CliRunner().invoke(app, ["lab", "--help"])
    assert r.exit_code == 0
    for cmd in ("up", "down", "status", "reboot"):
        assert cmd in r.output
    r = CliRunner().invoke(app, ["lab", "status", "--help"])
    assert r.exit_code == 0 and "--dir" in r.output


@pytest.mark.parametrize("cmd", ["validate", "render", "init", "plan", "apply", "check", "status", "enroll", "rotate",
                                 "import", "graph", "plan-key"])
def test_a_command_run_through_main_is_the_same_command(cmd: str, capsys: pytest.CaptureFixture[str]) -> None:
    """main() builds only the named command (a fast start): its help is the whole app's, word for word."""
    from wgmesh.cli.app import _for, app, main

    assert _for([cmd]) is not app and len(_for([cmd]).registered_commands) == 1
    assert main([cmd, "--help"]) == 0
    fast = capsys.readouterr().out
    with pytest.raises(SystemExit):
        app(args=[cmd, "--help"], prog_name="wgmesh")
    assert fast == capsys.readouterr().out and f"Usage: wgmesh {cmd} " in fast
    for args in ([], ["--help"], ["lab", "status"], ["node", "add"], ["nope"], [f"{cmd}x"]):
        assert _for(args) is app


def test_the_deadlines_in_the_help_are_the_transports() -> None:
    from wgmesh.cli import options
    from wgmesh.remote import transport

    assert (options.READ_TIMEOUT, options.APPLY_TIMEOUT) == (transport.READ_TIMEOUT, transport.APPLY_TIMEOUT)


def _run_script(setup: str, main: str) -> subprocess.CompletedProcess[str]:
    """The console script (`wgmesh.cli.entry.run`) in a fresh interpreter, after `setup`, with `main` (an
    expression: it prints and gives the exit status) in place of the typer app."""
    probe = (f"{setup}\nimport wgmesh.cli.app as app\napp.main = lambda: {main}\n"
             "from wgmesh.cli import entry\nentry.run()\n")
    return subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=60,
                          check=False)


def test_the_console_script_collects_garbage_less_often_and_never_walks_the_imports() -> None:
    """run() (the `wgmesh` script, not main(), which tests and library callers use) freezes what the imports made
    and raises the first collection threshold; collection stays on."""
    done = _run_script("import gc", "print(gc.get_threshold()[0], gc.get_freeze_count() > 1_000, gc.isenabled()) or 0")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["20000", "True", "True"]


@pytest.mark.parametrize(
    ("setup", "teardown"),
    [
        ("", False),  # a local command: output flushed, no teardown
        ("import paramiko", True),  # paramiko's atexit joins its transports' threads
        ("import threading; threading.Thread(target=__import__('time').sleep, args=(0.3,)).start()", True),
    ],
)
def test_the_console_script_skips_the_teardown_only_without_ssh_and_threads(setup: str, teardown: bool) -> None:
    done = _run_script(f"{setup}\nimport atexit\natexit.register(lambda: print('teardown'))",
                       "print('output', end='') or 3")
    assert done.returncode == 3, done.stderr
    assert done.stdout == ("outputteardown\n" if teardown else "output")
