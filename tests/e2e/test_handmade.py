"""Meshes made by hand (issue 13, item 5) on lab hosts: a pair with a preshared key that mesh.yaml keeps
(`shared_keys: {gcp: keep}`) keeps it through apply and through a reboot, and wgmesh never shows its value; a pair
mesh.yaml does not keep it for has it cleared."""

from __future__ import annotations

import subprocess
from collections.abc import Callable

import pytest

from e2e.labkit import NO_CHANGES
from e2e.labkit import described as _out
from e2e.labkit import ok as _ok
from e2e.labkit import sh as _host
from wgmesh import meshfile
from wgmesh.lab import Lab

pytestmark = pytest.mark.e2e

LabFactory = Callable[..., Lab]
WgmeshRunner = Callable[..., "subprocess.CompletedProcess[str]"]


def _psk(lab: Lab, node: str, peer_key: str) -> str:
    out = _ok(_host(lab, node, "wg show wg0 preshared-keys"))
    return next(line.split()[1] for line in out.splitlines() if line.startswith(peer_key))


def test_a_kept_preshared_key_survives_apply_and_reboot(lab: LabFactory, run_wgmesh: WgmeshRunner) -> None:
    made = lab()
    _ok(run_wgmesh(made.dir, "apply", "--auto-approve"))
    mesh, _ = meshfile.load(made.mesh_path)
    key = {n.name: n.public_key or "" for n in mesh.nodes}
    psk = _ok(_host(made, "aws", "wg genpsk")).strip()
    for a, b in (("aws", "gcp"), ("gcp", "aws"), ("aws", "azure"), ("azure", "aws")):  # as set up by hand
        _ok(_host(made, a, f"wg set wg0 peer {key[b]} preshared-key /dev/stdin", input=psk + "\n"))

    original = made.mesh_path.read_text()
    made.mesh_path.write_text(original.replace("  aws:\n", "  aws:\n    shared_keys: {gcp: keep}\n", 1))
    try:
        r = run_wgmesh(made.dir, "plan", "--detailed-exitcode")
        assert r.returncode == 2, _out(r)
        assert psk not in r.stdout + r.stderr
        aws = r.stdout.split("# node aws")[1].split("# node ")[0]
        assert "~ peer azure" in aws and "~ peer gcp" not in aws, "aws-azure is cleared, aws-gcp kept"
        r = run_wgmesh(made.dir, "apply", "--auto-approve")
        assert r.returncode == 0 and psk not in r.stdout + r.stderr, _out(r)
        assert _psk(made, "aws", key["gcp"]) == psk == _psk(made, "gcp", key["aws"])
        assert _psk(made, "aws", key["azure"]) == "(none)" == _psk(made, "azure", key["aws"])
        assert _ok(_host(made, "aws", "stat -c %a /etc/wireguard/wg0.psk")).strip() == "600"
        r = run_wgmesh(made.dir, "plan", "--detailed-exitcode")
        assert r.returncode == 0 and NO_CHANGES in r.stdout, _out(r)

        r = run_wgmesh(made.dir, "lab", "reboot", "aws", "--dir", str(made.dir))
        assert r.returncode == 0, _out(r)
        assert _psk(made, "aws", key["gcp"]) == psk, "wg-quick up put the kept key back"
        _ok(_host(made, "aws", f"ping -n -q -c 1 -w 10 {made.host('gcp').address}"))
        r = run_wgmesh(made.dir, "plan", "--detailed-exitcode")
        assert r.returncode == 0 and NO_CHANGES in r.stdout, _out(r)
    finally:
        made.mesh_path.write_text(original)
    r = run_wgmesh(made.dir, "apply", "--auto-approve")  # not kept any more: cleared on both sides
    assert r.returncode == 0, _out(r)
    assert _psk(made, "aws", key["gcp"]) == "(none)" == _psk(made, "gcp", key["aws"])
    r = run_wgmesh(made.dir, "check")
    assert r.returncode == 0, _out(r)
