#!/usr/bin/env python3
"""plan's controller cost at hundreds of nodes, on this machine, without hundreds of lab hosts.

    .venv/bin/python bench/controller_scale.py [--sizes 50,100,200,400] [--runs 3] [--parallelism 20]
                                               [--compare DIR]   # also another wgmesh tree (A/B), alternated

Each size N is a mesh of N nodes served by one SSH farm process (bench/sshfarm.py): N paramiko servers on
loopback ports, one host key, each node with its own known_hosts entry and its own answer, the output of
scripts/read.sh on a node that is as mesh.yaml wants it (tests/fakes.py renders it), so `wgmesh plan` must say
"No changes". The plan runs in a process of its own, wgmesh and paramiko imported first; its controller CPU is
resource.getrusage(RUSAGE_SELF) user+sys around `main(["plan", ...])`: connecting (key exchange, host key check,
authentication), running the read, parsing, planning, printing. The farms run the whole time, in another
process: their CPU is not the controller's. Sizes alternate round by round; medians of --runs.

What should stay flat is CPU per node. A full mesh's node reports N-1 peers, so part of the work per node
grows with N whatever the code (its output is ~250 bytes a peer: the dump line, the config's stanza): the table
shows that part apart. `us/peer` is CPU/node over the N-1 peer entries a node reports (connecting included, so
it falls as N grows); `marginal` is what each peer entry added from the size before (CPU/node difference over
the peers' difference): the per-peer cost, which is flat when nothing grows faster than the data; and a
least-squares fit CPU/node = connect + per_peer * (N-1).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402

MEASURE = """
import io, json, resource, sys, time
from wgmesh.cli.app import main
from wgmesh.remote.ssh import _paramiko
from wgmesh.views.env import Environment
import wgmesh.commands.converge
_paramiko()
env = Environment(io.StringIO(), io.StringIO(), environ={"NO_COLOR": "1"})
r0 = resource.getrusage(resource.RUSAGE_SELF)
t0 = time.perf_counter()
rc = main(["plan", "--parallelism", sys.argv[2], "-f", sys.argv[1]], env)
wall = time.perf_counter() - t0
r1 = resource.getrusage(resource.RUSAGE_SELF)
cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
out = env.stdout.getvalue()
import wgmesh
print(json.dumps({"rc": rc, "cpu": cpu, "wall": wall, "no_changes": "No changes." in out,
                  "tail": (out + env.stderr.getvalue())[-1500:], "tree": wgmesh.__file__}))
"""


def _key_file(path: Path) -> str:
    """A new ed25519 key in OpenSSH format at `path`; returns the public key's `ssh-ed25519 BASE64`."""
    key = Ed25519PrivateKey.generate()
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                       serialization.NoEncryption()))
    path.chmod(0o600)
    return key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()


class Farm:
    """One size: its mesh repo, and the farm process serving its nodes."""

    def __init__(self, n: int, work: Path) -> None:
        from fakes import read_output
        from meshes import converged

        from wgmesh import meshfile

        self.n = n
        self.bytes = 0  # the read output a node sends, on average
        self.dir = work / f"mesh-{n}"
        out_dir = self.dir / "answers"
        out_dir.mkdir(parents=True)
        host_pub = _key_file(self.dir / "host_key")
        _key_file(self.dir / "id_ed25519")
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "bench" / "sshfarm.py"), str(n), str(self.dir / "host_key"), str(out_dir)],
            stdout=subprocess.PIPE, text=True,
        )
        assert self.proc.stdout is not None
        ports = []
        for line in self.proc.stdout:
            if line.strip() == "ready":
                break
            ports.append(int(line))
        lines = ["version: 1", "mesh:", "  name: scale", "  network: 10.0.0.0/16", "ssh:", "  user: root",
                 f"  identity_file: {self.dir / 'id_ed25519'}", "  known_hosts: known_hosts", "nodes:"]
        for i, port in enumerate(ports):
            key = base64.b64encode((i + 1).to_bytes(32, "big")).decode()
            a, b = (i + 1) // 256, (i + 1) % 256
            lines += [f"  node-{i}:", f"    address: 10.0.{a}.{b}", f"    public_key: {key}",
                      f"    endpoint: 198.18.{a}.{b}:51820", f"    ssh: {{host: 127.0.0.1, port: {port}}}"]
        (self.dir / "mesh.yaml").write_text("\n".join(lines) + "\n")
        (self.dir / "known_hosts").write_text("".join(f"[127.0.0.1]:{p} {host_pub}\n" for p in ports))
        mesh, _ = meshfile.load(self.dir / "mesh.yaml")
        for node, port in zip(mesh.nodes, ports, strict=True):
            answer = read_output(converged(mesh, node.name))
            (out_dir / f"{port}.out").write_text(answer)
            self.bytes += len(answer.encode()) / n

    def plan(self, parallelism: int, tree: str | None = None) -> dict[str, float]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("WGMESH_")}
        if tree:  # another checkout's wgmesh (its own `wgmesh` package first on the path)
            env["PYTHONPATH"] = tree
        done = subprocess.run([sys.executable, "-c", MEASURE, str(self.dir / "mesh.yaml"), str(parallelism)],
                              capture_output=True, text=True, env=env, timeout=600, check=False,
                              cwd=self.dir)  # not this checkout's folder: `python -c` puts the cwd first on the path
        if done.returncode != 0:
            sys.exit(f"plan of {self.n} nodes failed:\n{done.stderr[-3000:]}")
        got = json.loads(done.stdout.strip().splitlines()[-1])
        if not got["tree"].startswith(tree or str(ROOT)):
            sys.exit(f"measured the wgmesh in {got['tree']}, not the one in {tree or ROOT}")
        if got["rc"] != 0 or not got["no_changes"]:
            sys.exit(f"plan of {self.n} nodes should say No changes (exit {got['rc']}):\n{got['tail']}")
        return got

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


