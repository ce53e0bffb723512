"""`wgmesh apply` against real lab hosts (issue 5's "Done when").

One 4-host lab for the module (aws, azure, gcp, aliyun behind NAT). The tests run in file order and each one
leaves the mesh converged (plan exits 0) with the lab's own mesh.yaml, except where it says otherwise.
mesh.yaml starts without aliyun, which the second test adds.

Peers deleted by hand are never aliyun's: aliyun is behind NAT, so a node that forgot it cannot reach it until
aliyun starts a new handshake (WireGuard's own timers, not something apply can change).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from e2e import labkit as labmod
from wgmesh.lab import Lab

pytestmark = pytest.mark.e2e

WgmeshRunner = Callable[..., "subprocess.CompletedProcess[str]"]
NO_CHANGES = "No changes. Your mesh matches the configuration."
LOCK = "/run/wireguard/wgmesh-wg0.lock"


# ----------------------------------------------------------------------------------------- helpers


def _exec(lab: Lab, node: str, *argv: str) -> subprocess.CompletedProcess[str]:
    return labmod.host_exec(lab.dir, node, list(argv))


def _ok(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode == 0, f"exit {r.returncode}\n--- stdout\n{r.stdout}--- stderr\n{r.stderr}"
    return r.stdout


def _without_node(text: str, name: str) -> str:
    out = re.sub(rf"^  {re.escape(name)}:\n(?:    .*\n)*", "", text, flags=re.M)
    assert out != text
    return out


def _node_block(text: str, name: str) -> str:
    m = re.search(rf"^  {re.escape(name)}:\n(?:    .*\n)*", text, flags=re.M)
    assert m is not None
    return m.group(0)


def _edit_node(text: str, name: str, old: str, new: str) -> str:
    block = _node_block(text, name)
    assert block.count(old) == 1, (name, old, block)
    return text.replace(block, block.replace(old, new))


def _sections(stdout: str) -> dict[str, str]:
    parts = re.split(r"^  # node (\S+?)(?::.*)?$", stdout, flags=re.M)
    return {parts[i]: parts[i + 1] for i in range(1, len(parts), 2)}


def _change_lines(section: str) -> list[str]:
    """The resource lines of one node's plan: `+ peer aliyun`, `- route ...`, ..."""
    return [ln.strip() for ln in section.splitlines() if re.match(r"^  [-+~] \w", ln)]


def _results(stdout: str) -> dict[str, str]:
    """`NODE  outcome (message)` lines of apply."""
    out = {}
    for ln in stdout.splitlines():
        m = re.match(r"^(\S+)\s+(changed|unchanged|failed|skipped)\b(.*)$", ln)
        if m:
            out[m.group(1)] = m.group(2) + m.group(3)
    return out


def _ping(lab: Lab, src: str, dst: str, after: float = 0) -> bool:
    time.sleep(after)
    argv = ["ip", "netns", "exec", lab.host(src).netns, "ping", "-n", "-q", "-c", "1", "-w", "8", dst]
    return subprocess.run(argv, capture_output=True, timeout=20).returncode == 0


def _assert_full_mesh(lab: Lab, names: list[str]) -> None:
    """Every node pings every other node's mesh address and subnet gateway (192.168.X.1)."""
    pairs = [
        (src, dst, target)
        for src in names
        for dst in names
        if dst != src
        for target in (str(lab.host(dst).address), str(lab.host(dst).subnet.network_address + 1))
    ]
    # Each source starts 0.5 s after the one before it (names' order), as `wgmesh check` does: both ends of a
    # pair sending their first packet at once collide their handshakes until WireGuard's retry 5 s later.
    order = {n: i for i, n in enumerate(names)}
    with ThreadPoolExecutor(max_workers=len(pairs)) as pool:
        got = list(pool.map(lambda p: _ping(lab, p[0], p[2], after=0.5 * order[p[0]]), pairs))
        # A first handshake can be lost while a peer is still coming up (WireGuard retries after 5 s):
        # a pair passes if it answers within two rounds.
        retry = [p for p, ok in zip(pairs, got, strict=True) if not ok]
        again = list(pool.map(lambda p: _ping(lab, p[0], p[2]), retry))
    failed = [f"{s} -> {d} ({t})" for (s, d, t), ok in zip(retry, again, strict=True) if not ok]
    assert failed == []


