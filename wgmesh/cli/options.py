"""Options that several commands share, declared once."""

from __future__ import annotations

import typer

# remote.transport's READ_TIMEOUT and APPLY_TIMEOUT, for the help text: importing it (and the core modules it
# imports) would cost every start, --help and --version included; tests/cli/test_startup.py keeps them equal.
READ_TIMEOUT = 30.0
APPLY_TIMEOUT = 120.0

FileOpt = typer.Option(
    None, "--file", "-f", help="The mesh file [default: $WGMESH_FILE, else mesh.yaml].", show_default=False
)  # resolved with cli.environment.mesh_file: WGMESH_FILE comes from the run's Environment
NoColor = typer.Option(False, "--no-color", help="Plain text output (also under NO_COLOR or without a terminal).")
Target = typer.Option([], "--target", "-t", help="Only this node (repeatable); its peers are still every node.")
Parallelism = typer.Option(10, "--parallelism", min=1, help="Nodes to work on at once.")
# Upper bounds: longer than anyone waits, and what sockets, timers and the node scripts' arithmetic can count to
MAX_TIMEOUT = 3600.0  # --timeout (connecting)
MAX_WAIT = 86400  # --command-timeout, --lock-timeout, --confirm-timeout: a day
Timeout = typer.Option(10.0, "--timeout", min=0.1, max=MAX_TIMEOUT, help="SSH connect timeout in seconds.")
CommandTimeout = typer.Option(
    None,
    "--command-timeout",
    min=1.0,
    max=float(MAX_WAIT),
    metavar="S",
    envvar="WGMESH_COMMAND_TIMEOUT",
    help=f"Deadline in seconds for each command on a node (default: {READ_TIMEOUT:g} for reads, {APPLY_TIMEOUT:g} "
    "for apply, enroll, rotate and import, more for check with many targets). A node past it is that node's error.",
)
AcceptNew = typer.Option(
    False, "--accept-new-host-keys", help="Trust unknown host keys on first use and add them to known_hosts."
)
Json = typer.Option(False, "--json", help="Machine-readable JSON on stdout.")


def exit_with(status: int) -> None:
    raise typer.Exit(int(status))
