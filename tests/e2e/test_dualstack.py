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


SUBNET6, GATEWAY6, MACHINE6 = "fd00:99:10::/64", "fd00:99:10::1", "fd00:99:10::10"


def _reaches(made: labmod.Lab, node: str, address: str, wait: int = 3) -> bool:
    return labmod.host_exec(made.dir, node, ["ping", "-6", "-n", "-q", "-c", "1", "-W", str(wait), address],
                            timeout=wait + 10).returncode == 0


def _machine(made: labmod.Lab, node: str, *argv: str) -> None:
    r = labmod.machine_exec(made, node, list(argv))
    assert r.returncode == 0, f"{node}'s machine: {' '.join(argv)}: {r.stdout}{r.stderr}"


def test_an_ipv6_subnet_is_forwarded_through_a_drop_policy_and_masqueraded(
    dual: labmod.Lab, run_wgmesh: WgmeshRunner
) -> None:
    """The first node routes an IPv6 subnet with a machine in it, its ip6tables FORWARD policy DROP (as Docker
    sets it): wgmesh's IPv6 accept rules let the mesh reach the machine, their loss is drift that apply
    repairs, and `masquerade: true` on the IPv6 subnet answers for a machine with no route back."""
    east, west, home = (h.name for h in dual.hosts)
    mesh = dual.dir / "mesh.yaml"
    original = mesh.read_text()
    rule = "-A FORWARD -i wg0 -m comment --comment \"wgmesh:wg0\" -j ACCEPT"
    assert rule in _sh(dual, east, "ip6tables -S FORWARD"), "apply put wgmesh's IPv6 FORWARD rules in place"
    assert "wgmesh" not in _sh(dual, west, "ip6tables -S FORWARD"), "only a node that routes IPv6 has them"
    _sh(dual, east, f"ip -6 addr add {GATEWAY6}/64 dev sub0 nodad && ip6tables -P FORWARD DROP")
    _machine(dual, east, "ip", "-6", "addr", "add", f"{MACHINE6}/64", "dev", "eth0", "nodad")
    _machine(dual, east, "ip", "-6", "route", "add", "default", "via", GATEWAY6)
    try:
        assert _reaches(dual, west, MACHINE6) and _reaches(dual, home, MACHINE6)

        # the rules deleted by hand: no way through the DROP policy; plan says so, apply puts them back
        _sh(dual, east, "ip6tables -D FORWARD -i wg0 -m comment --comment wgmesh:wg0 -j ACCEPT")
        assert not _reaches(dual, west, MACHINE6, wait=1)
        plan = run_wgmesh(dual.dir, "plan", "--detailed-exitcode")
        assert plan.returncode == 2 and "forward wg0 ipv6" in plan.stdout, plan.stdout + plan.stderr
        applied = run_wgmesh(dual.dir, "apply", "--auto-approve")
        assert applied.returncode == 0, applied.stdout + applied.stderr
        assert _reaches(dual, west, MACHINE6)

        # no route back from the machine: only masquerade (ip6tables' nat table) gets the replies home
        _machine(dual, east, "ip", "-6", "route", "del", "default")
        assert not _reaches(dual, west, MACHINE6, wait=1)
        mesh.write_text(original.replace(f", {SUBNET6}]", f', {{prefix: "{SUBNET6}", masquerade: true}}]', 1))
        plan = run_wgmesh(dual.dir, "plan", "--detailed-exitcode")
        assert plan.returncode == 2 and f"+ masquerade {SUBNET6}" in plan.stdout, plan.stdout + plan.stderr
        applied = run_wgmesh(dual.dir, "apply", "--auto-approve")
        assert applied.returncode == 0, applied.stdout + applied.stderr
        assert "MASQUERADE" in _sh(dual, east, "ip6tables -t nat -S POSTROUTING")
        assert "MASQUERADE" not in _sh(dual, east, "iptables -t nat -S POSTROUTING")
        assert _reaches(dual, west, MACHINE6) and _reaches(dual, home, MACHINE6)
        assert run_wgmesh(dual.dir, "plan", "--detailed-exitcode").returncode == 0

        # a reboot (the lab empties both tables): the config's PostUp lines bring the IPv6 rules back, no apply
        r = run_wgmesh(dual.dir, "lab", "reboot", east, "--dir", str(dual.dir))
        assert r.returncode == 0 and f"{east} is back" in r.stdout, r.stdout + r.stderr
        assert _sh(dual, east, "ip6tables -S FORWARD").count("wgmesh:wg0") == 2
        assert "MASQUERADE" in _sh(dual, east, "ip6tables -t nat -S POSTROUTING")
        assert run_wgmesh(dual.dir, "plan", "--detailed-exitcode").returncode == 0

        # the field gone: so is the rule
        mesh.write_text(original)
        applied = run_wgmesh(dual.dir, "apply", "--auto-approve")
        assert applied.returncode == 0, applied.stdout + applied.stderr
        assert "MASQUERADE" not in _sh(dual, east, "ip6tables -t nat -S POSTROUTING")
        assert not _reaches(dual, west, MACHINE6, wait=1)
    finally:
        mesh.write_text(original)
        _sh(dual, east, f"ip6tables -P FORWARD ACCEPT; ip -6 addr del {GATEWAY6}/64 dev sub0 || true")
        labmod.machine_exec(dual, east, ["ip", "-6", "addr", "del", f"{MACHINE6}/64", "dev", "eth0"])


