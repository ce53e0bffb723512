"""The pure parts of `wgmesh lab`: names, addresses, generated files, state; and the CLI's error paths."""

from __future__ import annotations

import base64
import ipaddress
import re
from pathlib import Path

import paramiko
import pytest
from nacl.public import PrivateKey
from ruamel.yaml import YAML
from typer.testing import CliRunner

from wgmesh import cli_lab, lab
from wgmesh.lab import LabError, Proc


def _public_key() -> str:
    return base64.b64encode(bytes(PrivateKey.generate().public_key)).decode()


def _yaml(text: str) -> dict:
    return YAML(typ="safe").load(text)


DIR = Path("/srv/meshlab")


# ----------------------------------------------------------------------------- make_lab


def test_four_nodes_are_the_classic_clouds_with_aliyun_behind_nat() -> None:
    spec = lab.make_lab(0, DIR)
    assert spec.names == ("aws", "azure", "gcp", "aliyun")
    assert [h.nat for h in spec.hosts] == [False, False, False, True]
    assert spec.host("aliyun").endpoint is None
    assert spec.host("aws").endpoint == "10.250.0.11:51820"


@pytest.mark.parametrize(
    ("kwargs", "names", "nat"),
    [
        ({"nodes": 1}, ("n1",), ()),
        ({"nodes": 3}, ("n1", "n2", "n3"), ()),
        ({"nodes": 16}, tuple(f"n{i}" for i in range(1, 17)), ()),
        ({"names": ("a", "b")}, ("a", "b"), ()),
        # the defaults spelled out are not "the defaults": no NAT unless asked
        ({"names": ("aws", "azure", "gcp", "aliyun")}, ("aws", "azure", "gcp", "aliyun"), ()),
        ({"nodes": 4, "nat": ()}, ("aws", "azure", "gcp", "aliyun"), ()),
        ({"nodes": 4, "nat": ("aws", "gcp")}, ("aws", "azure", "gcp", "aliyun"), ("aws", "gcp")),
        ({"nodes": 2, "names": ("x", "y"), "nat": ("y",)}, ("x", "y"), ("y",)),
    ],
)
def test_names_and_nat(kwargs: dict, names: tuple[str, ...], nat: tuple[str, ...]) -> None:
    spec = lab.make_lab(3, DIR, **kwargs)
    assert spec.names == names
    assert tuple(h.name for h in spec.hosts if h.nat) == nat


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"lab_id": -1}, "lab id must be 0..50"),
        ({"lab_id": 51}, "lab id must be 0..50"),
        ({"nodes": 0}, "--nodes must be 1..25"),
        ({"nodes": 26}, "--nodes must be 1..25"),
        ({"nodes": 3, "names": ("a", "b")}, "--nodes 3 but --names lists 2"),
        ({"names": ("a", "a", "b")}, "host names repeated: a"),
        ({"names": ("ok", "bad/name")}, "bad host name 'bad/name'"),
        ({"names": ("-x",)}, "bad host name '-x'"),
        ({"names": ("x" * 64,)}, "bad host name"),
        ({"names": tuple(f"h{i}" for i in range(26))}, "a lab has 1..25 hosts"),
        ({"nat": ("mars",)}, "--nat mars: no such host"),
    ],
)
def test_bad_options_are_refused(kwargs: dict, message: str) -> None:
    args = {"lab_id": 0, "directory": DIR} | kwargs
    with pytest.raises(LabError, match=re.escape(message)):
        lab.make_lab(**args)


def test_addressing_of_one_host() -> None:
    host = lab.make_lab(7, DIR, nodes=16).host("n3")
    assert host.netns == "wgmlab7-n3"
    assert host.veth == "wgl7v2"
    assert host.ip == ipaddress.IPv4Address("10.250.7.13")
    assert host.address == ipaddress.IPv4Address("10.0.0.3")
    assert host.subnet == ipaddress.IPv4Network("192.168.30.0/24")
    assert str(host.subnet_interface) == "192.168.30.1/24"


@pytest.mark.parametrize("lab_id", [0, 9, 10, 50])
def test_every_address_and_name_is_distinct_and_fits(lab_id: int) -> None:
    spec = lab.make_lab(lab_id, DIR, nodes=lab.MAX_NODES)
    for attr in ("netns", "veth", "ip", "address", "subnet"):
        values = [getattr(h, attr) for h in spec.hosts]
        assert len(set(values)) == len(values), attr
    assert all(len(h.veth) <= 15 for h in spec.hosts)
    assert len(spec.bridge) <= 15
    assert all(h.ip in spec.network and h.ip != spec.gateway.ip for h in spec.hosts)
    assert all(h.ip != spec.network.broadcast_address for h in spec.hosts)
    assert spec.gateway.network == spec.network


