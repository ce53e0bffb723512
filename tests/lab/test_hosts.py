"""The pure model of `wgmesh lab` (wgmesh/lab/hosts.py): names, addresses, options, the state file."""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import re
from pathlib import Path

import pytest

from wgmesh.lab import hosts
from wgmesh.lab.hosts import LabError, Proc

DIR = Path("/srv/meshlab")


# ----------------------------------------------------------------------------- make_lab


def test_four_nodes_are_the_classic_clouds_with_aliyun_behind_nat() -> None:
    spec = hosts.make_lab(0, DIR)
    assert spec.names == ("aws", "azure", "gcp", "aliyun")
    assert [h.nat for h in spec.hosts] == [None, None, None, "cone"]
    assert [h.router for h in spec.hosts] == [False, False, False, True]
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
    spec = hosts.make_lab(3, DIR, **kwargs)
    assert spec.names == names
    assert tuple(h.name for h in spec.hosts if h.nat) == nat


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"lab_id": -1}, "lab id must be 0..50"),
        ({"lab_id": 51}, "lab id must be 0..50"),
        ({"nodes": 0}, "--nodes must be 1..64"),
        ({"nodes": 65}, "--nodes must be 1..64"),
        ({"nodes": 3, "names": ("a", "b")}, "--nodes 3 but --names lists 2"),
        ({"names": ("a", "a", "b")}, "host names repeated: a"),
        ({"names": ("ok", "bad/name")}, "bad host name 'bad/name'"),
        ({"names": ("-x",)}, "bad host name '-x'"),
        ({"names": ("x" * 64,)}, "bad host name"),
        ({"names": tuple(f"h{i}" for i in range(65))}, "a lab has 1..64 hosts"),
        ({"nat": ("mars",)}, "--nat mars: no such host"),
    ],
)
def test_bad_options_are_refused(kwargs: dict, message: str) -> None:
    args = {"lab_id": 0, "directory": DIR} | kwargs
    with pytest.raises(LabError, match=re.escape(message)):
        hosts.make_lab(**args)


def test_addressing_of_one_host() -> None:
    host = hosts.make_lab(7, DIR, nodes=16).host("n3")
    assert host.netns == "wgmlab7-n3"
    assert host.veth == "wgl7v2"
    assert host.ip == ipaddress.IPv4Address("10.250.7.13")
    assert host.address == ipaddress.IPv4Address("10.0.0.3")
    assert host.subnet == ipaddress.IPv4Network("192.168.30.0/24")
    assert str(host.subnet_interface) == "192.168.30.1/24"
    assert host.machine_netns == "wgmlab7m-n3"
    assert host.machine_ip == ipaddress.IPv4Address("192.168.30.10")
    assert str(host.machine_interface) == "192.168.30.10/24"


def test_the_four_clouds_keep_192_168_10_to_40() -> None:
    spec = hosts.make_lab(0, DIR)
    assert [str(h.subnet) for h in spec.hosts] == [f"192.168.{k}0.0/24" for k in (1, 2, 3, 4)]
    assert [str(h.machine_ip) for h in spec.hosts] == [f"192.168.{k}0.10" for k in (1, 2, 3, 4)]


@pytest.mark.parametrize(
    ("number", "subnet"),
    [(1, "192.168.10.0/24"), (25, "192.168.250.0/24"), (26, "10.200.26.0/24"), (64, "10.200.64.0/24")],
)
def test_subnet_numbering_does_not_run_out(number: int, subnet: str) -> None:
    host = hosts.make_lab(0, DIR, nodes=64).host(f"n{number}")
    assert str(host.subnet) == subnet
    assert host.subnet_interface.ip == host.subnet.network_address + 1
    assert host.machine_ip == host.subnet.network_address + 10


def test_sixty_four_hosts_have_routable_disjoint_subnets() -> None:
    spec = hosts.make_lab(0, DIR, nodes=64)
    nets = [h.subnet for h in spec.hosts]
    assert all(not a.overlaps(b) for i, a in enumerate(nets) for b in nets[i + 1 :])
    for net in nets:
        assert net.is_private
        assert not net.overlaps(hosts.MESH_NETWORK)
        assert not any(net.overlaps(hosts.underlay_network(i)) for i in range(hosts.MAX_ID + 1))


