"""`wgmesh check` and `wgmesh status`: targets, matrices over ping output captured on lab hosts
(tests/fixtures/check, from the 4-node lab that `meshes.four()` mirrors), the shell with a fake transport that
runs the real probe script on a stub node with fake `ping` and `ip` (no packet is sent). The scripts and their
parsers are tested in tests/remote/test_probe.py."""

from __future__ import annotations

import dataclasses
import io
import ipaddress
import json
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import pytest
import typer
from meshes import converged, four, node, pubkey
from remote.stubs import FAKE_IP, FAKE_PING, Stubs
from typer.testing import CliRunner

from wgmesh.cli import observe as cli_observe
from wgmesh.commands import observe
from wgmesh.commands.common import ConnectOptions, ExitStatus, guard
from wgmesh.core import checks
from wgmesh.core.checks import Cell, CheckReport, Probe, Target, check_report, targets
from wgmesh.core.model import Mesh, Node, Subnet
from wgmesh.core.state import LiveState
from wgmesh.core.status import Handshake, classify, status_report
from wgmesh.remote import probe
from wgmesh.remote.probe import parse_probe_output
from wgmesh.remote.transport import CommandResult
from wgmesh.views import formats
from wgmesh.views.env import Environment
from wgmesh.views.formats import format_age, format_bytes
from wgmesh.views.json import check_to_dict, status_to_dict

FIXTURES = Path(__file__).parents[1] / "fixtures" / "check"
ip = ipaddress.ip_address
net = ipaddress.ip_network


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


def mesh_nodes(mesh: Mesh) -> list[Node]:
    return checks.checked_nodes(mesh)[0]


def t(node_name: str, address: str, subnet: str | None = None, after_peer: bool = False,
      from_subnet: str | None = None, default_probe: bool = False) -> Target:
    return Target(node_name, ip(address), net(subnet) if subnet else None, after_peer,
                  net(from_subnet) if from_subnet else None, default_probe)


def plain(ts: tuple[Target, ...]) -> tuple[Target, ...]:
    """The targets pinged from the mesh address (the captured fixtures predate subnet-to-subnet probes)."""
    return tuple(x for x in ts if x.from_subnet is None)


FOUR = four()
AWS_TARGETS = plain(targets(FOUR.node("aws"), FOUR.nodes))
GCP_TARGETS = plain(targets(FOUR.node("gcp"), FOUR.nodes))


@pytest.fixture
def probe_node(tmp_path: Path) -> Stubs:
    """A stub node (tests/remote/stubs.py) with fake `ping` and `ip`: the real probe script runs on it."""
    stubs = Stubs(tmp_path / "node")
    stubs.stub("ping", FAKE_PING)
    stubs.stub("ip", FAKE_IP)
    return stubs


# ---------------------------------------------------------------------------------------------- targets


def test_targets_are_every_other_nodes_addresses_then_its_subnet_probes() -> None:
    mesh = four()
    # aws and azure come before gcp in mesh.yaml: they ping gcp first, and gcp waits before pinging them
    assert targets(mesh.node("gcp"), mesh.nodes) == (
        t("aws", "10.0.0.1", after_peer=True),
        t("aws", "192.168.10.1", "192.168.10.0/24", after_peer=True, default_probe=True),
        t("azure", "10.0.0.2", after_peer=True),
        t("azure", "192.168.20.1", "192.168.20.0/24", after_peer=True, default_probe=True),
        t("aliyun", "10.0.0.4"),
        t("aliyun", "192.168.40.1", "192.168.40.0/24", default_probe=True),
        # then each subnet probe again, from gcp's own subnet
        t("aws", "192.168.10.1", "192.168.10.0/24", True, "192.168.30.0/24", True),
        t("azure", "192.168.20.1", "192.168.20.0/24", True, "192.168.30.0/24", True),
        t("aliyun", "192.168.40.1", "192.168.40.0/24", False, "192.168.30.0/24", True),
    )


