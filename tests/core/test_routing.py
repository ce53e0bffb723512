"""core/routing.py: forwarding, wgmesh's firewall rules, hooks and the boot unit, compared with the node."""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import re

import pytest
from meshes import converged, four, fresh

from wgmesh.core.changes import Action
from wgmesh.core.model import Subnet
from wgmesh.core.plan import config_digest, diff_node
from wgmesh.core.steps import Step, StepKind

MESH = four()
SUBNET = ipaddress.ip_network("192.168.10.0/24")


def _with(mesh, name: str, **kw):  # type: ignore[no-untyped-def]
    return dataclasses.replace(mesh, nodes=tuple(dataclasses.replace(n, **kw) if n.name == name else n
                                                 for n in mesh.nodes))


def _extra(plan) -> list[tuple[str, str, str]]:  # type: ignore[no-untyped-def]
    return [(c.action.value, c.kind, c.name) for c in plan.changes if c.kind in
            ("forwarding", "firewall", "masquerade", "unit")]


def test_a_converged_routing_node_has_nothing_to_do() -> None:
    assert MESH.node("aws").subnets, "the four-cloud mesh routes subnets"
    plan = diff_node(MESH, MESH.node("aws"), converged(MESH, "aws"))
    assert plan.changes == () and plan.steps == ()


def test_forwarding_turned_off_by_hand_is_drift_and_one_step() -> None:
    state = converged(MESH, "aws", forwarding={4: False, 6: False})
    plan = diff_node(MESH, MESH.node("aws"), state)
    assert _extra(plan) == [("update", "forwarding", "ipv4")]
    change = next(c for c in plan.changes if c.kind == "forwarding")
    assert (change.before, change.after) == ({"enabled": False}, {"enabled": True})
    assert Step(StepKind.SET_FORWARDING, "4") in plan.steps


def test_unknown_forwarding_is_not_a_change() -> None:
    plan = diff_node(MESH, MESH.node("aws"), converged(MESH, "aws", forwarding={}))
    assert plan.changes == ()


def test_missing_forward_rules_are_added_and_stale_ones_removed() -> None:
    plan = diff_node(MESH, MESH.node("aws"), converged(MESH, "aws", forward_rules=False))
    assert _extra(plan) == [("create", "firewall", "forward wg0")]
    assert Step(StepKind.ADD_FORWARD_RULES, "4") in plan.steps
    no_subnets = _with(MESH, "aws", subnets=())
    plan = diff_node(no_subnets, no_subnets.node("aws"), converged(MESH, "aws"))
    assert ("delete", "firewall", "forward wg0") in _extra(plan)
    assert Step(StepKind.DELETE_FORWARD_RULES, "4") in plan.steps


def test_masquerade_added_and_removed_with_the_field() -> None:
    masq = _with(MESH, "aws", masquerade=True)
    plan = diff_node(masq, masq.node("aws"), converged(MESH, "aws"))
    assert ("create", "masquerade", str(SUBNET)) in _extra(plan)
    assert Step(StepKind.ADD_MASQUERADE, str(SUBNET)) in plan.steps
    assert any(line.startswith("+PostUp = iptables -w 5 -t nat -C POSTROUTING") for line in plan.config_diff)
    back = diff_node(MESH, MESH.node("aws"), converged(masq, "aws"))
    assert ("delete", "masquerade", str(SUBNET)) in _extra(back)
    assert Step(StepKind.DELETE_MASQUERADE, str(SUBNET)) in back.steps


def test_rules_without_iptables_are_the_nodes_error() -> None:
    plan = diff_node(MESH, MESH.node("aws"), converged(MESH, "aws", has_iptables=False, forward_rules=False))
    assert plan.error is not None and "iptables" in plan.error and not plan.steps


SUBNET6 = ipaddress.ip_network("fd00:99:10::/64")


def _ipv6_subnet(masquerade: bool | None = None):  # type: ignore[no-untyped-def]
    aws = MESH.node("aws")
    return _with(MESH, "aws", subnets=(*aws.subnets, Subnet(SUBNET6, None, masquerade)))


