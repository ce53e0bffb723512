"""Reading the live mesh and making a plan: the imperative shell around `live` and `plan`.

Each node's output is parsed, fingerprinted and diffed as it arrives, in the worker that read it (off the main
thread, while the other nodes are still answering); what is the same for every node (the peer entries of the
desired configs, the names of keys and addresses, the endpoint names to resolve) is worked out once per run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from wgmesh.core.model import Mesh, Node

if TYPE_CHECKING:  # the rest is imported when a plan is made (planfile imports Reading: a fast start for others)
    from wgmesh.core.plan import MeshIndex, NodePlan, Plan
    from wgmesh.core.state import LiveState
    from wgmesh.remote.transport import CommandResult, Transport


@dataclass(frozen=True)
class Reading:
    """What was read from the planned nodes: a state, or the reason the node could not be read."""

    states: dict[str, LiveState]
    errors: dict[str, str]
    fingerprints: dict[str, str]
    comparable: dict[str, dict[str, Any]] = field(default_factory=dict)
    # each read node's plan, made as its state arrived (plan_from_reading uses it; compare=False: a cache)
    plans: dict[str, NodePlan] = field(default_factory=dict, compare=False, repr=False)


def _parse(mesh: Mesh, got: CommandResult | str) -> LiveState | str:
    from wgmesh.remote import read as live

    if isinstance(got, str):
        return got
    if got.exit_status != 0:
        tail = got.stderr.strip().splitlines()[-1:] or [f"exit status {got.exit_status}"]
        return f"reading the node failed: {tail[0]}"
    try:
        return live.parse_read_output(mesh.interface, got.stdout)
    except live.ParseError as e:
        return f"cannot understand the node's output: {e}"


def _declared(mesh: Mesh) -> frozenset[str]:
    """The public keys of the nodes that declare an endpoint (a saved plan compares only their endpoints)."""
    return frozenset(n.public_key for n in mesh.nodes if n.public_key and n.endpoint)


@dataclass
class _Read:
    """One node's reading, finished in the worker that read it."""

    state: LiveState | None = None
    error: str | None = None
    comparable: dict[str, Any] | None = None
    fingerprint: str | None = None
    plan: NodePlan | None = None


def read_nodes(
    mesh: Mesh, transport: Transport, nodes: Iterable[Node], release: bool = False, fingerprint: bool = True
) -> Reading:
    """Connect to every node in parallel and read its live state in one round trip each. With a transport that
    connects one node at a time (`connect_node`), each worker connects to its node and reads it at once; with
    `release` (a command with nothing more to run on the nodes: plan) it then closes that connection, so at most
    `parallelism` connections are open at any time instead of all of them. Without `fingerprint` (a plan that is
    not saved) no state is fingerprinted: `fingerprints` and `comparable` stay empty."""
    from wgmesh.commands.common import holding

    nodes = list(nodes)
    with holding():  # (the states of every node, held at once)
        return _read_nodes(mesh, transport, nodes, release, fingerprint)


def _read_nodes(mesh: Mesh, transport: Transport, nodes: list[Node], release: bool, fingerprint: bool) -> Reading:
    from wgmesh.core import state as state_mod
    from wgmesh.core.plan import diff_node, mesh_index
    from wgmesh.core.render import endpoint_names
    from wgmesh.remote import read as live
    from wgmesh.remote.transport import READ_TIMEOUT, deadline_of

    connect_node: Callable[[Node], str | None] | None = getattr(transport, "connect_node", None)
    pipelined = connect_node is not None and isinstance(getattr(transport, "parallelism", None), int)
    errors = {} if pipelined else dict(transport.connect(nodes))
    hosts = endpoint_names(mesh)
    todo = {n.name: n for n in nodes if n.name not in errors}
    deadline = deadline_of(transport, READ_TIMEOUT)  # the node stops a read itself a little after it
    scripts = {name: live.read_command(mesh.interface, hosts(n), deadline=deadline) for name, n in todo.items()}
    declared = _declared(mesh)
    prefixes = _prefixes(mesh)  # worked out once for every node
    index: MeshIndex = mesh_index(mesh)

    def finish(name: str, got: CommandResult | str) -> _Read:
        parsed = _parse(mesh, got)
        if isinstance(parsed, str):
            return _Read(error=parsed)
        if not fingerprint:
            return _Read(parsed, None, None, None, diff_node(mesh, todo[name], parsed, None, index))
        comparable = _comparable(parsed, declared, prefixes)
        digest = state_mod.digest(comparable)
        return _Read(parsed, None, comparable, digest, diff_node(mesh, todo[name], parsed, digest, index))

    connect = None
    if pipelined:
        assert connect_node is not None

        def connect(name: str) -> str | None:
            return connect_node(todo[name])

    done = _run_and_finish(transport, scripts, READ_TIMEOUT, finish, connect,
                           getattr(transport, "release", None) if release else None)
    states: dict[str, LiveState] = {}
    comparable: dict[str, dict[str, Any]] = {}
    fingerprints: dict[str, str] = {}
    plans: dict[str, NodePlan] = {}
    for name, r in done.items():
        if r.state is None:
            errors[name] = r.error or "no answer"
            continue
        states[name] = r.state
        assert r.plan is not None
        plans[name] = r.plan
        if r.comparable is not None and r.fingerprint is not None:
            comparable[name], fingerprints[name] = r.comparable, r.fingerprint
    return Reading(states, errors, fingerprints, comparable, plans)


