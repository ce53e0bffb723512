"""Hole punching (core/punch.py, render's desired(), plan): the public nodes' view of the NAT'd nodes decides which
pairs punch, which go direct and which stay on the relay; no false change for a pair that is fine."""

from __future__ import annotations

import dataclasses

from meshes import KEYS, NOW, SEEN, converged, public_state, punch_states
from meshes import clouds_behind_nats as nat_mesh

from wgmesh.core.changes import Action
from wgmesh.core.plan import build_plan, diff_node, plan_index
from wgmesh.core.punch import FRESH, MISSED_REKEY, PairPath, punching
from wgmesh.core.render import PeerEntries, desired, render, render_node, syncconf_text
from wgmesh.core.state import LiveState
from wgmesh.core.steps import Step, StepKind

# ------------------------------------------------------------------------------------------- deciding


def test_cone_nats_punch_and_a_symmetric_nat_stays_on_the_relay() -> None:
    m = nat_mesh()
    punch = punching(m, punch_states(m))
    assert punch.path("gcp", "aliyun") is PairPath.PUNCH
    assert punch.path("gcp", "tencent") is PairPath.RELAY and punch.path("aliyun", "tencent") is PairPath.RELAY
    assert punch.learned("gcp") == SEEN["gcp"] and punch.learned("tencent") is None
    assert punch.seen["tencent"].symmetric
    [note] = punch.notes()
    assert note.startswith("tencent is behind a symmetric NAT (aws sees 198.51.100.5:40001, azure sees "
                           "198.51.100.5:40002)") and "stay on relay aws" in note


def test_nothing_seen_yet_or_seen_long_ago_is_no_punching() -> None:
    m = nat_mesh()
    states = punch_states(m)
    never = {n: (public_state(m, n, age=NOW) if n in ("aws", "azure") else s) for n, s in states.items()}
    assert not punching(m, never)
    stale = {n: (public_state(m, n, age=FRESH + 1) if n in ("aws", "azure") else s) for n, s in states.items()}
    assert not punching(m, stale)
    no_clock = {n: (dataclasses.replace(s, clock=None) if isinstance(s, LiveState) else s) for n, s in states.items()}
    assert not punching(m, no_clock)


def test_one_public_node_that_cannot_be_read_still_lets_the_other_tell() -> None:
    m = nat_mesh()
    states = {**punch_states(m), "azure": "connection refused"}
    punch = punching(m, states)
    assert punch.path("gcp", "aliyun") is PairPath.PUNCH
    assert not punch.seen["tencent"].symmetric  # one observer cannot tell: tencent punches too (and never answers)
    assert punch.path("gcp", "tencent") is PairPath.PUNCH


def test_a_node_only_one_of_two_readable_public_nodes_has_seen_waits_on_the_relay() -> None:
    # CI saw this: right after apply, aws had shaken hands with tencent (symmetric NAT) and azure not yet; tencent's
    # one sighting looked like a cone, its pairs punched, and the next round took them back
    m = nat_mesh()
    states = punch_states(m)
    azure = states["azure"]
    assert isinstance(azure, LiveState)
    peers = dict(azure.peers)
    peers[KEYS["tencent"]] = dataclasses.replace(peers[KEYS["tencent"]], latest_handshake=0)
    states["azure"] = dataclasses.replace(azure, peers=peers)
    punch = punching(m, states)
    assert punch.learned("tencent") is None and not punch.seen["tencent"].symmetric
    assert punch.path("gcp", "tencent") is PairPath.RELAY and punch.path("aliyun", "tencent") is PairPath.RELAY
    assert punch.path("gcp", "aliyun") is PairPath.PUNCH  # both seen by both
    assert not punch.notes()


def test_what_a_node_says_is_an_endpoint_is_checked_before_it_becomes_an_argument() -> None:
    m = nat_mesh()
    states = punch_states(m)
    for name in ("aws", "azure"):
        s = states[name]
        assert isinstance(s, LiveState)
        peers = dict(s.peers)
        peers[KEYS["gcp"]] = dataclasses.replace(peers[KEYS["gcp"]], endpoint="1.2.3.4:51820; reboot")
        states[name] = dataclasses.replace(s, peers=peers)
    assert punching(m, states).path("gcp", "aliyun") is PairPath.RELAY


def test_a_fresh_handshake_on_the_pairs_own_entries_makes_it_direct_and_a_stale_one_punches_again() -> None:
    m = nat_mesh()
    punch = punching(m, punch_states(m))
    assert punching(m, punch_states(m, punch, handshakes=NOW - 20)).path("gcp", "aliyun") is PairPath.DIRECT
    assert punching(m, punch_states(m, punch, handshakes=NOW - FRESH - 1)).path("gcp", "aliyun") is PairPath.PUNCH


def test_a_mesh_without_an_active_relay_punches_nothing() -> None:
    m = nat_mesh()
    one_nat = dataclasses.replace(m, nodes=m.nodes[:3])
    assert not punching(one_nat, {n: s for n, s in punch_states(m).items() if n in ("aws", "azure", "gcp")})