def test_a_new_ipv6_prefix_length_is_applied(dual: labmod.Lab, run_wgmesh: WgmeshRunner) -> None:
    """The IPv6 network widened (/64 -> /60): each node's address changes only its prefix length, which the kernel
    will not hold twice (review B2: every node failed with "address already assigned", on every apply)."""
    mesh = dual.dir / "mesh.yaml"
    before = mesh.read_text()
    mesh.write_text(before.replace("[10.0.0.0/24, fd00:10::/64]", "[10.0.0.0/24, fd00:10::/60]"))
    try:
        applied = run_wgmesh(dual.dir, "apply", "--auto-approve")
        assert applied.returncode == 0, applied.stdout + applied.stderr
        assert run_wgmesh(dual.dir, "plan", "--detailed-exitcode").returncode == 0
        assert "fd00:10::1/60" in _sh(dual, dual.hosts[0].name, "ip -6 addr show dev wg0")
        assert "fd00:99:10::/64" in _sh(dual, dual.hosts[1].name, "ip -6 route show dev wg0")
        # (from the node the reboot of the test before restarted: its peers' sessions with it are stale until they
        # give up on them, ~15 s; it starts new ones at once)
        _sh(dual, dual.hosts[0].name, "ping -6 -c 1 -W 5 fd00:10::2")
    finally:
        mesh.write_text(before)
    applied = run_wgmesh(dual.dir, "apply", "--auto-approve")
    assert applied.returncode == 0, applied.stdout + applied.stderr


def test_dropping_ipv6_removes_addresses_and_routes(dual: labmod.Lab, run_wgmesh: WgmeshRunner) -> None:
    """Dropping IPv6 from the mesh takes its addresses, routes and firewall rules away: also the one FORWARD rule
    left after the other was deleted by hand (it used to stay, an ACCEPT rule no plan showed)."""
    mesh = dual.dir / "mesh.yaml"
    router = dual.hosts[0].name
    _sh(dual, router, "ip6tables -D FORWARD -i wg0 -m comment --comment wgmesh:wg0 -j ACCEPT")
    assert _sh(dual, router, "ip6tables -S FORWARD").count("wgmesh:wg0") == 1
    text = mesh.read_text().replace(", fd00:99:10::/64]", "]")
    for i in range(1, len(dual.hosts) + 1):
        text = text.replace(f"[10.0.0.{i}, fd00:10::{i}]", f"10.0.0.{i}")
    mesh.write_text(text.replace("[10.0.0.0/24, fd00:10::/64]", "10.0.0.0/24"))
    applied = run_wgmesh(dual.dir, "apply", "--auto-approve")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert run_wgmesh(dual.dir, "plan", "--detailed-exitcode").returncode == 0
    for host in dual.hosts:
        assert "fd00:" not in _sh(dual, host.name, "ip -6 addr show dev wg0; ip -6 route show dev wg0")
    # and the node that routed the IPv6 subnet no longer has wgmesh's IPv6 FORWARD rules
    assert "wgmesh" not in _sh(dual, dual.hosts[0].name, "ip6tables -S FORWARD")
