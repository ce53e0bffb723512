"""What every command shares: exit statuses, connect options, the transport factory, loading mesh.yaml,
selecting nodes, and the guard that turns a failure into one clean line."""

from __future__ import annotations

import contextlib
import errno
import gc
import io
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import TYPE_CHECKING

from wgmesh import meshfile
from wgmesh.core.model import DEFAULT_PARALLELISM, DEFAULT_TIMEOUT, Mesh, Node
from wgmesh.meshfile import Diagnostic
from wgmesh.views import make_view
from wgmesh.views.base import View
from wgmesh.views.env import Environment
from wgmesh.views.reports import Finding
from wgmesh.views.text import safe

if TYPE_CHECKING:  # (validate and render use no transport: remote.transport is not imported for them)
    from wgmesh.remote.transport import Transport


class ExitStatus(IntEnum):
    OK = 0
    ERROR = 1
    CHANGES = 2


@dataclass(frozen=True)
class ConnectOptions:
    """How a command reaches its nodes: --parallelism, --timeout, --accept-new-host-keys, --target,
    --command-timeout."""

    parallelism: int = DEFAULT_PARALLELISM
    timeout: float = DEFAULT_TIMEOUT
    accept_new_host_keys: bool = False
    targets: tuple[str, ...] = ()
    command_timeout: float | None = None  # --command-timeout: one deadline for every node command


TransportFactory = Callable[[ConnectOptions, Callable[[str, str], None]], "Transport"]


def ssh_transport(
    opts: ConnectOptions,
    progress: Callable[[str, str], None],
    *,
    environ: Mapping[str, str] | None = None,
    on_host_key_added: Callable[[str], None] | None = None,
) -> Transport:
    """The real transport. `environ` (the command's Environment) may name an SSH key: WGMESH_SSH_IDENTITY."""
    from wgmesh.remote.ssh import SshTransport  # paramiko: only for the commands that connect

    identity = None if environ is None else environ.get("WGMESH_SSH_IDENTITY")
    return SshTransport(
        parallelism=opts.parallelism,
        timeout=opts.timeout,
        command_timeout=opts.command_timeout,
        accept_new_host_keys=opts.accept_new_host_keys,
        identity_override=identity,
        on_progress=progress,
        on_host_key_added=on_host_key_added,
    )


def open_transport(factory: TransportFactory | None, opts: ConnectOptions, view: View, env: Environment) -> Transport:
    """The transport a command works through: the injected factory's (tests), else SSH with the Environment's
    variables and the view's notices."""
    if factory is None or factory is ssh_transport:
        return ssh_transport(opts, view.progress, environ=env.environ, on_host_key_added=view.host_key_added)
    return factory(opts, view.progress)


class Failure(Exception):
    """A command-level error: printed as one `Error:` line, exit 1."""


@contextlib.contextmanager
def holding() -> Iterator[None]:
    """Around the making of what a command holds to its end (mesh.yaml's document and model, every node's state):
    many small acyclic objects, which the cyclic garbage collector would walk again and again while they pile up
    (for N nodes' states, a cost that grows with N²). It is paused meanwhile; then what was made is frozen
    (gc.freeze: left out of every later collection) before it runs again, else its first pass walks the whole
    pile once more. The command ends soon after: what is frozen is freed at exit."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.freeze()
            gc.enable()


def load_mesh(path: Path, view: View) -> Mesh:
    """Load and validate; print warnings; raise meshfile.MeshError with every error."""
    mesh, warnings = meshfile.load(path)
    for w in warnings:
        view.warning(str(w))
    pipeline_warning(path, view)
    return mesh


def pipeline_warning(path: Path, view: View) -> None:
    """Say when the mesh repo's shared action (its CI steps and report) is not this wgmesh's: an upgrade leaves
    the repo's copy as it was, and `init --force` refreshes it."""
    import shlex

    from wgmesh import scaffold

    stale = scaffold.outdated(path.parent)
    if stale:
        view.warning(f"{', '.join(str(p) for p in stale)}: not what this wgmesh writes (made by another version, or "
                     f"changed by hand); `wgmesh init --force {shlex.quote(str(path.parent))}` refreshes the "
                     "pipeline's files, the workflow too (review its diff), and keeps mesh.yaml, known_hosts and "
                     ".gitignore")


def _view(env: Environment, as_json: bool) -> View:
    return make_view(env, as_json)


def finding(d: Diagnostic) -> Finding:
    """A mesh.yaml diagnostic as the views take it."""
    return Finding(str(d), d.file, d.line, d.col, d.path, d.message, d.severity)


def guard(fn: Callable[[], ExitStatus], env: Environment) -> ExitStatus:
    """Turn every expected failure into clean lines on stderr and exit 1: never a traceback."""
    try:
        return fn()
    except meshfile.MeshError as e:
        for d in e.diagnostics:
            env.stderr.write(f"{safe(d)}\n")
        n = sum(1 for d in e.diagnostics if d.severity == "error")
        env.stderr.write(f"{n} error{'s' if n != 1 else ''}; nothing was changed on any host.\n")
    except (Failure, UsageError) as e:  # (a saved plan's PlanFileError is a Failure)
        env.stderr.write(f"Error: {safe(e)}\n")  # a message may quote a node
    except KeyboardInterrupt:
        env.stderr.write("Interrupted.\n")
    except BrokenPipeError:  # the reader of the output went away (`wgmesh plan | head -1`): nothing more to say
        _discard_output(env)
    except OSError as e:
        if e.errno not in _FULL:
            _internal_error(e, env)
        else:  # a write the disk refused: the output's (`wgmesh plan > /dev/full`; the commands' own files are
            # named by their Failure)
            _discard_output(env)
            env.stderr.write(f"Error: cannot write the output: {e.strerror}\n")
    except Exception as e:
        _internal_error(e, env)
    return ExitStatus.ERROR


_FULL = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO})


def _internal_error(e: Exception, env: Environment) -> None:
    """A bug: one line for the user, the traceback on request."""
    if env.debug:
        raise e
    env.stderr.write(f"Error: internal error: {type(e).__name__}: {safe(e)} (WGMESH_DEBUG=1 shows the traceback; "
                     "please report it)\n")


def _discard_output(env: Environment) -> None:
    """Point the closed output at /dev/null, so that writing or flushing it later (at exit) fails no more."""
    with contextlib.suppress(OSError, ValueError, AttributeError, io.UnsupportedOperation):
        fd = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(fd, env.stdout.fileno())
        finally:
            os.close(fd)


class UsageError(Exception):
    """A wrong option value (an unknown --target, say): one line, exit 1."""


def select_nodes(mesh: Mesh, targets: Sequence[str]) -> list[Node]:
    if not targets:
        return list(mesh.nodes)
    unknown = [t for t in targets if t not in mesh.node_names]
    if unknown:
        raise UsageError(
            f"--target {unknown[0]}: no such node in {mesh.path.name} (nodes: {', '.join(mesh.node_names)})"
        )
    return [n for n in mesh.nodes if n.name in targets]
