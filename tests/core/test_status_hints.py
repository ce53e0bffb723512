"""core/status.py: pairs that never completed a handshake say which UDP port must be reachable from where."""

from __future__ import annotations

import dataclasses

from meshes import converged, four

from wgmesh.core.status import REKEY_DUE, status_report

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


def test_an_idle_pair_that_never_sent_anything_gets_no_hint() -> None:
    """Two nodes with endpoints and no keepalive shake hands only when one has something to send: a pair that
    never did and never sent a byte proves nothing of a firewall."""
    results = {n: converged(MESH, n) for n in MESH.node_names}
    for a, b in (("aws", "azure"), ("azure", "aws")):
        st = _never(results[a], b)
        key = MESH.node(b).public_key
        results[a] = dataclasses.replace(st, peers={**st.peers, key: dataclasses.replace(st.peers[key], tx_bytes=0,
                                                                                       rx_bytes=0)})
    assert status_report(MESH, MESH.nodes, MESH.node_names, results, {}, now=1700000001).hints == ()


def test_pairs_with_handshakes_give_no_hints() -> None:
    results = {n: converged(MESH, n) for n in MESH.node_names}
    assert status_report(MESH, MESH.nodes, MESH.node_names, results, {}, now=1700000001).hints == ()


def test_one_side_unreachable_still_hints_from_the_side_that_was_read() -> None:
    results: dict = {n: converged(MESH, n) for n in MESH.node_names}
    results["gcp"] = _never(results["gcp"], "azure")
    results["azure"] = "cannot connect"
    report = status_report(MESH, MESH.nodes, MESH.node_names, results, {}, now=1700000001)
    assert len(report.hints) == 1 and report.hints[0].startswith("azure <-> gcp: never a handshake: azure's UDP")


def _keepalive(state, *peers: str):  # type: ignore[no-untyped-def]
    keys = {MESH.node(p).public_key for p in peers}
    return dataclasses.replace(state, peers={k: dataclasses.replace(v, persistent_keepalive=25) if k in keys else v
                                             for k, v in state.peers.items()})


def test_a_handshake_older_than_the_last_apply_does_not_count() -> None:
    """converged() handshakes are at 1700000000: an apply confirmed after that on both sides of a pair with
    keepalive leaves it with no handshake since, while one was due: what a firewall dropping the new port looks
    like. Without keepalive the same pair may just be idle: no hint."""
    results = {n: converged(MESH, n) for n in MESH.node_names}
    results["aws"] = dataclasses.replace(results["aws"], applied=1700000050)
    results["azure"] = dataclasses.replace(results["azure"], applied=1700000050)
    later = 1700000050 + REKEY_DUE + 10  # a live pair would have shaken hands again by now
    idle = status_report(MESH, MESH.nodes, MESH.node_names, results, {}, now=later)
    assert idle.hints == (), "no keepalive, no traffic: no reason to shake hands again"
    results["aws"] = _keepalive(results["aws"], "azure")
    report = status_report(MESH, MESH.nodes, MESH.node_names, results, {}, now=later)
    assert [h.split(":")[0] for h in report.hints] == ["aws <-> azure"]
    assert report.hints[0].startswith("aws <-> azure: no handshake since the last apply: aws's UDP port")
    assert report.view("aws", "gcp").before_apply and not report.view("gcp", "aws").before_apply  # gcp: no apply
    # one side with a handshake after its apply: the pair works
    results["aws"] = dataclasses.replace(results["aws"], applied=1699999000)
    assert status_report(MESH, MESH.nodes, MESH.node_names, results, {}, now=later).hints == ()