def _identity(lab: Lab, node: str) -> tuple[str, str]:
    return (
        _ok(_exec(lab, node, "wg", "show", "wg0", "public-key")).strip(),
        _ok(_exec(lab, node, "wg", "show", "wg0", "listen-port")).strip(),
    )


def _pubkey(lab: Lab, node: str) -> str:
    return _ok(_exec(lab, node, "sh", "-c", "wg pubkey < /etc/wireguard/wg0.key")).strip()


def _peers(lab: Lab, node: str) -> set[str]:
    return set(_ok(_exec(lab, node, "wg", "show", "wg0", "peers")).split())


def _wg_routes(lab: Lab, node: str) -> set[str]:
    data = json.loads(_ok(_exec(lab, node, "ip", "-j", "-4", "route", "show", "dev", "wg0")) or "[]")
    return {r["dst"] for r in data}


def _remove_peer(lab: Lab, node: str, peer: str) -> None:
    _ok(_exec(lab, node, "wg", "set", "wg0", "peer", _pubkey(lab, peer), "remove"))


def _plan_exit(run: WgmeshRunner, lab: Lab) -> subprocess.CompletedProcess[str]:
    return run(lab.dir, "plan", "--detailed-exitcode")


def _converge(run: WgmeshRunner, lab: Lab) -> None:
    _ok(run(lab.dir, "apply", "--auto-approve"))
    r = _plan_exit(run, lab)
    assert r.returncode == 0, r.stdout + r.stderr
    assert NO_CHANGES in r.stdout


def _host_snapshot(lab: Lab, node: str) -> str:
    """What apply could change on a node (public data only), and the sshd log (every connection)."""
    script = (
        "stat -c '%Y %s' /etc/wireguard/wg0.conf; sha256sum < /etc/wireguard/wg0.conf; "
        "wg show wg0 public-key; wg show wg0 listen-port; wg show wg0 allowed-ips | sort; "
        "ip -o addr show dev wg0; ip route show dev wg0"
    )
    state = _ok(_exec(lab, node, "sh", "-c", script))
    log = (lab.runtime / "hosts" / node / "sshd.log").read_text()
    return state + "\n--- sshd.log\n" + log


@pytest.fixture(scope="module")
def mesh(lab4: Lab) -> Iterator[Lab]:
    """The module's lab; its full mesh.yaml is kept in `full_text` on the side."""
    yield lab4


@pytest.fixture(scope="module")
def full_text(mesh: Lab) -> str:
    return mesh.mesh_path.read_text()


@pytest.fixture(scope="module")
def identities() -> dict[str, tuple[str, str]]:
    return {}


# ----------------------------------------------------------------------------------------- fresh hosts


def test_apply_on_fresh_hosts(
    mesh: Lab, full_text: str, identities: dict[str, tuple[str, str]], run_wgmesh: WgmeshRunner
) -> None:
    mesh.mesh_path.write_text(_without_node(full_text, "aliyun"))
    r = run_wgmesh(mesh.dir, "apply", "--auto-approve")
    _ok(r)
    # the interface, 2 peers, 2 routes, wgmesh's FORWARD rules; forwarding on (the hosts are cloud-like)
    assert _results(r.stdout) == {n: "changed (6 added, 1 changed, 0 destroyed)" for n in ("aws", "azure", "gcp")}
    assert "Apply complete! Resources: 18 added, 3 changed, 0 destroyed." in r.stdout
    _assert_full_mesh(mesh, ["aws", "azure", "gcp"])
    plan = _plan_exit(run_wgmesh, mesh)
    assert plan.returncode == 0, plan.stdout + plan.stderr
    assert NO_CHANGES in plan.stdout
    for n in ("aws", "azure", "gcp"):
        identities[n] = _identity(mesh, n)
        assert identities[n] == (_pubkey(mesh, n), "51820")
        mode = _ok(_exec(mesh, n, "stat", "-c", "%a", "/etc/wireguard/wg0.conf")).strip()
        assert mode == "600"
        conf = _ok(_exec(mesh, n, "cat", "/etc/wireguard/wg0.conf"))
        assert "PrivateKey" not in conf and "SaveConfig" not in conf
    assert _exec(mesh, "aliyun", "ip", "link", "show", "wg0").returncode != 0, "aliyun is not in mesh.yaml yet"


