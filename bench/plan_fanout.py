"""How fast `wgmesh plan` reads a 16-node mesh, next to the floor (OpenSSH) and Ansible ad-hoc.

Brings up a 16-host lab with its own id, applies once, then times (median of RUNS, wall clock, after one
unmeasured warm-up run of each):
  - wgmesh:  `wgmesh plan` (the real command; must say "No changes");
  - floor:   OpenSSH reading the same output from all 16 hosts at once: `xargs -P 16` running
             `ssh ... /bin/sh -s < read-script` (the script is `wgmesh.remote.read.read_command`), fresh connections;
  - floor, curve25519: the same with `-o KexAlgorithms=curve25519-sha256`, the key exchange paramiko ends up
             with against this sshd (OpenSSH 9.2 prefers sntrup761x25519, which costs more CPU): a stricter floor;
  - ansible: `ansible all -m raw -a '<read script>' -f 16` with an inventory of the 16 hosts, fresh
             connections (ControlMaster off, as wgmesh and the floor have none to reuse).
ansible-core is installed from PyPI into /tmp/wgmesh-bench-ansible if it is missing.
The lab is taken down at the end, whatever happened. Run as root: `.venv/bin/python bench/plan_fanout.py`.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from benchlib import check, free_id, labmod, wgmesh_argv

from wgmesh.remote import read as live

NODES = 16
RUNS = 5
ANSIBLE_VENV = Path("/tmp/wgmesh-bench-ansible")
TARGET_FLOOR_RATIO = 2.0


def _run(argv: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False, **kw)  # type: ignore[call-overload]


def _median_time(fn: Callable[[], None], runs: int) -> tuple[float, list[float]]:
    fn()  # warm-up: page cache, ARP, sshd's first fork
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), times


def _ansible() -> Path:
    exe = ANSIBLE_VENV / "bin" / "ansible"
    if not exe.exists():
        print(f"installing ansible-core into {ANSIBLE_VENV} ...", flush=True)
        check(_run([sys.executable, "-m", "venv", str(ANSIBLE_VENV)]), "python -m venv")
        check(_run([str(ANSIBLE_VENV / "bin" / "pip"), "install", "-q", "ansible-core"]), "pip install ansible-core")
    return exe


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--id", type=int, default=None, help="lab id (default: the first free one in 40..49)")
    ap.add_argument("--runs", type=int, default=RUNS)
    ap.add_argument("--nodes", type=int, default=NODES)
    args = ap.parse_args()

    if os.geteuid() != 0:
        raise SystemExit("run as root (the lab uses network namespaces)")
    ansible = _ansible()
    lab_id = args.id if args.id is not None else free_id()
    work = Path(tempfile.mkdtemp(prefix="wgmesh-bench-fanout-"))
    lab_dir = work / "mesh"
    print(f"lab {lab_id}: {args.nodes} hosts in {lab_dir}", flush=True)
    try:
        lab = labmod.up(labmod.make_lab(lab_id, lab_dir, nodes=args.nodes, root_login=True))
        env = {k: v for k, v in os.environ.items() if not k.startswith("WGMESH_")} | {"NO_COLOR": "1"}
        check(_run([*wgmesh_argv(), "apply", "--auto-approve"], cwd=lab_dir, env=env), "wgmesh apply")

        def wgmesh_plan() -> None:
            out = check(_run([*wgmesh_argv(), "plan", "--parallelism", str(args.nodes)], cwd=lab_dir, env=env),
                         "wgmesh plan")
            if "No changes." not in out:
                raise SystemExit(f"wgmesh plan after apply should say No changes:\n{out}")

        script = work / "read.sh"
        script.write_text(live.read_command(labmod.INTERFACE))
        outdir = work / "floor"
        outdir.mkdir()
        ssh = labmod.ssh_argv(lab, lab.hosts[0].name, "/bin/sh -s")
        ssh_opts = shlex.join(ssh[1:-2])  # everything between `ssh` and `root@IP /bin/sh -s`
        ips = "\n".join(str(h.ip) for h in lab.hosts) + "\n"

        def floor(extra: str = "") -> Callable[[], None]:
            per_host = f"exec ssh {ssh_opts} {extra} root@$1 /bin/sh -s < {shlex.quote(str(script))} > {outdir}/$1"

            def run() -> None:
                for h in lab.hosts:
                    (outdir / str(h.ip)).unlink(missing_ok=True)
                check(_run(["xargs", "-P", str(args.nodes), "-I{}", "sh", "-c", per_host, "sh", "{}"], input=ips),
                       "xargs ssh")
                for h in lab.hosts:
                    if not (outdir / str(h.ip)).read_text().rstrip().endswith(f"{live.MARK}end"):
                        raise SystemExit(f"floor: incomplete read from {h.name}")

            return run

        inventory = work / "inventory.ini"
        inventory.write_text(
            "[lab]\n" + "".join(f"{h.ip}\n" for h in lab.hosts) + "\n[lab:vars]\nansible_user=root\n"
            f"ansible_ssh_private_key_file={lab.identity_file}\n"
            f"ansible_ssh_common_args='-o UserKnownHostsFile={lab.known_hosts} -o GlobalKnownHostsFile=/dev/null "
            "-o StrictHostKeyChecking=yes'\n"
        )
        ansible_home = work / "ansible-home"
        ansible_env = env | {
            "HOME": str(ansible_home),
            "ANSIBLE_HOST_KEY_CHECKING": "True",
            "ANSIBLE_SSH_ARGS": "-o ControlMaster=no",
            "ANSIBLE_LOCAL_TEMP": str(ansible_home / "tmp"),
            "ANSIBLE_NOCOLOR": "1",
        }
        read_cmd = live.read_command(labmod.INTERFACE)

        def ansible_raw() -> None:
            out = check(_run([str(ansible), "all", "-i", str(inventory), "-m", "raw", "-a", read_cmd,
                               "-f", str(args.nodes)], env=ansible_env), "ansible -m raw")
            if out.count(f"{live.MARK}end") < args.nodes:
                raise SystemExit(f"ansible: not every host answered:\n{out[-2000:]}")

        results = {}
        for name, fn in (("wgmesh plan", wgmesh_plan), ("floor (xargs -P ssh)", floor()),
                         ("floor, curve25519", floor("-o KexAlgorithms=curve25519-sha256")),
                         ("ansible -m raw", ansible_raw)):
            med, times = _median_time(fn, args.runs)
            results[name] = med
            print(f"{name:22} median {med:6.3f} s   runs: {' '.join(f'{t:.3f}' for t in times)}", flush=True)
        w, f, a = results["wgmesh plan"], results["floor (xargs -P ssh)"], results["ansible -m raw"]
        f2 = results["floor, curve25519"]
        print()
        print(f"wgmesh/floor   = {w / f:.2f}x  (target <= {TARGET_FLOOR_RATIO:.1f}x, aim 1.2x): "
              f"{'OK' if w / f <= TARGET_FLOOR_RATIO else 'MISSED'}")
        print(f"wgmesh/floor with the same key exchange = {w / f2:.2f}x")
        print(f"wgmesh/ansible = {w / a:.2f}x  (target < 1.0x): {'OK' if w < a else 'MISSED'}")
        print(f"load average: {' '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
        return 0
    finally:
        try:
            labmod.down(lab_dir)
        finally:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
