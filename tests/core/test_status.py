"""core/status.py: what each node's `wg show` says of each peer, and the path it stands for."""

from __future__ import annotations

import dataclasses

from meshes import KEYS, NOW, punch_states
from meshes import clouds_behind_nats as nat_mesh

from wgmesh.core.punch import punching
from wgmesh.core.state import LiveState
from wgmesh.core.status import Handshake, status_report


def _punched() -> dict[str, LiveState | str]:
    """gcp and aliyun hole punched (direct entries for each other; aws's entry on each carries aws only)."""
    m = nat_mesh()
    direct = punching(m, punch_states(m, punching(m, punch_states(m)), handshakes=NOW - 5))
    return punch_states(m, direct, handshakes=NOW - 12)


def _drop(state: LiveState | str, peer: str) -> LiveState:
    """`wg set wg0 peer KEY remove` of `peer`."""
    assert isinstance(state, LiveState)
    return dataclasses.replace(state, peers={k: v for k, v in state.peers.items() if k != KEYS[peer]})


def test_a_removed_punched_peer_is_no_peer_not_a_relayed_path() -> None:
    """The lab repro: after a hole punching, `wg set wg0 peer <aliyun> remove` on gcp. gcp's aws entry carries
    aws's prefixes only: gcp has no path to aliyun at all (status used to say `via relay aws 35s`)."""
    m = nat_mesh()
    results = _punched()
    before = status_report(m, m.nodes, m.node_names, results, {}, now=NOW)
    assert (before.view("gcp", "aliyun").path, before.view("gcp", "aliyun").age) == ("hole punched", 12)
    results["gcp"] = _drop(results["gcp"], "aliyun")
    v = status_report(m, m.nodes, m.node_names, results, {}, now=NOW).view("gcp", "aliyun")
    assert (v.state, v.via, v.path) == (Handshake.NO_PEER, None, "")


def test_a_relay_entry_narrowed_by_hand_gives_no_relayed_path() -> None:
    """Relayed gcp-aliyun, then on gcp `wg set wg0 peer <aws> allowed-ips 10.0.0.1/32`: aws's entry no longer
    carries aliyun's address, so gcp does not reach aliyun through it."""
    m = nat_mesh()
    results = punch_states(m)  # no punching: gcp reaches aliyun and tencent through aws
    relayed = status_report(m, m.nodes, m.node_names, results, {}, now=NOW).view("gcp", "aliyun")
    assert (relayed.state, relayed.path) == (Handshake.NEVER, "via relay aws")  # gcp's leg to aws
    gcp = results["gcp"]
    assert isinstance(gcp, LiveState)
    aws = gcp.peers[KEYS["aws"]]
    narrowed = dataclasses.replace(aws, allowed_ips=frozenset(m.node("aws").allowed_ips))
    results["gcp"] = dataclasses.replace(gcp, peers={**gcp.peers, KEYS["aws"]: narrowed})
    report = status_report(m, m.nodes, m.node_names, results, {}, now=NOW)
    assert report.view("gcp", "aliyun").state is Handshake.NO_PEER
    assert report.view("gcp", "tencent").state is Handshake.NO_PEER
    assert report.view("gcp", "aws").path == "direct"  # its own leg is fine
    assert report.view("aliyun", "gcp").path == "via relay aws"  # aliyun's side still has its path