def test_add_node(
    mesh: Lab, full_text: str, identities: dict[str, tuple[str, str]], run_wgmesh: WgmeshRunner
) -> None:
    mesh.mesh_path.write_text(full_text)
    plan = _plan_exit(run_wgmesh, mesh)
    assert plan.returncode == 2, plan.stdout + plan.stderr
    sections = _sections(plan.stdout)
    assert set(sections) == {"aws", "azure", "gcp", "aliyun"}
    for n in ("aws", "azure", "gcp"):
        lines = _change_lines(sections[n])
        assert "+ peer aliyun" in lines and "+ route 192.168.40.0/24" in lines
        # the config file changes; nothing else, nothing destroyed
        assert [ln for ln in lines if ln not in ("+ peer aliyun", "+ route 192.168.40.0/24")] == ["~ interface wg0"]
    assert "+ interface wg0" in _change_lines(sections["aliyun"])

    _ok(run_wgmesh(mesh.dir, "apply", "--auto-approve"))
    _assert_full_mesh(mesh, list(mesh.names))
    assert _plan_exit(run_wgmesh, mesh).returncode == 0
    for n in ("aws", "azure", "gcp"):
        assert _identity(mesh, n) == identities[n], f"{n} kept its key and port"
    identities["aliyun"] = _identity(mesh, "aliyun")


def test_apply_with_nothing_to_do_changes_nothing(
    mesh: Lab, identities: dict[str, tuple[str, str]], run_wgmesh: WgmeshRunner
) -> None:
    before = {n: _ok(_exec(mesh, n, "stat", "-c", "%Y %i", "/etc/wireguard/wg0.conf")) for n in mesh.names}
    r = run_wgmesh(mesh.dir, "apply", "--auto-approve")
    _ok(r)
    assert NO_CHANGES in r.stdout
    after = {n: _ok(_exec(mesh, n, "stat", "-c", "%Y %i", "/etc/wireguard/wg0.conf")) for n in mesh.names}
    assert after == before
    assert {n: _identity(mesh, n) for n in mesh.names} == identities


def test_dns_endpoint_resolved_on_the_nodes(mesh: Lab, full_text: str, run_wgmesh: WgmeshRunner) -> None:
    """azure's endpoint as a name, which every lab host resolves through its own /etc/hosts."""
    machine_hosts = Path("/etc/hosts").read_bytes()
    name = mesh.host("azure").hostname
    assert name not in machine_hosts.decode(), "the name must resolve on the lab hosts only"
    mesh.mesh_path.write_text(
        _edit_node(full_text, "azure", f"endpoint: {mesh.host('azure').ip}:51820", f"endpoint: {name}:51820")
    )
    try:
        plan = _plan_exit(run_wgmesh, mesh)
        assert plan.returncode == 2
        sections = _sections(plan.stdout)
        assert set(sections) == {"aws", "gcp", "aliyun"}
        for text in sections.values():
            # the live endpoint is the address the node resolved the name to: only the config file differs, and
            # the node re-resolves the name from now on (issue 13)
            assert _change_lines(text) == ["~ interface wg0", "+ reresolve wg0"]
            assert "config_file" in text and "endpoint" not in text
        _converge(run_wgmesh, mesh)
        assert f"Endpoint = {name}:51820" in _ok(_exec(mesh, "aws", "cat", "/etc/wireguard/wg0.conf"))
        _ok(_exec(mesh, "aws", "test", "-x", "/etc/wireguard/wgmesh-reresolve-wg0.sh"))
        _assert_full_mesh(mesh, ["aws", "azure"])
    finally:
        mesh.mesh_path.write_text(full_text)
    plan = _plan_exit(run_wgmesh, mesh)
    assert "- reresolve wg0" in plan.stdout, plan.stdout  # the last name is gone: so is the re-resolution
    _converge(run_wgmesh, mesh)
    assert _exec(mesh, "aws", "test", "-e", "/etc/wireguard/wgmesh-reresolve-wg0.sh").returncode == 1


