"""core/status.py: pairs that never completed a handshake say which UDP port must be reachable from where."""

from __future__ import annotations

import dataclasses

from meshes import converged, four

from wgmesh.core.status import status_report

MESH = four()  # aws, azure, gcp with endpoints; aliyun behind NAT


def _never(state, *peers: str):  # type: ignore[no-untyped-def]
    keys = {MESH.node(p).public_key for p in peers}
    return dataclasses.replace(state, peers={k: dataclasses.replace(v, latest_handshake=0) if k in keys else v
                                             for k, v in state.peers.items()})


def test_a_dark_pair_names_the_port_that_must_be_reachable() -> None:
    results = {n: converged(MESH, n) for n in MESH.node_names}
    results["aws"] = _never(results["aws"], "aliyun")
    results["aliyun"] = _never(results["aliyun"], "aws")
    report = status_report(MESH, MESH.nodes, MESH.node_names, results, {}, now=1700000001)
    port = MESH.node("aws").endpoint.port  # type: ignore[union-attr]
    assert report.hints == (f"aws <-> aliyun: never a handshake: aws's UDP port {port} must be reachable from "
                            "aliyun (check security groups, NSGs, VPC firewalls, ufw or firewalld on the way)",)


def test_pairs_with_handshakes_give_no_hints() -> None:
    results = {n: converged(MESH, n) for n in MESH.node_names}
    assert status_report(MESH, MESH.nodes, MESH.node_names, results, {}, now=1700000001).hints == ()


def test_one_side_unreachable_still_hints_from_the_side_that_was_read() -> None:
    results: dict = {n: converged(MESH, n) for n in MESH.node_names}
    results["gcp"] = _never(results["gcp"], "azure")
    results["azure"] = "cannot connect"
    report = status_report(MESH, MESH.nodes, MESH.node_names, results, {}, now=1700000001)
    assert len(report.hints) == 1 and report.hints[0].startswith("azure <-> gcp: never a handshake: azure's UDP")


def test_a_handshake_older_than_the_last_apply_does_not_count() -> None:
    """converged() handshakes are at 1700000000: an apply confirmed after that on both sides of a pair leaves it
    with no handshake since, which is what a firewall dropping the new port looks like."""
    results = {n: converged(MESH, n) for n in MESH.node_names}
    results["aws"] = dataclasses.replace(results["aws"], applied=1700000050)
    results["azure"] = dataclasses.replace(results["azure"], applied=1700000050)
    report = status_report(MESH, MESH.nodes, MESH.node_names, results, {}, now=1700000060)
    assert [h.split(":")[0] for h in report.hints] == ["aws <-> azure"]
    assert report.hints[0].startswith("aws <-> azure: no handshake since the last apply: aws's UDP port")
    assert report.view("aws", "gcp").before_apply and not report.view("gcp", "aws").before_apply  # gcp: no apply
    # one side with a handshake after its apply: the pair works
    results["aws"] = dataclasses.replace(results["aws"], applied=1699999000)
    assert status_report(MESH, MESH.nodes, MESH.node_names, results, {}, now=1700000060).hints == ()
