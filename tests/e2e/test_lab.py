"""`wgmesh lab` against the real thing: namespaces, OpenSSH, wireguard-go, and cloud-like hosts (root refused
with cloud-init's banner, a sudo user, forwarding off)."""

from __future__ import annotations

import dataclasses
import os
import shlex
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from ruamel.yaml import YAML
from typer.testing import CliRunner

from e2e import labkit as labmod
from wgmesh import meshfile
from wgmesh.lab import Lab, Proc
from wgmesh.lab import cli as cli_lab

pytestmark = pytest.mark.e2e

LabFactory = Callable[..., Lab]
WgmeshRunner = Callable[..., "subprocess.CompletedProcess[str]"]


def _ssh(lab: Lab, node: str, command: str, user: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(labmod.ssh_argv(lab, node, command, user), capture_output=True, text=True, timeout=30)


def _root(lab: Lab, node: str, script: str) -> subprocess.CompletedProcess[str]:
    """`script` as root through the login user's sudo (plain ssh on root-login hosts)."""
    if lab.root_login:
        return _ssh(lab, node, script)
    return _ssh(lab, node, f"sudo -n sh -c {shlex.quote(script)}")


def _mesh_nodes(lab: Lab) -> dict[str, dict]:
    return YAML(typ="safe").load(lab.mesh_path.read_text())["nodes"]


def _procs_in(lab: Lab) -> list[Proc]:
    procs = (labmod.proc_of(p) for p in labmod.pids_in_netns([h.netns for h in lab.hosts]))
    return [p for p in procs if p is not None]


def _recorded(lab: Lab) -> list[Proc]:
    return [h.sshd for h in labmod.load(lab.dir).hosts if h.sshd is not None]


def _wg_conf(lab: Lab, me: str, peers: list[str]) -> str:
    keys = {n: v.get("public_key") for n, v in _mesh_nodes(lab).items()}
    host = lab.host(me)
    text = (
        f"[Interface]\nAddress = {host.address}/24\nListenPort = 51820\n"
        "PostUp = wg set %i private-key /etc/wireguard/%i.key\n"
    )
    for p in peers:
        peer = lab.host(p)
        text += f"[Peer]\nPublicKey = {keys[p]}\nEndpoint = {peer.ip}:51820\nAllowedIPs = {peer.address}/32\n"
    return text


def _assert_nothing_left(lab: Lab, procs: list[Proc]) -> None:
    assert procs, "the test must know some processes of the lab"
    assert [p for p in procs if labmod.alive(p)] == []
    netns = os.listdir("/run/netns") if Path("/run/netns").exists() else []
    assert [n for n in netns if n.startswith(labmod.netns_prefix(lab.id))] == []
    assert not Path(f"/sys/class/net/{lab.bridge}").exists()
    assert [n for n in netns if n.startswith(labmod.machine_prefix(lab.id))] == []
    assert [h.veth for h in lab.hosts if Path(f"/sys/class/net/{h.veth}").exists()] == []
    assert not lab.runtime.exists()
    assert not (lab.dir / ".lab").exists()
    assert not labmod.lab_in_use(lab.id)
    needles = (str(lab.runtime), f"/run/netns/{labmod.netns_prefix(lab.id)}")
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                mounts = Path(f"/proc/{entry.name}/mountinfo").read_text()
            except OSError:
                continue
            assert not any(n in mounts for n in needles), f"process {entry.name} still has a lab mount"
    assert lab.mesh_path.exists(), "the mesh repo files stay"


# ----------------------------------------------------------------------------- one 4-node lab


def test_four_node_defaults(lab4: Lab) -> None:
    nodes = _mesh_nodes(lab4)
    assert list(nodes) == ["aws", "azure", "gcp", "aliyun"]
    assert "endpoint" not in nodes["aliyun"]
    for h in lab4.hosts[:3]:
        assert nodes[h.name]["endpoint"] == f"{h.ip}:51820"
    assert lab4.mesh_path.read_text().startswith(labmod.HEADER)
    assert "id_ed25519" in (lab4.dir / ".gitignore").read_text().splitlines()


def test_openssh_logs_into_every_node_with_pinned_host_keys(lab4: Lab) -> None:
    for h in lab4.hosts:
        r = _ssh(lab4, h.name, "hostname; id -un; sudo -n id -u")
        assert r.returncode == 0, r.stderr
        assert r.stdout.split() == [h.name, lab4.ssh_user, "0"]


def test_strict_host_key_checking_rejects_another_hosts_key(lab4: Lab, tmp_path: Path) -> None:
    lines = lab4.known_hosts.read_text().splitlines()
    aws_ip, _type, _key = lines[0].split()
    wrong = tmp_path / "known_hosts"
    wrong.write_text(f"{aws_ip} {' '.join(lines[1].split()[1:])}\n")  # azure's key for aws's address
    argv = [
        a.replace(f"UserKnownHostsFile={lab4.known_hosts}", f"UserKnownHostsFile={wrong}")
        for a in labmod.ssh_argv(lab4, "aws", "true")
    ]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert r.returncode == 255
    assert "Host key verification failed" in r.stderr


def test_each_node_has_its_own_key_file_matching_mesh_yaml(lab4: Lab) -> None:
    nodes = _mesh_nodes(lab4)
    for h in lab4.hosts:
        r = _root(lab4, h.name, "stat -c '%a %U' /etc/wireguard/wg0.key && wg pubkey < /etc/wireguard/wg0.key")
        assert r.returncode == 0, r.stderr
        mode, public_key = r.stdout.splitlines()
        assert mode == "600 root"
        assert public_key == nodes[h.name]["public_key"]
    assert len({n["public_key"] for n in nodes.values()}) == len(nodes)


def test_mesh_yaml_validates(lab4: Lab, run_wgmesh: WgmeshRunner) -> None:
    r = run_wgmesh(lab4.dir, "validate")
    assert r.returncode == 0, r.stdout + r.stderr
    mesh, _warnings = meshfile.load(lab4.mesh_path)
    assert mesh.node_names == lab4.names


def test_hosts_have_separate_wireguard_folders(lab4: Lab) -> None:
    name = f"probe-{os.getpid()}"
    r = _root(lab4, "aws", f"echo aws > /etc/wireguard/{name} && echo sock > /run/wireguard/{name}")
    assert r.returncode == 0, r.stderr
    try:
        # what sshd's sessions see is what host_exec sees
        assert labmod.host_exec(lab4.dir, "aws", ["cat", f"/etc/wireguard/{name}"]).stdout == "aws\n"
        for other in ("azure", "gcp", "aliyun"):
            for folder in ("/etc/wireguard", "/run/wireguard"):
                assert labmod.host_exec(lab4.dir, other, ["test", "-e", f"{folder}/{name}"]).returncode == 1
        assert not Path("/etc/wireguard", name).exists()
        assert not Path("/run/wireguard", name).exists()
    finally:
        labmod.host_exec(lab4.dir, "aws", ["rm", "-f", f"/etc/wireguard/{name}", f"/run/wireguard/{name}"])


def test_private_subnet_and_no_forwarding(lab4: Lab) -> None:
    for h in lab4.hosts:
        r = labmod.host_exec(lab4.dir, h.name, ["sh", "-c", "ip -br addr show dev sub0; sysctl -n net.ipv4.ip_forward"])
        assert r.returncode == 0, r.stderr
        addr_line, forward = r.stdout.splitlines()
        assert str(h.subnet_interface) in addr_line.split()
        assert forward == "0"  # cloud-like: routing subnets is wgmesh's to set up


def test_a_machine_behind_each_subnet_routes_through_its_host(lab4: Lab) -> None:
    nodes = _mesh_nodes(lab4)
    for h in lab4.hosts:
        assert nodes[h.name]["subnets"] == [{"prefix": str(h.subnet), "probe": str(h.machine_ip)}]
        r = labmod.machine_exec(lab4, h.name, ["sh", "-c", "ip -br -4 addr show dev eth0; ip -4 route show default"])
        assert r.returncode == 0, r.stderr
        addr_line, route = r.stdout.splitlines()
        assert f"{h.machine_ip}/24" in addr_line.split()
        assert route.split()[:3] == ["default", "via", str(h.subnet_interface.ip)]
        assert labmod.machine_ping(lab4, h.name, str(h.subnet_interface.ip))
        r = labmod.host_exec(lab4.dir, h.name, ["ping", "-n", "-q", "-c", "1", "-W", "2", str(h.machine_ip)])
        assert r.returncode == 0, r.stdout + r.stderr
    # no forwarding on the hosts and no mesh yet: the machine reaches its host and nothing further
    assert not labmod.machine_ping(lab4, "aws", str(lab4.host("azure").ip), wait=1)
    assert not labmod.machine_ping(lab4, "aws", str(lab4.host("azure").machine_ip), wait=1)
    # no sshd, nothing running in it
    assert labmod.pids_in_netns([h.machine_netns for h in lab4.hosts]) == []


def test_wireguard_runs_on_two_hosts_at_once_and_tunnels(lab4: Lab) -> None:
    try:
        for me, peer in (("aws", "azure"), ("azure", "aws")):
            conf = _wg_conf(lab4, me, [peer])
            r = _root(lab4, me, f"cat > /etc/wireguard/wg0.conf <<'EOF'\n{conf}EOF\nwg-quick up wg0")
            assert r.returncode == 0, r.stderr
        r = _ssh(lab4, "aws", f"ping -c 3 -i 0.2 -w 10 {lab4.host('azure').address}")
        assert r.returncode == 0, r.stdout + r.stderr
        _lab, status = labmod.status(lab4.dir)
        assert {s.name: s.wireguard for s in status} == {"aws": True, "azure": True, "gcp": False, "aliyun": False}
        assert all(s.sshd for s in status)
    finally:
        for node in ("aws", "azure"):
            _root(lab4, node, "wg-quick down wg0; rm -f /etc/wireguard/wg0.conf")


def test_stop_and_start_sshd(lab4: Lab) -> None:
    labmod.stop_sshd(lab4.dir, "gcp")
    try:
        _lab, status = labmod.status(lab4.dir)
        assert {s.name: s.sshd for s in status}["gcp"] is False
        assert _ssh(lab4, "gcp", "true").returncode == 255
        # the host itself is still there
        assert labmod.host_exec(lab4.dir, "gcp", ["test", "-f", "/etc/wireguard/wg0.key"]).returncode == 0
    finally:
        proc = labmod.start_sshd(lab4.dir, "gcp")
    assert labmod.alive(proc)
    assert _ssh(lab4, "gcp", "true").returncode == 0
    assert labmod.load(lab4.dir).host("gcp").sshd == proc


def test_cli_status_table(lab4: Lab) -> None:
    result = CliRunner().invoke(cli_lab.app, ["status", "--dir", str(lab4.dir)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith(f"Lab {lab4.id} in {lab4.dir}")
    assert lines[0].endswith(", cloud)")
    assert lines[1].startswith(f"Login: {lab4.ssh_user}, passwordless sudo")
    assert lines[2].split() == ["HOST", "ADDRESS", "SSHD", "wg0", "SUBNET", "MACHINE", "NAT"]
    rows = {line.split()[0]: line.split()[1:] for line in lines[3:]}
    nat = {"aliyun": ["cone", "NAT", f"({lab4.host('aliyun').router_netns};", "host", "172.31.3.2)"]}
    assert rows == {
        h.name: [
            str(h.ip),
            "up",
            "down",
            str(h.subnet),
            str(h.machine_ip),
            f"({h.machine_netns})",
            *nat.get(h.name, ["-"]),
        ]
        for h in lab4.hosts
    }


# ----------------------------------------------------------------------------- lifecycle


def test_up_twice_then_down_leaves_nothing(lab: LabFactory) -> None:
    first = lab(nodes=2)
    conf = _wg_conf(first, "n1", [])
    r = _root(first, "n1", f"cat > /etc/wireguard/wg0.conf <<'EOF'\n{conf}EOF\nwg-quick up wg0")
    assert r.returncode == 0, r.stderr
    old = _procs_in(first)
    assert "wireguard-go" in {labmod.comm(p.pid) for p in old}

    second = labmod.up(labmod.make_lab(first.id, first.dir, nodes=2, root_login=True))
    assert [p for p in old if labmod.alive(p)] == []
    for h in second.hosts:
        assert _ssh(second, h.name, "test -f /etc/wireguard/wg0.key").returncode == 0
    deadline = time.monotonic() + 5
    while set(new := _procs_in(second)) != set(_recorded(second)) and time.monotonic() < deadline:
        time.sleep(0.05)  # the sessions of the ssh logins above end just after their clients
    assert {labmod.comm(p.pid) for p in new} - {None} == {"sshd"}  # a session's sshd may exit as it is read
    assert set(_recorded(second)) == set(new)

    assert labmod.down(second.dir) is True
    _assert_nothing_left(second, old + new)
    assert labmod.down(second.dir) is False
    assert labmod.down_id(second.id) is False


def test_down_finds_processes_up_never_recorded(lab: LabFactory) -> None:
    made = lab(nodes=2)
    procs = _procs_in(made)
    # as if `up` had died before saving the PIDs
    labmod.save(dataclasses.replace(made, hosts=tuple(dataclasses.replace(h, sshd=None) for h in made.hosts)))
    assert _recorded(made) == []
    assert labmod.down(made.dir) is True
    _assert_nothing_left(made, procs)


def test_up_failing_half_way_cleans_up(lab: LabFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    made = lab(nodes=2)
    procs = _procs_in(made)
    real = labmod.lab_system.spawn_sshd

    def failing(lab_: Lab, host: labmod.LabHost, prelude: str = "") -> tuple[Proc, str]:
        if host.name == "n3":
            time.sleep(0.2)  # let the other hosts' sshd start
            raise labmod.LabError("n3: sshd did not start")
        return real(lab_, host, prelude)

    monkeypatch.setattr(labmod.lab_system, "spawn_sshd", failing)
    with pytest.raises(labmod.LabError, match="n3: sshd did not start"):
        labmod.up(labmod.make_lab(made.id, made.dir, nodes=3))  # cloud-like: its user is made before the hosts
    _assert_nothing_left(made, procs)
    assert _getent("passwd", labmod.lab_user(made.id)).returncode == 2
    assert not labmod.sudoers_path(made.id).exists()


def test_refuses_a_bridge_it_does_not_own(lab: LabFactory) -> None:
    made = lab(nodes=1)
    lab_id = made.id
    assert labmod.down(made.dir)
    subprocess.run(["ip", "link", "add", labmod.bridge_name(lab_id), "type", "bridge"], check=True)
    try:
        with pytest.raises(labmod.LabInUse, match=f"{labmod.bridge_name(lab_id)} exist but no lab owns them"):
            labmod.up(labmod.make_lab(lab_id, made.dir, nodes=1))
        assert Path(f"/sys/class/net/{labmod.bridge_name(lab_id)}").exists(), "a bridge it does not own stays"
    finally:
        assert labmod.down_id(lab_id) is True
    assert not labmod.lab_in_use(lab_id)


def test_refuses_an_id_held_by_another_folder(lab: LabFactory, tmp_path: Path) -> None:
    held = lab(nodes=1)
    with pytest.raises(labmod.LabInUse, match=f"lab id {held.id} is in use by {held.dir}"):
        labmod.up(labmod.make_lab(held.id, tmp_path / "other", nodes=1))
    assert _ssh(held, "n1", "true").returncode == 0, "the other lab is untouched"


def test_two_labs_at_once(lab: LabFactory, lab4: Lab) -> None:
    other = lab(names=("aws", "solo"))
    assert other.id != lab4.id
    for each in (lab4, other):
        r = _root(each, "aws", "wg pubkey < /etc/wireguard/wg0.key")
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == _mesh_nodes(each)["aws"]["public_key"]
    assert _mesh_nodes(lab4)["aws"]["public_key"] != _mesh_nodes(other)["aws"]["public_key"]


def test_no_keys(lab: LabFactory) -> None:
    made = lab(nodes=2, keys=False)
    assert all("public_key" not in n for n in _mesh_nodes(made).values())
    for h in made.hosts:
        assert labmod.host_exec(made.dir, h.name, ["test", "-e", "/etc/wireguard/wg0.key"]).returncode == 1
    mesh, _warnings = meshfile.load(made.mesh_path)
    assert not any(n.enrolled for n in mesh.nodes)


def test_sixteen_hosts_come_up_in_seconds(lab: LabFactory) -> None:
    started = time.monotonic()
    made = lab(nodes=16)
    elapsed = time.monotonic() - started
    assert elapsed < 10, f"16 hosts took {elapsed:.1f} s"
    for h in made.hosts:
        with socket.create_connection((str(h.ip), 22), timeout=5) as s:
            assert s.recv(64).startswith(b"SSH-2.0-OpenSSH")


def test_cli_up_status_down(lab: LabFactory) -> None:
    made = lab(nodes=1)
    runner = CliRunner()
    d = str(made.dir)
    user = labmod.lab_user(made.id)
    # the CLI's default: cloud-like hosts (the fixture made root-login ones in the same folder)
    result = runner.invoke(cli_lab.app, ["up", "--dir", d, "--id", str(made.id), "--nodes", "3", "--nat", "n3"])
    assert result.exit_code == 0, result.output
    assert f"Lab {made.id} is up in {made.dir}" in result.output
    assert "wgmesh plan" in result.output
    lines = result.output.splitlines()
    assert "NAT" in lines[3]
    assert f"ssh {user}@{made.hosts[0].ip}" in lines[1]
    assert lines[4] == (
        f"Login: {user}, passwordless sudo ({labmod.sudoers_path(made.id)}); root refused with cloud-init's "
        "banner; IP forwarding off."
    )
    result = runner.invoke(cli_lab.app, ["status", "--dir", d])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0].endswith(", cloud)")
    assert result.output.splitlines()[1].startswith(f"Login: {user}, passwordless sudo")
    assert [line.split()[0] for line in result.output.splitlines()[3:]] == ["n1", "n2", "n3"]
    result = runner.invoke(cli_lab.app, ["down", "--dir", d])
    assert result.exit_code == 0 and "is down" in result.output
    assert _getent("passwd", user).returncode == 2
    result = runner.invoke(cli_lab.app, ["status", "--dir", d])
    assert result.exit_code == 1 and result.output.startswith("Error: no lab in")


def test_real_command_has_lab(run_wgmesh: WgmeshRunner, tmp_path: Path) -> None:
    r = run_wgmesh(tmp_path, "lab", "status", "--dir", str(tmp_path))
    if "No such command" in r.stderr:
        pytest.skip("`wgmesh lab` is not registered in wgmesh/cli.py yet")
    assert r.returncode == 1
    assert r.stderr.strip() == f"Error: no lab in {tmp_path} (start one with `wgmesh lab up --dir {tmp_path}`)"


def test_refuses_a_mesh_repo_it_did_not_make(tmp_path: Path) -> None:
    (tmp_path / "mesh.yaml").write_text("version: 1\n")
    lab_id = next(i for i in range(10, labmod.MAX_ID + 1) if not labmod.lab_in_use(i))
    try:
        with pytest.raises(labmod.LabError, match="exists and was not made by wgmesh lab"):
            labmod.up(labmod.make_lab(lab_id, tmp_path, nodes=1))
    finally:
        labmod.down(tmp_path)
    assert (tmp_path / "mesh.yaml").read_text() == "version: 1\n"
    assert not (tmp_path / ".lab").exists()


# ----------------------------------------------------------------------------- cloud-like hosts


def _getent(database: str, key: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["getent", database, key], capture_output=True, text=True, timeout=10)


@pytest.fixture(scope="module")
def cloud(lab: LabFactory) -> Lab:
    return lab(nodes=2, root_login=False)


def test_cloud_like_mesh_yaml_names_the_sudo_user(cloud: Lab, run_wgmesh: WgmeshRunner) -> None:
    assert cloud.ssh_user == f"wgmlab{cloud.id}" == cloud.user
    assert YAML(typ="safe").load(cloud.mesh_path.read_text())["ssh"]["user"] == cloud.ssh_user
    r = run_wgmesh(cloud.dir, "validate")
    assert r.returncode == 0, r.stdout + r.stderr


def test_cloud_like_root_login_is_refused_with_cloud_inits_banner(cloud: Lab) -> None:
    started = time.monotonic()
    r = _ssh(cloud, "n1", "id -u", user="root")
    assert r.returncode == 142, r.stdout + r.stderr
    assert r.stdout == f'Please login as the user "{cloud.ssh_user}" rather than the user "root".\n\n'
    assert time.monotonic() - started >= 9  # cloud-init's `sleep 10` before the exit
    line = labmod.host_exec(cloud.dir, "n1", ["cat", "/root/.ssh/authorized_keys"]).stdout
    assert line.startswith(
        "no-port-forwarding,no-agent-forwarding,no-X11-forwarding,command=\"echo 'Please login as the user "
        f'\\"{cloud.ssh_user}\\" rather than the user \\"root\\".\';echo;sleep 10;exit 142" ssh-ed25519 '
    )


def test_cloud_like_user_logs_in_with_passwordless_sudo_and_no_forwarding(cloud: Lab) -> None:
    script = (
        "id -un; sudo -n true && echo sudo-ok; sudo -n sysctl -n net.ipv4.ip_forward net.ipv6.conf.all.forwarding; "
        "sudo -n sh -c 'wg pubkey < /etc/wireguard/wg0.key'; "
        "stat -c '%U %a' ~ ~/.ssh ~/.ssh/authorized_keys | tr '\\n' ' '"
    )
    nodes = YAML(typ="safe").load(cloud.mesh_path.read_text())["nodes"]
    for h in cloud.hosts:
        r = _ssh(cloud, h.name, script)
        assert r.returncode == 0, r.stdout + r.stderr
        assert r.stderr == ""  # no "sudo: unable to resolve host"
        user, sudo, forward4, forward6, public_key, homes = r.stdout.splitlines()
        assert (user, sudo, forward4, forward6) == (cloud.ssh_user, "sudo-ok", "0", "0")
        assert public_key == nodes[h.name]["public_key"]
        u = cloud.ssh_user
        assert homes.split() == [u, "750", u, "700", u, "600"]
        assert labmod.host_exec(cloud.dir, h.name, ["sysctl", "-n", "net.ipv4.ip_forward"]).stdout == "0\n"
    # the user's files on one host are that host's own (its home, like its /etc/wireguard)
    r = _ssh(cloud, "n1", "echo n1 > ~/mine")
    assert r.returncode == 0, r.stderr
    assert _ssh(cloud, "n2", "test -e ~/mine").returncode == 1


def test_cloud_like_user_and_sudoers_are_the_labs_own(lab: LabFactory) -> None:
    made = lab(nodes=1, root_login=False)
    user, sudoers = made.user, made.sudoers
    assert user == labmod.lab_user(made.id) and sudoers == labmod.sudoers_path(made.id)
    entry = _getent("passwd", user).stdout.split(":")
    assert entry[4] == f"wgmesh lab {made.id}" and entry[5] == str(made.home)
    assert sudoers.stat().st_mode & 0o777 == 0o440
    assert f"{user} ALL=(ALL) NOPASSWD: ALL" in sudoers.read_text().splitlines()
    assert subprocess.run(["visudo", "-c", "-q", "-f", str(sudoers)], timeout=10).returncode == 0
    state = labmod.load(made.dir)
    assert (state.mode, state.user, state.sudoers) == ("cloud", user, sudoers)

    assert labmod.down(made.dir) is True
    assert _getent("passwd", user).returncode == 2
    assert _getent("group", user).returncode == 2
    assert not sudoers.exists()
    assert not any(line.startswith(f"{user}:") for line in Path("/etc/subuid").read_text().splitlines())
    assert not Path("/run/sudo/ts", user).exists()
    assert labmod.down(made.dir) is False
    assert labmod.down_id(made.id) is False
    assert not labmod.lab_in_use(made.id)


def test_refuses_a_user_it_did_not_make_and_never_deletes_it(lab: LabFactory) -> None:
    made = lab(nodes=1)
    lab_id, name = made.id, labmod.lab_user(made.id)
    assert labmod.down(made.dir)
    subprocess.run(["useradd", "--no-create-home", "--comment", "not a lab's", name], check=True, timeout=30)
    try:
        with pytest.raises(labmod.LabInUse, match=f"user {name} already on this machine, not made by a lab"):
            labmod.up(labmod.make_lab(lab_id, made.dir, nodes=1))
        labmod.down_id(lab_id)
        assert _getent("passwd", name).returncode == 0, "a user the lab did not make stays"
    finally:
        subprocess.run(["userdel", name], check=True, timeout=30)
    assert not labmod.lab_in_use(lab_id)


def test_down_after_a_reboot_still_removes_the_user(lab: LabFactory) -> None:
    """A reboot empties /run (the runtime state goes) but keeps users and /etc/sudoers.d: DIR's state names them."""
    made = lab(nodes=1, root_login=False)
    procs = _procs_in(made)
    labmod.stop_sshd(made.dir, "n1")
    subprocess.run(
        ["ip", "-batch", "-"],
        input=f"link del {made.bridge}\nnetns del {made.hosts[0].netns}\nnetns del {made.hosts[0].machine_netns}\n",
        text=True,
        check=True,
        timeout=30,
    )
    shutil.rmtree(made.runtime)
    assert _getent("passwd", made.ssh_user).returncode == 0 and labmod.sudoers_path(made.id).exists()
    assert labmod.down(made.dir) is True
    assert _getent("passwd", made.ssh_user).returncode == 2
    assert not labmod.sudoers_path(made.id).exists()
    _assert_nothing_left(made, procs)


# ----------------------------------------------------------------------------- size, reboot


def test_sixty_four_hosts_each_with_a_machine(lab: LabFactory, run_wgmesh: WgmeshRunner) -> None:
    started = time.monotonic()
    made = lab(nodes=64)
    elapsed = time.monotonic() - started
    assert elapsed < 30, f"64 hosts took {elapsed:.1f} s"
    subnets = [h.subnet for h in made.hosts]
    assert len(set(subnets)) == 64
    assert str(made.host("n25").subnet) == "192.168.250.0/24" and str(made.host("n26").subnet) == "10.200.26.0/24"
    for h in made.hosts:
        with socket.create_connection((str(h.ip), 22), timeout=5) as s:
            assert s.recv(64).startswith(b"SSH-2.0-OpenSSH")
    for name in ("n1", "n25", "n26", "n64"):
        assert labmod.machine_ping(made, name, str(made.host(name).subnet_interface.ip)), name
    r = run_wgmesh(made.dir, "validate")
    assert r.returncode == 0, r.stdout + r.stderr


def _state(lab: Lab, node: str) -> dict[str, str]:
    script = (
        "echo fwd=$(sysctl -n net.ipv4.ip_forward); "
        "echo rules=$(iptables -S FORWARD | grep -c -- '^-A' || true); "
        "echo nat=$(iptables -t nat -S POSTROUTING | grep -c -- '^-A' || true); "
        "echo run=$(ls -A /run/wireguard); "
        "echo wg=$(ip -br link show dev wg0 2>/dev/null | awk '{print $2}')"
    )
    r = labmod.host_exec(lab.dir, node, ["sh", "-c", script])
    assert r.returncode == 0, r.stderr
    return dict(line.split("=", 1) for line in r.stdout.splitlines())


def test_reboot_undoes_runtime_state_and_runs_what_boot_runs(lab4: Lab) -> None:
    host = lab4.host("gcp")
    sshd_before = labmod.load(lab4.dir).host("gcp").sshd
    conf = _wg_conf(lab4, "gcp", ["aws"]).replace("[Peer]", "PostUp = touch /run/wireguard/booted-%i\n[Peer]", 1)
    script = (
        f"cat > /etc/wireguard/wg0.conf <<'EOF'\n{conf}EOF\n"
        "wg-quick up wg0 && sysctl -q -w net.ipv4.ip_forward=1 && "
        "iptables -I FORWARD -i wg0 -m comment --comment wgmesh:wg0 -j ACCEPT && "
        f"iptables -t nat -A POSTROUTING -d {host.subnet} -j MASQUERADE && touch /run/wireguard/stale && "
        "rm /run/wireguard/booted-wg0"
    )
    r = _root(lab4, "gcp", script)
    assert r.returncode == 0, r.stdout + r.stderr
    sleeper = subprocess.Popen(
        labmod.lab_system.ns_argv(labmod.load(lab4.dir), host, ["sleep", "600"]), stdout=subprocess.DEVNULL
    )
    try:
        assert _state(lab4, "gcp") == {"fwd": "1", "rules": "1", "nat": "1", "run": "stale wg0.sock", "wg": "UNKNOWN"}
        result = CliRunner().invoke(cli_lab.app, ["reboot", "gcp", "--dir", str(lab4.dir)])
        assert result.exit_code == 0, result.output
        lines = result.output.splitlines()
        assert lines[0].startswith("Rebooting gcp: stopped ") and lines[0].endswith("(sshd stays); wg0 gone.")
        assert "wireguard-go" in lines[0] and "sleep" in lines[0]
        assert lines[-2].split() == ["boot", "ok", "wg-quick", "up", "wg0"]
        assert lines[-1].startswith("gcp is back (")
        assert sleeper.wait(timeout=5) is not None, "every process but sshd stops"
        # the config's own PostUp ran again at boot; what the hand-made rules and forwarding did is gone
        after = {"fwd": "0", "rules": "0", "nat": "0", "run": "booted-wg0 wg0.sock", "wg": "UNKNOWN"}
        assert _state(lab4, "gcp") == after
        assert labmod.load(lab4.dir).host("gcp").sshd == sshd_before
        assert labmod.alive(sshd_before) and _ssh(lab4, "gcp", "true").returncode == 0
        assert labmod.machine_ping(lab4, "gcp", str(host.subnet_interface.ip)), "the machine behind it stays"
    finally:
        sleeper.kill()
        sleeper.wait()
        _root(lab4, "gcp", "wg-quick down wg0; rm -f /etc/wireguard/wg0.conf /run/wireguard/booted-wg0")


def test_reboot_of_root_login_hosts_keeps_their_forwarding_and_names_a_failed_boot(lab: LabFactory) -> None:
    made = lab(nodes=1, root_login=True)
    assert labmod.host_exec(made.dir, "n1", ["sysctl", "-n", "net.ipv4.ip_forward"]).stdout == "1\n"
    broken = "[Interface]\nAddress = 10.0.0.1/24\nPostUp = echo hook says no >&2; false\n"
    r = _ssh(made, "n1", f"cat > /etc/wireguard/wg0.conf <<'EOF'\n{broken}EOF\n")
    assert r.returncode == 0, r.stderr
    result = labmod.reboot(made.dir, "n1")
    assert [s.command for s in result.steps if s.phase == "boot"] == [
        "sysctl -q -w net.ipv4.ip_forward=1",  # the image's /etc/sysctl.d, the host's own
        "wg-quick up wg0",
    ]
    assert [s.command for s in result.failed] == ["wg-quick up wg0"]
    assert "hook says no" in result.failed[0].output
    assert labmod.host_exec(made.dir, "n1", ["sysctl", "-n", "net.ipv4.ip_forward"]).stdout == "1\n"
    assert not Path("/etc/sysctl.d", "99-wgmesh-lab.conf").exists(), "the machine's own /etc/sysctl.d is untouched"
    cli = CliRunner().invoke(cli_lab.app, ["reboot", "n1", "--dir", str(made.dir)])
    assert cli.exit_code == 1
    assert "FAILED  wg-quick up wg0: " in cli.output and "Error: n1 came back with 1 failed step(s)" in cli.output