@pytest.mark.parametrize("names", [("x", "x-m", "xm", "m-x"), ("a.b", "a", "b"), ("wgmlab1m-a", "a")])
def test_no_host_name_makes_another_hosts_or_machines_namespace(names: tuple[str, ...]) -> None:
    spec = hosts.make_lab(1, DIR, names=names)
    namespaces = [h.netns for h in spec.hosts] + [h.machine_netns for h in spec.hosts]
    assert len(set(namespaces)) == len(namespaces)
    assert all(h.netns.startswith(hosts.netns_prefix(1)) for h in spec.hosts)
    assert all(h.machine_netns.startswith(hosts.machine_prefix(1)) for h in spec.hosts)
    assert not any(h.machine_netns.startswith(hosts.netns_prefix(1)) for h in spec.hosts)


@pytest.mark.parametrize("lab_id", [0, 9, 10, 50])
def test_every_address_and_name_is_distinct_and_fits(lab_id: int) -> None:
    spec = hosts.make_lab(lab_id, DIR, nodes=hosts.MAX_NODES)
    for attr in ("netns", "veth", "ip", "address", "subnet", "machine_netns", "machine_ip"):
        values = [getattr(h, attr) for h in spec.hosts]
        assert len(set(values)) == len(values), attr
    assert all(len(h.veth) <= 15 for h in spec.hosts)
    assert len(spec.bridge) <= 15
    assert all(h.ip in spec.network and h.ip != spec.gateway.ip for h in spec.hosts)
    assert all(h.ip != spec.network.broadcast_address for h in spec.hosts)
    assert spec.gateway.network == spec.network


def test_labs_with_different_ids_share_no_name_or_range() -> None:
    a, b = hosts.make_lab(1, DIR, nodes=4), hosts.make_lab(10, DIR, nodes=4)
    assert a.bridge != b.bridge and not a.network.overlaps(b.network)
    assert not {h.netns for h in a.hosts} & {h.netns for h in b.hosts}
    assert not {h.veth for h in a.hosts} & {h.veth for h in b.hosts}
    # namespace prefixes are not prefixes of each other (lab 1 must not take lab 10's namespaces)
    assert not b.hosts[0].netns.startswith(hosts.netns_prefix(1))
    assert not b.hosts[0].machine_netns.startswith((hosts.netns_prefix(1), hosts.machine_prefix(1)))
    assert not a.hosts[0].machine_netns.startswith(hosts.netns_prefix(1))


def test_parse_names() -> None:
    assert hosts.parse_names("a, b,,c ") == ("a", "b", "c")


# ----------------------------------------------------------------------------- cloud-like or root-login


def test_a_lab_is_cloud_like_unless_asked_for_root_login() -> None:
    cloud = hosts.make_lab(12, DIR)
    assert (cloud.root_login, cloud.mode, cloud.ssh_user) == (False, "cloud", "wgmlab12")
    assert cloud.home == Path("/run/wgmesh-lab/12/home")
    root = hosts.make_lab(12, DIR, root_login=True)
    assert (root.root_login, root.mode, root.ssh_user) == (True, "root-login", "root")
    # nothing is recorded as made before `up` makes it
    assert cloud.user is None and cloud.sudoers is None


def test_each_lab_id_has_its_own_user_and_sudoers_file() -> None:
    users = {hosts.lab_user(i) for i in range(hosts.MAX_ID + 1)}
    assert len(users) == hosts.MAX_ID + 1
    assert all(re.fullmatch(r"[a-z][a-z0-9]{0,31}", u) for u in users)  # a portable login name
    assert hosts.sudoers_path(7) == Path("/etc/sudoers.d/wgmesh-lab7")
    # sudo skips files in sudoers.d whose name has a '.' or ends in '~'
    assert all("." not in hosts.sudoers_path(i).name for i in range(hosts.MAX_ID + 1))
    assert hosts.user_comment(7) == "wgmesh lab 7"


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
    assert hosts.range_conflicts(3, routes) == conflicts


def test_state_round_trips() -> None:
    spec = hosts.make_lab(12, DIR, names=("a", "b"), nat=("b",), keys=False, root_login=True)
    spec = spec.with_host(hosts.LabHost("a", 0, 12, sshd=Proc(123, 456)))
    assert hosts.lab_from_json(hosts.lab_to_json(spec)) == spec