# ----------------------------------------------------------------------------------------- changes and drift


def test_remove_subnet_routes_disappear_everywhere(mesh: Lab, full_text: str, run_wgmesh: WgmeshRunner) -> None:
    gone = "192.168.30.0/24"
    line = f"    subnets: [{{prefix: {gone}, probe: 192.168.30.10}}]\n"
    mesh.mesh_path.write_text(_edit_node(full_text, "gcp", line, ""))
    plan = _plan_exit(run_wgmesh, mesh)
    assert plan.returncode == 2
    sections = _sections(plan.stdout)
    assert set(sections) == {"aws", "azure", "aliyun", "gcp"}
    for name, text in sections.items():
        if name == "gcp":  # it routes no subnet any more: its FORWARD accept rules go
            assert "- firewall forward wg0" in _change_lines(text)
            continue
        assert f"- route {gone}" in _change_lines(text)
        assert "~ peer gcp" in _change_lines(text)
    _converge(run_wgmesh, mesh)
    for n in mesh.names:
        assert gone not in _wg_routes(mesh, n), n
    assert _ping(mesh, "aws", "10.0.0.3")
    assert not _ping(mesh, "aws", "192.168.30.1")

    mesh.mesh_path.write_text(full_text)  # and back: the routes are added on running interfaces
    _converge(run_wgmesh, mesh)
    for n in ("aws", "azure", "aliyun"):
        assert gone in _wg_routes(mesh, n), n
    _assert_full_mesh(mesh, list(mesh.names))


def test_new_address_in_the_same_network_keeps_the_routes(
    mesh: Lab, full_text: str, run_wgmesh: WgmeshRunner
) -> None:
    """A node's new mesh address in the same /24 is added beside the old one, which the kernel makes a secondary
    address; deleting the old (primary) one would take the secondary with it, and with no IPv4 address left every
    route on wg0 (review C1: verification failed, the routes gone even after the rollback)."""
    old, new = f"    address: {mesh.host('gcp').address}\n", "    address: 10.0.0.13\n"
    mesh.mesh_path.write_text(_edit_node(full_text, "gcp", old, new))
    _converge(run_wgmesh, mesh)
    addrs = json.loads(_ok(_exec(mesh, "gcp", "ip", "-j", "-4", "address", "show", "dev", "wg0")))
    assert [a["local"] for a in addrs[0]["addr_info"]] == ["10.0.0.13"]
    assert {"192.168.10.0/24", "192.168.20.0/24", "192.168.40.0/24"} <= _wg_routes(mesh, "gcp")
    assert _ping(mesh, "aws", "10.0.0.13")
    assert _ping(mesh, "gcp", "192.168.10.1")

    mesh.mesh_path.write_text(full_text)  # and back
    _converge(run_wgmesh, mesh)
    _assert_full_mesh(mesh, list(mesh.names))


def test_a_route_through_another_device_fails_the_node_in_plan(mesh: Lab, run_wgmesh: WgmeshRunner) -> None:
    """A route for gcp's subnet through eth0 on aws, by hand: plan promised `+ route` and every apply failed with
    "RTNETLINK answers: File exists" (reviews D2, C2, B7). Plan names the route; once it is gone, apply converges."""
    gone = "192.168.30.0/24"
    _ok(_exec(mesh, "aws", "ip", "route", "replace", gone, "dev", "eth0"))
    try:
        plan = _plan_exit(run_wgmesh, mesh)
        assert plan.returncode == 1, plan.stdout + plan.stderr
        assert f"Error: node aws: the node routes {gone} already ({gone} dev eth0 scope link)" in plan.stderr
        assert "1 node could not be planned" in plan.stdout
    finally:
        _exec(mesh, "aws", "ip", "route", "del", gone, "dev", "eth0")
    _converge(run_wgmesh, mesh)
    assert gone in _wg_routes(mesh, "aws")


