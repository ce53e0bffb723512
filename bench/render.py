#!/usr/bin/env python3
"""Render every config of an N-node full mesh with wgmesh and with wg-meshconf 2.5.1; compare wall times.

    .venv/bin/python bench/render.py [--nodes 1000] [--skip-meshconf] [--plain-runs 5]

Second baseline: `wgmesh render --all --out DIR` (the real command) against a plain writer of the same bytes:
a Python process that gets each node's [Interface] part and the distinct [Peer] stanzas (JSON, O(N), made from
wgmesh's own output) and writes DIR/NODE.conf as its part plus its peers' stanzas, as a hand-written generator
without YAML, validation or model would; and the I/O floor, a process that copies the finished bytes from one
file. Alternated, each run after `sync` into an empty folder, medians of --plain-runs (target: within 1.5x of the
plain writer), in wall time and in CPU time (the child's user+sys: steadier than wall time on a shared machine).
The three write the same bytes to the same number of files with the same durability: none of them fsyncs
(render --all writes plain files, like any generator; mesh.yaml's edits are the atomic, fsynced writes).

Both tools get the SAME mesh: node-i with address 10.0.x.y, one routed /24 each, an endpoint
node-i.example.com:51820 for 9 nodes in 10 (the tenth is behind NAT), and write DIR/NODE.conf for
every node. Each side runs as its own process, so interpreter start, imports, reading its database
(mesh.yaml for wgmesh, a CSV for wg-meshconf) and writing the files are all inside the timing.

wg-meshconf stores private keys in its CSV and derives every public key from them (its design), so it
gets throwaway keys generated here in memory; they live only in a private temporary folder that is
removed at the end. wgmesh gets the matching public keys only.

wg-meshconf is looked up on PATH, then in /tmp/wgmesh-bench-venv; if missing there, that venv is created
and `pip install wg-meshconf==2.5.1` runs into it (never into the project's venv). --no-install refuses.
"""

from __future__ import annotations

import argparse
import base64
import csv
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from nacl.public import PrivateKey

BENCH_VENV = Path("/tmp/wgmesh-bench-venv")
WG_MESHCONF_VERSION = "2.5.1"


def node_name(i: int) -> str:
    return f"node-{i}"


def address(i: int) -> str:
    return f"10.0.{(i + 1) // 256}.{(i + 1) % 256}"


def subnet(i: int) -> str:
    return f"172.{16 + i // 256}.{i % 256}.0/24"


def has_endpoint(i: int) -> bool:
    return i % 10 != 9


def keypairs(n: int) -> list[tuple[str, str]]:
    """(private, public) base64 pairs: throwaway keys, only for wg-meshconf's database."""
    out = []
    for _ in range(n):
        key = PrivateKey.generate()
        out.append((base64.b64encode(bytes(key)).decode(), base64.b64encode(bytes(key.public_key)).decode()))
    return out


def mesh_yaml(n: int, publics: list[str]) -> str:
    lines = [
        "version: 1",
        "mesh:",
        "  name: bench",
        "  interface: wg0",
        "  network: 10.0.0.0/16",
        "  listen_port: 51820",
        "  persistent_keepalive: 25",
        "nodes:",
    ]
    for i in range(n):
        lines += [f"  {node_name(i)}:", f"    address: {address(i)}", f"    public_key: {publics[i]}"]
        if has_endpoint(i):
            lines.append(f"    endpoint: {node_name(i)}.example.com:51820")
        else:
            lines.append(f"    ssh: {{host: 203.0.113.{i % 250 + 1}}}")
        lines.append(f"    subnets: [{subnet(i)}]")
    return "\n".join(lines) + "\n"


def meshconf_csv(path: Path, n: int, privates: list[str]) -> None:
    """wg-meshconf's database: CSV, all values quoted, lists comma-joined, Endpoint without the port
    (it appends ListenPort), AllowedIPs = extra routes (it prepends the peer's Address)."""
    columns = [
        "Name", "Address", "Endpoint", "AllowedIPs", "ListenPort", "PersistentKeepalive", "FwMark",
        "PrivateKey", "DNS", "MTU", "Table", "PreUp", "PostUp", "PreDown", "PostDown", "SaveConfig",
    ]  # fmt: skip
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, columns, quoting=csv.QUOTE_ALL)
        writer.writeheader()
        for i in range(n):
            row = dict.fromkeys(columns, "")
            row.update(
                Name=node_name(i),
                Address=f"{address(i)}/32",
                Endpoint=f"{node_name(i)}.example.com" if has_endpoint(i) else "",
                AllowedIPs=subnet(i),
                ListenPort="51820",
                PrivateKey=privates[i],
            )
            writer.writerow(row)


