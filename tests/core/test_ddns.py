"""Endpoints that move (issue 13, item 3): names are resolved on the node, never sent to `wg syncconf`; a name that
does not resolve keeps the live endpoint and is a plan warning; nodes with name peers re-resolve them by themselves
(the `reresolve` resource)."""

from __future__ import annotations

import dataclasses

import pytest
from meshes import converged, four, fresh

from wgmesh.core.changes import Action
from wgmesh.core.model import Endpoint
from wgmesh.core.plan import build_plan, diff_node
from wgmesh.core.render import RERESOLVE_SCRIPT, desired, render_node
from wgmesh.core.steps import StepKind, sync_endpoint

MESH = four()  # azure's endpoint is azure.example.com:51820; converged() resolves it to 203.0.113.2
NAME = Endpoint("azure.example.com", 51820)


@pytest.mark.parametrize(
    ("want", "live", "resolved", "sent"),
    [
        (Endpoint("198.51.100.3", 51820), None, {}, "198.51.100.3:51820"),  # a literal stays
        (NAME, "203.0.113.2:51820", {}, "azure.example.com:51820"),  # a name the read did not resolve: as is
        (NAME, "203.0.113.2:51820", {"azure.example.com": ("203.0.113.9", "203.0.113.2")}, "203.0.113.2:51820"),
        # a moved name: the resolver's first address, as wg and wg-quick take it (RFC 6724: IPv6 first where the
        # node has IPv6)
        (NAME, "203.0.113.2:51820", {"azure.example.com": ("2001:db8::9", "203.0.113.9")}, "[2001:db8::9]:51820"),
        (NAME, "203.0.113.2:51820", {"azure.example.com": ("203.0.113.9", "2001:db8::9")}, "203.0.113.9:51820"),
        # an IPv6-only node, its peer set by hand to an address the name does not have
        (NAME, "[fd50:4::99]:51820", {"azure.example.com": ("fd50:4::12", "10.250.4.12")}, "[fd50:4::12]:51820"),
        (NAME, "[fd50:4::12]:51820", {"azure.example.com": ("10.250.4.12", "fd50:4::12")}, "[fd50:4::12]:51820"),
        # an IPv4-mapped address is not the name's (WireGuard on Linux sends nothing to one): the first
        (NAME, "[::ffff:203.0.113.2]:51820", {"azure.example.com": ("203.0.113.9", "203.0.113.2")},
         "203.0.113.9:51820"),
        (NAME, None, {"azure.example.com": ("2001:db8::9",)}, "[2001:db8::9]:51820"),
        (NAME, "[2001:db8::9]:51820", {"azure.example.com": ("2001:db8::9",)}, "[2001:db8::9]:51820"),
        (NAME, "203.0.113.2:51820", {"azure.example.com": ()}, None),  # does not resolve: left out
        (NAME, "203.0.113.2:4000", {"azure.example.com": ("203.0.113.2",)}, "203.0.113.2:51820"),
    ],
)
def test_the_endpoint_syncconf_gets(want: Endpoint, live: str | None, resolved: dict, sent: str | None) -> None:
    got = sync_endpoint(want, live, resolved)
    assert (None if got is None else str(got)) == sent


def _sync(plan) -> str:  # type: ignore[no-untyped-def]
    return next(s.value for s in plan.steps if s.kind is StepKind.SYNC_PEERS)


def test_syncconf_gets_the_address_the_node_resolved_and_the_file_keeps_the_name() -> None:
    state = converged(MESH, "aws", link_up=False)  # something to do
    plan = diff_node(MESH, MESH.node("aws"), state)
    assert "Endpoint = 203.0.113.2:51820" in _sync(plan) and "azure.example.com" not in _sync(plan)
    config = next(s.value for s in plan.steps if s.kind is StepKind.WRITE_CONFIG)
    assert "Endpoint = azure.example.com:51820" in config


def test_a_name_that_does_not_resolve_keeps_the_live_endpoint_and_warns() -> None:
    state = converged(MESH, "aws", resolved={"azure.example.com": ()})
    plan = diff_node(MESH, MESH.node("aws"), state)
    assert plan.changes == (), "not a change: nothing can be done about it but wait"
    moved = dataclasses.replace(state, link_up=False)
    plan = diff_node(MESH, MESH.node("aws"), moved)
    sync = _sync(plan)
    azure = sync[sync.index(MESH.node("azure").public_key or ""):].split("\n\n")[0]
    assert "Endpoint" not in azure, "left out: the peer keeps its endpoint, syncconf never sees the name"
    whole = build_plan(MESH, {"aws": state, "gcp": converged(MESH, "gcp")})
    assert whole.warnings == (
        "aws: azure.example.com (the endpoint of azure) does not resolve on the node: the peer keeps the endpoint it "
        "has; apply leaves it out of wg syncconf, and the node's re-resolution tries again every 30 s. Until it "
        "resolves, a restart of the interface (a reboot) fails: wg-quick up waits about 72 s for the name, then brings "
        "no tunnel up",)