def test_targets_use_the_declared_probe_and_every_address() -> None:
    a = dataclasses.replace(node(1, "a"), subnets=(Subnet(net("10.1.0.0/16")), Subnet(net("fd01::/64"))))
    b = dataclasses.replace(
        node(2, "b", addresses=(ip("10.0.0.2"), ip("fd00::2"))),
        subnets=(Subnet(net("172.16.0.0/16"), probe=ip("172.16.9.9")), Subnet(net("172.17.0.5/32")),
                 Subnet(net("fd02::/64"), probe=ip("fd02::10"))),
    )
    assert targets(a, [a, b]) == (
        t("b", "10.0.0.2"),
        t("b", "fd00::2"),
        t("b", "172.16.9.9", "172.16.0.0/16"),
        t("b", "172.17.0.5", "172.17.0.5/32", default_probe=True),
        t("b", "fd02::10", "fd02::/64"),
        # each of a's subnets to each of b's of the same IP version
        t("b", "172.16.9.9", "172.16.0.0/16", from_subnet="10.1.0.0/16"),
        t("b", "172.17.0.5", "172.17.0.5/32", from_subnet="10.1.0.0/16", default_probe=True),
        t("b", "fd02::10", "fd02::/64", from_subnet="fd01::/64"),
    )
    assert targets(a, [a]) == ()
    assert all(x.from_subnet is None for x in targets(node(3, "c"), [a, b]))  # no subnets of its own


def test_checked_nodes_leave_out_nodes_without_keys_and_decommissioned_ones() -> None:
    mesh = four()
    mesh = dataclasses.replace(
        mesh,
        nodes=(
            *mesh.nodes,
            node(5, "new", public_key=None),
            node(6, "old", decommission=True),
        ),
    )
    nodes, skipped = checks.checked_nodes(mesh)
    assert [n.name for n in nodes] == ["aws", "azure", "gcp", "aliyun"]
    assert skipped == {"new": "no public key yet", "old": "being decommissioned"}


# ---------------------------------------------------------------------------------------------- check matrix


def gcp_down_report() -> CheckReport:
    results: dict[str, tuple[Probe, ...] | str] = {
        "aws": parse_probe_output("aws", AWS_TARGETS, fixture("aws_gcp_down.txt"), "wg0"),
        "gcp": parse_probe_output("gcp", GCP_TARGETS, fixture("gcp_wg0_down.txt"), "wg0"),
        "aliyun": "cannot connect to root@192.0.2.4:22: Connection refused",
    }
    return check_report(FOUR.node_names, ["aws", "gcp", "aliyun"], results, {"new": "no public key yet"})


def test_check_matrix_cells() -> None:
    r = gcp_down_report()
    cells = {(p.source, p.dest): (p.cell, p.rtt_ms) for p in r.pairs()}
    assert cells == {
        ("aws", "azure"): (Cell.OK, 4.76),
        ("aws", "gcp"): (Cell.FAILED, None),
        ("aws", "aliyun"): (Cell.OK, 0.439),
        ("gcp", "aws"): (Cell.FAILED, None),
        ("gcp", "azure"): (Cell.FAILED, None),
        ("gcp", "aliyun"): (Cell.FAILED, None),
        ("aliyun", "aws"): (Cell.NOT_CHECKED, None),
        ("aliyun", "azure"): (Cell.NOT_CHECKED, None),
        ("aliyun", "gcp"): (Cell.NOT_CHECKED, None),
    }
    assert r.pair("gcp", "gcp").cell is Cell.SELF
    assert not r.ok


def test_a_pair_shows_its_slowest_probe() -> None:
    a, s = t("azure", "10.0.0.2"), t("azure", "192.168.20.1", "192.168.20.0/24")
    probes = (Probe("aws", a, True, 0.4), Probe("aws", s, True, 2.5))
    assert check_report(["aws", "azure"], ["aws"], {"aws": probes}).pair("aws", "azure").rtt_ms == 2.5
    no_rtt = (Probe("aws", a, True, None), Probe("aws", s, True, None))
    pair = check_report(["aws", "azure"], ["aws"], {"aws": no_rtt}).pair("aws", "azure")
    assert (pair.cell, pair.rtt_ms, formats.format_rtt(pair.rtt_ms)) == (Cell.OK, None, "ok")


@pytest.mark.parametrize(("ms", "text"), [(0.0441, "ok 0.04 ms"), (5.74, "ok 5.7 ms"), (318.0, "ok 318 ms")])
def test_format_rtt(ms: float, text: str) -> None:
    assert formats.format_rtt(ms) == text


