"""`wgmesh check` and `wgmesh status`: the imperative shell around `wgmesh.check`.

One SSH round trip per node, all nodes in parallel (bounded by --parallelism); the probes run in
parallel on each node. Output: rich tables for people, one JSON document with --json.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich import box
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from wgmesh.core import checks
from wgmesh.core import status as status_core
from wgmesh.core.checks import Cell, CheckReport
from wgmesh.core.model import Mesh, Node
from wgmesh.core.status import Handshake, StatusReport
from wgmesh.engine import UsageError, select_nodes
from wgmesh.operations import ConnectOptions, ExitStatus, TransportFactory, load_mesh, ssh_transport
from wgmesh.remote import probe
from wgmesh.remote import read as live
from wgmesh.remote.transport import CommandResult, Transport
from wgmesh.view import Environment, HumanView, JsonView
from wgmesh.views import formats, observe_json

# The probe script waits at most ATTEMPTS * PING_WAIT seconds per probe, all probes at once.
CHECK_SCRIPT_TIMEOUT = checks.ATTEMPTS * checks.PING_WAIT + 15.0
STATUS_SCRIPT_TIMEOUT = 30.0
_WIDEST = 10_000
_CELL_STYLE = {Cell.OK: "green", Cell.FAILED: "bold red", Cell.NOT_CHECKED: "red", Cell.SELF: "dim"}
_HANDSHAKE_STYLE = {
    Handshake.FRESH: "green",
    Handshake.STALE: "yellow",
    Handshake.NEVER: "red",
    Handshake.NO_PEER: "bold red",
    Handshake.UNREACHABLE: "red",
    Handshake.SELF: "dim",
}


@dataclass(frozen=True)
class ObserveOptions:
    file: Path
    connect: ConnectOptions = field(default_factory=ConnectOptions)
    json: bool = False


# ---------------------------------------------------------------------------------------------- common


def _view(env: Environment, as_json: bool) -> HumanView | JsonView:
    return JsonView(env) if as_json else HumanView(env)


def _sources(mesh: Mesh, targets: Sequence[str], nodes: Sequence[Node], skipped: dict[str, str]) -> list[Node]:
    """The nodes to work from: --target ones (validated), else all that take part in the mesh."""
    chosen = select_nodes(mesh, targets)
    for n in chosen:
        if targets and n.name in skipped:
            raise UsageError(f"--target {n.name}: not part of the mesh ({skipped[n.name]})")
    names = {n.name for n in nodes}
    return [n for n in chosen if n.name in names]


def _failed_run(got: CommandResult) -> str:
    tail = got.stderr.strip().splitlines()[-1:] or [f"exit status {got.exit_status}"]
    return f"the script failed on the node: {tail[0]}"


def _dump(env: Environment, doc: dict[str, Any]) -> None:
    env.stdout.write(json.dumps(doc, indent=2) + "\n")


def _print_table(env: Environment, table: Table) -> None:
    """Print without squeezing cells: widen the console to the table (lines may wrap on a narrow terminal)."""
    console = env.console()
    needed = Measurement.get(console, console.options.update_width(_WIDEST), table).maximum
    if needed > console.width:
        console.width = needed
    console.print(table)


def _skipped_line(skipped: dict[str, str]) -> str:
    return "Not checked: " + ", ".join(f"{n} ({r})" for n, r in skipped.items())


# ---------------------------------------------------------------------------------------------- check


def _probe_results(
    mesh: Mesh, transport: Transport, sources: Sequence[Node], nodes: Sequence[Node]
) -> dict[str, tuple[checks.Probe, ...] | str]:
    errors: dict[str, tuple[checks.Probe, ...] | str] = dict(transport.connect(sources))
    plans = {n.name: checks.targets(n, nodes) for n in sources if n.name not in errors}
    ran = transport.run_many({name: probe.probe_script(t) for name, t in plans.items()}, CHECK_SCRIPT_TIMEOUT)
    out: dict[str, tuple[checks.Probe, ...] | str] = dict(errors)
    for name, got in ran.items():
        if isinstance(got, str):
            out[name] = got
        elif got.exit_status != 0:
            out[name] = _failed_run(got)
        else:
            try:
                out[name] = probe.parse_probe_output(name, plans[name], got.stdout, mesh.interface)
            except probe.CheckParseError as e:
                out[name] = f"cannot understand the probe output: {e}"
    return out


def check_matrix(report: CheckReport) -> Table:
    table = Table(box=box.SIMPLE_HEAD, title="Ping matrix (rows ping columns)", title_justify="left", pad_edge=False)
    table.add_column("from \\ to", no_wrap=True)
    for n in report.nodes:
        table.add_column(n, no_wrap=True)
    for s in report.sources:
        row: list[Text] = [Text(s, style="bold")]
        for d in report.nodes:
            pair = report.pair(s, d)
            text = {
                Cell.OK: formats.format_rtt(pair.rtt_ms),
                Cell.FAILED: "FAILED",
                Cell.NOT_CHECKED: "not checked",
                Cell.SELF: "-",
            }[pair.cell]
            row.append(Text(text, style=_CELL_STYLE[pair.cell]))
        table.add_row(*row)
    return table


def print_check(env: Environment, report: CheckReport) -> None:
    out = env.console()
    if report.skipped:
        out.print(Text(_skipped_line(dict(report.skipped)), style="yellow"))
    _print_table(env, check_matrix(report))
    failures = report.failures()
    pairs = report.pairs()
    failed = sum(1 for p in pairs if p.cell is Cell.FAILED)
    unchecked = sum(1 for p in pairs if p.cell is Cell.NOT_CHECKED)
    probes = len(report.probes)
    if failures:
        out.print(Text("Failures:", style="bold"))
        for line in failures:
            out.print(Text(f"  {line}", style="red"))
        for n in report.suspects():
            out.print(Text(f"Every pair with {n} fails, both ways: start with {n}.", style="yellow"))
        out.print()
        parts = [f"{failed} of {len(pairs)} pairs failed"] if failed else []
        if unchecked:
            parts.append(f"{unchecked} not checked (no probes from {', '.join(report.errors)})")
        summary = "Check failed: " + "; ".join(parts)
        out.print(Text(summary + ".", style="bold red"))
    else:
        out.print(
            Text(
                f"Check passed: {len(pairs)} pairs of {len(report.nodes)} nodes, {probes} probes, all answered "
                f"through {_devices(report)}.",
                style="bold green",
            )
        )


def _devices(report: CheckReport) -> str:
    devices = {p.device for p in report.probes if p.device}
    return ", ".join(sorted(devices)) or "the mesh"


def run_check(opts: ObserveOptions, env: Environment, factory: TransportFactory = ssh_transport) -> ExitStatus:
    """Ping every other node (and its subnets' probes) from each node; exit 1 on any failure."""
    view = _view(env, opts.json)
    mesh = load_mesh(opts.file, view)
    nodes, skipped = checks.checked_nodes(mesh)
    sources = _sources(mesh, opts.connect.targets, nodes, skipped)
    if len(nodes) < 2:
        if opts.json:
            _dump(env, observe_json.check_to_dict(checks.check_report([n.name for n in nodes], [], {}, skipped)))
        else:
            view.message("Nothing to check: the mesh needs at least two nodes with public keys.")
        return ExitStatus.OK
    transport = factory(opts.connect, view.progress)
    try:
        results = _probe_results(mesh, transport, sources, nodes)
    finally:
        transport.close()
    report = checks.check_report([n.name for n in nodes], [n.name for n in sources], results, skipped)
    if opts.json:
        _dump(env, observe_json.check_to_dict(report))
    else:
        print_check(env, report)
    return ExitStatus.OK if report.ok else ExitStatus.ERROR


# ---------------------------------------------------------------------------------------------- status


def _read_status(
    mesh: Mesh, transport: Transport, sources: Sequence[Node]
) -> tuple[dict[str, live.LiveState | str], dict[str, int | None]]:
    results: dict[str, live.LiveState | str] = dict(transport.connect(sources))
    script = probe.status_script(mesh.interface)
    ran = transport.run_many({n.name: script for n in sources if n.name not in results}, STATUS_SCRIPT_TIMEOUT)
    clocks: dict[str, int | None] = {}
    for name, got in ran.items():
        if isinstance(got, str):
            results[name] = got
        elif got.exit_status != 0:
            results[name] = _failed_run(got)
        else:
            clocks[name] = probe.parse_clock(got.stdout)
            try:
                results[name] = live.parse_read_output(mesh.interface, got.stdout)
            except live.ParseError as e:
                results[name] = f"cannot understand the node's output: {e}"
    return results, clocks


def _handshake_text(v: status_core.PeerView) -> str:
    if v.state in (Handshake.FRESH, Handshake.STALE):
        return formats.format_age(v.age)
    return {Handshake.SELF: "-"}.get(v.state, v.state.value)


def status_matrix(report: StatusReport) -> Table:
    table = Table(
        box=box.SIMPLE_HEAD,
        title=f"Latest handshake (rows see columns; fresh < {status_core.FRESH_SECONDS // 60}m, stale older)",
        title_justify="left",
        pad_edge=False,
    )
    table.add_column("node \\ peer", no_wrap=True)
    for n in report.nodes:
        table.add_column(n, no_wrap=True)
    for r in report.readings:
        cells = [Text(r.node, style="bold")]
        for n in report.nodes:
            v = report.view(r.node, n)
            cells.append(Text(_handshake_text(v), style=_HANDSHAKE_STYLE[v.state]))
        table.add_row(*cells)
    return table


def status_details(report: StatusReport) -> Table:
    table = Table(box=box.SIMPLE_HEAD, title="Peers", title_justify="left", pad_edge=False)
    for name, justify in (("node", "left"), ("peer", "left"), ("handshake", "right"), ("endpoint", "left"),
                          ("received", "right"), ("sent", "right")):
        table.add_column(name, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    for v in report.views:
        if v.state in (Handshake.UNREACHABLE, Handshake.SELF):
            continue
        has_peer = v.state is not Handshake.NO_PEER
        table.add_row(
            v.source,
            v.peer,
            Text(_handshake_text(v), style=_HANDSHAKE_STYLE[v.state]),
            v.endpoint or "-",
            formats.format_bytes(v.rx_bytes) if has_peer else "-",
            formats.format_bytes(v.tx_bytes) if has_peer else "-",
        )
    return table


def print_status(env: Environment, report: StatusReport) -> None:
    out = env.console()
    if report.skipped:
        out.print(Text(_skipped_line(dict(report.skipped)), style="yellow"))
    _print_table(env, status_matrix(report))
    if any(v.state not in (Handshake.UNREACHABLE, Handshake.SELF) for v in report.views):
        _print_table(env, status_details(report))
    for r in report.readings:
        for note in r.notes:
            out.print(Text(f"{r.node}: {note}", style="yellow"))
    errors = report.errors()
    for line in errors:
        out.print(Text(f"Error: {line}", style="bold red"))
    if errors:
        out.print(Text(f"{len(errors)} of {len(report.readings)} nodes could not be read.", style="bold red"))


def run_status(opts: ObserveOptions, env: Environment, factory: TransportFactory = ssh_transport) -> ExitStatus:
    """Read every node's view of its peers; exit 1 if a node could not be read."""
    view = _view(env, opts.json)
    mesh = load_mesh(opts.file, view)
    nodes, skipped = checks.checked_nodes(mesh)
    sources = _sources(mesh, opts.connect.targets, nodes, skipped)
    transport = factory(opts.connect, view.progress)
    try:
        results, clocks = _read_status(mesh, transport, sources)
    finally:
        transport.close()
    report = status_core.status_report(mesh, nodes, [n.name for n in sources], results, clocks, int(time.time()), skipped)
    if opts.json:
        _dump(env, observe_json.status_to_dict(report))
    else:
        print_status(env, report)
    return ExitStatus.OK if report.ok else ExitStatus.ERROR


__all__ = [
    "ObserveOptions",
    "check_matrix",
    "print_check",
    "print_status",
    "run_check",
    "run_status",
    "status_details",
    "status_matrix",
]
