#!/usr/bin/env python3
"""Render every config of an N-node full mesh with wgmesh and with wg-meshconf 2.5.1; compare wall times.

    .venv/bin/python bench/render.py [--nodes 1000] [--keep DIR]

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
import os
import shutil
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


def timed(argv: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{Path(argv[0]).name} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return elapsed


def tree_stats(directory: Path) -> tuple[int, int, int]:
    files = list(directory.glob("*.conf"))
    size = sum(f.stat().st_size for f in files)
    peers = sum(f.read_text().count("[Peer]") for f in files)
    return len(files), size, peers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1000, help="mesh size (default 1000)")
    parser.add_argument("--no-install", action="store_true", help="do not create the wg-meshconf venv")
    parser.add_argument("--skip-meshconf", action="store_true", help="time wgmesh only")
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


if __name__ == "__main__":
    main()