def test_failures_are_named_lines_and_the_broken_node_is_the_suspect() -> None:
    r = gcp_down_report()
    assert r.failures() == [
        "aliyun: cannot connect to root@192.0.2.4:22: Connection refused",
        "aws -> gcp 10.0.0.3: no reply",
        "aws -> gcp 192.168.30.1 (subnet 192.168.30.0/24): no reply",
        "gcp -> aws 10.0.0.1: connect: Network is unreachable",
        "gcp -> aws 192.168.10.1 (subnet 192.168.10.0/24): connect: Network is unreachable",
        "gcp -> azure 10.0.0.2: connect: Network is unreachable",
        "gcp -> azure 192.168.20.1 (subnet 192.168.20.0/24): connect: Network is unreachable",
        "gcp -> aliyun 10.0.0.4: connect: Network is unreachable",
        "gcp -> aliyun 192.168.40.1 (subnet 192.168.40.0/24): connect: Network is unreachable",
    ]
    assert r.suspects() == ["gcp"]


def test_a_suspect_needs_failed_pairs_both_ways() -> None:
    """Only aws's probes (`--target aws`), its pair with gcp failing: nothing is known of gcp -> aws, so gcp is
    no node that fails "both ways"."""
    probes = tuple(Probe("aws", x, x.node != "gcp", 1.0, None if x.node != "gcp" else "no reply", 1, "wg0")
                   for x in AWS_TARGETS)
    r = check_report(FOUR.node_names, ["aws"], {"aws": probes})
    assert not r.ok and r.suspects() == []


def test_all_good_is_ok_and_has_no_suspects() -> None:
    probes = tuple(Probe("aws", x, True, 1.0, None, 1, "wg0") for x in AWS_TARGETS)
    r = check_report(FOUR.node_names, ["aws"], {"aws": probes})
    assert r.ok and r.failures() == [] and r.suspects() == []
    assert all(p.cell is Cell.OK for p in r.pairs())
    everything_failed = check_report(
        FOUR.node_names, ["aws"], {"aws": tuple(dataclasses.replace(p, ok=False, error="x") for p in probes)}
    )
    assert everything_failed.suspects() == [], "no working pair: nothing to single out"


def subnet_report(**env: str) -> CheckReport:
    """aws's subnet 192.168.10.0/24 to azure's probe 192.168.20.10 (and the plain probes), as a report."""
    azure = t("azure", "10.0.0.2")
    probe_ = t("azure", "192.168.20.10", "192.168.20.0/24")
    pair = t("azure", "192.168.20.10", "192.168.20.0/24", from_subnet="192.168.10.0/24")
    results = {
        "aws": (Probe("aws", azure, True, 1.0), Probe("aws", probe_, True, 1.2),
                Probe("aws", pair, env.get("pair") != "down", None, None if env.get("pair") != "down" else "no reply",
                      from_address=ip("192.168.10.1"))),
    }
    return check_report(["aws", "azure"], ["aws"], results)


def test_a_failed_subnet_pair_fails_the_check_and_names_the_subnets() -> None:
    ok = subnet_report()
    assert ok.ok and ok.failures() == []
    assert [(p.label, p.cell) for p in ok.subnet_pairs()] == [("192.168.10.0/24 -> 192.168.20.10", Cell.OK)]
    r = subnet_report(pair="down")
    assert not r.ok
    assert r.failures() == ["aws -> azure: 192.168.10.0/24 -> 192.168.20.10 failed: no reply"]
    assert r.pair("aws", "azure").cell is Cell.FAILED
    (sp,) = r.subnet_pairs()
    assert (sp.source, sp.from_subnet, sp.dest, sp.to_subnet, sp.address, sp.cell, sp.error) == (
        "aws", net("192.168.10.0/24"), "azure", net("192.168.20.0/24"), ip("192.168.20.10"), Cell.FAILED,
        "no reply")


def test_a_skipped_subnet_probe_is_a_warning_not_a_failure() -> None:
    pair = t("azure", "192.168.20.10", "192.168.20.0/24", from_subnet="192.168.10.0/24")
    skipped = Probe("aws", pair, False, None, "aws has no address inside 192.168.10.0/24", 0, skipped=True)
    r = check_report(["aws", "azure"], ["aws"], {"aws": (Probe("aws", t("azure", "10.0.0.2"), True, 1.0), skipped)})
    assert r.ok and r.failures() == [] and r.pair("aws", "azure").cell is Cell.OK
    assert [p.cell for p in r.subnet_pairs()] == [Cell.NOT_CHECKED]
    assert r.warnings() == [
        "aws: no address inside its subnet 192.168.10.0/24 to ping from, so traffic from 192.168.10.0/24 to the "
        "other subnets was not checked."]


