"""A fake transport for the shell around plan and apply: records every script and answers like a node would.

`read_output(state)` renders a LiveState as the output of `live.read_command` (what a real node prints);
`FakeTransport` answers read scripts with it, apply scripts with a verify section, and takes scripted results
or exceptions per node when a test wants a failure.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from wgmesh.core.model import Node
from wgmesh.core.state import LiveState
from wgmesh.remote.apply import VERIFY_MARK
from wgmesh.remote.read import MARK
from wgmesh.remote.transport import CommandResult, SshError


def _dump(state: LiveState) -> str:
    if not state.interface_exists:
        return ""
    lines = [
        "\t".join(
            [
                "(hidden)",
                state.public_key or "(none)",
                str(state.listen_port or 0),
                hex(state.fwmark) if state.fwmark else "off",
            ]
        )
    ]
    for p in state.peers.values():
        lines.append(
            "\t".join(
                [
                    p.public_key,
                    "(hidden)" if p.has_preshared_key else "(none)",
                    p.endpoint or "(none)",
                    ",".join(str(n) for n in sorted(p.allowed_ips, key=str)) or "(none)",
                    str(p.latest_handshake),
                    str(p.rx_bytes),
                    str(p.tx_bytes),
                    str(p.persistent_keepalive) if p.persistent_keepalive else "off",
                ]
            )
        )
    return "\n".join(lines)


def _link(state: LiveState) -> list[dict[str, object]]:
    flags = ["POINTOPOINT", "NOARP"] + (["UP", "LOWER_UP"] if state.link_up else [])
    return [{"ifindex": 4, "ifname": state.interface, "flags": flags, "mtu": state.mtu or 1420}]


def _addr(state: LiveState) -> str:
    if not state.interface_exists:
        return ""
    info = [
        {"family": "inet" if a.version == 4 else "inet6", "local": str(a.ip), "prefixlen": a.network.prefixlen,
         "scope": "global"}
        for a in sorted(state.addresses, key=str)
    ]
    return json.dumps([{**_link(state)[0], "addr_info": info}])


def _routes(state: LiveState, version: int) -> str:
    if not state.interface_exists:
        return ""
    routes: list[dict[str, object]] = [
        {"dst": str(a.network), "protocol": "kernel", "scope": "link"} for a in state.addresses if a.version == version
    ]
    routes += [{"dst": str(r), "scope": "link"} for r in sorted(state.routes, key=str) if r.version == version]
    return json.dumps(routes)


def read_output(state: LiveState) -> str:
    """What `live.read_command(state.interface, hosts)` prints on a node in this state."""
    sections = [
        ("v1", ""),
        ("wg", _dump(state)),
        ("link", json.dumps(_link(state)) if state.interface_exists else ""),
        ("addr", _addr(state)),
        ("route4", _routes(state, 4)),
        ("route6", _routes(state, 6)),
        ("keyfile", f"present\n{state.key_file_public_key or ''}" if state.key_file_exists else "absent"),
        ("conf", f"present\n{state.config_sha256}" if state.config_exists else "absent"),
        ("systemd", "no-systemd" if state.wg_quick_unit_enabled is None else
         ("enabled" if state.wg_quick_unit_enabled else "disabled")),
    ]
    for host, addrs in state.resolved.items():
        body = "\n".join(f"{a:<15} STREAM {host}" for a in sorted(addrs, key=ipaddress.ip_address))
        sections.append((f"resolve {host}", body))
    sections.append(("end", ""))
    out = []
    for name, body in sections:
        out.append(f"{MARK}{name}")
        if body:
            out.append(body)
    return "\n".join(out) + "\n"


def script_kind(script: str) -> str:
    """read | apply | rollback | cleanup: which of wgmesh's scripts this is."""
    if VERIFY_MARK in script:
        return "apply"
    if f"echo '{MARK}v1'" in script:
        return "read"
    if "flock" in script:
        return "rollback"
    return "cleanup"


Answer = CommandResult | Exception


@dataclass
class FakeTransport:
    """`states`: what each node's read returns. `after`: the state an apply script reads back (default: the
    node is then in `after` if given, else unchanged). `unreachable`: connect errors by node. `answers`:
    scripted results or exceptions per (node, kind), used in order before the defaults."""

    states: dict[str, LiveState]
    after: dict[str, LiveState] = field(default_factory=dict)
    unreachable: dict[str, str] = field(default_factory=dict)
    answers: dict[tuple[str, str], list[Answer]] = field(default_factory=dict)
    scripts: list[tuple[str, str, str]] = field(default_factory=list)  # (node, kind, script)
    connected: list[str] = field(default_factory=list)
    closed: bool = False

    def connect(self, nodes: Iterable[Node]) -> dict[str, str]:
        errors = {}
        for n in nodes:
            if n.name in self.unreachable:
                errors[n.name] = self.unreachable[n.name]
            else:
                self.connected.append(n.name)
        return errors

    def run(self, node: str, script: str, timeout: float | None = None) -> CommandResult:
        if node not in self.connected:
            raise SshError("not connected")
        kind = script_kind(script)
        self.scripts.append((node, kind, script))
        queue = self.answers.get((node, kind))
        if queue:
            got = queue.pop(0)
            if isinstance(got, Exception):
                raise got
            return got
        if kind == "read":
            return CommandResult(0, read_output(self.states[node]), "")
        if kind == "apply":
            state = self.after.get(node, self.states[node])
            self.states[node] = state
            return CommandResult(0, f"{VERIFY_MARK}\n{read_output(state)}", "")
        return CommandResult(0, "", "")

    def run_many(self, scripts: Mapping[str, str], timeout: float | None = None) -> dict[str, CommandResult | str]:
        out: dict[str, CommandResult | str] = {}
        for node, script in scripts.items():
            try:
                out[node] = self.run(node, script, timeout)
            except SshError as e:
                out[node] = str(e)
        return out

    def close(self) -> None:
        self.closed = True

    def kinds(self, node: str | None = None) -> list[str]:
        return [k for n, k, _ in self.scripts if node is None or n == node]