def test_labs_with_different_ids_share_no_name_or_range() -> None:
    a, b = lab.make_lab(1, DIR, nodes=4), lab.make_lab(10, DIR, nodes=4)
    assert a.bridge != b.bridge and not a.network.overlaps(b.network)
    assert not {h.netns for h in a.hosts} & {h.netns for h in b.hosts}
    assert not {h.veth for h in a.hosts} & {h.veth for h in b.hosts}
    # namespace prefixes are not prefixes of each other (lab 1 must not take lab 10's namespaces)
    assert not b.hosts[0].netns.startswith(lab.netns_prefix(1))


def test_parse_names() -> None:
    assert lab.parse_names("a, b,,c ") == ("a", "b", "c")


# ----------------------------------------------------------------------------- mesh.yaml


def test_mesh_yaml_matches_the_lab() -> None:
    spec = lab.make_lab(5, DIR)
    keys = {n: _public_key() for n in spec.names}
    text = lab.render_mesh_yaml(spec, keys)
    assert text.startswith(lab.HEADER)
    doc = _yaml(text)
    assert doc["version"] == 1
    assert doc["mesh"] == {
        "name": "lab",
        "interface": "wg0",
        "network": "10.0.0.0/24",
        "listen_port": 51820,
        "persistent_keepalive": 25,
    }
    assert doc["ssh"] == {"user": "root", "port": 22, "known_hosts": "known_hosts", "identity_file": "id_ed25519"}
    assert list(doc["nodes"]) == ["aws", "azure", "gcp", "aliyun"]
    assert doc["nodes"]["gcp"] == {
        "address": "10.0.0.3",
        "public_key": keys["gcp"],
        "endpoint": "10.250.5.13:51820",
        "subnets": ["192.168.30.0/24"],
        "ssh": {"host": "10.250.5.13"},
    }
    assert "endpoint" not in doc["nodes"]["aliyun"]
    assert doc["nodes"]["aliyun"]["ssh"] == {"host": "10.250.5.14"}


def test_mesh_yaml_without_keys_has_no_public_key() -> None:
    spec = lab.make_lab(5, DIR, nodes=3, keys=False)
    doc = _yaml(lab.render_mesh_yaml(spec, {}))
    assert all("public_key" not in node for node in doc["nodes"].values())
    assert len(doc["nodes"]) == 3


@pytest.mark.parametrize("name", ["true", "null", "no", "On", "1", "10.5", "a.b", "x_y-z"])
def test_mesh_yaml_node_names_stay_strings(name: str) -> None:
    spec = lab.make_lab(5, DIR, names=(name, "other"))
    doc = _yaml(lab.render_mesh_yaml(spec, {}))
    assert list(doc["nodes"]) == [name, "other"]


def test_mesh_yaml_validates_with_the_loader() -> None:
    config = pytest.importorskip("wgmesh.config")
    spec = lab.make_lab(5, DIR, nodes=16, nat=("n2",))
    keys = {n: _public_key() for n in spec.names}
    mesh, _warnings = config.loads(lab.render_mesh_yaml(spec, keys), DIR / "mesh.yaml")
    assert mesh.node_names == spec.names
    for host in spec.hosts:
        node = mesh.node(host.name)
        assert node.public_key == keys[host.name]
        assert node.addresses == (host.address,)
        assert (str(node.endpoint) if node.endpoint else None) == host.endpoint
        assert node.ssh.host == str(host.ip)
        assert node.ssh.identity_file == DIR / "id_ed25519"
        assert node.ssh.known_hosts == DIR / "known_hosts"
        assert [s.prefix for s in node.subnets] == [host.subnet]


# ----------------------------------------------------------------------------- sshd, known_hosts, ip batch