def test_a_subnet_without_a_probe_is_warned_about_once() -> None:
    probes = tuple(Probe("aws", x, True, 1.0) for x in targets(FOUR.node("aws"), FOUR.nodes))
    r = check_report(FOUR.node_names, ["aws"], {"aws": probes})
    assert r.ok
    assert len(r.warnings()) == 3  # azure's, gcp's and aliyun's subnets; each pinged twice, said once
    assert r.warnings()[0] == (
        "azure: subnet 192.168.20.0/24 has no probe, so check pings 192.168.20.1, its first address. That is "
        "often the node itself or a cloud's VPC router, which answer without forwarding: it proves nothing "
        "about the machines behind the subnet. Set the subnet's `probe` to the address of a machine inside it.")
    with_probe = dataclasses.replace(FOUR, nodes=tuple(
        dataclasses.replace(n, subnets=tuple(dataclasses.replace(x, probe=x.prefix.network_address + 10)
                                             for x in n.subnets)) for n in FOUR.nodes))
    probes = tuple(Probe("aws", x, True, 1.0) for x in targets(with_probe.node("aws"), with_probe.nodes))
    assert check_report(FOUR.node_names, ["aws"], {"aws": probes}).warnings() == []


def test_check_json_document() -> None:
    doc = json.loads(json.dumps(check_to_dict(gcp_down_report())))
    assert doc["format_version"] == "1" and doc["type"] == "check" and doc["ok"] is False
    assert doc["nodes"] == ["aws", "azure", "gcp", "aliyun"]
    assert doc["sources"] == ["aws", "gcp", "aliyun"]
    assert doc["skipped"] == [{"node": "new", "reason": "no public key yet"}]
    assert doc["errors"] == [{"node": "aliyun", "error": "cannot connect to root@192.0.2.4:22: Connection refused"}]
    assert {"from": "aws", "to": "azure", "result": "ok", "rtt_ms": 4.76} in doc["pairs"]
    assert {"from": "aliyun", "to": "gcp", "result": "not checked", "rtt_ms": None} in doc["pairs"]
    assert doc["probes"][2] == {
        "from": "aws", "to": "gcp", "address": "10.0.0.3", "subnet": None, "from_subnet": None,
        "from_address": None, "skipped": False, "ok": False, "rtt_ms": None, "attempts": 8, "device": "wg0",
        "error": "no reply",
    }
    assert isinstance(doc["warnings"], list)
    assert doc["suspects"] == ["gcp"]
    assert len(doc["failures"]) == 9


# ---------------------------------------------------------------------------------------------- status


@pytest.mark.parametrize(
    ("handshake", "now", "expected"),
    [
        (0, 1_700_000_000, (Handshake.NEVER, None)),
        (1_700_000_000, 1_700_000_000, (Handshake.FRESH, 0)),
        (1_700_000_000, 1_700_000_179, (Handshake.FRESH, 179)),
        (1_700_000_000, 1_700_000_180, (Handshake.STALE, 180)),
        (1_700_000_000, 1_700_086_400, (Handshake.STALE, 86_400)),
        (1_700_000_010, 1_700_000_000, (Handshake.FRESH, 0)),  # node clock slightly behind the handshake
    ],
)
def test_classify(handshake: int, now: int, expected: tuple[Handshake, int | None]) -> None:
    assert classify(handshake, now) == expected


def with_peer(state: LiveState, key: str, **changes: object) -> LiveState:
    peers = dict(state.peers)
    peers[key] = dataclasses.replace(peers[key], **changes)
    return dataclasses.replace(state, peers=peers)


