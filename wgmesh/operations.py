"""The commands that talk to nodes, as functions of (options, environment) -> exit status.

`cli.py` parses options into these dataclasses; tests can call the functions with a fake transport.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path

from wgmesh import config, planfile
from wgmesh.apply import DEFAULT_LOCK_TIMEOUT, Outcome, apply_plan
from wgmesh.core.model import Mesh
from wgmesh.core.plan import Plan
from wgmesh.engine import Reading, UsageError, plan_from_reading, read_nodes, select_nodes
from wgmesh.remote.ssh import DEFAULT_PARALLELISM, DEFAULT_TIMEOUT, SshTransport
from wgmesh.remote.transport import Transport
from wgmesh.view import Environment, HumanView, JsonView

APPROVE_PROMPT = "Do you want to perform these actions? Only 'yes' will be accepted."


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


@dataclass(frozen=True)
class PlanOptions:
    file: Path
    connect: ConnectOptions = field(default_factory=ConnectOptions)
    json: bool = False
    detailed_exitcode: bool = False
    out: Path | None = None


@dataclass(frozen=True)
class ApplyOptions:
    file: Path
    connect: ConnectOptions = field(default_factory=ConnectOptions)
    json: bool = False
    auto_approve: bool = False
    lock_timeout: int = DEFAULT_LOCK_TIMEOUT
    saved_plan: Path | None = None


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


def _read(
    mesh: Mesh, opts: ConnectOptions, view: HumanView | JsonView, factory: TransportFactory
) -> tuple[Transport, Reading, Plan]:
    nodes = select_nodes(mesh, opts.targets)
    transport = factory(opts, view.progress)
    reading = read_nodes(mesh, transport, nodes)
    return transport, reading, plan_from_reading(mesh, reading)


def run_plan(opts: PlanOptions, env: Environment, factory: TransportFactory = ssh_transport) -> ExitStatus:
    view = _view(env, opts.json)
    mesh = load_mesh(opts.file, view)
    transport, reading, plan = _read(mesh, opts.connect, view, factory)
    transport.close()
    view.plan(plan)
    if opts.out is not None:
        planfile.write(opts.out, opts.file, opts.connect.targets, reading, plan)
        if not opts.json:
            view.message(f"\nSaved the plan to {opts.out}. To perform exactly these actions, run: "
                         f"wgmesh apply {opts.out}")
    if plan.errors:
        return ExitStatus.ERROR
    if opts.detailed_exitcode and plan.has_changes:
        return ExitStatus.CHANGES
    return ExitStatus.OK


def _approve(env: Environment, view: HumanView | JsonView) -> bool:
    if not env.stdin_isatty:
        raise Failure("apply needs approval: no terminal to ask on. Review the plan and run with --auto-approve "
                      "(as CI does), or apply a saved plan")
    env.stderr.write(f"\n{APPROVE_PROMPT}\n  Enter a value: ")
    env.stderr.flush()
    try:
        answer = input()
    except EOFError:
        answer = ""
    return answer.strip() == "yes"


def run_apply(opts: ApplyOptions, env: Environment, factory: TransportFactory = ssh_transport) -> ExitStatus:
    view = _view(env, opts.json)
    mesh = load_mesh(opts.file, view)
    saved = planfile.read(opts.saved_plan) if opts.saved_plan else None
    connect = opts.connect
    if saved is not None:
        connect = ConnectOptions(connect.parallelism, connect.timeout, connect.accept_new_host_keys, saved.targets)
    transport, reading, plan = _read(mesh, connect, view, factory)
    try:
        if saved is not None:
            reasons = planfile.staleness(saved, opts.file, reading)
            if reasons:
                raise Failure("Saved plan is stale: " + "; ".join(reasons) + ". Run wgmesh plan again.")
        if not opts.json:  # the JSON document of an apply holds the plan: one document on stdout
            view.plan(plan)
            if not plan.has_changes:
                return ExitStatus.ERROR if plan.errors else ExitStatus.OK
        if plan.has_changes and saved is None and not opts.auto_approve:
            if opts.json:
                raise Failure("apply --json cannot ask for approval: add --auto-approve or apply a saved plan")
            if not _approve(env, view):
                view.message("Apply cancelled.")
                return ExitStatus.ERROR
        results = apply_plan(
            mesh, transport, list(plan.nodes), reading.states,
            parallelism=connect.parallelism, lock_timeout=opts.lock_timeout,
        )
    finally:
        transport.close()
    view.results(plan, results)
    return ExitStatus.ERROR if any(r.outcome is Outcome.FAILED for r in results) else ExitStatus.OK


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
