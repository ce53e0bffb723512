from __future__ import annotations

import dataclasses

import pytest
from fakes import FakeTransport
from meshes import converged, four, fresh, pubkey

from wgmesh.commands import read as engine
from wgmesh.commands.common import UsageError, select_nodes
from wgmesh.commands.read import comparable_state, read_nodes
from wgmesh.core.render import resolve_hosts
from wgmesh.remote.transport import CommandResult

MESH = four()


def test_select_nodes_keeps_file_order_and_names_an_unknown_target() -> None:
    assert [n.name for n in select_nodes(MESH, ("aliyun", "aws"))] == ["aws", "aliyun"]
    assert [n.name for n in select_nodes(MESH, ())] == list(MESH.node_names)
    with pytest.raises(UsageError, match=r"--target gpc: no such node .*aws, azure, gcp, aliyun"):
        select_nodes(MESH, ("gpc",))


def test_resolve_hosts_are_the_peers_endpoint_names() -> None:
    assert resolve_hosts(MESH, MESH.node("aws")) == ["azure.example.com"]
    assert resolve_hosts(MESH, MESH.node("azure")) == []  # its own name, and literal addresses, are not asked


def test_read_nodes_parses_states_and_keeps_errors_apart() -> None:
    states = {"aws": converged(MESH, "aws"), "azure": fresh(MESH, "azure"), "gcp": converged(MESH, "gcp")}
    fake = FakeTransport(states, unreachable={"aliyun": "cannot connect to root@192.0.2.4:22: refused"})
    fake.answers[("gcp", "read")] = [CommandResult(0, "garbage\n", "")]
    reading = read_nodes(MESH, fake, MESH.nodes)
    assert set(reading.states) == {"aws", "azure"}
    assert reading.errors["aliyun"].startswith("cannot connect")
    assert "cannot understand the node's output" in reading.errors["gcp"]
    assert set(reading.fingerprints) == {"aws", "azure"}
    # the read script asked aws's node to resolve azure's endpoint name
    aws_script = next(s for node, kind, s in fake.scripts if node == "aws" and kind == "read")
    assert "azure.example.com" in aws_script


def test_fingerprint_ignores_a_roaming_nat_peer_but_not_a_declared_endpoint() -> None:
    state = converged(MESH, "aws")
    aliyun, gcp = pubkey(4), pubkey(3)

    def moved(key: str, endpoint: str):  # type: ignore[no-untyped-def]
        return dataclasses.replace(
            state, peers={**state.peers, key: dataclasses.replace(state.peers[key], endpoint=endpoint)}
        )

    base = comparable_state(MESH, state)
    assert comparable_state(MESH, moved(aliyun, "100.64.0.9:4500")) == base
    assert comparable_state(MESH, moved(gcp, "198.51.100.99:51820")) != base


def test_plan_from_reading_orders_nodes_as_the_mesh() -> None:
    reading = engine.Reading(
        states={"gcp": converged(MESH, "gcp"), "aws": fresh(MESH, "aws")}, errors={"azure": "down"}, fingerprints={}
    )
    plan = engine.plan_from_reading(MESH, reading)
    assert [n.node for n in plan.nodes] == ["aws", "azure", "gcp"]
    assert [n.node for n in plan.errors] == ["azure"]
