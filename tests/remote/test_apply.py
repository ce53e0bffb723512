"""remote/apply.py: the apply script as text (the plan's steps become calls of scripts/apply.sh functions), and its
reconcile steps run on a stub node (tests/remote/stubs.py: a stateful `ip` and a `wg`) under dash and busybox sh:
each step checks whether the node still needs it, a failing step undoes only what this run did, and the record a
run leaves lets the controller's rollback (scripts/rollback.sh) undo it in another process (F5: the old MTU)."""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import shlex
import stat
import subprocess
from pathlib import Path

import pytest
from fakes import script_values
from meshes import converged, four, fresh, pubkey
from remote.stubs import (
    SHELLS,
    Stubs,
    answering,
    calls,
    fake_wg,
    ip_calls,
    ip_state,
    iptables_state,
    stateful_ip,
    stateful_iptables,
    wg_synced,
)

from wgmesh.core.changes import Action
from wgmesh.core.model import KEY_DIR, RUN_DIR, Mesh, Subnet
from wgmesh.core.plan import diff_node
from wgmesh.core.render import desired, syncconf_text
from wgmesh.core.state import LivePeer, LiveState
from wgmesh.remote import apply as remote_apply
from wgmesh.remote import shell
from wgmesh.remote.apply import apply_script, confirm_script, parse_outcome, rollback_script

MESH = four()
NAMES = list(MESH.node_names)


def _with_node(mesh: Mesh, name: str, **kw: object) -> Mesh:
    nodes = tuple(dataclasses.replace(n, **kw) if n.name == name else n for n in mesh.nodes)
    return dataclasses.replace(mesh, nodes=nodes)


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
    """The whole apply script (both parts: what is sent before the controller's answer, and after it)."""
    plan = diff_node(mesh, mesh.node(name), state)
    return str(apply_script(mesh, mesh.node(name), plan, lock_timeout=lock_timeout))


def test_update_script_feeds_syncconf_the_key_read_on_the_node() -> None:
    state = dataclasses.replace(converged(MESH, "aws"), listen_port=40000)
    script = _script("aws", state)
    assert "KEY=/etc/wireguard/wg0.key" in script
    assert "wgm_key=$(wgm_read_key)" in script
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
    assert "\nwgm_interface_up\n" in calls and "\nwgm_enable_unit\n" in calls
    assert calls.index("\nwgm_interface_up\n") < calls.index("\nwgm_enable_unit\n")
    assert "wgm_sync_peers" not in calls
    assert "wgm_expect_interface absent" in script


def test_decommission_script_keeps_the_key() -> None:
    mesh = _with_node(MESH, "gcp", decommission=True)
    script = _script("gcp", converged(MESH, "gcp"), mesh)
    assert 'wg-quick down "$IF"' in script and 'rm -f "$CONF"' in script
    assert "systemctl disable" in script
    assert not re.search(r"rm [^\n]*\$KEY", script)


def test_scripts_take_the_lock_with_the_timeout() -> None:
    plan = diff_node(MESH, MESH.node("aws"), fresh(MESH, "aws"))
    script = apply_script(MESH, MESH.node("aws"), plan, lock_timeout=7)
    assert "WGM_LOCK=/run/wireguard/wgmesh-wg0.lock\n" in script.first and "WGM_LOCK_TIMEOUT=7\n" in script.first
    assert "\nwgm_lock\n" in script.first  # before the state is read, and before anything changes
    assert script.first.index("\nwgm_lock\n") < script.first.index("# wgmesh read.sh")
    assert "\nwgm_lock\n" not in script.rest  # held from the first part on
    # how rollback and confirm wait for the lock is tests/remote/test_apply_confirm.py's: here, that they do
    for other in (rollback_script(MESH, "r1", lock_timeout=3), confirm_script(MESH, "r1", lock_timeout=3)):
        assert "WGM_LOCK=/run/wireguard/wgmesh-wg0.lock\n" in other and "WGM_LOCK_TIMEOUT=3\n" in other


