"""`wgmesh check` and `wgmesh status`: typer command functions, registered in cli.py with
`app.command()(cli_observe.check)` and `app.command()(cli_observe.status)`."""

from __future__ import annotations

from pathlib import Path

import typer

from wgmesh.operations import ConnectOptions, guard
from wgmesh.view import Environment

FileOpt = typer.Option(
    Path("mesh.yaml"), "--file", "-f", envvar="WGMESH_FILE", help="The mesh file.", show_default=True
)
NoColor = typer.Option(False, "--no-color", help="Plain text output (also under NO_COLOR or without a terminal).")
Target = typer.Option([], "--target", "-t", help="Only from this node (repeatable); its peers are all nodes.")
Parallelism = typer.Option(10, "--parallelism", min=1, help="Nodes to work on at once.")
Timeout = typer.Option(10.0, "--timeout", min=0.1, help="SSH connect timeout in seconds.")
AcceptNew = typer.Option(
    False, "--accept-new-host-keys", help="Trust unknown host keys on first use and add them to known_hosts."
)
Json = typer.Option(False, "--json", help="Machine-readable JSON on stdout.")


def _exit(status: int) -> None:
    raise typer.Exit(int(status))


def check(
    file: Path = FileOpt,
    json_out: bool = Json,
    target: list[str] = Target,
    parallelism: int = Parallelism,
    timeout: float = Timeout,
    accept_new_host_keys: bool = AcceptNew,
    no_color: bool = NoColor,
) -> None:
    """Ping every node's mesh addresses and subnet probes from every other node. Exit 1 on any failure."""
    from wgmesh.observe import ObserveOptions, run_check

    env = Environment.from_system(no_color or json_out)
    opts = ObserveOptions(file, ConnectOptions(parallelism, timeout, accept_new_host_keys, tuple(target)), json_out)
    _exit(guard(lambda: run_check(opts, env), env))


def status(
    file: Path = FileOpt,
    json_out: bool = Json,
    target: list[str] = Target,
    parallelism: int = Parallelism,
    timeout: float = Timeout,
    accept_new_host_keys: bool = AcceptNew,
    no_color: bool = NoColor,
) -> None:
    """What every node sees of each peer: handshake age, endpoint, bytes. Exit 1 if a node cannot be read."""
    from wgmesh.observe import ObserveOptions, run_status

    env = Environment.from_system(no_color or json_out)
    opts = ObserveOptions(file, ConnectOptions(parallelism, timeout, accept_new_host_keys, tuple(target)), json_out)
    _exit(guard(lambda: run_status(opts, env), env))