def _sshd_options(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, value = line.split(None, 1)
            out[key] = value
    return out


def test_sshd_config_is_key_only_root_on_the_host_address() -> None:
    spec = lab.make_lab(4, DIR)
    opts = _sshd_options(lab.render_sshd_config(spec, spec.host("azure")))
    hd = Path("/run/wgmesh-lab/4/hosts/azure")
    assert opts["ListenAddress"] == "10.250.4.12"
    assert opts["HostKey"] == str(hd / "ssh_host_ed25519_key")
    assert opts["PidFile"] == str(hd / "sshd.pid")
    assert opts["AuthorizedKeysFile"] == "/run/wgmesh-lab/4/authorized_keys"
    assert opts["PermitRootLogin"] == "prohibit-password"
    assert opts["PasswordAuthentication"] == "no"
    assert opts["KbdInteractiveAuthentication"] == "no"
    assert opts["UsePAM"] == "no"
    assert "sftp" in opts["Subsystem"]


def test_known_hosts_is_read_by_paramiko(tmp_path: Path) -> None:
    spec = lab.make_lab(4, DIR, nodes=2)
    keys = {}
    for h in spec.hosts:
        raw = base64.b64encode(b"\x00\x00\x00\x0bssh-ed25519\x00\x00\x00\x20" + bytes(range(32))).decode()
        keys[h.name] = f"ssh-ed25519 {raw} wgmesh-lab4-{h.name}\n"
    path = tmp_path / "known_hosts"
    path.write_text(lab.render_known_hosts(spec, keys))
    known = paramiko.HostKeys(str(path))
    assert set(known.keys()) == {"10.250.4.11", "10.250.4.12"}
    assert known.lookup("10.250.4.11")["ssh-ed25519"].get_base64() == keys["n1"].split()[1]
    assert "wgmesh-lab4" not in path.read_text()  # comments dropped: one `IP TYPE KEY` per line


def test_host_batch_makes_bridge_then_namespaces_and_veths() -> None:
    spec = lab.make_lab(2, DIR, nodes=2)
    assert lab.host_batch(spec).splitlines() == [
        "link add wgmlab2 type bridge",
        "addr add 10.250.2.1/24 dev wgmlab2",
        "link set wgmlab2 up",
        "netns add wgmlab2-n1",
        "link add wgl2v0 type veth peer name eth0 netns wgmlab2-n1",
        "link set wgl2v0 master wgmlab2 up",
        "netns add wgmlab2-n2",
        "link add wgl2v1 type veth peer name eth0 netns wgmlab2-n2",
        "link set wgl2v1 master wgmlab2 up",
    ]


def test_setup_script_makes_the_key_on_the_host_and_prints_only_the_public_key() -> None:
    spec = lab.make_lab(2, DIR, nodes=2)
    script = lab.setup_script(spec, spec.hosts[1])
    assert "ip addr add 10.250.2.12/24 dev eth0" in script
    assert "ip addr add 192.168.20.1/24 dev sub0" in script
    assert "sysctl -qw net.ipv4.ip_forward=1" in script
    assert "(umask 077 && wg genkey > /etc/wireguard/wg0.key)" in script
    # the only command whose output leaves the host is `wg pubkey`
    assert [line for line in script.splitlines() if "wg " in line and ">" not in line] == [
        "wg pubkey < /etc/wireguard/wg0.key"
    ]
    no_keys = lab.make_lab(2, DIR, nodes=2, keys=False)
    assert "wg" not in lab.setup_script(no_keys, no_keys.hosts[0]).replace("wgm", "")


# ----------------------------------------------------------------------------- range, state, system


@pytest.mark.parametrize(
    ("routes", "conflicts"),
    [
        ([], []),
        ([{"dst": "default", "dev": "eth0"}], []),
        ([{"dst": "10.250.3.0/24", "dev": "wgmlab3"}], []),  # our own bridge
        ([{"dst": "10.0.0.0/8", "dev": "tun0"}], []),  # broad: our /24 is more specific
        ([{"dst": "10.250.3.0/24", "dev": "eth1"}], ["10.250.3.0/24 on eth1"]),
        ([{"dst": "10.250.0.0/16", "dev": "vpn"}], ["10.250.0.0/16 on vpn"]),
        ([{"dst": "10.250.3.77", "dev": "eth0", "type": "local"}], ["10.250.3.77 on eth0"]),
        ([{"dst": "10.250.4.0/24", "dev": "eth1"}], []),  # the next lab's range
        ([{"dst": "fd00::/64", "dev": "eth0"}], []),
    ],
)
def test_range_conflicts(routes: list[dict], conflicts: list[str]) -> None:
    assert lab.range_conflicts(3, routes) == conflicts


def test_state_round_trips() -> None:
    spec = lab.make_lab(12, DIR, names=("a", "b"), nat=("b",), keys=False)
    spec = spec.with_host(lab.LabHost("a", 0, 12, sshd=Proc(123, 456)))
    assert lab.lab_from_json(lab.lab_to_json(spec)) == spec


def test_state_of_unknown_version_is_refused() -> None:
    with pytest.raises(LabError, match="version"):
        lab.lab_from_json('{"version": 99}')


@pytest.mark.parametrize(
    ("system", "euid", "missing", "expected"),
    [
        ("Linux", 0, [], None),
        ("Darwin", 0, [], "needs Linux"),
        ("Linux", 1000, [], "needs root"),
        ("Linux", 0, ["wireguard-go"], "missing packages: wireguard-go"),
    ],
)
def test_system_problem(system: str, euid: int, missing: list[str], expected: str | None) -> None:
    problem = lab.system_problem(system, euid, missing)
    if expected is None:
        assert problem is None
    else:
        assert problem is not None and expected in problem
    if missing:
        assert problem is not None
        assert (
            "apt-get install --no-install-recommends wireguard-tools wireguard-go openssh-server iproute2 "
            "iputils-ping" in problem
        )


def test_parse_stat_start_survives_odd_process_names() -> None:
    stat = "4242 (a) b (c) S 1 4242 4242 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 98765 1 2 3"
    assert lab.parse_stat_start(stat) == ("S", 98765)


def test_ssh_argv_pins_host_keys() -> None:
    spec = lab.make_lab(0, DIR)
    argv = lab.ssh_argv(spec, "gcp", "true")
    assert argv[0] == "ssh" and argv[-2:] == ["root@10.250.0.13", "true"]
    assert "StrictHostKeyChecking=yes" in argv and f"UserKnownHostsFile={DIR / 'known_hosts'}" in argv
    assert str(DIR / "id_ed25519") in argv


# ----------------------------------------------------------------------------- CLI error paths


runner = CliRunner()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["up", "--id", "99"], "Error: lab id must be 0..50, not 99"),
        (["up", "--nodes", "3", "--names", "a,b"], "Error: --nodes 3 but --names lists 2 names"),
        (["up", "--nat", "mars"], "Error: --nat mars: no such host (hosts: aws, azure, gcp, aliyun)"),
    ],
)
def test_cli_errors_are_one_line(args: list[str], message: str) -> None:
    result = runner.invoke(cli_lab.app, args)
    assert result.exit_code == 1
    assert result.output.strip() == message
    assert "Traceback" not in result.output


