"""`wgmesh lab`: real test hosts on one Linux machine, for the demo and the end-to-end tests.

Each host is a network namespace on a bridge the lab owns (`wgmlab{ID}`, 10.250.ID.0/24). It runs its
own sshd inside a mount namespace that gives it a private /etc/wireguard and /run/wireguard (paths the
kernel does not namespace; wireguard-go keeps its control socket in /run/wireguard), root home and
/etc/hosts. The lab writes a mesh repo folder (mesh.yaml, known_hosts, an SSH identity) that matches the hosts.

By default the hosts are cloud-like: root's authorized_keys refuses the login with cloud-init's banner, a
user `wgmlab{ID}` has passwordless sudo (mesh.yaml's `ssh.user`), IP forwarding is off. `root_login=True`
(`--root-login`) gives hosts that take root by key and forward.

hosts.py is pure (names, addresses, texts, state); procs.py runs commands and knows our processes;
users.py the logins; system.py the rest (namespaces, bridge, sshd: up, down, status); cli.py the typer
sub-app. Nothing here imports the rest of wgmesh.
"""

from wgmesh.lab.hosts import (
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
    bridge_name,
    lab_user,
    make_lab,
    netns_prefix,
    parse_names,
    state_path,
    sudoers_path,
)
from wgmesh.lab.procs import alive, pids_in_netns, proc_of
from wgmesh.lab.system import down, down_id, load, missing_packages, runtime_owner, save, status, up

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
    "state_path",
    "status",
    "sudoers_path",
    "up",
]
