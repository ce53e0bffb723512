"""Typer commands of the key lifecycle: `node add|remove`, `enroll`, `rotate`, `import`.

cli.py registers them:
    app.add_typer(cli_keys.node_app, name="node")
    app.command()(cli_keys.enroll)
    app.command()(cli_keys.rotate)
    app.command("import")(cli_keys.import_)
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from wgmesh.cli.environment import environment, mesh_file
from wgmesh.cli.options import AcceptNew, CommandTimeout, FileOpt, Json, NoColor, Parallelism, Timeout

if TYPE_CHECKING:  # imported when a command runs (a fast start: see cli/app.py)
    from wgmesh.commands.common import ExitStatus
    from wgmesh.views.env import Environment

AllNodes = typer.Option(False, "--all", help="Every node in mesh.yaml (except decommissioned ones).")

node_app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="Add or remove a node in mesh.yaml (comments and layout kept; validated; written atomically).",
)


def _run(fn: Callable[[], ExitStatus], env: Environment) -> None:
    from wgmesh import meshfile
    from wgmesh.commands.common import Failure, guard
    from wgmesh.remote.transport import SshError

    def checked() -> ExitStatus:
        try:
            return fn()
        except meshfile.EditError as e:
            raise Failure(str(e)) from None
        except SshError as e:
            raise Failure(str(e)) from None
        except OSError as e:
            where = f"{e.filename}: " if e.filename else ""
            raise Failure(f"{where}{e.strerror or e}") from None

    raise typer.Exit(int(guard(checked, env)))


def _print(lines: list[str], env: Environment) -> ExitStatus:
    from wgmesh.commands.common import ExitStatus
    from wgmesh.views import make_view

    view = make_view(env)
    for line in lines:
        view.message(line)
    return ExitStatus.OK


@node_app.command("add")
def node_add(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="The new node's name."),
    address: list[str] = typer.Option(
        [], "--address", help="Its mesh address (repeatable; default: the lowest free one in each mesh network)."
    ),
    endpoint: str | None = typer.Option(None, "--endpoint", help="HOST:PORT where peers reach it."),
    ssh_host: str | None = typer.Option(None, "--ssh-host", help="SSH host (default: the endpoint's host)."),
    ssh_user: str | None = typer.Option(None, "--ssh-user", help="SSH user (default: mesh.yaml's ssh.user)."),
    ssh_port: int | None = typer.Option(None, "--ssh-port", min=1, max=65535, help="SSH port."),
    subnet: list[str] = typer.Option([], "--subnet", help="A private network routed through it (repeatable)."),
    listen_port: int | None = typer.Option(None, "--listen-port", min=1, max=65535, help="Its WireGuard port."),
    file: Path | None = FileOpt,
) -> None:
    """Add a node to mesh.yaml. Next: `wgmesh enroll NAME` makes its key on the node."""
    from wgmesh.commands import nodes

    env = environment(ctx, True)
    spec = nodes.NodeSpec(
        name=name,
        addresses=tuple(address),
        endpoint=endpoint,
        ssh_host=ssh_host,
        ssh_user=ssh_user,
        ssh_port=ssh_port,
        subnets=tuple(subnet),
        listen_port=listen_port,
    )
    _run(lambda: _print(nodes.add(mesh_file(file, env), spec), env), env)


@node_app.command("remove")
def node_remove(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="The node to take out of mesh.yaml."),
    file: Path | None = FileOpt,
) -> None:
    """Remove a node from mesh.yaml; the next apply removes it from every peer."""
    from wgmesh.commands import nodes

    env = environment(ctx, True)
    _run(lambda: _print(nodes.remove(mesh_file(file, env), name), env), env)


def enroll(
    ctx: typer.Context,
    names: list[str] = typer.Argument(None, help="The node(s) to enroll."),
    all_nodes: bool = AllNodes,
    file: Path | None = FileOpt,
    json_out: bool = Json,
    parallelism: int = Parallelism,
    timeout: float = Timeout,
    command_timeout: float | None = CommandTimeout,
    accept_new_host_keys: bool = AcceptNew,
    no_color: bool = NoColor,
) -> None:
    """Create the node's WireGuard key on the node if it has none; write its public key into mesh.yaml."""
    from wgmesh.commands.common import ConnectOptions
    from wgmesh.commands.keys import KeyOptions, run_enroll

    env = environment(ctx, no_color or json_out)
    connect = ConnectOptions(parallelism, timeout, accept_new_host_keys, command_timeout=command_timeout)
    opts = KeyOptions(mesh_file(file, env), tuple(names or ()), all_nodes, connect, json_out)
    _run(lambda: run_enroll(opts, env), env)


def rotate(
    ctx: typer.Context,
    names: list[str] = typer.Argument(None, help="The node(s) whose key to replace."),
    all_nodes: bool = AllNodes,
    file: Path | None = FileOpt,
    json_out: bool = Json,
    parallelism: int = Parallelism,
    timeout: float = Timeout,
    command_timeout: float | None = CommandTimeout,
    accept_new_host_keys: bool = AcceptNew,
    no_color: bool = NoColor,
) -> None:
    """Make a new key on the node and record it in mesh.yaml; the next apply switches the node and its peers."""
    from wgmesh.commands.common import ConnectOptions
    from wgmesh.commands.keys import KeyOptions, run_rotate

    env = environment(ctx, no_color or json_out)
    connect = ConnectOptions(parallelism, timeout, accept_new_host_keys, command_timeout=command_timeout)
    opts = KeyOptions(mesh_file(file, env), tuple(names or ()), all_nodes, connect, json_out)
    _run(lambda: run_rotate(opts, env), env)


def import_(
    ctx: typer.Context,
    targets: list[str] = typer.Argument(..., metavar="NAME=[USER@]HOST[:PORT]...", help="The nodes to adopt."),
    endpoint: list[str] = typer.Option(
        [], "--endpoint", help="NAME=HOST:PORT: the endpoint of a node (default: what its peers' configs use)."
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show the entries and what would change; change nothing."),
    network: list[str] = typer.Option(
        [], "--network", help="Mesh network CIDR when import creates mesh.yaml (default: from the addresses)."
    ),
    name: str | None = typer.Option(None, "--name", help="Mesh name when import creates mesh.yaml."),
    interface: str | None = typer.Option(None, "--interface", help="Interface when import creates mesh.yaml (wg0)."),
    identity_file: str | None = typer.Option(
        None, "--identity-file", help="SSH key written into a new mesh.yaml's ssh section."
    ),
    file: Path | None = FileOpt,
    json_out: bool = Json,
    parallelism: int = Parallelism,
    timeout: float = Timeout,
    command_timeout: float | None = CommandTimeout,
    accept_new_host_keys: bool = AcceptNew,
    no_color: bool = NoColor,
) -> None:
    """Adopt running WireGuard nodes into mesh.yaml; each private key moves to IF.key on its own node."""
    from wgmesh.commands.common import ConnectOptions
    from wgmesh.commands.importing import ImportOptions, run_import

    env = environment(ctx, no_color or json_out)
    opts = ImportOptions(
        file=mesh_file(file, env),
        targets=tuple(targets),
        endpoints=tuple(endpoint),
        dry_run=dry_run,
        networks=tuple(network),
        name=name,
        interface=interface,
        identity_file=identity_file,
        connect=ConnectOptions(parallelism, timeout, accept_new_host_keys, command_timeout=command_timeout),
        json=json_out,
    )
    _run(lambda: run_import(opts, env), env)


__all__ = ["enroll", "import_", "node_app", "rotate"]
