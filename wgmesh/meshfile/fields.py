"""One validator per kind of field: keys, integers, text, booleans, CIDRs, addresses, MTU, keys, endpoints,
subnets, commands, and the ssh fields. Each reports what is wrong at the value's `mesh.yaml:LINE:COL` and
returns the parsed value, or None (or `MISSING`) when it was absent or wrong."""

from __future__ import annotations

import base64
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wgmesh.core.model import (
    USER_RE,
    Endpoint,
    IPAddress,
    IPNetwork,
    SshTarget,
    Subnet,
    ip_address,
    ip_network,
    parse_endpoint,
    parse_host,
    parse_ssh_target,
    validate_key,
)
from wgmesh.core.proxycommand import parse_proxy_command
from wgmesh.meshfile import paths
from wgmesh.meshfile.diagnostics import KEYLIKE_RE, Pos, Report
from wgmesh.meshfile.schema import SUBNET_KEYS, show, suggest
from wgmesh.meshfile.secrets import is_secret_name
from wgmesh.meshfile.yamldoc import item_pos, key_pos, val_pos

MISSING = object()


def absent(m: dict, k: str) -> bool:
    return k not in m or m[k] is None


def sub_path(path: str, k: str) -> str:
    return f"{path}.{k}" if path else k


def _almost_key(v: object) -> bool:
    """44 base64 characters ending in "=" that decode to 32 bytes, but not in canonical form (stray bits in the
    last character): it looks like a key, and the message must say what is wrong with it."""
    if not isinstance(v, str) or len(v) != 44 or not v.endswith("=") or v.endswith("=="):
        return False
    try:
        return len(base64.b64decode(v.encode("ascii"), validate=True)) == 32
    except (ValueError, UnicodeEncodeError):
        return False


@dataclass
class SshFields:
    """The ssh fields of one mapping (mesh-wide `ssh:` or `nodes.X.ssh`), as far as they parsed."""

    host: str | None = None
    port: int | None = None
    user: str | None = None
    known_hosts: Path | None = None
    identity_file: Path | None = None
    proxy_jump: SshTarget | None = None
    proxy_command: str | None = None
    sudo: bool | None = None


