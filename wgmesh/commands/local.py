"""The commands that only read and write local files: validate, render, init."""

from __future__ import annotations

import os
import queue
import threading
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
        try:
            with _Writer() as writer:
                for name, pieces in r.render_all_pieces(mesh):
                    path = out / f"{name}.conf"
                    writer.write(path, pieces)
                    written.append(RenderedConfig(name, b"".join(pieces).decode() if json else "", path))
        except OSError as e:
            raise Failure(f"cannot write {e.filename}: {e.strerror} (the files before it are written)") from None
        view.render(RenderReport(tuple(written), all_nodes=True, out=out, warnings=found))
        return ExitStatus.OK
    if node is None:
        raise Failure(f"name a node to render ({', '.join(mesh.node_names)}), or use --all --out DIR")
    if node not in mesh.node_names:
        raise Failure(f"no node {node!r} in {file} (nodes: {', '.join(mesh.node_names)})")
    text = r.render_node(mesh, node)
    if out is not None:
        try:
            out.write_text(text)
        except OSError as e:
            raise Failure(f"cannot write {out}: {e.strerror}") from None
    view.render(RenderReport((RenderedConfig(node, text, out),), out=out, warnings=found))
    return ExitStatus.OK


class _Writer:
    """Creates and writes files in threads of their own (`THREADS`) while the caller renders the next ones:
    creating and filling a file is kernel time (0.1-0.4 ms each on this machine's ext4, most of `render --all`'s
    writing), which then runs beside the rendering, on both cores, instead of after it. Leaving the `with` block
    waits for every file. An error stops the writing of the files handed over after it and is raised there;
    of several, the one of the earliest file (every file before it is written)."""

    THREADS = 2

    def __init__(self) -> None:
        self.jobs: queue.SimpleQueue[tuple[int, Path, Sequence[bytes | memoryview]] | None] = queue.SimpleQueue()
        self.count = 0
        self.lock = threading.Lock()
        self.failed: tuple[int, BaseException] | None = None  # the earliest file (its place in order) that failed
        self.threads = [
            threading.Thread(target=self._run, name=f"wgmesh-render-writer-{i}", daemon=True)
            for i in range(self.THREADS)
        ]

    def __enter__(self) -> _Writer:
        for t in self.threads:
            t.start()
        return self

    def write(self, path: Path, pieces: Sequence[bytes | memoryview]) -> None:
        if (failed := self.failed) is not None:
            raise failed[1]
        self.jobs.put((self.count, path, pieces))
        self.count += 1

    def _run(self) -> None:
        while (job := self.jobs.get()) is not None:
            index, path, pieces = job
            if (failed := self.failed) is not None and failed[0] < index:
                continue
            try:
                with open(path, "wb") as f:
                    _write_all(f.fileno(), pieces)
            except BaseException as e:  # raised in the caller's thread
                with self.lock:
                    if self.failed is None or index < self.failed[0]:
                        self.failed = (index, e)

    def __exit__(self, *exc: object) -> None:
        for _ in self.threads:
            self.jobs.put(None)
        for t in self.threads:
            t.join()
        if self.failed is not None and exc[0] is None:
            raise self.failed[1]


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
