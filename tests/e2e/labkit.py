"""What end-to-end tests do to lab hosts beyond `wgmesh lab`: run a command inside a host or in the machine
behind its subnet, bind-mount a file over one of its own in its sshd's mount namespace, stop and start its
sshd, plain OpenSSH into it (through its NAT router's forwarded port 22 for a host behind NAT), ask whether a
lab id is taken. It re-exports `wgmesh.lab`'s API, so a test module needs one import:
`from e2e import labkit as labmod`."""

from __future__ import annotations

import contextlib
import dataclasses
import subprocess
from collections.abc import Iterator
from pathlib import Path

from wgmesh.lab import (
    HEADER,
    INSTALL_LINE,
    INTERFACE,
    MACHINE_HOST,
    MAX_ID,
    MAX_NODES,
    NAT_KINDS,
    HostStatus,
    Lab,
    LabError,
    LabHost,
    LabInUse,
    Move,
    Proc,
    Reboot,
    alive,
    argv_of,
    bridge_name,
    comm,
    down,
    down_id,
    lab_user,
    load,
    machine_prefix,
    make_lab,
    missing_packages,
    move,
    netns_prefix,
    parse_names,
    pids_in_netns,
    proc_of,
    reboot,
    router_prefix,
    runtime_owner,
    save,
    state_path,
    status,
    sudoers_path,
    up,
)
from wgmesh.lab import system as lab_system
from wgmesh.lab.hosts import runtime_dir
from wgmesh.lab.procs import kill_all, run
from wgmesh.lab.users import passwd_entry


