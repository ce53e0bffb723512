"""The texts the lab writes, from a Lab (pure): mesh.yaml, each host's sshd_config, /etc/hosts, root's
authorized_keys (cloud-init's refusal), the sudoers file, known_hosts, sysctl.d, the host setup script (with
the machine behind its subnet), `ip -batch`."""

from __future__ import annotations

import json
from collections.abc import Mapping

from wgmesh.lab.hosts import (
    HEADER,
    INTERFACE,
    KEEPALIVE,
    LISTEN_PORT,
    MACHINE_HOST,
    MACHINE_PORT,
    MESH_NETWORK,
    PLAIN_YAML_KEY,
    YAML_WORDS,
    Lab,
    LabHost,
    user_comment,
)


def _yaml_key(name: str) -> str:
    if PLAIN_YAML_KEY.fullmatch(name) and name.lower() not in YAML_WORDS:
        return name
    return json.dumps(name)


def render_mesh_yaml(lab: Lab, public_keys: Mapping[str, str]) -> str:
    """mesh.yaml for the lab (format version 1). Hosts missing from `public_keys` get no public_key."""
    if lab.root_login:
        login = "# root-login hosts (`--root-login`): root logs in by key, IP forwarding is on."
    else:
        login = f"# cloud-like hosts: root login is refused, {lab.ssh_user} has passwordless sudo, forwarding is off."
    lines = [
        f"{HEADER} (lab {lab.id}, hosts on {lab.network}).",
        f"# `wgmesh lab down --dir {lab.dir}` removes the hosts.",
        login,
        f"# Behind each host's subnet a machine at its .{MACHINE_HOST} (the probe) routes through the host.",
        "version: 1",
        "mesh:",
        "  name: lab",
        f"  interface: {INTERFACE}",
        f"  network: {MESH_NETWORK}",
        f"  listen_port: {LISTEN_PORT}",
        f"  persistent_keepalive: {KEEPALIVE}",
        "ssh:",
        f"  user: {lab.ssh_user}",
        "  port: 22",
        "  known_hosts: known_hosts",
        "  identity_file: id_ed25519",
        "nodes:",
    ]
    for h in lab.hosts:
        lines += [f"  {_yaml_key(h.name)}:", f"    address: {h.address}"]
        if h.name in public_keys:
            lines.append(f"    public_key: {public_keys[h.name]}")
        if h.router:
            lines.append(f"    # behind a {h.nat} NAT (router {h.router_netns}, {h.ip}): no endpoint")
        elif h.endpoint is None:
            lines.append("    # behind NAT: no endpoint")
        else:
            lines.append(f"    endpoint: {h.endpoint}")
        lines += [f"    subnets: [{{prefix: {h.subnet}, probe: {h.machine_ip}}}]", f"    ssh: {{host: {h.ip}}}"]
    return "\n".join(lines) + "\n"


def render_sshd_config(lab: Lab, host: LabHost) -> str:
    hd = lab.host_dir(host)
    return "\n".join(
        [
            f"# sshd of wgmesh lab {lab.id} host {host.name} ({lab.mode})",
            f"ListenAddress {host.local_interface.ip}",
            "Port 22",
            f"HostKey {hd / 'ssh_host_ed25519_key'}",
            f"PidFile {hd / 'sshd.pid'}",
            "PermitRootLogin prohibit-password",  # as on cloud images: cloud-init's forced command refuses root
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "AuthorizedKeysFile .ssh/authorized_keys",
            "StrictModes yes",
            "UsePAM no",
            "UseDNS no",
            "X11Forwarding no",
            "PrintMotd no",
            "PrintLastLog no",
            "MaxStartups 100:30:200",
            "MaxSessions 100",
            "Subsystem sftp /usr/lib/openssh/sftp-server",
            "",
        ]
    )


