"""`wgmesh check` and `wgmesh status`: the imperative shell around `wgmesh.check`.

One SSH round trip per node, all nodes in parallel (bounded by --parallelism); the probes run in
parallel on each node. Output through the view: rich tables for people, one JSON document with --json.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from wgmesh.commands.common import (
    ConnectOptions,
    ExitStatus,
    TransportFactory,
    UsageError,
    _view,
    load_mesh,
    open_transport,
    select_nodes,
    ssh_transport,
)
from wgmesh.core import checks
from wgmesh.core import status as status_core
from wgmesh.core.model import Mesh, Node
from wgmesh.remote import probe
from wgmesh.remote import read as live
from wgmesh.remote.transport import CommandResult, Transport, check_timeout, deadline_of
from wgmesh.views.env import Environment

STATUS_SCRIPT_TIMEOUT = 30.0


@dataclass(frozen=True)
class ObserveOptions:
    file: Path
    connect: ConnectOptions = field(default_factory=ConnectOptions)
    json: bool = False


def _sources(mesh: Mesh, targets: Sequence[str], nodes: Sequence[Node], skipped: dict[str, str]) -> list[Node]:
    """The nodes to work from: --target ones (validated), else all that take part in the mesh."""
    chosen = select_nodes(mesh, targets)
    for n in chosen:
        if targets and n.name in skipped:
            raise UsageError(f"--target {n.name}: not part of the mesh ({skipped[n.name]})")
    names = {n.name for n in nodes}
    return [n for n in chosen if n.name in names]


def _failed_run(got: CommandResult) -> str:
    tail = got.stderr.strip().splitlines()[-1:] or [got.status_text]
    return f"the script failed on the node: {tail[0]}"


def check_limit(targets: int, command_timeout: float | None = None) -> float:
    """The deadline of check's command on a node with this many targets: --command-timeout when given, else
    the transport's (a fixed part and a little per target), and never less than the node's waves can take."""
    if command_timeout:
        return command_timeout
    return max(check_timeout(targets), checks.waves(targets) * checks.wave_seconds() + 15.0)


def _probe_results(
    mesh: Mesh, transport: Transport, sources: Sequence[Node], nodes: Sequence[Node],
    command_timeout: float | None = None,
) -> dict[str, tuple[checks.Probe, ...] | str]:
    """Each node's probes, or why there are none. The node stops its probes a little before the command's
    deadline (checks.node_deadline) and prints what it has, so a slow node still reports its answers and names
    the probes that ran out of time; no probe of it outlives the script."""
    errors: dict[str, tuple[checks.Probe, ...] | str] = dict(transport.connect(sources))
    plans = {n.name: checks.targets(n, nodes) for n in sources if n.name not in errors}
    limit = check_limit(max((len(t) for t in plans.values()), default=0), command_timeout)
    deadline = checks.node_deadline(limit)
    scripts = {name: probe.probe_script(t, deadline) for name, t in plans.items()}
    ran = transport.run_many(scripts, limit)
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


def run_check(opts: ObserveOptions, env: Environment, factory: TransportFactory = ssh_transport) -> ExitStatus:
    """Ping every other node (and its subnets' probes) from each node; exit 1 on any failure."""
    view = _view(env, opts.json)
    mesh = load_mesh(opts.file, view)
    nodes, skipped = checks.checked_nodes(mesh)
    sources = _sources(mesh, opts.connect.targets, nodes, skipped)
    if len(nodes) < 2:  # the view says there is nothing to check
        view.check(checks.check_report([n.name for n in nodes], [], {}, skipped))
        return ExitStatus.OK
    transport = open_transport(factory, opts.connect, view, env)
    try:
        results = _probe_results(mesh, transport, sources, nodes, opts.connect.command_timeout)
    finally:
        transport.close()
    report = checks.check_report([n.name for n in nodes], [n.name for n in sources], results, skipped)
    view.check(report)
    return ExitStatus.OK if report.ok else ExitStatus.ERROR


def read_status(
    mesh: Mesh, transport: Transport, sources: Sequence[Node]
) -> tuple[dict[str, live.LiveState | str], dict[str, int | None]]:
    """Each node's live state (or why it could not be read) and its clock, in one round trip per node (status and
    graph --live)."""
    results: dict[str, live.LiveState | str] = dict(transport.connect(sources))
    script = probe.status_script(mesh.interface, deadline_of(transport, STATUS_SCRIPT_TIMEOUT))
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


def run_status(opts: ObserveOptions, env: Environment, factory: TransportFactory = ssh_transport) -> ExitStatus:
    """Read every node's view of its peers; exit 1 if a node could not be read."""
    view = _view(env, opts.json)
    mesh = load_mesh(opts.file, view)
    nodes, skipped = checks.checked_nodes(mesh)
    sources = _sources(mesh, opts.connect.targets, nodes, skipped)
    transport = open_transport(factory, opts.connect, view, env)
    try:
        results, clocks = read_status(mesh, transport, sources)
    finally:
        transport.close()
    names = [n.name for n in sources]
    report = status_core.status_report(mesh, nodes, names, results, clocks, int(time.time()), skipped)
    view.status(report)
    return ExitStatus.OK if report.ok else ExitStatus.ERROR