def test_an_ipv6_subnet_gets_forwarding_and_ip6tables_rules_of_its_own() -> None:
    """A node routing an IPv6 subnet forwards IPv6 and has wgmesh's FORWARD accept rules in ip6tables too (a
    FORWARD policy of DROP is as common there: Docker sets it); a converged node has nothing to do."""
    mesh = _ipv6_subnet()
    before = converged(MESH, "aws")  # the IPv4-only node, before the IPv6 subnet
    plan = diff_node(mesh, mesh.node("aws"), before)
    assert _extra(plan) == [("update", "forwarding", "ipv6"), ("create", "firewall", "forward wg0 ipv6")]
    assert [s for s in plan.steps if s.kind in (StepKind.SET_FORWARDING, StepKind.ADD_FORWARD_RULES)] == [
        Step(StepKind.SET_FORWARDING, "6"), Step(StepKind.ADD_FORWARD_RULES, "6")]
    added = [line for line in plan.config_diff if line.startswith("+PostUp")]
    for d in ("-i", "-o"):
        rule = f"FORWARD {d} %i -m comment --comment wgmesh:%i -j ACCEPT"
        assert f"+PostUp = ip6tables -w 5 -C {rule} 2>/dev/null || ip6tables -w 5 -I {rule}" in added
    down = "+PostDown = ip6tables -w 5 -D FORWARD -o %i -m comment --comment wgmesh:%i -j ACCEPT || true"
    assert down in plan.config_diff
    again = diff_node(mesh, mesh.node("aws"), converged(mesh, "aws"))  # wgmesh's ip6tables lines are not hooks
    assert again.changes == () and again.steps == ()
    back = diff_node(MESH, MESH.node("aws"), converged(mesh, "aws"))
    assert ("delete", "firewall", "forward wg0 ipv6") in _extra(back)
    assert Step(StepKind.DELETE_FORWARD_RULES, "6") in back.steps
    assert Step(StepKind.DELETE_FORWARD_RULES, "4") not in back.steps


def test_an_ipv6_subnet_is_masqueraded_with_ip6tables() -> None:
    mesh = _ipv6_subnet(masquerade=True)
    plan = diff_node(mesh, mesh.node("aws"), converged(_ipv6_subnet(), "aws"))
    assert _extra(plan) == [("create", "masquerade", str(SUBNET6))]
    assert Step(StepKind.ADD_MASQUERADE, str(SUBNET6)) in plan.steps
    rule = f"POSTROUTING ! -s {SUBNET6} -d {SUBNET6} -m comment --comment wgmesh:%i -j MASQUERADE"
    added = f"+PostUp = ip6tables -w 5 -t nat -C {rule} 2>/dev/null || ip6tables -w 5 -t nat -I {rule}"
    assert added in plan.config_diff
    back = diff_node(_ipv6_subnet(), mesh.node("aws"), converged(mesh, "aws"))
    assert Step(StepKind.DELETE_MASQUERADE, str(SUBNET6)) in back.steps


def test_a_forward_rule_left_alone_is_deleted_with_the_subnet_or_completed_while_it_stays() -> None:
    """One of wgmesh's two FORWARD rules deleted by hand: while the node routes that version, apply adds the
    other back; once it does not, the one left is deleted (it used to stay, an ACCEPT rule plan never showed)."""
    routed = _ipv6_subnet()
    stray = converged(routed, "aws", forward_rules6=False, stray_forward_rules=frozenset({6}))
    plan = diff_node(routed, routed.node("aws"), stray)
    assert _extra(plan) == [("create", "firewall", "forward wg0 ipv6")]
    assert Step(StepKind.ADD_FORWARD_RULES, "6") in plan.steps
    gone = diff_node(MESH, MESH.node("aws"), stray)
    assert ("delete", "firewall", "forward wg0 ipv6") in _extra(gone)
    assert Step(StepKind.DELETE_FORWARD_RULES, "6") in gone.steps
    assert Step(StepKind.DELETE_FORWARD_RULES, "4") not in gone.steps


def test_a_config_with_the_rule_lines_of_before_the_lock_wait_is_rewritten_without_running_hooks() -> None:
    """Configs written before the rule lines waited for the xtables lock (`-w 5`): the new lines are a config
    change, once; still wgmesh's own lines (their comment), so no hook runs and no rule is taken down."""
    mesh = _with(MESH, "aws", masquerade=True)
    state = converged(mesh, "aws")
    assert state.config_text is not None and " -w 5 " in state.config_text
    older = state.config_text.replace(" -w 5 ", " ")
    plan = diff_node(mesh, mesh.node("aws"), dataclasses.replace(state, config_text=older,
                                                                 config_sha256=config_digest(older)))
    rule = "FORWARD -i %i -m comment --comment wgmesh:%i -j ACCEPT"
    assert f"+PostUp = iptables -w 5 -C {rule} 2>/dev/null || iptables -w 5 -I {rule}" in plan.config_diff
    assert f"-PostUp = iptables -C {rule} 2>/dev/null || iptables -I {rule}" in plan.config_diff
    assert not [s for s in plan.steps if s.kind in (StepKind.RUN_HOOKS, StepKind.DELETE_FORWARD_RULES,
                                                    StepKind.DELETE_MASQUERADE)]
    assert _extra(plan) == []