def test_scripts_end_with_the_verify_read() -> None:
    plan = diff_node(MESH, MESH.node("azure"), fresh(MESH, "azure"))
    script = apply_script(MESH, MESH.node("azure"), plan).rest
    head, _, tail = script.partition(f"echo {remote_apply.VERIFY_MARK}\n")
    assert head.rstrip().endswith("wgm_finish\n}\nwgm_arrived\nwgm_steps\nset +e")
    assert tail.startswith("# wgmesh read.sh")
    assert "wgm_mark end" in tail


def test_live_peer_with_unknown_key_is_removed_by_syncconf_not_by_hand() -> None:
    """A peer that is in no mesh.yaml: syncconf drops it (it is not in the input); no `wg set ... remove`."""
    state = converged(MESH, "aws")
    stranger = LivePeer(pubkey(77), None, frozenset({ipaddress.ip_network("10.0.0.77/32")}), 0, 0, 0, 0, False)
    state = dataclasses.replace(state, peers={**state.peers, stranger.public_key: stranger})
    script = _script("aws", state)
    assert pubkey(77) not in script


@pytest.mark.parametrize("shell_name", SHELLS)
@pytest.mark.parametrize("state", ["fresh", "drifted"])
def test_whole_scripts_are_valid_sh(state: str, shell_name: str, tmp_path: Path) -> None:
    live = fresh(MESH, "aws") if state == "fresh" else _route(converged(MESH, "aws"), add="10.9.0.0/16")
    plan = diff_node(MESH, MESH.node("aws"), live)
    argv = [*Stubs(tmp_path, shell_name).argv[:-1], "-n"]  # `sh -n`: parse, run nothing
    apply = apply_script(MESH, MESH.node("aws"), plan)
    for script in (apply.first + "go\n" + apply.rest, rollback_script(MESH, "r1"), confirm_script(MESH, "r1")):
        r = subprocess.run(argv, input=script, capture_output=True, text=True, timeout=30, check=False)
        assert r.returncode == 0, r.stderr


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
    script = apply_script(MESH, MESH.node("aws"), plan).rest
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


# ------------------------------------------------------------------------------------------- reconcile, run
# The steps of a plan, run on a stub node as the apply script runs them (under the lock, between wgm_begin and
# wgm_finish, after lib.sh and apply.sh) with the values apply_script gives them, their node paths moved into
# the node's folder. wgm_finish arms the run's revert timer (scripts/revert.sh, detached): the controller then
# confirms the run (confirm_script) or rolls it back (rollback_script), each run on the node as it is.

PLACEHOLDER_KEY = "A" * 43 + "="  # 32 zero bytes: a well-formed key that is nobody's secret
MTU_MESH = _with_node(MESH, "aws", mtu=1380)
RUN = "t1"
CONFIRM_TIMEOUT = 30  # the revert timer's wait: every test confirms or rolls back long before
_SAFE_PATH = re.compile(r"[A-Za-z0-9_./-]+")


def _on_node(node: Stubs, values: dict[str, str]) -> dict[str, str | int]:
    """The values with /etc/wireguard and /run/wireguard moved into the node's folder."""
    etc, run = node.root / "etc-wireguard", node.root / "run-wireguard"
    assert _SAFE_PATH.fullmatch(str(node.root)), node.root
    for folder in (etc, run):
        folder.mkdir(mode=0o700, exist_ok=True)
    return {k: v.replace(KEY_DIR, str(etc)).replace(RUN_DIR, str(run)) for k, v in values.items()}


def _node(state: LiveState) -> dict[str, object]:
    """What the stateful `ip` knows of a live state."""
    return {
        "addresses": sorted(str(a) for a in state.addresses),
        "routes": sorted(str(r) for r in state.routes),
        "mtu": state.mtu,
    }


def _changes(node: Stubs) -> list[str]:
    return [ln for ln in ip_calls(node) if re.match(r"(address|route) (add|del) |link set mtu", ln)]


