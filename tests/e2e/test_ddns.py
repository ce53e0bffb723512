"""Endpoints that move (issue 13, item 3) on lab hosts: azure's endpoint is a name (`--dns azure`), which the hosts
resolve through their own /etc/hosts. Apply installs the re-resolution on the other nodes (no systemd in the lab:
the loop the config's PostUp starts); azure then moves to a new address and its name with it, and the others reach
it again within 3 minutes, without an apply; plan shows no false drift.

The move is `wgmesh lab move azure` (its underlay address changes, the others' /etc/hosts follow, and so does the
lab's ssh host for it in mesh.yaml: its endpoint, a name, stays); `--to` moves it back.
"""

from __future__ import annotations

import contextlib
import ipaddress
import subprocess
import time
from collections.abc import Callable, Iterator

import pytest

from e2e import labkit as labmod
from e2e.labkit import NO_CHANGES
from e2e.labkit import described as _out
from e2e.labkit import ok as _ok
from e2e.labkit import sh as _host
from wgmesh import meshfile
from wgmesh.lab import Lab

pytestmark = pytest.mark.e2e

LabFactory = Callable[..., Lab]
WgmeshRunner = Callable[..., "subprocess.CompletedProcess[str]"]
SCRIPT = "/etc/wireguard/wgmesh-reresolve-wg0.sh"
PIDFILE = "/run/wireguard/wgmesh-reresolve-wg0.pid"


def _endpoint(lab: Lab, node: str, peer_key: str) -> str:
    out = _ok(_host(lab, node, "wg show wg0 endpoints"))
    return next((line.split()[1] for line in out.splitlines() if line.startswith(peer_key)), "")


@contextlib.contextmanager
def _move(lab: Lab, run_wgmesh: WgmeshRunner, node: str) -> Iterator[ipaddress.IPv4Address]:
    """`wgmesh lab move NODE`, and back to its address after; yields its new address."""
    old = labmod.load(lab.dir).host(node).ip
    out = _ok(run_wgmesh(lab.dir, "lab", "move", node, "--dir", str(lab.dir)))
    new = labmod.load(lab.dir).host(node).ip
    assert out.startswith(f"Moved {node} from {old} to {new}"), out
    try:
        yield new
    finally:
        _ok(run_wgmesh(lab.dir, "lab", "move", node, "--to", str(old), "--dir", str(lab.dir)))


@pytest.fixture(scope="module")
def dns(lab: LabFactory, run_wgmesh: WgmeshRunner) -> Lab:
    made = lab(dns=["azure"])
    _ok(run_wgmesh(made.dir, "apply", "--auto-approve"))
    return made


def test_apply_installs_the_re_resolution_and_a_second_plan_says_no_changes(
    dns: Lab, run_wgmesh: WgmeshRunner
) -> None:
    for node in ("aws", "gcp", "aliyun"):  # their peer azure has a name; azure has none to re-resolve
        _ok(_host(dns, node, f"test -x {SCRIPT} && kill -0 \"$(cat {PIDFILE})\""))
        config = _ok(_host(dns, node, "cat /etc/wireguard/wg0.conf"))
        assert f"{SCRIPT.replace('wg0', '%i')} start # wgmesh" in config
    assert _host(dns, "azure", f"test -e {SCRIPT}").returncode == 1
    r = run_wgmesh(dns.dir, "plan", "--detailed-exitcode")
    assert r.returncode == 0 and NO_CHANGES in r.stdout, _out(r)


def test_a_moved_name_is_reached_again_within_3_minutes_without_an_apply(dns: Lab, run_wgmesh: WgmeshRunner) -> None:
    mesh, _ = meshfile.load(dns.mesh_path)
    azure = mesh.node("azure").public_key or ""
    target = str(dns.host("azure").address)
    with _move(dns, run_wgmesh, "azure") as new:
        start = time.monotonic()
        reached = False
        while time.monotonic() - start < 200:
            if _host(dns, "aws", f"ping -n -q -c 1 -W 2 {target}").returncode == 0:
                reached = True
                break
            time.sleep(3)
        took = time.monotonic() - start
        assert reached, f"aws never reached azure at its new address: {_endpoint(dns, 'aws', azure)}"
        assert took < 180, f"took {took:.0f} s"
        assert _endpoint(dns, "aws", azure) == f"{new}:51820"
        log = _ok(_host(dns, "aws", "cat /run/wireguard/wgmesh-reresolve-wg0.log"))
        assert f"{dns.host('azure').hostname} is now {new}:51820" in log, "aws's re-resolution set it (no roaming)"
        # no false drift: aws resolves the name to the address it uses (and `lab move` pointed mesh.yaml's ssh
        # host for azure at its new address: the whole mesh is planned)
        r = run_wgmesh(dns.dir, "plan", "--detailed-exitcode")
        assert r.returncode == 0 and NO_CHANGES in r.stdout, _out(r)
    # back at its address: one apply sets the endpoints the nodes resolve now, at once
    _ok(run_wgmesh(dns.dir, "apply", "--auto-approve"))
    _ok(_host(dns, "aws", f"ping -n -q -c 1 -w 10 {target}"))
    r = run_wgmesh(dns.dir, "plan", "--detailed-exitcode")
    assert r.returncode == 0 and NO_CHANGES in r.stdout, _out(r)
