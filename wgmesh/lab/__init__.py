"""`wgmesh lab`: real test hosts on one Linux machine, for the demo and the end-to-end tests.

Each host is a network namespace on a bridge the lab owns (`wgmlab{ID}`, 10.250.ID.0/24). It runs its
own sshd inside a mount namespace that gives it a private /etc/wireguard and /run/wireguard (paths the
kernel does not namespace; wireguard-go keeps its control socket in /run/wireguard), root home, /etc/hosts
and /etc/sysctl.d. The lab writes a mesh repo folder (mesh.yaml, known_hosts, an SSH identity) that matches
the hosts.

Subnets: host K (1-based, in order) routes 192.168.{10*K}.0/24 for K <= 25 (the four clouds keep
192.168.10-40.0/24) and 10.200.K.0/24 for K = 26..64; a lab has at most 64 hosts. The host holds the
subnet's .1 on a bridge `sub0`; behind it is a machine, a namespace `wgmlab{ID}m-NAME` (no sshd, no
processes) at the subnet's .10 whose default route is the host, and mesh.yaml makes that machine the
subnet's `probe`.

By default the hosts are cloud-like: root's authorized_keys refuses the login with cloud-init's banner, a
user `wgmlab{ID}` has passwordless sudo (mesh.yaml's `ssh.user`), IP forwarding is off. `root_login=True`
(`--root-login`) gives hosts that take root by key and forward (also after a reboot: their /etc/sysctl.d
says so).

NAT: `--nat NAME[:cone|:symmetric]` (default: aliyun in the 4-host lab, cone) puts a host behind a NAT router
of its own, a namespace `wgmlab{ID}r-NAME` that holds the host's bridge address and links to the host, which
sits at 172.31.INDEX.2/24 with its default route via the router (.1). The router masquerades (a symmetric NAT
with --random-fully), forwards TCP port 22 to the host (the controller's SSH), and drops unsolicited inbound.
mesh.yaml gives such a host no endpoint; its ssh host is the router's address.

`move(dir, name)` (`wgmesh lab move NAME`) gives a host a new underlay address (the router's, behind NAT) and
updates every host's /etc/hosts, the state, known_hosts and the node's ssh host in mesh.yaml.

`reboot(dir, name)` (`wgmesh lab reboot NAME`) simulates a reboot of one host (see boot.py): everything but
sshd stops, WireGuard interfaces go, /run/wireguard empties, forwarding is off, FORWARD and nat POSTROUTING
are flushed; then the host's sysctl.d and `wg-quick up IF` for each /etc/wireguard/IF.conf run.

hosts.py is pure (names, addresses, state); texts.py the files it writes; boot.py what a reboot runs (pure);
neigh.py the kernel's neighbour table that the labs up need (pure); procs.py runs commands and knows our
processes; users.py the logins; netns.py namespaces, links and sshd; state.py the state file; system.py up,
down and status; reboot.py a reboot; move.py a move; cli.py the typer sub-app. Nothing here imports the rest of wgmesh.
"""

from wgmesh.lab.boot import Reboot, Step
from wgmesh.lab.hosts import (
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
    Proc,
    bridge_name,
    lab_user,
    machine_prefix,
    make_lab,
    netns_prefix,
    parse_names,
    parse_nat,
    router_prefix,
    state_path,
    sudoers_path,
)
from wgmesh.lab.procs import alive, argv_of, comm, pids_in_netns, proc_of
from wgmesh.lab.system import (
    Move,
    down,
    down_id,
    load,
    missing_packages,
    move,
    reboot,
    runtime_owner,
    save,
    status,
    up,
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
    "Step",
    "alive",
    "argv_of",
    "bridge_name",
    "comm",
    "down",
    "down_id",
    "lab_user",
    "load",
    "machine_prefix",
    "make_lab",
    "missing_packages",
    "move",
    "netns_prefix",
    "parse_names",
    "parse_nat",
    "pids_in_netns",
    "proc_of",
    "reboot",
    "router_prefix",
    "runtime_owner",
    "save",
    "state_path",
    "status",
    "sudoers_path",
    "up",
]
