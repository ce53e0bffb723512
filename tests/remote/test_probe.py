"""remote/probe.py: scripts/probe.sh and scripts/status.sh run on stub nodes (dash and busybox; fake `ping` and
`ip`, no packet is sent), and the parsers over ping output captured on lab hosts (tests/fixtures/check, from the
4-node lab that `meshes.four()` mirrors)."""

from __future__ import annotations

import ipaddress
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from meshes import four
from remote.stubs import FAKE_IP, FAKE_PING, Stubs

from wgmesh.core import checks
from wgmesh.core.checks import Probe, Target, targets
from wgmesh.lab.procs import proc_of
from wgmesh.remote import probe, shell
from wgmesh.remote.probe import CheckParseError, parse_clock, parse_probe_output, probe_result, probe_script
from wgmesh.remote.read import parse_read_output
from wgmesh.remote.transport import CommandResult

FIXTURES = Path(__file__).parent.parent / "fixtures" / "check"
ip = ipaddress.ip_address
net = ipaddress.ip_network


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


def t(node_name: str, address: str, subnet: str | None = None, after_peer: bool = False,
      from_subnet: str | None = None) -> Target:
    return Target(node_name, ip(address), net(subnet) if subnet else None, after_peer,
                  net(from_subnet) if from_subnet else None)


def plain(ts: tuple[Target, ...]) -> tuple[Target, ...]:
    """The targets pinged from the mesh address (the captured fixtures predate subnet-to-subnet probes)."""
    return tuple(x for x in ts if x.from_subnet is None)


# ---------------------------------------------------------------------------------------------- the script


def probe_node(node: Stubs) -> Stubs:
    """Fake `ping` and `ip` (behaviour from FAKE_* variables); FAKE_LOG lists every ping."""
    node.stub("ping", FAKE_PING)
    node.stub("ip", FAKE_IP)
    return node


def run_probes(node: Stubs, script: str, **env: str) -> CommandResult:
    return node.run(script, env={"FAKE_LOG": str(node.root / "pings.log"), **env})


def test_script_runs_probes_in_parallel_retries_silence_and_cleans_up(node: Stubs) -> None:
    probe_node(node)
    mesh = four()
    ts = targets(mesh.node("aws"), mesh.nodes)
    got = run_probes(node, probe_script(ts), FAKE_BARRIER=str(len(ts)), FAKE_DOWN="10.0.0.3",
                     FAKE_FLAKY="192.168.30.1", FAKE_ERROR="192.168.40.1")
    assert got.exit_status == 0, got.stderr
    log = (node.root / "pings.log").read_text().split()
    retries = ["10.0.0.3"] * (checks.ATTEMPTS - 1) + ["192.168.30.1", "192.168.10.1>192.168.30.1"] * 2
    sent = [f"{'192.168.10.1>' if x.from_subnet else ''}{x.address}" for x in ts]
    assert sorted(log) == sorted(sent + retries)
    probes = parse_probe_output("aws", ts, got.stdout, "wg0")
    assert [(p.target.label, p.ok, p.attempts, p.error) for p in probes] == [
        ("10.0.0.2", True, 1, None),
        ("192.168.20.1 (subnet 192.168.20.0/24)", True, 1, None),
        ("10.0.0.3", False, checks.ATTEMPTS, "no reply"),
        ("192.168.30.1 (subnet 192.168.30.0/24)", True, 3, None),  # no reply twice, then an answer
        ("10.0.0.4", True, 1, None),
        ("192.168.40.1 (subnet 192.168.40.0/24)", False, 1, "sendmsg: Required key not available"),  # not retried
        # from aws's own address in its subnet 192.168.10.0/24 (the stub's first address, as on lab hosts)
        ("192.168.10.0/24 -> 192.168.20.1", True, 1, None),
        ("192.168.10.0/24 -> 192.168.30.1", True, 3, None),
        ("192.168.10.0/24 -> 192.168.40.1", False, 1, "sendmsg: Required key not available"),
    ]
    assert [p.rtt_ms for p in probes if p.ok] == [0.5] * 6
    assert [str(p.from_address) for p in probes if p.target.from_subnet] == ["192.168.10.1"] * 3
    assert not any(p.skipped for p in probes)
    leftovers = [p.name for p in node.root.iterdir() if p.name not in ("bin", "base") and
                 not p.name.startswith("pings.log")]
    assert leftovers == [], "the script leaves its temporary folder behind"


