"""`wgmesh lab reboot NAME`: a simulated reboot of one host. Everything but its sshd stops, its WireGuard
interfaces go, /run/wireguard empties; then what boot.py says a shutdown and a boot run (boot.py is pure)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path

from wgmesh.lab import boot
from wgmesh.lab.hosts import Lab, LabError, LabHost
from wgmesh.lab.netns import netns_exists, ns_argv
from wgmesh.lab.procs import alive, check, comm, kill_all, pids_in_netns, proc_of, run, which
from wgmesh.lab.state import load

# longer than a boot step takes to fail by itself: wg retries an endpoint name that does not resolve for about
# 75 s before wg-quick gives up and deletes the interface (killed sooner, it left a half-made interface behind)
BOOT_STEP_TIMEOUT = 180.0


def _in_host(lab: Lab, host: LabHost, argv: Sequence[str], phase: str) -> boot.Step:
    """Run argv in the host's namespaces, its output to a file (a daemon it starts keeps no pipe of ours)."""
    log = lab.host_dir(host) / "boot.log"
    redirect = ["sh", "-c", 'exec >"$1" 2>&1 </dev/null; shift; exec "$@"', "sh", str(log), *argv]
    try:
        r = run(ns_argv(lab, host, redirect), timeout=BOOT_STEP_TIMEOUT, label=" ".join(argv))
        code = r.returncode
        output = log.read_text(errors="replace") if log.exists() else ""
        output = output or r.stderr
    except LabError as e:
        code, output = -1, str(e)
    finally:
        log.unlink(missing_ok=True)
    return boot.Step(phase, tuple(argv), code, output)


def _host_links(host: LabHost) -> list[dict]:
    out = check(["ip", "-n", host.netns, "-j", "-d", "link", "show"], f"{host.name}: ip link show")
    return json.loads(out or "[]")


def reboot(directory: Path, name: str) -> boot.Reboot:
    """Simulate a reboot of host `name` (see wgmesh/lab/boot.py): stop, undo, then what boot runs."""
    lab = load(directory)
    host = lab.host(name)
    if not netns_exists(host.netns):
        raise LabError(f"{name}: the host is not running (no namespace {host.netns}): `wgmesh lab up` again")
    hd = lab.host_dir(host)
    keep = host.sshd if host.sshd is not None and alive(host.sshd) else None
    run_wg = hd / "run-wireguard"
    sockets = [p.stem for p in run_wg.glob("*.sock")]
    before = boot.wireguard_links(_host_links(host), sockets)
    procs = [p for p in (proc_of(pid) for pid in pids_in_netns([host.netns])) if p is not None and p != keep]
    stopped = tuple(f"{comm(p.pid) or '?'} {p.pid}" for p in procs)
    kill_all(procs)
    left = boot.wireguard_links(_host_links(host), sockets)  # wireguard-go's tun goes with its process
    for entry in run_wg.iterdir():  # /run is empty after a reboot
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    shutdown = boot.shutdown_commands(
        left,
        ipv6=Path("/proc/sys/net/ipv6/conf/all/forwarding").exists(),
        ip6tables=which("ip6tables") is not None,
    )
    steps = []
    for argv in shutdown:
        r = run(["ip", "netns", "exec", host.netns, *argv], timeout=BOOT_STEP_TIMEOUT)
        steps.append(boot.Step("shutdown", tuple(argv), r.returncode, r.stdout + r.stderr))
    sysctl_d = hd / "sysctl.d"
    files = {p.name: p.read_text(errors="replace") for p in sysctl_d.glob("*") if p.is_file()}
    confs = [p.name for p in (hd / "etc-wireguard").iterdir() if p.is_file()]
    for argv in boot.boot_commands(boot.sysctl_settings(files), boot.interfaces_to_start(confs)):
        steps.append(_in_host(lab, host, argv, "boot"))
    return boot.Reboot(name, stopped, tuple(before), tuple(steps))