def test_peer_deleted_by_hand_is_planned_and_repaired(mesh: Lab, run_wgmesh: WgmeshRunner) -> None:
    _remove_peer(mesh, "azure", "gcp")
    assert _pubkey(mesh, "gcp") not in _peers(mesh, "azure")
    plan = _plan_exit(run_wgmesh, mesh)
    assert plan.returncode == 2
    sections = _sections(plan.stdout)
    assert list(sections) == ["azure"]
    assert _change_lines(sections["azure"]) == ["+ peer gcp"]
    r = run_wgmesh(mesh.dir, "apply", "--auto-approve")
    _ok(r)
    assert _results(r.stdout) == {
        "aws": "unchanged", "azure": "changed (1 added, 0 changed, 0 destroyed)", "gcp": "unchanged",
        "aliyun": "unchanged",
    }
    assert _plan_exit(run_wgmesh, mesh).returncode == 0
    assert _ping(mesh, "azure", "10.0.0.3")


def test_saved_plan_is_applied(mesh: Lab, run_wgmesh: WgmeshRunner, tmp_path: Path) -> None:
    _remove_peer(mesh, "aws", "gcp")
    saved = tmp_path / "p.json"
    r = run_wgmesh(mesh.dir, "plan", "--out", str(saved), "--detailed-exitcode")
    assert r.returncode == 2, r.stderr
    assert f"wgmesh apply {saved}" in r.stdout
    applied = run_wgmesh(mesh.dir, "apply", str(saved))  # a saved plan needs no approval
    _ok(applied)
    assert _results(applied.stdout)["aws"] == "changed (1 added, 0 changed, 0 destroyed)"
    assert _plan_exit(run_wgmesh, mesh).returncode == 0


def test_stale_saved_plan_is_refused(mesh: Lab, full_text: str, run_wgmesh: WgmeshRunner, tmp_path: Path) -> None:
    saved = tmp_path / "p.json"
    _remove_peer(mesh, "aws", "azure")
    assert run_wgmesh(mesh.dir, "plan", "--out", str(saved)).returncode == 0
    _remove_peer(mesh, "gcp", "azure")  # the live state moves after the plan was saved
    r = run_wgmesh(mesh.dir, "apply", str(saved))
    assert r.returncode == 1
    assert "Saved plan is stale" in r.stderr and "node gcp" in r.stderr and "node aws" not in r.stderr
    assert "Traceback" not in r.stderr
    assert _pubkey(mesh, "azure") not in _peers(mesh, "aws"), "a stale plan applies nothing"

    assert run_wgmesh(mesh.dir, "plan", "--out", str(saved)).returncode == 0
    mesh.mesh_path.write_text(full_text + "# a comment\n")  # mesh.yaml moves
    try:
        r = run_wgmesh(mesh.dir, "apply", str(saved))
        assert r.returncode == 1
        assert "Saved plan is stale" in r.stderr and "mesh.yaml changed" in r.stderr
    finally:
        mesh.mesh_path.write_text(full_text)
    _converge(run_wgmesh, mesh)


def test_apply_without_terminal_or_auto_approve_refuses(mesh: Lab, run_wgmesh: WgmeshRunner) -> None:
    _remove_peer(mesh, "gcp", "aws")
    r = run_wgmesh(mesh.dir, "apply", input="yes\n")  # stdin is a pipe, not a terminal
    assert r.returncode == 1
    assert "--auto-approve" in r.stderr and "Traceback" not in r.stderr
    assert _pubkey(mesh, "aws") not in _peers(mesh, "gcp"), "nothing was applied"
    j = run_wgmesh(mesh.dir, "apply", "--json")
    assert j.returncode == 1 and "--auto-approve" in j.stderr
    r = run_wgmesh(mesh.dir, "apply", "--auto-approve", "--json")
    _ok(r)
    doc = json.loads(r.stdout)  # one JSON document
    assert doc["format_version"] == "1" and doc["type"] == "apply"
    assert {x["node"]: x["outcome"] for x in doc["results"]} == {
        "aws": "unchanged", "azure": "unchanged", "gcp": "changed", "aliyun": "unchanged"
    }
    assert _plan_exit(run_wgmesh, mesh).returncode == 0


