"""What the lab benchmarks share: a free lab id, the wgmesh command, and a checked subprocess result."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from e2e import labkit as labmod

IDS = range(40, 50)  # the benchmarks' lab ids; the tests use 10..50 but pick free ones


def free_id() -> int:
    for i in IDS:
        if not labmod.lab_in_use(i):
            return i
    raise SystemExit(f"no free lab id in {IDS.start}..{IDS.stop - 1}")


def wgmesh_argv() -> list[str]:
    exe = Path(sys.executable).with_name("wgmesh")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "wgmesh"]


def check(r: subprocess.CompletedProcess[str], what: str) -> str:
    if r.returncode != 0:
        raise SystemExit(f"{what} failed (exit {r.returncode}):\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
    return r.stdout