# ------------------------------------------------------------------------------------------- configs


def test_a_punching_pair_has_entries_without_addresses_and_the_relay_still_carries_them() -> None:
    m = nat_mesh()
    punch = punching(m, punch_states(m))
    cfg = desired(m, "gcp", PeerEntries(m, punch))
    peers = {p.name: p for p in cfg.peers}
    assert list(peers) == ["aws", "azure", "aliyun"]
    assert peers["aliyun"].allowed_ips == () and peers["aliyun"].learned == SEEN["aliyun"]
    assert peers["aliyun"].persistent_keepalive == 25 and peers["aliyun"].endpoint is None
    assert {"10.0.0.4/32", "192.168.40.0/24", "10.0.0.5/32"} <= {str(n) for n in peers["aws"].allowed_ips}
    text = render(cfg, m.name)
    stanza = text.split("# aliyun\n")[1]
    assert stanza.startswith("# hole punching: its addresses ride on relay aws until a direct handshake\n[Peer]\n")
    assert "AllowedIPs" not in stanza and "Endpoint" not in stanza and SEEN["aliyun"] not in text
    sync = syncconf_text(cfg)
    assert SEEN["aliyun"] not in sync and sync.count("AllowedIPs") == 2  # aws and azure; aliyun's left out


def test_a_direct_pair_carries_its_addresses_and_the_relay_no_longer_does() -> None:
    m = nat_mesh()
    punch = punching(m, punch_states(m, punching(m, punch_states(m)), handshakes=NOW - 5))
    cfg = desired(m, "gcp", PeerEntries(m, punch))
    peers = {p.name: p for p in cfg.peers}
    assert [str(n) for n in peers["aliyun"].allowed_ips] == ["10.0.0.4/32", "192.168.40.0/24"]
    assert peers["aliyun"].learned is None
    assert peers["aws"].relayed == ("tencent",)
    assert "# direct: hole punched" in render(cfg, m.name)


def test_offline_render_and_the_public_nodes_do_not_depend_on_punching() -> None:
    m = nat_mesh()
    punch = punching(m, punch_states(m, punching(m, punch_states(m)), handshakes=NOW - 5))
    assert "aliyun" not in {p.name for p in desired(m, "gcp").peers}
    assert render_node(m, "gcp") == render(desired(m, "gcp"), m.name)
    for name in ("aws", "azure"):
        assert desired(m, name, PeerEntries(m, punch)) == desired(m, name)


# ------------------------------------------------------------------------------------------- plans


def test_the_plan_that_starts_punching() -> None:
    m = nat_mesh()
    states = punch_states(m)
    index = plan_index(m, states)
    gcp = states["gcp"]
    assert isinstance(gcp, LiveState)
    plan = diff_node(m, m.node("gcp"), gcp, index=index)
    [change] = [c for c in plan.changes if c.kind == "peer"]
    assert (change.action, change.name) == (Action.CREATE, "aliyun")
    assert change.after == {"public_key": KEYS["aliyun"], "allowed_ips": [], "endpoint": SEEN["aliyun"],
                            "persistent_keepalive": 25, "path": "via relay aws"}
    assert Step(StepKind.SET_ENDPOINT, f"{KEYS['aliyun']} {SEEN['aliyun']}") in plan.steps
    kinds = [s.kind for s in plan.steps]
    assert kinds.index(StepKind.SET_ENDPOINT) > kinds.index(StepKind.SYNC_PEERS)
    whole = build_plan(m, states)
    assert any("tencent is behind a symmetric NAT" in w for w in whole.warnings)
    assert {n.node for n in whole.nodes if n.changes} == {"gcp", "aliyun"}


def test_a_punching_mesh_that_is_converged_has_no_changes() -> None:
    m = nat_mesh()
    punch = punching(m, punch_states(m))
    states = punch_states(m, punch)
    assert punching(m, states) == punch
    plan = build_plan(m, states)
    assert not plan.has_changes, [(n.node, n.changes) for n in plan.nodes if n.changes]


def test_the_plan_that_moves_a_punched_pair_off_the_relay() -> None:
    m = nat_mesh()
    states = punch_states(m, punching(m, punch_states(m)), handshakes=NOW - 5)
    plan = {n.node: n for n in build_plan(m, states).nodes}
    changes = {c.name: c for c in plan["gcp"].changes if c.kind == "peer"}
    assert set(changes) == {"aws", "aliyun"}
    moved = changes["aliyun"]
    assert (moved.before or {})["path"] == "via relay aws" and (moved.after or {})["path"] == "direct"
    assert (moved.after or {})["allowed_ips"] == ["10.0.0.4/32", "192.168.40.0/24"]
    assert (moved.before or {})["endpoint"] == (moved.after or {})["endpoint"], "no endpoint change once direct"
    assert (changes["aws"].before or {})["relays"] == ["aliyun", "tencent"]
    assert (changes["aws"].after or {})["relays"] == ["tencent"]
    assert any("reaches aliyun directly (hole punched)" in n for n in plan["gcp"].notes)
    assert not plan["aws"].changes and not plan["tencent"].changes


