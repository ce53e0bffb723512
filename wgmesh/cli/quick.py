"""validate and render without typer, when their command line is one of the plain shapes (issue 16).

Both only read mesh.yaml and write local files; typer and click take ~25 ms of their ~0.1-0.2 s. `parse()`
recognises exactly these command lines: the command, then its options as declared in app.py (each at most once,
a value as the next argument, `-f X` or `--file X`, never `--file=X`) and render's NODE. Anything else (help, an
unknown or repeated option, a value that starts with '-', `--`, completion) is typer's: `parse` says None and
typer runs as before, with its own messages. tests/cli/test_quick.py keeps the options equal to typer's
declarations and both ways' output, exit status and files equal.

The commands' bodies are here once; app.py's typer commands call them too.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from wgmesh.cli.environment import mesh_file

if TYPE_CHECKING:
    from wgmesh.views.env import Environment

    EnvFor = Callable[[bool], Environment]  # an Environment with colour turned off, or not

# Per command: option -> (parameter, takes a value); the positional argument's parameter, if any
OPTIONS: dict[str, dict[str, tuple[str, bool]]] = {
    "validate": {"--file": ("file", True), "-f": ("file", True), "--json": ("json_out", False),
                 "--no-color": ("no_color", False)},
    "render": {"--all": ("all_nodes", False), "--out": ("out", True), "-o": ("out", True),
               "--file": ("file", True), "-f": ("file", True), "--json": ("json_out", False)},
}
ARGUMENT: dict[str, str] = {"render": "node"}


def parse(args: list[str], environ: Mapping[str, str]) -> tuple[str, dict[str, str | bool]] | None:
    """(command, {parameter: value}) for a plain command line of validate or render; None for typer."""
    if not args or args[0] not in OPTIONS or any(k.endswith("_COMPLETE") for k in environ):
        return None
    command, options = args[0], OPTIONS[args[0]]
    got: dict[str, str | bool] = {}
    i = 1
    while i < len(args):
        arg = args[i]
        if arg.startswith("-"):
            known = options.get(arg)
            if known is None or known[0] in got:
                return None
            name, valued = known
            if valued:
                if i + 1 >= len(args) or not args[i + 1] or args[i + 1].startswith("-"):
                    return None
                got[name] = args[i + 1]
                i += 2
            else:
                got[name] = True
                i += 1
        else:
            name = ARGUMENT.get(command, "")
            if not name or name in got:
                return None
            got[name] = arg
            i += 1
    return command, got


def run(command: str, got: Mapping[str, str | bool]) -> int:
    """Run a command line `parse` recognised, in this process's Environment."""
    import gc

    from wgmesh.commands import common, local  # noqa: F401 (imported before the freeze below)
    from wgmesh.views.env import Environment

    gc.freeze()  # (what the imports made, as the typer path freezes them: cli/entry.py)
    json_out = bool(got.get("json_out"))
    if command == "validate":
        return validate(Environment.from_system, _path(got, "file"), json_out, bool(got.get("no_color")))
    node = got.get("node")
    return render(Environment.from_system, node if isinstance(node, str) else None, bool(got.get("all_nodes")),
                  _path(got, "out"), _path(got, "file"), json_out)


def _path(got: Mapping[str, str | bool], name: str) -> Path | None:
    value = got.get(name)
    return Path(value) if isinstance(value, str) else None


def validate(env_for: EnvFor, file: Path | None, json_out: bool, no_color: bool) -> int:
    from wgmesh.commands.common import guard
    from wgmesh.commands.local import validate as run_validate

    env = env_for(no_color or json_out)
    return int(guard(lambda: run_validate(mesh_file(file, env), env, json_out), env))


def render(env_for: EnvFor, node: str | None, all_nodes: bool, out: Path | None, file: Path | None,
           json_out: bool) -> int:
    from wgmesh.commands.common import guard
    from wgmesh.commands.local import render as run_render

    env = env_for(True)
    return int(guard(lambda: run_render(mesh_file(file, env), node, all_nodes, out, env, json_out), env))
