"""Typer commands of the GitOps pipeline: `graph` (the mesh as a picture) and `plan-key` (the read-only SSH
key CI's plan job uses).

cli/app.py registers them:
    app.command()(cli_pipeline.graph)
    app.command("plan-key")(cli_pipeline.plan_key)
"""

from __future__ import annotations

from pathlib import Path

import typer

from wgmesh.cli.environment import environment, mesh_file
from wgmesh.cli.options import AcceptNew, CommandTimeout, FileOpt, Parallelism, Target, Timeout, exit_with


def graph(
    ctx: typer.Context,
    live: bool = typer.Option(False, "--live", help="Read every node: colour each pair by its handshake."),
    fmt: str = typer.Option("mermaid", "--format", metavar="mermaid|dot", help="Mermaid (GitHub renders it) or "
                            "Graphviz dot."),
    file: Path | None = FileOpt,
    parallelism: int = Parallelism,
    timeout: float = Timeout,
    command_timeout: float | None = CommandTimeout,
    accept_new_host_keys: bool = AcceptNew,
) -> None:
    """Draw the mesh: nodes with their subnets, NAT'd nodes, relayed pairs; --live: handshake ages."""
    from wgmesh.commands.common import ConnectOptions, guard
    from wgmesh.commands.graph import GraphOptions, run_graph

    env = environment(ctx, True)
    connect = ConnectOptions(parallelism, timeout, accept_new_host_keys, command_timeout=command_timeout)
    opts = GraphOptions(mesh_file(file, env), live, fmt, connect)
    exit_with(guard(lambda: run_graph(opts, env), env))


def plan_key(
    ctx: typer.Context,
    public_key: Path = typer.Argument(..., metavar="PUBKEY_FILE", help="The plan key's public half (KEY.pub)."),
    remove: bool = typer.Option(False, "--remove", help="Take the plan key (and its script and sudoers file) away."),
    authorized_keys: str | None = typer.Option(
        None, "--authorized-keys", metavar="PATH",
        help="The login user's authorized_keys on the nodes, when sshd does not use ~/.ssh/authorized_keys.",
    ),
    target: list[str] = Target,
    file: Path | None = FileOpt,
    parallelism: int = Parallelism,
    timeout: float = Timeout,
    command_timeout: float | None = CommandTimeout,
    accept_new_host_keys: bool = AcceptNew,
    no_color: bool = typer.Option(False, "--no-color", help="Plain text output."),
) -> None:
    """Install a read-only SSH key on every node (with the admin key): it can run wgmesh's read, nothing else."""
    from wgmesh.commands.common import ConnectOptions, guard
    from wgmesh.commands.plankey import PlanKeyOptions, run_plan_key

    env = environment(ctx, no_color)
    connect = ConnectOptions(parallelism, timeout, accept_new_host_keys, tuple(target), command_timeout)
    opts = PlanKeyOptions(mesh_file(file, env), public_key, remove, authorized_keys, connect)
    exit_with(guard(lambda: run_plan_key(opts, env), env))


__all__ = ["graph", "plan_key"]