def test_status_matrix_from_live_states() -> None:
    mesh = FOUR
    now = 1_700_000_100
    aws = with_peer(converged(mesh, "aws"), pubkey(4), latest_handshake=0, endpoint=None, rx_bytes=0, tx_bytes=0)
    azure = converged(mesh, "azure")
    azure = with_peer(azure, pubkey(1), latest_handshake=now - 600)
    peers = {k: v for k, v in azure.peers.items() if k != pubkey(3)}  # azure lost gcp
    stranger = dataclasses.replace(azure.peers[pubkey(1)], public_key=pubkey(99))
    azure = dataclasses.replace(azure, peers={**peers, pubkey(99): stranger}, link_up=False)
    results: dict[str, LiveState | str] = {"aws": aws, "azure": azure, "gcp": "cannot connect: timed out"}
    report = status_report(mesh, mesh_nodes(mesh), ["aws", "azure", "gcp"], results,
                           {"aws": now, "azure": None}, now=now + 5)
    grid = {(v.source, v.peer): (v.state, v.age) for v in report.views}
    assert grid == {
        ("aws", "azure"): (Handshake.FRESH, 100),  # converged(): handshake at 1_700_000_000, node clock
        ("aws", "gcp"): (Handshake.FRESH, 100),
        ("aws", "aliyun"): (Handshake.NEVER, None),
        ("azure", "aws"): (Handshake.STALE, 605),  # no clock from azure: the controller's
        ("azure", "gcp"): (Handshake.NO_PEER, None),
        ("azure", "aliyun"): (Handshake.FRESH, 105),
        ("gcp", "aws"): (Handshake.UNREACHABLE, None),
        ("gcp", "azure"): (Handshake.UNREACHABLE, None),
        ("gcp", "aliyun"): (Handshake.UNREACHABLE, None),
    }
    assert report.view("aws", "aws").state is Handshake.SELF
    assert report.view("aws", "gcp").endpoint == "198.51.100.3:51820"
    assert (report.view("aws", "gcp").rx_bytes, report.view("aws", "gcp").tx_bytes) == (1000, 2000)
    assert not report.ok
    assert report.errors() == ["gcp: cannot connect: timed out"]
    notes = {r.node: r.notes for r in report.readings}
    assert notes == {
        "aws": [],
        "azure": ["interface is down", f"1 peer(s) not in the mesh: {pubkey(99)}"],
        "gcp": [],
    }


def test_status_json_document() -> None:
    mesh = FOUR
    results: dict[str, LiveState | str] = {"aws": converged(mesh, "aws"), "gcp": "no route to host"}
    report = status_report(mesh, mesh_nodes(mesh), ["aws", "gcp"], results, {"aws": 1_700_000_030}, now=0)
    doc = json.loads(json.dumps(status_to_dict(report)))
    assert (doc["format_version"], doc["type"], doc["ok"], doc["fresh_seconds"]) == ("1", "status", False, 180)
    aws, gcp = doc["readings"]
    assert aws["node"] == "aws" and aws["error"] is None and aws["clock"] == 1_700_000_030
    assert [p["peer"] for p in aws["peers"]] == ["azure", "gcp", "aliyun"]
    assert aws["peers"][1] == {
        "peer": "gcp", "path": "direct", "via": None, "handshake": "fresh", "handshake_age_s": 30,
        "handshake_before_last_apply": False, "latest_handshake": 1_700_000_000,
        "endpoint": "198.51.100.3:51820", "rx_bytes": 1000, "tx_bytes": 2000,
    }
    assert gcp["error"] == "no route to host" and gcp["link_up"] is None
    assert {p["handshake"] for p in gcp["peers"]} == {"unreachable"}
    assert doc["errors"] == ["gcp: no route to host"]


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, "never"), (0, "0s"), (59, "59s"), (60, "1m 00s"), (185, "3m 05s"), (3600, "1h 00m"),
     (7_620, "2h 07m"), (86_400, "1d 00h"), (356_400, "4d 03h")],
)
def test_format_age(seconds: int | None, text: str) -> None:
    assert format_age(seconds) == text


@pytest.mark.parametrize(
    ("n", "text"),
    [(0, "0 B"), (1023, "1023 B"), (1024, "1.0 KiB"), (1536, "1.5 KiB"), (12 * 1024**2, "12.0 MiB"),
     (3 * 1024**4, "3.0 TiB"), (5000 * 1024**4, "5000.0 TiB")],
)
def test_format_bytes(n: int, text: str) -> None:
    assert format_bytes(n) == text


# ---------------------------------------------------------------------------------------------- the shell


