"""`wgmesh plan` against real lab hosts (issue 4's "Done when").

One 4-host lab for the module (aws, azure, gcp, aliyun behind NAT), fresh: keys, no interface. The tests run
in file order: first on the fresh hosts, then after one apply.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from e2e import labkit as labmod
from wgmesh.lab import Lab

pytestmark = pytest.mark.e2e

WgmeshRunner = Callable[..., "subprocess.CompletedProcess[str]"]
NO_CHANGES = "No changes. Your mesh matches the configuration."

# Runs the real CLI, and also writes everything the controller receives over SSH (the stdout and stderr
# of every remote script) to the file argv[1]: the test can then look for secrets in it.
TEE_RECEIVED = """
import sys
import wgmesh.remote.ssh as transport
log = open(sys.argv[1], "a")
exchange = transport._exchange
def tee(*args, **kwargs):
    got = exchange(*args, **kwargs)
    log.write((got.pre + got.stdout + got.stderr).decode(errors="replace"))
    log.flush()
    return got
transport._exchange = tee
sys.argv = ["wgmesh", *sys.argv[2:]]
from wgmesh.cli.app import main
main()
"""


def _exec(lab: Lab, node: str, *argv: str) -> subprocess.CompletedProcess[str]:
    return labmod.host_exec(lab.dir, node, list(argv))


def _private_keys(lab: Lab) -> dict[str, str]:
    """Each host's private key, read inside the host by the test (never by wgmesh)."""
    keys = {}
    for h in lab.hosts:
        got = _exec(lab, h.name, "cat", "/etc/wireguard/wg0.key")
        assert got.returncode == 0, got.stderr
        keys[h.name] = got.stdout.strip()
        assert len(keys[h.name]) == 44
    return keys


def _no_traceback(r: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in r.stdout + r.stderr


def _other_ed25519_key(tmp: Path) -> str:
    key = tmp / "other_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    fields = key.with_suffix(".pub").read_text().split()
    return f"{fields[0]} {fields[1]}"


def _fingerprint(pub_line: str, tmp: Path) -> str:
    path = tmp / "fp.pub"
    path.write_text(pub_line + "\n")
    out = subprocess.run(["ssh-keygen", "-lf", str(path)], capture_output=True, text=True, check=True).stdout
    return out.split()[1]


def _node_sections(stdout: str) -> dict[str, str]:
    """The human plan split by `# node NAME` headers."""
    parts = re.split(r"^  # node (\S+?)(?::.*)?$", stdout, flags=re.M)
    return {parts[i]: parts[i + 1] for i in range(1, len(parts), 2)}


@pytest.fixture(scope="module")
def fresh(lab4: Lab) -> Iterator[Lab]:
    yield lab4


# ----------------------------------------------------------------------------------------- fresh hosts


def test_fresh_hosts_plan_every_node_exit_2(fresh: Lab, run_wgmesh: WgmeshRunner) -> None:
    r = run_wgmesh(fresh.dir, "plan", "--detailed-exitcode")
    assert r.returncode == 2, r.stdout + r.stderr
    sections = _node_sections(r.stdout)
    assert list(sections) == ["aws", "azure", "gcp", "aliyun"]
    for name, text in sections.items():
        assert "+ interface wg0" in text, name
        others = [n for n in fresh.names if n != name]
        for other in others:
            assert f"+ peer {other}" in text, (name, other)
        for other in others:
            assert f"+ route {fresh.host(other).subnet}" in text, (name, other)
    # 4 interfaces + 4*3 peers + 4*3 subnet routes
    # per node: the interface, 3 peers, 3 routes and wgmesh's FORWARD rules; forwarding turned on
    assert "Plan: 32 to add, 4 to change, 0 to destroy." in r.stdout
    _no_traceback(r)


def test_fresh_hosts_plan_without_detailed_exitcode_exits_0(fresh: Lab, run_wgmesh: WgmeshRunner) -> None:
    r = run_wgmesh(fresh.dir, "plan")
    assert r.returncode == 0, r.stderr
    assert "Plan: 32 to add" in r.stdout


def test_fresh_hosts_plan_json(fresh: Lab, run_wgmesh: WgmeshRunner) -> None:
    r = run_wgmesh(fresh.dir, "plan", "--json", "--detailed-exitcode")
    assert r.returncode == 2, r.stderr
    doc = json.loads(r.stdout)
    assert doc["format_version"] == "1"
    assert doc["summary"] == {"add": 32, "change": 4, "destroy": 0, "errors": 0}
    assert [n["node"] for n in doc["nodes"]] == list(fresh.names)
    keys = {h.name: _exec(fresh, h.name, "sh", "-c", "wg pubkey < /etc/wireguard/wg0.key").stdout.strip()
            for h in fresh.hosts}
    for n in doc["nodes"]:
        assert n["error"] is None
        iface = [c for c in n["changes"] if c["kind"] == "interface"]
        assert len(iface) == 1 and iface[0]["action"] == "create" and iface[0]["before"] is None
        assert iface[0]["after"]["public_key"] == keys[n["node"]]
        assert iface[0]["after"]["addresses"] == [f"{fresh.host(n['node']).address}/24"]
        assert iface[0]["after"]["listen_port"] == 51820
        peers = {c["name"]: c for c in n["changes"] if c["kind"] == "peer"}
        assert set(peers) == set(fresh.names) - {n["node"]}
        for other, c in peers.items():
            h = fresh.host(other)
            assert c["after"]["public_key"] == keys[other]
            assert c["after"]["allowed_ips"] == [f"{h.address}/32", str(h.subnet)]
            assert c["after"]["endpoint"] == h.endpoint  # None for aliyun, behind NAT


def test_plan_target_reads_only_that_node(fresh: Lab, run_wgmesh: WgmeshRunner) -> None:
    r = run_wgmesh(fresh.dir, "plan", "--target", "gcp", "--json")
    assert r.returncode == 0, r.stderr
    assert [n["node"] for n in json.loads(r.stdout)["nodes"]] == ["gcp"]
    bad = run_wgmesh(fresh.dir, "plan", "--target", "nosuch")
    assert bad.returncode == 1
    assert "nosuch" in bad.stderr
    _no_traceback(bad)


def test_wrong_pinned_host_key_names_node_and_fingerprint(
    fresh: Lab, run_wgmesh: WgmeshRunner, tmp_path: Path
) -> None:
    original = fresh.known_hosts.read_text()
    azure = fresh.host("azure")
    wrong = _other_ed25519_key(tmp_path)
    lines = [f"{azure.ip} {wrong}" if ln.startswith(f"{azure.ip} ") else ln for ln in original.splitlines()]
    assert lines != original.splitlines()
    fresh.known_hosts.write_text("\n".join(lines) + "\n")
    try:
        r = run_wgmesh(fresh.dir, "plan", "--detailed-exitcode")
    finally:
        fresh.known_hosts.write_text(original)
    assert r.returncode == 1, r.stdout + r.stderr
    real = (fresh.runtime / "hosts" / "azure" / "ssh_host_ed25519_key.pub").read_text().split()
    offered = _fingerprint(f"{real[0]} {real[1]}", tmp_path)
    pinned = _fingerprint(wrong, tmp_path)
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("Error:")]
    assert len(errors) == 1, r.stderr
    assert "azure" in errors[0] and "mismatch" in errors[0]
    assert offered in errors[0] and pinned in errors[0]
    assert set(_node_sections(r.stdout)) == {"aws", "gcp", "aliyun"}
    _no_traceback(r)
    assert fresh.known_hosts.read_text() == original