def test_script_pings_once_per_attempt_with_the_family_and_wait(node: Stubs) -> None:
    probe_node(node)
    args = node.root / "args.log"
    node.stub("ping", f'echo "$*" >> {args}\n' + FAKE_PING.removeprefix("#!/bin/sh\n"))
    ts = (t("b", "10.0.0.2"), t("b", "fd00::2"))
    got = run_probes(node, probe_script(ts))
    assert got.exit_status == 0, got.stderr
    assert sorted(args.read_text().splitlines()) == [
        f"-4 -c 1 -W {checks.PING_WAIT} -n 10.0.0.2", f"-6 -c 1 -W {checks.PING_WAIT} -n fd00::2"]
    assert [p.device for p in parse_probe_output("a", ts, got.stdout, "wg0")] == ["wg0", "wg0"]


def test_subnet_to_subnet_pings_go_from_the_nodes_address_inside_its_subnet(node: Stubs) -> None:
    probe_node(node)
    args = node.root / "args.log"
    node.stub("ping", f'echo "$*" >> {args}\n' + FAKE_PING.removeprefix("#!/bin/sh\n"))
    node.stub("ip", f'echo "$*" >> {node.root / "ip.log"}\n' + FAKE_IP.removeprefix("#!/bin/sh\n"))
    ts = (t("b", "192.168.20.10", "192.168.20.0/24", from_subnet="10.9.0.0/16"),
          t("b", "fd20::10", "fd20::/64", from_subnet="fd10::/64"))
    got = run_probes(node, probe_script(ts), FAKE_SRC="10.9.0.0/16=10.9.8.7")
    assert got.exit_status == 0, got.stderr
    assert sorted(args.read_text().splitlines()) == [
        f"-4 -c 1 -W {checks.PING_WAIT} -I 10.9.8.7 -n 192.168.20.10",
        f"-6 -c 1 -W {checks.PING_WAIT} -I fd10::1 -n fd20::10"]
    assert sorted((node.root / "ip.log").read_text().splitlines()) == [
        "-o -4 addr show to 10.9.0.0/16", "-o -6 addr show to fd10::/64",
        "-o route get 192.168.20.10 from 10.9.8.7", "-o route get fd20::10 from fd10::1"]
    probes = parse_probe_output("a", ts, got.stdout, "wg0")
    assert [(p.ok, str(p.from_address), p.device) for p in probes] == [(True, "10.9.8.7", "wg0"),
                                                                         (True, "fd10::1", "wg0")]


def test_a_subnet_pair_fails_alone(node: Stubs) -> None:
    """The probe answers the mesh address but not the subnet address: the far node does not route the answer
    back to the near subnet (or its network does not, without masquerade)."""
    probe_node(node)
    ts = (t("b", "192.168.20.10", "192.168.20.0/24"), t("b", "192.168.20.10", "192.168.20.0/24",
                                                         from_subnet="192.168.10.0/24"))
    got = run_probes(node, probe_script(ts), FAKE_DOWN="192.168.10.1>192.168.20.10")
    probes = parse_probe_output("a", ts, got.stdout, "wg0")
    assert [(p.ok, p.error, p.attempts) for p in probes] == [(True, None, 1), (False, "no reply", checks.ATTEMPTS)]
    assert probes[1].failure_line() == "a -> b: 192.168.10.0/24 -> 192.168.20.10 failed: no reply"


def test_a_node_without_an_address_in_its_subnet_skips_its_subnet_probes(node: Stubs) -> None:
    probe_node(node)
    ts = (t("b", "10.0.0.2"), t("b", "192.168.20.10", "192.168.20.0/24", from_subnet="192.168.10.0/24"))
    got = run_probes(node, probe_script(ts), FAKE_SRC="none")
    assert got.exit_status == 0, got.stderr
    assert (node.root / "pings.log").read_text().split() == ["10.0.0.2"]
    ok, skipped = parse_probe_output("a", ts, got.stdout, "wg0")
    assert ok.ok and not ok.skipped
    assert (skipped.ok, skipped.skipped, skipped.attempts, skipped.error) == (
        False, True, 0, "a has no address inside 192.168.10.0/24")
    node.remove("ip")  # no ip at all: the same
    (_, skipped) = parse_probe_output("a", ts, run_probes(node, probe_script(ts)).stdout, "wg0")
    assert skipped.skipped


def test_the_later_node_of_a_pair_gives_the_earlier_a_head_start(node: Stubs) -> None:
    """Two first packets at once make two handshakes at once, and both can be lost for 5 s."""
    probe_node(node)
    slept = node.root / "sleep.log"
    node.stub("sleep", f'echo "$1" >> {slept}\n')
    ts = (t("a", "10.0.0.1", after_peer=True), t("c", "10.0.0.3"))
    got = run_probes(node, probe_script(ts))
    # (the script's own quarter-second polls of the running wave aside)
    assert [x for x in slept.read_text().split() if x != "0.25"] == [str(checks.HEAD_START)]
    assert all(p.ok for p in parse_probe_output("b", ts, got.stdout, "wg0"))


