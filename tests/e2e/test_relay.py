"""Relays on lab hosts (issue 13, item 1): two hosts without an endpoint (gcp, aliyun) reach each other through
the relay, the first node with an endpoint (aws), or the one `mesh.relay` names.

gcp and aliyun sit behind symmetric NATs (lab routers with `MASQUERADE --random-fully`): aws and azure see each
at a different port, so no direct path is punched (core/punch.py; test_nat.py has the cone NATs that punch) and
gcp has no peer entry for aliyun at all: every packet between them crosses the relay, whose wgmesh FORWARD rule
counts them.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable

import pytest

from e2e.labkit import NO_CHANGES
from e2e.labkit import described as _out
from e2e.labkit import forwarded as _forwarded
from e2e.labkit import ok as _ok
from e2e.labkit import sh as _host
from wgmesh import meshfile
from wgmesh.lab import Lab

pytestmark = pytest.mark.e2e

LabFactory = Callable[..., Lab]
WgmeshRunner = Callable[..., "subprocess.CompletedProcess[str]"]


def _ping(lab: Lab, src: str, dst: str) -> subprocess.CompletedProcess[str]:
    return _host(lab, src, f"ping -n -q -c 3 -i 0.2 -w 10 {lab.host(dst).address}")


def _peers(lab: Lab, node: str) -> set[str]:
    return set(_ok(_host(lab, node, "wg show wg0 peers")).split())


def _converged(run_wgmesh: WgmeshRunner, lab: Lab) -> None:
    r = run_wgmesh(lab.dir, "plan", "--detailed-exitcode")
    assert r.returncode == 0 and NO_CHANGES in r.stdout, _out(r)


@pytest.fixture(scope="module")
def nat2(lab: LabFactory) -> Lab:
    return lab(nat=["gcp:symmetric", "aliyun:symmetric"])


def test_two_nodes_without_endpoints_meet_through_the_relay(nat2: Lab, run_wgmesh: WgmeshRunner) -> None:
    mesh, warnings = meshfile.load(nat2.mesh_path)
    assert [n.name for n in mesh.nodes if n.endpoint is None] == ["gcp", "aliyun"]
    assert warnings == [], "a relayed pair is no warning"

    render = _ok(run_wgmesh(nat2.dir, "render", "gcp"))
    assert "# aws\n# aliyun: via relay aws\n[Peer]" in render
    assert "# relay for gcp, aliyun: forwards between them" in _ok(run_wgmesh(nat2.dir, "render", "aws"))

    r = run_wgmesh(nat2.dir, "plan", "--detailed-exitcode")
    assert r.returncode == 2, _out(r)
    assert "reaches aliyun via relay aws" in r.stdout
    assert "relay for the nodes without an endpoint (gcp, aliyun)" in r.stdout
    _ok(run_wgmesh(nat2.dir, "apply", "--auto-approve"))

    aliyun_key = mesh.node("aliyun").public_key
    assert aliyun_key not in _peers(nat2, "gcp"), "no direct entry: the pair rides on the relay's"
    before = _forwarded(nat2, "aws")
    _ok(_ping(nat2, "gcp", "aliyun"))
    assert _forwarded(nat2, "aws") >= before + 6, "the pings (3 there, 3 back) crossed aws"

    r = run_wgmesh(nat2.dir, "check")
    assert r.returncode == 0, _out(r)
    assert "Check passed: 12 pairs of 4 nodes" in r.stdout  # both ways, gcp <-> aliyun too
    _converged(run_wgmesh, nat2)

    r = run_wgmesh(nat2.dir, "status")
    assert r.returncode == 0, _out(r)
    assert re.search(r"gcp\s+aliyun\s+via relay aws", r.stdout), r.stdout


def test_mesh_relay_moves_the_pairs_to_another_relay(nat2: Lab, run_wgmesh: WgmeshRunner) -> None:
    original = nat2.mesh_path.read_text()
    nat2.mesh_path.write_text(original.replace("mesh:\n", "mesh:\n  relay: azure\n", 1))
    try:
        r = run_wgmesh(nat2.dir, "plan", "--detailed-exitcode")
        assert r.returncode == 2 and "reaches aliyun via relay azure" in r.stdout, _out(r)
        _ok(run_wgmesh(nat2.dir, "apply", "--auto-approve"))
        before, aws_before = _forwarded(nat2, "azure"), _forwarded(nat2, "aws")
        _ok(_ping(nat2, "aliyun", "gcp"))
        assert _forwarded(nat2, "azure") >= before + 6
        assert _forwarded(nat2, "aws") == aws_before, "aws relays no more (its rules stay: it routes a subnet)"
        r = run_wgmesh(nat2.dir, "check")
        assert r.returncode == 0, _out(r)
        _converged(run_wgmesh, nat2)
    finally:
        nat2.mesh_path.write_text(original)
        _ok(run_wgmesh(nat2.dir, "apply", "--auto-approve"))
    _converged(run_wgmesh, nat2)
