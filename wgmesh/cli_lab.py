"""`wgmesh lab up|down|status`: thin typer commands over wgmesh.lab."""

from __future__ import annotations

import os
import time
from pathlib import Path

import typer

from wgmesh import lab as labmod

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="Local test hosts (network namespaces with sshd and WireGuard keys) and a mesh repo for them.",
)

DIR_OPTION = typer.Option(Path("lab"), "--dir", "-d", help="The lab's mesh repo folder.")


def _fail(err: labmod.LabError) -> typer.Exit:
    typer.echo(f"Error: {err}", err=True)
    return typer.Exit(1)


def _relative(path: Path) -> str:
    try:
        return os.path.relpath(path)
    except ValueError:
        return str(path)


NodesOpt = typer.Option(None, "--nodes", "-n", help="Number of hosts (default 4).")
NamesOpt = typer.Option(None, "--names", help="Host names, comma separated (default aws,azure,gcp,aliyun).")
NatOpt = typer.Option(
    None, "--nat", help="A host behind NAT: no endpoint in mesh.yaml (repeatable; default aliyun with 4 hosts)."
)
IdOpt = typer.Option(0, "--id", envvar="WGMESH_LAB_ID", help="Lab id 0..50: several labs can coexist.")
NoKeysOpt = typer.Option(False, "--no-keys", help="Make no WireGuard keys (hosts to enroll later).")
InstallOpt = typer.Option(False, "--install", help="apt-get install the packages the lab needs.")
DownIdOpt = typer.Option(None, "--id", help="Take down lab ID whatever its folder (for leftovers).")


@app.command()
def up(
    nodes: int | None = NodesOpt,
    directory: Path = DIR_OPTION,
    names: str | None = NamesOpt,
    nat: list[str] | None = NatOpt,
    lab_id: int = IdOpt,
    no_keys: bool = NoKeysOpt,
    install: bool = InstallOpt,
) -> None:
    """Create the hosts and DIR/mesh.yaml (replaces a lab already in DIR)."""
    started = time.monotonic()
    try:
        spec = labmod.make_lab(
            lab_id, directory, nodes, labmod.parse_names(names) if names else (), nat or None, keys=not no_keys
        )
        lab = labmod.up(spec, install=install)
    except labmod.LabError as e:
        raise _fail(e) from None
    width = max(len(h.name) for h in lab.hosts)
    typer.echo(
        f"Lab {lab.id} is up in {lab.dir} ({len(lab.hosts)} hosts on {lab.bridge}, "
        f"{lab.network}; {time.monotonic() - started:.1f} s):"
    )
    for h in lab.hosts:
        where = "behind NAT" if h.endpoint is None else f"endpoint {h.endpoint}"
        typer.echo(f"  {h.name:<{width}}  ssh root@{h.ip!s:<13}  {h.address}  {h.subnet}  {where}")
    typer.echo(f"Next: cd {_relative(lab.dir)} && wgmesh plan")
    typer.echo(f"Done: wgmesh lab down --dir {_relative(lab.dir)}")


@app.command()
def down(
    directory: Path = DIR_OPTION,
    lab_id: int | None = DownIdOpt,
) -> None:
    """Stop the hosts and delete their namespaces, bridge, mounts and runtime files. Idempotent."""
    try:
        if lab_id is not None:
            found = labmod.down_id(lab_id)
            typer.echo(f"Lab {lab_id} is down." if found else f"No lab {lab_id}: nothing to do.")
            return
        found = labmod.down(directory)
    except labmod.LabError as e:
        raise _fail(e) from None
    path = directory.resolve()
    typer.echo(f"Lab in {path} is down (mesh repo files kept)." if found else f"No lab in {path}: nothing to do.")


@app.command()
def status(directory: Path = DIR_OPTION) -> None:
    """The hosts, their addresses, and whether sshd and the WireGuard interface run."""
    try:
        lab, hosts = labmod.status(directory)
    except labmod.LabError as e:
        raise _fail(e) from None
    typer.echo(f"Lab {lab.id} in {lab.dir} (bridge {lab.bridge}, {lab.network})")
    width = max(len("HOST"), *(len(h.name) for h in hosts))
    typer.echo(f"{'HOST':<{width}}  {'ADDRESS':<13}  SSHD  {labmod.INTERFACE}")
    for h in hosts:
        typer.echo(
            f"{h.name:<{width}}  {h.ip!s:<13}  {'up' if h.sshd else 'DOWN':<4}  {'up' if h.wireguard else 'down'}"
        )
