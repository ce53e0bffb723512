"""Human tables of check and status (rich). Every name, endpoint, error and note may come from a node: each
goes through `text.safe` (rich Text parses no markup)."""

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
from wgmesh.views.text import safe

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


def _t(text: object, style: str = "") -> Text:
    """A table cell or a line of data: escaped, styled."""
    return Text(safe(text), style=style)


def _skipped_line(skipped: dict[str, str]) -> str:
    return "Not checked: " + ", ".join(f"{n} ({r})" for n, r in skipped.items())


def check_matrix(report: CheckReport) -> Table:
    table = Table(box=box.SIMPLE_HEAD, title="Ping matrix (rows ping columns)", title_justify="left", pad_edge=False)
    table.add_column("from \\ to", no_wrap=True)
    for n in report.nodes:
        table.add_column(safe(n), no_wrap=True)
    for s in report.sources:
        row: list[Text] = [_t(s, "bold")]
        for d in report.nodes:
            pair = report.pair(s, d)
            text = {
                Cell.OK: formats.format_rtt(pair.rtt_ms),
                Cell.FAILED: "FAILED",
                Cell.NOT_CHECKED: "not checked",
                Cell.SELF: "-",
            }[pair.cell]
            row.append(_t(text, _CELL_STYLE[pair.cell]))
        table.add_row(*row)
    return table


def print_check(env: Environment, report: CheckReport) -> None:
    out = env.console()
    if report.skipped:
        out.print(_t(_skipped_line(dict(report.skipped)), "yellow"))
    _print_table(env, check_matrix(report))
    for line in report.warnings():
        out.print(_t(f"Warning: {line}", "yellow"))
    failures = report.failures()
    pairs = report.pairs()
    failed = sum(1 for p in pairs if p.cell is Cell.FAILED)
    unchecked = sum(1 for p in pairs if p.cell is Cell.NOT_CHECKED)
    probes = len(report.probes)
    if failures:
        out.print(_t("Failures:", "bold"))
        for line in failures:
            out.print(_t(f"  {line}", "red"))
        for n in report.suspects():
            out.print(_t(f"Every pair with {n} fails, both ways: start with {n}.", "yellow"))
        out.print()
        parts = [f"{failed} of {len(pairs)} pairs failed"] if failed else []
        if unchecked:
            parts.append(f"{unchecked} not checked (no probes from {', '.join(report.errors)})")
        summary = "Check failed: " + "; ".join(parts)
        out.print(_t(summary + ".", "bold red"))
    else:
        out.print(
            _t(
                f"Check passed: {len(pairs)} pairs of {len(report.nodes)} nodes, {probes} probes, all answered, "
                f"routed through {_devices(report)}.",
                "bold green",
            )
        )


def _devices(report: CheckReport) -> str:
    devices = {p.device for p in report.probes if p.device}
    return ", ".join(sorted(devices)) or "the mesh"


def _handshake_text(v: status_core.PeerView) -> str:
    if v.state in (Handshake.FRESH, Handshake.STALE):
        return formats.format_age(v.age)
    # a node that could not be read: unreachable, or reached and refused (a login, a plan key's old read script)
    return {Handshake.SELF: "-", Handshake.UNREACHABLE: "not read"}.get(v.state, v.state.value)


def _cell_text(v: status_core.PeerView) -> str:
    """A matrix cell: the handshake's age, and `via R` for a pair that goes through the relay (the age is then
    that of the row's own leg, its handshake with R)."""
    text = _handshake_text(v)
    return f"via {v.via} {text}" if v.via and v.path else text


def status_matrix(report: StatusReport) -> Table:
    table = Table(
        box=box.SIMPLE_HEAD,
        title=f"Latest handshake (rows see columns; fresh < {status_core.FRESH_SECONDS // 60}m, stale older; "
              "via R: through the relay R, the row's handshake with R)",
        title_justify="left",
        pad_edge=False,
    )
    table.add_column("node \\ peer", no_wrap=True)
    for n in report.nodes:
        table.add_column(safe(n), no_wrap=True)
    for r in report.readings:
        cells = [_t(r.node, "bold")]
        for n in report.nodes:
            v = report.view(r.node, n)
            cells.append(_t(_cell_text(v), _HANDSHAKE_STYLE[v.state]))
        table.add_row(*cells)
    return table


def status_details(report: StatusReport) -> Table:
    table = Table(box=box.SIMPLE_HEAD, title="Peers", title_justify="left", pad_edge=False)
    for name, justify in (("node", "left"), ("peer", "left"), ("path", "left"), ("handshake", "right"),
                          ("endpoint", "left"), ("received", "right"), ("sent", "right")):
        table.add_column(name, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    for v in report.views:
        if v.state in (Handshake.UNREACHABLE, Handshake.SELF):
            continue
        has_peer = v.state is not Handshake.NO_PEER
        table.add_row(
            _t(v.source),
            _t(v.peer),
            _t(v.path or "-"),
            _t(_handshake_text(v), _HANDSHAKE_STYLE[v.state]),
            _t(v.endpoint or "-"),
            formats.format_bytes(v.rx_bytes) if has_peer else "-",
            formats.format_bytes(v.tx_bytes) if has_peer else "-",
        )
    return table


def print_status(env: Environment, report: StatusReport) -> None:
    out = env.console()
    if report.skipped:
        out.print(_t(_skipped_line(dict(report.skipped)), "yellow"))
    _print_table(env, status_matrix(report))
    if any(v.state not in (Handshake.UNREACHABLE, Handshake.SELF) for v in report.views):
        _print_table(env, status_details(report))
    for r in report.readings:
        for note in r.notes:
            out.print(_t(f"{r.node}: {note}", "yellow"))
    for hint in report.hints:
        out.print(_t(hint, "yellow"))
    errors = report.errors()
    for line in errors:
        out.print(_t(f"Error: {line}", "bold red"))
    if errors:
        out.print(_t(f"{len(errors)} of {len(report.readings)} nodes could not be read.", "bold red"))