def cloud_init_refusal(user: str) -> str:
    """The options cloud-init puts before every key in root's authorized_keys (`disable_root: true`)."""
    return (
        "no-port-forwarding,no-agent-forwarding,no-X11-forwarding,"
        f'command="echo \'Please login as the user \\"{user}\\" rather than the user \\"root\\".\';'
        'echo;sleep 10;exit 142"'
    )


def render_root_authorized_keys(lab: Lab, public_key: str) -> str:
    """root's authorized_keys: the lab's key, behind cloud-init's refusal unless `root_login`."""
    key = public_key.strip()
    return f"{key}\n" if lab.root_login else f"{cloud_init_refusal(lab.ssh_user)} {key}\n"


def render_sudoers(lab: Lab) -> str:
    """The lab's own sudoers.d file, as cloud-init writes one for its default user."""
    return (
        f"# {user_comment(lab.id)}: its hosts' login user, without a password. Removed by `wgmesh lab down`.\n"
        f"{lab.ssh_user} ALL=(ALL) NOPASSWD: ALL\n"
    )


def render_known_hosts(lab: Lab, host_keys: Mapping[str, str]) -> str:
    """One `IP TYPE BASE64` line per host; `host_keys` maps name -> the .pub file's text."""
    lines = []
    for h in lab.hosts:
        fields = host_keys[h.name].split()
        lines.append(f"{h.ip} {fields[0]} {fields[1]}")
    return "\n".join(lines) + "\n"


def setup_script(lab: Lab, host: LabHost) -> str:
    """Shell run inside the host's namespaces (after the mounts) before sshd starts."""
    cmds = [
        "ip link set lo up",
        f"ip addr add {host.local_interface} dev eth0",
        "ip link set eth0 up",
        *([f"ip route add default via {host.router_lan.ip}"] if host.router else []),
        "ip link add sub0 type bridge",
        f"ip addr add {host.subnet_interface} dev sub0",
        "ip link set sub0 up",
        *machine_setup(host),
    ]
    if lab.root_login:
        cmds.append("sysctl -qw net.ipv4.ip_forward=1")
    else:  # off, as on cloud images (a fresh namespace has it off too; say it)
        cmds += [
            "sysctl -qw net.ipv4.ip_forward=0",
            "[ ! -e /proc/sys/net/ipv6/conf/all/forwarding ] || sysctl -qw net.ipv6.conf.all.forwarding=0",
        ]
    if lab.keys:
        key = f"/etc/wireguard/{INTERFACE}.key"
        cmds += [f"(umask 077 && wg genkey > {key})", f"wg pubkey < {key}"]
    return "\n".join(cmds)


def router_script(lab: Lab, host: LabHost) -> str:
    """Shell run in the NAT router's namespace (which holds the bridge veth's other end as eth0) once the
    host's namespace exists: its bridge address, a veth lan0 to the host's eth0, forwarding, masquerade (with
    --random-fully, a new port per destination, for a symmetric NAT), SSH forwarded to the host (the
    controller's way in), and unsolicited inbound dropped, as a home router does."""
    ipt = "iptables -w 5"
    masquerade = f"{ipt} -t nat -A POSTROUTING -o eth0 -j MASQUERADE"
    if host.nat == "symmetric":
        masquerade += " --random-fully"
    private = host.local_interface.ip
    return "\n".join(
        [
            "set -e",
            "ip link set lo up",
            f"ip addr add {host.ip}/{lab.network.prefixlen} dev eth0",
            "ip link set eth0 up",
            f"ip link add lan0 type veth peer name eth0 netns {host.netns}",
            f"ip addr add {host.router_lan} dev lan0",
            "ip link set lan0 up",
            "sysctl -qw net.ipv4.ip_forward=1",
            masquerade,
            f"{ipt} -t nat -A PREROUTING -i eth0 -m addrtype --dst-type LOCAL -p tcp --dport 22 "
            f"-j DNAT --to-destination {private}:22",
            f"{ipt} -A FORWARD -i lan0 -o eth0 -j ACCEPT",
            f"{ipt} -A FORWARD -i eth0 -o lan0 -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
            f"{ipt} -A FORWARD -i eth0 -o lan0 -p tcp -d {private} --dport 22 -m conntrack --ctstate DNAT -j ACCEPT",
            f"{ipt} -A FORWARD -i eth0 -j DROP",
            f"{ipt} -A INPUT -i eth0 -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
            f"{ipt} -A INPUT -i eth0 -j DROP",
        ]
    )


