"""How fast `wgmesh plan` reads an N-node mesh, next to the floor (OpenSSH) and Ansible ad-hoc.

For each size (--nodes 16,48: one lab after the other), brings up an N-host lab with its own id, applies once,
then times (median of RUNS, wall clock, after one unmeasured warm-up run of each; the sides alternate):
  - wgmesh:  `wgmesh plan --parallelism N` (the real command; must say "No changes");
  - floor, curve25519: OpenSSH reading the same output from all N hosts at once: `xargs -P N` running
             `ssh -o KexAlgorithms=curve25519-sha256 ... /bin/sh -s < read-script` (the script is
             `wgmesh.remote.read.read_command`), fresh connections. curve25519 is the key exchange paramiko ends
             up with against this sshd: the like-for-like floor, the one the target is set against (plan <= 1.2x);
  - floor, default kex: the same with OpenSSH 9's default (sntrup761x25519, ~140 ms more client CPU per
             connection), shown for reference;
  - ansible: `ansible all -m raw -a '<read script>' -f N` with an inventory of the N hosts, fresh
             connections (ControlMaster off, as wgmesh and the floor have none to reuse); --no-ansible skips it.
ansible-core is installed from PyPI into /tmp/wgmesh-bench-ansible if it is missing.
The lab is taken down at the end, whatever happened. Run as root: `.venv/bin/python bench/plan_fanout.py`.
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from benchlib import check, clean_env, free_id, labmod, load_average, require_root, teardown, wgmesh_argv

from wgmesh.remote import read as live

NODES = "16,48"
RUNS = 5
ANSIBLE_VENV = Path("/tmp/wgmesh-bench-ansible")
TARGET_FLOOR_RATIO = 1.2  # against the curve25519 floor (issue 16)


def _run(argv: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False, **kw)  # type: ignore[call-overload]


def _alternated(sides: dict[str, Callable[[], None]], runs: int) -> dict[str, list[float]]:
    """Each side once unmeasured (page cache, ARP, sshd's first fork), then `runs` rounds, the sides in turn."""
    for fn in sides.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(runs):
        for name, fn in sides.items():
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    return times


def _ansible() -> Path:
    exe = ANSIBLE_VENV / "bin" / "ansible"
    if not exe.exists():
        print(f"installing ansible-core into {ANSIBLE_VENV} ...", flush=True)
        check(_run([sys.executable, "-m", "venv", str(ANSIBLE_VENV)]), "python -m venv")
        check(_run([str(ANSIBLE_VENV / "bin" / "pip"), "install", "-q", "ansible-core"]), "pip install ansible-core")
    return exe


def bench_size(nodes: int, args: argparse.Namespace, ansible: Path | None) -> dict[str, float]:
    lab_id = args.id if args.id is not None else free_id()
    work = Path(tempfile.mkdtemp(prefix="wgmesh-bench-fanout-"))
    lab_dir = work / "mesh"
    print(f"lab {lab_id}: {nodes} hosts in {lab_dir}", flush=True)
    try:
        lab = labmod.up(labmod.make_lab(lab_id, lab_dir, nodes=nodes, root_login=True))
        env = clean_env()
        check(_run([*wgmesh_argv(), "apply", "--auto-approve", "--parallelism", str(nodes)], cwd=lab_dir, env=env),
              "wgmesh apply")

        def wgmesh_plan() -> None:
            out = check(_run([*wgmesh_argv(), "plan", "--parallelism", str(nodes)], cwd=lab_dir, env=env),
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
                check(_run(["xargs", "-P", str(nodes), "-I{}", "sh", "-c", per_host, "sh", "{}"], input=ips),
                      "xargs ssh")
                for h in lab.hosts:
                    if not (outdir / str(h.ip)).read_text().rstrip().endswith(f"{live.MARK}end"):
                        raise SystemExit(f"floor: incomplete read from {h.name}")

            return run

        sides: dict[str, Callable[[], None]] = {
            "wgmesh plan": wgmesh_plan,
            "floor, curve25519": floor("-o KexAlgorithms=curve25519-sha256"),
            "floor, default kex": floor(),
        }
        if ansible is not None:
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
                                  "-f", str(nodes)], env=ansible_env), "ansible -m raw")
                if out.count(f"{live.MARK}end") < nodes:
                    raise SystemExit(f"ansible: not every host answered:\n{out[-2000:]}")

            sides["ansible -m raw"] = ansible_raw

        times = _alternated(sides, args.runs)
        results = {name: statistics.median(ts) for name, ts in times.items()}
        for name, ts in times.items():
            print(f"  {name:20} median {results[name]:6.3f} s   runs: {' '.join(f'{t:.3f}' for t in ts)}", flush=True)
        w, f2, f = results["wgmesh plan"], results["floor, curve25519"], results["floor, default kex"]
        verdict = "OK" if w / f2 <= TARGET_FLOOR_RATIO else "MISSED"
        print(f"  wgmesh/floor (curve25519) = {w / f2:.2f}x  (target <= {TARGET_FLOOR_RATIO:.1f}x): {verdict}")
        print(f"  wgmesh/floor (default kex) = {w / f:.2f}x")
        if "ansible -m raw" in results:
            a = results["ansible -m raw"]
            print(f"  wgmesh/ansible = {w / a:.2f}x  (target < 1.0x): {'OK' if w < a else 'MISSED'}")
        print(f"  {load_average()}", flush=True)
        return results
    finally:
        teardown(lab_dir, work)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--id", type=int, default=None, help="lab id (default: the first free one in 40..49)")
    ap.add_argument("--runs", type=int, default=RUNS)
    ap.add_argument("--nodes", default=NODES, help=f"lab sizes, comma separated (default {NODES}; at most "
                    f"{labmod.MAX_NODES})")
    ap.add_argument("--no-ansible", action="store_true", help="leave Ansible out")
    args = ap.parse_args()

    require_root()
    sizes = [int(x) for x in args.nodes.split(",")]
    if max(sizes) > labmod.MAX_NODES:
        raise SystemExit(f"the lab takes at most {labmod.MAX_NODES} hosts")
    ansible = None if args.no_ansible else _ansible()
    summary = {n: bench_size(n, args, ansible) for n in sizes}
    print()
    for n, r in summary.items():
        w, f2 = r["wgmesh plan"], r["floor, curve25519"]
        print(f"{n:3} hosts: wgmesh plan {w:.3f} s, curve25519 floor {f2:.3f} s: {w / f2:.2f}x "
              f"(default-kex floor {r['floor, default kex']:.3f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