def test_invalid_mesh_yaml_exits_before_connecting(mesh: Lab, full_text: str, run_wgmesh: WgmeshRunner) -> None:
    bad = _edit_node(full_text, "gcp", "address: 10.0.0.3", "address: 10.0.0.300")
    line = bad.splitlines().index("    address: 10.0.0.300") + 1
    before = {n: _host_snapshot(mesh, n) for n in mesh.names}
    mesh.mesh_path.write_text(bad)
    try:
        r = run_wgmesh(mesh.dir, "apply", "--auto-approve")
    finally:
        mesh.mesh_path.write_text(full_text)
    assert r.returncode == 1
    assert f"mesh.yaml:{line}:" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and r.stdout == ""
    assert {n: _host_snapshot(mesh, n) for n in mesh.names} == before, "no host changed, no SSH connection made"


# ----------------------------------------------------------------------------------------- concurrency, failures


def _hold_lock(lab: Lab, node: str, seconds: float) -> threading.Thread:
    """Hold the node's apply lock (as another apply would) for `seconds`; returns once it is held."""
    t = threading.Thread(target=_exec, args=(lab, node, "flock", LOCK, "sleep", str(seconds)), daemon=True)
    t.start()
    deadline = time.monotonic() + 10
    while _exec(lab, node, "flock", "-n", LOCK, "true").returncode == 0:
        assert time.monotonic() < deadline, "the lock was never taken"
        time.sleep(0.05)
    return t


def test_lock_held_elsewhere_fails_that_node_cleanly(mesh: Lab, run_wgmesh: WgmeshRunner) -> None:
    _remove_peer(mesh, "aws", "gcp")
    _remove_peer(mesh, "gcp", "aws")
    holder = _hold_lock(mesh, "gcp", 8)
    r = run_wgmesh(mesh.dir, "apply", "--auto-approve", "--lock-timeout", "0")
    assert r.returncode == 1
    results = _results(r.stdout)
    assert results["aws"].startswith("changed")
    assert results["gcp"].startswith("failed") and "another wgmesh apply or rotate holds" in results["gcp"]
    assert "apply failed on 1 node(s): gcp" in r.stderr and "Traceback" not in r.stderr
    assert _pubkey(mesh, "aws") not in _peers(mesh, "gcp"), "gcp was left alone"
    holder.join()
    _converge(run_wgmesh, mesh)


