"""`wgmesh check` and `wgmesh status`: script builder, parsers over ping output captured on lab hosts
(tests/fixtures/check, from the 4-node lab that `meshes.four()` mirrors), matrices, the shell with a fake
transport that runs the real probe script locally against fake `ping` and `ip` commands (no packet is sent)."""

from __future__ import annotations

import dataclasses
import io
import ipaddress
import json
import shutil
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import pytest
import typer
from meshes import converged, four, node, pubkey
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
from wgmesh.remote.probe import CheckParseError, parse_clock, parse_probe_output, probe_result, probe_script
from wgmesh.remote.transport import CommandResult
from wgmesh.views import formats
from wgmesh.views.env import Environment
from wgmesh.views.formats import format_age, format_bytes
from wgmesh.views.json import check_to_dict, status_to_dict

FIXTURES = Path(__file__).parent / "fixtures" / "check"
ip = ipaddress.ip_address
net = ipaddress.ip_network


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


def mesh_nodes(mesh: Mesh) -> list[Node]:
    return checks.checked_nodes(mesh)[0]


def t(node_name: str, address: str, subnet: str | None = None, after_peer: bool = False) -> Target:
    return Target(node_name, ip(address), net(subnet) if subnet else None, after_peer)


# ---------------------------------------------------------------------------------------------- targets


def test_targets_are_every_other_nodes_addresses_then_its_subnet_probes() -> None:
    mesh = four()
    # aws and azure come before gcp in mesh.yaml: they ping gcp first, and gcp waits before pinging them
    assert targets(mesh.node("gcp"), mesh.nodes) == (
        t("aws", "10.0.0.1", after_peer=True),
        t("aws", "192.168.10.1", "192.168.10.0/24", after_peer=True),
        t("azure", "10.0.0.2", after_peer=True),
        t("azure", "192.168.20.1", "192.168.20.0/24", after_peer=True),
        t("aliyun", "10.0.0.4"),
        t("aliyun", "192.168.40.1", "192.168.40.0/24"),
    )


def test_the_later_node_of_a_pair_gives_the_earlier_a_head_start() -> None:
    """Two first packets at once make two handshakes at once, and both can be lost for 5 s."""
    script = probe_script((t("a", "10.0.0.1", after_peer=True), t("c", "10.0.0.3")))
    first, second = (line for line in script.splitlines() if line.startswith("( exec"))
    assert f"sleep {checks.HEAD_START};" in first and "sleep" not in second


def test_targets_use_the_declared_probe_and_every_address() -> None:
    a = node(1, "a")
    b = dataclasses.replace(
        node(2, "b", addresses=(ip("10.0.0.2"), ip("fd00::2"))),
        subnets=(Subnet(net("172.16.0.0/16"), probe=ip("172.16.9.9")), Subnet(net("172.17.0.5/32"))),
    )
    assert targets(a, [a, b]) == (
        t("b", "10.0.0.2"),
        t("b", "fd00::2"),
        t("b", "172.16.9.9", "172.16.0.0/16"),
        t("b", "172.17.0.5", "172.17.0.5/32"),
    )
    assert targets(a, [a]) == ()


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


# ---------------------------------------------------------------------------------------------- the script


def test_probe_script_is_valid_sh_and_pings_each_target_in_the_background() -> None:
    mesh = four()
    ts = targets(mesh.node("aws"), mesh.nodes)
    script = probe_script(ts)
    assert subprocess.run(["sh", "-n"], input=script, text=True, capture_output=True).returncode == 0
    ping_lines = [line for line in script.splitlines() if "ping -" in line]
    assert len(ping_lines) == len(ts)
    for line, target in zip(ping_lines, ts, strict=True):
        assert f"ping -4 -c 1 -W 1 -n {target.address};" in line
        assert f"ip -o route get {target.address};" in line
        assert line.startswith("( ") and line.endswith(") &")
    assert script.index("wait") > script.rindex(") &")
    v6 = probe_script((t("b", "fd00::2"),))
    assert "ping -6 -c 1 -W 1 -n fd00::2;" in v6
    assert 'cat 0 1 2 3 4 5\n' in script, "one cat prints every probe's file, in order"


