"""`wgmesh check` and `wgmesh status` on lab hosts (issue 7's "Done when").

Pings go only between the lab's namespaces: from a lab host to the other lab hosts' mesh addresses and
subnet probes (the machine behind each host's subnet), the probes also from the host's own subnet address.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable

import pytest

from e2e import labkit as labmod
from wgmesh.lab import Lab

pytestmark = pytest.mark.e2e

LabFactory = Callable[..., Lab]
WgmeshRunner = Callable[..., "subprocess.CompletedProcess[str]"]
Observe = Callable[..., "subprocess.CompletedProcess[str]"]

@pytest.fixture(scope="module")
def observe(run_wgmesh: WgmeshRunner) -> Observe:
    return run_wgmesh


@pytest.fixture(scope="module")
def mesh4(lab: LabFactory, run_wgmesh: WgmeshRunner) -> Lab:
    made = lab()
    run_wgmesh(made.dir, "apply", "--auto-approve", check=True)
    return made


def _restore(made: Lab, run_wgmesh: WgmeshRunner, observe: Observe) -> None:
    """Apply again, then wait for `check` to pass. A peer that kept its session while the other side lost it
    (link down drops wireguard-go's keys) only re-handshakes when its data goes unanswered for 15 s or its
    key ages out (120 s): a pair can stay broken for a while after the fix, and check says so meanwhile."""
    run_wgmesh(made.dir, "apply", "--auto-approve", check=True)
    deadline = time.monotonic() + 150
    while True:
        r = observe(made.dir, "check")
        if r.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(5)
    assert r.returncode == 0, "the mesh did not come back after apply: " + r.stdout + r.stderr


def _matrix(out: str, corner: str) -> dict[str, list[str]]:
    """{row name: its cells} of the matrix whose corner cell is `corner` (cells are 2+ spaces apart)."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith(corner))
    rows: dict[str, list[str]] = {}
    for line in lines[start + 2 :]:
        if not line.strip():
            break
        name, *cells = re.split(r"\s{2,}", line.strip())
        rows[name] = cells
    return rows


def test_check_after_apply_passes_and_names_every_node(mesh4: Lab, observe: Observe) -> None:
    r = observe(mesh4.dir, "check")
    assert r.returncode == 0, r.stdout + r.stderr
    names = list(mesh4.names)
    header = next(line for line in r.stdout.splitlines() if "from \\ to" in line)
    assert header.split()[3:] == names
    rows = _matrix(r.stdout, "from \\ to")
    assert list(rows) == names
    for name, cells in rows.items():
        assert len(cells) == len(names)
        for other, cell in zip(names, cells, strict=True):
            if other == name:
                assert cell == "-"
            else:
                assert cell.startswith("ok ") and cell.endswith(" ms"), (name, other, cell)
    # 12 mesh addresses, 12 subnet probes, and 12 probes from the other nodes' subnet addresses
    assert "Check passed: 12 pairs of 4 nodes, 36 probes, all answered, routed through wg0." in r.stdout

    r = observe(mesh4.dir, "check", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["format_version"] == "1" and doc["ok"] is True
    assert doc["nodes"] == names
    assert len(doc["pairs"]) == 12 and {p["result"] for p in doc["pairs"]} == {"ok"}
    probes = doc["probes"]
    assert len(probes) == 36
    assert all(p["ok"] and p["device"] == "wg0" and p["rtt_ms"] > 0 for p in probes)
    subnets = {(p["to"], p["address"], p["subnet"]) for p in probes if p["subnet"]}
    assert subnets == {(h.name, str(h.machine_ip), str(h.subnet)) for h in mesh4.hosts}  # the machines behind


def test_check_fails_the_subnet_pairs_of_a_node_that_stopped_forwarding(
    mesh4: Lab, observe: Observe, run_wgmesh: WgmeshRunner
) -> None:
    """Forwarding turned off by hand on gcp: its own pings still work, the mesh addresses answer, but no machine
    reaches the machine behind gcp. check fails and names each subnet pair; an apply turns forwarding on again."""
    r = labmod.host_exec(mesh4.dir, "gcp", ["sysctl", "-qw", "net.ipv4.ip_forward=0"])
    assert r.returncode == 0, r.stderr
    try:
        r = observe(mesh4.dir, "check")
        assert r.returncode == 1, r.stdout + r.stderr
        lines = r.stdout.splitlines()
        gcp = mesh4.host("gcp")
        failed = [line for line in lines if " -> " in line and " failed: " in line]  # subnet pairs
        assert sorted(failed) == sorted(
            line for h in mesh4.hosts if h.name != "gcp" for line in lines
            if line.startswith(f"  {h.name} -> gcp: {h.subnet} -> {gcp.machine_ip} failed: ")
        )
        assert len(failed) == 3, r.stdout
        assert "Check failed: 3 of 12 pairs failed." in lines
        for h in mesh4.hosts:
            if h.name != "gcp":
                assert [line for line in lines if line.startswith(f"  {h.name} -> gcp {gcp.machine_ip} ")], r.stdout
        assert not [line for line in lines if line.startswith("  gcp -> ")], "gcp itself needs no forwarding"
    finally:
        _restore(mesh4, run_wgmesh, observe)
    assert labmod.host_exec(mesh4.dir, "gcp", ["sysctl", "-n", "net.ipv4.ip_forward"]).stdout.strip() == "1"


def test_status_shows_every_node_and_pair_with_handshake_ages(mesh4: Lab, observe: Observe) -> None:
    observe(mesh4.dir, "check")  # traffic between every pair
    r = observe(mesh4.dir, "status")
    assert r.returncode == 0, r.stdout + r.stderr
    names = list(mesh4.names)
    rows = _matrix(r.stdout, "node \\ peer")
    assert list(rows) == names
    for name, cells in rows.items():
        assert len(cells) == len(names)
        for other, cell in zip(names, cells, strict=True):
            if other == name:
                assert cell == "-"
            else:
                assert re.fullmatch(r"\d+s|[12]m \d\ds", cell), (name, other, cell)  # fresh: under 3 minutes
    detail = {tuple(line.split()[:2]) for line in r.stdout.splitlines()[1:] if len(line.split()) >= 6}
    assert {(a, b) for a in names for b in names if a != b} <= detail

    r = observe(mesh4.dir, "status", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["format_version"] == "1" and doc["ok"] is True
    assert [x["node"] for x in doc["readings"]] == names
    for reading in doc["readings"]:
        assert reading["error"] is None and reading["link_up"] is True and reading["unknown_peers"] == []
        assert abs(reading["clock"] - time.time()) < 60
        peers = {p["peer"]: p for p in reading["peers"]}
        assert set(peers) == set(names) - {reading["node"]}
        for p in peers.values():
            assert p["handshake"] == "fresh" and 0 <= p["handshake_age_s"] < 180
            assert p["rx_bytes"] > 0 and p["tx_bytes"] > 0
            assert ipaddress.ip_address(p["endpoint"].rsplit(":", 1)[0]) in mesh4.network


def test_check_names_the_node_whose_interface_is_down(
    mesh4: Lab, observe: Observe, run_wgmesh: WgmeshRunner
) -> None:
    r = labmod.host_exec(mesh4.dir, "gcp", ["ip", "link", "set", "wg0", "down"])
    assert r.returncode == 0, r.stderr
    try:
        r = observe(mesh4.dir, "check")
        assert r.returncode == 1, r.stdout + r.stderr
        lines = r.stdout.splitlines()
        gcp = mesh4.host("gcp")
        assert f"  aws -> gcp {gcp.address}: no reply" in lines
        assert any(line.startswith("  gcp -> aws ") for line in lines)
        assert "Every pair with gcp fails, both ways: start with gcp." in lines
        assert "Check failed: 6 of 12 pairs failed." in lines
        failures = [line for line in lines if " -> " in line]
        assert failures and all("gcp" in line for line in failures), "only pairs with gcp fail"

        doc = json.loads(observe(mesh4.dir, "check", "--json").stdout)
        assert doc["ok"] is False and doc["suspects"] == ["gcp"]
        assert {(p["from"], p["to"]) for p in doc["pairs"] if p["result"] == "failed"} == {
            (a, b) for a in mesh4.names for b in mesh4.names if a != b and "gcp" in (a, b)
        }

        r = observe(mesh4.dir, "status")
        assert r.returncode == 0, r.stdout + r.stderr
        assert "gcp: interface is down" in r.stdout.splitlines()
    finally:
        _restore(mesh4, run_wgmesh, observe)


def test_an_unreachable_node_is_named_with_its_reason(mesh4: Lab, observe: Observe) -> None:
    labmod.stop_sshd(mesh4.dir, "aliyun")
    try:
        r = observe(mesh4.dir, "check")
        assert r.returncode == 1, r.stdout + r.stderr
        lines = r.stdout.splitlines()
        ip = mesh4.host("aliyun").ip
        reason = f"aliyun: cannot connect to {mesh4.ssh_user}@{ip}:22"
        assert [line for line in lines if line.startswith(f"  {reason}")], r.stdout
        assert _matrix(r.stdout, "from \\ to")["aliyun"] == ["not checked"] * 3 + ["-"]
        assert [line for line in lines if " -> " in line] == [], "the others still reach aliyun over the mesh"
        assert "Check failed: 3 not checked (no probes from aliyun)." in lines

        r = observe(mesh4.dir, "status", "--json")
        assert r.returncode == 1
        doc = json.loads(r.stdout)
        assert len(doc["errors"]) == 1 and doc["errors"][0].startswith(reason)
        r = observe(mesh4.dir, "status")
        assert r.returncode == 1
        assert [line for line in r.stdout.splitlines() if line.startswith(f"Error: {reason}")], r.stdout
        assert _matrix(r.stdout, "node \\ peer")["aliyun"] == ["not read"] * 3 + ["-"]
    finally:
        labmod.start_sshd(mesh4.dir, "aliyun")


def test_sixteen_nodes_are_checked_in_seconds(lab: LabFactory, run_wgmesh: WgmeshRunner, observe: Observe) -> None:
    made = lab(nodes=16)
    run_wgmesh(made.dir, "apply", "--auto-approve", "--parallelism", "16", check=True, timeout=300)
    started = time.monotonic()
    r = observe(made.dir, "check", "--json", "--parallelism", "16")
    elapsed = time.monotonic() - started
    assert r.returncode == 0, r.stdout + r.stderr
    doc = json.loads(r.stdout)
    assert len(doc["pairs"]) == 16 * 15 and doc["ok"] is True
    assert elapsed < 10, f"16-node check took {elapsed:.1f} s"


def _extra_processes(made: Lab, before: set[int]) -> list[str]:
    """Processes in the lab's namespaces that were not there before and are not the lab's own (sshd,
    wireguard-go): a probe, or its ping, that outlived its check."""
    names = [h.netns for h in made.hosts] + [h.machine_netns for h in made.hosts]
    out = []
    for pid in labmod.pids_in_netns(names):
        if pid in before:
            continue
        comm = labmod.comm(pid)
        if comm is None:
            continue
        if not comm.startswith("sshd") and comm != "wireguard-go":
            out.append(f"{pid} {comm}")
    return out


def test_a_check_that_hits_its_deadline_leaves_nothing_running(
    lab: LabFactory, run_wgmesh: WgmeshRunner, observe: Observe
) -> None:
    """12 hosts: check passes right after apply (first handshakes included). Then one host's wireguard-go is
    stopped (a hung peer: every ping to it goes unanswered, 10 attempts each) and check runs with a 6 s
    deadline: the nodes stop their probes before it, the check names the probes that ran out of time, and no
    probe or ping is left in any host; the next command does not wait for them."""
    made = lab(nodes=12)
    names = [h.name for h in made.hosts]
    run_wgmesh(made.dir, "apply", "--auto-approve", "--parallelism", "12", check=True, timeout=300)
    r = observe(made.dir, "check", "--json", "--parallelism", "12")
    assert r.returncode == 0, r.stdout + r.stderr
    assert json.loads(r.stdout)["ok"] is True

    hung = names[4]
    netns = made.host(hung).netns
    (wg,) = [p for p in labmod.pids_in_netns([netns]) if labmod.comm(p) == "wireguard-go"]
    names_ns = [h.netns for h in made.hosts] + [h.machine_netns for h in made.hosts]
    before = set(labmod.pids_in_netns(names_ns))
    os.kill(wg, signal.SIGSTOP)
    try:
        started = time.monotonic()
        r = observe(made.dir, "check", "--json", "--parallelism", "12", "--command-timeout", "6")
        elapsed = time.monotonic() - started
        assert r.returncode == 1, r.stdout + r.stderr
        doc = json.loads(r.stdout)
        assert doc["errors"] == [], "every node answered before the deadline"
        late = [p for p in doc["probes"] if not p["ok"]]
        assert late and all(hung in (p["from"], p["to"]) for p in late)
        assert {p["error"] for p in late} == {"no reply before the check's deadline on the node (--command-timeout)"}
        assert elapsed < 15, f"check took {elapsed:.1f} s with a 6 s deadline"
        deadline = time.monotonic() + 3
        while (left := _extra_processes(made, before)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert left == [], "probe processes outlived the check"
    finally:
        os.kill(wg, signal.SIGCONT)
    r = run_wgmesh(made.dir, "plan", "--detailed-exitcode", "--parallelism", "12", timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
