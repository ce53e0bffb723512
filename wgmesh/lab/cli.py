"""`wgmesh lab up|down|status|reboot|move`: thin typer commands over wgmesh.lab (exported as `app`)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import typer

from wgmesh import lab as labmod

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="Local test hosts (network namespaces with sshd and WireGuard keys, a machine behind each subnet) and a "
    "mesh repo for them.",
)

DIR_OPTION = typer.Option(
    None, "--dir", "-d", help="The lab's mesh repo folder [default: ./lab, or . inside a lab's folder]."
)


def _fail(err: labmod.LabError) -> typer.Exit:
    typer.echo(f"Error: {err}", err=True)
    return typer.Exit(1)


def _lab_dir(directory: Path | None) -> Path:
    if directory is not None:
        return directory
    return Path(".") if labmod.state_path(Path(".")).exists() else Path("lab")


def _relative(path: Path) -> str:
    try:
        return os.path.relpath(path)
    except ValueError:
        return str(path)


NodesOpt = typer.Option(None, "--nodes", "-n", help=f"Number of hosts (default 4, at most {labmod.MAX_NODES}).")
NamesOpt = typer.Option(None, "--names", help="Host names, comma separated (default aws,azure,gcp,aliyun).")
NatOpt = typer.Option(
    None,
    "--nat",
    help="NAME[:cone|:symmetric]: a host behind a NAT router of its own, no endpoint in mesh.yaml (repeatable; "
    "plain NAME is cone; default aliyun (cone) with 4 hosts).",
)
DnsOpt = typer.Option(
    None, "--dns", help="Give this host's endpoint as a DNS name that the hosts resolve (repeatable)."
)
IdOpt = typer.Option(0, "--id", envvar="WGMESH_LAB_ID", help="Lab id 0..50: several labs can coexist.")
NoKeysOpt = typer.Option(False, "--no-keys", help="Make no WireGuard keys (hosts to enroll later).")
InstallOpt = typer.Option(False, "--install", help="apt-get install the packages the lab needs.")
RootLoginOpt = typer.Option(
    False,
    "--root-login",
    help="Hosts that take root by key and forward IP (default: cloud-like, root refused, a sudo user).",
)
DownIdOpt = typer.Option(None, "--id", help="Take down lab ID whatever its folder (for leftovers).")


def _login(lab: labmod.Lab) -> str:
    """One line on how the hosts take logins."""
    if lab.root_login:
        return "Login: root by key (--root-login); IP forwarding on."
    sudoers = f" ({lab.sudoers})" if lab.sudoers else ""
    return (
        f"Login: {lab.ssh_user}, passwordless sudo{sudoers}; root refused with cloud-init's banner; IP forwarding off."
    )


def _nat(h: labmod.LabHost) -> str:
    if h.router:
        return f"{h.nat} NAT ({h.router_netns}; host {h.local_interface.ip})"
    return "NAT" if h.nat else "-"


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]


@app.command()
def up(
    nodes: int | None = NodesOpt,
    directory: Path | None = DIR_OPTION,
    names: str | None = NamesOpt,
    nat: list[str] | None = NatOpt,
    dns: list[str] | None = DnsOpt,
    lab_id: int = IdOpt,
    no_keys: bool = NoKeysOpt,
    install: bool = InstallOpt,
    root_login: bool = RootLoginOpt,
) -> None:
    """Create the hosts and DIR/mesh.yaml (replaces a lab already in DIR)."""
    started = time.monotonic()
    notes: list[str] = []
    try:
        spec = labmod.make_lab(
            lab_id,
            _lab_dir(directory),
            nodes,
            labmod.parse_names(names) if names else (),
            nat or None,
            keys=not no_keys,
            dns=tuple(dns or ()),
            root_login=root_login,
        )
        lab = labmod.up(spec, install=install, note=notes.append)
    except labmod.LabError as e:
        raise _fail(e) from None
    typer.echo(
        f"Lab {lab.id} is up in {lab.dir} ({len(lab.hosts)} hosts on {lab.bridge}, "
        f"{lab.network}; {time.monotonic() - started:.1f} s):"
    )
    rows = [
        [
            h.name,
            f"ssh {lab.ssh_user}@{h.ip}",
            str(h.address),
            str(h.subnet),
            f"machine {h.machine_ip}",
            f"endpoint {h.endpoint}" if h.endpoint else _nat(h),
        ]
        for h in lab.hosts
    ]
    for line in _table(rows):
        typer.echo(f"  {line}")
    typer.echo(_login(lab))
    for line in notes:
        typer.echo(line)
    typer.echo(f"Next: cd {_relative(lab.dir)} && wgmesh plan")
    typer.echo(f"Stop: wgmesh lab down --dir {_relative(lab.dir)}")


@app.command()
def down(
    directory: Path | None = DIR_OPTION,
    lab_id: int | None = DownIdOpt,
) -> None:
    """Stop the hosts; delete their namespaces, bridge, mounts, runtime files, and the lab's user and sudoers
    file. Idempotent."""
    path = _lab_dir(directory).resolve()
    try:
        if lab_id is not None:
            found = labmod.down_id(lab_id)
            typer.echo(f"Lab {lab_id} is down." if found else f"No lab {lab_id}: nothing to do.")
            return
        found = labmod.down(path)
    except labmod.LabError as e:
        raise _fail(e) from None
    typer.echo(f"Lab in {path} is down (mesh repo files kept)." if found else f"No lab in {path}: nothing to do.")


@app.command()
def status(directory: Path | None = DIR_OPTION) -> None:
    """The hosts, their addresses, whether sshd and the WireGuard interface run, and the machine behind each
    host's subnet."""
    try:
        lab, hosts = labmod.status(_lab_dir(directory))
    except labmod.LabError as e:
        raise _fail(e) from None
    typer.echo(f"Lab {lab.id} in {lab.dir} (bridge {lab.bridge}, {lab.network}, {lab.mode})")
    typer.echo(_login(lab))
    rows = [["HOST", "ADDRESS", "SSHD", labmod.INTERFACE, "SUBNET", "MACHINE", "NAT"]]
    for h, spec in zip(hosts, lab.hosts, strict=True):
        machine = f"{spec.machine_ip} ({spec.machine_netns})" if h.machine else f"missing ({spec.machine_netns})"
        nat = _nat(spec)
        if spec.router and not h.router:
            nat = f"{spec.nat} NAT: router missing ({spec.router_netns})"
        wireguard = "up" if h.wireguard else "down"
        rows.append([h.name, str(h.ip), "up" if h.sshd else "down", wireguard, str(spec.subnet), machine, nat])
    for line in _table(rows):
        typer.echo(line)