OURS = """
import sys, time
from pathlib import Path
from wgmesh.meshfile import load
from wgmesh.core.render import render_all
mesh, _ = load(sys.argv[1])
out = Path(sys.argv[2])
out.mkdir(exist_ok=True)
for name, text in render_all(mesh):
    with open(out / f"{name}.conf", "w", encoding="utf-8") as f:
        f.write(text)
"""


def find_meshconf(install: bool) -> list[str]:
    on_path = shutil.which("wg-meshconf")
    if on_path:
        return [on_path]
    exe = BENCH_VENV / "bin" / "wg-meshconf"
    if exe.exists():
        return [str(exe)]
    if not install:
        sys.exit(f"wg-meshconf not found on PATH or in {BENCH_VENV}; run without --no-install to set it up")
    print(f"setting up {BENCH_VENV} with wg-meshconf=={WG_MESHCONF_VERSION} ...", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", str(BENCH_VENV)], check=True)
    subprocess.run(
        [str(BENCH_VENV / "bin" / "pip"), "install", "-q", f"wg-meshconf=={WG_MESHCONF_VERSION}"], check=True
    )
    return [str(exe)]


PLAIN = """
import json, os, sys
stanzas, files = json.load(open(sys.argv[1]))
out = sys.argv[2]
os.makedirs(out, exist_ok=True)
for name, head, runs in files:
    parts = [head]
    for run in runs:
        parts.extend(stanzas[run[0]:run[1]])
    with open(os.path.join(out, name), "w", encoding="utf-8") as f:
        f.write("".join(parts))
"""

COPY = """
import json, os, sys
blob = open(sys.argv[1], "rb").read()
out = sys.argv[3]
os.makedirs(out, exist_ok=True)
pos = 0
for name, size in json.load(open(sys.argv[2])):
    with open(os.path.join(out, name), "wb") as f:
        f.write(blob[pos:pos + size])
    pos += size
"""


def _pieces(work: Path, names: list[str]) -> None:
    """The plain writer's input: every distinct stanza once, and per file its head and its stanzas as runs of
    consecutive stanza indices; the copier's: the files' bytes in one blob."""
    table: dict[str, int] = {}
    stanzas: list[str] = []
    files = []
    index = []
    with open(work / "blob", "wb") as blob:
        for name in names:
            data = (work / "wgmesh-out" / name).read_bytes()
            blob.write(data)
            index.append((name, len(data)))
            head, *peers = data.decode().split("\n# ")
            runs: list[list[int]] = []
            for p in ("\n# " + p for p in peers):
                i = table.get(p)
                if i is None:
                    i = table[p] = len(stanzas)
                    stanzas.append(p)
                if runs and runs[-1][1] == i:
                    runs[-1][1] = i + 1
                else:
                    runs.append([i, i + 1])
            files.append((name, head, runs))
    (work / "pieces.json").write_text(json.dumps([stanzas, files]))
    (work / "index.json").write_text(json.dumps(index))


def plain_floor(work: Path, runs: int) -> dict[str, tuple[float, float]]:
    """Medians (wall, CPU) of `wgmesh render --all`, the plain writer and the copier of the same bytes,
    alternated; keyed cli, plain, copy."""
    exe = Path(sys.executable).with_name("wgmesh")
    wgmesh = [str(exe)] if exe.exists() else [sys.executable, "-m", "wgmesh"]
    names = sorted(p.name for p in (work / "wgmesh-out").glob("*.conf"))
    _pieces(work, names)
    sides = (
        ("cli-out", [*wgmesh, "render", "--all", "--out", "cli-out", "-f", "mesh.yaml"]),
        ("plain-out", [sys.executable, "-c", PLAIN, "pieces.json", "plain-out"]),
        ("copy-out", [sys.executable, "-c", COPY, "blob", "index.json", "copy-out"]),
    )
    times: dict[str, list[tuple[float, float]]] = {out: [] for out, _ in sides}
    for _ in range(runs):
        for out, argv in sides:
            shutil.rmtree(work / out, ignore_errors=True)
            os.sync()
            times[out].append(timed_cpu(argv, work))
    for out, _ in sides:
        got = sorted(p.name for p in (work / out).glob("*.conf"))
        ref = work / "wgmesh-out"
        same = got == names and all((work / out / n).read_bytes() == (ref / n).read_bytes() for n in names)
        assert same, f"{out}: not the same files as wgmesh's"
    return {out.removesuffix("-out"): (statistics.median(w for w, _ in times[out]),
                                       statistics.median(c for _, c in times[out])) for out, _ in sides}


def timed(argv: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{Path(argv[0]).name} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return elapsed


def timed_cpu(argv: list[str], cwd: Path) -> tuple[float, float]:
    """Wall time and the child's CPU time (user+sys)."""
    with tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        child = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(child.pid, 0)
        elapsed = time.perf_counter() - start
        child.returncode = os.waitstatus_to_exitcode(status)
        if child.returncode != 0:
            err.seek(0)
            sys.exit(f"{Path(argv[0]).name} failed ({child.returncode}):\n{err.read().decode()[-3000:]}")
    return elapsed, usage.ru_utime + usage.ru_stime


def tree_stats(directory: Path) -> tuple[int, int, int]:
    files = list(directory.glob("*.conf"))
    size = sum(f.stat().st_size for f in files)
    peers = sum(f.read_text().count("[Peer]") for f in files)
    return len(files), size, peers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1000, help="mesh size (default 1000)")
    parser.add_argument("--no-install", action="store_true", help="do not create the wg-meshconf venv")
    parser.add_argument("--skip-meshconf", action="store_true", help="leave wg-meshconf out")
    parser.add_argument("--plain-runs", type=int, default=5, help="runs against the plain writer (0: none)")
    args = parser.parse_args()
    n = args.nodes
    meshconf = None if args.skip_meshconf else find_meshconf(not args.no_install)

    with tempfile.TemporaryDirectory(prefix="wgmesh-bench-") as tmp:
        work = Path(tmp)  # mode 700: the CSV holds (throwaway) private keys
        pairs = keypairs(n)
        (work / "mesh.yaml").write_text(mesh_yaml(n, [pub for _, pub in pairs]))
        if meshconf:
            meshconf_csv(work / "database.csv", n, [priv for priv, _ in pairs])
        del pairs

        ours = timed([sys.executable, "-c", OURS, "mesh.yaml", "wgmesh-out"], work)
        ours_files, ours_size, ours_peers = tree_stats(work / "wgmesh-out")
        print(f"nodes: {n}")
        print(f"wgmesh      : {ours:8.2f} s  {ours_files} files, {ours_size / 1e6:.1f} MB, {ours_peers} peer stanzas")
        if meshconf:
            theirs = timed([*meshconf, "-d", "database.csv", "genconfig", "-o", "meshconf-out"], work)
            files, size, peers = tree_stats(work / "meshconf-out")
            print(f"wg-meshconf : {theirs:8.2f} s  {files} files, {size / 1e6:.1f} MB, {peers} peer stanzas")
            assert (files, peers) == (ours_files, ours_peers), "the two tools did not render the same mesh"
            print(f"speed-up    : {theirs / ours:8.1f}x")
        if args.plain_runs > 0:
            got = plain_floor(work, args.plain_runs)
            (cli, cli_cpu), (plain, plain_cpu), (copy, copy_cpu) = got["cli"], got["plain"], got["copy"]
            print(f"medians of {args.plain_runs}, alternated: wall time, CPU time (user+sys)")
            print(f"wgmesh render --all : {cli:6.2f} s {cli_cpu:6.2f} s CPU")
            print(f"plain writer        : {plain:6.2f} s {plain_cpu:6.2f} s CPU (each node's part and its peers' "
                  f"stanzas, from JSON)")
            print(f"I/O floor           : {copy:6.2f} s {copy_cpu:6.2f} s CPU (the finished bytes copied from one "
                  f"file)")
            print(f"wgmesh/I/O floor    : {cli / copy:6.2f}x")
            verdict = "OK" if cli / plain <= 1.5 else "MISSED"
            print(f"wgmesh/plain        : {cli / plain:6.2f}x (target <= 1.5x): {verdict}; "
                  f"CPU time {cli_cpu / plain_cpu:.2f}x")


if __name__ == "__main__":
    main()