def test_script_reports_probes_leaving_by_another_device(node: Stubs) -> None:
    probe_node(node)
    ts = (t("b", "10.0.0.2"),)
    probes = parse_probe_output("a", ts, run_probes(node, probe_script(ts), FAKE_DEV="eth0").stdout, "wg0")
    assert probes == (Probe("a", ts[0], False, 0.5, "answered, but routed through eth0, not wg0", 1, "eth0"),)


def test_a_node_without_ping_or_ip(node: Stubs) -> None:
    ts = (t("b", "10.0.0.2"),)
    got = run_probes(node, probe_script(ts))
    assert got.exit_status == 0
    with pytest.raises(CheckParseError, match="no ping command on the node"):
        parse_probe_output("a", ts, got.stdout, "wg0")
    node.stub("ping", FAKE_PING)  # ping but no ip: the route is unknown, the answer still counts
    (p,) = parse_probe_output("a", ts, run_probes(node, probe_script(ts)).stdout, "wg0")
    assert (p.ok, p.device) == (True, None)


# A ping that counts how many pings run at once (PEAK_LOG gets the count each one saw), answers after 0.2 s.
COUNTING_PING = r"""#!/bin/sh
for a; do addr=$a; done
echo "$addr" >> "$FAKE_LOG"
mkdir -p "$FAKE_LOG.running"
: > "$FAKE_LOG.running/$$"
ls "$FAKE_LOG.running" | wc -l >> "$FAKE_LOG.peak"
sleep 0.2
rm -f "$FAKE_LOG.running/$$"
echo "64 bytes from $addr: icmp_seq=1 ttl=64 time=0.5 ms"
"""


def test_probes_run_in_waves_of_at_most_wave(node: Stubs, monkeypatch: pytest.MonkeyPatch) -> None:
    """A node with more targets than WAVE pings WAVE of them at a time (48 lab hosts x 141 targets at once
    came near the kernel's 32768 process ids), the first wave first: every peer's mesh address."""
    probe_node(node)
    node.stub("ping", COUNTING_PING)
    monkeypatch.setattr(probe, "WAVE", 3)
    ts = tuple(t("b", f"10.0.0.{i}") for i in range(2, 9))
    got = run_probes(node, probe_script(ts))
    assert got.exit_status == 0, got.stderr
    assert [line for line in got.stdout.splitlines() if line.startswith("@@wgmesh:wave")] == [
        "@@wgmesh:wave 1", "@@wgmesh:wave 2", "@@wgmesh:wave 3"]
    assert all(p.ok for p in parse_probe_output("a", ts, got.stdout, "wg0"))
    peaks = [int(x) for x in (node.root / "pings.log.peak").read_text().split()]
    assert len(peaks) == 7 and max(peaks) <= 3
    assert sorted((node.root / "pings.log").read_text().split()[:3]) == ["10.0.0.2", "10.0.0.3", "10.0.0.4"]


def test_the_deadline_stops_retries_and_later_waves(node: Stubs, monkeypatch: pytest.MonkeyPatch) -> None:
    """Past DEADLINE a probe sends no more pings and no wave starts; the script still reports everything, so
    the check names the probes that ran out of time instead of losing the node's answers."""
    probe_node(node)
    # no reply takes PING_WAIT (1 s) on a real node: the same here, so that 10 attempts would take 10 s
    node.stub("ping", 'for a; do addr=$a; done\necho "$addr" >> "$FAKE_LOG"\n'
              'case " $FAKE_DOWN " in *" $addr "*) sleep 1; exit 1;; esac\n'
              'echo "64 bytes from $addr: icmp_seq=1 ttl=64 time=0.5 ms"\n')
    monkeypatch.setattr(probe, "WAVE", 2)
    ts = (t("b", "10.0.0.2"), t("c", "10.0.0.3"), t("d", "10.0.0.4"))
    started = time.monotonic()
    got = run_probes(node, probe_script(ts, deadline=2), FAKE_DOWN="10.0.0.3")
    took = time.monotonic() - started
    assert got.exit_status == 0, got.stderr
    assert took < 6, f"the deadline did not stop the retries ({took:.1f} s)"
    ok, late, unsent = parse_probe_output("a", ts, got.stdout, "wg0")
    assert ok.ok
    assert not late.ok and 1 <= late.attempts < checks.ATTEMPTS
    assert late.error == "no reply before the check's deadline on the node (--command-timeout)"
    assert (unsent.ok, unsent.attempts) == (False, 0)
    assert unsent.error == "not sent: the check's deadline on the node had passed (--command-timeout)"
    assert "10.0.0.4" not in (node.root / "pings.log").read_text().split()


