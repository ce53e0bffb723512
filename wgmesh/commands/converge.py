"""plan and apply: read every node, diff, ask for approval, run each node's apply script, verify, roll back,
confirm over a new connection.

One node's failure is that node's result, never the run's. The scripts themselves are in remote/apply.py.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
from wgmesh.commands.read import Reading, comparable_state, plan_from_reading, read_nodes
from wgmesh.core.changes import Change
from wgmesh.core.model import Mesh, Node
from wgmesh.core.plan import (
    NOT_STARTED,
    MeshIndex,
    NodePlan,
    NodeResult,
    Outcome,
    Plan,
    diff_node,
    outside_targets,
    plan_index,
)
from wgmesh.core.punch import PairPath, punching
from wgmesh.core.relay import relaying
from wgmesh.core.state import LiveState
from wgmesh.core.steps import StepKind
from wgmesh.remote import read as live_mod
from wgmesh.remote.apply import (
    DEFAULT_CONFIRM_TIMEOUT,
    DEFAULT_LOCK_TIMEOUT,
    VERIFY_MARK,
    _failure,
    apply_script,
    confirm_script,
    parse_outcome,
    rollback_script,
)
from wgmesh.remote.transport import READ_TIMEOUT, WAKE, CommandResult, Transport, apply_timeout
from wgmesh.views.base import View
from wgmesh.views.env import Environment

STALE = "changed since this plan"  # (the start of what `stale` says)


def stale(what: str) -> str:
    """A node whose state under the lock is not the one the plan was made from: `what` moved (its parts)."""
    return f"{STALE} ({what}: another apply, a rotate or a change by hand): run plan again"

ALREADY = "another apply made these changes since the plan"
UNREACHABLE = "reverted: the controller could not reach it after the change"
CONFIRM_RETRY_PAUSE = 1.0  # seconds between two attempts to reach a node to confirm its change


def _guarded(mesh: Mesh, state: LiveState) -> dict[str, object]:
    """What must not have moved between the plan and the apply, as a saved plan compares it, without the
    names the node resolves (a DNS answer is not a change someone made, and the read under the lock does not
    resolve names: a lookup can take seconds) and the routes of other devices (a route there that the change
    needs fails its step, naming it)."""
    doc = comparable_state(mesh, state)
    doc.pop("resolved", None)
    doc.pop("route_conflicts", None)
    return doc


def _differs(before: Mapping[str, object], after: Mapping[str, object]) -> str:
    return ", ".join(k for k in before if before.get(k) != after.get(k)) or "?"


def _as_before(before: Mapping[str, object], now: Mapping[str, object]) -> bool:
    """Whether an undone run left the node as before: the same state, but for IP forwarding that the run
    turned on (an undo never turns it off: another mesh or service may rely on it by then)."""
    was, is_ = before.get("forwarding"), now.get("forwarding")
    if isinstance(was, dict) and isinstance(is_, dict) and was != is_:
        if set(was) != set(is_) or any(on and not is_[v] for v, on in was.items()):  # only off -> on
            return False
        now = {**now, "forwarding": was}
    return now == before


_UNDONE = "the node had undone this apply by itself (its revert timer, or a shutdown in order)"
UNREACHED_AFTER = 3.0  # seconds: a rollback that took longer to reach the node found it out of reach meanwhile


def _rolled_back(mesh: Mesh, back: CommandResult, before: Mapping[str, object]) -> str:
    """What the rollback did, checked: the state it leaves is read again and compared with the one before.
    "reverted": the node had undone the run by itself already (its revert timer, or a shutdown in order: SIGTERM
    has the timer undo it at once), which is said as such, not as a rollback."""
    outcome = parse_outcome(back.stdout) if back.exit_status == 0 else None
    if outcome not in ("rolledback", "reverted"):
        return f"rollback failed too: {_failure(back)}"
    done = "rolled back" if outcome == "rolledback" else _UNDONE
    try:
        now = _guarded(mesh, live_mod.parse_read_output(mesh.interface, back.stdout.partition(VERIFY_MARK + "\n")[2]))
    except live_mod.ParseError as e:
        return f"{done}, but the node could not be read after it: {e}"
    if not _as_before(before, now):
        return f"{done}, but the node still differs from before the apply ({_differs(before, now)})"
    if outcome == "rolledback":
        return "rolled back to the previous config"
    return f"{done}; read again: as before the apply"


def _confirm_pending(mesh: Mesh, transport: Transport, node: str, runs: list[str], *, lock_timeout: int) -> str | None:
    """Confirm the pending change of each of `runs` (applies whose controller stopped before confirming them) over
    this apply's own connection, itself proof that the node is reachable after them: None when all are
    confirmed, else why not. One the node undid meanwhile (its timer came first) means the plan was made from a
    state that is gone."""
    for run in runs:
        try:
            got = transport.run(node, confirm_script(mesh, run, lock_timeout=lock_timeout), apply_timeout(lock_timeout))
        except Exception as e:  # SshError: this node's error
            return f"cannot confirm the pending apply {run}: {e}"
        outcome = parse_outcome(got.stdout) if got.exit_status == 0 else None
        if outcome != "confirmed":
            what = "the node undid it by itself" if outcome == "reverted" or got.exit_status == 3 else _failure(got)
            return f"the pending apply {run} was not confirmed ({what}): run wgmesh plan again"
    return None


def _read_back(mesh: Mesh, transport: Transport, node: str, before: Mapping[str, object]) -> str:
    """After a failed apply script undid its steps: the node read again and compared with the state before. (A
    `wg-quick up` that fails in a PostUp line deletes the interface without its PostDown lines: what the lines
    before the failing one did stays, and no undo of the script's knows it.)"""
    try:
        got = transport.run(node, live_mod.read_command(mesh.interface), READ_TIMEOUT)
        if got.exit_status != 0:
            raise live_mod.ParseError(f"the read failed (exit {got.exit_status})")
        now = _guarded(mesh, live_mod.parse_read_output(mesh.interface, got.stdout))
    except Exception as e:  # SshError, ParseError: said, not raised (the apply's own failure is the message)
        return f"the node could not be read again after it: {e}"
    if not _as_before(before, now):
        return f"read again, the node still differs from before the apply ({_differs(before, now)})"
    return "read again: as before the apply"


def _reach(transport: Transport, node: str, script: str, *, timeout: float,
           deadline: float, failed: list[str] | None = None) -> CommandResult | str:
    """`script` over a new connection to the node, tried again until `deadline`; the last error if never.
    `failed` collects the errors of the tries that did not reach it."""
    while True:
        try:
            transport.reconnect(node)
            return transport.run(node, script, timeout)
        except Exception as e:  # SshError: not reachable (yet); anything else: still this node's error
            if failed is not None:
                failed.append(str(e))
            left = deadline - time.monotonic()
            if left <= 0:
                return str(e)
            time.sleep(min(CONFIRM_RETRY_PAUSE, left))


def _confirm(mesh: Mesh, transport: Transport, node: str, run: str, before: Mapping[str, object], *,
             lock_timeout: int, confirm_timeout: int) -> str | None:
    """Confirm a node's verified change over a new connection: None when confirmed, else why not.

    The node reverts by itself `confirm_timeout` seconds after the change unless this reaches it first; until
    then every failure to reach it is tried again. The node's answer is the decision (confirm.sh and the
    node's timer claim the run the same way: exactly one wins)."""
    got = _reach(transport, node, confirm_script(mesh, run, lock_timeout=lock_timeout),
                 timeout=apply_timeout(lock_timeout), deadline=time.monotonic() + confirm_timeout)
    if isinstance(got, str):
        return f"{UNREACHABLE} ({got}); it restores its previous config by itself {confirm_timeout}s after the change"
    outcome = parse_outcome(got.stdout) if got.exit_status == 0 else None
    if outcome == "confirmed":
        return None
    if outcome == "reverted":
        return f"{UNREACHABLE} in time; it restored its previous config by itself {confirm_timeout}s after the change"
    if got.exit_status == 3 and "no record" in got.stderr:
        # restarted (the run's records and its revert timer were on a tmpfs; a shutdown in order, SIGTERM, has
        # the timer undo the change first) or its files removed: only a read tells what the node has now
        return ("the change could not be confirmed: no record of this apply on the node (restarted? a shutdown in "
                "order undoes the change first, a crash keeps it); "
                f"{_read_back(mesh, transport, node, before)}")
    return f"the change could not be confirmed: {_failure(got)}"


def _lost(mesh: Mesh, transport: Transport, node: str, run: str, lost: str, before: Mapping[str, object], *,
          lock_timeout: int, confirm_timeout: int, went: float | None = None) -> str:
    """The apply's connection was lost after `go`: nothing verified the change, so it must not stay. Roll it
    back over a new connection, or, if the node cannot be reached, say that it reverts by itself."""
    failed: list[str] = []
    started = time.monotonic()
    got = _reach(transport, node, rollback_script(mesh, run, lock_timeout=lock_timeout),
                 timeout=apply_timeout(lock_timeout), deadline=time.monotonic() + confirm_timeout, failed=failed)
    if isinstance(got, str):
        return (f"{UNREACHABLE} ({lost}; then: {got}); it restores its previous config by itself "
                f"{confirm_timeout}s after the change")
    # reached only after failed tries, after a connection that took seconds to open (its SYNs dropped until the
    # revert), or once its revert timer was due (`went`: when it was told `go`): the node was out of reach
    # meanwhile; else it undid the run by itself at once (a reboot's shutdown in order)
    now = time.monotonic()
    unreached = bool(failed) or now - started > UNREACHED_AFTER or (went is not None and now - went >= confirm_timeout)
    if unreached and got.exit_status == 0 and parse_outcome(got.stdout) == "reverted":
        back = _rolled_back(mesh, got, before).removeprefix(_UNDONE)
        return (f"{UNREACHABLE} ({lost}); it restored its previous config by itself (its revert timer, "
                f"{confirm_timeout}s after the change, or a shutdown in order){back}")
    if got.exit_status == 3 and "no record" in got.stderr:
        # it changed nothing, undid itself, or the node restarted (its records are on a tmpfs): a read tells
        return f"{lost}; no record of this apply on the node; {_read_back(mesh, transport, node, before)}"
    return f"{lost}; {_rolled_back(mesh, got, before)}"


def apply_node(
    mesh: Mesh,
    transport: Transport,
    plan: NodePlan,
    live: LiveState,
    *,
    lock_timeout: int = DEFAULT_LOCK_TIMEOUT,
    confirm_timeout: int = DEFAULT_CONFIRM_TIMEOUT,
    index: MeshIndex | None = None,
) -> NodeResult:
    """Converge one node whose plan has changes (made from `live`). Never raises for a node-level failure.
    `index`: the plan's (`plan_index`), so that the node is checked against the very config the plan wanted.

    Under the node lock the script prints the state; it goes on only if that is still `live`. Else another
    apply moved it and nothing changes: the node fails (STALE), or is unchanged if it already is what this
    plan wants. After the change the node waits `confirm_timeout` seconds for a confirmation over a new
    connection, and reverts by itself without one."""
    node = mesh.node(plan.node)
    pending = [s.value for s in plan.steps if s.kind is StepKind.CONFIRM_PENDING]
    if pending:  # another apply's change that awaits its confirmation: this plan was made from it, so keep it
        refused_pending = _confirm_pending(mesh, transport, node.name, pending, lock_timeout=lock_timeout)
        if refused_pending:
            return NodeResult(node.name, Outcome.FAILED, refused_pending)
        live = dataclasses.replace(live, pending_runs=())
        if all(s.kind is StepKind.CONFIRM_PENDING for s in plan.steps):
            return NodeResult(node.name, Outcome.CHANGED, f"confirmed the pending apply {', '.join(pending)}")
    script = apply_script(mesh, node, plan, lock_timeout=lock_timeout, confirm_timeout=confirm_timeout)
    before = _guarded(mesh, live)
    refused: list[str] = []
    already: list[str] = []  # another apply made this very change since the plan
    answered: list[float] = []  # when the node was told `go` (its change began about then)

    def decide(text: str) -> str | None:
        try:
            now = live_mod.parse_read_output(mesh.interface, text)
        except live_mod.ParseError as e:
            refused.append(f"cannot read the node under its lock: {e}")
            return None  # the script reads end-of-file: nothing changes
        if _guarded(mesh, now) != before:
            # moved since the plan: nothing changes here; fine if the node already is what this plan wants
            done = diff_node(mesh, node, dataclasses.replace(now, resolved=live.resolved), index=index)
            (already if not done.error and not done.changes else refused).append(
                stale(_differs(before, _guarded(mesh, now))))
            return "stop\n"
        answered.append(time.monotonic())
        return "go\n" + script.rest

    try:
        result = transport.converse(node.name, script.first, decide, apply_timeout(lock_timeout))
    except Exception as e:  # the transport reports every failure as SshError; keep one node from stopping all
        if answered:  # the node may have changed: roll it back, or it reverts by itself
            return NodeResult(node.name, Outcome.FAILED, _lost(mesh, transport, node.name, script.run, str(e),
                              before, lock_timeout=lock_timeout, confirm_timeout=confirm_timeout, went=answered[0]))
        return NodeResult(node.name, Outcome.FAILED, refused[0] if refused else str(e))
    if refused:
        return NodeResult(node.name, Outcome.FAILED, refused[0])
    if already:
        return NodeResult(node.name, Outcome.UNCHANGED, ALREADY)
    if result.exit_status == -1 and answered:
        return NodeResult(node.name, Outcome.FAILED, _lost(mesh, transport, node.name, script.run, _failure(result),
                          before, lock_timeout=lock_timeout, confirm_timeout=confirm_timeout, went=answered[0]))
    if result.exit_status != 0:
        failed = _failure(result)
        if answered:  # the script undid its steps: whether that is all of it, only a new read tells
            failed += f"; {_read_back(mesh, transport, node.name, before)}"
        return NodeResult(node.name, Outcome.FAILED, failed)
    _, _, after_text = result.stdout.partition(VERIFY_MARK + "\n")
    try:
        after = live_mod.parse_read_output(mesh.interface, after_text)
        # this run awaits its confirmation, as it should (after the check): not a pending change to plan for
        after = dataclasses.replace(after, pending_runs=tuple(r for r in after.pending_runs if r != script.run))
        remaining = diff_node(mesh, node, after, index=index)
    except live_mod.ParseError as e:
        remaining = NodePlan(node.name, error=f"cannot read the node back: {e}")
    if remaining.error or remaining.changes:
        why = remaining.error or ", ".join(
            f"{c.action.symbol} {c.address}" for c in remaining.changes
        )
        try:
            back = transport.run(
                node.name, rollback_script(mesh, script.run, lock_timeout=lock_timeout), apply_timeout(lock_timeout)
            )
            rolled = _rolled_back(mesh, back, before)
        except Exception as e:
            rolled = f"rollback failed too: {e}; the node reverts the change by itself within {confirm_timeout}s"
        return NodeResult(node.name, Outcome.FAILED, f"verification failed ({why}); {rolled}")
    unconfirmed = _confirm(mesh, transport, node.name, script.run, before, lock_timeout=lock_timeout,
                           confirm_timeout=confirm_timeout)
    if unconfirmed:
        return NodeResult(node.name, Outcome.FAILED, unconfirmed)
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
    confirm_timeout: int = DEFAULT_CONFIRM_TIMEOUT,
    on_result: Callable[[NodeResult], None] | None = None,
    observed: Mapping[str, LiveState] | None = None,
    on_interrupt: Callable[[], None] | None = None,
) -> list[NodeResult]:
    """Apply every node's plan in parallel. Nodes without changes are reported unchanged; nodes whose
    plan is an error are reported failed; one node's failure never stops the others.

    Ctrl-C (KeyboardInterrupt) while nodes are being applied: as Terraform, the nodes already started finish
    (verified and confirmed, or rolled back: stopping one in the middle is what the revert timer is for, not a
    way to stop), `on_interrupt` says so at once, no other node is started (each one is failed with
    NOT_STARTED), and the results are returned as usual. (A second Ctrl-C leaves the results unprinted; the
    started nodes still finish: their threads are waited for.)"""
    import signal
    import threading
    from concurrent.futures import Future, ThreadPoolExecutor, wait

    index = plan_index(mesh, observed if observed is not None else states)  # the plan's (see `_read`)
    stopping = threading.Event()

    def one(p: NodePlan) -> NodeResult:
        if stopping.is_set() and p.changes and not p.error:
            r = NodeResult(p.node, Outcome.FAILED, NOT_STARTED)
        elif p.error:
            r = NodeResult(p.node, Outcome.FAILED, p.error)
        elif not p.changes:
            r = NodeResult(p.node, Outcome.UNCHANGED, "; ".join(p.notes))
        else:
            r = apply_node(mesh, transport, p, states[p.node], lock_timeout=lock_timeout,
                           confirm_timeout=confirm_timeout, index=index)
        if on_result:
            on_result(r)
        return r

    # Ctrl-C waits while the nodes are handed to the pool (SIGINT blocked in this thread, and so in the pool's
    # threads, made meanwhile): a node is either handed over, and finishes or sees `stopping`, or not at all
    masked = threading.current_thread() is threading.main_thread()
    with ThreadPoolExecutor(max_workers=max(1, min(parallelism, len(plans) or 1))) as pool:
        futures: list[Future[NodeResult]] = []
        try:
            if masked:
                signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
            try:
                for p in plans:
                    futures.append(pool.submit(one, p))
            finally:
                if masked:
                    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
            while wait(futures, timeout=WAKE).not_done:  # (transport.WAKE: a Ctrl-C seen at once)
                pass
        except KeyboardInterrupt:
            stopping.set()
            futures += [pool.submit(one, p) for p in plans[len(futures):]]  # (a Ctrl-C from before the mask)
            if on_interrupt:
                on_interrupt()
            wait(futures)  # the started nodes finish; the others see `stopping` and start nothing
        return [f.result() for f in futures]


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
    confirm_timeout: int = DEFAULT_CONFIRM_TIMEOUT  # a node reverts a change not confirmed within it