NameArg = typer.Argument(..., help="The host to reboot.")


@app.command()
def reboot(name: str = NameArg, directory: Path | None = DIR_OPTION) -> None:
    """Simulate a reboot of host NAME: stop its processes (sshd stays), delete its WireGuard interfaces,
    empty /run/wireguard, turn forwarding off, flush FORWARD and nat POSTROUTING; then run what boot runs:
    its /etc/sysctl.d (net.* keys) and `wg-quick up IF` for each /etc/wireguard/IF.conf."""
    started = time.monotonic()
    try:
        result = labmod.reboot(_lab_dir(directory), name)
    except labmod.LabError as e:
        raise _fail(e) from None
    gone = f"; {', '.join(result.interfaces)} gone" if result.interfaces else "; no WireGuard interface"
    typer.echo(f"Rebooting {name}: stopped {', '.join(result.stopped) or 'no process'} (sshd stays){gone}.")
    for step in result.steps:
        mark = "ok" if step.ok else "FAILED"
        detail = "" if step.ok else f": {step.last_line}"
        typer.echo(f"  {step.phase:<8}  {mark:<6}  {step.command}{detail}")
    took = f"{time.monotonic() - started:.1f} s"
    if result.failed:
        typer.echo(f"Error: {name} came back with {len(result.failed)} failed step(s) ({took}).", err=True)
        raise typer.Exit(1)
    typer.echo(f"{name} is back ({took}).")


MoveArg = typer.Argument(..., help="The host to move.")
ToOpt = typer.Option(None, "--to", help="Its new underlay address [default: the first free one from .128].")


@app.command()
def move(name: str = MoveArg, directory: Path | None = DIR_OPTION, to: str | None = ToOpt) -> None:
    """Give host NAME a new underlay address, as a dynamic IP changes (behind NAT: its router's address).
    Every host's /etc/hosts follows (NAME's DNS name), and the lab's SSH records: its state, known_hosts and
    the node's `ssh: {host: IP}` line in mesh.yaml (nothing else in mesh.yaml changes)."""
    try:
        result = labmod.move(_lab_dir(directory), name, to)
    except labmod.LabError as e:
        raise _fail(e) from None
    typer.echo(f"Moved {name} from {result.old} to {result.new} (in {result.netns}); every host's /etc/hosts follows.")
    if result.mesh_yaml:
        typer.echo(f"mesh.yaml: {name}'s ssh host is now {result.new} (nothing else changed); known_hosts too.")
    else:
        typer.echo(f"mesh.yaml: no `ssh: {{host: {result.old}}}` line for {name}: left as is (known_hosts updated).")
    if result.endpoint:
        typer.echo(f"Note: mesh.yaml still says `{result.endpoint}` for {name} (a name endpoint would follow).")