FAKE_PING = r"""#!/bin/sh
for a; do addr=$a; done
echo "$addr" >> "$FAKE_LOG"
if [ -n "$FAKE_BARRIER" ]; then
    # every probe must be running at once: wait (10 s at most) until FAKE_BARRIER pings have started
    : > "$FAKE_LOG.started.$addr"
    i=0
    while [ "$(ls "$FAKE_LOG".started.* | wc -l)" -lt "$FAKE_BARRIER" ]; do
        i=$((i + 1)); [ $i -le 100 ] || { echo "ping: barrier: the probes do not run in parallel" >&2; exit 2; }
        sleep 0.1
    done
fi
echo "PING $addr ($addr) 56(84) bytes of data."
tries=$(grep -cx "$addr" "$FAKE_LOG")
case " $FAKE_DOWN " in
*" $addr "*) lost=1;;
*) case " $FAKE_FLAKY " in *" $addr "*) [ "$tries" -lt 3 ] && lost=1;; esac;;
esac
if [ -n "$lost" ]; then
    echo; echo "--- $addr ping statistics ---"
    echo "1 packets transmitted, 0 received, 100% packet loss, time 0ms"; echo
    exit 1
fi
case " $FAKE_ERROR " in
*" $addr "*) echo "ping: sendmsg: Required key not available" >&2; exit 2;;
esac
echo "64 bytes from $addr: icmp_seq=1 ttl=64 time=${FAKE_RTT:-0.5} ms"
echo; echo "--- $addr ping statistics ---"
echo "1 packets transmitted, 1 received, 0% packet loss, time 0ms"
echo "rtt min/avg/max/mdev = ${FAKE_RTT:-0.5}/${FAKE_RTT:-0.5}/${FAKE_RTT:-0.5}/0.000 ms"
"""

FAKE_IP = r"""#!/bin/sh
for a; do addr=$a; done
echo "$addr dev ${FAKE_DEV:-wg0} src 10.0.0.1 uid 0 \    cache "
"""


@pytest.fixture
def fake_bin(tmp_path: Path) -> Path:
    """A folder with fake `ping` and `ip` (behaviour from FAKE_* variables); the log lists every ping."""
    if shutil.which("sh") is None:
        pytest.skip("needs /bin/sh")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("ping", FAKE_PING), ("ip", FAKE_IP)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    return bin_dir


def run_script(script: str, bin_dir: Path, **env: str) -> CommandResult:
    full = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "FAKE_LOG": str(bin_dir.parent / "pings.log"),
        "TMPDIR": str(bin_dir.parent),
        **env,
    }
    r = subprocess.run(["/bin/sh", "-s"], input=script, text=True, capture_output=True, env=full, timeout=30)
    return CommandResult(r.returncode, r.stdout, r.stderr)


def test_script_runs_probes_in_parallel_retries_silence_and_cleans_up(fake_bin: Path) -> None:
    mesh = four()
    ts = targets(mesh.node("aws"), mesh.nodes)
    got = run_script(probe_script(ts), fake_bin, FAKE_BARRIER=str(len(ts)), FAKE_DOWN="10.0.0.3",
                     FAKE_FLAKY="192.168.30.1", FAKE_ERROR="192.168.40.1")
    assert got.exit_status == 0, got.stderr
    log = (fake_bin.parent / "pings.log").read_text().split()
    retries = ["10.0.0.3"] * (checks.ATTEMPTS - 1) + ["192.168.30.1"] * 2
    assert sorted(log) == sorted([str(x.address) for x in ts] + retries)
    probes = parse_probe_output("aws", ts, got.stdout, "wg0")
    assert [(p.target.address.exploded, p.ok, p.attempts, p.error) for p in probes] == [
        ("10.0.0.2", True, 1, None),
        ("192.168.20.1", True, 1, None),
        ("10.0.0.3", False, checks.ATTEMPTS, "no reply"),
        ("192.168.30.1", True, 3, None),  # no reply twice, then an answer
        ("10.0.0.4", True, 1, None),
        ("192.168.40.1", False, 1, "sendmsg: Required key not available"),  # an error is not retried
    ]
    assert [p.rtt_ms for p in probes if p.ok] == [0.5] * 4
    leftovers = [p.name for p in fake_bin.parent.iterdir() if p.name != "bin" and not p.name.startswith("pings.log")]
    assert leftovers == [], "the script leaves its temporary folder behind"


def test_script_reports_probes_leaving_by_another_device(fake_bin: Path) -> None:
    ts = (t("b", "10.0.0.2"),)
    probes = parse_probe_output("a", ts, run_script(probe_script(ts), fake_bin, FAKE_DEV="eth0").stdout, "wg0")
    assert probes == (Probe("a", ts[0], False, 0.5, "answered through eth0, not wg0", 1, "eth0"),)


