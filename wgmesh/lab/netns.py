"""The lab's network namespaces and links on the machine, and a host's namespaces: running a command in
them (its own mounts and hostname), starting its sshd, and whether its WireGuard interface and the machine
behind its subnet are up."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import time
from collections.abc import Sequence
from pathlib import Path

from wgmesh.lab.hosts import INTERFACE, Lab, LabError, LabHost, Proc, machine_prefix, netns_prefix, router_prefix
from wgmesh.lab.procs import check, proc_of, run

SSHD_START_TIMEOUT = 5.0


def link_kinds() -> dict[str, str]:
    """name -> kind of every link in the machine's namespace."""
    data = json.loads(check(["ip", "-j", "-d", "link", "show"], "ip link show") or "[]")
    return {d["ifname"]: d.get("linkinfo", {}).get("info_kind", "") for d in data}


def lab_netns(lab_id: int) -> list[str]:
    """The namespaces of lab `lab_id`: its hosts', the machines' behind their subnets and the NAT routers'."""
    prefixes = (netns_prefix(lab_id), machine_prefix(lab_id), router_prefix(lab_id))
    try:
        return sorted(n for n in os.listdir("/run/netns") if n.startswith(prefixes))
    except FileNotFoundError:
        return []


def netns_exists(name: str) -> bool:
    return Path("/run/netns", name).exists()


def ns_argv(lab: Lab, host: LabHost, argv: Sequence[str], prelude: str = "") -> list[str]:
    """Run argv in the host's network namespace, a mount namespace with its own WireGuard folders, root
    home, /etc/hosts, /etc/sysctl.d (and the sudo user's home), and a UTS namespace with its name as hostname."""
    hd = lab.host_dir(host)
    mounts = [
        (hd / "etc-wireguard", Path("/etc/wireguard")),
        (hd / "run-wireguard", Path("/run/wireguard")),
        (hd / "root", Path("/root")),
        (hd / "hosts", Path("/etc/hosts")),
    ]
    if (hd / "sysctl.d").is_dir():  # (hosts of a lab made before it had one go without)
        mounts.append((hd / "sysctl.d", Path("/etc/sysctl.d")))
    if not lab.root_login:
        mounts.append((hd / "home", lab.home))
    script = "\n".join(
        [
            "set -e",
            *(f"mount --bind {shlex.quote(str(src))} {shlex.quote(str(dst))}" for src, dst in mounts),
            f"hostname {shlex.quote(host.name)}",
            *([prelude] if prelude else []),
            'exec "$@"',
        ]
    )
    return ["ip", "netns", "exec", host.netns, "unshare", "--uts", "sh", "-c", script, "sh", *argv]


def spawn_sshd(lab: Lab, host: LabHost, prelude: str = "") -> tuple[Proc, str]:
    """Start the host's sshd (after `prelude`); returns it and the prelude's output."""
    hd = lab.host_dir(host)
    pidfile = hd / "sshd.pid"
    pidfile.unlink(missing_ok=True)
    argv = ["/usr/sbin/sshd", "-f", str(hd / "sshd_config"), "-E", str(hd / "sshd.log")]
    out = check(ns_argv(lab, host, argv, prelude), f"{host.name}: setting up the host")
    deadline = time.monotonic() + SSHD_START_TIMEOUT
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError):
            proc = proc_of(int(pidfile.read_text()))
            if proc is not None:
                return proc, out
        time.sleep(0.005)
    log = (hd / "sshd.log").read_text().strip().splitlines() if (hd / "sshd.log").exists() else []
    raise LabError(f"{host.name}: sshd did not start{': ' + log[-1] if log else ''}")


def wg_up(host: LabHost) -> bool:
    r = run(["ip", "-n", host.netns, "-j", "link", "show", "dev", INTERFACE])
    if r.returncode != 0:
        return False
    with contextlib.suppress(ValueError, IndexError, KeyError):
        return "UP" in json.loads(r.stdout)[0]["flags"]
    return False


def _eth0_holds(netns: str, ip: object) -> bool:
    """The namespace's eth0 has IPv4 address `ip`."""
    r = run(["ip", "-n", netns, "-j", "-4", "addr", "show", "dev", "eth0"])
    if r.returncode != 0:
        return False
    with contextlib.suppress(ValueError, IndexError, KeyError, TypeError):
        return any(a.get("local") == str(ip) for a in json.loads(r.stdout)[0]["addr_info"])
    return False


def machine_up(host: LabHost) -> bool:
    return netns_exists(host.machine_netns) and _eth0_holds(host.machine_netns, host.machine_ip)


def router_up(host: LabHost) -> bool:
    """Its NAT router's namespace is there and holds the host's bridge address."""
    return bool(host.router) and netns_exists(host.router_netns) and _eth0_holds(host.router_netns, host.ip)
