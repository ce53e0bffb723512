"""What the lab benchmarks share: a free lab id, the wgmesh command and its environment, a checked subprocess
result, root, the machine's load, and taking a lab and its folder down."""

from __future__ import annotations

import os
import shutil
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


def require_root() -> None:
    if os.geteuid() != 0:
        raise SystemExit("run as root (the lab uses network namespaces)")


def clean_env(color: bool = False) -> dict[str, str]:
    """This process's environment without WGMESH_* settings (and NO_COLOR set unless `color`)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WGMESH_")}
    return env if color else env | {"NO_COLOR": "1"}


def run_wgmesh(lab_dir: Path, env: dict[str, str], *args: str, timeout: float = 300
               ) -> subprocess.CompletedProcess[str]:
    """`wgmesh ARGS` in the lab's folder, output captured."""
    return subprocess.run([*wgmesh_argv(), *args], cwd=lab_dir, env=env, capture_output=True, text=True,
                          timeout=timeout)


def load_average() -> str:
    return f"load average: {' '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs"


def teardown(lab_dir: Path, work: Path) -> None:
    """The lab in `lab_dir` down, then its work folder removed, whatever happened."""
    try:
        labmod.down(lab_dir)
    finally:
        shutil.rmtree(work, ignore_errors=True)