def test_right_after_an_apply_old_handshakes_get_no_firewall_hint() -> None:
    """10 s after an apply (an MTU change, say), every pair's handshake is older than it while the tunnels carry
    traffic: no pair is blamed on a firewall; one line says when to look again."""
    results = {n: dataclasses.replace(converged(MESH, n), applied=1700000050) for n in MESH.node_names}
    report = status_report(MESH, MESH.nodes, MESH.node_names, results, {}, now=1700000060)
    assert report.hints == (
        "the last apply on aliyun, aws, azure, gcp was under 3 minutes ago: a handshake from before it proves "
        "nothing of what it changed, and a live pair shakes hands again within 3 minutes: run status again then "
        "(or `wgmesh check` now)",)
    assert report.view("aws", "azure").before_apply and report.view("aws", "azure").apply_recent


def test_a_hole_punched_pair_without_a_recent_handshake_gets_a_hint() -> None:
    """Two nodes behind NAT, direct (hole punched), whose direct path went quiet: the relay legs look fine, so
    say it of the pair itself (before, such pairs got no hint at all)."""
    from meshes import NOW, punch_states
    from meshes import clouds_behind_nats as nat_mesh

    from wgmesh.core.punch import punching

    m = nat_mesh()
    direct = punching(m, punch_states(m, punching(m, punch_states(m)), handshakes=NOW - 5))
    fine = status_report(m, m.nodes, m.node_names, punch_states(m, direct, handshakes=NOW - 60), {}, now=NOW)
    assert not any("hole punched" in h for h in fine.hints)
    # stale (over 3 minutes) but not yet what plan moves (punch.FRESH, 5 minutes): plan and apply would say "No
    # changes", so no hint says to run them (review A3)
    stale = status_report(m, m.nodes, m.node_names, punch_states(m, direct, handshakes=NOW - 240), {}, now=NOW)
    assert not any("hole punched" in h for h in stale.hints)
    quiet = status_report(m, m.nodes, m.node_names, punch_states(m, direct, handshakes=NOW - 400), {}, now=NOW)
    assert [h for h in quiet.hints if "hole punched" in h] == [
        "gcp <-> aliyun: hole punched, but no handshake on the direct path for 5 minutes: run wgmesh plan and apply "
        "(it punches again, or moves the pair back to the relay)"]
    # both rebooted (review B2): no handshake at all since, which is not "for 5 minutes"
    rebooted = status_report(m, m.nodes, m.node_names, punch_states(m, direct, handshakes=0), {}, now=NOW)
    assert [h for h in rebooted.hints if "hole punched" in h] == [
        "gcp <-> aliyun: hole punched, but no handshake on the direct path since the interface came up: run wgmesh "
        "plan and apply (it punches again, or moves the pair back to the relay)"]


def test_right_after_a_first_apply_a_pair_that_never_shook_hands_gets_no_firewall_hint() -> None:
    """The lab repro: `lab up`, `apply`, `status`: aliyun's first initiation went out before aws was up, and
    WireGuard retries. Under REKEY_DUE after the apply no pair is blamed on a firewall; the one line says when to
    look again. Once REKEY_DUE has passed, the same pair gets its hint."""
    applied = 1699999990  # converged() handshakes are at 1700000000: the other pairs shook hands since
    results = {n: dataclasses.replace(converged(MESH, n), applied=applied) for n in MESH.node_names}
    results["aws"] = _never(results["aws"], "aliyun")
    results["aliyun"] = _never(results["aliyun"], "aws")
    report = status_report(MESH, MESH.nodes, MESH.node_names, results, {}, now=applied + 20)
    assert report.hints == (
        "the last apply on aliyun, aws was under 3 minutes ago: a handshake from before it proves nothing of what it "
        "changed, and a live pair shakes hands again within 3 minutes: run status again then (or `wgmesh check` "
        "now)",)
    assert report.view("aliyun", "aws").apply_recent and not report.view("aliyun", "aws").before_apply
    later = status_report(MESH, MESH.nodes, MESH.node_names, results, {}, now=applied + REKEY_DUE + 10)
    assert [h.split(":")[0] for h in later.hints] == ["aws <-> aliyun"]
    assert later.hints[0].startswith("aws <-> aliyun: never a handshake: aws's UDP port")