def test_a_full_neighbour_table_is_retried_and_explained(node: Stubs) -> None:
    """ENOBUFS ("No buffer space available") is the kernel refusing the packet for now: retried like a lost
    reply; when it lasts, the reason says where to look (48 lab hosts on one kernel fill its ARP table)."""
    probe_node(node)
    node.stub("ping", 'for a; do addr=$a; done\necho "$addr" >> "$FAKE_LOG"\n'
              'n=$(grep -cxF "$addr" "$FAKE_LOG")\n'
              'case " $FAKE_DOWN " in *" $addr "*) n=0;; esac\n'
              'if [ "$n" -lt 3 ]; then echo "ping: sendmsg: No buffer space available" >&2; exit 2; fi\n'
              'echo "64 bytes from $addr: icmp_seq=1 ttl=64 time=0.5 ms"\n')
    ts = (t("b", "10.0.0.2"), t("c", "10.0.0.3"))
    got = run_probes(node, probe_script(ts), FAKE_DOWN="10.0.0.3")
    flaky, full = parse_probe_output("a", ts, got.stdout, "wg0")
    assert (flaky.ok, flaky.attempts) == (True, 3)
    assert (full.ok, full.attempts) == (False, checks.ATTEMPTS)
    assert full.error is not None and full.error.startswith("sendmsg: No buffer space available (")
    assert "net.ipv4.neigh.default.gc_thresh3" in full.error


def _alive(pid: int) -> bool:
    return proc_of(pid) is not None  # there, and not a zombie


def test_a_hang_up_stops_the_probes_and_their_pings(node: Stubs, tmp_path: Path) -> None:
    """The controller gave up (its deadline, ^C): the next `wait` line cannot be written, and the script stops
    its probes and their pings within about a second, not after their attempts."""
    probe_node(node)
    pids = tmp_path / "pids"
    node.stub("ping", f'echo $$ >> {pids}\nexec sleep 30\n')
    ts = (t("b", "10.0.0.2"), t("c", "10.0.0.3"))
    local = probe_script(ts).replace(shell.SYSTEM_PATH, str(node.base))
    env = {"PATH": f"{node.bin}:{node.base}", "HOME": str(node.root), "TMPDIR": str(node.root),
           "FAKE_LOG": str(node.root / "pings.log")}
    proc = subprocess.Popen(node.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            env=env, text=True)
    try:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(local)
        proc.stdin.close()
        while "@@wgmesh:wave 1" not in proc.stdout.readline():
            pass
        deadline = time.monotonic() + 10
        while (not pids.exists() or len(pids.read_text().split()) < 2) and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.stdout.close()  # the controller hangs up
        proc.wait(timeout=5)
        pings = [int(x) for x in pids.read_text().split()]
        assert len(pings) == 2
        deadline = time.monotonic() + 3
        while any(_alive(p) for p in pings) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(_alive(p) for p in pings), "a ping outlived the script"
        assert [p.name for p in node.root.iterdir() if p.name.startswith("tmp")] == []
    finally:
        proc.kill()
        for p in [int(x) for x in pids.read_text().split()] if pids.exists() else []:
            if _alive(p):
                os.kill(p, signal.SIGKILL)


