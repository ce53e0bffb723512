"""The texts `wgmesh lab` writes (wgmesh/lab/texts.py): mesh.yaml, sshd_config, authorized_keys, sudoers,
known_hosts, /etc/hosts, the host setup script and the `ip -batch` input."""

from __future__ import annotations

import base64
import shutil
import subprocess
from pathlib import Path

import paramiko
import pytest
from nacl.public import PrivateKey
from ruamel.yaml import YAML

from wgmesh import meshfile
from wgmesh.lab import hosts, texts

DIR = Path("/srv/meshlab")
CLIENT_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKxUcXLIXuL5nrrdOn0Pz3oUu6B5VUhM0bMn0nM0ZlUm wgmesh-lab3\n"


def _public_key() -> str:
    return base64.b64encode(bytes(PrivateKey.generate().public_key)).decode()


def _yaml(text: str) -> dict:
    return YAML(typ="safe").load(text)


# ----------------------------------------------------------------------------- mesh.yaml


def test_mesh_yaml_matches_the_lab() -> None:
    spec = hosts.make_lab(5, DIR)
    keys = {n: _public_key() for n in spec.names}
    text = texts.render_mesh_yaml(spec, keys)
    assert text.startswith(hosts.HEADER)
    doc = _yaml(text)
    assert doc["version"] == 1
    assert doc["mesh"] == {
        "name": "lab",
        "interface": "wg0",
        "network": "10.0.0.0/24",
        "listen_port": 51820,
        "persistent_keepalive": 25,
    }
    assert doc["ssh"] == {
        "user": "wgmlab5",
        "port": 22,
        "known_hosts": "known_hosts",
        "identity_file": "id_ed25519",
    }
    assert list(doc["nodes"]) == ["aws", "azure", "gcp", "aliyun"]
    assert doc["nodes"]["gcp"] == {
        "address": "10.0.0.3",
        "public_key": keys["gcp"],
        "endpoint": "10.250.5.13:51820",
        "subnets": [{"prefix": "192.168.30.0/24", "probe": "192.168.30.10"}],
        "ssh": {"host": "10.250.5.13"},
    }
    assert "endpoint" not in doc["nodes"]["aliyun"]
    assert doc["nodes"]["aliyun"]["ssh"] == {"host": "10.250.5.14"}


def test_mesh_yaml_without_keys_has_no_public_key() -> None:
    spec = hosts.make_lab(5, DIR, nodes=3, keys=False)
    doc = _yaml(texts.render_mesh_yaml(spec, {}))
    assert all("public_key" not in node for node in doc["nodes"].values())
    assert len(doc["nodes"]) == 3


@pytest.mark.parametrize("name", ["true", "null", "no", "On", "1", "10.5", "a.b", "x_y-z"])
def test_mesh_yaml_node_names_stay_strings(name: str) -> None:
    spec = hosts.make_lab(5, DIR, names=(name, "other"))
    doc = _yaml(texts.render_mesh_yaml(spec, {}))
    assert list(doc["nodes"]) == [name, "other"]


@pytest.mark.parametrize("root_login", [False, True])
def test_mesh_yaml_validates_with_the_loader(root_login: bool) -> None:
    spec = hosts.make_lab(5, DIR, nodes=16, nat=("n2",), root_login=root_login)
    keys = {n: _public_key() for n in spec.names}
    mesh, _warnings = meshfile.loads(texts.render_mesh_yaml(spec, keys), DIR / "mesh.yaml")
    assert mesh.node_names == spec.names
    for host in spec.hosts:
        node = mesh.node(host.name)
        assert node.public_key == keys[host.name]
        assert node.addresses == (host.address,)
        assert (str(node.endpoint) if node.endpoint else None) == host.endpoint
        assert node.ssh.host == str(host.ip)
        assert node.ssh.user == ("root" if root_login else "wgmlab5")
        assert node.ssh.identity_file == DIR / "id_ed25519"
        assert node.ssh.known_hosts == DIR / "known_hosts"
        assert [s.prefix for s in node.subnets] == [host.subnet]
        assert [s.probe for s in node.subnets] == [host.machine_ip]  # `check` pings the machine behind it


