"""apply.py: the script builders (read as text, and the reconcile part run against stub `ip`/`wg`), and
`apply_plan` driven through a fake transport."""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from fakes import FakeTransport, read_output
from meshes import converged, four, fresh, pubkey

from wgmesh.commands import converge as apply
from wgmesh.commands.converge import apply_plan
from wgmesh.core.model import Mesh
from wgmesh.core.plan import Action, Outcome, build_plan, diff_node
from wgmesh.core.render import desired, syncconf_text
from wgmesh.core.state import LivePeer, LiveState
from wgmesh.remote import apply as remote_apply
from wgmesh.remote.apply import apply_script, cleanup_script, rollback_script
from wgmesh.remote.read import parse_read_output
from wgmesh.remote.transport import CommandResult, SshError

MESH = four()
NAMES = list(MESH.node_names)


def _with_node(mesh: Mesh, name: str, **kw: object) -> Mesh:
    nodes = tuple(dataclasses.replace(n, **kw) if n.name == name else n for n in mesh.nodes)
    return dataclasses.replace(mesh, nodes=nodes)


# ------------------------------------------------------------------------------------------- the fake itself


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("make", [converged, fresh])
def test_fake_read_output_parses_back_to_the_same_state(name: str, make) -> None:  # type: ignore[no-untyped-def]
    state = make(MESH, name)
    assert parse_read_output("wg0", read_output(state)) == state


# ------------------------------------------------------------------------------------------- syncconf input


SYNC_CASES = {
    **{n: (MESH, n) for n in NAMES},
    "custom port": (_with_node(MESH, "gcp", listen_port=51999), "gcp"),
    "mtu and hooks": (_with_node(MESH, "aws", mtu=1380, post_up=("echo hi",)), "aws"),
    "no peers": (dataclasses.replace(MESH, nodes=MESH.nodes[:1]), "aws"),
}


@pytest.mark.parametrize("case", SYNC_CASES)
def test_syncconf_text_always_sets_private_key_placeholder_and_listen_port(case: str) -> None:
    mesh, name = SYNC_CASES[case]
    cfg = desired(mesh, name)
    text = syncconf_text(cfg)
    lines = text.splitlines()
    assert lines[:3] == ["[Interface]", f"ListenPort = {cfg.listen_port}", "FwMark = off"]
    assert "PrivateKey" not in text  # the node adds its own, from its key file
    assert text.count("[Peer]") == len(cfg.peers)
    for p in cfg.peers:
        assert f"PublicKey = {p.public_key}" in lines
        assert "AllowedIPs = " + ", ".join(str(n) for n in p.allowed_ips) in lines
    # wg-quick fields are not wg syncconf input, and nothing may save or hook
    for field in ("Address", "MTU", "PostUp", "PostDown", "SaveConfig", "DNS", "Table"):
        assert not any(ln.startswith(field) for ln in lines), field


def test_syncconf_text_keepalive_only_where_wanted() -> None:
    text = syncconf_text(desired(MESH, "aliyun"))  # behind NAT: keeps its tunnels open
    assert text.count("PersistentKeepalive = 25") == 3
    assert "PersistentKeepalive" not in syncconf_text(desired(MESH, "aws"))


# ------------------------------------------------------------------------------------------- whole scripts


def _script(name: str, state: LiveState, mesh: Mesh = MESH, lock_timeout: int = 60) -> str:
    plan = diff_node(mesh, mesh.node(name), state)
    return apply_script(mesh, mesh.node(name), plan, lock_timeout=lock_timeout)


def test_update_script_feeds_syncconf_the_key_read_on_the_node() -> None:
    state = dataclasses.replace(converged(MESH, "aws"), listen_port=40000)
    script = _script("aws", state)
    assert "KEY=/etc/wireguard/wg0.key" in script
    assert 'wgm_key=$(cat "$KEY")' in script
    assert "wgm_sync_peers <<'__WGMESH_SYNC__'\n[Interface]\nListenPort = 51820\n" in script
    assert "\nwgm_interface_up\n" not in script
    # the file written to disk has no PrivateKey line and no SaveConfig
    conf = script.split("<<'__WGMESH_CONF__'\n", 1)[1].split("\n__WGMESH_CONF__\n", 1)[0]
    assert conf.startswith("# Managed by wgmesh")
    assert "PrivateKey" not in conf and "SaveConfig" not in conf
    assert "chmod 600" in script and 'mv -f "$TMP" "$CONF"' in script


