from __future__ import annotations

import dataclasses
import ipaddress
import threading
import time

import pytest
from fakes import FakeTransport
from meshes import converged, four, fresh, node, pubkey

from wgmesh.commands import read as engine
from wgmesh.commands.common import UsageError, select_nodes
from wgmesh.commands.read import comparable_state, read_nodes
from wgmesh.core.model import Mesh, Node
from wgmesh.core.render import resolve_hosts
from wgmesh.remote.transport import CommandResult, SshError

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


def many(n: int) -> Mesh:
    return Mesh(name="m", interface="wg0", networks=(ipaddress.ip_network("10.0.0.0/24"),),
                nodes=tuple(node(i + 1, f"n{i + 1}") for i in range(n)))


class _Pipelined(FakeTransport):
    """A transport that connects one node at a time (as SshTransport does), counting open connections."""

    parallelism = 2

    def __init__(self, *args: object, **kw: object) -> None:
        super().__init__(*args, **kw)  # type: ignore[arg-type]
        self.events: list[tuple[str, str]] = []
        self.open: set[str] = set()
        self.most_open = 0
        self.lock = threading.Lock()

    def connect(self, nodes: object) -> dict[str, str]:
        raise AssertionError("a pipelined read connects node by node")

    def connect_node(self, node: Node) -> str | None:
        with self.lock:
            self.events.append(("connect", node.name))
            if node.name in self.unreachable:
                return self.unreachable[node.name]
            self.connected.append(node.name)
            self.open.add(node.name)
            self.most_open = max(self.most_open, len(self.open))
        time.sleep(0.01)  # let the workers overlap
        return None

    def run(self, node: str, script: str, timeout: float | None = None) -> CommandResult:
        with self.lock:
            self.events.append(("run", node))
        if node not in self.open:
            raise SshError("not connected")
        return super().run(node, script, timeout)

    def release(self, node: str) -> None:
        with self.lock:
            self.events.append(("release", node))
            self.open.discard(node)


def test_plan_reads_each_node_on_its_own_connection_and_closes_it() -> None:
    mesh = many(8)
    fake = _Pipelined({n.name: converged(mesh, n.name) for n in mesh.nodes},
                      unreachable={"n3": "cannot connect to root@n3:22: refused"})
    reading = read_nodes(mesh, fake, mesh.nodes, release=True)
    assert reading.errors == {"n3": "cannot connect to root@n3:22: refused"}
    assert set(reading.states) == {n.name for n in mesh.nodes} - {"n3"}
    for n in mesh.nodes:
        mine = [kind for kind, node in fake.events if node == n.name]
        assert mine == (["connect"] if n.name == "n3" else ["connect", "run", "release"]), n.name
    assert fake.open == set() and fake.most_open <= fake.parallelism


def test_apply_keeps_the_connections_it_read_on() -> None:
    mesh = many(4)
    fake = _Pipelined({n.name: converged(mesh, n.name) for n in mesh.nodes})
    read_nodes(mesh, fake, mesh.nodes)
    assert fake.open == {n.name for n in mesh.nodes}
    assert not any(kind == "release" for kind, _ in fake.events)


def test_a_plan_that_is_not_saved_fingerprints_nothing() -> None:
    states = {"aws": converged(MESH, "aws"), "gcp": fresh(MESH, "gcp")}
    reading = read_nodes(MESH, FakeTransport(states), [MESH.node("aws"), MESH.node("gcp")], fingerprint=False)
    assert set(reading.states) == set(reading.plans) == {"aws", "gcp"}
    assert reading.fingerprints == {} and reading.comparable == {}
    saved = read_nodes(MESH, FakeTransport(states), [MESH.node("aws"), MESH.node("gcp")])
    assert set(saved.fingerprints) == set(saved.comparable) == {"aws", "gcp"}
    assert reading.plans["gcp"].changes == saved.plans["gcp"].changes != ()



def test_a_saved_plan_records_the_routes_of_other_devices_for_the_meshs_prefixes_only() -> None:
    """A route through another device for a prefix the mesh routes moves a saved plan; the rest of a node's table
    (its own LAN, a router's) is not recorded, and does not differ between the admin's read and the plan key's."""
    mesh = four()
    outside = dataclasses.replace(mesh.node("gcp"), addresses=(ipaddress.ip_address("10.9.0.3"),))
    mesh = dataclasses.replace(mesh, nodes=tuple(outside if n.name == "gcp" else n for n in mesh.nodes))
    assert engine._prefixes(mesh) == {ipaddress.ip_network(p) for p in (
        "10.9.0.3/32", "192.168.10.0/24", "192.168.20.0/24", "192.168.30.0/24", "192.168.40.0/24")}
    net = ipaddress.ip_network
    state = dataclasses.replace(converged(mesh, "aws"), other_routes={
        net("192.168.30.0/24"): ("192.168.30.0/24 dev eth0", 0), net("10.250.6.0/24"): ("10.250.6.0/24 dev eth0", 0)})
    assert comparable_state(mesh, state)["route_conflicts"] == {"192.168.30.0/24": "192.168.30.0/24 dev eth0"}


def test_one_nodes_absurd_output_or_a_failing_plan_is_that_nodes_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """Review E: a node's 5,000-digit handshake (int() refuses it) or anything planning raises on one node's
    state stopped plan for every node. Now each is that node's error; the others are planned."""
    from fakes import read_output

    from wgmesh.core import plan as plan_mod

    states = {n: converged(MESH, n) for n in ("aws", "azure", "gcp")}
    fake = FakeTransport(states, unreachable={"aliyun": "cannot connect"})
    text = read_output(states["gcp"])
    lines = text.split("\n")
    at = next(i for i, line in enumerate(lines) if line.count("\t") == 7)  # gcp's first peer line of the dump
    fields = lines[at].split("\t")
    fields[4] = "9" * 5000
    lines[at] = "\t".join(fields)
    fake.answers[("gcp", "read")] = [CommandResult(0, "\n".join(lines), "")]
    real = plan_mod.diff_node

    def diff_node(mesh: Mesh, node: Node, *rest: object) -> object:
        if node.name == "azure":
            raise RecursionError("maximum recursion depth exceeded")
        return real(mesh, node, *rest)  # type: ignore[arg-type]

    monkeypatch.setattr(plan_mod, "diff_node", diff_node)
    reading = read_nodes(MESH, fake, MESH.nodes)
    assert set(reading.states) == {"aws"} and set(reading.plans) == {"aws"}
    assert reading.errors["gcp"] == ("cannot understand the node's output: wg dump line 2: latest handshake is too "
                                     "large for a 64-bit number")
    assert reading.errors["azure"] == ("cannot plan this node from its output: RecursionError: maximum recursion "
                                       "depth exceeded")