def test_state_records_mode_user_and_sudoers() -> None:
    spec = hosts.make_lab(12, DIR, nodes=2)
    made = dataclasses.replace(spec, user="wgmlab12", sudoers=Path("/etc/sudoers.d/wgmesh-lab12"))
    data = json.loads(hosts.lab_to_json(made))
    assert (data["version"], data["mode"], data["user"], data["sudoers"]) == (
        3,
        "cloud",
        "wgmlab12",
        "/etc/sudoers.d/wgmesh-lab12",
    )
    assert hosts.lab_from_json(hosts.lab_to_json(made)) == made
    assert json.loads(hosts.lab_to_json(spec))["user"] is None


def test_state_of_version_1_is_a_root_login_lab() -> None:
    text = json.dumps(
        {"version": 1, "id": 3, "dir": "/x", "keys": True, "hosts": [{"name": "a", "nat": False, "sshd": None}]}
    )
    old = hosts.lab_from_json(text)
    assert (old.root_login, old.user, old.sudoers, old.names) == (True, None, None, ("a",))


@pytest.mark.parametrize(
    ("user", "sudoers"),
    [("root", None), ("wgmlab13", None), (None, "/etc/sudoers"), (None, "/etc/sudoers.d/wgmesh-lab13")],
)
def test_state_naming_another_user_or_file_is_refused(user: str | None, sudoers: str | None) -> None:
    """`down` deletes what the state records: a state file can never make it delete anything else."""
    data = json.loads(hosts.lab_to_json(hosts.make_lab(12, DIR, nodes=1)))
    with pytest.raises(LabError, match="not lab 12's"):
        hosts.lab_from_json(json.dumps(data | {"user": user, "sudoers": sudoers}))


@pytest.mark.parametrize(
    "text", ['{"version": 99}', '{"version": 2, "id": 1, "dir": "/x", "keys": true, "mode": "kind", "hosts": []}']
)
def test_state_of_unknown_version_or_mode_is_refused(text: str) -> None:
    with pytest.raises(LabError, match=r"version|mode"):
        hosts.lab_from_json(text)


def test_dns_endpoints_are_names() -> None:
    spec = hosts.make_lab(7, DIR, dns=("azure",))
    assert spec.host("azure").endpoint == "azure.wgmlab7.test:51820"
    assert spec.host("aws").endpoint == "10.250.7.11:51820"
    assert hosts.lab_from_json(hosts.lab_to_json(spec)).host("azure").dns is True
    with pytest.raises(LabError, match="--dns nope: no such host"):
        hosts.make_lab(7, DIR, dns=("nope",))


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
    problem = hosts.system_problem(system, euid, missing)
    if expected is None:
        assert problem is None
    else:
        assert problem is not None and expected in problem
    if missing:
        assert problem is not None
        assert (
            "apt-get install --no-install-recommends wireguard-tools wireguard-go openssh-server iproute2 "
            "iputils-ping sudo iptables" in problem
        )


# ----------------------------------------------------------------------------- NAT routers, moves


@pytest.mark.parametrize(
    ("options", "kinds"),
    [
        ((), {}),
        (("gcp",), {"gcp": "cone"}),
        (("gcp:cone", "aliyun:symmetric"), {"gcp": "cone", "aliyun": "symmetric"}),
        (("gcp", "gcp:cone"), {"gcp": "cone"}),  # the same twice is fine
    ],
)
def test_nat_options(options: tuple[str, ...], kinds: dict[str, str]) -> None:
    assert hosts.parse_nat(options) == kinds
    spec = hosts.make_lab(3, DIR, nat=options)
    assert {h.name: h.nat for h in spec.hosts if h.nat} == kinds
    assert all(h.router == (h.name in kinds) for h in spec.hosts)
    assert all((h.endpoint is None) == (h.name in kinds) for h in spec.hosts)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (("gcp:full",), "--nat gcp:full: unknown NAT kind 'full' (use NAME, NAME:cone or NAME:symmetric)"),
        (("gcp:",), "--nat gcp:: unknown NAT kind ''"),
        (("gcp:cone", "gcp:symmetric"), "--nat gcp: given as both cone and symmetric"),
        (("mars:symmetric",), "--nat mars: no such host (hosts: aws, azure, gcp, aliyun)"),
    ],
)
def test_bad_nat_options_are_refused(options: tuple[str, ...], message: str) -> None:
    with pytest.raises(LabError, match=re.escape(message)):
        hosts.make_lab(0, DIR, nat=options)


