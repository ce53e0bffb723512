"""plan and apply: read every node, diff, ask for approval, run each node's apply script, verify, roll back.

One node's failure is that node's result, never the run's. The scripts themselves are in remote/apply.py.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from wgmesh.commands import planfile
from wgmesh.commands.common import (
    ConnectOptions,
    ExitStatus,
    Failure,
    TransportFactory,
    _view,
    load_mesh,
    open_transport,
    select_nodes,
    ssh_transport,
)
from wgmesh.commands.read import Reading, plan_from_reading, read_nodes
from wgmesh.core.model import Mesh
from wgmesh.core.plan import NodePlan, NodeResult, Outcome, Plan, diff_node
from wgmesh.core.state import LiveState
from wgmesh.remote import read as live_mod
from wgmesh.remote.apply import (
    DEFAULT_LOCK_TIMEOUT,
    VERIFY_MARK,
    _failure,
    apply_script,
    cleanup_script,
    rollback_script,
)
from wgmesh.remote.transport import Transport, apply_timeout
from wgmesh.views.base import View
from wgmesh.views.env import Environment


def apply_node(
    mesh: Mesh,
    transport: Transport,
    plan: NodePlan,
    live: LiveState,
    *,
    lock_timeout: int = DEFAULT_LOCK_TIMEOUT,
) -> NodeResult:
    """Converge one node whose plan has changes. Never raises for a node-level failure."""
    node = mesh.node(plan.node)
    try:
        result = transport.run(
            node.name, apply_script(mesh, node, plan, lock_timeout=lock_timeout), apply_timeout(lock_timeout)
        )
    except Exception as e:  # the transport reports every failure as SshError; keep one node from stopping all
        return NodeResult(node.name, Outcome.FAILED, str(e))
    if result.exit_status != 0:
        return NodeResult(node.name, Outcome.FAILED, _failure(result))
    _, _, after_text = result.stdout.partition(VERIFY_MARK + "\n")
    try:
        after = live_mod.parse_read_output(mesh.interface, after_text)
        remaining = diff_node(mesh, node, after)
    except live_mod.ParseError as e:
        remaining = NodePlan(node.name, error=f"cannot read the node back: {e}")
    if remaining.error or remaining.changes:
        why = remaining.error or ", ".join(
            f"{c.action.symbol} {c.address}" for c in remaining.changes
        )
        try:
            back = transport.run(
                node.name, rollback_script(mesh, lock_timeout=lock_timeout), apply_timeout(lock_timeout)
            )
            rolled = "rolled back to the previous config" if back.exit_status == 0 else (
                f"rollback failed too: {_failure(back)}")
        except Exception as e:
            rolled = f"rollback failed too: {e}"
        return NodeResult(node.name, Outcome.FAILED, f"verification failed ({why}); {rolled}")
    # A failed cleanup leaves the snapshot in a tmpfs, mode 600, on the node; the next apply replaces it.
    with contextlib.suppress(Exception):
        transport.run(node.name, cleanup_script(mesh, lock_timeout=lock_timeout), apply_timeout(lock_timeout))
    add, change, destroy = plan.counts()
    summary = f"{add} added, {change} changed, {destroy} destroyed"
    return NodeResult(node.name, Outcome.CHANGED, summary)


def apply_plan(
    mesh: Mesh,
    transport: Transport,
    plans: list[NodePlan],
    states: Mapping[str, LiveState],
    *,
    parallelism: int,
    lock_timeout: int = DEFAULT_LOCK_TIMEOUT,
    on_result: Callable[[NodeResult], None] | None = None,
) -> list[NodeResult]:
    """Apply every node's plan in parallel. Nodes without changes are reported unchanged; nodes whose
    plan is an error are reported failed; one node's failure never stops the others."""
    from concurrent.futures import ThreadPoolExecutor

    def one(p: NodePlan) -> NodeResult:
        if p.error:
            r = NodeResult(p.node, Outcome.FAILED, p.error)
        elif not p.changes:
            r = NodeResult(p.node, Outcome.UNCHANGED, "; ".join(p.notes))
        else:
            r = apply_node(mesh, transport, p, states[p.node], lock_timeout=lock_timeout)
        if on_result:
            on_result(r)
        return r

    with ThreadPoolExecutor(max_workers=max(1, min(parallelism, len(plans) or 1))) as pool:
        return list(pool.map(one, plans))



APPROVE_PROMPT = "Do you want to perform these actions? Only 'yes' will be accepted."


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


def _read(
    mesh: Mesh, opts: ConnectOptions, view: View, env: Environment, factory: TransportFactory
) -> tuple[Transport, Reading, Plan]:
    nodes = select_nodes(mesh, opts.targets)
    transport = open_transport(factory, opts, view, env)
    reading = read_nodes(mesh, transport, nodes)
    return transport, reading, plan_from_reading(mesh, reading)


def run_plan(opts: PlanOptions, env: Environment, factory: TransportFactory = ssh_transport) -> ExitStatus:
    view = _view(env, opts.json)
    mesh = load_mesh(opts.file, view)
    transport, reading, plan = _read(mesh, opts.connect, view, env, factory)
    transport.close()
    view.plan(plan)
    if opts.out is not None:
        planfile.write(opts.out, opts.file, opts.connect.targets, reading, plan)
        view.plan_saved(opts.out)
    if plan.errors:
        return ExitStatus.ERROR
    if opts.detailed_exitcode and plan.has_changes:
        return ExitStatus.CHANGES
    return ExitStatus.OK


def _approve(env: Environment, view: View) -> bool:
    """Ask on the terminal (the Environment's stdin); only `yes` approves."""
    if not env.stdin_isatty:
        raise Failure("apply needs approval: no terminal to ask on. Review the plan and run with --auto-approve "
                      "(as CI does), or apply a saved plan")
    view.prompt(APPROVE_PROMPT)
    answer = env.read_line()
    return answer is not None and answer.strip() == "yes"


def run_apply(opts: ApplyOptions, env: Environment, factory: TransportFactory = ssh_transport) -> ExitStatus:
    view = _view(env, opts.json)
    mesh = load_mesh(opts.file, view)
    saved = planfile.read(opts.saved_plan) if opts.saved_plan else None
    connect = opts.connect
    if saved is not None:
        connect = ConnectOptions(
            connect.parallelism, connect.timeout, connect.accept_new_host_keys, saved.targets, connect.command_timeout
        )
    transport, reading, plan = _read(mesh, connect, view, env, factory)
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
                view.apply_cancelled()
                return ExitStatus.ERROR
        results = apply_plan(
            mesh, transport, list(plan.nodes), reading.states,
            parallelism=connect.parallelism, lock_timeout=opts.lock_timeout,
        )
    finally:
        transport.close()
    view.results(plan, results)
    return ExitStatus.ERROR if any(r.outcome is Outcome.FAILED for r in results) else ExitStatus.OK
