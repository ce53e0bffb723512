"""`wgmesh check` and `wgmesh status` at scale (issue 16): check right after apply, then nothing left behind.

For each size (--nodes 48 by default; comma separated, one lab after the other), brings up an N-host lab with
its own id, applies, and at once (no wait for handshakes) runs, timed:
  - `wgmesh check --json`: exit status, pairs passed and failed, probes, the failures' reasons;
  - leftovers: every process in the lab's namespaces (hosts and the machines behind their subnets) that is
    not the lab's own (sshd, wireguard-go) and was not there before the check: ping, sh, sleep, ip, ... of a
    probe that outlived its check;
  - `wgmesh status` (exit status) and `wgmesh plan --detailed-exitcode` (must be 0, "No changes", within the
    usual deadline: proves the check left no load that makes the next command time out);
  - leftovers again;
then takes the lab down, whatever happened, and prints one table row per size.

The lab's hosts share one kernel, and its neighbour (ARP) table is one table for every network namespace,
1024 entries by default (net.ipv4.neigh.default.gc_thresh3): 48 hosts, each talking to the 47 others over
the lab bridge, need about 48 x 48. Past it the kernel refuses new entries ("neighbor table overflow!" in
dmesg) and pings fail with "sendmsg: No buffer space available". A real mesh has one kernel per node;
`wgmesh lab up` raises the three thresholds for the labs up on the machine (2 x (H + 1)^2 entries for H
hosts) and the last `lab down` puts them back, so the bench prints what the lab did and checks at the end
that the machine's values are back.
Run as root: `.venv/bin/python bench/check_scale.py [--nodes 48]`.
"""

from __future__ import annotations

import argparse
import collections
import json
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from benchlib import clean_env, free_id, labmod, load_average, require_root, teardown, wgmesh_argv

NODES = "48"
LAB_OWN = ("sshd", "sshd-session", "sshd-auth", "wireguard-go")  # what the lab itself runs in a host
NEIGH = "/proc/sys/net/ipv4/neigh/default/gc_thresh{}"
NEIGH_STATS = {"ipv4": "/proc/net/stat/arp_cache", "ipv6": "/proc/net/stat/ndisc_cache"}


@dataclass
class Result:
    hosts: int
    pairs: int = 0
    probes: int = 0
    apply_s: float = 0.0
    check_s: float = 0.0
    check_rc: int = -1
    failed_pairs: int = 0
    status_s: float = 0.0
    status_rc: int = -1
    plan_s: float = 0.0
    plan_rc: int = -1
    left_after_check: dict[str, int] = field(default_factory=dict)
    left_at_end: dict[str, int] = field(default_factory=dict)
    reasons: dict[str, int] = field(default_factory=dict)
    peak_entries: dict[str, int] = field(default_factory=dict)  # neighbour table entries during the check


def _run(argv: list[str], timeout: float = 600, **kw: object) -> tuple[subprocess.CompletedProcess[str], float]:
    t = time.perf_counter()
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False, **kw)  # type: ignore[call-overload]
    return r, time.perf_counter() - t


def _pids(lab: labmod.Lab) -> list[int]:
    return labmod.pids_in_netns([h.netns for h in lab.hosts] + [h.machine_netns for h in lab.hosts])


def leftovers(lab: labmod.Lab, before: set[int]) -> dict[str, int]:
    """{command name: how many} of the processes in the lab's namespaces that are not the lab's own and were
    not there before the check (apply leaves its confirm timer, a `sleep`, for a while)."""
    found = (labmod.comm(pid) for pid in _pids(lab) if pid not in before)
    return dict(collections.Counter(c for c in found if c is not None and c not in LAB_OWN))


def _neigh() -> list[int]:
    return [int(Path(NEIGH.format(i)).read_text()) for i in (1, 2, 3)]


def _entries(path: str) -> int:
    """The kernel's neighbour table entries (the first column of any CPU's line: one count for the table)."""
    return int(Path(path).read_text().splitlines()[1].split()[0], 16)


