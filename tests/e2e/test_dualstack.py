"""A dual-stack mesh (IPv4 and IPv6 addresses, an IPv6 subnet) applied to lab hosts and pinged over IPv6."""

from __future__ import annotations

import subprocess
from collections.abc import Callable

import pytest

from e2e import labkit as labmod

LabFactory = Callable[..., labmod.Lab]
WgmeshRunner = Callable[..., "subprocess.CompletedProcess[str]"]


def _dual_stack(text: str, count: int) -> str:
    text = text.replace("  network: 10.0.0.0/24", "  network: [10.0.0.0/24, fd00:10::/64]")
    for i in range(1, count + 1):
        text = text.replace(f"    address: 10.0.0.{i}\n", f"    address: [10.0.0.{i}, fd00:10::{i}]\n", 1)
    # the first node also routes an IPv6 subnet into the mesh
    old = "subnets: [{prefix: 192.168.10.0/24, probe: 192.168.10.10}]"
    assert old in text, "the lab's mesh.yaml changed: update this test"
    return text.replace(old, "subnets: [{prefix: 192.168.10.0/24, probe: 192.168.10.10}, fd00:99:10::/64]", 1)


@pytest.fixture(scope="module")
def dual(lab: LabFactory) -> labmod.Lab:
    made = lab(names=("east", "west", "home"), nat=("home",))
    mesh = made.dir / "mesh.yaml"
    mesh.write_text(_dual_stack(mesh.read_text(), len(made.hosts)))
    return made


def _sh(made: labmod.Lab, node: str, command: str) -> str:
    r = labmod.host_exec(made.dir, node, ["sh", "-c", command])
    assert r.returncode == 0, f"{node}: {command}: {r.stdout}{r.stderr}"
    return r.stdout


def test_dual_stack_apply_converges_and_pings_over_ipv6(dual: labmod.Lab, run_wgmesh: WgmeshRunner) -> None:
    plan = run_wgmesh(dual.dir, "plan", "--detailed-exitcode")
    assert plan.returncode == 2, plan.stdout + plan.stderr
    assert '"fd00:10::1/64"' in plan.stdout and '"fd00:10::2/128"' in plan.stdout
    applied = run_wgmesh(dual.dir, "apply", "--auto-approve")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    again = run_wgmesh(dual.dir, "plan", "--detailed-exitcode")
    assert again.returncode == 0, again.stdout + again.stderr

    # every node reaches every other node's IPv6 mesh address through the tunnel (the NAT node dials out)
    for src in dual.hosts:
        for i, dst in enumerate(dual.hosts, 1):
            if dst.name != src.name:
                _sh(dual, src.name, f"ping -6 -c 1 -W 5 fd00:10::{i}")
    # the IPv6 subnet of the first node is routed through wg0 on the others, and only there
    for host in dual.hosts[1:]:
        assert "fd00:99:10::/64" in _sh(dual, host.name, "ip -6 route show dev wg0")
    assert "fd00:99:10::/64" not in _sh(dual, dual.hosts[0].name, "ip -6 route show dev wg0")


def test_dropping_ipv6_removes_addresses_and_routes(dual: labmod.Lab, run_wgmesh: WgmeshRunner) -> None:
    mesh = dual.dir / "mesh.yaml"
    text = mesh.read_text().replace(", fd00:99:10::/64]", "]")
    for i in range(1, len(dual.hosts) + 1):
        text = text.replace(f"[10.0.0.{i}, fd00:10::{i}]", f"10.0.0.{i}")
    mesh.write_text(text.replace("[10.0.0.0/24, fd00:10::/64]", "10.0.0.0/24"))
    applied = run_wgmesh(dual.dir, "apply", "--auto-approve")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert run_wgmesh(dual.dir, "plan", "--detailed-exitcode").returncode == 0
    for host in dual.hosts:
        assert "fd00:" not in _sh(dual, host.name, "ip -6 addr show dev wg0; ip -6 route show dev wg0")