def _observers(mesh: Mesh, nodes: list[Node]) -> list[Node]:
    """The nodes to read besides the planned ones, for hole punching (core/punch.py): a plan of some nodes only
    (`--target`) that include a node without an endpoint also reads the public nodes, which see where it is, so
    that the targeted plan makes the decisions a whole plan makes (read only: never planned, never changed)."""
    r = relaying(mesh)
    planned = {n.name for n in nodes}
    if not r.active or not any(n.name in planned for n in r.nat):
        return []
    return [n for n in mesh.nodes if n.enrolled and n.endpoint is not None and n.name not in planned]


@dataclass(frozen=True)
class _Read:
    reading: Reading  # of the planned nodes
    plan: Plan
    observed: dict[str, LiveState]  # every node read, observers included: what the plan's paths come from


def _read_plan(
    mesh: Mesh, transport: Transport, nodes: list[Node], release: bool = False, fingerprint: bool = True
) -> _Read:
    """`release`: nothing more runs on the nodes after the read (plan): their connections close as they are read.
    `fingerprint`: the states are fingerprinted for a saved plan (read_nodes)."""
    extra = _observers(mesh, nodes)
    reading = read_nodes(mesh, transport, [*nodes, *extra], release, fingerprint)
    plan = plan_from_reading(mesh, reading)
    observed = dict(reading.states)
    if extra:
        out = {n.name for n in extra}

        def keep(d: dict[str, Any]) -> dict[str, Any]:
            return {k: v for k, v in d.items() if k not in out}

        reading = Reading(keep(reading.states), keep(reading.errors), keep(reading.fingerprints),
                          keep(reading.comparable), keep(reading.plans))
        plan = dataclasses.replace(plan, nodes=tuple(n for n in plan.nodes if n.node not in out))
    targeted = outside_targets(mesh, plan, (n.name for n in nodes))
    if targeted:
        plan = dataclasses.replace(plan, warnings=(*plan.warnings, *targeted))
    return _Read(reading, plan, observed)