def machine_setup(host: LabHost) -> list[str]:
    """Commands, run in the host's namespace, that put the machine behind its subnet: a veth from a port of
    the subnet's bridge to the machine's eth0, its address, and its default route via the host."""
    m = host.machine_netns
    return [
        f"ip link add {MACHINE_PORT} type veth peer name eth0 netns {m}",
        f"ip link set {MACHINE_PORT} master sub0 up",
        f"ip -n {m} link set lo up",
        f"ip -n {m} addr add {host.machine_interface} dev eth0",
        f"ip -n {m} link set eth0 up",
        f"ip -n {m} route add default via {host.subnet_interface.ip}",
    ]


def render_sysctl_conf(lab: Lab) -> str | None:
    """The host's own /etc/sysctl.d/99-wgmesh-lab.conf: root-login hosts forward, also after a reboot;
    cloud-like hosts have none (forwarding stays the kernel's default, off)."""
    if not lab.root_login:
        return None
    return f"{HEADER}: root-login hosts forward IP, as the lab's older hosts did.\nnet.ipv4.ip_forward = 1\n"


def host_batch(lab: Lab) -> str:
    """`ip -batch` input that makes the bridge, the namespaces and their veths on the machine."""
    lines = [
        f"link add {lab.bridge} type bridge",
        f"addr add {lab.gateway} dev {lab.bridge}",
        f"link set {lab.bridge} up",
    ]
    for h in lab.hosts:
        lines.append(f"netns add {h.netns}")
        if h.router:  # the bridge leg is the router's; router_script links the host to it
            lines.append(f"netns add {h.router_netns}")
        lines += [
            f"link add {h.veth} type veth peer name eth0 netns {h.router_netns if h.router else h.netns}",
            f"link set {h.veth} master {lab.bridge} up",
            f"netns add {h.machine_netns}",
        ]
    return "\n".join(lines) + "\n"


def moved_known_hosts(text: str, old: str, new: str) -> str:
    """known_hosts with the lines of host `old` (first field) now for `new`."""
    lines = []
    for line in text.splitlines():
        fields = line.split(None, 1)
        lines.append(f"{new} {fields[1]}" if len(fields) == 2 and fields[0] == old else line)
    return "\n".join(lines) + "\n"


def moved_mesh_yaml(text: str, name: str, old: str, new: str) -> str | None:
    """mesh.yaml with node `name`'s `ssh: {host: OLD}` line (as render_mesh_yaml writes it) saying NEW,
    everything else kept; None if that node has no such line (edited by hand)."""
    lines = text.splitlines(keepends=True)
    head, want = f"  {_yaml_key(name)}:", f"    ssh: {{host: {old}}}"
    inside = False
    for i, line in enumerate(lines):
        if line.rstrip("\r\n") == head:
            inside = True
        elif inside and not line.startswith("    ") and line.strip():
            return None
        elif inside and line.rstrip("\r\n") == want:
            lines[i] = line.replace(want, f"    ssh: {{host: {new}}}")
            return "".join(lines)
    return None


def render_hosts(lab: Lab, host: LabHost) -> str:
    """A host's own /etc/hosts: its own name (so sudo resolves it) and the lab's hosts by DNS name."""
    lines = ["127.0.0.1\tlocalhost", f"127.0.1.1\t{host.name}", "::1\tlocalhost ip6-localhost ip6-loopback"]
    lines += [f"{h.ip}\t{h.hostname}" for h in lab.hosts]
    return "\n".join(lines) + "\n"
