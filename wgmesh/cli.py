"""The typer app: one short function per command, each calling the library."""

from __future__ import annotations

import typer

from wgmesh import __version__

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Declarative WireGuard full meshes.")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"wgmesh {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """Declarative WireGuard full meshes: validate, plan and apply over SSH, public keys only."""


def main() -> None:
    app()