def test_a_stuck_probe_is_stopped_when_its_wave_has_taken_too_long(
    node: Stubs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    probe_node(node)
    pids = tmp_path / "pids"
    node.stub("ping", f'for a; do addr=$a; done\ncase $addr in 10.0.0.3) echo $$ >> {pids}; exec sleep 30;; esac\n'
              'echo "64 bytes from $addr: icmp_seq=1 ttl=64 time=0.5 ms"\n')
    monkeypatch.setattr(probe, "WAVE_TICKS", 4)
    ts = (t("b", "10.0.0.2"), t("c", "10.0.0.3"))
    started = time.monotonic()
    got = run_probes(node, probe_script(ts))
    assert time.monotonic() - started < 5
    ok, stuck = parse_probe_output("a", ts, got.stdout, "wg0")
    assert ok.ok and (stuck.ok, stuck.error) == (False, "the probe did not finish")
    (ping,) = [int(x) for x in pids.read_text().split()]
    deadline = time.monotonic() + 3
    while _alive(ping) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(ping), "the stuck ping outlived the script"


def test_no_targets(node: Stubs) -> None:
    probe_node(node)
    got = run_probes(node, probe_script(()))
    assert got.exit_status == 0 and parse_probe_output("a", (), got.stdout, "wg0") == ()


def test_output_of_a_node_without_ping() -> None:
    with pytest.raises(CheckParseError, match="no ping command on the node"):
        parse_probe_output("a", (t("b", "10.0.0.2"),), "@@wgmesh:check 1\n@@wgmesh:noping\n@@wgmesh:end\n", "wg0")


# ---------------------------------------------------------------------------------------------- status


def test_status_script_prints_the_clock_then_the_read(node: Stubs) -> None:
    got = node.run(probe.status_script("wg0"))
    assert got.exit_status == 0, got.stderr
    assert abs(parse_clock(got.stdout) - time.time()) < 5  # type: ignore[operator]
    state = parse_read_output("wg0", got.stdout)
    assert not state.interface_exists and "wg" in state.missing  # a bare node


def test_parse_clock() -> None:
    assert parse_clock("@@wgmesh:clock\n1700000000\n@@wgmesh:v1\n") == 1_700_000_000
    assert parse_clock("@@wgmesh:clock\n" + "9" * 5000 + "\n") is None  # review E: not a crash
    assert parse_clock("@@wgmesh:clock\nMon Jan\n") is None
    assert parse_clock("@@wgmesh:v1\n") is None
    assert parse_clock("@@wgmesh:clock") is None


# ---------------------------------------------------------------------------------------------- parsing


FOUR = four()
AWS_TARGETS = plain(targets(FOUR.node("aws"), FOUR.nodes))
GCP_TARGETS = plain(targets(FOUR.node("gcp"), FOUR.nodes))
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
                (False, 0.075, "answered, but routed through eth0, not wg0", 1, "eth0"),
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
         (False, 3.5, "answered, but routed through wg1, not wg0", 2, "wg1")),
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


SUBNET_OUTPUT = """@@wgmesh:check 1
@@wgmesh:ping 0 192.168.20.10
@@wgmesh:source 192.168.10.1
@@wgmesh:route
192.168.20.10 from 192.168.10.1 dev wg0 uid 0 \\    cache
@@wgmesh:attempt 1
64 bytes from 192.168.20.10: icmp_seq=1 ttl=63 time=1.5 ms
@@wgmesh:result 0 1
@@wgmesh:end
"""


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda s: s.replace("source 192.168.10.1", "source 192.168.11.1"), "does not match"),
        (lambda s: s.replace("source 192.168.10.1", "source fd00::1"), "does not match"),
        (lambda s: s.replace("source 192.168.10.1", "source me"), "malformed source line"),
    ],
)
def test_parse_rejects_a_source_outside_the_subnet(mutate: Callable[[str], str], message: str) -> None:
    ts = (t("b", "192.168.20.10", "192.168.20.0/24", from_subnet="192.168.10.0/24"),)
    (p,) = parse_probe_output("a", ts, SUBNET_OUTPUT, "wg0")
    assert (p.ok, p.rtt_ms, str(p.from_address), p.device) == (True, 1.5, "192.168.10.1", "wg0")
    with pytest.raises(CheckParseError, match=message):
        parse_probe_output("a", ts, mutate(SUBNET_OUTPUT), "wg0")
    with pytest.raises(CheckParseError, match="does not match"):  # a source for a probe sent without one
        parse_probe_output("a", (t("b", "192.168.20.10", "192.168.20.0/24"),), SUBNET_OUTPUT, "wg0")




def test_a_node_reporting_absurd_numbers_is_its_own_error_or_no_round_trip() -> None:
    """Review E: a 5,000-digit result line stopped check for every node; a 400-digit `time=` gave rtt_ms
    Infinity, which is not JSON."""
    text = fixture("aws_mixed.txt")
    huge = re.sub(r"(@@wgmesh:result \d+) \d+", lambda m: f"{m.group(1)} {'9' * 5000}", text, count=1)
    assert huge != text
    with pytest.raises(CheckParseError, match="malformed result line"):
        parse_probe_output("aws", AWS_TARGETS + GHOSTS, huge, "wg0")
    inf = re.sub(r"time=[0-9.]+", "time=1" + "0" * 400, text, count=1)
    assert inf != text
    first = parse_probe_output("aws", AWS_TARGETS + GHOSTS, inf, "wg0")[0]
    assert first.ok and first.rtt_ms is None
