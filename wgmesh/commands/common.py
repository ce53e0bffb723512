"""What every command shares: exit statuses, connect options, the transport factory, loading mesh.yaml,
selecting nodes, and the guard that turns a failure into one clean line."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path

from wgmesh import config
from wgmesh.commands import planfile
from wgmesh.core.model import Mesh, Node
from wgmesh.remote.ssh import DEFAULT_PARALLELISM, DEFAULT_TIMEOUT, SshTransport
from wgmesh.remote.transport import Transport
from wgmesh.views.env import Environment
from wgmesh.views.human import HumanView
from wgmesh.views.json import JsonView


class ExitStatus(IntEnum):
    OK = 0
    ERROR = 1
    CHANGES = 2


@dataclass(frozen=True)
class ConnectOptions:
    parallelism: int = DEFAULT_PARALLELISM
    timeout: float = DEFAULT_TIMEOUT
    accept_new_host_keys: bool = False
    targets: tuple[str, ...] = ()


TransportFactory = Callable[[ConnectOptions, Callable[[str, str], None]], Transport]


def ssh_transport(opts: ConnectOptions, progress: Callable[[str, str], None]) -> Transport:
    return SshTransport(
        parallelism=opts.parallelism,
        timeout=opts.timeout,
        accept_new_host_keys=opts.accept_new_host_keys,
        on_progress=progress,
        on_host_key_added=_tell_host_key_added,
    )


def _tell_host_key_added(line: str) -> None:
    """Trust on first use is never silent: every key learned is named, with its fingerprint."""
    sys.stderr.write(f"Added to known_hosts (trusted on first use): {line}\n")


class Failure(Exception):
    """A command-level error: printed as one `Error:` line, exit 1."""


def load_mesh(path: Path, view: HumanView | JsonView) -> Mesh:
    """Load and validate; print warnings; raise config.MeshError with every error."""
    mesh, warnings = config.load(path)
    for w in warnings:
        view.warning(str(w))
    return mesh


def _view(env: Environment, as_json: bool) -> HumanView | JsonView:
    return JsonView(env) if as_json else HumanView(env)


def guard(fn: Callable[[], ExitStatus], env: Environment) -> ExitStatus:
    """Turn every expected failure into clean lines on stderr and exit 1: never a traceback."""
    try:
        return fn()
    except config.MeshError as e:
        for d in e.diagnostics:
            env.stderr.write(f"{d}\n")
        n = sum(1 for d in e.diagnostics if d.severity == "error")
        env.stderr.write(f"{n} error{'s' if n != 1 else ''}; nothing was changed on any host.\n")
    except (Failure, UsageError, planfile.PlanFileError) as e:
        env.stderr.write(f"Error: {e}\n")
    except KeyboardInterrupt:
        env.stderr.write("Interrupted.\n")
    except Exception as e:  # a bug: one line for the user, the traceback on request
        if os.environ.get("WGMESH_DEBUG"):
            raise
        env.stderr.write(f"Error: internal error: {type(e).__name__}: {e} (WGMESH_DEBUG=1 shows the traceback; "
                         "please report it)\n")
    return ExitStatus.ERROR


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