def test_mesh_yaml_of_sixty_four_hosts_validates() -> None:
    spec = hosts.make_lab(5, DIR, nodes=64)
    keys = {n: _public_key() for n in spec.names}
    mesh, _warnings = meshfile.loads(texts.render_mesh_yaml(spec, keys), DIR / "mesh.yaml")
    assert [str(s.prefix) for s in mesh.node("n64").subnets] == ["10.200.64.0/24"]
    assert [str(s.probe) for s in mesh.node("n64").subnets] == ["10.200.64.10"]


# ----------------------------------------------------------------------------- sshd, known_hosts, ip batch


def _sshd_options(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, value = line.split(None, 1)
            out[key] = value
    return out


@pytest.mark.parametrize("root_login", [False, True])
def test_sshd_config_is_key_only_with_strict_modes_on_the_host_address(root_login: bool) -> None:
    spec = hosts.make_lab(4, DIR, root_login=root_login)
    opts = _sshd_options(texts.render_sshd_config(spec, spec.host("azure")))
    hd = Path("/run/wgmesh-lab/4/hosts/azure")
    assert opts["ListenAddress"] == "10.250.4.12"
    assert opts["HostKey"] == str(hd / "ssh_host_ed25519_key")
    assert opts["PidFile"] == str(hd / "sshd.pid")
    # each host's own homes (root's holds cloud-init's refusal in a cloud-like lab), checked by StrictModes
    assert opts["AuthorizedKeysFile"] == ".ssh/authorized_keys"
    assert opts["StrictModes"] == "yes"
    assert opts["PermitRootLogin"] == "prohibit-password"
    assert opts["PasswordAuthentication"] == "no"
    assert opts["KbdInteractiveAuthentication"] == "no"
    assert opts["UsePAM"] == "no"
    assert "sftp" in opts["Subsystem"]


def test_known_hosts_is_read_by_paramiko(tmp_path: Path) -> None:
    spec = hosts.make_lab(4, DIR, nodes=2)
    keys = {}
    for h in spec.hosts:
        raw = base64.b64encode(b"\x00\x00\x00\x0bssh-ed25519\x00\x00\x00\x20" + bytes(range(32))).decode()
        keys[h.name] = f"ssh-ed25519 {raw} wgmesh-lab4-{h.name}\n"
    path = tmp_path / "known_hosts"
    path.write_text(texts.render_known_hosts(spec, keys))
    known = paramiko.HostKeys(str(path))
    assert set(known.keys()) == {"10.250.4.11", "10.250.4.12"}
    assert known.lookup("10.250.4.11")["ssh-ed25519"].get_base64() == keys["n1"].split()[1]
    assert "wgmesh-lab4" not in path.read_text()  # comments dropped: one `IP TYPE KEY` per line


def test_host_batch_makes_bridge_then_namespaces_and_veths() -> None:
    spec = hosts.make_lab(2, DIR, nodes=2)
    assert texts.host_batch(spec).splitlines() == [
        "link add wgmlab2 type bridge",
        "addr add 10.250.2.1/24 dev wgmlab2",
        "link set wgmlab2 up",
        "netns add wgmlab2-n1",
        "link add wgl2v0 type veth peer name eth0 netns wgmlab2-n1",
        "link set wgl2v0 master wgmlab2 up",
        "netns add wgmlab2m-n1",
        "netns add wgmlab2-n2",
        "link add wgl2v1 type veth peer name eth0 netns wgmlab2-n2",
        "link set wgl2v1 master wgmlab2 up",
        "netns add wgmlab2m-n2",
    ]


def test_setup_script_puts_a_machine_behind_the_subnet_routed_by_the_host() -> None:
    spec = hosts.make_lab(2, DIR, nodes=2)
    lines = texts.setup_script(spec, spec.hosts[1]).splitlines()
    machine = [
        "ip link add sub0m type veth peer name eth0 netns wgmlab2m-n2",
        "ip link set sub0m master sub0 up",
        "ip -n wgmlab2m-n2 link set lo up",
        "ip -n wgmlab2m-n2 addr add 192.168.20.10/24 dev eth0",
        "ip -n wgmlab2m-n2 link set eth0 up",
        "ip -n wgmlab2m-n2 route add default via 192.168.20.1",
    ]
    assert texts.machine_setup(spec.hosts[1]) == machine
    start = lines.index(machine[0])
    assert lines[start : start + len(machine)] == machine
    assert start > lines.index("ip link set sub0 up"), "the bridge is there first"
    assert not any("sshd" in line for line in machine), "a machine, no login"


@pytest.mark.parametrize(("root_login", "forwarding"), [(False, None), (True, "1")])
def test_sysctl_d_keeps_the_forwarding_of_the_image(root_login: bool, forwarding: str | None) -> None:
    from wgmesh.lab import boot

    text = texts.render_sysctl_conf(hosts.make_lab(2, DIR, root_login=root_login))
    if forwarding is None:
        assert text is None
    else:
        assert text is not None and text.startswith("# ")
        assert boot.parse_sysctl_conf(text) == [("net.ipv4.ip_forward", forwarding)]


def test_setup_script_makes_the_key_on_the_host_and_prints_only_the_public_key() -> None:
    spec = hosts.make_lab(2, DIR, nodes=2)
    script = texts.setup_script(spec, spec.hosts[1])
    assert "ip addr add 10.250.2.12/24 dev eth0" in script
    assert "ip addr add 192.168.20.1/24 dev sub0" in script
    assert "(umask 077 && wg genkey > /etc/wireguard/wg0.key)" in script
    # the only command whose output leaves the host is `wg pubkey`
    assert [line for line in script.splitlines() if "wg " in line and ">" not in line] == [
        "wg pubkey < /etc/wireguard/wg0.key"
    ]
    no_keys = hosts.make_lab(2, DIR, nodes=2, keys=False)
    assert "wg" not in texts.setup_script(no_keys, no_keys.hosts[0]).replace("wgm", "")


def test_mesh_yaml_of_root_login_hosts_logs_in_as_root() -> None:
    spec = hosts.make_lab(5, DIR, nodes=2, root_login=True)
    assert _yaml(texts.render_mesh_yaml(spec, {}))["ssh"]["user"] == "root"


# ----------------------------------------------------------------------------- logins: cloud-init's refusal, sudo


def test_root_is_refused_exactly_as_cloud_init_does() -> None:
    spec = hosts.make_lab(3, DIR)
    assert texts.render_root_authorized_keys(spec, CLIENT_KEY) == (
        "no-port-forwarding,no-agent-forwarding,no-X11-forwarding,"
        """command="echo 'Please login as the user \\"wgmlab3\\" rather than the user \\"root\\".';"""
        'echo;sleep 10;exit 142" ' + CLIENT_KEY
    )


def test_the_forced_command_prints_the_banner_and_exits_142() -> None:
    """What sshd does with it: the quoted command run by a shell."""
    line = texts.render_root_authorized_keys(hosts.make_lab(3, DIR), CLIENT_KEY)
    command = line.split('command="', 1)[1].split('" ssh-ed25519', 1)[0].replace('\\"', '"')
    r = subprocess.run(["sh", "-c", command.replace("sleep 10", "sleep 0")], capture_output=True, text=True)
    assert (r.returncode, r.stdout) == (142, 'Please login as the user "wgmlab3" rather than the user "root".\n\n')


def test_root_login_hosts_take_the_key_plainly() -> None:
    spec = hosts.make_lab(3, DIR, root_login=True)
    assert texts.render_root_authorized_keys(spec, CLIENT_KEY.strip()) == CLIENT_KEY


def test_sudoers_gives_the_lab_user_passwordless_sudo(tmp_path: Path) -> None:
    text = texts.render_sudoers(hosts.make_lab(9, DIR))
    assert text.splitlines() == [
        "# wgmesh lab 9: its hosts' login user, without a password. Removed by `wgmesh lab down`.",
        "wgmlab9 ALL=(ALL) NOPASSWD: ALL",
    ]
    visudo = shutil.which("visudo", path="/usr/sbin:/usr/bin:/sbin:/bin")
    if visudo is None:
        pytest.skip("visudo (package sudo) is not installed")
    path = tmp_path / "sudoers"
    path.write_text(text)
    path.chmod(0o440)
    r = subprocess.run([visudo, "-c", "-q", "-f", str(path)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize(("root_login", "ipv4", "ipv6"), [(False, "0", "0"), (True, "1", None)])
def test_setup_script_sets_forwarding_by_mode(root_login: bool, ipv4: str, ipv6: str | None) -> None:
    spec = hosts.make_lab(2, DIR, nodes=1, root_login=root_login)
    script = texts.setup_script(spec, spec.hosts[0])
    assert f"sysctl -qw net.ipv4.ip_forward={ipv4}" in script.splitlines()
    assert ("net.ipv6.conf.all.forwarding=0" in script) is (ipv6 == "0")


def test_each_host_resolves_its_own_name_and_the_labs_dns_names() -> None:
    spec = hosts.make_lab(7, DIR, dns=("azure",))
    lines = texts.render_hosts(spec, spec.host("gcp")).splitlines()
    assert "127.0.1.1\tgcp" in lines  # sudo looks its host name up
    assert "127.0.1.1\taws" not in lines
    assert f"{spec.host('azure').ip}\tazure.wgmlab7.test" in lines


# ----------------------------------------------------------------------------- NAT routers, moves


def test_a_nat_host_sits_behind_its_router() -> None:
    lab = hosts.make_lab(7, DIR, nat=("gcp", "aliyun:symmetric"))
    gcp = lab.host("gcp")
    batch = texts.host_batch(lab).splitlines()
    assert "netns add wgmlab7r-gcp" in batch and "netns add wgmlab7r-aws" not in batch
    # the bridge leg of a NAT'd host is its router's eth0; the others' is their own
    assert "link add wgl7v2 type veth peer name eth0 netns wgmlab7r-gcp" in batch
    assert "link add wgl7v0 type veth peer name eth0 netns wgmlab7-aws" in batch
    assert batch.index("netns add wgmlab7-gcp") < batch.index("netns add wgmlab7r-gcp")
    setup = texts.setup_script(lab, gcp).splitlines()
    assert setup[1:4] == [
        "ip addr add 172.31.2.2/24 dev eth0",
        "ip link set eth0 up",
        "ip route add default via 172.31.2.1",
    ]
    assert "ip route add default" not in texts.setup_script(lab, lab.host("aws"))
    assert "ListenAddress 172.31.2.2\n" in texts.render_sshd_config(lab, gcp)
    mesh = texts.render_mesh_yaml(lab, {})
    assert "    # behind a cone NAT (router wgmlab7r-gcp, 10.250.7.13): no endpoint\n" in mesh
    assert "    ssh: {host: 10.250.7.13}\n" in mesh  # the router forwards port 22
    assert "10.250.7.13\tgcp.wgmlab7.test" in texts.render_hosts(lab, lab.host("aws"))


@pytest.mark.parametrize(
    ("kind", "masquerade"), [("cone", "-j MASQUERADE"), ("symmetric", "-j MASQUERADE --random-fully")]
)
def test_the_router_masquerades_forwards_ssh_and_drops_unsolicited_inbound(kind: str, masquerade: str) -> None:
    lab = hosts.make_lab(7, DIR, nat=(f"gcp:{kind}",))
    script = texts.router_script(lab, lab.host("gcp")).splitlines()
    ipt = "iptables -w 5"
    assert script[:8] == [
        "set -e",
        "ip link set lo up",
        "ip addr add 10.250.7.13/24 dev eth0",
        "ip link set eth0 up",
        "ip link add lan0 type veth peer name eth0 netns wgmlab7-gcp",
        "ip addr add 172.31.2.1/24 dev lan0",
        "ip link set lan0 up",
        "sysctl -qw net.ipv4.ip_forward=1",
    ]
    assert f"{ipt} -t nat -A POSTROUTING -o eth0 {masquerade}" in script
    dnat = "-m addrtype --dst-type LOCAL -p tcp --dport 22 -j DNAT --to-destination 172.31.2.2:22"
    assert f"{ipt} -t nat -A PREROUTING -i eth0 {dnat}" in script  # only what is sent to its address
    forward = [line for line in script if " -A FORWARD " in line]
    assert forward == [
        f"{ipt} -A FORWARD -i lan0 -o eth0 -j ACCEPT",
        f"{ipt} -A FORWARD -i eth0 -o lan0 -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
        f"{ipt} -A FORWARD -i eth0 -o lan0 -p tcp -d 172.31.2.2 --dport 22 -m conntrack --ctstate DNAT -j ACCEPT",
        f"{ipt} -A FORWARD -i eth0 -j DROP",
    ]
    assert script[-2:] == [
        f"{ipt} -A INPUT -i eth0 -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
        f"{ipt} -A INPUT -i eth0 -j DROP",
    ]


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="no shellcheck")
def test_the_router_script_passes_shellcheck() -> None:
    lab = hosts.make_lab(7, DIR, nat=("gcp:symmetric",))
    script = "#!/bin/sh\n" + texts.router_script(lab, lab.host("gcp")) + "\n"
    r = subprocess.run(["shellcheck", "-s", "sh", "-"], input=script, capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stdout


def test_a_move_rewrites_only_the_nodes_ssh_host_and_its_known_hosts_line() -> None:
    lab = hosts.make_lab(7, DIR, names=("aws", "no", "gcp"), nat=("gcp",))
    mesh = texts.render_mesh_yaml(lab, {})
    moved = texts.moved_mesh_yaml(mesh, "gcp", "10.250.7.13", "10.250.7.128")
    assert moved is not None
    assert [a for a, b in zip(mesh.splitlines(), moved.splitlines(), strict=True) if a != b] == [
        "    ssh: {host: 10.250.7.13}"
    ]
    assert "    ssh: {host: 10.250.7.128}" in moved
    # a quoted node name; a node whose line was edited by hand; an unknown node
    assert texts.moved_mesh_yaml(mesh, "no", "10.250.7.12", "10.250.7.128") is not None
    assert texts.moved_mesh_yaml(mesh.replace("{host: 10.250.7.13}", "{host: gcp}"), "gcp", "10.250.7.13", "x") is None
    assert texts.moved_mesh_yaml(mesh, "aws", "10.250.7.13", "10.250.7.128") is None  # gcp's line, not aws's
    assert texts.moved_mesh_yaml(mesh, "mars", "10.250.7.13", "10.250.7.128") is None
    known = "10.250.7.11 ssh-ed25519 AAAA1\n10.250.7.13 ssh-ed25519 AAAA3\n10.250.7.130 ssh-ed25519 AAAA4\n"
    assert texts.moved_known_hosts(known, "10.250.7.13", "10.250.7.128") == (
        "10.250.7.11 ssh-ed25519 AAAA1\n10.250.7.128 ssh-ed25519 AAAA3\n10.250.7.130 ssh-ed25519 AAAA4\n"
    )
