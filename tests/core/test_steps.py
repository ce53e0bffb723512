"""core/steps.py: the typed steps a plan carries, decided from the same comparison as its changes."""

from __future__ import annotations

import dataclasses
import ipaddress

import pytest
from meshes import converged, four, fresh

from wgmesh.core.plan import diff_node
from wgmesh.core.render import desired, render, syncconf_text
from wgmesh.core.steps import Step, StepKind, sync_config

MESH = four()
AWS = MESH.node("aws")


def _kinds(steps: tuple[Step, ...]) -> list[StepKind]:
    return [s.kind for s in steps]


def test_a_converged_node_has_no_steps() -> None:
    assert diff_node(MESH, AWS, converged(MESH, "aws")).steps == ()


def test_a_node_without_the_interface_writes_the_config_and_brings_it_up() -> None:
    plan = diff_node(MESH, AWS, fresh(MESH, "aws"))
    # aws's peer azure has an endpoint name: the node re-resolves it (installed once the interface is up)
    assert _kinds(plan.steps) == [StepKind.WRITE_CONFIG, StepKind.INTERFACE_UP, StepKind.ENABLE_UNIT,
                                  StepKind.INSTALL_RERESOLVE]
    assert plan.steps[0].value == render(desired(MESH, "aws"), MESH.name)
    assert "PrivateKey" not in plan.steps[0].value


def test_a_decommissioned_node_only_removes_the_interface() -> None:
    mesh = dataclasses.replace(MESH, nodes=tuple(dataclasses.replace(n, decommission=n.name == "gcp")
                                                 for n in MESH.nodes))
    plan = diff_node(mesh, mesh.node("gcp"), converged(MESH, "gcp"))
    # its config started the re-resolution of azure's name: that goes too
    assert plan.steps == (Step(StepKind.REMOVE_INTERFACE), Step(StepKind.REMOVE_RERESOLVE))


def _net(s: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(s)


CASES = {
    "route missing": (
        lambda st: dataclasses.replace(st, routes=st.routes - {_net("192.168.30.0/24")}),
        [Step(StepKind.ADD_ROUTE, "192.168.30.0/24")],
    ),
    "stale route": (
        lambda st: dataclasses.replace(st, routes=st.routes | {_net("10.9.0.0/16")}),
        [Step(StepKind.DELETE_ROUTE, "10.9.0.0/16")],
    ),
    "address moved": (
        lambda st: dataclasses.replace(st, addresses=frozenset({ipaddress.ip_interface("10.0.0.99/24")})),
        [Step(StepKind.ADD_ADDRESS, "10.0.0.1/24"), Step(StepKind.DELETE_ADDRESS, "10.0.0.99/24")],
    ),
    "link down": (lambda st: dataclasses.replace(st, link_up=False), [Step(StepKind.LINK_UP)]),
}

DUAL = dataclasses.replace(
    MESH,
    networks=(*MESH.networks, ipaddress.ip_network("fd00::/60")),
    nodes=tuple(dataclasses.replace(n, addresses=(*n.addresses, ipaddress.ip_address(f"fd00::{i + 1}")))
                for i, n in enumerate(MESH.nodes)),
)


def test_an_ipv6_address_with_a_new_prefix_length_is_deleted_before_it_is_added() -> None:
    """The kernel refuses an IPv6 address it has with another prefix length (review B2: /64 -> /60 failed on every
    node, every time); a new address elsewhere is still added before the old one goes."""
    state = converged(DUAL, "aws")
    assert ipaddress.ip_interface("fd00::1/60") in state.addresses
    state = dataclasses.replace(state, addresses=frozenset({ipaddress.ip_interface("10.0.0.1/24"),
                                                             ipaddress.ip_interface("10.0.0.99/24"),
                                                             ipaddress.ip_interface("fd00::1/64")}))
    reconcile = [s for s in diff_node(DUAL, DUAL.node("aws"), state).steps
                 if s.kind in (StepKind.ADD_ADDRESS, StepKind.DELETE_ADDRESS)]
    assert reconcile == [Step(StepKind.DELETE_ADDRESS, "fd00::1/64"), Step(StepKind.ADD_ADDRESS, "fd00::1/60"),
                         Step(StepKind.DELETE_ADDRESS, "10.0.0.99/24")]


@pytest.mark.parametrize("case", CASES)
def test_an_update_syncs_the_peers_then_reconciles_each_difference(case: str) -> None:
    change, reconcile = CASES[case]
    state = change(converged(MESH, "aws"))
    plan = diff_node(MESH, AWS, state)
    cfg = desired(MESH, "aws")
    assert plan.steps[:2] == (Step(StepKind.WRITE_CONFIG, render(cfg, MESH.name)),
                              Step(StepKind.SYNC_PEERS, syncconf_text(sync_config(cfg, state))))
    assert list(plan.steps[2:]) == reconcile


def test_route_steps_are_the_route_changes_people_reviewed() -> None:
    state = converged(MESH, "aws")
    state = dataclasses.replace(state, routes=(state.routes - {_net("192.168.20.0/24")}) | {_net("10.9.0.0/16")})
    plan = diff_node(MESH, AWS, state)
    reviewed = {(c.action.value, c.name) for c in plan.changes if c.kind == "route"}
    planned = {("create" if s.kind is StepKind.ADD_ROUTE else "delete", s.value) for s in plan.steps
               if s.kind in (StepKind.ADD_ROUTE, StepKind.DELETE_ROUTE)}
    assert planned == reviewed == {("create", "192.168.20.0/24"), ("delete", "10.9.0.0/16")}


def test_an_mtu_difference_is_one_step() -> None:
    mesh = dataclasses.replace(MESH, nodes=tuple(dataclasses.replace(n, mtu=1380) if n.name == "aws" else n
                                                 for n in MESH.nodes))
    plan = diff_node(mesh, mesh.node("aws"), converged(mesh, "aws", mtu=1420))
    assert Step(StepKind.SET_MTU, "1380") in plan.steps
