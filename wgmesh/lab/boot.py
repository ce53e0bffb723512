"""What `wgmesh lab reboot NAME` does to a host, as commands (pure; reboot.py runs them).

A reboot of a lab host: every process in its network namespace but the sshd listener stops (wireguard-go,
what hooks left running, SSH sessions), its WireGuard interfaces go, /run/wireguard is emptied, forwarding is
off (the kernel's default), and the filter FORWARD and nat POSTROUTING chains, the only ones the lab's hosts
use, are empty with FORWARD's policy ACCEPT (a fresh kernel). Then what boot runs: the `net.*` settings of the
host's own /etc/sysctl.d (other keys are not per namespace: the lab never writes them to the machine), and
`wg-quick up IF` for each /etc/wireguard/IF.conf (what an enabled wg-quick@IF does; the lab has no systemd).
The host's addresses, its subnet bridge, the machine behind it and sshd stay, as an image's network setup does.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

IFNAME_RE = re.compile(r"[a-zA-Z0-9_=+.-]{1,15}")
SYSCTL_NAMESPACED = "net."
FORWARDING = ("net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding")


@dataclass(frozen=True)
class Step:
    """One command of a reboot, run on the host: `phase` is "shutdown" or "boot"."""

    phase: str
    argv: tuple[str, ...]
    returncode: int
    output: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    @property
    def command(self) -> str:
        return shlex.join(self.argv)

    @property
    def last_line(self) -> str:
        """The last line of its output, printable (a hook's output is the host's, not ours)."""
        lines = [ln.strip() for ln in self.output.splitlines() if ln.strip()]
        text = lines[-1] if lines else f"exit {self.returncode}"
        return "".join(c if c.isprintable() else "?" for c in text)[:300]


@dataclass(frozen=True)
class Reboot:
    host: str
    stopped: tuple[str, ...]  # "COMM PID" of each process stopped
    interfaces: tuple[str, ...]  # the WireGuard interfaces it had
    steps: tuple[Step, ...]

    @property
    def failed(self) -> tuple[Step, ...]:
        return tuple(s for s in self.steps if not s.ok)


def parse_sysctl_conf(text: str) -> list[tuple[str, str]]:
    """`key = value` lines of a sysctl.d file (sysctl.d(5): `#`/`;` comments, `/` or `.` separators, a
    leading `-` to ignore failures), keeping only the `net.` keys that a network namespace has of its own."""
    out = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        key, sep, value = line.partition("=")
        if not sep:
            continue
        key = key.strip().lstrip("-").strip().replace("/", ".")
        if key.startswith(SYSCTL_NAMESPACED) and re.fullmatch(r"[A-Za-z0-9_.*-]+", key) and "*" not in key:
            out.append((key, value.strip()))
    return out


def sysctl_settings(files: Mapping[str, str]) -> list[tuple[str, str]]:
    """The settings of a sysctl.d folder (file name -> text), in the order boot applies them (files by name,
    `*.conf` only); a key set twice takes the later value, at the place of its first setting."""
    merged: dict[str, str] = {}
    for name in sorted(files):
        if name.endswith(".conf"):
            for key, value in parse_sysctl_conf(files[name]):
                merged[key] = value
    return list(merged.items())


def interfaces_to_start(file_names: Iterable[str]) -> list[str]:
    """The interfaces boot brings up: IF for each IF.conf in /etc/wireguard whose IF is an interface name."""
    out = []
    for name in sorted(file_names):
        stem, dot, ext = name.rpartition(".")
        if dot and ext == "conf" and IFNAME_RE.fullmatch(stem):
            out.append(stem)
    return out


def wireguard_links(links: Sequence[Mapping[str, object]], sockets: Iterable[str]) -> list[str]:
    """Names of the WireGuard interfaces in `ip -j -d link show` output: kernel ones (kind wireguard) and
    wireguard-go's (a tun with a control socket /run/wireguard/NAME.sock; `sockets` are those NAMEs)."""
    socket_names = set(sockets)
    out = []
    for link in links:
        name = str(link.get("ifname", ""))
        info = link.get("linkinfo")
        kind = info.get("info_kind", "") if isinstance(info, Mapping) else ""
        if name and (kind == "wireguard" or (kind == "tun" and name in socket_names)):
            out.append(name)
    return out


def shutdown_commands(links: Sequence[str], *, ipv6: bool, ip6tables: bool) -> list[list[str]]:
    """What a reboot undoes, run in the host's network namespace once its processes are stopped: the
    WireGuard interfaces (routes go with them), forwarding, and what hooks and masquerade added to netfilter."""
    cmds = [["ip", "link", "del", "dev", name] for name in links]
    cmds.append(["sysctl", "-q", "-w", f"{FORWARDING[0]}=0"])
    if ipv6:
        cmds.append(["sysctl", "-q", "-w", f"{FORWARDING[1]}=0"])
    for tool in ("iptables", *(("ip6tables",) if ip6tables else ())):
        cmds += [
            [tool, "-w", "5", "-F", "FORWARD"],
            [tool, "-w", "5", "-P", "FORWARD", "ACCEPT"],
            [tool, "-w", "5", "-t", "nat", "-F", "POSTROUTING"],
        ]
    return cmds


def boot_commands(settings: Sequence[tuple[str, str]], interfaces: Sequence[str]) -> list[list[str]]:
    """What boot runs, in the host's namespaces (its /etc/wireguard): sysctl settings, then wg-quick."""
    cmds = [["sysctl", "-q", "-w", f"{key}={value}"] for key, value in settings]
    cmds += [["wg-quick", "up", name] for name in interfaces]
    return cmds
