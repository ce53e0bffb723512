"""Round-trip time of a relayed pair and of a hole-punched pair of NAT'd nodes against a direct pair, on a lab
with real NAT routers, side by side in one run.

Brings up a 5-host lab with its own id: aws and azure on the bridge (endpoints), gcp and aliyun each behind a
cone NAT router of its own, tencent behind a symmetric one (`--nat gcp --nat aliyun --nat tencent:symmetric`),
applies the mesh (one apply: hole punching included), then pings from gcp, in rounds that alternate the
destinations (`ping -c 10 -i 0.05` each, in gcp's namespace):
  - azure's mesh address: the baseline, a direct pair (azure has an endpoint; gcp's packets cross its NAT);
  - aliyun's: neither has an endpoint, both NATs are cone: the pair is hole punched (direct);
  - tencent's: a symmetric NAT: the pair stays on the relay (aws).
The path printed is what gcp's WireGuard says (the target's address on its own peer entry, or on aws's).
Prints median and mean RTTs and the ratio against the direct pair. The lab is taken down at the end, whatever
happened. Run as root: `.venv/bin/python bench/nat_rtt.py`.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from benchlib import check, clean_env, free_id, labmod, load_average, require_root, run_wgmesh, teardown

NAMES = ("aws", "azure", "gcp", "aliyun", "tencent")
TARGETS = ("azure", "aliyun", "tencent")  # direct (baseline), hole punched, relayed
COUNT = 50
ROUND = 10  # pings per destination and round
INTERVAL = 0.05


def _rtts(lab: labmod.Lab, src: str, dst: str, count: int) -> list[float]:
    argv = ["ip", "netns", "exec", lab.host(src).netns, "ping", "-n", "-c", str(count), "-i", str(INTERVAL),
            "-W", "2", str(lab.host(dst).address)]
    out = check(subprocess.run(argv, capture_output=True, text=True, timeout=120), f"ping {src} -> {dst}")
    rtts = [float(m) for m in re.findall(r"time=([\d.]+) ms", out)]
    if len(rtts) < count * 0.9:
        raise SystemExit(f"{src} -> {dst}: only {len(rtts)} of {count} answered")
    return rtts


def _path(lab: labmod.Lab, src: str, dst: str) -> str:
    """Which of src's peers carries dst's mesh address (`wg show wg0 allowed-ips`)."""
    out = check(labmod.host_exec(lab.dir, src, ["wg", "show", "wg0", "allowed-ips"]), f"{src}: wg show")
    keys = {}
    for line in lab.mesh_path.read_text().splitlines():
        m = re.match(r"  (\w+):$", line)
        if m:
            node = m.group(1)
        m = re.match(r"    public_key: (\S+)$", line)
        if m:
            keys[m.group(1)] = node
    target = f"{lab.host(dst).address}/32"
    for line in out.splitlines():
        key, *ips = line.split()
        if target in ips:
            via = keys.get(key, "?")
            return "direct" if via == dst else f"via relay {via}"
    return "no route"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--id", type=int, default=None, help="lab id (default: the first free one in 40..49)")
    ap.add_argument("--count", type=int, default=COUNT, help=f"pings per pair (default {COUNT})")
    args = ap.parse_args()
    require_root()

    lab_id = args.id if args.id is not None else free_id()
    work = Path(tempfile.mkdtemp(prefix="wgmesh-bench-nat-rtt-"))
    lab_dir = work / "mesh"
    env = clean_env()

    def wgmesh(*a: str) -> subprocess.CompletedProcess[str]:
        return run_wgmesh(lab_dir, env, *a)

    nat = ["gcp", "aliyun", "tencent:symmetric"]
    print(f"lab {lab_id}: aws, azure public; gcp, aliyun (cone), tencent (symmetric) behind NAT routers; "
          f"{args.count} pings per pair, {INTERVAL * 1000:.0f} ms apart, from gcp", flush=True)
    try:
        lab = labmod.up(labmod.make_lab(lab_id, lab_dir, names=NAMES, nat=nat))
        check(wgmesh("apply", "--auto-approve"), "apply")
        for dst in (*TARGETS, "aws"):  # handshakes done before measuring
            _rtts(lab, "gcp", dst, 3)
        got: dict[str, list[float]] = {dst: [] for dst in TARGETS}
        while min(len(v) for v in got.values()) < args.count:
            for dst in TARGETS:  # alternated: the machine's load falls on every pair alike
                got[dst] += _rtts(lab, "gcp", dst, min(ROUND, args.count - len(got[dst])) or 1)
        rows = [(f"gcp -> {dst}", _path(lab, "gcp", dst), statistics.median(got[dst]), statistics.fmean(got[dst]),
                 len(got[dst])) for dst in TARGETS]
        base = rows[0][2]
        print(f"{'pair':<16} {'path':<16} {'median':>10} {'mean':>10} {'answered':>9}  ratio (median)")
        for pair, path, median, mean, n in rows:
            ratio = "1.00x (baseline: direct)" if pair == rows[0][0] else f"{median / base:.2f}x"
            print(f"{pair:<16} {path:<16} {median:>7.3f} ms {mean:>7.3f} ms {n:>5}/{args.count}  {ratio}")
        print(load_average())
        return 0
    finally:
        teardown(lab_dir, work)


if __name__ == "__main__":
    sys.exit(main())
