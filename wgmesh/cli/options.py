"""Options that several commands share, declared once."""

from __future__ import annotations

from pathlib import Path

import typer

FileOpt = typer.Option(
    Path("mesh.yaml"), "--file", "-f", envvar="WGMESH_FILE", help="The mesh file.", show_default=True
)
NoColor = typer.Option(False, "--no-color", help="Plain text output (also under NO_COLOR or without a terminal).")
Target = typer.Option([], "--target", "-t", help="Only this node (repeatable); its peers are still every node.")
Parallelism = typer.Option(10, "--parallelism", min=1, help="Nodes to work on at once.")
Timeout = typer.Option(10.0, "--timeout", min=0.1, help="SSH connect timeout in seconds.")
AcceptNew = typer.Option(
    False, "--accept-new-host-keys", help="Trust unknown host keys on first use and add them to known_hosts."
)
Json = typer.Option(False, "--json", help="Machine-readable JSON on stdout.")


def exit_with(status: int) -> None:
    raise typer.Exit(int(status))