def host_exec(
    lab_dir: Path, node: str, argv: list[str], *, input: str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run argv as root inside host `node`'s network and mount namespaces (as its sshd sees them). Not checked."""
    lab = load(lab_dir)
    return run(lab_system.ns_argv(lab, lab.host(node), argv), input=input, timeout=timeout)


def machine_exec(lab: Lab, node: str, argv: list[str], *, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run argv in the machine behind host `node`'s subnet (its own network namespace, no login). Not checked."""
    return run(["ip", "netns", "exec", lab.host(node).machine_netns, *argv], timeout=timeout)


def machine_ping(lab: Lab, node: str, target: str, wait: float = 2) -> bool:
    """One ping from the machine behind `node`'s subnet; `wait` seconds for the reply."""
    argv = ["ping", "-n", "-q", "-c", "1", "-W", f"{wait:g}", target]
    return machine_exec(lab, node, argv, timeout=wait + 10).returncode == 0


@contextlib.contextmanager
def bind_in_host(lab_dir: Path, node: str, source: Path, target: str) -> Iterator[None]:
    """`source` mounted over `target` in host `node` as its sshd (and every new login) sees it, undone after.
    Only that host's mount namespace changes: the machine's file and the other hosts keep theirs."""
    lab = load(lab_dir)
    sshd = lab.host(node).sshd
    if sshd is None or not alive(sshd):
        raise LabError(f"{node}: sshd is not running")
    nsenter = ["nsenter", "-t", str(sshd.pid), "-m"]
    r = run([*nsenter, "mount", "--bind", str(source), target])
    if r.returncode != 0:
        raise LabError(f"{node}: mount --bind {source} {target}: {r.stderr.strip()}")
    try:
        yield
    finally:
        if alive(sshd):
            r = run([*nsenter, "umount", target])
            if r.returncode != 0:
                raise LabError(f"{node}: umount {target}: {r.stderr.strip()}")


def stop_sshd(lab_dir: Path, node: str) -> None:
    """Stop the host's sshd listener (open sessions stay, as with `systemctl stop ssh`)."""
    lab = load(lab_dir)
    host = lab.host(node)
    if host.sshd is not None:
        kill_all([host.sshd])
    save(lab.with_host(dataclasses.replace(host, sshd=None)))


def start_sshd(lab_dir: Path, node: str) -> Proc:
    """Start the host's sshd again (no-op if it runs); returns its process."""
    lab = load(lab_dir)
    host = lab.host(node)
    if host.sshd is not None and alive(host.sshd):
        return host.sshd
    proc, _ = lab_system.spawn_sshd(lab, host)
    save(lab.with_host(dataclasses.replace(host, sshd=proc)))
    return proc


def ssh_argv(lab: Lab, node: str, command: str, user: str | None = None) -> list[str]:
    """Plain OpenSSH into a host as `user` (default: mesh.yaml's ssh.user) with the lab's identity and
    pinned host keys (strict checking)."""
    return [
        "ssh",
        "-F",
        "/dev/null",
        "-i",
        str(lab.identity_file),
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        f"UserKnownHostsFile={lab.known_hosts}",
        "-o",
        "GlobalKnownHostsFile=/dev/null",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        "BatchMode=yes",
        "-o",
        "ConnectTimeout=5",
        f"{user or lab.ssh_user}@{lab.host(node).ip}",
        command,
    ]


def lab_in_use(lab_id: int) -> bool:
    """Whether anything of lab id `lab_id` exists on this machine (bridge, namespaces, runtime folder, user,
    sudoers file)."""
    return (
        runtime_dir(lab_id).exists()
        or Path(f"/sys/class/net/{bridge_name(lab_id)}").exists()
        or bool(lab_system.lab_netns(lab_id))
        or passwd_entry(lab_user(lab_id)) is not None
        or sudoers_path(lab_id).exists()
    )


__all__ = [
    "HEADER",
    "INSTALL_LINE",
    "INTERFACE",
    "MACHINE_HOST",
    "MAX_ID",
    "MAX_NODES",
    "NAT_KINDS",
    "HostStatus",
    "Lab",
    "LabError",
    "LabHost",
    "LabInUse",
    "Move",
    "Proc",
    "Reboot",
    "alive",
    "argv_of",
    "bind_in_host",
    "bridge_name",
    "comm",
    "down",
    "down_id",
    "host_exec",
    "lab_in_use",
    "lab_system",
    "lab_user",
    "load",
    "machine_exec",
    "machine_ping",
    "machine_prefix",
    "make_lab",
    "missing_packages",
    "move",
    "netns_prefix",
    "parse_names",
    "pids_in_netns",
    "proc_of",
    "reboot",
    "router_prefix",
    "runtime_owner",
    "save",
    "ssh_argv",
    "start_sshd",
    "state_path",
    "status",
    "stop_sshd",
    "sudoers_path",
    "up",
    "waiting_for_lock",
]


# ---------------------------------------------------------------------------------------------
# What the e2e tests share for `wgmesh` runs and commands in hosts

NO_CHANGES = "No changes. Your mesh matches the configuration."


def described(r: subprocess.CompletedProcess[str]) -> str:
    """A finished command's exit code, stdout and stderr, for an assertion message."""
    return f"exit {r.returncode}\n--- stdout\n{r.stdout}--- stderr\n{r.stderr}"


def ok(r: subprocess.CompletedProcess[str]) -> str:
    """The stdout of a command that must have succeeded."""
    assert r.returncode == 0, described(r)
    return r.stdout


def sh(lab: Lab, node: str, script: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
    """A shell script run inside a lab host (as root, in its namespaces)."""
    return host_exec(lab.dir, node, ["sh", "-c", script], input=input)


def forwarded(lab: Lab, node: str) -> int:
    """Packets wgmesh's FORWARD accept rules on `node` let through (0 when it has none)."""
    out = ok(sh(lab, node, "iptables -L FORWARD -v -n -x"))
    return sum(int(line.split()[0]) for line in out.splitlines() if "wgmesh:wg0" in line)


def waiting_for_lock(lab: Lab, node: str) -> bool:
    """A command on `node` waits for the apply lock (its `flock -w` runs)."""
    return any((argv_of(pid) or [])[:2] == [b"flock", b"-w"] for pid in pids_in_netns([lab.host(node).netns]))
