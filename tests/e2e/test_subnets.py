"""Routed subnets on cloud-like lab hosts (issue 12's "Done when"): machines behind the nodes' subnets reach
each other through the mesh, forwarding and hooks are plan changes, masquerade NATs, and a rebooted host
comes back by itself.

One 4-host lab for the module (aws, azure, gcp, aliyun behind NAT), cloud-like: forwarding off, a sudo
user. Behind each host's subnet is a machine at the subnet's .10 (mesh.yaml's probe) whose default route is
its host. Each test starts from the converged mesh and leaves it converged with the lab's own mesh.yaml.

A peer behind NAT (aliyun) has no endpoint in the others' configs: after one of them restarts, it reaches
aliyun only once aliyun sends again (WireGuard's timers), so the pings start at the NAT'd machine and wait.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from e2e import labkit as labmod
from e2e.labkit import NO_CHANGES
from e2e.labkit import described as _out
from e2e.labkit import ok as _ok
from e2e.labkit import sh as _host
from wgmesh.lab import Lab

pytestmark = pytest.mark.e2e

LabFactory = Callable[..., Lab]
WgmeshRunner = Callable[..., "subprocess.CompletedProcess[str]"]
HOOK = "touch /run/wireguard/hook-%i"
MARKER = "/run/wireguard/hook-wg0"


# ----------------------------------------------------------------------------------------- helpers


def _reach(lab: Lab, src: str, target: str, deadline: int = 10, after: float = 0) -> bool:
    """A ping from the machine behind `src` answered within `deadline` s (one per second until then), sent
    `after` seconds from now."""
    time.sleep(after)
    r = labmod.machine_exec(lab, src, ["ping", "-n", "-q", "-c", "1", "-w", str(deadline), target])
    return r.returncode == 0


# The machines behind later nodes (mesh.yaml order) start pinging this much later than those behind earlier
# ones, as `wgmesh check` does (core/checks.py HEAD_START): if both ends of a pair that has never shaken hands
# send their first packet at once, both start a handshake at once, each answers the other's initiation and so
# drops its own, and neither can send until WireGuard retries 5 s (plus up to 1/3 s of jitter) later. On this
# loaded 2-core machine the retries collided again often enough to fail CI once (azure <-> gcp, 10 s).
STAGGER = 0.5


def _machine_failures(lab: Lab, deadline: int = 10) -> list[str]:
    """From the machine behind each node: every other machine and every mesh address, all within a couple
    of seconds (a NAT'd node's own pings are what let the others reach it again after a restart), each
    source `STAGGER` s after the one before it in mesh.yaml."""
    pings = [
        (i * STAGGER, src, dst.name, t)
        for i, src in enumerate(lab.names)
        for dst in lab.hosts
        for t in [str(dst.address)] + ([str(dst.machine_ip)] if dst.name != src else [])
    ]
    with ThreadPoolExecutor(max_workers=len(pings)) as pool:
        answered = list(pool.map(lambda p: _reach(lab, p[1], p[3], deadline, after=p[0]), pings))
    return [f"{s}'s machine -> {d} {t}" for (_, s, d, t), ok in zip(pings, answered, strict=True) if not ok]


def _node_block(text: str, name: str) -> str:
    m = re.search(rf"^  {re.escape(name)}:\n(?:    .*\n)*", text, flags=re.M)
    assert m is not None, name
    return m.group(0)


def _add_to_node(text: str, name: str, lines: str) -> str:
    block = _node_block(text, name)
    return text.replace(block, block + lines)


def _plan(run_wgmesh: WgmeshRunner, lab: Lab, *args: str) -> subprocess.CompletedProcess[str]:
    return run_wgmesh(lab.dir, "plan", "--detailed-exitcode", *args)


def _apply(run_wgmesh: WgmeshRunner, lab: Lab) -> subprocess.CompletedProcess[str]:
    return run_wgmesh(lab.dir, "apply", "--auto-approve")


def _converge(run_wgmesh: WgmeshRunner, lab: Lab) -> None:
    _ok(_apply(run_wgmesh, lab))
    r = _plan(run_wgmesh, lab)
    assert r.returncode == 0 and NO_CHANGES in r.stdout, _out(r)


def _forwarding(lab: Lab, node: str) -> str:
    return _ok(_host(lab, node, "sysctl -n net.ipv4.ip_forward")).strip()


@contextlib.contextmanager
def _mesh_text(lab: Lab, run_wgmesh: WgmeshRunner, text: str) -> Iterator[None]:
    """mesh.yaml is `text` inside; after, the lab's own again, applied."""
    original = lab.mesh_path.read_text()
    lab.mesh_path.write_text(text)
    try:
        yield
    finally:
        lab.mesh_path.write_text(original)
        _converge(run_wgmesh, lab)


@contextlib.contextmanager
def _machine_without_default_route(lab: Lab, node: str) -> Iterator[None]:
    """The machine behind `node` reaches only its own subnet: replies to anything else need masquerade."""
    host = lab.host(node)
    _ok(labmod.machine_exec(lab, node, ["ip", "route", "del", "default"]))
    try:
        yield
    finally:
        _ok(labmod.machine_exec(lab, node, ["ip", "route", "replace", "default", "via", str(host.subnet_interface.ip)]))


