"""A fake transport for the shell around plan and apply: records every script and answers like a node would.

`read_output(state)` renders a LiveState as the output of scripts/read.sh (what a real node prints);
`FakeTransport` answers read scripts with it, apply scripts with a verify section, and takes scripted results
or exceptions per node when a test wants a failure.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace

from wgmesh.core.model import Node
from wgmesh.core.state import LiveState
from wgmesh.remote.apply import VERIFY_MARK
from wgmesh.remote.shell import MARK, script_name, source
from wgmesh.remote.transport import ASK_MARK, CommandResult, SshError


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


def _iptables(state: LiveState, version: int = 4) -> str:
    """The iptables (4) or ip6tables (6) section: `present` and wgmesh's rules for the interface (as `-S` prints
    them)."""
    if not (state.has_iptables if version == 4 else state.has_ip6tables):
        return "absent"
    comment = f'-m comment --comment "wgmesh:{state.interface}"'
    lines = ["present"]
    if state.forward_rules if version == 4 else state.forward_rules6:
        lines += [f"-A FORWARD -i {state.interface} {comment} -j ACCEPT",
                  f"-A FORWARD -o {state.interface} {comment} -j ACCEPT"]
    elif version in state.stray_forward_rules:
        lines.append(f"-A FORWARD -o {state.interface} {comment} -j ACCEPT")
    lines += [f"-A POSTROUTING ! -s {n} -d {n} {comment} -j MASQUERADE"
              for n in sorted(state.masquerade, key=str) if n.version == version]
    return "\n".join(lines)


def _conf_text(text: str) -> str:
    return "\n".join(f"|{line}" for line in text.splitlines())


def read_output(state: LiveState) -> str:
    """What `read.read_command(state.interface, hosts)` prints on a node in this state (preflight included)."""
    ip_json = not {"ip", "ip-busybox", "ip-json"} & set(state.missing)
    sections = [
        ("v1", ""),
        ("preflight", "\n".join([f"os {state.os_family or ''}".rstrip()] + [f"lacks {m}" for m in state.missing])),
        ("wg", _dump(state)),
        ("link", json.dumps(_link(state)) if state.interface_exists and ip_json else ""),
        ("addr", _addr(state) if ip_json else ""),
        ("route4", _routes(state, 4) if ip_json else ""),
        ("route6", _routes(state, 6) if ip_json else ""),
        ("otherroutes", "\n".join(line for line, _ in state.other_routes.values()) if ip_json else ""),
        ("keyfile", f"present\n{state.key_file_public_key or ''}" if state.key_file_exists else "absent"),
        ("conf", f"present\n{state.config_sha256}" if state.config_exists else "absent"),
    ]
    # read.sh always prints these; a state that does not know them (None) is an output without them
    if state.config_exists and state.config_text is not None:
        sections.append(("conftext", _conf_text(state.config_text)))
    sections.append(("systemd", "no-systemd" if state.wg_quick_unit_enabled is None else
                     ("enabled" if state.wg_quick_unit_enabled else "disabled")))
    sections.append(("forwarding", "\n".join(f"{v} {int(on)}" for v, on in sorted(state.forwarding.items()))))
    if state.has_iptables is not None:
        sections.append(("iptables", _iptables(state)))
    if state.has_ip6tables is not None:
        sections.append(("ip6tables", _iptables(state, 6)))
    if state.auto_mtu is not None:
        sections.append(("automtu", str(state.auto_mtu)))
    for host, addrs in state.resolved.items():
        body = "\n".join(f"{a:<15} STREAM {host}" for a in addrs)  # in the resolver's order, as getent prints
        sections.append((f"resolve {host}", body))
    if state.pending_runs:
        sections.append(("pending", "\n".join(state.pending_runs)))
    sections.append(("end", ""))
    out = []
    for name, body in sections:
        out.append(f"{MARK}{name}")
        if body:
            out.append(body)
    return "\n".join(out) + "\n"


def script_kind(script: str) -> str:
    """read | apply | rollback | confirm (| the NAME of any other scripts/NAME.sh): which script this is."""
    name = script_name(script)
    if name is not None:
        return name
    if VERIFY_MARK in script:
        return "apply"
    return "unknown"


def script_values(script: str) -> dict[str, str]:
    """The values a scripts/NAME.sh script was built with (the quoted assignments before lib.sh)."""
    head = script.split(source("lib.sh"), 1)[0]
    return dict(word.split("=", 1) for word in shlex.split(head, comments=True))


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
    # converse: what the node is in once an apply holds its lock (default: `states`), and the answers the
    # apply scripts got (node, answer line: "go", "stop" or "" for end-of-file)
    locked: dict[str, LiveState] = field(default_factory=dict)
    decisions: list[tuple[str, str]] = field(default_factory=list)
    # reconnect: errors per node, raised in order before reconnecting works; every reconnect, in order
    reconnect_errors: dict[str, list[Exception]] = field(default_factory=dict)
    reconnects: list[str] = field(default_factory=list)
    before_apply: dict[str, LiveState] = field(default_factory=dict)  # what a rollback restores
    # an apply script that fails after `go` (it undid its steps; the node is then in `after`, else unchanged)
    fail_after_go: dict[str, CommandResult] = field(default_factory=dict)

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
        if kind == "confirm":  # (another apply's pending run, once confirmed, is no longer pending)
            run, state = script_values(script).get("RUN"), self.states.get(node)
            if state is not None and run in state.pending_runs:
                self.states[node] = replace(state, pending_runs=tuple(r for r in state.pending_runs if r != run))
            return CommandResult(0, f"{MARK}confirmed\n", "")
        if kind == "rollback":
            self.states[node] = self.before_apply.get(node, self.states[node])
            return CommandResult(0, f"{MARK}rolledback\n{VERIFY_MARK}\n{read_output(self.states[node])}", "")
        return CommandResult(0, "", "")

    def converse(
        self, node: str, first: str, decide: Callable[[str], str | None], timeout: float | None = None
    ) -> CommandResult:
        """An apply script that asks: the node prints its state under the lock (`locked`, else `states`) and
        ASK_MARK; on `go` it runs the rest (and is then in `after`), on anything else it changes nothing."""
        if node not in self.connected:
            raise SshError("not connected")
        kind = script_kind(first)
        queue = self.answers.get((node, kind))
        if queue:
            self.scripts.append((node, kind, first))
            got = queue.pop(0)
            if isinstance(got, Exception):
                raise got
            return got
        now = self.locked.pop(node, self.states[node])
        self.states[node] = now
        asked = f"{read_output(now)}{ASK_MARK}\n"
        answer = decide(read_output(now))
        line = (answer or "").partition("\n")[0]
        self.decisions.append((node, line))
        self.scripts.append((node, kind, first + (answer or "")))
        if line != "go":
            why = "changed since this plan: run plan again" if line == "stop" else "no answer"
            return CommandResult(3, asked, why + "\n")
        self.before_apply[node] = now
        state = self.after.get(node, now)
        self.states[node] = state
        if node in self.fail_after_go:
            failed = self.fail_after_go[node]
            return CommandResult(failed.exit_status, asked + failed.stdout, failed.stderr)
        return CommandResult(0, f"{asked}{VERIFY_MARK}\n{read_output(state)}", "")

    def reconnect(self, node: str) -> None:
        if node not in self.connected:
            raise SshError("not connected")
        self.reconnects.append(node)
        queue = self.reconnect_errors.get(node)
        if queue:
            raise queue.pop(0)

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