def test_a_direct_pair_that_stays_fresh_is_no_change_even_when_its_endpoint_roams() -> None:
    m = nat_mesh()
    direct = punching(m, punch_states(m, punching(m, punch_states(m)), handshakes=NOW - 5))
    states = punch_states(m, direct, handshakes=NOW - 100)
    gcp = states["gcp"]
    assert isinstance(gcp, LiveState)
    roamed = {k: dataclasses.replace(v, endpoint="198.51.100.99:3333") if k == KEYS["aliyun"] else v
              for k, v in gcp.peers.items()}
    states["gcp"] = dataclasses.replace(gcp, peers=roamed)
    assert not build_plan(m, states).has_changes


def _moved(states: dict[str, LiveState | str], name: str, endpoint: str) -> None:
    """The public nodes see NAT'd `name` at a new address: its NAT mapped it anew (a new public IP, a new port)."""
    for public in ("aws", "azure"):
        st = states[public]
        assert isinstance(st, LiveState)
        key = KEYS[name]
        states[public] = dataclasses.replace(st, peers={**st.peers, key: dataclasses.replace(st.peers[key],
                                                                                           endpoint=endpoint)})


def _punched_at(states: dict[str, LiveState | str], a: str, b: str) -> None:
    """Each entry of the pair points where `wg set` put it: the other's observed endpoint."""
    for this, other in ((a, b), (b, a)):
        st = states[this]
        assert isinstance(st, LiveState)
        key = KEYS[other]
        states[this] = dataclasses.replace(st, peers={**st.peers, key: dataclasses.replace(st.peers[key],
                                                                                         endpoint=SEEN[other])})


def test_a_direct_pair_left_behind_by_a_new_nat_mapping_punches_again_after_a_missed_rekey() -> None:
    """aliyun's NAT gives it a new address: the public nodes see it there, gcp's direct entry still points at the
    old one and nothing reaches it. Once the pair has missed a rekey, the plan punches again with the new endpoint
    (not "No changes" until the handshake is FRESH seconds old)."""
    m = nat_mesh()
    direct = punching(m, punch_states(m, punching(m, punch_states(m)), handshakes=NOW - 5))
    for age, path in ((100, PairPath.DIRECT), (MISSED_REKEY + 20, PairPath.PUNCH)):
        states = punch_states(m, direct, handshakes=NOW - age)
        _punched_at(states, "gcp", "aliyun")
        _moved(states, "aliyun", "203.0.113.44:1024")
        got = punching(m, states)
        assert got.path("gcp", "aliyun") is path, age
    plan = {n.node: n for n in build_plan(m, states).nodes}
    moved = next(c for c in plan["gcp"].changes if c.name == "aliyun")
    assert (moved.before or {})["path"] == "direct" and (moved.after or {})["endpoint"] == "203.0.113.44:1024"
    # the same pair with the public nodes seeing aliyun where gcp's entry points: a missed rekey alone is no change
    states = punch_states(m, direct, handshakes=NOW - MISSED_REKEY - 20)
    _punched_at(states, "gcp", "aliyun")
    assert punching(m, states).path("gcp", "aliyun") is PairPath.DIRECT


def test_a_direct_pair_gone_stale_moves_back_to_the_relay() -> None:
    m = nat_mesh()
    direct = punching(m, punch_states(m, punching(m, punch_states(m)), handshakes=NOW - 5))
    states = punch_states(m, direct, handshakes=NOW - FRESH - 60)
    plan = {n.node: n for n in build_plan(m, states).nodes}
    moved = next(c for c in plan["aliyun"].changes if c.name == "gcp")
    assert (moved.before or {})["path"] == "direct" and (moved.after or {})["path"] == "via relay aws"
    assert (moved.after or {})["allowed_ips"] == []


def test_apply_verification_uses_the_plans_paths() -> None:
    """What apply reads back after converging a punching node is no change under the plan's index."""
    m = nat_mesh()
    states = punch_states(m)
    index = plan_index(m, states)
    after = converged(m, "gcp", index.entries.punch, clock=NOW)
    assert diff_node(m, m.node("gcp"), after, index=index).changes == ()


def test_status_tells_a_punching_pair_from_a_hole_punched_one() -> None:
    from wgmesh.core.status import status_report

    m = nat_mesh()
    names = list(m.node_names)
    punch = punching(m, punch_states(m))
    clocks = dict.fromkeys(names, NOW)
    report = status_report(m, m.nodes, names, punch_states(m, punch, handshakes=NOW - 5), clocks, NOW)
    assert report.view("gcp", "aliyun").path == "via relay aws"  # its own entry punches; the traffic is relayed
    direct = punching(m, punch_states(m, punch, handshakes=NOW - 5))
    report = status_report(m, m.nodes, names, punch_states(m, direct, handshakes=NOW - 5), clocks, NOW)
    assert report.view("gcp", "aliyun").path == "hole punched"
    assert report.view("gcp", "tencent").path == "via relay aws"
    assert report.view("gcp", "aws").path == "direct"
