"""`wgmesh graph [--live] [--format mermaid|dot]`: the mesh as a picture, on stdout.

Without --live it reads only mesh.yaml. With --live it reads every enrolled node once, with the same script
as `wgmesh status` (which the read-only plan key may run too), and colours each pair by its handshake. A node
that could not be read is drawn red and named on stderr; the exit status is then 1, the picture is printed all
the same.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from wgmesh.commands.common import (
    ConnectOptions,
    ExitStatus,
    TransportFactory,
    UsageError,
    load_mesh,
    open_transport,
)
from wgmesh.commands.observe import read_status
from wgmesh.core import checks
from wgmesh.core import status as status_core
from wgmesh.core.graph import build_graph
from wgmesh.views import make_view
from wgmesh.views.env import Environment
from wgmesh.views.graph import FORMATS


@dataclass(frozen=True)
class GraphOptions:
    file: Path
    live: bool = False
    format: str = "mermaid"
    connect: ConnectOptions = field(default_factory=ConnectOptions)


def run_graph(opts: GraphOptions, env: Environment, factory: TransportFactory | None = None) -> ExitStatus:
    if opts.format not in FORMATS:
        raise UsageError(f"--format {opts.format}: use one of {', '.join(FORMATS)}")
    view = make_view(env)
    mesh = load_mesh(opts.file, view)
    report = None
    if opts.live:
        nodes, _ = checks.checked_nodes(mesh)
        transport = open_transport(factory, opts.connect, view, env)
        try:
            results, clocks = read_status(mesh, transport, nodes)
        finally:
            transport.close()
        names = [n.name for n in nodes]
        report = status_core.status_report(mesh, nodes, names, results, clocks, int(time.time()))
    env.stdout.write(FORMATS[opts.format](build_graph(mesh, report)))
    if report is not None and not report.ok:
        for line in report.errors():
            view.error(line)
        return ExitStatus.ERROR
    return ExitStatus.OK