class LocalTransport:
    """Runs each node's script on a stub node (tests/remote/stubs.py: fake ping/ip); per-node FAKE_* settings;
    some nodes fail to connect."""

    def __init__(self, stubs: Stubs | None, env: Mapping[str, Mapping[str, str]], refuse: Mapping[str, str]) -> None:
        self.stubs = stubs
        self.env = env
        self.refuse = refuse
        self.scripts: dict[str, str] = {}
        self.connected: list[str] = []
        self.closed = False

    def connect(self, nodes: Iterable[Node]) -> dict[str, str]:
        names = [n.name for n in nodes]
        self.connected = [n for n in names if n not in self.refuse]
        return {n: self.refuse[n] for n in names if n in self.refuse}

    def run(self, node: str, script: str, timeout: float | None = None) -> CommandResult:
        self.scripts[node] = script
        assert self.stubs is not None
        return self.stubs.run(script, {"FAKE_LOG": str(self.stubs.root / "pings.log"), **self.env.get(node, {})})

    def run_many(self, scripts: Mapping[str, str], timeout: float | None = None) -> dict[str, CommandResult | str]:
        assert set(scripts) <= set(self.connected)
        return {n: self.run(n, s, timeout) for n, s in scripts.items()}

    def close(self) -> None:
        self.closed = True


def env_io() -> Environment:
    return Environment(io.StringIO(), io.StringIO(), color=False, stdin_isatty=False)


def write_mesh(tmp_path: Path) -> Path:
    path = tmp_path / "mesh.yaml"
    lines = ["version: 1", "mesh:", "  name: t", "  interface: wg0", "  network: 10.0.0.0/24", "nodes:"]
    for i, name in enumerate(("aws", "azure", "gcp", "aliyun"), 1):
        lines += [f"  {name}:", f"    address: 10.0.0.{i}", f"    public_key: {pubkey(i)}",
                  f"    endpoint: 198.51.100.{i}:51820", f"    subnets: [192.168.{i}0.0/24]",
                  f"    ssh: {{host: 192.0.2.{i}}}"]
    lines += ["  later:", "    address: 10.0.0.9", "    ssh: {host: 192.0.2.9}"]
    path.write_text("\n".join(lines) + "\n")
    (tmp_path / "known_hosts").write_text("")
    return path


def run_with(
    fn: Callable[..., ExitStatus], tmp_path: Path, probe_node: Stubs, *, json_out: bool = False,
    targets_: tuple[str, ...] = (), env: Mapping[str, Mapping[str, str]] | None = None,
    refuse: Mapping[str, str] | None = None,
) -> tuple[ExitStatus, str, str, LocalTransport]:
    transport = LocalTransport(probe_node, env or {}, refuse or {})
    opts = observe.ObserveOptions(write_mesh(tmp_path), ConnectOptions(targets=targets_), json_out)
    e = env_io()
    status = guard(lambda: fn(opts, e, lambda _o, _p: transport), e)
    return status, e.stdout.getvalue(), e.stderr.getvalue(), transport  # type: ignore[attr-defined]


def test_run_check_all_pass(tmp_path: Path, probe_node: Stubs) -> None:
    status, out, err, transport = run_with(observe.run_check, tmp_path, probe_node)
    assert status is ExitStatus.OK, out + err
    assert set(transport.scripts) == {"aws", "azure", "gcp", "aliyun"}
    assert transport.closed
    assert "Not checked: later (no public key yet)" in out
    header = next(line for line in out.splitlines() if "from \\ to" in line)
    assert header.split()[3:] == ["aws", "azure", "gcp", "aliyun"]
    rows = {line.split()[0]: line for line in out.splitlines() if line.split() and line.split()[0] in FOUR.node_names}
    assert set(rows) == {"aws", "azure", "gcp", "aliyun"}
    assert all(rows[n].count("ok 0.50 ms") == 3 for n in rows)
    # 3 mesh addresses and 3 subnet probes of the others, and those 3 probes again from the node's own subnet
    assert "Check passed: 12 pairs of 4 nodes, 36 probes, all answered, routed through wg0." in out
    assert "FAILED" not in out


def test_run_check_names_the_broken_and_the_unreachable_node(tmp_path: Path, probe_node: Stubs) -> None:
    down = {"FAKE_DOWN": "10.0.0.3 192.168.30.1"}
    status, out, _err, transport = run_with(
        observe.run_check, tmp_path, probe_node,
        env={"aws": down, "azure": down, "gcp": {"FAKE_ERROR": "10.0.0.1 10.0.0.2 10.0.0.4"}},
        refuse={"aliyun": "cannot connect to root@192.0.2.4:22: Connection refused"},
    )
    assert status is ExitStatus.ERROR
    assert "aliyun" not in transport.scripts
    lines = out.splitlines()
    assert "  aliyun: cannot connect to root@192.0.2.4:22: Connection refused" in lines
    assert "  aws -> gcp 10.0.0.3: no reply" in lines
    assert "  gcp -> azure 10.0.0.2: sendmsg: Required key not available" in lines
    row = next(line for line in lines if line.split()[:1] == ["aliyun"])
    assert row.split()[1:] == ["not", "checked"] * 3 + ["-"]
    assert "Every pair with gcp fails, both ways: start with gcp." in lines
    assert "Check failed: 5 of 12 pairs failed; 3 not checked (no probes from aliyun)." in lines