def test_two_applies_at_once(mesh: Lab, full_text: str, run_wgmesh: WgmeshRunner) -> None:
    """Both applies plan the same change; the lock serializes them and the second finds it done."""
    more = "192.168.11.0/24"
    mesh.mesh_path.write_text(_edit_node(full_text, "aws", "subnets: [{prefix: 192.168.10.0/24, probe: 192.168.10.10}]",
                                         f"subnets: [{{prefix: 192.168.10.0/24, probe: 192.168.10.10}}, {more}]"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("WGMESH_")} | {"NO_COLOR": "1"}
    procs = [
        subprocess.Popen([sys.executable, "-m", "wgmesh", "apply", "--auto-approve"], cwd=mesh.dir, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    codes = [p.returncode for p in procs]
    for (out, err), code in zip(outs, codes, strict=True):
        assert "Traceback" not in err
        if code != 0:  # failing is fine only for the other apply's lock or its changes
            assert re.search(r"another wgmesh apply or rotate holds|changed since this plan",
                             out + err), out + err
    assert 0 in codes, outs
    plan = _plan_exit(run_wgmesh, mesh)
    assert plan.returncode == 0, plan.stdout + plan.stderr
    for n in ("azure", "gcp", "aliyun"):
        assert more in _wg_routes(mesh, n), f"{n} lost the route the other apply added"
    mesh.mesh_path.write_text(full_text)
    _converge(run_wgmesh, mesh)


def _sshd_pids(lab: Lab, node: str) -> list[labmod.Proc]:
    procs = (labmod.proc_of(p) for p in labmod.pids_in_netns([lab.host(node).netns]))
    return [p for p in procs if p is not None and labmod.comm(p.pid) == "sshd"]


def test_sshd_stopped_during_apply(mesh: Lab, run_wgmesh: WgmeshRunner) -> None:
    """gcp's sshd dies (listener and sessions) while apply waits on gcp's lock: the others converge, apply
    exits 1 naming gcp; once sshd is back, apply converges."""
    _remove_peer(mesh, "aws", "azure")
    _remove_peer(mesh, "gcp", "azure")
    holder = _hold_lock(mesh, "gcp", 6)
    env = {k: v for k, v in os.environ.items() if not k.startswith("WGMESH_")} | {"NO_COLOR": "1"}
    apply = subprocess.Popen([sys.executable, "-m", "wgmesh", "apply", "--auto-approve"], cwd=mesh.dir, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not labmod.waiting_for_lock(mesh, "gcp"):
            assert apply.poll() is None and time.monotonic() < deadline, "apply never reached gcp's lock"
            time.sleep(0.05)
        labmod.stop_sshd(mesh.dir, "gcp")
        for p in _sshd_pids(mesh, "gcp"):  # the sessions too: the connection drops
            os.kill(p.pid, signal.SIGKILL)
        out, err = apply.communicate(timeout=90)
    finally:
        if apply.poll() is None:
            apply.kill()
        holder.join()
        labmod.start_sshd(mesh.dir, "gcp")
    assert apply.returncode == 1, out + err
    results = _results(out)
    assert results["aws"].startswith("changed") and results["gcp"].startswith("failed"), out
    assert "apply failed on 1 node(s): gcp" in err and "Traceback" not in err
    assert _pubkey(mesh, "azure") in _peers(mesh, "aws")
    _converge(run_wgmesh, mesh)
    _assert_full_mesh(mesh, ["gcp", "azure"])


def test_sshd_stopped_before_apply(mesh: Lab, run_wgmesh: WgmeshRunner) -> None:
    _remove_peer(mesh, "aws", "azure")
    _remove_peer(mesh, "gcp", "azure")
    labmod.stop_sshd(mesh.dir, "gcp")
    try:
        r = run_wgmesh(mesh.dir, "apply", "--auto-approve", "--timeout", "3")
    finally:
        labmod.start_sshd(mesh.dir, "gcp")
    assert r.returncode == 1
    results = _results(r.stdout)
    assert results["aws"].startswith("changed")
    assert results["gcp"].startswith("failed") and str(mesh.host("gcp").ip) in results["gcp"]
    assert "Traceback" not in r.stderr
    _converge(run_wgmesh, mesh)


# ----------------------------------------------------------------------------------------- removing nodes


def test_remove_node(mesh: Lab, full_text: str, run_wgmesh: WgmeshRunner) -> None:
    gcp_key = _pubkey(mesh, "gcp")
    mesh.mesh_path.write_text(_without_node(full_text, "gcp"))
    plan = _plan_exit(run_wgmesh, mesh)
    assert plan.returncode == 2
    sections = _sections(plan.stdout)
    assert set(sections) == {"aws", "azure", "aliyun"}
    for text in sections.values():
        lines = _change_lines(text)
        # gcp is no longer in mesh.yaml: its peer is known by its key only
        assert sorted(lines) == sorted(["~ interface wg0", f"- peer {gcp_key[:8]}…", "- route 192.168.30.0/24"])
    _converge(run_wgmesh, mesh)
    for n in ("aws", "azure", "aliyun"):
        assert gcp_key not in _peers(mesh, n)
        assert "192.168.30.0/24" not in _wg_routes(mesh, n)
    _assert_full_mesh(mesh, ["aws", "azure", "aliyun"])


def test_decommission_then_back(mesh: Lab, full_text: str, run_wgmesh: WgmeshRunner) -> None:
    block = _node_block(full_text, "gcp")
    mesh.mesh_path.write_text(full_text.replace(block, block + "    decommission: true\n"))
    plan = _plan_exit(run_wgmesh, mesh)
    assert plan.returncode == 2
    sections = _sections(plan.stdout)
    assert _change_lines(sections["gcp"]) == ["- interface wg0"]
    assert [n for n, text in sections.items() if _change_lines(text)] == ["gcp"]
    _converge(run_wgmesh, mesh)
    assert _exec(mesh, "gcp", "ip", "link", "show", "wg0").returncode != 0
    assert _exec(mesh, "gcp", "test", "-e", "/etc/wireguard/wg0.conf").returncode != 0
    assert _exec(mesh, "gcp", "test", "-s", "/etc/wireguard/wg0.key").returncode == 0, "the key stays"

    mesh.mesh_path.write_text(full_text)
    _converge(run_wgmesh, mesh)
    _assert_full_mesh(mesh, list(mesh.names))