def _run_update(node: Stubs, mesh: Mesh, planned: LiveState, now: dict[str, object],
                fail: str = "", then: str = "confirm", key_text: str = PLACEHOLDER_KEY + "\n",
                conf_text: str | None = None) -> dict[str, object]:
    """The steps of the plan made from `planned` (for aws), run on a node that is `now` by then; `then` the
    controller confirms the run ("confirm") or leaves it pending ("")."""
    plan = diff_node(mesh, mesh.node("aws"), planned)
    script = apply_script(mesh, mesh.node("aws"), plan, lock_timeout=5, confirm_timeout=CONFIRM_TIMEOUT, run=RUN)
    values = _on_node(node, script_values(script.first))
    node.host("flock", "setsid")
    stateful_ip(node, now)
    fake_wg(node)
    Path(str(values["KEY"])).write_bytes(key_text.encode())
    if conf_text is not None:
        Path(str(values["CONF"])).write_text(conf_text)
    calls = "\n".join(remote_apply.step_call(s, mesh.interface) for s in plan.steps)
    got = _result(node, shell.script("apply", **values) + f"wgm_lock\nwgm_begin\n{calls}\nwgm_finish\n", fail)
    if then == "confirm" and got["rc"] == 0:
        confirmed = _controller(node, mesh, confirm_script)
        assert confirmed["outcome"] == "confirmed", confirmed["stderr"]
        got["state"] = confirmed["state"]
    return got


def _controller(node: Stubs, mesh: Mesh, make) -> dict[str, object]:  # type: ignore[no-untyped-def]
    """The controller's confirm_script or rollback_script for the run, run on the node."""
    values = _on_node(node, script_values(make(mesh, RUN, lock_timeout=5)))
    name = make.__name__.removesuffix("_script")
    got = _result(node, shell.script(name, **values))
    got["outcome"] = parse_outcome(str(got["stdout"]))
    return got


def _result(node: Stubs, script: str, fail: str = "") -> dict[str, object]:
    (node.root / "ip-calls.log").unlink(missing_ok=True)
    r = node.run(script, env={"FAKE_IP_FAIL": fail})
    return {"rc": r.exit_status, "stdout": r.stdout, "stderr": r.stderr, "state": ip_state(node),
            "changes": _changes(node), "sync": wg_synced(node)}


def _leftovers(node: Stubs) -> list[str]:
    """The run's files still on the node (none once it is confirmed, rolled back or reverted)."""
    return sorted(p.name for p in (node.root / "run-wireguard").iterdir() if f".{RUN}." in p.name)


def test_reconcile_run_converges_the_node(node: Stubs) -> None:
    planned = _addrs(_route(_route(converged(MTU_MESH, "aws"), add="10.9.0.0/16"), drop="192.168.30.0/24"),
                     "10.0.0.99/24")
    got = _run_update(node, MTU_MESH, planned, _node(planned))
    assert got["rc"] == 0, got["stderr"]
    want = converged(MTU_MESH, "aws", mtu=1380)
    assert sorted(got["state"]["routes"]) == _node(want)["routes"]  # type: ignore[index]
    assert got["state"]["addresses"] == ["10.0.0.1/24"]  # type: ignore[index]
    assert got["state"]["mtu"] == 1380  # type: ignore[index]
    assert f"PrivateKey = {PLACEHOLDER_KEY}\nListenPort = 51820\n" in got["sync"]  # type: ignore[operator]


@pytest.mark.parametrize("key_text", [PLACEHOLDER_KEY + "\r\n", PLACEHOLDER_KEY + " \n", PLACEHOLDER_KEY,
                                      PLACEHOLDER_KEY + "\f\n", "\v" + PLACEHOLDER_KEY + "\n"])