def test_create_script_brings_the_interface_up_with_wg_quick() -> None:
    script = _script("aws", fresh(MESH, "aws"))
    calls = script.split("wgm_begin\n", 1)[1]
    assert "\nwgm_interface_up\nwgm_enable_unit\n" in calls
    assert "wgm_sync_peers" not in calls
    assert "wgm_expect_interface absent" in script


def test_decommission_script_keeps_the_key() -> None:
    mesh = _with_node(MESH, "gcp", decommission=True)
    script = _script("gcp", converged(MESH, "gcp"), mesh)
    assert 'wg-quick down "$IF"' in script and 'rm -f "$CONF"' in script
    assert "systemctl disable" in script
    assert not re.search(r"rm [^\n]*\$KEY", script)


def test_scripts_take_the_lock_with_the_timeout() -> None:
    script = _script("aws", fresh(MESH, "aws"), lock_timeout=7)
    assert "WGM_LOCK=/run/wireguard/wgmesh-wg0.lock\nWGM_LOCK_TIMEOUT=7\n" in script
    assert "\nwgm_lock\nwgm_expect_interface" in script  # before anything else happens
    for other in (rollback_script(MESH, lock_timeout=3), cleanup_script(MESH, lock_timeout=3)):
        assert "WGM_LOCK_TIMEOUT=3\n" in other and "\nwgm_lock\n" in other


def test_scripts_end_with_the_verify_read() -> None:
    script = _script("azure", fresh(MESH, "azure"))
    head, _, tail = script.partition(f"echo {apply.VERIFY_MARK}\n")
    assert head.rstrip().endswith("wgm_finish\nset +e")
    assert tail.startswith("# wgmesh read.sh")
    assert "wgm_mark end" in tail


# ------------------------------------------------------------------------------------------- reconcile steps

STEP = re.compile(r"^wgm_(add|delete)_(address|route) (\S+)$", re.M)


def _steps(script: str) -> set[tuple[str, str, str]]:
    return {(what, "add" if verb == "add" else "del", value) for verb, what, value in STEP.findall(script)}


def _route(state: LiveState, add: str = "", drop: str = "") -> LiveState:
    routes = set(state.routes)
    if add:
        routes.add(ipaddress.ip_network(add))
    if drop:
        routes.discard(ipaddress.ip_network(drop))
    return dataclasses.replace(state, routes=frozenset(routes))


def _addrs(state: LiveState, *addrs: str) -> LiveState:
    return dataclasses.replace(state, addresses=frozenset(ipaddress.ip_interface(a) for a in addrs))


AWS = converged(MESH, "aws")
RECONCILE_CASES = {
    "converged": (AWS, set()),
    "route missing": (_route(AWS, drop="192.168.30.0/24"), {("route", "add", "192.168.30.0/24")}),
    "stale route": (_route(AWS, add="10.9.0.0/16"), {("route", "del", "10.9.0.0/16")}),
    "both": (
        _route(_route(AWS, add="10.9.0.0/16"), drop="192.168.20.0/24"),
        {("route", "del", "10.9.0.0/16"), ("route", "add", "192.168.20.0/24")},
    ),
    "address moved": (
        _addrs(AWS, "10.0.0.99/24"),
        {("address", "add", "10.0.0.1/24"), ("address", "del", "10.0.0.99/24")},
    ),
    "extra address": (_addrs(AWS, "10.0.0.1/24", "fd00::1/64"), {("address", "del", "fd00::1/64")}),
}


@pytest.mark.parametrize("case", RECONCILE_CASES)
def test_update_script_runs_exactly_the_plans_reconcile_steps(case: str) -> None:
    state, expected = RECONCILE_CASES[case]
    plan = diff_node(MESH, MESH.node("aws"), state)
    script = apply_script(MESH, MESH.node("aws"), plan)
    assert _steps(script) == expected
    # the routes it touches are the route changes people reviewed
    reviewed = {("route", "add" if c.action is Action.CREATE else "del", c.name) for c in plan.changes
                if c.kind == "route"}
    assert {s for s in expected if s[0] == "route"} == reviewed