def _run_and_finish(
    transport: Transport,
    scripts: dict[str, str],
    timeout: float,
    finish: Callable[[str, CommandResult | str], _Read],
    connect: Callable[[str], str | None] | None = None,
    release: Callable[[str], None] | None = None,
) -> dict[str, _Read]:
    """Run one script per node and `finish` each result where it arrives: in the transport's own parallelism,
    one worker per node at a time (the real transport says how many: `parallelism`); else (a transport that
    only offers `run_many`) after all of them, in order. `connect`: the worker connects to its node first (its
    error is the node's); `release`: it closes the node's connection once the script has run."""
    parallelism = getattr(transport, "parallelism", None)
    if not isinstance(parallelism, int) or not scripts:
        return {name: _finished(finish, name, got) for name, got in transport.run_many(scripts, timeout).items()}
    from wgmesh.remote.ssh import one_line
    from wgmesh.remote.transport import SshError, fan_out

    def one(name: str) -> _Read:
        got: CommandResult | str
        if connect is not None and (error := connect(name)) is not None:
            return _Read(error=error)
        try:
            got = transport.run(name, scripts[name], timeout)
        except SshError as e:
            got = str(e)
        except Exception as e:  # unforeseen: still this node's error, never the run's (as run_many)
            got = f"the command failed on the controller: {type(e).__name__}: {one_line(str(e))}"
        finally:
            if release is not None:
                release(name)
        return _finished(finish, name, got)

    return fan_out(one, scripts, min(max(1, parallelism), len(scripts)))


def _finished(finish: Callable[[str, CommandResult | str], _Read], name: str, got: CommandResult | str) -> _Read:
    """`finish` of one node; anything it raises is that node's error, never the run's (a node's output that no
    parser foresaw, or a bug: named with its type)."""
    try:
        return finish(name, got)
    except Exception as e:
        from wgmesh.remote.ssh import one_line

        return _Read(error=f"cannot plan this node from its output: {type(e).__name__}: {one_line(str(e))[:200]}")


def _comparable(state: LiveState, declared: frozenset[str], prefixes: frozenset[Any]) -> dict[str, Any]:
    from wgmesh.core import state as state_mod

    doc = state_mod.normalized(state)
    for peer in doc["peers"]:
        if peer["public_key"] not in declared:
            peer["endpoint"] = None
    # of the routes through other devices, those of the mesh's prefixes: one that appears moves a saved plan
    doc["route_conflicts"] = {str(p): line for p, (line, _) in sorted(state.other_routes.items(), key=_by_prefix)
                              if p in prefixes}
    return doc


def _by_prefix(item: tuple[Any, Any]) -> tuple[int, Any]:
    return item[0].version, item[0]


def _prefixes(mesh: Mesh) -> frozenset[Any]:
    """Every prefix a node's config may route through the interface: the enrolled nodes' that the mesh networks do
    not cover (a node's own are among them: harmless, the same on every read)."""
    return frozenset(p for n in mesh.nodes if n.enrolled for p in n.allowed_ips
                     if not any(p.version == net.version and p.subnet_of(net) for net in mesh.networks))  # type: ignore[arg-type]


def comparable_state(mesh: Mesh, state: LiveState) -> dict[str, Any]:
    """The live state as a saved plan records it: what plan compares, nothing it deliberately ignores.

    Handshakes and counters are already left out; so is the endpoint of a peer that declares none in
    mesh.yaml (it is behind NAT and roams), else a saved plan would go stale whenever such a peer moved.
    """
    return _comparable(state, _declared(mesh), _prefixes(mesh))


def plan_from_reading(mesh: Mesh, reading: Reading, warnings: Iterable[str] = ()) -> Plan:
    from wgmesh.core.plan import build_plan

    results: dict[str, LiveState | str] = {**reading.states, **reading.errors}
    return build_plan(mesh, results, reading.fingerprints, warnings, planned=reading.plans)