def test_a_key_file_with_crlf_or_blanks_is_read_as_wg_reads_it(node: Stubs, key_text: str) -> None:
    """Review E: a key file saved with CRLF (or a trailing blank) passes plan's check (`wg pubkey` reads it) and
    wg-quick at boot, but every apply failed with "cannot read the private key ... was not restored"."""
    planned = _route(converged(MESH, "aws"), add="10.9.0.0/16")
    got = _run_update(node, MESH, planned, _node(planned), key_text=key_text)
    assert got["rc"] == 0, got["stderr"]
    assert f"PrivateKey = {PLACEHOLDER_KEY}\nListenPort = 51820\n" in got["sync"]  # type: ignore[operator]


BAD_KEY = "K3yIsA1m0stR1ghtButTheLastCharIsOffByAB1tQB="  # 44 characters that wg refuses: no one's key


def test_a_key_file_wg_refuses_is_named_never_quoted(node: Stubs) -> None:
    """wg quotes a key it refuses (`Key is not the correct length or format: `KEY'`): a key file that went bad after
    the plan (44 characters, one of them wrong) had `wg syncconf` send nearly the whole private key to the
    controller, its output and the CI log. Now the key is checked first (`wg pubkey`, which quotes nothing) and
    nothing of it leaves the node."""
    planned = _route(converged(MESH, "aws"), add="10.9.0.0/16")
    got = _run_update(node, MESH, planned, _node(planned), key_text=BAD_KEY + "\n")
    assert got["rc"] != 0 and "steps were undone" in got["stderr"]  # type: ignore[operator]
    assert "wg0.key does not hold a WireGuard private key any more" in got["stderr"]  # type: ignore[operator]
    assert BAD_KEY[:20] not in str(got["stderr"]) + str(got["stdout"])
    assert got["sync"] == ""  # wg never got it
    assert got["state"] == _node(planned)


def test_a_restored_config_key_wg_refuses_is_not_run(node: Stubs) -> None:
    """The rollback's key comes from the restored hand-made config when it has one: one that wg refuses is not fed
    to it (wg would quote it back to the controller); the key file's key is restored instead."""
    planned = _route(converged(MTU_MESH, "aws", mtu=1420), drop="192.168.30.0/24")
    conf = f"[Interface]\nPrivateKey = {BAD_KEY}\n"
    got = _run_update(node, MTU_MESH, planned, _node(planned), fail="route add 192.168.30.0/24", conf_text=conf)
    assert got["rc"] != 0 and "steps were undone" in got["stderr"]  # type: ignore[operator]
    assert BAD_KEY[:20] not in str(got["stderr"]) + str(got["stdout"])
    assert f"PrivateKey = {PLACEHOLDER_KEY}\n" in got["sync"]  # type: ignore[operator]


def test_wg_messages_leave_the_node_without_key_material(node: Stubs) -> None:
    """wgm_scrub, for wg-quick's output (its PostUp lines load the key and the kept preshared keys with `wg set`,
    which quotes a key it refuses): the quoted value and any run of 40+ base64 characters are blanked; the rest of
    the message stays as it was."""
    lines = [f"Key is not the correct length or format: `{BAD_KEY[:30]}'", f"Line unrecognized: `Foo={BAD_KEY}'",
             "[#] wg set wg0 private-key /etc/wireguard/wg0.key", "RTNETLINK answers: File exists",
             # (review R3: a long path is no key)
             "ls: cannot access '/usr/local/lib/wireguard/hooks/setuproutes/abcdefgh': No such file or directory"]
    text = "".join(f"{line}\n" for line in lines)
    r = node.run(shell.script("apply", IF="wg0") + f"printf %s {shlex.quote(text)} | wgm_scrub\n")
    assert r.exit_status == 0, r.stderr
    assert r.stdout.splitlines() == ["Key is not the correct length or format: `(redacted)'",
                                     "Line unrecognized: `Foo=(redacted)'", *lines[2:]]


