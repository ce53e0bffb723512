"""`wgmesh lab move NAME`: a host's underlay address changes, as a dynamic IP does (for a host behind a NAT
router: the router's bridge address). Its name follows on every host (their /etc/hosts), and the lab's own
records follow so that SSH still reaches it: the state, DIR/known_hosts, and the node's `ssh: {host: IP}` line
in DIR/mesh.yaml (nothing else of mesh.yaml changes: an `endpoint:` that is an address stays stale, one that is
a name is what DDNS is for)."""

from __future__ import annotations

import dataclasses
import ipaddress
from pathlib import Path

from wgmesh.lab.hosts import Lab, LabError, LabHost, move_address
from wgmesh.lab.netns import netns_exists, spawn_sshd
from wgmesh.lab.procs import alive, check, kill_all, run
from wgmesh.lab.state import load, save, write_atomic
from wgmesh.lab.texts import moved_known_hosts, moved_mesh_yaml, render_hosts, render_sshd_config


@dataclasses.dataclass(frozen=True)
class Move:
    host: str
    old: ipaddress.IPv4Address
    new: ipaddress.IPv4Address
    netns: str  # where the address changed: the host's namespace or its NAT router's
    mesh_yaml: bool  # the node's ssh host line in mesh.yaml was rewritten
    endpoint: str | None  # mesh.yaml's endpoint of the host, if it names the old address (now stale)


def _write_in_place(path: Path, text: str) -> None:
    """Each host bind-mounts its hosts file over /etc/hosts: keep the inode (no rename)."""
    with path.open("r+") as f:
        f.write(text)
        f.truncate()


def move(directory: Path, name: str, to: str | None = None) -> Move:
    lab = load(directory)
    host = lab.host(name)
    new = move_address(lab, host, to)
    old = host.ip
    netns = host.router_netns if host.router else host.netns
    if not netns_exists(netns):
        raise LabError(f"{name}: the host is not running (no namespace {netns}): `wgmesh lab up` again")
    prefix = lab.network.prefixlen
    # the old one first: deleting a primary address deletes the secondaries of its subnet with it
    batch = f"addr del {old}/{prefix} dev eth0\naddr add {new}/{prefix} dev eth0\n"
    check(["ip", "-n", netns, "-batch", "-"], f"{name}: moving {old} to {new}", input=batch)
    # whoever cached the old owner of either address (the machine, the other hosts and routers) asks again
    for ns in [None, *(h.router_netns if h.router else h.netns for h in lab.hosts)]:
        where = ["-n", ns] if ns else []
        for addr in (old, new):
            run(["ip", *where, "neigh", "flush", "to", str(addr), *([] if ns else ["dev", lab.bridge])])
    moved = dataclasses.replace(host, moved=None if new == host.home_ip else new)
    lab = lab.with_host(moved)
    if not host.router:  # sshd listens on the host's own address: a new listener (sessions stay)
        moved = _restart_sshd(lab, moved)
        lab = lab.with_host(moved)
    save(lab)
    for h in lab.hosts:
        hosts_file = lab.host_dir(h) / "hosts"
        if hosts_file.exists():
            _write_in_place(hosts_file, render_hosts(lab, h))
    if lab.known_hosts.exists():
        write_atomic(lab.known_hosts, moved_known_hosts(lab.known_hosts.read_text(), str(old), str(new)))
    mesh_yaml = False
    endpoint = None
    if lab.mesh_path.exists():
        text = lab.mesh_path.read_text()
        rewritten = moved_mesh_yaml(text, name, str(old), str(new))
        if rewritten is not None:
            write_atomic(lab.mesh_path, rewritten)
            mesh_yaml = True
        stale = f"endpoint: {old}:"
        endpoint = next((ln.strip() for ln in text.splitlines() if stale in ln and _in_node(text, name, ln)), None)
    return Move(name, old, new, netns, mesh_yaml, endpoint)


def _in_node(text: str, name: str, line: str) -> bool:
    """Whether `line` (of the lab's own mesh.yaml layout) is in node `name`'s block."""
    current = None
    for ln in text.splitlines():
        if ln.startswith("  ") and not ln.startswith("   ") and ln.rstrip().endswith(":"):
            current = ln.strip()[:-1].strip('"')
        if ln == line:
            return current == name
    return False


def _restart_sshd(lab: Lab, host: LabHost) -> LabHost:
    hd = lab.host_dir(host)
    (hd / "sshd_config").write_text(render_sshd_config(lab, host))
    if host.sshd is not None and alive(host.sshd):
        kill_all([host.sshd])
    proc, _ = spawn_sshd(lab, host)
    return dataclasses.replace(host, sshd=proc)