def test_update_script_mtu_link_keepalive_and_preshared_key() -> None:
    mesh = _with_node(MESH, "aws", mtu=1380)
    gcp_key = MESH.node("gcp").public_key
    assert gcp_key is not None
    state = converged(mesh, "aws", mtu=1420, link_up=False)
    peer = state.peers[gcp_key]
    state = dataclasses.replace(
        state,
        peers={**state.peers, gcp_key: dataclasses.replace(peer, persistent_keepalive=25, has_preshared_key=True)},
    )
    script = _script("aws", state, mesh).split("\nwgm_begin\n", 1)[1]
    assert "\nwgm_set_mtu 1380\n" in script
    assert "\nwgm_link_up\n" in script
    assert f"\nwgm_clear_keepalive {gcp_key}\n" in script
    assert f"\nwgm_clear_preshared_key {gcp_key}\n" in script
    plain = _script("aws", converged(MESH, "aws")).split("\nwgm_begin\n", 1)[1]
    assert "\nwgm_set_mtu" not in plain and "\nwgm_link_up" not in plain and "\nwgm_clear_" not in plain


# The reconcile part of an update script, run by /bin/sh against stub `ip` and `wg` that keep the state of a
# node in a JSON file. The harness stands in for the trap that `_write_conf` installs.
STUB_IP = textwrap.dedent(
    """
    import json, os, sys
    args = sys.argv[1:]
    path = os.environ["STUB_STATE"]
    st = json.load(open(path))
    with open(os.environ["STUB_LOG"], "a") as log:
        log.write(" ".join(args) + "\\n")
    fail = os.environ.get("STUB_FAIL")
    if fail and fail in " ".join(args):
        sys.exit("RTNETLINK answers: Operation not permitted")
    family = args.pop(0) if args[0] in ("-4", "-6") else "-4"  # like ip: `route show` is IPv4 unless -6
    if args[0] == "-o":
        what = args[1]
        if what == "address":
            for a in st["addresses"]:
                print(f"4: wg0    inet {a} scope global wg0")
        elif what == "route":
            dst = args[args.index("exact") + 1]
            if dst in st["routes"] and family == ("-6" if ":" in dst else "-4"):
                print(f"{dst} scope link")
        elif what == "link":
            print(f"4: wg0: <POINTOPOINT,NOARP,UP,LOWER_UP> mtu {st['mtu']} qdisc noqueue state UNKNOWN")
        sys.exit(0)
    if args[0] in ("address", "route") and args[1] in ("add", "del"):
        items = st["addresses" if args[0] == "address" else "routes"]
        if args[1] == "add":
            if args[2] in items:
                sys.exit("RTNETLINK answers: File exists")
            items.append(args[2])
        else:
            if args[2] not in items:
                sys.exit("RTNETLINK answers: No such process")
            items.remove(args[2])
    elif args[:3] == ["link", "set", "mtu"]:
        st["mtu"] = int(args[3])
    json.dump(st, open(path, "w"))
    """
)
STUB_WG = textwrap.dedent(
    """
    import os, sys
    with open(os.environ["STUB_LOG"], "a") as log:
        log.write("wg " + " ".join(sys.argv[1:]) + "\\n")
    if sys.argv[1] == "syncconf" and sys.argv[3] == "/dev/stdin":
        open(os.environ["STUB_SYNC"], "w").write(sys.stdin.read())
    """
)
PLACEHOLDER_KEY = "A" * 43 + "="  # 32 zero bytes: a well-formed key that is nobody's secret


def _run_update(tmp: Path, cfg_mesh: Mesh, planned: LiveState, node_now: dict, fail: str = "") -> dict:
    """The steps of the plan made from `planned`, run against a node that is `node_now` by then."""
    plan = diff_node(cfg_mesh, cfg_mesh.node("aws"), planned)
    calls = "\n".join(remote_apply.step_call(s) for s in plan.steps)
    return _run_script(tmp, node_now, f"{remote_apply._functions()}\nwgm_begin\n{calls}\nwgm_finish\n", fail)