def test_interface_up_refuses_a_key_file_wg_refuses_before_wg_quick(node: Stubs) -> None:
    """wg-quick's PostUp would load the key with `wg set`, quoting it in its error: the key file is checked first."""
    fake_wg(node)
    node.stub("wg-quick", 'echo "wg-quick $*" >> "$0.log"\n')
    values = _on_node(node, {"IF": "wg0", "KEY": f"{KEY_DIR}/wg0.key", "LOG": f"{RUN_DIR}/wgmesh-wg0.log"})
    Path(str(values["KEY"])).write_text(BAD_KEY + "\n")
    r = node.run(shell.script("apply", **values) + "wgm_interface_up\n")
    assert r.exit_status == 1
    assert "wg0.key does not hold a WireGuard private key any more" in r.stderr
    assert BAD_KEY[:20] not in r.stderr + r.stdout
    assert not (node.bin / "wg-quick.log").exists()


def test_a_hand_made_config_is_kept_unreadable_and_restored_with_its_mode(node: Stubs) -> None:
    """Review P: `cp -p IF.conf $PREV` kept a hand-made config's mode 644 in /run/wireguard (0755, as wireguard-go
    makes it), so any user could read its PrivateKey until the run was confirmed, or for good after a killed run.
    $PREV is mode 600 now; a rollback gives the restored config its own mode back."""
    planned = _route(converged(MTU_MESH, "aws", mtu=1420), drop="192.168.30.0/24")
    conf = f"[Interface]\nPrivateKey = {RUNNING_KEY}\n"
    plan = diff_node(MTU_MESH, MTU_MESH.node("aws"), planned)
    script = apply_script(MTU_MESH, MTU_MESH.node("aws"), plan, lock_timeout=5, confirm_timeout=CONFIRM_TIMEOUT,
                          run=RUN)
    values = _on_node(node, script_values(script.first))
    node.host("flock", "setsid")
    stateful_ip(node, _node(planned))
    fake_wg(node)
    Path(str(values["KEY"])).write_text(PLACEHOLDER_KEY + "\n")
    config = Path(str(values["CONF"]))
    config.write_text(conf)
    config.chmod(0o644)
    r = node.run(shell.script("apply", **values) + 'wgm_lock\nwgm_begin\nstat -c %a "$PREV"\nwgm_forget\n')
    assert (r.exit_status, r.stdout) == (0, "600\n"), r.stderr
    # review R1: IF.conf a link: its target's mode is given back, not the link's own 777
    target = node.root / "elsewhere.conf"
    target.write_text(conf)
    target.chmod(0o640)
    config.unlink()
    config.symlink_to(target)
    r = node.run(shell.script("apply", **values) + 'wgm_lock\nwgm_begin\nprintf "%s\\n" "$wgm_conf_undo"\n'
                 "wgm_forget\n")
    assert r.exit_status == 0 and r.stdout.endswith('chmod 640 "$CONF"\n'), (r.stdout, r.stderr)
    config.unlink()
    config.write_text(conf)
    config.chmod(0o644)
    got = _run_update(node, MTU_MESH, planned, _node(planned), fail="route add 192.168.30.0/24", conf_text=conf)
    assert got["rc"] != 0 and "steps were undone" in got["stderr"]  # type: ignore[operator]
    assert config.read_text() == conf
    assert stat.S_IMODE(config.stat().st_mode) == 0o644  # (_run_update wrote it anew, as the line above did)


def test_a_failing_hooks_output_leaves_the_node_scrubbed(node: Stubs) -> None:
    """Review P: a user's hook that fails on a key (wg quotes it) had the key in the node's error."""
    plan = diff_node(MESH, MESH.node("aws"), converged(MESH, "aws"))
    script = apply_script(MESH, MESH.node("aws"), plan, lock_timeout=5, confirm_timeout=CONFIRM_TIMEOUT, run=RUN)
    values = _on_node(node, script_values(script.first))
    hook = f"echo \"Key is not the correct length or format: \\`{BAD_KEY}'\" >&2; false"
    r = node.run(shell.script("apply", **values) + f"wgm_hook PostUp {shlex.quote(hook)}\n")
    assert r.exit_status == 1
    assert r.stderr == f"the PostUp hook failed: {hook}: Key is not the correct length or format: `(redacted)'\n"