class PeakEntries(threading.Thread):
    """Samples the neighbour tables' entries every 50 ms until stopped; `peak` is the most seen."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.stopped = threading.Event()
        self.peak = dict.fromkeys(NEIGH_STATS, 0)

    def run(self) -> None:
        while not self.stopped.wait(0.05):
            for family, path in NEIGH_STATS.items():
                self.peak[family] = max(self.peak[family], _entries(path))

    def stop(self) -> dict[str, int]:
        self.stopped.set()
        self.join()
        return self.peak


def bench_size(nodes: int, args: argparse.Namespace) -> Result:
    lab_id = args.id if args.id is not None else free_id()
    work = Path(tempfile.mkdtemp(prefix="wgmesh-bench-check-"))
    lab_dir = work / "mesh"
    res = Result(nodes)
    print(f"lab {lab_id}: {nodes} hosts in {lab_dir}", flush=True)
    lab = None
    try:
        lab = labmod.up(labmod.make_lab(lab_id, lab_dir, nodes=nodes), note=lambda line: print(f"  {line}"))
        print(f"  neighbour table thresholds now {_neigh()}", flush=True)
        env = clean_env()
        par = ["--parallelism", str(nodes)]
        r, res.apply_s = _run([*wgmesh_argv(), "apply", "--auto-approve", *par], cwd=lab_dir, env=env)
        if r.returncode != 0:
            raise SystemExit(f"apply failed (exit {r.returncode}):\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
        print(f"  apply   {res.apply_s:6.1f} s", flush=True)
        before = set(_pids(lab))

        sampler = PeakEntries()
        sampler.start()
        r, res.check_s = _run([*wgmesh_argv(), "check", "--json", *par], cwd=lab_dir, env=env)
        res.peak_entries = sampler.stop()
        res.left_after_check = leftovers(lab, before)
        res.check_rc = r.returncode
        try:
            doc = json.loads(r.stdout)
        except ValueError:
            print(f"  check said no JSON (exit {r.returncode}):\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
        else:
            res.pairs = len(doc["pairs"])
            res.failed_pairs = sum(p["result"] != "ok" for p in doc["pairs"])
            res.probes = sum(not p["skipped"] for p in doc["probes"])
            why = (p["error"] for p in doc["probes"] if not p["ok"] and not p["skipped"])
            res.reasons = dict(collections.Counter(why).most_common(5))
            for e in doc["errors"][:5]:
                print(f"  node error: {e['node']}: {e['error']}")
        print(f"  check   {res.check_s:6.1f} s, exit {res.check_rc}, {res.pairs - res.failed_pairs}/{res.pairs} "
              f"pairs ok, {res.probes} probes; left right after: {res.left_after_check or 'nothing'}", flush=True)
        for reason, n in res.reasons.items():
            print(f"      {n:5} x {reason}")
        print(f"  neighbour table entries at most (machine-wide, during the check): {res.peak_entries}", flush=True)

        r, res.status_s = _run([*wgmesh_argv(), "status", *par], cwd=lab_dir, env=env)
        res.status_rc = r.returncode
        print(f"  status  {res.status_s:6.1f} s, exit {res.status_rc}", flush=True)
        if r.returncode != 0:
            print("\n".join(r.stdout.splitlines()[-5:]))

        r, res.plan_s = _run([*wgmesh_argv(), "plan", "--detailed-exitcode", *par], cwd=lab_dir, env=env)
        res.plan_rc = r.returncode
        print(f"  plan    {res.plan_s:6.1f} s, exit {res.plan_rc}", flush=True)
        if r.returncode != 0 or "No changes." not in r.stdout:
            print("\n".join((r.stdout + r.stderr).splitlines()[-10:]))
        res.left_at_end = leftovers(lab, before)
        print(f"  left at the end: {res.left_at_end or 'nothing'}")
        print(f"  {load_average()}", flush=True)
        return res
    finally:
        teardown(lab_dir, work)


def _left(d: dict[str, int]) -> str:
    return ", ".join(f"{n} {c}" for c, n in sorted(d.items())) if d else "0"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--id", type=int, default=None, help="lab id (default: the first free one in 40..49)")
    ap.add_argument("--nodes", default=NODES, help=f"lab sizes, comma separated (default {NODES}; at most "
                    f"{labmod.MAX_NODES})")
    args = ap.parse_args()
    require_root()
    sizes = [int(x) for x in args.nodes.split(",")]
    if max(sizes) > labmod.MAX_NODES:
        raise SystemExit(f"the lab takes at most {labmod.MAX_NODES} hosts")

    old = _neigh()
    print(f"neighbour table thresholds {old} (gc_thresh1..3)", flush=True)
    summary = [bench_size(n, args) for n in sizes]
    after = _neigh()
    print(f"neighbour table thresholds after the last lab down: {after}"
          f"{'' if after == old else ' (another lab is up on the machine, or someone changed them)'}")
    print()
    head = ("hosts", "pairs", "probes", "apply s", "check s", "exit", "failed pairs", "status s", "plan s (exit)",
            "left after check", "left at end")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in summary:
        row = (r.hosts, r.pairs, r.probes, f"{r.apply_s:.1f}", f"{r.check_s:.1f}", r.check_rc, r.failed_pairs,
               f"{r.status_s:.1f}", f"{r.plan_s:.1f} ({r.plan_rc})", _left(r.left_after_check), _left(r.left_at_end))
        print("| " + " | ".join(str(x) for x in row) + " |")
    ok = all(r.check_rc == 0 and r.plan_rc == 0 and r.status_rc == 0 and not r.left_at_end for r in summary)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
