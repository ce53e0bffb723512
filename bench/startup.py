#!/usr/bin/env python3
"""Start-up: wgmesh's short commands next to the import floor of its own dependencies, side by side in one run.

    .venv/bin/python bench/startup.py [--runs 15] [--no-install]

Each line is a fresh process (wall clock, output to /dev/null), the lines alternated round-robin so that a
load change hits them all alike; the median of --runs rounds is reported. Baselines:
  - `python -c pass`: the interpreter alone;
  - the floor: `python -c "import typer, ruamel.yaml"`, the two libraries every wgmesh command needs;
  - `wg-meshconf --help` (wg-meshconf 2.5.1 in its own venv under /tmp, as bench/render.py sets it up).
Targets (issue 16): `wgmesh --version` <= 1.3x the floor, `wgmesh validate` (mesh.example) <= 2x the floor,
`wgmesh --help` no slower than `wg-meshconf --help`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from render import find_meshconf  # noqa: E402

RUNS = 15


def _wgmesh() -> list[str]:
    exe = Path(sys.executable).with_name("wgmesh")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "wgmesh"]


def _once(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=ROOT, check=False)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stderr.decode(errors='replace')[-2000:]}")
    return elapsed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=RUNS, help=f"rounds (default {RUNS}); the median is reported")
    ap.add_argument("--no-install", action="store_true", help="do not set up wg-meshconf's venv when it is missing")
    args = ap.parse_args()

    py = sys.executable
    wgmesh = _wgmesh()
    mesh = ROOT / "mesh.example" / "mesh.yaml"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WGMESH_", "PYTHON"))} | {"NO_COLOR": "1"}
    lines: dict[str, list[str]] = {
        "python -c pass": [py, "-c", "pass"],
        "floor: import typer, ruamel.yaml": [py, "-c", "import typer, ruamel.yaml"],
        "wgmesh --version": [*wgmesh, "--version"],
        "wgmesh validate (mesh.example)": [*wgmesh, "validate", "-f", str(mesh)],
        "wgmesh --help": [*wgmesh, "--help"],
    }
    try:
        lines["wg-meshconf --help"] = [*find_meshconf(not args.no_install), "--help"]
    except SystemExit as e:
        print(f"(wg-meshconf left out: {e})")
    for argv in lines.values():  # warm-up: page cache, .pyc files
        _once(argv, env)
    times: dict[str, list[float]] = {name: [] for name in lines}
    for _ in range(args.runs):
        for name, argv in lines.items():
            times[name].append(_once(argv, env))
    med = {name: statistics.median(ts) for name, ts in times.items()}

    floor = med["floor: import typer, ruamel.yaml"]
    print(f"{'':34} {'median':>8} {'vs floor':>9}   (runs: {args.runs}, alternated)")
    for name, m in med.items():
        print(f"{name:34} {m * 1000:6.0f}ms {m / floor:8.2f}x")
    print()
    verdicts = [
        ("wgmesh --version / floor", med["wgmesh --version"] / floor, 1.3),
        ("wgmesh validate / floor", med["wgmesh validate (mesh.example)"] / floor, 2.0),
    ]
    if "wg-meshconf --help" in med:
        verdicts.append(("wgmesh --help / wg-meshconf --help", med["wgmesh --help"] / med["wg-meshconf --help"], 1.0))
    for what, ratio, target in verdicts:
        print(f"{what:36} {ratio:5.2f}x  (target <= {target:.1f}x): {'OK' if ratio <= target else 'MISSED'}")
    print(f"load average: {' '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
