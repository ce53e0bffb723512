"""The Environment of one CLI run, and the mesh file it names.

`main(argv, env)` may be given an Environment (tests, embedding): it rides on the typer context's object and
every command uses it. Otherwise each command takes the process's streams and a copy of its environment variables.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

from wgmesh.views.env import Environment

if TYPE_CHECKING:
    import typer  # (the quick path, cli/quick.py, runs without it)

DEFAULT_FILE = Path("mesh.yaml")


def environment(ctx: typer.Context, no_color: bool = False) -> Environment:
    """This run's Environment (the one given to `main`, else the process's); --no-color and --json turn colour
    off."""
    given = ctx.find_object(Environment)
    if given is None:
        return Environment.from_system(no_color)
    return dataclasses.replace(given, color=given.color and not no_color)


def mesh_file(file: Path | None, env: Environment) -> Path:
    """--file, else $WGMESH_FILE, else ./mesh.yaml."""
    if file is not None:
        return file
    return Path(env.environ.get("WGMESH_FILE") or DEFAULT_FILE)