def test_output_of_a_node_without_ping() -> None:
    with pytest.raises(CheckParseError, match="no ping command on the node"):
        parse_probe_output("a", (t("b", "10.0.0.2"),), "@@wgmesh:check 1\n@@wgmesh:noping\n@@wgmesh:end\n", "wg0")


# ---------------------------------------------------------------------------------------------- parsing


FOUR = four()
AWS_TARGETS = targets(FOUR.node("aws"), FOUR.nodes)
GCP_TARGETS = targets(FOUR.node("gcp"), FOUR.nodes)
GHOSTS = (t("ghost", "10.0.0.77"), t("ghost", "192.168.50.1"), t("ghost", "fd00::1"))


@pytest.mark.parametrize(
    ("name", "source", "ts", "expected"),
    [
        (
            "aws_mixed.txt",  # the mesh, an address no peer routes, addresses with no route at all
            "aws",
            AWS_TARGETS + GHOSTS,
            [
                (True, 0.481, None, 1, "wg0"),
                (True, 0.558, None, 1, "wg0"),
                (True, 1.20, None, 1, "wg0"),
                (True, 0.624, None, 1, "wg0"),
                (True, 0.796, None, 1, "wg0"),
                (True, 0.547, None, 1, "wg0"),
                (False, None, "no reply", 8, "wg0"),
                (False, None, "connect: Network is unreachable", 1, None),
                (False, None, "connect: Network is unreachable", 1, None),
            ],
        ),
        (
            "aws_after_apply.txt",  # aliyun (behind NAT) answers once its handshake is through, 5 s after apply
            "aws",
            AWS_TARGETS,
            [
                (True, 0.889, None, 1, "wg0"),
                (True, 6.49, None, 1, "wg0"),
                (True, 1.91, None, 1, "wg0"),
                (True, 3.32, None, 1, "wg0"),
                (True, 509.0, None, 5, "wg0"),
                (True, 508.0, None, 5, "wg0"),
            ],
        ),
        (
            "aws_gcp_down.txt",
            "aws",
            AWS_TARGETS,
            [
                (True, 4.76, None, 1, "wg0"),
                (True, 0.332, None, 1, "wg0"),
                (False, None, "no reply", 8, "wg0"),
                (False, None, "no reply", 8, "wg0"),
                (True, 0.439, None, 1, "wg0"),
                (True, 0.434, None, 1, "wg0"),
            ],
        ),
        ("gcp_wg0_down.txt", "gcp", GCP_TARGETS, [(False, None, "connect: Network is unreachable", 1, None)] * 6),
        (
            "aws_underlay.txt",
            "aws",
            (t("gcp", "10.250.21.13"), t("ghost", "10.250.21.200")),
            [
                (False, 0.075, "answered through eth0, not wg0", 1, "eth0"),
                # the last attempts waited long enough for the neighbour lookup to fail
                (False, None, "routed through eth0, not wg0 (destination host unreachable (from 10.250.21.11))",
                 8, "eth0"),
            ],
        ),
    ],
)
def test_parse_captured_probe_output(
    name: str, source: str, ts: tuple[Target, ...], expected: list[tuple[object, ...]]
) -> None:
    probes = parse_probe_output(source, ts, fixture(name), "wg0")
    assert [p.target for p in probes] == list(ts)
    assert all(p.source == source for p in probes)
    assert [(p.ok, p.rtt_ms, p.error, p.attempts, p.device) for p in probes] == expected


def test_reason_names_who_said_the_host_is_unreachable() -> None:
    out = fixture("ping_host_unreachable.txt")
    p = probe_result("aws", t("x", "10.250.21.200"), (1, 1), "", out, "wg0")
    assert p.error == "destination host unreachable (from 10.250.21.11)"