def test_an_interface_is_not_brought_up_with_a_name_that_does_not_resolve() -> None:
    """wg-quick up waited ~72 s on the name, failed and deleted the interface: every tunnel of the node down, after
    an apply that ran for 72 s (review A1). Plan says so instead."""
    state = dataclasses.replace(fresh(MESH, "aws"), resolved={"azure.example.com": ()})
    plan = diff_node(MESH, MESH.node("aws"), state)
    assert plan.error is not None and plan.error.startswith(
        "azure.example.com does not resolve on the node, and `wg-quick up wg0` would wait about 72 s for it, then fail")
    resolved = dataclasses.replace(fresh(MESH, "aws"), resolved={"azure.example.com": ("203.0.113.2",)})
    assert diff_node(MESH, MESH.node("aws"), resolved).error is None
    # and no warning beside the error that speaks of an endpoint the peer keeps (it has none: review R1)
    assert build_plan(MESH, {"aws": state}).warnings == ()


def test_nodes_with_name_peers_start_the_re_resolution_from_their_config() -> None:
    assert desired(MESH, "aws").reresolve and not desired(MESH, "azure").reresolve  # azure's own name: no peer
    text = render_node(MESH, "gcp")
    script = RERESOLVE_SCRIPT
    assert f"PostUp = [ ! -x {script} ] || {script} start # wgmesh\n" in text
    assert f"PostDown = [ ! -x {script} ] || {script} stop # wgmesh\n" in text
    assert "reresolve" not in render_node(MESH, "azure")


def test_the_re_resolution_is_a_resource_installed_once_and_removed_with_the_last_name() -> None:
    # the config of a wgmesh before re-resolution: no such lines
    before = "".join(line for line in render_node(MESH, "aws").splitlines(keepends=True)
                     if RERESOLVE_SCRIPT not in line)
    plan = diff_node(MESH, MESH.node("aws"), converged(MESH, "aws", config_text=before))
    change = next(c for c in plan.changes if c.kind == "reresolve")
    assert (change.action, change.name) == (Action.CREATE, "wg0")
    assert change.after == {"every": "30s", "peers_stale_after": "135s",
                            "script": "/etc/wireguard/wgmesh-reresolve-wg0.sh"}
    assert [s.kind for s in plan.steps].count(StepKind.INSTALL_RERESOLVE) == 1
    assert diff_node(MESH, MESH.node("aws"), converged(MESH, "aws")).changes == ()

    literal = dataclasses.replace(MESH, nodes=tuple(
        dataclasses.replace(n, endpoint=Endpoint("203.0.113.2", 51820)) if n.name == "azure" else n
        for n in MESH.nodes))
    plan = diff_node(literal, literal.node("aws"), converged(MESH, "aws"))
    assert [(c.action, c.kind) for c in plan.changes if c.kind == "reresolve"] == [(Action.DELETE, "reresolve")]
    assert StepKind.REMOVE_RERESOLVE in [s.kind for s in plan.steps]


@pytest.mark.parametrize("state", ["absent", "outdated", "stopped"])
def test_a_re_resolution_that_is_gone_old_or_not_running_is_drift_that_apply_repairs(state: str) -> None:
    plan = diff_node(MESH, MESH.node("aws"), converged(MESH, "aws", reresolve=state))
    [change] = [c for c in plan.changes if c.kind == "reresolve"]
    assert change.action is Action.UPDATE
    assert (change.before or {})["state"] == state and (change.after or {})["state"] == "running"
    assert StepKind.INSTALL_RERESOLVE in [s.kind for s in plan.steps]
    assert diff_node(MESH, MESH.node("aws"), converged(MESH, "aws", reresolve="running")).changes == ()
    # a node without endpoint names has nothing to run: what is there is not read as drift
    assert not [c for c in diff_node(MESH, MESH.node("azure"), converged(MESH, "azure", reresolve=state)).changes
                if c.kind == "reresolve"]