def _run_script(tmp: Path, node_now: dict | None, body: str, fail: str = "") -> dict:
    """Run a script against stub `ip` and `wg` that keep the node's addresses, routes and MTU in a file
    (node_now, or what an earlier run left there when None)."""
    stubs = tmp / "bin"
    stubs.mkdir(exist_ok=True)
    for name, code in (("ip", STUB_IP), ("wg", STUB_WG)):
        path = stubs / name
        path.write_text(f"#!{sys.executable}\n{code}")
        path.chmod(0o755)
    if node_now is not None:
        (tmp / "state.json").write_text(json.dumps(node_now))
    (tmp / "wg0.key").write_text(PLACEHOLDER_KEY + "\n")
    (tmp / "log.txt").unlink(missing_ok=True)
    paths = {k: tmp / v for k, v in (("KEY", "wg0.key"), ("CONF", "wg0.conf"), ("PREV", "wg0.conf.prev"),
                                       ("TMP", ".wg0.conf.tmp"), ("SNAP", "snapshot"), ("UNDO", "undo"),
                                       ("LOG", "log"))}
    script = "set -eu\nIF=wg0\n" + "".join(f"{k}={v}\n" for k, v in paths.items()) + body
    env = {
        "PATH": f"{stubs}:{os.environ['PATH']}",
        "STUB_STATE": str(tmp / "state.json"),
        "STUB_LOG": str(tmp / "log.txt"),
        "STUB_SYNC": str(tmp / "sync.txt"),
        "STUB_FAIL": fail,
    }
    r = subprocess.run(["/bin/sh", "-s"], input=script, capture_output=True, text=True, env=env, timeout=60)
    log = (tmp / "log.txt").read_text().splitlines() if (tmp / "log.txt").exists() else []
    return {
        "rc": r.returncode,
        "stderr": r.stderr,
        "state": json.loads((tmp / "state.json").read_text()),
        "changes": [ln for ln in log if re.match(r"(address|route) (add|del) |link set mtu", ln)],
        "sync": (tmp / "sync.txt").read_text() if (tmp / "sync.txt").exists() else "",
    }


def _node(state: LiveState) -> dict:
    return {
        "addresses": sorted(str(a) for a in state.addresses),
        "routes": sorted(str(r) for r in state.routes),
        "mtu": state.mtu,
    }


MTU_MESH = _with_node(MESH, "aws", mtu=1380)


def test_reconcile_run_converges_the_node(tmp_path: Path) -> None:
    planned = _addrs(_route(_route(converged(MTU_MESH, "aws"), add="10.9.0.0/16"), drop="192.168.30.0/24"),
                     "10.0.0.99/24")
    got = _run_update(tmp_path, MTU_MESH, planned, _node(planned))
    assert got["rc"] == 0, got["stderr"]
    want = converged(MTU_MESH, "aws", mtu=1380)
    assert sorted(got["state"]["routes"]) == _node(want)["routes"]
    assert got["state"]["addresses"] == ["10.0.0.1/24"]
    assert got["state"]["mtu"] == 1380
    assert f"PrivateKey = {PLACEHOLDER_KEY}\nListenPort = 51820\n" in got["sync"]


def test_reconcile_run_after_another_apply_did_it_changes_nothing(tmp_path: Path) -> None:
    """A second apply that waited on the lock: its plan is older than the node, which is converged now."""
    planned = _route(_route(converged(MTU_MESH, "aws", mtu=1420), add="10.9.0.0/16"), drop="192.168.30.0/24")
    now = _node(converged(MTU_MESH, "aws", mtu=1380))
    got = _run_update(tmp_path, MTU_MESH, planned, now)
    assert got["rc"] == 0, got["stderr"]
    assert got["changes"] == []
    assert got["state"] == now


def test_reconcile_skips_a_step_another_apply_did(tmp_path: Path) -> None:
    planned = _route(_route(converged(MTU_MESH, "aws", mtu=1380), drop="192.168.20.0/24"), drop="192.168.30.0/24")
    now = _node(planned)
    now["routes"] = sorted([*now["routes"], "192.168.30.0/24"])  # added by someone else since the plan
    got = _run_update(tmp_path, MTU_MESH, planned, now, fail="route add 192.168.30.0/24")
    assert got["rc"] == 0, got["stderr"]  # the add of 192.168.30.0/24 never ran
    assert got["changes"] == ["route add 192.168.20.0/24 dev wg0"]


def test_reconcile_failure_undoes_only_what_this_run_did(tmp_path: Path) -> None:
    planned = _route(_route(converged(MTU_MESH, "aws", mtu=1420), drop="192.168.20.0/24"), drop="192.168.30.0/24")
    now = _node(planned)
    got = _run_update(tmp_path, MTU_MESH, planned, now, fail="route add 192.168.30.0/24")
    assert got["rc"] != 0 and "rolled back" in got["stderr"]
    assert got["state"] == now
    assert got["changes"] == [
        "link set mtu 1380 dev wg0",
        "route add 192.168.20.0/24 dev wg0",
        "route add 192.168.30.0/24 dev wg0",  # fails
        "route del 192.168.20.0/24 dev wg0",  # undone, newest first
        "link set mtu 1420 dev wg0",
    ]


