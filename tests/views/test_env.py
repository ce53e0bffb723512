"""views/env.py: the Environment (streams, terminal-ness, colour, stdin, environment variables)."""

from __future__ import annotations

import io

import pytest

from wgmesh.views.env import Environment


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    ("tty", "no_color_env", "flag", "color"),
    [
        (True, None, False, True),
        (True, "1", False, False),
        (True, "", False, True),  # no-color.org: set and not empty
        (True, None, True, False),
        (False, None, False, False),
    ],
)
def test_environment_colour_rules(
    monkeypatch: pytest.MonkeyPatch, tty: bool, no_color_env: str | None, flag: bool, color: bool
) -> None:
    monkeypatch.setattr("sys.stdout", _Tty() if tty else io.StringIO())
    monkeypatch.setattr("sys.stdin", _Tty())
    environ = {} if no_color_env is None else {"NO_COLOR": no_color_env}
    env = Environment.from_system(no_color=flag, environ=environ)
    assert env.color is color
    assert env.stdin_isatty is True


def test_from_system_copies_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WGMESH_FILE", "elsewhere.yaml")
    env = Environment.from_system()
    monkeypatch.setenv("WGMESH_FILE", "later.yaml")
    assert env.environ["WGMESH_FILE"] == "elsewhere.yaml"


def test_an_injected_environment_reads_its_own_stdin_and_variables() -> None:
    env = Environment(io.StringIO(), io.StringIO(), stdin=io.StringIO("yes\r\nno\n"), environ={"WGMESH_DEBUG": "1"})
    assert (env.read_line(), env.read_line(), env.read_line()) == ("yes", "no", None)
    assert env.debug
    quiet = Environment(io.StringIO(), io.StringIO(), environ={})
    assert quiet.read_line() is None, "no stdin given: end of input, never the process's"
    assert not quiet.debug and not quiet.color and not quiet.stdin_isatty


def test_the_console_follows_the_colour_setting() -> None:
    for color in (False, True):
        env = Environment(io.StringIO(), io.StringIO(), color=color, environ={})
        env.console().print("[red]x[/]")
        assert ("\x1b[" in env.stdout.getvalue()) is color  # type: ignore[attr-defined]
