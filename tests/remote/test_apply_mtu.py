"""F11: with no `mtu` in mesh.yaml the interface should have the MTU `wg-quick up` gives it at boot, so a removed
`mtu:` is planned and applied (runtime and the written config agree). read.sh's `automtu` computes wg-quick's
choice on the node (its set_mtu_up: the largest MTU of the routes to the peers' endpoints, else the default
route's, else 1500; minus 80); plan compares the live MTU with it and the set_mtu step applies it."""

from __future__ import annotations

import dataclasses

import pytest
from fakes import read_output
from meshes import converged, four
from remote.stubs import Stubs, answering

from wgmesh.core.plan import diff_node
from wgmesh.core.steps import Step, StepKind
from wgmesh.remote import read as live_mod
from wgmesh.remote.read import ParseError, parse_auto_mtu, read_command
from wgmesh.remote.shell import sections

MESH = four()
ENDPOINTS = (f"{'A' * 43}=\t198.51.100.2:51820\n{'B' * 43}=\t(none)\n{'C' * 43}=\t[2001:db8::3]:51820\n"
             f"{'D' * 43}=\t$(touch /tmp/x):1\n")
LINK = "2: {dev}: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu {mtu} qdisc noqueue state UP mode DEFAULT\n"


def _automtu(node: Stubs, ip: dict[str, str], endpoints: str = ENDPOINTS) -> str:
    answering(node, "ip", {"-j link show dev lo": '[{"ifname":"lo"}]\n', **ip})
    answering(node, "wg", {"show wg0 endpoints": endpoints})
    r = node.run(read_command("wg0"))
    assert r.exit_status == 0, r.stderr
    (body,) = [s.body for s in sections(r.stdout) if s.name == "automtu"]
    return body


def test_the_largest_route_mtu_to_an_endpoint_minus_80(node: Stubs) -> None:
    ip = {
        "route get 198.51.100.2": "198.51.100.2 via 10.0.0.254 dev eth0 src 10.0.0.1 uid 0 \n    cache mtu 1400 \n",
        "route get 2001:db8::3": "2001:db8::3 from :: via fe80::1 dev eth1 proto ra src 2001:db8::1 metric 100\n",
        "link show dev eth1": LINK.format(dev="eth1", mtu=9001),
        "route show default": "default via 10.0.0.254 dev eth0\n",
    }
    assert _automtu(node, ip) == "8921"  # eth1's 9001 (no mtu on its route), not eth0's; `$(...)` is no address


def test_without_endpoints_the_default_route_decides(node: Stubs) -> None:
    ip = {"route show default": "default via 10.0.0.254 dev eth0 proto dhcp metric 100\n"
                                "default via 10.1.0.254 dev eth9\n",
          "link show dev eth0": LINK.format(dev="eth0", mtu=1480),
          "link show dev eth9": LINK.format(dev="eth9", mtu=9000)}
    assert _automtu(node, ip, endpoints="") == "1400"  # the first default route only, as wg-quick reads it


def test_no_route_at_all_is_1500_minus_80(node: Stubs) -> None:
    assert _automtu(node, {}, endpoints="") == "1420"


def test_an_ip_without_json_says_nothing(node: Stubs) -> None:
    answering(node, "ip", {"-j link show dev lo": "Option -j is unknown\n"})
    answering(node, "wg", {})
    r = node.run(read_command("wg0"))
    assert [s.body for s in sections(r.stdout) if s.name == "automtu"] == [""]


@pytest.mark.parametrize(("text", "want"), [("", None), ("1420\n", 1420), ("  8921 ", 8921)])
def test_parse_auto_mtu(text: str, want: int | None) -> None:
    assert parse_auto_mtu(text) == want


@pytest.mark.parametrize("text", ["14a0", "-80", "0", "99999999", "\x1b[2J"])
def test_parse_auto_mtu_refuses_what_is_no_mtu(text: str) -> None:
    with pytest.raises(ParseError, match="automtu"):
        parse_auto_mtu(text)


# ------------------------------------------------------------------------------------------- plan and steps


def _mtu_steps(plan) -> list[Step]:  # type: ignore[no-untyped-def]
    return [s for s in plan.steps if s.kind is StepKind.SET_MTU]


def test_a_removed_mtu_is_planned_and_applied() -> None:
    """mesh.yaml had mtu: 1380 and no longer has: the config loses its MTU line, and the interface goes back to
    what wg-quick gives it at boot (F11: before, plan said nothing and the node changed MTU at its next boot)."""
    live = converged(dataclasses.replace(MESH, nodes=tuple(dataclasses.replace(n, mtu=1380) if n.name == "aws"
                                                           else n for n in MESH.nodes)), "aws", mtu=1380)
    live = dataclasses.replace(live, auto_mtu=1420)
    plan = diff_node(MESH, MESH.node("aws"), live)
    (iface,) = [c for c in plan.changes if c.kind == "interface"]
    assert ("mtu", 1380, 1420) in iface.changed_attributes()
    assert _mtu_steps(plan) == [Step(StepKind.SET_MTU, "1420")]


def test_an_interface_on_wg_quicks_mtu_is_no_change() -> None:
    live = dataclasses.replace(converged(MESH, "aws", mtu=1420), auto_mtu=1420)
    plan = diff_node(MESH, MESH.node("aws"), live)
    assert plan.changes == () and plan.steps == ()


def test_an_mtu_in_mesh_yaml_wins() -> None:
    mesh = dataclasses.replace(MESH, nodes=tuple(dataclasses.replace(n, mtu=1280) if n.name == "aws" else n
                                                 for n in MESH.nodes))
    live = dataclasses.replace(converged(mesh, "aws", mtu=1420), auto_mtu=1420)
    plan = diff_node(mesh, mesh.node("aws"), live)
    assert _mtu_steps(plan) == [Step(StepKind.SET_MTU, "1280")]


def test_a_read_without_automtu_changes_nothing_about_the_mtu() -> None:
    """An older node script, a capture: no automtu section, no opinion on the MTU."""
    live = converged(MESH, "aws", mtu=1300)
    assert live.auto_mtu is None
    assert diff_node(MESH, MESH.node("aws"), live).changes == ()


def test_the_fake_node_prints_automtu() -> None:
    live = dataclasses.replace(converged(MESH, "aws", mtu=1380), auto_mtu=1420)
    assert live_mod.parse_read_output("wg0", read_output(live)) == live