# ------------------------------------------------------------------------------------------- apply_plan


def _plans(states: dict[str, LiveState]):  # type: ignore[no-untyped-def]
    return list(build_plan(MESH, states).nodes)


def _each_missing_peer() -> tuple[dict[str, LiveState], dict[str, LiveState]]:
    states, after = {}, {}
    for n in NAMES:
        full = converged(MESH, n)
        first = next(iter(full.peers))
        states[n] = dataclasses.replace(full, peers={k: v for k, v in full.peers.items() if k != first})
        after[n] = full
    return states, after


def _connected(fake: FakeTransport) -> FakeTransport:
    fake.connect(MESH.nodes)
    return fake


def test_apply_plan_converges_every_node_and_cleans_up() -> None:
    states, after = _each_missing_peer()
    fake = _connected(FakeTransport(dict(states), after=after))
    seen: list[str] = []
    results = apply_plan(MESH, fake, _plans(states), states, parallelism=4, on_result=lambda r: seen.append(r.node))
    assert [(r.node, r.outcome) for r in results] == [(n, Outcome.CHANGED) for n in NAMES]
    assert all(r.message == "1 added, 0 changed, 0 destroyed" for r in results)
    assert sorted(seen) == sorted(NAMES)
    for n in NAMES:
        assert fake.kinds(n) == ["apply", "cleanup"]


def test_one_node_failing_does_not_stop_the_others() -> None:
    states, after = _each_missing_peer()
    fake = _connected(FakeTransport(dict(states), after=after))
    fake.answers[("aws", "apply")] = [SshError("connection lost: EOF")]
    fake.answers[("gcp", "apply")] = [CommandResult(1, "", "RTNETLINK answers: Operation not permitted\n")]
    fake.answers[("azure", "apply")] = [CommandResult(remote_apply.LOCK_EXIT, "", "another wgmesh apply holds X\n")]
    results = {r.node: r for r in apply_plan(MESH, fake, _plans(states), states, parallelism=1)}
    assert results["aws"].outcome is Outcome.FAILED and "connection lost" in results["aws"].message
    assert results["gcp"].outcome is Outcome.FAILED and "Operation not permitted" in results["gcp"].message
    assert results["azure"].outcome is Outcome.FAILED and results["azure"].message == "another wgmesh apply holds X"
    assert results["aliyun"].outcome is Outcome.CHANGED
    assert sorted(n for n, k, _ in fake.scripts if k == "apply") == sorted(NAMES)
    assert fake.kinds("gcp") == ["apply"], "a failed script rolled itself back: no cleanup, no second rollback"


def test_verification_failure_runs_the_rollback() -> None:
    states, after = _each_missing_peer()
    after["gcp"] = states["gcp"]  # the node did not take the change
    fake = _connected(FakeTransport(dict(states), after=after))
    results = {r.node: r for r in apply_plan(MESH, fake, _plans(states), states, parallelism=2)}
    assert results["gcp"].outcome is Outcome.FAILED
    assert "verification failed (+ peer" in results["gcp"].message
    assert "rolled back to the previous config" in results["gcp"].message
    assert fake.kinds("gcp") == ["apply", "rollback"]
    rollback = next(s for n, k, s in fake.scripts if n == "gcp" and k == "rollback")
    assert rollback == rollback_script(MESH)
    assert all(results[n].outcome is Outcome.CHANGED for n in NAMES if n != "gcp")


def test_rollback_failing_is_reported() -> None:
    states, after = _each_missing_peer()
    after["aws"] = states["aws"]
    fake = _connected(FakeTransport(dict(states), after=after))
    fake.answers[("aws", "rollback")] = [SshError("connection lost")]
    (result,) = [r for r in apply_plan(MESH, fake, _plans(states), states, parallelism=2) if r.node == "aws"]
    assert result.outcome is Outcome.FAILED and "rollback failed too: connection lost" in result.message


def test_unreadable_verify_output_rolls_back() -> None:
    states, after = _each_missing_peer()
    fake = _connected(FakeTransport(dict(states), after=after))
    fake.answers[("azure", "apply")] = [CommandResult(0, f"{apply.VERIFY_MARK}\ngarbage\n", "")]
    results = {r.node: r for r in apply_plan(MESH, fake, _plans(states), states, parallelism=2)}
    assert results["azure"].outcome is Outcome.FAILED and "cannot read the node back" in results["azure"].message
    assert fake.kinds("azure") == ["apply", "rollback"]


