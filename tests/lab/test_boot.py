"""What `wgmesh lab reboot` runs on a host (wgmesh/lab/boot.py): pure command lists and parsers."""

from __future__ import annotations

import json

import pytest

from wgmesh.lab import boot

# `ip -j -d link show` in a host with wireguard-go running wg0 (trimmed to the fields that matter)
LINKS = json.loads(
    """[
 {"ifindex": 1, "ifname": "lo", "flags": ["LOOPBACK", "UP"], "link_type": "loopback"},
 {"ifindex": 2, "ifname": "eth0", "flags": ["UP"], "linkinfo": {"info_kind": "veth"}},
 {"ifindex": 3, "ifname": "sub0", "flags": ["UP"], "linkinfo": {"info_kind": "bridge"}},
 {"ifindex": 4, "ifname": "sub0m", "flags": ["UP"], "linkinfo": {"info_kind": "veth", "info_slave_kind": "bridge"}},
 {"ifindex": 5, "ifname": "wg0", "flags": ["POINTOPOINT", "UP"], "linkinfo": {"info_kind": "tun"}},
 {"ifindex": 6, "ifname": "tap9", "flags": ["UP"], "linkinfo": {"info_kind": "tun"}},
 {"ifindex": 7, "ifname": "wg1", "flags": ["UP"], "linkinfo": {"info_kind": "wireguard"}}
]"""
)


def test_wireguard_links_are_kernel_ones_and_tuns_with_a_control_socket() -> None:
    assert boot.wireguard_links(LINKS, ["wg0"]) == ["wg0", "wg1"]
    assert boot.wireguard_links(LINKS, []) == ["wg1"]  # another tun is not WireGuard's
    assert boot.wireguard_links(LINKS, ["sub0"]) == ["wg1"]  # a socket name never makes a bridge one
    assert boot.wireguard_links([], ["wg0"]) == []


def test_shutdown_deletes_interfaces_turns_forwarding_off_and_flushes_what_hooks_added() -> None:
    assert boot.shutdown_commands(["wg0"], ipv6=True, ip6tables=True) == [
        ["ip", "link", "del", "dev", "wg0"],
        ["sysctl", "-q", "-w", "net.ipv4.ip_forward=0"],
        ["sysctl", "-q", "-w", "net.ipv6.conf.all.forwarding=0"],
        ["iptables", "-w", "5", "-F", "FORWARD"],
        ["iptables", "-w", "5", "-P", "FORWARD", "ACCEPT"],
        ["iptables", "-w", "5", "-t", "nat", "-F", "POSTROUTING"],
        ["ip6tables", "-w", "5", "-F", "FORWARD"],
        ["ip6tables", "-w", "5", "-P", "FORWARD", "ACCEPT"],
        ["ip6tables", "-w", "5", "-t", "nat", "-F", "POSTROUTING"],
    ]


def test_shutdown_without_ipv6_or_ip6tables() -> None:
    cmds = boot.shutdown_commands([], ipv6=False, ip6tables=False)
    assert cmds[0] == ["sysctl", "-q", "-w", "net.ipv4.ip_forward=0"]
    assert not any("ipv6" in " ".join(c) or c[0] == "ip6tables" for c in cmds)
    assert not any(c[:2] == ["ip", "link"] for c in cmds)


@pytest.mark.parametrize(
    ("text", "settings"),
    [
        ("net.ipv4.ip_forward = 1\n", [("net.ipv4.ip_forward", "1")]),
        ("net.ipv4.ip_forward=1", [("net.ipv4.ip_forward", "1")]),
        ("# a comment\n; another\n\n  net/ipv6/conf/all/forwarding = 1  \n", [("net.ipv6.conf.all.forwarding", "1")]),
        ("-net.ipv4.conf.all.rp_filter = 2\n", [("net.ipv4.conf.all.rp_filter", "2")]),
        ("net.ipv4.ip_local_port_range = 1024 65000\n", [("net.ipv4.ip_local_port_range", "1024 65000")]),
        # not a network namespace's own: never applied to the machine from a lab host
        ("kernel.panic = 10\nvm.swappiness=1\nfs.file-max = 5\n", []),
        ("net.ipv4.conf.*.rp_filter = 0\n", []),  # globs: systemd-sysctl's, not sysctl -w's
        ("net.ipv4.ip_forward\n= 1 \nnonsense\n", []),
        ("net.ipv4.ip_forward = 1; rm -rf /\n", [("net.ipv4.ip_forward", "1; rm -rf /")]),  # an argv, no shell
    ],
)
def test_parse_sysctl_conf(text: str, settings: list[tuple[str, str]]) -> None:
    assert boot.parse_sysctl_conf(text) == settings


def test_sysctl_settings_in_boot_order_later_files_win() -> None:
    files = {
        "99-z.conf": "net.ipv4.ip_forward = 1\n",
        "10-a.conf": "net.ipv4.ip_forward = 0\nnet.ipv6.conf.all.forwarding = 1\n",
        "50-x.conf.disabled": "net.ipv4.conf.all.rp_filter = 2\n",
        "README": "net.ipv4.conf.all.rp_filter = 2\n",
    }
    assert boot.sysctl_settings(files) == [("net.ipv4.ip_forward", "1"), ("net.ipv6.conf.all.forwarding", "1")]
    assert boot.sysctl_settings({}) == []


def test_interfaces_to_start_are_the_conf_files_with_interface_names() -> None:
    names = [
        "wg0.conf",
        "wg0.key",
        "wg0.conf.wgmesh-import",
        "mesh.conf",
        "x" * 16 + ".conf",
        "a b.conf",
        ".conf",
        "wg0.conf~",
        "privatekey",
    ]
    assert boot.interfaces_to_start(names) == ["mesh", "wg0"]


def test_boot_runs_sysctl_then_wg_quick() -> None:
    assert boot.boot_commands([("net.ipv4.ip_forward", "1")], ["wg0", "wg1"]) == [
        ["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"],
        ["wg-quick", "up", "wg0"],
        ["wg-quick", "up", "wg1"],
    ]
    assert boot.boot_commands([], []) == []


def test_a_steps_last_line_is_printable_and_short() -> None:
    step = boot.Step("boot", ("wg-quick", "up", "wg0"), 1, "[#] ip link add wg0\n\x1b[31mboom\x07\n\n")
    assert not step.ok
    assert step.command == "wg-quick up wg0"
    assert step.last_line == "?[31mboom?"
    assert boot.Step("boot", ("true",), 3, "").last_line == "exit 3"
    assert len(boot.Step("boot", ("x",), 1, "y" * 5000).last_line) == 300
    result = boot.Reboot("aws", (), ("wg0",), (step, boot.Step("boot", ("true",), 0, "")))
    assert result.failed == (step,)