@pytest.mark.parametrize(
    ("result", "route", "output", "expected"),
    [
        (None, "", "", (False, None, "the probe did not finish", 0, None)),
        ((2, 1), "", "", (False, None, "ping exited with status 2", 1, None)),
        ((1, 8), "RTNETLINK answers: Network is unreachable", "", (False, None, "no reply", 8, None)),
        ((2, 1), "10.0.0.2 dev wg0 src 10.0.0.1 uid 0 \\    cache",
         "ping: unknown host\nping: sendto: Operation not permitted\n",
         (False, None, "sendto: Operation not permitted", 1, "wg0")),
        ((0, 2), "10.0.0.2 via 10.0.0.9 dev wg1 src 10.0.0.1", "64 bytes from 10.0.0.2: icmp_seq=1 time=3.5 ms",
         (False, 3.5, "answered through wg1, not wg0", 2, "wg1")),
        ((0, 1), "sh: 1: ip: not found", "64 bytes from 10.0.0.2: icmp_seq=1 time=3.5 ms", (True, 3.5, None, 1, None)),
    ],
)
def test_probe_results(
    result: tuple[int, int] | None, route: str, output: str, expected: tuple[object, ...]
) -> None:
    p = probe_result("a", t("b", "10.0.0.2"), result, route, output, "wg0")
    assert (p.ok, p.rtt_ms, p.error, p.attempts, p.device) == expected


def test_a_probe_whose_block_is_missing_or_cut_did_not_finish() -> None:
    text = fixture("aws_gcp_down.txt")
    cut = text.replace("@@wgmesh:result 0 1\n@@wgmesh:ping 5 192.168.40.1", "@@wgmesh:ping 5 192.168.40.1")
    assert cut != text
    gone = text[: text.index("@@wgmesh:ping 5 ")] + "@@wgmesh:end\n"
    for changed, lost in ((cut, 4), (gone, 5)):
        probes = parse_probe_output("aws", AWS_TARGETS, changed, "wg0")
        assert [i for i, p in enumerate(probes) if p.error == "the probe did not finish"] == [lost]


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda s: s.replace("@@wgmesh:check 1", "hello"), "missing the check header"),
        (lambda s: s.replace("@@wgmesh:end", ""), "truncated"),
        (lambda s: s.replace("@@wgmesh:ping 2 10.0.0.3", "@@wgmesh:ping 2 10.0.0.9"), "does not match"),
        (lambda s: s.replace("@@wgmesh:ping 2 10.0.0.3", "@@wgmesh:ping 9 10.0.0.3"), "does not match"),
        (lambda s: s.replace("@@wgmesh:result 1 8", "@@wgmesh:result x y"), "malformed result line"),
        (lambda s: s.replace("@@wgmesh:ping 3 192.168.30.1", "@@wgmesh:ping 2 10.0.0.3"), "reported twice"),
        (lambda s: s.replace("@@wgmesh:ping 0 10.0.0.2", "@@wgmesh:ping zero"), "malformed probe line"),
    ],
)
def test_parse_rejects_output_it_cannot_trust(mutate: Callable[[str], str], message: str) -> None:
    text = fixture("aws_gcp_down.txt")
    parse_probe_output("aws", AWS_TARGETS, text, "wg0")  # the original parses
    with pytest.raises(CheckParseError, match=message):
        parse_probe_output("aws", AWS_TARGETS, mutate(text), "wg0")


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


def test_all_good_is_ok_and_has_no_suspects() -> None:
    probes = tuple(Probe("aws", x, True, 1.0, None, 1, "wg0") for x in AWS_TARGETS)
    r = check_report(FOUR.node_names, ["aws"], {"aws": probes})
    assert r.ok and r.failures() == [] and r.suspects() == []
    assert all(p.cell is Cell.OK for p in r.pairs())
    everything_failed = check_report(
        FOUR.node_names, ["aws"], {"aws": tuple(dataclasses.replace(p, ok=False, error="x") for p in probes)}
    )
    assert everything_failed.suspects() == [], "no working pair: nothing to single out"


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
        "from": "aws", "to": "gcp", "address": "10.0.0.3", "subnet": None, "ok": False, "rtt_ms": None,
        "attempts": 8, "device": "wg0", "error": "no reply",
    }
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
        "peer": "gcp", "handshake": "fresh", "handshake_age_s": 30, "latest_handshake": 1_700_000_000,
        "endpoint": "198.51.100.3:51820", "rx_bytes": 1000, "tx_bytes": 2000,
    }
    assert gcp["error"] == "no route to host" and gcp["link_up"] is None
    assert {p["handshake"] for p in gcp["peers"]} == {"unreachable"}
    assert doc["errors"] == ["gcp: no route to host"]


