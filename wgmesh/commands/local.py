"""The commands that only read and write local files: validate, render, init."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from wgmesh import meshfile
from wgmesh.commands.common import ExitStatus, Failure, finding
from wgmesh.meshfile import MeshError
from wgmesh.views import make_view
from wgmesh.views.env import Environment
from wgmesh.views.reports import InitReport, RenderedConfig, RenderReport, ValidateReport


def validate(file: Path, env: Environment, json: bool = False) -> ExitStatus:
    view = make_view(env, json)
    try:
        mesh, warnings = meshfile.load(file)
    except MeshError as e:
        if json:  # the document says why; the failure's lines still go to stderr
            view.validate(ValidateReport(file, False, tuple(finding(d) for d in e.diagnostics)))
        raise
    view.validate(ValidateReport(
        file, True, tuple(finding(w) for w in warnings), mesh=mesh.name, interface=mesh.interface,
        nodes=len(mesh.nodes), enrolled=sum(1 for n in mesh.nodes if n.public_key),
    ))
    return ExitStatus.OK


def render(
    file: Path, node: str | None, all_nodes: bool, out: Path | None, env: Environment, json: bool = False
) -> ExitStatus:
    from wgmesh.core import render as r

    view = make_view(env, json)
    mesh, warnings = meshfile.load(file)
    found = tuple(finding(w) for w in warnings)
    if all_nodes:
        if node is not None:
            raise Failure("give either a NODE or --all, not both")
        if out is None:
            raise Failure("--all needs --out DIR: one file per node, DIR/NODE.conf")
        out.mkdir(parents=True, exist_ok=True)
        written = []
        # each file written as soon as it is rendered; its text is kept only for --json, which prints them all
        # (the human view says how many: a 1,000-node mesh's 155 MB stay out of memory)
        for name, pieces in r.render_all_pieces(mesh):
            path = out / f"{name}.conf"
            with open(path, "wb") as f:
                _write_all(f.fileno(), pieces)
            written.append(RenderedConfig(name, b"".join(pieces).decode() if json else "", path))
        view.render(RenderReport(tuple(written), all_nodes=True, out=out, warnings=found))
        return ExitStatus.OK
    if node is None:
        raise Failure(f"name a node to render ({', '.join(mesh.node_names)}), or use --all --out DIR")
    if node not in mesh.node_names:
        raise Failure(f"no node {node!r} in {file} (nodes: {', '.join(mesh.node_names)})")
    text = r.render_node(mesh, node)
    if out is not None:
        out.write_text(text)
    view.render(RenderReport((RenderedConfig(node, text, out),), out=out, warnings=found))
    return ExitStatus.OK


def _write_all(fd: int, pieces: Sequence[bytes | memoryview]) -> None:
    """Write the pieces in order with `os.writev`: the kernel copies the shared stanzas straight into the file
    (no joined copy per file); a short write goes on from where it stopped."""
    views = [memoryview(p) for p in pieces if len(p)]
    while views:
        done = os.writev(fd, views[:_IOV_MAX])
        while views and done >= len(views[0]):
            done -= len(views[0])
            views.pop(0)
        if done:
            views[0] = views[0][done:]


_IOV_MAX = 1024  # POSIX's minimum is 16; Linux's is 1024 (render_all_pieces gives at most 4 pieces)


def init(directory: Path, force: bool, env: Environment, json: bool = False) -> ExitStatus:
    from wgmesh import scaffold

    try:
        written = scaffold.init_repo(directory, force=force)
    except FileExistsError as e:
        raise Failure(f"{e.filename or e} already exists; use --force to overwrite") from None
    make_view(env, json).init(InitReport(directory, tuple(written)))
    return ExitStatus.OK