def test_a_host_behind_a_router_keeps_its_bridge_address_on_the_router() -> None:
    lab = hosts.make_lab(7, DIR, nat=("gcp:symmetric",))
    gcp, aws = lab.host("gcp"), lab.host("aws")
    assert gcp.router_netns == "wgmlab7r-gcp" and hosts.router_prefix(7) == "wgmlab7r-"
    assert gcp.ip == ipaddress.IPv4Address("10.250.7.13")  # the router's: SSH and the others reach it there
    assert str(gcp.local_interface) == "172.31.2.2/24" and str(gcp.router_lan) == "172.31.2.1/24"
    assert str(aws.local_interface) == "10.250.7.11/24"


def test_no_prefix_of_a_lab_is_a_prefix_of_another_labs() -> None:
    prefixes = [
        f(i) for i in range(hosts.MAX_ID + 1) for f in (hosts.netns_prefix, hosts.machine_prefix, hosts.router_prefix)
    ]
    assert not [(a, b) for a in prefixes for b in prefixes if a != b and b.startswith(a)]


def test_move_addresses() -> None:
    lab = hosts.make_lab(7, DIR)
    aws = lab.host("aws")
    assert hosts.move_address(lab, aws) == ipaddress.IPv4Address("10.250.7.128")
    moved = dataclasses.replace(aws, moved=ipaddress.IPv4Address("10.250.7.128"))
    assert moved.ip == ipaddress.IPv4Address("10.250.7.128") and moved.home_ip == aws.ip
    lab = lab.with_host(moved)
    assert hosts.move_address(lab, moved) == ipaddress.IPv4Address("10.250.7.129")  # never where it is
    assert hosts.move_address(lab, lab.host("azure")) == ipaddress.IPv4Address("10.250.7.129")  # taken
    assert hosts.move_address(lab, moved, "10.250.7.11") == aws.ip  # back home
    assert lab.host("aws").endpoint == "10.250.7.128:51820"


@pytest.mark.parametrize(
    ("to", "message"),
    [
        ("10.250.8.20", "--to 10.250.8.20: not a host address of the lab's 10.250.7.0/24"),
        ("10.250.7.255", "not a host address"),
        ("nowhere", "--to nowhere: not an IPv4 address"),
        ("10.250.7.1", "--to 10.250.7.1: taken (the lab's gateway or another host)"),
        ("10.250.7.12", "--to 10.250.7.12: taken"),
        ("10.250.7.11", "aws is at 10.250.7.11 already"),
    ],
)
def test_bad_move_addresses_are_refused(to: str, message: str) -> None:
    lab = hosts.make_lab(7, DIR)
    with pytest.raises(LabError, match=re.escape(message)):
        hosts.move_address(lab, lab.host("aws"), to)


def test_state_records_nat_kinds_and_moves() -> None:
    spec = hosts.make_lab(12, DIR, nat=("gcp", "aliyun:symmetric"))
    spec = spec.with_host(dataclasses.replace(spec.host("gcp"), moved=ipaddress.IPv4Address("10.250.12.200")))
    data = json.loads(hosts.lab_to_json(spec))
    assert [(h["nat"], h["moved"]) for h in data["hosts"]] == [
        (None, None),
        (None, None),
        ("cone", "10.250.12.200"),
        ("symmetric", None),
    ]
    assert hosts.lab_from_json(hosts.lab_to_json(spec)) == spec
    with pytest.raises(LabError, match="NAT kind 'full' not understood"):
        hosts.lab_from_json(json.dumps(data | {"hosts": [{"name": "a", "nat": "full", "sshd": None}]}))


def test_state_of_version_2_keeps_its_nat_hosts_on_the_bridge() -> None:
    """A lab made before the routers: its hosts without an endpoint have no router to find or delete."""
    hosts_ = [{"name": "a", "nat": False, "dns": False, "sshd": None}, {"name": "b", "nat": True, "sshd": None}]
    text = json.dumps({"version": 2, "id": 3, "dir": "/x", "keys": True, "mode": "cloud", "hosts": hosts_})
    old = hosts.lab_from_json(text)
    assert [(h.nat, h.router, h.endpoint) for h in old.hosts] == [
        (None, False, "10.250.3.11:51820"),
        (hosts.BRIDGE_NAT, False, None),
    ]
    assert str(old.host("b").local_interface) == "10.250.3.12/24"