def _masquerade_packets(lab: Lab, node: str) -> int:
    """Packets that wgmesh's MASQUERADE rule on `node` has NATed."""
    out = _ok(_host(lab, node, "iptables -t nat -L POSTROUTING -v -n -x"))
    rows = [line.split() for line in out.splitlines() if "wgmesh:wg0" in line and "MASQUERADE" in line]
    assert len(rows) == 1, out
    return int(rows[0][0])


# ----------------------------------------------------------------------------------------- the mesh


@pytest.fixture(scope="module")
def mesh(lab: LabFactory, run_wgmesh: WgmeshRunner) -> Lab:
    made = lab()
    assert [_forwarding(made, n) for n in made.names] == ["0"] * 4, "cloud-like hosts start without forwarding"
    return made


def test_one_apply_connects_every_machine_to_every_machine_and_node(mesh: Lab, run_wgmesh: WgmeshRunner) -> None:
    # before: the machines reach nothing beyond their own host
    assert not _reach(mesh, "aws", str(mesh.host("azure").machine_ip), deadline=1)
    r = _apply(run_wgmesh, mesh)
    assert r.returncode == 0, _out(r)
    assert [_forwarding(mesh, n) for n in mesh.names] == ["1"] * 4
    assert _machine_failures(mesh) == []
    r = run_wgmesh(mesh.dir, "check")
    assert r.returncode == 0, _out(r)
    r = _plan(run_wgmesh, mesh)
    assert r.returncode == 0 and NO_CHANGES in r.stdout, _out(r)


def test_forwarding_turned_off_by_hand_is_drift_and_check_names_the_subnet_pairs(
    mesh: Lab, run_wgmesh: WgmeshRunner
) -> None:
    aws = mesh.host("aws")
    _ok(_host(mesh, "aws", "sysctl -q -w net.ipv4.ip_forward=0"))
    try:
        assert not _reach(mesh, "azure", str(aws.machine_ip), deadline=2)
        assert not _reach(mesh, "aws", str(mesh.host("azure").machine_ip), deadline=2)

        r = _plan(run_wgmesh, mesh)
        assert r.returncode == 2, _out(r)
        assert "# node aws: 0 to add, 1 to change, 0 to destroy" in r.stdout
        assert "~ forwarding ipv4" in r.stdout and "~ enabled = false -> true" in r.stdout
        assert "# node azure" not in r.stdout

        r = run_wgmesh(mesh.dir, "check")
        assert r.returncode == 1, _out(r)
        for other in ("azure", "gcp", "aliyun"):
            pair = f"{other} -> aws: {mesh.host(other).subnet} -> {aws.machine_ip}"
            assert pair in r.stdout, (pair, r.stdout)
        assert "Traceback" not in r.stderr
    finally:
        _converge(run_wgmesh, mesh)
    assert _forwarding(mesh, "aws") == "1"
    assert _reach(mesh, "azure", str(aws.machine_ip))


def test_a_post_up_added_to_a_running_node_runs_and_a_failing_one_rolls_back(
    mesh: Lab, run_wgmesh: WgmeshRunner
) -> None:
    original = mesh.mesh_path.read_text()
    hooked = _add_to_node(original, "gcp", f'    post_up: ["{HOOK}"]\n')
    with _mesh_text(mesh, run_wgmesh, hooked):
        assert _host(mesh, "gcp", f"test -e {MARKER}").returncode == 1
        r = _plan(run_wgmesh, mesh)
        assert r.returncode == 2, _out(r)
        assert f"+PostUp = {HOOK}" in r.stdout  # the reviewer reads the hook's text, not a hash
        r = _apply(run_wgmesh, mesh)
        assert r.returncode == 0, _out(r)
        assert _host(mesh, "gcp", f"test -e {MARKER}").returncode == 0, "the new PostUp ran on the running node"
        assert _reach(mesh, "gcp", str(mesh.host("aws").machine_ip))

        # a failing hook: the node's error quotes it, and gcp keeps its config with the old hook in effect
        _ok(_host(mesh, "gcp", f"rm {MARKER}"))
        mesh.mesh_path.write_text(hooked.replace(f'post_up: ["{HOOK}"]', 'post_up: ["false"]'))
        r = _apply(run_wgmesh, mesh)
        out = r.stdout + r.stderr
        assert r.returncode == 1, _out(r)
        assert "Traceback" not in out
        gcp_line = next(line for line in r.stdout.splitlines() if line.startswith("gcp "))
        assert "failed" in gcp_line and "PostUp" in gcp_line and "false" in gcp_line, gcp_line
        assert re.search(r"^(aws|azure|aliyun) +unchanged", r.stdout, flags=re.M), r.stdout
        conf = _ok(_host(mesh, "gcp", "cat /etc/wireguard/wg0.conf"))
        assert f"PostUp = {HOOK}" in conf and "PostUp = false" not in conf
        assert _host(mesh, "gcp", f"test -e {MARKER}").returncode == 0, "the rollback ran the old PostUp again"
        assert _reach(mesh, "aws", str(mesh.host("gcp").machine_ip))

        mesh.mesh_path.write_text(hooked)
        r = _plan(run_wgmesh, mesh)
        assert r.returncode == 0 and NO_CHANGES in r.stdout, _out(r)
    conf = _ok(_host(mesh, "gcp", "cat /etc/wireguard/wg0.conf"))
    assert HOOK not in conf