def _read(
    mesh: Mesh,
    opts: ConnectOptions,
    view: View,
    env: Environment,
    factory: TransportFactory,
    release: bool = False,
    fingerprint: bool = True,
) -> tuple[Transport, _Read]:
    nodes = select_nodes(mesh, opts.targets)
    transport = open_transport(factory, opts, view, env)
    return transport, _read_plan(mesh, transport, nodes, release, fingerprint)


def run_plan(opts: PlanOptions, env: Environment, factory: TransportFactory = ssh_transport) -> ExitStatus:
    view = _view(env, opts.json)
    mesh = load_mesh(opts.file, view)
    own = [opts.file, *(p for n in mesh.nodes for p in (n.ssh.known_hosts, n.ssh.identity_file) if p is not None)]
    unwritable = planfile.writable(opts.out, own) if opts.out is not None else None
    if unwritable:
        raise Failure(unwritable)
    transport, got = _read(mesh, opts.connect, view, env, factory, release=True, fingerprint=opts.out is not None)
    transport.close()
    reading, plan = got.reading, got.plan
    view.plan(plan)
    if opts.out is not None:
        planfile.write(opts.out, opts.file, opts.connect.targets, reading, plan)
        view.plan_saved(opts.out, opts.file)
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
        if connect.targets:  # as Terraform: a saved plan is applied whole, for the nodes it was made for
            raise Failure("--target cannot be given with a saved plan: it applies the nodes it was made for"
                          f" ({', '.join(saved.targets) or 'all'}); make a new plan with --target instead")
        why = planfile.mesh_changed(saved, opts.file)
        if why:  # before any node is read (the plan's targets may not even be in mesh.yaml now)
            raise Failure(f"Saved plan is stale: {why}. Run wgmesh plan again.")
        connect = ConnectOptions(
            connect.parallelism, connect.timeout, connect.accept_new_host_keys, saved.targets, connect.command_timeout
        )
    transport, got = _read(mesh, connect, view, env, factory)
    reading, plan = got.reading, got.plan
    try:
        if saved is not None:
            names = {n.public_key: n.name for n in mesh.nodes if n.public_key}
            reasons = planfile.staleness(saved, opts.file, reading, plan, names)
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
        interrupted: list[bool] = []

        def on_interrupt() -> None:
            interrupted.append(True)
            view.message("\nInterrupt received: the nodes being applied finish (verified and confirmed, or rolled "
                         "back); nothing else is started.")

        results = apply_plan(
            mesh, transport, list(plan.nodes), reading.states,
            parallelism=connect.parallelism, lock_timeout=opts.lock_timeout,
            confirm_timeout=opts.confirm_timeout, observed=got.observed, on_interrupt=on_interrupt,
        )
        if not opts.json:
            view.results(plan, results)
        failed = any(r.outcome is Outcome.FAILED for r in results)
        rounds: list[tuple[Plan, list[NodeResult]]] = []
        if interrupted:  # nothing more after Ctrl-C: no hole punching either, and the run is not a success
            punch = ", and no hole punching ran" if relaying(mesh).active else ""  # (only where pairs could punch)
            view.message(f"Apply was interrupted: nothing more was started{punch}; run wgmesh plan to see what is "
                         "left, then apply again.")
            failed = True
        elif not failed and plan.has_changes:  # a node changed: the paths of the nodes without an endpoint may too
            failed = _punch(mesh, transport, connect, view, opts, rounds)
        if opts.json:  # one document: the plan, its results, and the punching rounds
            view.results(plan, results, rounds)
    finally:
        transport.close()
    return ExitStatus.ERROR if failed else ExitStatus.OK


