"""Human tables of check and status (rich)."""

from __future__ import annotations

from rich import box
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from wgmesh.core import status as status_core
from wgmesh.core.checks import Cell, CheckReport
from wgmesh.core.status import Handshake, StatusReport
from wgmesh.views import formats
from wgmesh.views.env import Environment

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


def _print_table(env: Environment, table: Table) -> None:
    """Print without squeezing cells: widen the console to the table (lines may wrap on a narrow terminal)."""
    console = env.console()
    needed = Measurement.get(console, console.options.update_width(_WIDEST), table).maximum
    if needed > console.width:
        console.width = needed
    console.print(table)


def _skipped_line(skipped: dict[str, str]) -> str:
    return "Not checked: " + ", ".join(f"{n} ({r})" for n, r in skipped.items())


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