def test_masquerade_lets_a_machine_without_a_route_back_answer(mesh: Lab, run_wgmesh: WgmeshRunner) -> None:
    azure = mesh.host("azure")
    text = _add_to_node(mesh.mesh_path.read_text(), "azure", "    masquerade: true\n")
    with _machine_without_default_route(mesh, "azure"):
        assert not _reach(mesh, "aws", str(azure.machine_ip), deadline=2), "no route back, no masquerade: no reply"
        with _mesh_text(mesh, run_wgmesh, text):
            r = _plan(run_wgmesh, mesh)
            assert r.returncode == 2, _out(r)
            assert f"+ masquerade {azure.subnet}" in r.stdout
            _ok(_apply(run_wgmesh, mesh))
            before = _masquerade_packets(mesh, "azure")
            for src in ("aliyun", "aws", "gcp"):
                assert _reach(mesh, src, str(azure.machine_ip)), src
            assert _masquerade_packets(mesh, "azure") >= before + 3, "the replies went to azure's own address"
        # the field gone: the rule is gone too
        out = _ok(_host(mesh, "azure", "iptables -t nat -S POSTROUTING"))
        assert "MASQUERADE" not in out
        assert not _reach(mesh, "aws", str(azure.machine_ip), deadline=2)


def test_a_rebooted_host_comes_back_without_an_apply(mesh: Lab, run_wgmesh: WgmeshRunner) -> None:
    azure = mesh.host("azure")
    text = _add_to_node(mesh.mesh_path.read_text(), "azure", f'    post_up: ["{HOOK}"]\n    masquerade: true\n')
    with _mesh_text(mesh, run_wgmesh, text):
        _ok(_apply(run_wgmesh, mesh))
        r = run_wgmesh(mesh.dir, "lab", "reboot", "azure", "--dir", str(mesh.dir))
        assert r.returncode == 0, _out(r)
        assert "azure is back" in r.stdout and "wg-quick up wg0" in r.stdout

        # no apply: what boot ran (wg-quick up and the config's PostUp lines) brought everything back
        assert _forwarding(mesh, "azure") == "1"
        rules = _ok(_host(mesh, "azure", "iptables -S FORWARD"))
        assert rules.count("wgmesh:wg0") == 2, rules
        routes = _ok(_host(mesh, "azure", "ip -4 route show dev wg0"))
        assert all(str(h.subnet) in routes for h in mesh.hosts if h.name != "azure"), routes
        assert "MASQUERADE" in _ok(_host(mesh, "azure", "iptables -t nat -S POSTROUTING"))
        assert _host(mesh, "azure", f"test -e {MARKER}").returncode == 0, "/run was emptied; the hook ran again"

        r = _plan(run_wgmesh, mesh)
        assert r.returncode == 0 and NO_CHANGES in r.stdout, _out(r)
        assert _machine_failures(mesh, deadline=40) == []
        with _machine_without_default_route(mesh, "azure"):
            assert _reach(mesh, "aws", str(azure.machine_ip)), "masquerade is back"
        r = run_wgmesh(mesh.dir, "check")
        assert r.returncode == 0, _out(r)


def test_an_interface_brought_up_again_over_its_rules_keeps_one_copy_of_each(
    mesh: Lab, run_wgmesh: WgmeshRunner
) -> None:
    """Review B4: a boot whose later PostUp line failed deleted the interface without its PostDown lines, so the
    rules stayed; the next `wg-quick up` (apply's, or the next boot's) inserted a second copy of each, which plan
    did not see. The rule lines insert a rule only when it is missing."""
    text = _add_to_node(mesh.mesh_path.read_text(), "azure", "    masquerade: true\n")
    with _mesh_text(mesh, run_wgmesh, text):
        _ok(_apply(run_wgmesh, mesh))
        _ok(_host(mesh, "azure", "ip link del wg0"))  # the interface gone, its rules left, as after such a boot
        assert _ok(_host(mesh, "azure", "iptables -S FORWARD")).count("wgmesh:wg0") == 2
        _ok(_apply(run_wgmesh, mesh))  # wg-quick up again, over the rules
        assert _ok(_host(mesh, "azure", "iptables -S FORWARD")).count("wgmesh:wg0") == 2
        assert _ok(_host(mesh, "azure", "iptables -t nat -S POSTROUTING")).count("wgmesh:wg0") == 1
        r = _plan(run_wgmesh, mesh)
        assert r.returncode == 0 and NO_CHANGES in r.stdout, _out(r)