def test_nodes_without_changes_or_with_errors_run_nothing() -> None:
    states: dict[str, LiveState | str] = {n: converged(MESH, n) for n in NAMES}
    states["gcp"] = "cannot connect to root@192.0.2.3:22: Connection refused"
    wrong_key = dataclasses.replace(converged(MESH, "aws"), key_file_public_key=pubkey(99))
    states["aws"] = wrong_key
    plan = build_plan(MESH, states)
    fake = _connected(FakeTransport({}))
    live = {n: s for n, s in states.items() if isinstance(s, LiveState)}
    results = {r.node: r for r in apply_plan(MESH, fake, list(plan.nodes), live, parallelism=4)}
    assert results["gcp"].outcome is Outcome.FAILED and "Connection refused" in results["gcp"].message
    assert results["aws"].outcome is Outcome.FAILED and "apply refuses this node" in results["aws"].message
    assert results["azure"].outcome is Outcome.UNCHANGED
    assert fake.scripts == []


def test_live_peer_with_unknown_key_is_removed_by_syncconf_not_by_hand() -> None:
    """A peer that is in no mesh.yaml: syncconf drops it (it is not in the input); no `wg set ... remove`."""
    state = converged(MESH, "aws")
    stranger = LivePeer(pubkey(77), None, frozenset({ipaddress.ip_network("10.0.0.77/32")}), 0, 0, 0, 0, False)
    state = dataclasses.replace(state, peers={**state.peers, stranger.public_key: stranger})
    script = _script("aws", state)
    assert pubkey(77) not in script


@pytest.mark.parametrize("state", ["fresh", "drifted"])
def test_whole_scripts_are_valid_sh(state: str) -> None:
    live = fresh(MESH, "aws") if state == "fresh" else _route(converged(MESH, "aws"), add="10.9.0.0/16")
    plan = diff_node(MESH, MESH.node("aws"), live)
    for script in (apply_script(MESH, MESH.node("aws"), plan), rollback_script(MESH), cleanup_script(MESH)):
        r = subprocess.run(["/bin/sh", "-n"], input=script, capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr


def test_saved_undo_rolls_back_this_runs_steps(tmp_path: Path) -> None:
    """What a successful run saves in $UNDO undoes its reconcile steps (the controller's rollback after a
    failed verification sources it)."""
    planned = _route(converged(MESH, "aws"), drop="192.168.30.0/24")
    now = _node(planned)
    got = _run_update(tmp_path, MESH, planned, now)
    assert got["rc"] == 0, got["stderr"]
    assert "192.168.30.0/24" in got["state"]["routes"]
    rolled = _run_script(tmp_path, None, f"SNAP=/nonexistent\n. {tmp_path / 'undo'}\n")
    assert rolled["rc"] == 0, rolled["stderr"]
    assert rolled["state"] == now
    assert not (tmp_path / "wg0.conf").exists()  # the run wrote the first config: undone, it is gone again


def test_mtu_rollback_after_the_run_restores_the_old_mtu(tmp_path: Path) -> None:
    """F5: the undo log of a run that changed the MTU holds the old value itself, so a rollback in a later
    process (the controller's, after a failed verification) restores it instead of aborting."""
    planned = converged(MTU_MESH, "aws", mtu=1420)
    got = _run_update(tmp_path, MTU_MESH, planned, _node(planned))
    assert got["rc"] == 0, got["stderr"] and got["state"]["mtu"] == 1380
    rolled = _run_script(tmp_path, None, f"SNAP=/nonexistent\n. {tmp_path / 'undo'}\n")
    assert rolled["rc"] == 0, rolled["stderr"]
    assert rolled["state"]["mtu"] == 1420


def test_reconcile_removes_and_adds_ipv6_routes(tmp_path: Path) -> None:
    """`ip route show` lists IPv4 routes only: an IPv6 route must be looked up with -6 or it is never removed."""
    planned = _route(_route(converged(MESH, "aws"), add="fd00:99::/64"), drop="192.168.30.0/24")
    now = _node(planned)
    got = _run_update(tmp_path, MESH, planned, now)
    assert got["rc"] == 0, got["stderr"]
    assert "fd00:99::/64" not in got["state"]["routes"]
    assert "192.168.30.0/24" in got["state"]["routes"]
