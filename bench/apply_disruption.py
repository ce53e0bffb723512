"""Pings lost between two mesh nodes while `wgmesh apply` adds a node, next to a wg-quick restart.

Brings up a 4-host lab (a, b, c, d) with its own id, applies a mesh of a, b and c (d is left out of
mesh.yaml), then, while node a pings b's mesh address every 10 ms (`ping -i 0.01`, inside a's namespace):
  1. adds d to mesh.yaml and runs `wgmesh apply --auto-approve` (every node gets a new peer: wg syncconf);
  2. baseline: restarts b's interface (`wg-quick down wg0; wg-quick up wg0` on b), as a tool that applies a
     change by restarting would; this window is at least 25 s, as a only starts a new handshake with the
     restarted b after 15 s without an answer.
Prints the pings lost in each window (target for the apply: at most 1). The ping starts 1 s before the
change and runs for long enough to cover it (it has a fixed count; the script checks it outlived the change).
The lab is taken down at the end, whatever happened. Run as root: `.venv/bin/python bench/apply_disruption.py`.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from benchlib import check, clean_env, free_id, labmod, load_average, require_root, run_wgmesh, teardown

NAMES = ("a", "b", "c", "d")
INTERVAL = 0.01
TARGET = 1
RESTART_WINDOW = 25.0


def _without_node(text: str, name: str) -> str:
    out = re.sub(rf"^  {re.escape(name)}:\n(?:    .*\n)*", "", text, flags=re.M)
    if out == text:
        raise SystemExit(f"node {name} not found in mesh.yaml")
    return out


def _ping_during(lab: labmod.Lab, src: str, dst: str, change: Callable[[], None], window: float) -> tuple[int, int]:
    """Ping dst from src every 10 ms for `window` seconds, running `change` 1 s in. Returns (sent, received)."""
    count = int(window / INTERVAL)
    argv = ["ip", "netns", "exec", lab.host(src).netns, "ping", "-n", "-q", "-i", str(INTERVAL), "-c", str(count),
            "-W", "1", dst]
    ping = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1.0)
        change()
        if ping.poll() is not None:
            raise SystemExit("the ping ended before the change did: run with a longer --window")
        out, err = ping.communicate(timeout=window + 30)
    finally:
        if ping.poll() is None:
            ping.kill()
    m = re.search(r"(\d+) packets transmitted, (\d+) received", out)
    if m is None:
        raise SystemExit(f"cannot read ping's summary:\n{out}\n{err}")
    return int(m.group(1)), int(m.group(2))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--id", type=int, default=None, help="lab id (default: the first free one in 40..49)")
    ap.add_argument("--window", type=float, default=None,
                    help="seconds of pinging per measurement (default: from the first apply's duration)")
    args = ap.parse_args()
    require_root()

    lab_id = args.id if args.id is not None else free_id()
    work = Path(tempfile.mkdtemp(prefix="wgmesh-bench-disruption-"))
    lab_dir = work / "mesh"
    env = clean_env()

    def wgmesh(*a: str) -> subprocess.CompletedProcess[str]:
        return run_wgmesh(lab_dir, env, *a)

    print(f"lab {lab_id}: hosts {', '.join(NAMES)} in {lab_dir}", flush=True)
    try:
        lab = labmod.up(labmod.make_lab(lab_id, lab_dir, names=NAMES, root_login=True))
        full = lab.mesh_path.read_text()
        lab.mesh_path.write_text(_without_node(full, "d"))
        started = time.perf_counter()
        check(wgmesh("apply", "--auto-approve"), "first apply (a, b, c)")
        first = time.perf_counter() - started
        window = args.window or max(6.0, 1.0 + 3 * first + 3.0)
        b_addr = str(lab.host("b").address)
        # the tunnel a -> b is up before measuring
        check(subprocess.run(["ip", "netns", "exec", lab.host("a").netns, "ping", "-c", "3", "-w", "10", b_addr],
                              capture_output=True, text=True), "warm-up ping a -> b")

        timing: dict[str, float] = {}

        def add_node() -> None:
            lab.mesh_path.write_text(full)
            t = time.perf_counter()
            r = wgmesh("apply", "--auto-approve")
            timing["apply"] = time.perf_counter() - t
            check(r, "apply adding d")
            if "changed" not in r.stdout:
                raise SystemExit(f"apply changed nothing:\n{r.stdout}")

        sent, got = _ping_during(lab, "a", b_addr, add_node, window)
        plan = wgmesh("plan", "--detailed-exitcode")
        if plan.returncode != 0:
            raise SystemExit(f"plan after the apply should exit 0:\n{plan.stdout}\n{plan.stderr}")
        print(f"apply adding node d ({timing['apply']:.2f} s): {sent - got} of {sent} pings lost "
              f"(target <= {TARGET}): {'OK' if sent - got <= TARGET else 'MISSED'}", flush=True)

        def restart_b() -> None:
            t = time.perf_counter()
            check(labmod.host_exec(lab_dir, "b", ["sh", "-c", "wg-quick down wg0 >/dev/null 2>&1; "
                                                   "wg-quick up wg0 </dev/null >/dev/null 2>&1"]),
                   "wg-quick restart on b")
            timing["restart"] = time.perf_counter() - t

        # Long enough for a to notice (WireGuard starts a new handshake after 15 s without an answer).
        sent2, got2 = _ping_during(lab, "a", b_addr, restart_b, max(window, RESTART_WINDOW))
        recovered = subprocess.run(["ip", "netns", "exec", lab.host("a").netns, "ping", "-c", "1", "-w", "30",
                                    b_addr], capture_output=True).returncode == 0
        print(f"baseline, wg-quick down/up on b ({timing['restart']:.2f} s): {sent2 - got2} of {sent2} pings lost"
              f"{'' if recovered else ' (and no answer 30 s later)'}", flush=True)
        print(load_average())
        return 0 if sent - got <= TARGET else 1
    finally:
        teardown(lab_dir, work)


if __name__ == "__main__":
    sys.exit(main())