def test_stopped_sshd_names_node_others_planned(fresh: Lab, run_wgmesh: WgmeshRunner) -> None:
    labmod.stop_sshd(fresh.dir, "gcp")
    try:
        r = run_wgmesh(fresh.dir, "plan", "--detailed-exitcode", "--timeout", "3")
    finally:
        labmod.start_sshd(fresh.dir, "gcp")
    assert r.returncode == 1, r.stdout + r.stderr
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("Error:")]
    assert len(errors) == 1 and "node gcp" in errors[0] and str(fresh.host("gcp").ip) in errors[0], r.stderr
    assert set(_node_sections(r.stdout)) == {"aws", "azure", "aliyun"}
    _no_traceback(r)


def test_unknown_host_keys_refused_then_accepted_on_first_use(fresh: Lab, run_wgmesh: WgmeshRunner) -> None:
    original = fresh.known_hosts.read_text()
    fresh.known_hosts.write_text("")
    try:
        refused = run_wgmesh(fresh.dir, "plan")
        assert refused.returncode == 1
        for name in fresh.names:
            assert re.search(rf"node {name}: unknown host key .*SHA256:", refused.stderr), refused.stderr
        assert fresh.known_hosts.read_text() == "", "nothing may be trusted without --accept-new-host-keys"
        _no_traceback(refused)

        accepted = run_wgmesh(fresh.dir, "plan", "--accept-new-host-keys", "--detailed-exitcode")
        assert accepted.returncode == 2, accepted.stdout + accepted.stderr
        assert "Plan: 32 to add" in accepted.stdout
        learned = {tuple(ln.split()) for ln in fresh.known_hosts.read_text().splitlines() if ln.strip()}
        assert learned == {tuple(ln.split()) for ln in original.splitlines() if ln.strip()}
        for host in fresh.hosts:  # trust on first use is never silent
            added = rf"Added to known_hosts .*: {host.ip} ssh-ed25519 SHA256:"
            assert re.search(added, accepted.stderr), accepted.stderr

        again = run_wgmesh(fresh.dir, "plan", "--detailed-exitcode")  # pinned now: no flag needed
        assert again.returncode == 2, again.stderr
    finally:
        fresh.known_hosts.write_text(original)