PUNCH_WAIT = 15.0  # seconds a round waits for handshakes (WireGuard retries a handshake every 5 s)
PUNCH_ROUNDS = 3  # relay -> punch, punch -> direct, and one more for a node the public nodes saw late
PUNCH_POLL = 2.0  # seconds between two reads of a round


def _punch_only(mesh: Mesh, plan: Plan) -> bool:
    """The plan changes nothing but hole punching: peer entries of the nodes without an endpoint for each other
    and for the relay, and their config files."""
    r = relaying(mesh)
    nat = {n.name for n in r.nat}
    ours = nat | ({r.relay.name} if r.relay is not None else set())
    for n in plan.nodes:
        if n.error:
            return False
        for c in n.changes:
            if n.node not in nat:
                return False
            if c.kind == "peer" and c.name in ours:
                continue
            if c.kind == "interface" and set(_changed(c)) <= {"config_file"}:
                continue
            return False
    return True


def _pending(mesh: Mesh, results: Mapping[str, LiveState | str]) -> bool:
    """Some pair of nodes without an endpoint may still change path soon: it punches and has not answered yet, or
    it is on the relay only because a node of it has not been seen by the public nodes yet."""
    punch = punching(mesh, results)
    nat = relaying(mesh).nat
    for i, a in enumerate(nat):
        for b in nat[i + 1:]:
            path = punch.path(a.name, b.name)
            if path is PairPath.PUNCH:
                return True
            seen = [punch.seen.get(n.name) for n in (a, b)]
            if path is PairPath.RELAY and not any(s is not None and s.symmetric for s in seen) \
                    and not all(s is not None and s.endpoint for s in seen):
                return True
    return False