def test_apply_changes_nothing_where_another_user_may_write_the_config_folder(node: Stubs) -> None:
    """Review F: the config was written through a link planted at its fixed temporary name, as root."""
    etc = node.root / "etc-wireguard"
    etc.mkdir(mode=0o700)
    etc.chmod(0o777)
    planned = _route(converged(MESH, "aws"), add="10.9.0.0/16")
    got = _run_update(node, MESH, planned, _node(planned))
    assert got["rc"] == 3
    assert f"{etc} must be root's and writable by root only" in str(got["stderr"])
    assert got["changes"] == [] and not (etc / "wg0.conf").exists()


def test_reconcile_run_after_another_apply_did_it_changes_nothing(node: Stubs) -> None:
    """A second apply that waited on the lock: its plan is older than the node, which is converged now."""
    planned = _route(_route(converged(MTU_MESH, "aws", mtu=1420), add="10.9.0.0/16"), drop="192.168.30.0/24")
    now = _node(converged(MTU_MESH, "aws", mtu=1380))
    got = _run_update(node, MTU_MESH, planned, now)
    assert got["rc"] == 0, got["stderr"]
    assert got["changes"] == []
    assert got["state"] == now


def test_reconcile_skips_a_step_another_apply_did(node: Stubs) -> None:
    planned = _route(_route(converged(MTU_MESH, "aws", mtu=1380), drop="192.168.20.0/24"), drop="192.168.30.0/24")
    now = _node(planned)
    now["routes"] = sorted([*now["routes"], "192.168.30.0/24"])  # type: ignore[misc]  # added by someone since
    got = _run_update(node, MTU_MESH, planned, now, fail="route add 192.168.30.0/24")
    assert got["rc"] == 0, got["stderr"]  # the add of 192.168.30.0/24 never ran
    assert got["changes"] == ["route add 192.168.20.0/24 dev wg0"]


def test_reconcile_failure_undoes_only_what_this_run_did(node: Stubs) -> None:
    planned = _route(_route(converged(MTU_MESH, "aws", mtu=1420), drop="192.168.20.0/24"), drop="192.168.30.0/24")
    now = _node(planned)
    got = _run_update(node, MTU_MESH, planned, now, fail="route add 192.168.30.0/24")
    assert got["rc"] != 0 and "steps were undone" in got["stderr"]  # type: ignore[operator]
    assert got["state"] == now
    assert got["changes"] == [
        "link set mtu 1380 dev wg0",
        "route add 192.168.20.0/24 dev wg0",
        "route add 192.168.30.0/24 dev wg0",  # fails
        "route del 192.168.20.0/24 dev wg0",  # undone, newest first
        "link set mtu 1420 dev wg0",
    ]


RUNNING_KEY = "B" * 42 + "E="  # the key a hand-made config runs with (a well-formed key, nobody's secret)


@pytest.mark.parametrize(("conf", "restored_with"), [
    (f"[Interface]\n  privatekey= {RUNNING_KEY}  # by hand\r\nSaveConfig = true\n", RUNNING_KEY),
    # wg keeps the last PrivateKey of [Interface] (review R2); one under [Peer] is none of the interface's
    (f"[Interface]\nPrivateKey = {PLACEHOLDER_KEY}\nPrivateKey = {RUNNING_KEY}\n[Peer]\nPrivateKey = {'C' * 43}=\n",
     RUNNING_KEY),
    ("# Managed by wgmesh\n[Interface]\nListenPort = 51820\n", PLACEHOLDER_KEY),
    ("[Interface]\nPrivateKey = not-a-key\n", PLACEHOLDER_KEY),
])
def test_a_rollback_restores_the_key_the_restored_config_runs_with(node: Stubs, conf: str, restored_with: str) -> None:
    """Review F: a node that ran a hand-made config (its own PrivateKey, SaveConfig) and then got IF.key from
    enroll: a failed apply restored the config but ran IF.key's key, so its own peers lost it, and SaveConfig
    then wrote that key over the config's own at the next `wg-quick down`. The restore runs the restored
    config's key; a config without one (wgmesh's) gets IF.key's."""
    planned = _route(converged(MTU_MESH, "aws", mtu=1420), drop="192.168.30.0/24")
    got = _run_update(node, MTU_MESH, planned, _node(planned), fail="route add 192.168.30.0/24", conf_text=conf)
    assert got["rc"] != 0 and "steps were undone" in got["stderr"]  # type: ignore[operator]
    assert (node.root / "etc-wireguard" / "wg0.conf").read_bytes() == conf.encode()
    assert f"PrivateKey = {restored_with}\n" in got["sync"]  # type: ignore[operator]


