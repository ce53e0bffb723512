#!/usr/bin/env python3
"""Big meshes: `wgmesh validate` and `wgmesh render NODE` of 2,000- and 10,000-node mesh.yaml files.

    .venv/bin/python bench/big_mesh.py [--nodes 2000,10000] [--runs 3] [--no-baseline]

Each mesh is bench/render.py's (an address, a public key, an endpoint name for 9 nodes in 10, a routed /24 each),
written as mesh.yaml in a temporary folder. Each command runs as its own process (interpreter start and imports
included); the wall time is the median of --runs, the memory the peak RSS of the process (wait4). Targets (issue
16): under 5 s and 300 MB at 10,000 nodes. Baseline, side by side: the same validation through ruamel's round
trip (the loader that edits use; its 40,000-value limit lifted for the measurement). And the alias bomb of
tests/meshfile/test_hardening.py must still be refused within 2 s.
"""

from __future__ import annotations

import argparse
import base64
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from render import mesh_yaml, node_name

TARGET_SECONDS = 5.0
TARGET_MB = 300
BOMB = 'l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]\n' + "".join(
    f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]\n" for i in range(1, 10)
)
ROUND_TRIP = """
import sys
from wgmesh.meshfile import document, fastyaml, yamldoc
def declined(text, max_values):
    raise fastyaml.Declined(0, "measuring the round trip")
fastyaml.read = declined
yamldoc.MAX_BYTES, yamldoc.MAX_LINES, yamldoc.MAX_VALUES = 10**8, 10**8, 10**8
mesh, _ = document.load(sys.argv[1])
print(len(mesh.nodes))
"""


def _wgmesh() -> list[str]:
    exe = Path(sys.executable).with_name("wgmesh")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "wgmesh"]


def run(argv: list[str], cwd: Path) -> tuple[float, float, str]:
    """Wall seconds, peak RSS in MB and stdout of one process."""
    out = cwd / ".out"
    with open(out, "wb") as f:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=cwd, stdout=f, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
    text = out.read_text(errors="replace")
    if proc.returncode != 0 and "bomb" not in argv[-1]:
        sys.exit(f"{' '.join(argv)} failed ({proc.returncode}):\n{text[-2000:]}")
    return elapsed, usage.ru_maxrss / 1024, text


def measure(argv: list[str], cwd: Path, runs: int) -> tuple[float, float]:
    got = [run(argv, cwd) for _ in range(runs)]
    return statistics.median(t for t, _, _ in got), max(m for _, m, _ in got)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", default="2000,10000", help="mesh sizes, comma separated (default 2000,10000)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--no-baseline", action="store_true", help="skip the round-trip baseline (slow: ~1 ms a node)")
    args = ap.parse_args()
    wgmesh = _wgmesh()
    missed = False
    with tempfile.TemporaryDirectory(prefix="wgmesh-bench-big-") as tmp:
        work = Path(tmp)
        print(f"{'':34} {'wall':>8} {'peak RSS':>9}   (median of {args.runs}; targets at 10,000 nodes: "
              f"< {TARGET_SECONDS:g} s, < {TARGET_MB} MB)")
        for n in (int(x) for x in args.nodes.split(",")):
            keys = [base64.b64encode(i.to_bytes(32, "big")).decode() for i in range(1, n + 1)]
            mesh = work / f"mesh-{n}.yaml"
            mesh.write_text(mesh_yaml(n, keys))
            size = mesh.stat().st_size
            print(f"{n} nodes: {size / 1e6:.1f} MB, {mesh.read_text().count(chr(10))} lines")
            rows = [
                ("wgmesh validate", [*wgmesh, "validate", "-f", mesh.name]),
                (f"wgmesh render {node_name(n // 2)}", [*wgmesh, "render", node_name(n // 2), "-f", mesh.name]),
            ]
            if not args.no_baseline:
                rows.append(("round trip (baseline)", [sys.executable, "-c", ROUND_TRIP, mesh.name]))
            results = {}
            for label, argv in rows:
                t, mb = measure(argv, work, args.runs if "baseline" not in label else 1)
                results[label] = t
                ok = t < TARGET_SECONDS and mb < TARGET_MB
                missed |= n >= 10_000 and "baseline" not in label and not ok
                print(f"  {label:32} {t:7.2f}s {mb:7.0f} MB")
            if "round trip (baseline)" in results:
                speedup = results["round trip (baseline)"] / results["wgmesh validate"]
                print(f"  {'validate: speed-up':32} {speedup:7.1f}x")
        (work / "bomb.yaml").write_text(BOMB)
        t, _, text = run([*wgmesh, "validate", "-f", "bomb.yaml"], work)
        refused = "anchors and aliases are not supported" in text
        print(f"alias bomb refused: {'yes' if refused else 'NO'} in {t:.2f} s (target < 2 s)")
        missed |= not refused or t >= 2
    print(f"load average: {' '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
    print("targets: " + ("MISSED" if missed else "OK"))
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
