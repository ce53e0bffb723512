"""`wgmesh check` and `wgmesh status`: typer command functions, registered in cli.py with
`app.command()(cli_observe.check)` and `app.command()(cli_observe.status)`."""

from __future__ import annotations

from pathlib import Path

import typer

from wgmesh.cli.environment import environment, mesh_file
from wgmesh.cli.options import (
    AcceptNew,
    CommandTimeout,
    FileOpt,
    Json,
    NoColor,
    Parallelism,
    Target,
    Timeout,
    exit_with,
)


def check(
    ctx: typer.Context,
    file: Path | None = FileOpt,
    json_out: bool = Json,
    target: list[str] = Target,
    parallelism: int = Parallelism,
    timeout: float = Timeout,
    command_timeout: float | None = CommandTimeout,
    accept_new_host_keys: bool = AcceptNew,
    no_color: bool = NoColor,
) -> None:
    """Ping every node's mesh addresses and subnet probes from every other node. Exit 1 on any failure."""
    from wgmesh.commands.common import ConnectOptions, guard
    from wgmesh.commands.observe import ObserveOptions, run_check

    env = environment(ctx, no_color or json_out)
    connect = ConnectOptions(parallelism, timeout, accept_new_host_keys, tuple(target), command_timeout)
    opts = ObserveOptions(mesh_file(file, env), connect, json_out)
    exit_with(guard(lambda: run_check(opts, env), env))


def status(
    ctx: typer.Context,
    file: Path | None = FileOpt,
    json_out: bool = Json,
    target: list[str] = Target,
    parallelism: int = Parallelism,
    timeout: float = Timeout,
    command_timeout: float | None = CommandTimeout,
    accept_new_host_keys: bool = AcceptNew,
    no_color: bool = NoColor,
) -> None:
    """What every node sees of each peer: handshake age, endpoint, bytes. Exit 1 if a node cannot be read."""
    from wgmesh.commands.common import ConnectOptions, guard
    from wgmesh.commands.observe import ObserveOptions, run_status

    env = environment(ctx, no_color or json_out)
    connect = ConnectOptions(parallelism, timeout, accept_new_host_keys, tuple(target), command_timeout)
    opts = ObserveOptions(mesh_file(file, env), connect, json_out)
    exit_with(guard(lambda: run_status(opts, env), env))
