"""Preflight: the OS families and packages (core/nodeos.py), and the plan of a node that lacks a tool."""

from __future__ import annotations

import dataclasses

import pytest
from meshes import converged, four, fresh

from wgmesh.core import nodeos
from wgmesh.core.plan import build_plan, diff_node


@pytest.mark.parametrize(
    ("os_id", "like", "family"),
    [
        ("debian", (), "debian"),
        ("ubuntu", ("debian",), "debian"),
        ("rocky", ("rhel", "centos", "fedora"), "fedora"),
        ("amzn", ("centos", "rhel", "fedora"), "fedora"),
        ("alpine", (), "alpine"),
        ("opensuse-leap", ("suse", "opensuse"), "suse"),
        ("arch", (), "arch"),
        ("somedistro", ("ubuntu", "debian"), "debian"),
        ("somedistro", (), None),
        (None, (), None),
    ],
)
def test_family(os_id: str | None, like: tuple[str, ...], family: str | None) -> None:
    assert nodeos.family(os_id, like) == family


@pytest.mark.parametrize(
    ("missing", "family", "names", "install"),
    [
        (("flock",), "debian", ["flock (package util-linux)"], "apt-get install util-linux"),
        (("flock",), "alpine", ["flock (package flock)"], "apk add flock"),
        (("wg", "wg-quick"), "fedora", ["wg and wg-quick (package wireguard-tools)"], "dnf install wireguard-tools"),
        (("ip-busybox",), "alpine", ["not busybox's (package iproute2)"], "apk add iproute2"),
        (("ip",), "fedora", ["ip (package iproute)"], "dnf install iproute"),
        (("ip-json", "flock"), "suse", ["(package iproute2), flock (package util-linux)"],
         "zypper install iproute2 util-linux"),
    ],
)
def test_the_error_names_each_tool_and_its_package(
    missing: tuple[str, ...], family: str, names: list[str], install: str
) -> None:
    error = nodeos.preflight_error(missing, family)
    assert error is not None and error.startswith("preflight: this node lacks ")
    for name in names:
        assert name in error
    assert f"install: {install};" in error
    assert error.endswith("wgmesh changes nothing on this node until then")


def test_the_error_without_a_known_family_and_with_an_unwritable_folder() -> None:
    error = nodeos.preflight_error(("wg", "confdir"), None)
    assert error is not None
    assert "wg (package wireguard-tools); those are Debian's package names" in error
    assert "/etc/wireguard is not writable" in error and "install:" not in error
    assert nodeos.preflight_error(("confdir",), "debian") == (
        "preflight: /etc/wireguard is not writable (nor can it be created); "
        "wgmesh changes nothing on this node until then")
    assert nodeos.preflight_error((), "debian") is None


def test_every_family_knows_every_tool() -> None:
    for _install, packages in nodeos.PACKAGES.values():
        assert set(packages) == {nodeos.WG, nodeos.WG_QUICK, nodeos.IP, nodeos.FLOCK, nodeos.IPTABLES, nodeos.IP6TABLES}


# ------------------------------------------------------------------------------------------ the plan


def test_a_node_that_lacks_a_tool_gets_an_error_and_no_change() -> None:
    mesh = four()
    live = dataclasses.replace(fresh(mesh, "gcp"), missing=("flock",), os_family="debian")
    plan = diff_node(mesh, mesh.node("gcp"), live, "fp")
    assert plan.error == nodeos.preflight_error(("flock",), "debian")
    assert (plan.changes, plan.steps, plan.creates_interface, plan.fingerprint) == ((), (), False, "fp")


def test_busybox_ip_on_a_running_node_is_an_error_not_a_new_interface() -> None:
    mesh = four()
    live = dataclasses.replace(converged(mesh, "aws"), missing=("ip-busybox",), os_family="alpine",
                               addresses=frozenset(), routes=frozenset())
    plan = diff_node(mesh, mesh.node("aws"), live)
    assert plan.error is not None and "busybox" in plan.error and not plan.has_changes


def test_the_other_nodes_go_on() -> None:
    mesh = four()
    results = {n.name: fresh(mesh, n.name) for n in mesh.nodes}
    results["azure"] = dataclasses.replace(results["azure"], missing=("wg", "wg-quick"), os_family="fedora")
    plan = build_plan(mesh, results)
    assert [n.node for n in plan.errors] == ["azure"]
    assert all(n.creates_interface for n in plan.nodes if n.node != "azure")


def test_a_key_folder_another_user_may_write_is_named_with_the_fix() -> None:
    assert nodeos.preflight_error(("confowner",), "debian") == (
        "preflight: /etc/wireguard or its parent folder is not root's alone (another user owns it or may write in "
        "it, and could plant a link where wgmesh writes keys and configs as root): chown root: /etc/wireguard; "
        "chmod 700 /etc/wireguard; chmod go-w /etc; wgmesh changes nothing on this node until then")


def test_a_run_folder_another_user_may_write_is_named_with_the_fix() -> None:
    """Review R2: the lock file was opened through a link planted in a /run/wireguard anyone could write."""
    assert nodeos.preflight_error(("runowner",), "debian") == (
        "preflight: /run/wireguard or its parent folder is not root's alone (another user owns it or may write in it, "
        "where wgmesh keeps its lock and a run's records as root): chown root: /run/wireguard; chmod 755 "
        "/run/wireguard; chmod go-w /run; wgmesh changes nothing on this node until then")
