"""Reading the live mesh and making a plan: the imperative shell around `live` and `plan`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from wgmesh.core import state as state_mod
from wgmesh.core.model import Mesh, Node
from wgmesh.core.plan import Plan, build_plan
from wgmesh.core.render import resolve_hosts
from wgmesh.core.state import LiveState
from wgmesh.remote import read as live
from wgmesh.remote.transport import READ_TIMEOUT, CommandResult, Transport


@dataclass(frozen=True)
class Reading:
    """What was read from the planned nodes: a state, or the reason the node could not be read."""

    states: dict[str, LiveState]
    errors: dict[str, str]
    fingerprints: dict[str, str]
    comparable: dict[str, dict[str, Any]] = field(default_factory=dict)


def _parse(mesh: Mesh, got: CommandResult | str) -> LiveState | str:
    if isinstance(got, str):
        return got
    if got.exit_status != 0:
        tail = got.stderr.strip().splitlines()[-1:] or [f"exit status {got.exit_status}"]
        return f"reading the node failed: {tail[0]}"
    try:
        return live.parse_read_output(mesh.interface, got.stdout)
    except live.ParseError as e:
        return f"cannot understand the node's output: {e}"


def read_nodes(mesh: Mesh, transport: Transport, nodes: Iterable[Node]) -> Reading:
    """Connect to every node in parallel and read its live state in one round trip each."""
    nodes = list(nodes)
    errors = dict(transport.connect(nodes))
    scripts = {
        n.name: live.read_command(mesh.interface, resolve_hosts(mesh, n)) for n in nodes if n.name not in errors
    }
    results = transport.run_many(scripts, READ_TIMEOUT)
    states: dict[str, LiveState] = {}
    for name, got in results.items():
        parsed = _parse(mesh, got)
        if isinstance(parsed, str):
            errors[name] = parsed
        else:
            states[name] = parsed
    comparable = {name: comparable_state(mesh, s) for name, s in states.items()}
    fingerprints = {name: state_mod.digest(c) for name, c in comparable.items()}
    return Reading(states, errors, fingerprints, comparable)


def comparable_state(mesh: Mesh, state: LiveState) -> dict[str, Any]:
    """The live state as a saved plan records it: what plan compares, nothing it deliberately ignores.

    Handshakes and counters are already left out; so is the endpoint of a peer that declares none in
    mesh.yaml (it is behind NAT and roams), else a saved plan would go stale whenever such a peer moved.
    """
    declared = {n.public_key for n in mesh.nodes if n.public_key and n.endpoint}
    doc = state_mod.normalized(state)
    for peer in doc["peers"]:
        if peer["public_key"] not in declared:
            peer["endpoint"] = None
    return doc


def plan_from_reading(mesh: Mesh, reading: Reading, warnings: Iterable[str] = ()) -> Plan:
    results: dict[str, LiveState | str] = {**reading.states, **reading.errors}
    return build_plan(mesh, results, reading.fingerprints, warnings)