def test_accept_new_still_refuses_a_mismatch(fresh: Lab, run_wgmesh: WgmeshRunner, tmp_path: Path) -> None:
    original = fresh.known_hosts.read_text()
    aws = fresh.host("aws")
    wrong = _other_ed25519_key(tmp_path)
    fresh.known_hosts.write_text(
        "\n".join(f"{aws.ip} {wrong}" if ln.startswith(f"{aws.ip} ") else ln for ln in original.splitlines()) + "\n"
    )
    try:
        r = run_wgmesh(fresh.dir, "plan", "--accept-new-host-keys")
        assert r.returncode == 1
        assert re.search(r"node aws: host key mismatch", r.stderr), r.stderr
        assert f"{aws.ip} {wrong}" in fresh.known_hosts.read_text()
    finally:
        fresh.known_hosts.write_text(original)


# ----------------------------------------------------------------------------------------- secrets


def _run_teed(lab: Lab, log: Path, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", TEE_RECEIVED, str(log), *args],
        cwd=lab.dir, capture_output=True, text=True, timeout=120, input=input,
        env={"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "NO_COLOR": "1"},
    )


def test_controller_never_receives_a_private_key(fresh: Lab, run_wgmesh: WgmeshRunner, tmp_path: Path) -> None:
    secrets = _private_keys(fresh)
    received = tmp_path / "received.txt"
    outputs: list[str] = []

    saved = tmp_path / "p.json"
    for args in (("plan",), ("plan", "--json"), ("plan", "--out", str(saved))):
        r = _run_teed(fresh, received, *args)
        assert r.returncode == 0, r.stderr
        outputs += [r.stdout, r.stderr]
    applied = _run_teed(fresh, received, "apply", "--auto-approve")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert "Apply complete!" in applied.stdout
    outputs += [applied.stdout, applied.stderr]
    for args in (("plan",), ("plan", "--json"), ("apply", "--auto-approve", "--json")):
        r = _run_teed(fresh, received, *args)
        assert r.returncode == 0, r.stderr
        outputs += [r.stdout, r.stderr]

    seen = received.read_text()
    assert "@@wgmesh:" in seen and "@@wgmesh:verify" in seen, "the tee must have seen the node's output"
    assert "(hidden)" in seen, "the interface line is redacted on the node"
    everything = {"stdout/stderr": "".join(outputs), "received over SSH": seen, "saved plan": saved.read_text()}
    for node, key in secrets.items():
        for where, text in everything.items():
            assert key not in text, f"{node}'s private key in {where}"
    # the interface really has its private key (the redaction is not hiding a missing key)
    for node, key in secrets.items():
        assert _exec(fresh, node, "wg", "show", "wg0", "private-key").stdout.strip() == key


# ----------------------------------------------------------------------------------------- after apply


def test_plan_after_apply_no_changes(fresh: Lab, run_wgmesh: WgmeshRunner) -> None:
    r = run_wgmesh(fresh.dir, "plan", "--detailed-exitcode")
    assert r.returncode == 0, r.stdout + r.stderr
    assert NO_CHANGES in r.stdout
    doc = json.loads(run_wgmesh(fresh.dir, "plan", "--json", "--detailed-exitcode", check=True).stdout)
    assert doc["summary"] == {"add": 0, "change": 0, "destroy": 0, "errors": 0}
    assert all(n["changes"] == [] and n["error"] is None for n in doc["nodes"])


def test_plan_reflects_live_state(fresh: Lab, run_wgmesh: WgmeshRunner) -> None:
    """Hand changes on two nodes: each shows up on its node only, as an update with before -> after."""
    azure_key = _exec(fresh, "azure", "wg", "show", "wg0", "public-key").stdout.strip()
    assert _exec(fresh, "gcp", "wg", "set", "wg0", "listen-port", "51999").returncode == 0
    assert _exec(fresh, "aws", "wg", "set", "wg0", "peer", azure_key, "allowed-ips", "10.0.0.2/32").returncode == 0
    try:
        r = run_wgmesh(fresh.dir, "plan", "--detailed-exitcode")
        assert r.returncode == 2, r.stdout + r.stderr
        sections = _node_sections(r.stdout)
        assert set(sections) == {"gcp", "aws"}
        assert "~ interface wg0" in sections["gcp"]
        assert "~ listen_port = 51999 -> 51820" in sections["gcp"]
        assert "~ peer azure" in sections["aws"]
        assert '+ "192.168.20.0/24"' in sections["aws"]
        assert "Plan: 0 to add, 2 to change, 0 to destroy." in r.stdout
        doc = json.loads(run_wgmesh(fresh.dir, "plan", "--json").stdout)
        (gcp_change,) = next(n for n in doc["nodes"] if n["node"] == "gcp")["changes"]
        assert gcp_change["before"]["listen_port"] == 51999
        assert gcp_change["after"]["listen_port"] == 51820
    finally:
        run_wgmesh(fresh.dir, "apply", "--auto-approve", check=True)
    assert run_wgmesh(fresh.dir, "plan", "--detailed-exitcode").returncode == 0