def test_a_route_the_node_has_through_another_device_is_named(node: Stubs) -> None:
    """The node routes the prefix already, through its own LAN or another mesh or by hand: `ip route add` says only
    "File exists" (reviews C2, B7, D2); the failure names the route it collides with and what to do."""
    planned = _route(converged(MTU_MESH, "aws", mtu=1380), drop="192.168.30.0/24")
    now = _node(planned)
    got = _run_update(node, MTU_MESH, planned,
                      {**now, "other_routes": {"192.168.30.0/24": "192.168.30.0/24 via 10.250.7.13 dev eth0"}})
    assert got["rc"] != 0 and "steps were undone" in got["stderr"]  # type: ignore[operator]
    assert ("cannot route 192.168.30.0/24 through wg0: the node routes it already (192.168.30.0/24 via 10.250.7.13 "
            "dev eth0): delete that route, or take 192.168.30.0/24 out of mesh.yaml's subnets if this node still "
            "has that network") in got["stderr"]  # type: ignore[operator]
    assert "File exists" not in got["stderr"]  # type: ignore[operator]
    assert got["state"] == now


def test_a_failing_hook_is_quoted_as_written(node: Stubs) -> None:
    """dash's echo read the hook's backslashes: `\\033` became an ESC in the error, `\\n` a line break, and a `\\c`
    cut the message short (review A4)."""
    plan = diff_node(MESH, MESH.node("aws"), converged(MESH, "aws"))
    script = apply_script(MESH, MESH.node("aws"), plan, lock_timeout=5, confirm_timeout=CONFIRM_TIMEOUT, run=RUN)
    values = _on_node(node, script_values(script.first))
    hook = "printf '\\033[31mX\\n' >&2; echo 'a\\cb' >&2; false"
    r = node.run(shell.script("apply", **values) + f"wgm_hook PostUp {shlex.quote(hook)}\n")
    assert r.exit_status == 1
    assert r.stderr.startswith(f"the PostUp hook failed: {hook}: "), r.stderr  # (then what the hook printed)


def test_saved_undo_rolls_back_this_runs_steps(node: Stubs) -> None:
    """What a successful run records undoes its reconcile steps (the controller's rollback after a failed
    verification has the run's timer do it now)."""
    planned = dataclasses.replace(_route(converged(MESH, "aws"), drop="192.168.30.0/24"), config_exists=False,
                                  config_sha256=None)
    now = _node(planned)
    got = _run_update(node, MESH, planned, now, then="")
    assert got["rc"] == 0, got["stderr"]
    assert "192.168.30.0/24" in got["state"]["routes"]  # type: ignore[index, operator]
    conf = node.root / "etc-wireguard" / "wg0.conf"
    assert conf.exists()
    rolled = _controller(node, MESH, rollback_script)
    assert (rolled["rc"], rolled["outcome"]) == (0, "rolledback"), rolled["stderr"]
    assert rolled["state"] == now
    assert not conf.exists()  # the run wrote the first config: undone, it is gone again
    assert _leftovers(node) == []


