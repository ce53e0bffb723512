"""Round-trip time of a relayed pair of NAT'd nodes against a direct pair, on a lab with real NAT routers.

Brings up a 4-host lab with its own id: aws and azure on the bridge (endpoints), gcp and aliyun each behind a
NAT router of its own (`--nat gcp --nat aliyun`, cone by default), applies the mesh, then pings from gcp
(`ping -c 50 -i 0.05`, in gcp's namespace):
  - azure's mesh address: the baseline, a direct pair (azure has an endpoint; gcp's packets cross its NAT);
  - aliyun's mesh address: neither has an endpoint, so the pair goes through the relay (aws) unless a punched
    direct path is up: the path printed is what gcp's WireGuard says (aliyun's address on aws's peer entry
    or on aliyun's own). `--aliyun-nat symmetric` keeps the pair on the relay whatever the hole punching does.
Prints median and mean RTTs and the ratio against the direct pair. The lab is taken down at the end, whatever
happened. Run as root: `.venv/bin/python bench/nat_rtt.py`.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from benchlib import check, free_id, labmod, wgmesh_argv

NAMES = ("aws", "azure", "gcp", "aliyun")
COUNT = 50
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
    ap.add_argument("--aliyun-nat", choices=labmod.NAT_KINDS, default="cone", help="aliyun's NAT (default cone)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root (the lab uses network namespaces)")

    lab_id = args.id if args.id is not None else free_id()
    work = Path(tempfile.mkdtemp(prefix="wgmesh-bench-nat-rtt-"))
    lab_dir = work / "mesh"
    env = {k: v for k, v in os.environ.items() if not k.startswith("WGMESH_")} | {"NO_COLOR": "1"}

    def wgmesh(*a: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*wgmesh_argv(), *a], cwd=lab_dir, env=env, capture_output=True, text=True, timeout=300)

    nat = ["gcp", f"aliyun:{args.aliyun_nat}"]
    print(f"lab {lab_id}: aws, azure public; gcp (cone), aliyun ({args.aliyun_nat}) behind NAT routers; "
          f"{args.count} pings {INTERVAL * 1000:.0f} ms apart from gcp", flush=True)
    try:
        lab = labmod.up(labmod.make_lab(lab_id, lab_dir, names=NAMES, nat=nat))
        check(wgmesh("apply", "--auto-approve"), "apply")
        for dst in ("azure", "aliyun", "aws"):  # handshakes done before measuring
            _rtts(lab, "gcp", dst, 3)
        rows = []
        for dst in ("azure", "aliyun"):
            path = _path(lab, "gcp", dst)
            rtts = _rtts(lab, "gcp", dst, args.count)
            rows.append((f"gcp -> {dst}", path, statistics.median(rtts), statistics.fmean(rtts), len(rtts)))
        base = rows[0][2]
        print(f"{'pair':<16} {'path':<16} {'median':>10} {'mean':>10} {'answered':>9}  ratio (median)")
        for pair, path, median, mean, n in rows:
            ratio = "1.00x (baseline: direct)" if pair == rows[0][0] else f"{median / base:.2f}x"
            print(f"{pair:<16} {path:<16} {median:>7.3f} ms {mean:>7.3f} ms {n:>5}/{args.count}  {ratio}")
        print(f"load average: {' '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
        return 0
    finally:
        try:
            labmod.down(lab_dir)
        finally:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
