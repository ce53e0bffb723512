"""What end-to-end tests do to lab hosts beyond `wgmesh lab`: run a command inside a host, stop and start its
sshd, plain OpenSSH into it, ask whether a lab id is taken. It re-exports `wgmesh.lab`'s API, so a test
module needs one import: `from e2e import labkit as labmod`."""

from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path

from wgmesh.lab import (
    HEADER,
    INSTALL_LINE,
    INTERFACE,
    MAX_ID,
    MAX_NODES,
    HostStatus,
    Lab,
    LabError,
    LabHost,
    LabInUse,
    Proc,
    alive,
    bridge_name,
    down,
    down_id,
    lab_user,
    load,
    make_lab,
    missing_packages,
    netns_prefix,
    parse_names,
    pids_in_netns,
    proc_of,
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
    "MAX_ID",
    "MAX_NODES",
    "HostStatus",
    "Lab",
    "LabError",
    "LabHost",
    "LabInUse",
    "Proc",
    "alive",
    "bridge_name",
    "down",
    "down_id",
    "host_exec",
    "lab_in_use",
    "lab_system",
    "lab_user",
    "load",
    "make_lab",
    "missing_packages",
    "netns_prefix",
    "parse_names",
    "pids_in_netns",
    "proc_of",
    "runtime_owner",
    "save",
    "ssh_argv",
    "start_sshd",
    "state_path",
    "status",
    "stop_sshd",
    "sudoers_path",
    "up",
]