def test_rule_lines_insert_a_rule_only_when_missing_and_older_ones_are_rewritten_without_running_hooks() -> None:
    """Review B4: a boot whose later PostUp line failed deleted the interface without its PostDown lines, and the
    next `wg-quick up` inserted every rule again (a copy per failed boot, which plan did not see). The lines insert
    a rule only when it is missing (`-C ... || -I`); the lines of before are a config change, once, no hook run."""
    mesh = _with(MESH, "aws", masquerade=True)
    state = converged(mesh, "aws")
    assert state.config_text is not None
    ups = [ln for ln in state.config_text.splitlines() if ln.startswith("PostUp = ip") and "wgmesh:%i" in ln]
    idempotent = re.compile(r"PostUp = (\S+) -w 5 (-t nat |)-C (.+) 2>/dev/null \|\| \1 -w 5 \2-I \3")
    assert len(ups) == 3 and all(idempotent.fullmatch(ln) for ln in ups), ups
    older = re.sub(r"(\S+ -w 5 (-t nat )?)-C .+? 2>/dev/null \|\| ", "", state.config_text)
    assert older.count("-C ") == 0 and older.count(" -I ") == 3
    plan = diff_node(mesh, mesh.node("aws"), dataclasses.replace(state, config_text=older,
                                                                 config_sha256=config_digest(older)))
    assert plan.config_diff
    assert not [s for s in plan.steps if s.kind in (StepKind.RUN_HOOKS, StepKind.DELETE_FORWARD_RULES,
                                                    StepKind.DELETE_MASQUERADE)]
    assert _extra(plan) == []

def test_the_node_wide_masquerade_is_ipv4_and_an_ipv6_subnet_asks_for_its_own() -> None:
    """`masquerade: true` on the node source-NATs its IPv4 subnets only (as before IPv6 subnets had rules: an
    upgrade starts no NAT66); an IPv6 subnet's own `masquerade: true` does, and its `false` beats the node's."""
    aws = MESH.node("aws")
    node_wide = _with(_ipv6_subnet(), "aws", masquerade=True)
    assert node_wide.node("aws").masqueraded == tuple(s.prefix for s in aws.subnets)
    plan = diff_node(node_wide, node_wide.node("aws"), converged(_ipv6_subnet(), "aws"))
    assert ("create", "masquerade", str(SUBNET6)) not in _extra(plan)
    assert not any("ip6tables -t nat" in line for line in plan.config_diff)
    own = _with(_ipv6_subnet(masquerade=True), "aws", masquerade=True)
    assert SUBNET6 in own.node("aws").masqueraded
    v4_off = _with(MESH, "aws", masquerade=True,
                   subnets=tuple(Subnet(s.prefix, s.probe, False) for s in aws.subnets))
    assert v4_off.node("aws").masqueraded == ()


def test_an_ipv6_subnet_without_ip6tables_is_the_nodes_error() -> None:
    mesh = _ipv6_subnet()
    plan = diff_node(mesh, mesh.node("aws"), converged(mesh, "aws", has_ip6tables=False, forward_rules6=False))
    assert plan.error is not None and not plan.steps
    assert plan.error.startswith("ip6tables is not installed, and this node routes IPv6 subnets")
    assert plan.error.endswith("install it (Debian's package iptables)")  # its OS unknown
    # an IPv4-only node needs no ip6tables
    assert diff_node(MESH, MESH.node("aws"), converged(MESH, "aws", has_ip6tables=False)).error is None


@pytest.mark.parametrize(("family", "v", "hint"), [
    ("alpine", 6, "apk add ip6tables"),  # Alpine packs ip6tables apart
    ("alpine", 4, "apk add iptables"),
    ("debian", 6, "apt-get install iptables"),
    ("fedora", 6, "dnf install iptables"),
])
def test_the_missing_firewall_tool_is_named_with_the_nodes_package(family: str, v: int, hint: str) -> None:
    mesh = _ipv6_subnet() if v == 6 else MESH
    state = converged(mesh, "aws", os_family=family, **{"has_ip6tables" if v == 6 else "has_iptables": False})
    plan = diff_node(mesh, mesh.node("aws"), state)
    assert plan.error is not None and plan.error.endswith(f"install it ({hint})")