def test_run_check_json(tmp_path: Path, probe_node: Stubs) -> None:
    status, out, _err, _t = run_with(
        observe.run_check, tmp_path, probe_node, json_out=True, targets_=("gcp",),
        env={"gcp": {"FAKE_DOWN": "192.168.40.1"}},
    )
    assert status is ExitStatus.ERROR
    doc = json.loads(out)
    assert doc["sources"] == ["gcp"] and doc["ok"] is False
    assert doc["failures"] == ["gcp -> aliyun 192.168.40.1 (subnet 192.168.40.0/24): no reply",
                               "gcp -> aliyun: 192.168.30.0/24 -> 192.168.40.1 failed: no reply"]
    assert [p["result"] for p in doc["pairs"]] == ["ok", "ok", "failed"]


def test_run_check_fails_a_subnet_pair_that_only_the_subnet_address_cannot_reach(
    tmp_path: Path, probe_node: Stubs
) -> None:
    """azure's probe answers aws's mesh address but not aws's subnet address (no route back to
    192.168.10.0/24 on azure's side): the check fails and names the subnet pair."""
    status, out, _err, _t = run_with(
        observe.run_check, tmp_path, probe_node, json_out=True, targets_=("aws",),
        env={"aws": {"FAKE_DOWN": "192.168.10.1>192.168.20.1"}},
    )
    assert status is ExitStatus.ERROR
    doc = json.loads(out)
    assert doc["failures"] == ["aws -> azure: 192.168.10.0/24 -> 192.168.20.1 failed: no reply"]
    assert [p["result"] for p in doc["pairs"]] == ["failed", "ok", "ok"]


def test_run_check_passes_when_a_node_has_no_address_in_its_subnet(tmp_path: Path, probe_node: Stubs) -> None:
    status, out, _err, _t = run_with(observe.run_check, tmp_path, probe_node, json_out=True, targets_=("aws",),
                                     env={"aws": {"FAKE_SRC": "none"}})
    assert status is ExitStatus.OK, out
    assert json.loads(out)["ok"] is True


def test_run_check_rejects_a_target_outside_the_mesh(tmp_path: Path, probe_node: Stubs) -> None:
    status, out, err, transport = run_with(observe.run_check, tmp_path, probe_node, targets_=("later",))
    assert status is ExitStatus.ERROR and out == ""
    assert err == "Error: --target later: not part of the mesh (no public key yet)\n"
    assert transport.scripts == {}
    status, _out, err, _t = run_with(observe.run_check, tmp_path, probe_node, targets_=("nope",))
    assert status is ExitStatus.ERROR and err.startswith("Error: --target nope: no such node in mesh.yaml")


STATUS_OUTPUT = """@@wgmesh:clock
{clock}
@@wgmesh:v1
@@wgmesh:preflight
os debian
@@wgmesh:wg
(hidden)\t{me}\t51820\toff
{peer}\t(none)\t198.51.100.2:51820\t10.0.0.2/32\t{hs}\t4096\t8192\t25
@@wgmesh:link
[{{"ifname":"wg0","flags":["POINTOPOINT","NOARP","UP","LOWER_UP"],"operstate":"UNKNOWN"}}]
@@wgmesh:addr
[]
@@wgmesh:route4
[]
@@wgmesh:route6
[]
@@wgmesh:keyfile
absent
@@wgmesh:conf
absent
@@wgmesh:systemd
no-systemd
@@wgmesh:end
"""


class CannedTransport(LocalTransport):
    def __init__(self, outputs: Mapping[str, CommandResult | str]) -> None:
        super().__init__(None, {}, {})
        self.outputs = outputs

    def run_many(self, scripts: Mapping[str, str], timeout: float | None = None) -> dict[str, CommandResult | str]:
        self.scripts.update(scripts)
        return {n: self.outputs[n] for n in scripts}