def _fit(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """Least squares y = a + b x."""
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum((x - mx) ** 2 for x in xs)
    return my - b * mx, b


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="50,100,200,400")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--parallelism", type=int, default=20)
    ap.add_argument("--compare", metavar="DIR", help="a folder holding another wgmesh package, measured alike")
    args = ap.parse_args()
    trees: list[str | None] = [None] + ([str(Path(args.compare).resolve())] if args.compare else [])
    sizes = [int(x) for x in args.sizes.split(",")]
    with tempfile.TemporaryDirectory(prefix="wgmesh-bench-scale-") as tmp:
        farms: list[Farm] = []
        try:
            for n in sizes:
                farms.append(Farm(n, Path(tmp)))
            for farm in farms:  # warm-up: page cache, the farms' first handshakes
                for tree in trees:
                    farm.plan(args.parallelism, tree)
            results: dict[tuple[str | None, int], list[dict[str, float]]] = {(t, n): [] for t in trees for n in sizes}
            for _ in range(args.runs):
                for farm in farms:
                    for tree in trees:
                        results[(tree, farm.n)].append(farm.plan(args.parallelism, tree))
        finally:
            for farm in farms:
                farm.stop()
    read = {farm.n: farm.bytes for farm in farms}
    print(f"wgmesh plan --parallelism {args.parallelism}, controller CPU (user+sys, RUSAGE_SELF), medians of "
          f"{args.runs}; the nodes are an SSH farm in another process")
    for tree in trees:
        print(f"-- wgmesh from {tree or 'this tree'}")
        print(f"{'nodes':>6} {'read/node':>10} {'wall':>8} {'CPU':>8} {'CPU/node':>9} {'vs first':>9} "
              f"{'us/peer':>8} {'marginal':>9}")
        per_node = {}
        first = None
        for i, n in enumerate(sizes):
            cpu = statistics.median(r["cpu"] for r in results[(tree, n)])
            wall = statistics.median(r["wall"] for r in results[(tree, n)])
            per_node[n] = cpu / n
            first = first or per_node[n]
            marginal = ""
            if i > 0:  # what each peer entry added since the size before
                m = sizes[i - 1]
                marginal = f"{(per_node[n] - per_node[m]) / (n - m) * 1e6:6.1f}us"
            print(f"{n:6} {read[n] / 1000:8.1f}KB {wall:7.2f}s {cpu:7.2f}s {per_node[n] * 1000:7.2f}ms "
                  f"{per_node[n] / first:8.2f}x {per_node[n] / (n - 1) * 1e6:6.1f}us {marginal:>9}")
        if len(sizes) >= 2:
            a, b = _fit([n - 1 for n in sizes], [per_node[n] for n in sizes])
            print(f"fit: CPU/node = {a * 1000:.2f} ms + {b * 1e6:.1f} us x peers "
                  f"(the per-peer part: reading, parsing and comparing N-1 peers)")
    print(f"load average: {' '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