def test_status_script_prints_the_clock_first_and_parse_clock_reads_it() -> None:
    script = probe.status_script("wg0")
    out = subprocess.run(["sh", "-c", script.split("\n", 2)[0] + "\n" + script.split("\n", 2)[1]],
                         capture_output=True, text=True).stdout
    assert abs(parse_clock(out) - time.time()) < 5  # type: ignore[operator]
    assert parse_clock("@@wgmesh:clock\n1700000000\n@@wgmesh:v1\n") == 1_700_000_000
    assert parse_clock("@@wgmesh:clock\nMon Jan\n") is None
    assert parse_clock("@@wgmesh:v1\n") is None
    assert parse_clock("@@wgmesh:clock") is None


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
    """Runs each node's script locally with fake ping/ip; per-node FAKE_* settings; some nodes fail to connect."""

    def __init__(self, bin_dir: Path, env: Mapping[str, Mapping[str, str]], refuse: Mapping[str, str]) -> None:
        self.bin_dir = bin_dir
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
        return run_script(script, self.bin_dir, **self.env.get(node, {}))

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
    fn: Callable[..., ExitStatus], tmp_path: Path, fake_bin: Path, *, json_out: bool = False,
    targets_: tuple[str, ...] = (), env: Mapping[str, Mapping[str, str]] | None = None,
    refuse: Mapping[str, str] | None = None,
) -> tuple[ExitStatus, str, str, LocalTransport]:
    transport = LocalTransport(fake_bin, env or {}, refuse or {})
    opts = observe.ObserveOptions(write_mesh(tmp_path), ConnectOptions(targets=targets_), json_out)
    e = env_io()
    status = guard(lambda: fn(opts, e, lambda _o, _p: transport), e)
    return status, e.stdout.getvalue(), e.stderr.getvalue(), transport  # type: ignore[attr-defined]


def test_run_check_all_pass(tmp_path: Path, fake_bin: Path) -> None:
    status, out, err, transport = run_with(observe.run_check, tmp_path, fake_bin)
    assert status is ExitStatus.OK, out + err
    assert set(transport.scripts) == {"aws", "azure", "gcp", "aliyun"}
    assert transport.closed
    assert "Not checked: later (no public key yet)" in out
    header = next(line for line in out.splitlines() if "from \\ to" in line)
    assert header.split()[3:] == ["aws", "azure", "gcp", "aliyun"]
    rows = {line.split()[0]: line for line in out.splitlines() if line.split() and line.split()[0] in FOUR.node_names}
    assert set(rows) == {"aws", "azure", "gcp", "aliyun"}
    assert all(rows[n].count("ok 0.50 ms") == 3 for n in rows)
    assert "Check passed: 12 pairs of 4 nodes, 24 probes, all answered through wg0." in out
    assert "FAILED" not in out


def test_run_check_names_the_broken_and_the_unreachable_node(tmp_path: Path, fake_bin: Path) -> None:
    down = {"FAKE_DOWN": "10.0.0.3 192.168.30.1"}
    status, out, _err, transport = run_with(
        observe.run_check, tmp_path, fake_bin,
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


def test_run_check_json(tmp_path: Path, fake_bin: Path) -> None:
    status, out, _err, _t = run_with(
        observe.run_check, tmp_path, fake_bin, json_out=True, targets_=("gcp",),
        env={"gcp": {"FAKE_DOWN": "192.168.40.1"}},
    )
    assert status is ExitStatus.ERROR
    doc = json.loads(out)
    assert doc["sources"] == ["gcp"] and doc["ok"] is False
    assert doc["failures"] == ["gcp -> aliyun 192.168.40.1 (subnet 192.168.40.0/24): no reply"]
    assert [p["result"] for p in doc["pairs"]] == ["ok", "ok", "failed"]


def test_run_check_rejects_a_target_outside_the_mesh(tmp_path: Path, fake_bin: Path) -> None:
    status, out, err, transport = run_with(observe.run_check, tmp_path, fake_bin, targets_=("later",))
    assert status is ExitStatus.ERROR and out == ""
    assert err == "Error: --target later: not part of the mesh (no public key yet)\n"
    assert transport.scripts == {}
    status, _out, err, _t = run_with(observe.run_check, tmp_path, fake_bin, targets_=("nope",))
    assert status is ExitStatus.ERROR and err.startswith("Error: --target nope: no such node in mesh.yaml")


STATUS_OUTPUT = """@@wgmesh:clock
{clock}
@@wgmesh:v1
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
        super().__init__(Path("/nonexistent"), {}, {})
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
        assert transport.scripts["aws"] == probe.status_script("wg0")
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
        assert detail.split() == ["aws", "azure", "3m", "20s", "198.51.100.2:51820", "4.0", "KiB", "8.0", "KiB"]
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