def test_run_status_human_and_json(tmp_path: Path) -> None:
    out_aws = STATUS_OUTPUT.format(clock=1_700_000_000, me=pubkey(1), peer=pubkey(2), hs=1_699_999_800)
    outputs: dict[str, CommandResult | str] = {
        "aws": CommandResult(0, out_aws, ""),
        "azure": CommandResult(0, "garbage\n", ""),
        "gcp": CommandResult(1, "", "sh: 1: wg: not found\n"),
        "aliyun": "connection lost: EOF",
    }
    for as_json in (False, True):
        transport = CannedTransport(outputs)
        opts = observe.ObserveOptions(write_mesh(tmp_path), ConnectOptions(), as_json)
        e = env_io()
        status = guard(lambda: observe.run_status(opts, e, lambda _o, _p: transport), e)  # noqa: B023
        assert status is ExitStatus.ERROR
        assert transport.scripts["aws"] == probe.status_script("wg0", 30.0)  # the node stops it 35 s on
        out = e.stdout.getvalue()  # type: ignore[attr-defined]
        if as_json:
            doc = json.loads(out)
            assert [r["node"] for r in doc["readings"]] == ["aws", "azure", "gcp", "aliyun"]
            peers = {p["peer"]: p for p in doc["readings"][0]["peers"]}
            assert peers["azure"]["handshake"] == "stale" and peers["azure"]["handshake_age_s"] == 200
            assert peers["gcp"]["handshake"] == "no peer"
            continue
        lines = out.splitlines()
        row = next(line for line in lines if line.split()[:2] == ["aws", "-"])
        assert row.split() == ["aws", "-", "3m", "20s", "no", "peer", "no", "peer"]
        detail = next(line for line in lines if line.split()[:2] == ["aws", "azure"])
        assert detail.split() == ["aws", "azure", "direct", "3m", "20s", "198.51.100.2:51820", "4.0", "KiB", "8.0",
                                  "KiB"]
        assert "Error: azure: cannot understand the node's output: read output: missing the @@wgmesh:v1 header " \
               "(not wgmesh read output?)" in lines
        assert "Error: gcp: the script failed on the node: sh: 1: wg: not found" in lines
        assert "Error: aliyun: connection lost: EOF" in lines
        assert "3 of 4 nodes could not be read." in lines


def test_run_check_reports_output_it_cannot_read(tmp_path: Path) -> None:
    transport = CannedTransport({
        "aws": CommandResult(0, "@@wgmesh:check 1\n@@wgmesh:noping\n@@wgmesh:end\n", ""),
        "azure": CommandResult(1, "", "mktemp: failed to create directory\n"),
    })
    opts = observe.ObserveOptions(write_mesh(tmp_path), ConnectOptions(targets=("aws", "azure")))
    e = env_io()
    assert guard(lambda: observe.run_check(opts, e, lambda _o, _p: transport), e) is ExitStatus.ERROR
    lines = e.stdout.getvalue().splitlines()  # type: ignore[attr-defined]
    assert "  aws: cannot understand the probe output: no ping command on the node (install iputils-ping)" in lines
    assert "  azure: the script failed on the node: mktemp: failed to create directory" in lines
    assert "Check failed: 6 not checked (no probes from aws, azure)." in lines


# ---------------------------------------------------------------------------------------------- typer commands


def test_cli_commands_parse_options_and_report_errors_cleanly(tmp_path: Path) -> None:
    app = typer.Typer()
    app.command()(cli_observe.check)
    app.command()(cli_observe.status)
    runner = CliRunner()
    for cmd in ("check", "status"):
        result = runner.invoke(app, [cmd, "--help"])
        assert result.exit_code == 0
        for opt in ("--file", "--target", "--parallelism", "--timeout", "--accept-new-host-keys", "--json",
                    "--no-color"):
            assert opt in result.output
        missing = tmp_path / "none.yaml"
        result = runner.invoke(app, [cmd, "-f", str(missing)])
        assert result.exit_code == 1
        assert "none.yaml" in result.output and "Traceback" not in result.output
        mesh = write_mesh(tmp_path)
        result = runner.invoke(app, [cmd, "--target", "nope"], env={"WGMESH_FILE": str(mesh)})
        assert result.exit_code == 1
        assert "Error: --target nope: no such node in mesh.yaml" in result.output
        result = runner.invoke(app, [cmd, "--parallelism", "0", "-f", str(mesh)])
        assert result.exit_code == 2