def test_mtu_rollback_after_the_run_restores_the_old_mtu(node: Stubs) -> None:
    """F5: the undo record of a run that changed the MTU holds the old value itself, so a rollback in a later
    process (the controller's, after a failed verification) restores it instead of aborting."""
    planned = converged(MTU_MESH, "aws", mtu=1420)
    got = _run_update(node, MTU_MESH, planned, _node(planned), then="")
    assert got["rc"] == 0, got["stderr"]
    assert got["state"]["mtu"] == 1380  # type: ignore[index]
    rolled = _controller(node, MTU_MESH, rollback_script)
    assert (rolled["rc"], rolled["outcome"]) == (0, "rolledback"), rolled["stderr"]
    assert rolled["state"]["mtu"] == 1420  # type: ignore[index]


SUBNET6 = ipaddress.ip_network("fd00:99:10::/64")


def test_ipv6_subnet_rules_go_to_ip6tables_and_roll_back(node: Stubs) -> None:
    """An IPv6 subnet with masquerade: its FORWARD accept rules and MASQUERADE rule are ip6tables', iptables is
    left as it was; the run's undo record removes exactly them again."""
    aws = MESH.node("aws")
    v6 = _with_node(MESH, "aws", subnets=(*aws.subnets, Subnet(SUBNET6, None, True)))
    planned = dataclasses.replace(converged(MESH, "aws"), forwarding={4: True, 6: True})
    stateful_iptables(node, "iptables", "ip6tables")
    before = iptables_state(node, "iptables")
    got = _run_update(node, v6, planned, _node(planned), then="")
    assert got["rc"] == 0, got["stderr"]
    comment = "-m comment --comment wgmesh:wg0"
    assert iptables_state(node, "ip6tables") == {
        "filter": [f"FORWARD -i wg0 {comment} -j ACCEPT", f"FORWARD -o wg0 {comment} -j ACCEPT"],
        "nat": [f"POSTROUTING ! -s {SUBNET6} -d {SUBNET6} {comment} -j MASQUERADE"],
    }
    assert iptables_state(node, "iptables") == before
    rolled = _controller(node, v6, rollback_script)
    assert (rolled["rc"], rolled["outcome"]) == (0, "rolledback"), rolled["stderr"]
    assert iptables_state(node, "ip6tables") == {"filter": [], "nat": []}


def test_a_rollback_leaves_forwarding_on(node: Stubs) -> None:
    """Review K: undoing a run turned forwarding off again, under another mesh that relied on it by then (the
    revert timer fires up to --confirm-timeout later). wgmesh never turns it off."""
    planned = dataclasses.replace(converged(MESH, "aws"), forwarding={4: False, 6: False})
    stateful_iptables(node, "iptables", "ip6tables")
    answering(node, "sysctl", {"-n net.ipv4.ip_forward": "0\n", "-q -w net.ipv4.ip_forward=1": ""})
    got = _run_update(node, MESH, planned, _node(planned), then="")
    assert got["rc"] == 0, got["stderr"]
    assert ["-q", "-w", "net.ipv4.ip_forward=1"] in calls(node, "sysctl")
    rolled = _controller(node, MESH, rollback_script)
    assert (rolled["rc"], rolled["outcome"]) == (0, "rolledback"), rolled["stderr"]
    assert not [c for c in calls(node, "sysctl") if c[-1].endswith("=0")], calls(node, "sysctl")


def test_a_confirmed_run_keeps_its_change_and_leaves_nothing_behind(node: Stubs) -> None:
    planned = converged(MTU_MESH, "aws", mtu=1420)
    got = _run_update(node, MTU_MESH, planned, _node(planned))
    assert got["state"]["mtu"] == 1380  # type: ignore[index]
    assert _leftovers(node) == []


def test_reconcile_removes_and_adds_ipv6_routes(node: Stubs) -> None:
    """`ip route show` lists IPv4 routes only: an IPv6 route must be looked up with -6 or it is never removed."""
    planned = _route(_route(converged(MESH, "aws"), add="fd00:99::/64"), drop="192.168.30.0/24")
    got = _run_update(node, MESH, planned, _node(planned))
    assert got["rc"] == 0, got["stderr"]
    assert "fd00:99::/64" not in got["state"]["routes"]  # type: ignore[operator]
    assert "192.168.30.0/24" in got["state"]["routes"]  # type: ignore[operator]
