"""The commands that only read and write local files: validate, render, init."""

from __future__ import annotations

import contextlib
import errno
import os
import threading
from collections.abc import Sequence
from pathlib import Path

from wgmesh import meshfile
from wgmesh.commands.common import ExitStatus, Failure, finding, holding, pipeline_warning
from wgmesh.meshfile import MeshError
from wgmesh.views import make_view
from wgmesh.views.env import Environment
from wgmesh.views.reports import InitReport, RenderedConfig, RenderReport, ValidateReport


def validate(file: Path, env: Environment, json: bool = False) -> ExitStatus:
    view = make_view(env, json)
    try:
        with holding():
            mesh, warnings = meshfile.load(file)
    except MeshError as e:
        if json:  # the document says why; the failure's lines still go to stderr
            view.validate(ValidateReport(file, False, tuple(finding(d) for d in e.diagnostics)))
        raise
    pipeline_warning(file, view)
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
    with holding():
        mesh, warnings = meshfile.load(file)
    found = tuple(finding(w) for w in warnings)
    if all_nodes:
        if node is not None:
            raise Failure("give either a NODE or --all, not both")
        if out is None:
            raise Failure("--all needs --out DIR: one file per node, DIR/NODE.conf")
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise Failure(f"cannot create the folder {out}: {e.strerror}") from None
        # every file's pieces first (views of the shared stanzas: no file's bytes are built), then the writes
        with holding():
            rendered = [(name, out / f"{name}.conf", pieces) for name, pieces in r.render_all_pieces(mesh)]
        try:
            write_files([(path, pieces) for _, path, pieces in rendered])
        except OSError as e:
            raise Failure(f"cannot write {e.filename}: {e.strerror}; the files before it are written") from None
        # their texts are joined only for --json, which prints them all (the human view says how many: a
        # 1,000-node mesh's 155 MB stay out of memory)
        written = [RenderedConfig(n, b"".join(pieces).decode() if json else "", path) for n, path, pieces in rendered]
        gone = tuple(n.name for n in mesh.nodes if n.decommission)
        view.render(RenderReport(tuple(written), all_nodes=True, out=out, warnings=found, decommissioned=gone))
        return ExitStatus.OK
    if node is None:
        raise Failure(f"name a node to render ({', '.join(mesh.node_names)}), or use --all --out DIR")
    if node not in mesh.node_names:
        raise Failure(f"no node {node!r} in {file} (nodes: {', '.join(mesh.node_names)})")
    if mesh.node(node).decommission:
        raise Failure(f"{node} has `decommission: true`: there is no config to render (apply takes its interface "
                      "down and removes its config); remove that line to render the config it would run")
    text = r.render_node(mesh, node)
    if out is not None:
        try:
            out.write_text(text)
        except OSError as e:
            raise Failure(f"cannot write {out}: {e.strerror}") from None
    view.render(RenderReport((RenderedConfig(node, text, out),), out=out, warnings=found))
    return ExitStatus.OK


WRITERS = 2


def write_files(files: Sequence[tuple[Path, Sequence[bytes | memoryview]]], writers: int = WRITERS) -> None:
    """Create and write each file from its pieces, on `writers` threads (the caller's one of them). Creating and
    filling a file is kernel time, which runs beside the other threads' (0.06 s on one thread, 0.035 s on two
    for 1,000 files, 155 MB, on tmpfs here); the files are all rendered before, because a thread that renders
    holds the interpreter, and writers beside it get it back only every switch interval (5 ms) between two files
    (measured: rendering beside the writes left most of them for after). Raises the error of the earliest file
    that failed: every file before it is written, none after it is started once it failed."""
    taken = iter(range(len(files)))  # next() on it is atomic: each file is written by one thread
    failed: list[tuple[int, BaseException]] = []

    def run() -> None:
        for i in taken:
            if failed and min(f[0] for f in failed) < i:
                return
            path, pieces = files[i]
            try:
                _write_file(path, pieces)
            except BaseException as e:  # raised in the caller's thread
                failed.append((i, e))

    threads = [threading.Thread(target=run, name=f"wgmesh-render-writer-{k}") for k in range(1, writers)]
    for t in threads:
        t.start()
    try:
        run()
    finally:
        for t in threads:
            t.join()
    if failed:
        raise min(failed, key=lambda f: f[0])[1]


def _write_file(path: Path, pieces: Sequence[bytes | memoryview]) -> None:
    """One file, never through a symbolic link (O_NOFOLLOW: a link planted as NODE.conf would have the config
    written over whatever it points to). A file that could not be written whole is removed, not left cut
    short; the error names the file (writev's own errors carry no name)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW, 0o666)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise OSError(e.errno, "it is a symbolic link (wgmesh does not write through links: remove it)",
                          str(path)) from None
        raise
    try:
        try:
            _write_all(fd, pieces)
        finally:
            os.close(fd)
    except OSError as e:
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise OSError(e.errno, f"{e.strerror} (the file is removed, not left cut short)", str(path)) from None


def _write_all(fd: int, pieces: Sequence[bytes | memoryview]) -> None:
    """Write the pieces in order with `os.writev`: the kernel copies the shared stanzas straight into the file
    (no joined copy per file); a short write goes on from where it stopped. One call, nothing made in Python,
    when the kernel takes them all (as it nearly always does)."""
    done = os.writev(fd, pieces) if 0 < len(pieces) <= _IOV_MAX else 0
    if done == sum(map(len, pieces)):
        return
    views = [memoryview(p) for p in pieces if len(p)]
    while True:
        while views and done >= len(views[0]):
            done -= len(views[0])
            views.pop(0)
        if not views:
            return
        if done:
            views[0] = views[0][done:]
        done = os.writev(fd, views[:_IOV_MAX])


_IOV_MAX = 1024  # POSIX's minimum is 16; Linux's is 1024 (render_all_pieces gives at most 4 pieces)


def init(directory: Path, force: bool, env: Environment, json: bool = False) -> ExitStatus:
    from wgmesh import scaffold

    if directory.is_symlink() and not directory.exists():
        raise Failure(f"{directory} is a symbolic link to nothing: give a folder (or make the one it names)")
    kept = scaffold.kept_files(directory) if force else set()  # never written: a link there is the repo's own
    links = [q for p in scaffold.starter_files(directory) if p not in kept
             for q in (p, *(p.parents[i] for i in range(len(p.relative_to(directory).parents) - 1))) if q.is_symlink()]
    if links:  # a link planted as mesh.yaml (or as a folder on the way: .github/workflows) would have init write
        # wherever it points (as root: anywhere)
        raise Failure(f"{links[0]} is a symbolic link: init does not write through links; remove it")
    if directory.exists() and not directory.is_dir():
        raise Failure(f"{directory} is a file, not a folder: give the folder for the new mesh repo (init writes "
                      "mesh.yaml and the pipeline's files in it)")
    try:
        written = scaffold.init_repo(directory, force=force)
    except FileExistsError as e:
        raise Failure(f"{e.filename or e} already exists; use --force to refresh the pipeline's files (it keeps "
                      "mesh.yaml, known_hosts and .gitignore)") from None
    except OSError as e:
        raise Failure(f"cannot write {e.filename or directory}: {e.strerror or type(e).__name__}; nothing more was "
                      "written") from None
    by = {what: tuple(p for p, done in written.items() if done == what)
          for what in ("created", "updated", "kept", "unchanged")}
    make_view(env, json).init(InitReport(directory, by["created"], by["updated"], by["kept"], by["unchanged"]))
    return ExitStatus.OK