def test_cli_status_without_a_lab(tmp_path: Path) -> None:
    result = runner.invoke(cli_lab.app, ["status", "--dir", str(tmp_path)])
    assert result.exit_code == 1
    assert result.output.startswith(f"Error: no lab in {tmp_path}")


def test_cli_down_without_a_lab_is_a_no_op(tmp_path: Path) -> None:
    result = runner.invoke(cli_lab.app, ["down", "--dir", str(tmp_path)])
    assert result.exit_code == 0
    assert "nothing to do" in result.output


def test_cli_reads_the_lab_id_from_the_environment() -> None:
    result = runner.invoke(cli_lab.app, ["up"], env={"WGMESH_LAB_ID": "77"})
    assert result.exit_code == 1
    assert result.output.strip() == "Error: lab id must be 0..50, not 77"


def test_cli_uses_the_current_folder_inside_a_lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert cli_lab._lab_dir(None) == Path("lab")
    lab.state_path(tmp_path).parent.mkdir()
    lab.state_path(tmp_path).write_text(lab.lab_to_json(lab.make_lab(3, tmp_path)))
    assert cli_lab._lab_dir(None) == Path(".")
    assert cli_lab._lab_dir(Path("x")) == Path("x")


def test_dns_endpoints_are_names_the_hosts_resolve(tmp_path: Path) -> None:
    spec = lab.make_lab(7, tmp_path, dns=("azure",))
    azure = spec.host("azure")
    assert azure.endpoint == "azure.wgmlab7.test:51820"
    assert spec.host("aws").endpoint == "10.250.7.11:51820"
    hosts = lab.render_hosts(spec)
    assert f"{azure.ip}\tazure.wgmlab7.test" in hosts.splitlines()
    assert lab.lab_from_json(lab.lab_to_json(spec)).host("azure").dns is True
    with pytest.raises(LabError, match="--dns nope: no such host"):
        lab.make_lab(7, tmp_path, dns=("nope",))