class Fields:
    def __init__(self, report: Report, directory: Path) -> None:
        self.report = report
        self.directory = directory
        self.suggested: set[tuple[int, str]] = set()  # (id(mapping), key) already hinted as a misspelling

    # ---- generic

    def keys(self, m: dict, allowed: tuple[str, ...], path: str, pos: Pos) -> None:
        """Report every key of `m` that is not allowed, with a "did you mean" when one is close."""
        for k in m:
            kpos = key_pos(m, k, pos)
            if not isinstance(k, str):
                expected = ", ".join(allowed)
                self.report.error(kpos, path, f"key {show(k)} must be a name (text); expected one of {expected}")
                continue
            if k in allowed or is_secret_name(k):
                continue
            sub = sub_path(path, k)
            hint = None if self.report.full else suggest(k, allowed)
            if hint:
                self.suggested.add((id(m), hint))
                self.report.error(kpos, sub, f'unknown key "{k[:60]}": did you mean "{hint}"?')
            else:
                self.report.error(kpos, sub, f'unknown key "{k[:60]}": expected one of {", ".join(allowed)}')

    def required(self, m: dict, k: str, path: str, pos: Pos, example: str) -> Any:
        sub = sub_path(path, k)
        if k not in m:
            if (id(m), k) not in self.suggested:
                self.report.error(pos, sub, f'missing required field "{k}": add e.g. `{k}: {example}`')
            return MISSING
        if m[k] is None:  # (an empty value has no place of its own: the key's line, not the next token's)
            self.report.error(key_pos(m, k, pos), sub, f"no value: set it, e.g. `{k}: {example}`")
            return MISSING
        return m[k]

    def integer(self, m: dict, k: str, path: str, pos: Pos, lo: int, hi: int) -> int | None:
        """An optional integer field; None when absent, null or invalid (invalid is reported)."""
        if absent(m, k):
            return None
        v = m[k]
        vpos = val_pos(m, k, pos)
        if isinstance(v, bool) or not isinstance(v, int):
            self.report.error(vpos, sub_path(path, k), f"must be a whole number from {lo} to {hi} (got {show(v)})")
            return None
        if not lo <= v <= hi:
            self.report.error(vpos, sub_path(path, k), f"{int(v)} is out of range: use a number from {lo} to {hi}")
            return None
        return int(v)

    def string(self, m: dict, k: str, path: str, pos: Pos) -> str | None:
        if absent(m, k):
            return None
        v = m[k]
        if not isinstance(v, str):
            self.report.error(val_pos(m, k, pos), sub_path(path, k), f"must be text (got {show(v)}); quote it")
            return None
        return str(v)

    def boolean(self, m: dict, k: str, path: str, pos: Pos) -> bool | None:
        if absent(m, k):
            return None
        v = m[k]
        if not isinstance(v, bool):
            self.report.error(val_pos(m, k, pos), sub_path(path, k), "must be true or false")
            return None
        return bool(v)

    def mapping(self, m: dict, k: str, path: str, pos: Pos) -> dict | None:
        if absent(m, k):
            return None
        v = m[k]
        if not isinstance(v, dict):
            self.report.error(val_pos(m, k, pos), sub_path(path, k), "must be a mapping of `key: value` lines")
            return None
        return v

    def parsed(self, m: dict, k: str, path: str, pos: Pos, parse: Any) -> Any:
        """An optional text field run through `parse`, whose ValueError is the message."""
        text = self.string(m, k, path, pos)
        if text is None:
            return None
        try:
            return parse(text)
        except ValueError as e:
            self.report.error(val_pos(m, k, pos), sub_path(path, k), str(e))
            return None

    def entries(self, m: dict, k: str, path: str, pos: Pos) -> list[tuple[Any, Pos, str]]:
        """A value that may be one item or a list of items: (item, position, path) for each."""
        value, vpos = m[k], val_pos(m, k, pos)
        if isinstance(value, list):
            return [(v, item_pos(value, i, vpos), f"{path}.{k}[{i}]") for i, v in enumerate(value)]
        return [(value, vpos, f"{path}.{k}")]

    # ---- network values

    def cidr(self, v: Any, pos: Pos, path: str, example: str) -> IPNetwork | None:
        if not isinstance(v, str):
            self.report.error(pos, path, f"must be a CIDR like {example} (got {show(v)})")
            return None
        text = str(v).strip()
        if "/" not in text:
            self.report.error(pos, path, f"missing prefix length: write a CIDR like {example}")
            return None
        try:
            return ip_network(text)
        except ValueError:
            pass
        try:
            loose = ipaddress.ip_network(text, strict=False)
        except ValueError:
            self.report.error(pos, path, f"{show(v)} is not a CIDR network: write e.g. {example}")
            return None
        self.report.error(pos, path, f"{text} has host bits set: write {loose}")
        return None

    def ip(self, v: Any, pos: Pos, path: str) -> IPAddress | None:
        """An IP address without prefix length or %zone."""
        if not isinstance(v, str):
            self.report.error(pos, path, f"must be an IP address like 10.0.0.1 (got {show(v)})")
            return None
        text = str(v).strip()
        if "/" in text:
            bare = text.split("/")[0]
            fix = f"write the address without a prefix length (the mesh network's is used): {bare}"
            self.report.error(pos, path, fix)
            return None
        try:
            addr = ip_address(text)
        except ValueError:
            self.report.error(pos, path, f"{show(v)} is not an IP address: write e.g. 10.0.0.1")
            return None
        if "%" in text:
            self.report.error(pos, path, "remove the %zone suffix: mesh addresses have no scope")
            return None
        return addr

    def address(self, v: Any, pos: Pos, path: str, networks: Sequence[IPNetwork]) -> IPAddress | None:
        """A node's mesh address: a host address inside one of `networks`."""
        addr = self.ip(v, pos, path)
        if addr is None or not networks:
            return addr  # with no networks, the network itself is wrong or missing, reported there
        net = next((n for n in networks if n.version == addr.version and addr in n), None)
        if net is None:
            same = [n for n in networks if n.version == addr.version]
            if not same:
                self.report.error(
                    pos,
                    path,
                    f"no IPv{addr.version} network in mesh.network: add one or use an address in "
                    + ", ".join(str(n) for n in networks),
                )
            else:
                self.report.error(
                    pos, path, f"{addr} is outside the mesh network {', '.join(map(str, same))}: use an address in it"
                )
            return None
        if net.version == 4 and net.prefixlen < 31 and addr in (net.network_address, net.broadcast_address):
            which = "network" if addr == net.network_address else "broadcast"
            self.report.error(pos, path, f"{addr} is the {which} address of {net}: use a host address")
            return None
        return addr

    def mtu(self, m: dict, path: str, pos: Pos, networks: Sequence[IPNetwork]) -> int | None:
        if absent(m, "mtu"):
            return None
        low = 1280 if any(n.version == 6 for n in networks) else 576
        v = m["mtu"]
        if isinstance(v, bool) or not isinstance(v, int) or not low <= v <= 9000:
            why = "IPv6 needs at least 1280" if low == 1280 else "IPv4 needs at least 576"
            self.report.error(
                val_pos(m, "mtu", pos),
                f"{path}.mtu",
                f"must be a whole number from {low} to 9000 ({why}; 1420 suits most links)",
            )
            return None
        return int(v)

    def public_key(self, m: dict, path: str, pos: Pos) -> tuple[str, Pos] | None:
        if absent(m, "public_key"):
            return None
        v = m["public_key"]
        vpos = val_pos(m, "public_key", pos)
        if isinstance(v, str) and validate_key(str(v)):
            return str(v), vpos
        hint = "; remove the spaces around it" if isinstance(v, str) and validate_key(v.strip()) else ""
        what = ('not a WireGuard public key (44 base64 characters ending in "=")' if not _almost_key(v) else
                "not a WireGuard public key: its last character before the '=' has bits a key cannot have (wg "
                "refuses it), so a character was mistyped")
        self.report.error(
            vpos,
            f"{path}.public_key",
            f"{what}: paste the output of `wg pubkey` on the node, or remove the line until it is enrolled{hint}",
        )
        return None

    def endpoint(self, m: dict, path: str, pos: Pos) -> Endpoint | None:
        return self.parsed(m, "endpoint", path, pos, parse_endpoint)

    def subnets(self, m: dict, path: str, pos: Pos) -> list[tuple[Subnet, Pos, str]]:
        if absent(m, "subnets"):
            return []
        value = m["subnets"]
        vpos = val_pos(m, "subnets", pos)
        if isinstance(value, str):
            self.report.error(vpos, f"{path}.subnets", f"must be a list: write `subnets: [{value[:60]}]`")
            return []
        if not isinstance(value, list):
            self.report.error(vpos, f"{path}.subnets", "must be a list of CIDRs, e.g. [192.168.10.0/24]")
            return []
        out = []
        for item, ipos, sub in self.entries(m, "subnets", path, pos):
            subnet = self.subnet(item, ipos, sub)
            if subnet is not None:
                out.append((subnet, ipos, sub))
        return out

    def subnet(self, item: Any, pos: Pos, path: str) -> Subnet | None:
        if not isinstance(item, dict):
            net = self.cidr(item, pos, path, "192.168.10.0/24")
            return None if net is None else Subnet(net)
        self.keys(item, SUBNET_KEYS, path, pos)
        prefix = self.required(item, "prefix", path, pos, "192.168.10.0/24")
        if prefix is MISSING:
            return None
        net = self.cidr(prefix, val_pos(item, "prefix", pos), f"{path}.prefix", "192.168.10.0/24")
        masquerade = self.boolean(item, "masquerade", path, pos)
        if absent(item, "probe"):
            return None if net is None else Subnet(net, None, masquerade)
        ppos = val_pos(item, "probe", pos)
        raw = item["probe"]
        probe = self._probe(raw)
        if probe is None:
            self.report.error(ppos, f"{path}.probe", "must be an IP address inside the prefix, e.g. 192.168.10.1")
            return None
        if net is not None and (probe.version != net.version or probe not in net):
            self.report.error(ppos, f"{path}.probe", f"{probe} is outside {net}: pick an address inside it")
            return None
        return None if net is None else Subnet(net, probe, masquerade)

    @staticmethod
    def _probe(raw: Any) -> IPAddress | None:
        if not isinstance(raw, str) or "%" in raw:
            return None
        try:
            return ipaddress.ip_address(raw.strip())
        except ValueError:
            return None

    def commands(self, m: dict, k: str, path: str, pos: Pos) -> tuple[str, ...]:
        if absent(m, k):
            return ()
        out = []
        for x, p, sub in self.entries(m, k, path, pos):
            if not isinstance(x, str):
                self.report.error(p, sub, f"must be a shell command as text (got {show(x)}); quote it")
            elif not x.strip():
                self.report.error(p, sub, "empty command: remove it")
            elif "\n" in x or "\r" in x:
                self.report.error(p, sub, "a command must be one line: split it into a list of commands")
            elif "#" in x:  # wg-quick cuts every config line at its first `#`, quoted or not
                self.report.error(p, sub, f"wg-quick drops everything from '#' on: it would run "
                                  f"{show(x.split('#', 1)[0].rstrip())}; put the command in a script on the node "
                                  "and call that")
            elif not x.replace("\t", " ").isprintable():
                self.report.error(p, sub, "a control character (NUL, an escape, ...) in the command: remove it")
            else:
                out.append(str(x))
        return tuple(out)

    def shared_keys(self, m: dict, path: str, pos: Pos) -> list[tuple[str, Pos, str]]:
        """`shared_keys: {PEER: keep}`: the pairs that keep the preshared key they have. (PEER, position, path)
        for each; whether PEER is a node is checked across nodes. The value is never a key: wgmesh never sees
        one, and a key pasted here is refused like one anywhere else."""
        value = self.mapping(m, "shared_keys", path, pos)
        if value is None:
            return []
        vpos = key_pos(m, "shared_keys", pos)
        out = []
        for peer in value:
            sub = f"{path}.shared_keys.{peer}"
            kpos, ppos = key_pos(value, peer, vpos), val_pos(value, peer, vpos)
            v = value[peer]
            if not isinstance(peer, str):
                self.report.error(kpos, f"{path}.shared_keys", f"{show(peer)} must be a node name (text)")
            elif isinstance(v, str) and KEYLIKE_RE.search(v):
                self.report.error(ppos, sub, "a preshared key in clear: remove it from the repo (and from git "
                                  "history) and rotate that key; write `keep`: the key stays on the nodes")
            elif v != "keep":
                self.report.error(ppos, sub, f"must be `keep` (got {show(v)}): the pair keeps the preshared key it "
                                  "has; wgmesh does not make preshared keys yet")
            else:
                out.append((peer, kpos, sub))
        return out

    # ---- ssh

    def ssh(self, m: dict, path: str, pos: Pos, out: SshFields) -> None:
        """The fields shared by `ssh:` and `nodes.X.ssh` (not `host`)."""
        out.port = self.integer(m, "port", path, pos, 1, 65535)
        user = self.string(m, "user", path, pos)
        if user is not None and USER_RE.fullmatch(user):
            out.user = user
        elif user is not None:
            self.report.error(
                val_pos(m, "user", pos),
                f"{path}.user",
                "not a valid user name: use lowercase letters, digits, '_', '.', '-' (e.g. root)",
            )
        out.known_hosts = self.parsed(m, "known_hosts", path, pos,
                                      lambda t: paths.known_hosts_path(t, self.directory))
        out.identity_file = self.parsed(m, "identity_file", path, pos,
                                        lambda t: paths.identity_file_path(t, self.directory))
        out.proxy_jump = self.parsed(m, "proxy_jump", path, pos, parse_ssh_target)
        out.proxy_command = self.parsed(m, "proxy_command", path, pos, parse_proxy_command)
        if not absent(m, "proxy_jump") and not absent(m, "proxy_command"):
            self.report.error(val_pos(m, "proxy_command", pos), f"{path}.proxy_command",
                              "give proxy_jump or proxy_command, not both (a proxy command can run ssh -W itself)")
            out.proxy_command = None
        out.sudo = self.boolean(m, "sudo", path, pos)

    def ssh_host(self, m: dict, path: str, pos: Pos) -> str | None:
        return self.parsed(m, "host", path, pos, parse_host)