def test_a_changed_hook_shows_in_the_config_diff_and_runs_old_down_then_new_up() -> None:
    old = _with(MESH, "gcp", post_up=("echo old-up %i",), post_down=("echo old-down %i",))
    new = _with(MESH, "gcp", post_up=("echo new-up %i",), post_down=("echo new-down %i",))
    plan = diff_node(new, new.node("gcp"), converged(old, "gcp"))
    assert "-PostUp = echo old-up %i" in plan.config_diff and "+PostUp = echo new-up %i" in plan.config_diff
    hooks = [s for s in plan.steps if s.kind is StepKind.RUN_HOOKS]
    assert len(hooks) == 1
    assert json.loads(hooks[0].value) == {"old_down": ["echo old-down %i"], "new_up": ["echo new-up %i"],
                                          "new_down": ["echo new-down %i"], "old_up": ["echo old-up %i"]}
    assert any(c.kind == "interface" and c.action is Action.UPDATE for c in plan.changes)


def test_unchanged_hooks_do_not_run_again() -> None:
    hooked = _with(MESH, "gcp", post_up=("echo up",))
    state = converged(hooked, "gcp", forward_rules=False)
    plan = diff_node(hooked, hooked.node("gcp"), state)
    assert not any(s.kind is StepKind.RUN_HOOKS for s in plan.steps)


def test_the_unit_is_enabled_where_systemd_runs_and_a_note_says_what_boot_does_elsewhere() -> None:
    plan = diff_node(MESH, MESH.node("azure"), converged(MESH, "azure", wg_quick_unit_enabled=False))
    assert _extra(plan) == [("update", "unit", "wg-quick@wg0")]
    assert Step(StepKind.ENABLE_UNIT) in plan.steps
    drifted = converged(MESH, "azure", wg_quick_unit_enabled=None, link_up=False)
    plan = diff_node(MESH, MESH.node("azure"), drifted)
    assert any("no systemd" in n and "wg-quick up wg0" in n for n in plan.notes)


def test_the_first_plan_of_a_node_without_systemd_says_what_boot_does() -> None:
    """The plan that creates the interface is the one an operator reviews first: it says so too."""
    new = dataclasses.replace(fresh(MESH, "azure"), wg_quick_unit_enabled=None)
    plan = diff_node(MESH, MESH.node("azure"), new)
    assert plan.creates_interface
    assert any("no systemd" in n and "wg-quick up wg0" in n for n in plan.notes)


def test_a_rule_listing_that_fails_on_the_node_is_its_error_not_a_plan_to_add_them_again() -> None:
    """Review F: `iptables -S` failing (an nft rule iptables-nft cannot show) read as "no rules": plan promised
    `+ firewall forward wg0` though both were there, and apply put in a second pair."""
    why = "iptables v1.8.7 (nf_tables): table `filter' is incompatible, use 'nft' tool."
    failed = converged(MESH, "aws", rules_failed={(4, "filter"): why})
    plan = diff_node(MESH, MESH.node("aws"), failed)
    assert plan.error == (f"`iptables -S FORWARD` fails on this node ({why}), so wgmesh cannot tell which of its "
                          "rules are there; fix iptables on the node (an iptables-nft and iptables-legacy mix?), "
                          "then plan again")
    assert not plan.steps
    # a table the node's plan does not need (no masquerade here) is no reason to stop
    assert diff_node(MESH, MESH.node("aws"), converged(MESH, "aws", rules_failed={(4, "nat"): why})).error is None
    plain = _with(MESH, "aws", subnets=())  # routes no subnet: needs no rule
    assert diff_node(plain, plain.node("aws"), converged(plain, "aws", rules_failed={(4, "filter"): why})).error is None
    # ...unless its config adds them (review R2): they may be in place, to be deleted; the listing cannot tell
    had = converged(MESH, "aws", rules_failed={(4, "filter"): why}, forward_rules=False)
    plan = diff_node(plain, plain.node("aws"), had)
    assert plan.error is not None and plan.error.startswith("`iptables -S FORWARD` fails on this node")
    assert not plan.steps


def test_iptables_legacy_tables_beside_nft_are_noted_where_rules_are_wanted() -> None:
    """iptables-nft's warning that iptables-legacy tables are present: a DROP there is not undone by wgmesh's
    accept rules (review F); the plan that adds them says so."""
    live = converged(MESH, "aws", legacy_tables=frozenset({4}), forward_rules=False)
    plan = diff_node(MESH, MESH.node("aws"), live)
    assert plan.error is None and plan.steps
    assert any("iptables-legacy tables are present too" in n for n in plan.notes), plan.notes
    assert not any("legacy" in n for n in diff_node(MESH, MESH.node("aws"), converged(
        MESH, "aws", forward_rules=False)).notes)