def _changed(c: Change) -> list[str]:
    before, after = c.before or {}, c.after or {}
    return [k for k in {*before, *after} if before.get(k) != after.get(k)]


def _punch(mesh: Mesh, transport: Transport, connect: ConnectOptions, view: View, opts: ApplyOptions,
           rounds: list[tuple[Plan, list[NodeResult]]]) -> bool:
    """Hole punching within one apply (core/punch.py), after the apply converged every node: the public nodes now
    see where the nodes without an endpoint are; tell each pair, wait for their handshakes, and move the pairs
    that answered off the relay. Up to PUNCH_ROUNDS rounds, each shown as a plan of its own; each only when its plan
    changes nothing but that (anything else is the next apply's to show). Each round is shown as it happens, and
    added to `rounds` (the JSON document holds them). Returns whether a round failed."""
    r = relaying(mesh)
    if not r.active:
        return False
    nodes = select_nodes(mesh, connect.targets)
    for _ in range(PUNCH_ROUNDS):
        deadline = time.monotonic() + PUNCH_WAIT
        while True:
            time.sleep(PUNCH_POLL)
            got = _read_plan(mesh, transport, nodes)
            plan = got.plan
            if plan.has_changes or not _pending(mesh, got.observed) \
                    or time.monotonic() >= deadline:
                break
        if not plan.has_changes or not _punch_only(mesh, plan):
            return False
        if not opts.json:
            view.message("\nHole punching: the pairs of nodes without an endpoint, from where the public nodes see "
                         "them and which direct paths answered (core/punch.py):")
            view.plan(plan)
        results = apply_plan(mesh, transport, list(plan.nodes), got.reading.states, parallelism=connect.parallelism,
                             lock_timeout=opts.lock_timeout, confirm_timeout=opts.confirm_timeout,
                             observed=got.observed)
        rounds.append((plan, results))
        if not opts.json:
            view.results(plan, results)
        if any(x.outcome is Outcome.FAILED for x in results):
            return True
    return False
