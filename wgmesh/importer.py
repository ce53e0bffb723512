"""`wgmesh import`: adopt running WireGuard nodes (a mesh built by hand or with a web UI) into mesh.yaml.

    wgmesh import NAME=[USER@]HOST[:PORT] ... [--endpoint NAME=HOST:PORT]... [--dry-run]

1. Read, over SSH, each node's live interface (the same read as `plan`) and its wg-quick config. The
   config is filtered ON THE NODE before it is printed: PrivateKey and PresharedKey lines are dropped and
   any other key-like text except a PublicKey value is replaced by "(redacted)".
2. Build one mesh.yaml entry per node, all in the pure core (`build_entries`):
   - address: the interface's addresses that lie in the mesh network;
   - public_key: the running interface's public key;
   - endpoint: how the other imported nodes' wg-quick configs reach this node (their `Endpoint =` for its
     key: the declared value, a name stays a name), or `--endpoint NAME=HOST:PORT`. A node that no
     config gives an endpoint gets none (it is dialled by nobody, as a node behind NAT). Endpoints the
     peers merely learned (a roamed address in `wg show`) are not used: they say where a packet came
     from, not where the node listens;
   - subnets: the prefixes in the other imported nodes' live AllowedIPs for this node's key, minus its
     own mesh addresses (and never anything overlapping the mesh network);
   - listen_port when it differs from the mesh's, mtu when the config sets MTU, post_up/post_down from
     the config (except commands that load a private key: wgmesh's own PostUp does that);
   - ssh: the host (and user/port when not the defaults) given on the command line.
   Nothing is changed anywhere unless every node can be imported.
3. On each node (one script, `adopt_script`): if IF.key is absent, move the interface's private key into
   it (mode 600) from the config's PrivateKey line, or else from the running interface
   (`wg show IF private-key` redirected into the file) — only after checking that it gives the running
   public key; keep the old config, without its PrivateKey line, as IF.conf.wgmesh-import (once); write
   the wgmesh-rendered IF.conf. The running interface is not touched, so nothing is interrupted.
4. Write the entries into mesh.yaml (created when the file does not exist; `--network` then gives the
   mesh network when the addresses do not, e.g. /32 addresses).
The first `wgmesh plan` shows no changes for the imported nodes, unless the live setup has something
mesh.yaml cannot express (a keepalive on every peer, preshared keys, foreign peers...): import lists
each such difference, computed with the same diff as plan, before it changes anything.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import shlex
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wgmesh import config, nodes
from wgmesh.core.model import KEY_DIR, IPInterface, IPNetwork, Mesh, Node, Ssh
from wgmesh.core.plan import Action, config_digest, diff_node
from wgmesh.core.render import KEY_POST_UP, render_node
from wgmesh.core.state import LiveState
from wgmesh.engine import resolve_hosts
from wgmesh.operations import ConnectOptions, ExitStatus, Failure, TransportFactory, load_mesh, ssh_transport
from wgmesh.remote import read as live_mod
from wgmesh.remote.transport import Transport
from wgmesh.view import Environment, HumanView

MARK = "@@wgmesh-import:"
REDACTED = "(redacted)"
BACKUP_SUFFIX = ".wgmesh-import"
_KEYLIKE = "[A-Za-z0-9+/]" * 43 + "="

# Runs on the node over IF.conf: drops PrivateKey/PresharedKey lines and marker-like lines; replaces any
# other key-like text (except a PublicKey value) by (redacted).
_FILTER_AWK = (
    f'BEGIN {{ re = "{_KEYLIKE}" }} '
    '{ l = $0; sub(/^[ \\t]+/, "", l); k = tolower(l); gsub(/[ \\t]/, "", k); '
    "if (k ~ /^(privatekey|presharedkey)=/) next; "
    'if (substr(l, 1, 2) == "@@") next; '
    f'if (k !~ /^publickey=/) gsub(re, "{REDACTED}"); '
    "print }"
)
# Prints the value of the first PrivateKey line (into a file on the node, never to the output).
_PRIVATE_KEY_AWK = (
    '{ l = $0; sub(/^[ \\t]+/, "", l); k = tolower(l); gsub(/[ \\t]/, "", k); '
    'if (k ~ /^privatekey=/) { sub(/^[^=]*=[ \\t]*/, "", l); sub(/[ \\t\\r]*(#.*)?$/, "", l); print l; exit } }'
)
# The backup of the old config: every line but PrivateKey.
_BACKUP_AWK = (
    '{ l = $0; sub(/^[ \\t]+/, "", l); k = tolower(l); gsub(/[ \\t]/, "", k); '
    "if (k ~ /^privatekey=/) next; print }"
)
_KNOWN_NAMES = {
    "dns": "DNS",
    "table": "Table",
    "fwmark": "FwMark",
    "preup": "PreUp",
    "predown": "PreDown",
    "saveconfig": "SaveConfig",
}


class ImportProblem(ValueError):
    """A node cannot be imported; the message names the node and the fix."""


# --------------------------------------------------------------------------------------------- targets


@dataclass(frozen=True)
class Target:
    """`NAME=[USER@]HOST[:PORT]` from the command line."""

    name: str
    host: str
    user: str | None = None
    port: int | None = None


def parse_target(text: str) -> Target:
    name, sep, rest = text.partition("=")
    if not sep or not name or not rest:
        raise ValueError(f"{text!r}: write NAME=[USER@]HOST[:PORT], e.g. aws=root@203.0.113.10")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}", name):
        raise ValueError(f"{text!r}: invalid node name {name!r} (letters, digits, '_', '.', '-')")
    user: str | None = None
    if "@" in rest:
        user, _, rest = rest.rpartition("@")
        if not re.fullmatch(r"[a-z_][a-z0-9_.-]{0,31}", user):
            raise ValueError(f"{text!r}: invalid user name {user!r}")
    port: int | None = None
    host = rest
    if rest.startswith("["):
        m = re.fullmatch(r"\[([^\]]+)\](?::(\d{1,5}))?", rest)
        if m is None:
            raise ValueError(f"{text!r}: write an IPv6 host as [2001:db8::1] or [2001:db8::1]:22")
        host, port = m.group(1), int(m.group(2)) if m.group(2) else None
    elif rest.count(":") == 1:
        host, _, port_text = rest.partition(":")
        if not port_text.isdigit():
            raise ValueError(f"{text!r}: the SSH port after ':' must be a number")
        port = int(port_text)
    if port is not None and not 1 <= port <= 65535:
        raise ValueError(f"{text!r}: the SSH port must be from 1 to 65535")
    if not host or host.startswith("-") or re.search(r"[\s/]", host):
        raise ValueError(f"{text!r}: {host!r} is not a host name or address")
    return Target(name, host, user, port)


def parse_endpoint_override(text: str) -> tuple[str, str]:
    name, sep, endpoint = text.partition("=")
    if not sep or not name or not endpoint:
        raise ValueError(f"--endpoint {text!r}: write NAME=HOST:PORT, e.g. aws=vpn.example.com:51820")
    try:
        config.parse_endpoint(endpoint)
    except ValueError as e:
        raise ValueError(f"--endpoint {text!r}: {e}") from None
    return name, endpoint


# --------------------------------------------------------------------------------------------- wg-quick configs


@dataclass(frozen=True)
class QuickPeer:
    public_key: str
    endpoint: str | None = None
    allowed_ips: tuple[str, ...] = ()
    persistent_keepalive: int | None = None


@dataclass(frozen=True)
class WgQuick:
    """What wgmesh needs from a wg-quick config (never a private or preshared key)."""

    addresses: tuple[str, ...] = ()
    listen_port: int | None = None
    mtu: int | None = None
    post_up: tuple[str, ...] = ()
    post_down: tuple[str, ...] = ()
    ignored: tuple[str, ...] = ()  # [Interface] settings wgmesh does not manage (DNS, Table, ...)
    peers: tuple[QuickPeer, ...] = ()


def _int_or_none(value: str) -> int | None:
    return int(value) if value.isdigit() else None


def parse_wg_quick(text: str) -> WgQuick:
    """A wg-quick config as wg-quick reads it: sections, `Key = Value`, '#' starts a comment. Pure;
    PrivateKey and PresharedKey lines are skipped unread (the node already removed them)."""
    iface: dict[str, Any] = {"addresses": [], "post_up": [], "post_down": [], "ignored": []}
    peers: list[dict[str, Any]] = []
    section = ""
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1].strip().lower()
            if section == "peer":
                peers.append({"allowed_ips": []})
            continue
        shown, sep, value = line.partition("=")
        if not sep:
            continue
        shown, value = shown.strip(), value.strip()
        key = shown.lower().replace(" ", "")
        if key in ("privatekey", "presharedkey"):
            continue
        if section == "interface":
            _interface_setting(iface, key, shown, value)
        elif section == "peer" and peers:
            _peer_setting(peers[-1], key, value)
    return WgQuick(
        addresses=tuple(iface["addresses"]),
        listen_port=iface.get("listen_port"),
        mtu=iface.get("mtu"),
        post_up=tuple(iface["post_up"]),
        post_down=tuple(iface["post_down"]),
        ignored=tuple(dict.fromkeys(iface["ignored"])),
        peers=tuple(
            QuickPeer(p["public_key"], p.get("endpoint"), tuple(p["allowed_ips"]), p.get("keepalive"))
            for p in peers
            if config.validate_key(p.get("public_key", ""))
        ),
    )


def _interface_setting(iface: dict[str, Any], key: str, shown: str, value: str) -> None:
    if key == "address":
        iface["addresses"] += [a.strip() for a in value.split(",") if a.strip()]
    elif key == "listenport":
        iface["listen_port"] = _int_or_none(value)
    elif key == "mtu":
        iface["mtu"] = _int_or_none(value)
    elif key == "postup":
        iface["post_up"].append(value)
    elif key == "postdown":
        iface["post_down"].append(value)
    elif key == "saveconfig" and value.lower() != "true":
        pass
    else:
        iface["ignored"].append(_KNOWN_NAMES.get(key, shown))


def _peer_setting(peer: dict[str, Any], key: str, value: str) -> None:
    if key == "publickey":
        peer["public_key"] = value
    elif key == "endpoint":
        peer["endpoint"] = value
    elif key == "allowedips":
        peer["allowed_ips"] += [a.strip() for a in value.split(",") if a.strip()]
    elif key == "persistentkeepalive":
        peer["keepalive"] = 0 if value.lower() == "off" else _int_or_none(value)


# --------------------------------------------------------------------------------------------- node scripts


def import_script(interface: str, *, key_dir: str = KEY_DIR) -> str:
    """Print the wg-quick config (secrets removed on the node), then everything `plan` reads."""
    conf = shlex.quote(f"{key_dir}/{interface}.conf")
    return (
        f"echo '{MARK}conf'\n"
        f"if [ -f {conf} ]; then echo present; awk {shlex.quote(_FILTER_AWK)} {conf} || true; "
        "else echo absent; fi\n"
        f"echo '{MARK}done'\n"
    ) + live_mod.read_command(interface)


def parse_import_output(interface: str, stdout: str) -> tuple[LiveState, WgQuick | None]:
    """The output of `import_script` -> (live state, config or None when absent). ParseError if garbled."""
    lines = stdout.split("\n")
    try:
        start = lines.index(f"{MARK}conf")
        end = lines.index(f"{MARK}done", start)
    except ValueError:
        raise live_mod.ParseError("import read output: markers missing (not wgmesh output?)") from None
    body = lines[start + 1 : end]
    if not body or body[0] not in ("present", "absent"):
        raise live_mod.ParseError("import read output: config section malformed")
    live = live_mod.parse_read_output(interface, "\n".join(lines[end + 1 :]))
    return live, parse_wg_quick("\n".join(body[1:])) if body[0] == "present" else None


def _heredoc(tag: str, body: str) -> str:
    if f"\n{tag}\n" in f"\n{body}":
        raise ValueError("config text contains the heredoc terminator")
    return f"<<'{tag}'\n{body}{'' if body.endswith(chr(10)) else chr(10)}{tag}"


def adopt_script(interface: str, public_key: str, conf_text: str, *, key_dir: str = KEY_DIR) -> str:
    """On the node: make sure IF.key holds the running key (moving it there if needed), back up the
    old config without its PrivateKey, write wgmesh's config. Prints `key kept|config|interface`."""
    if not config.validate_key(public_key):
        raise ValueError("public_key is not a WireGuard public key")
    q = shlex.quote
    return (
        "set -eu\n"
        "umask 077\n"
        "LC_ALL=C; export LC_ALL\n"
        'PATH="$PATH:/usr/local/sbin:/usr/local/bin:/usr/sbin:/sbin"; export PATH\n'
        f"IF={q(interface)}\n"
        f"DIR={q(key_dir)}\n"
        'KEY="$DIR/$IF.key"\n'
        'CONF="$DIR/$IF.conf"\n'
        f'BACKUP="$CONF{BACKUP_SUFFIX}"\n'
        'TMP="$KEY.wgmesh-tmp.$$"\n'
        'CTMP="$DIR/.$IF.conf.wgmesh-tmp.$$"\n'
        f"EXPECT={q(public_key)}\n"
        "trap 'rm -f \"$TMP\" \"$CTMP\"' EXIT\n"
        "same() { [ -s \"$1\" ] && [ \"$(wg pubkey < \"$1\" 2>/dev/null)\" = \"$EXPECT\" ]; }\n"
        'if [ -e "$KEY" ]; then\n'
        '  if ! same "$KEY"; then\n'
        '    echo "$KEY does not hold the key $IF runs with ($EXPECT): move it away and import again" >&2\n'
        "    exit 4\n"
        "  fi\n"
        "  from=kept\n"
        "else\n"
        "  from=\n"
        '  if [ -f "$CONF" ]; then\n'
        f'    awk {q(_PRIVATE_KEY_AWK)} "$CONF" > "$TMP"\n'
        '    if same "$TMP"; then from=config; fi\n'
        "  fi\n"
        '  if [ -z "$from" ]; then\n'
        '    wg show "$IF" private-key > "$TMP" 2>/dev/null || true\n'
        '    if same "$TMP"; then from=interface; fi\n'
        "  fi\n"
        '  if [ -z "$from" ]; then\n'
        '    echo "cannot find the private key of $IF (public key $EXPECT) in $CONF or the interface" >&2\n'
        "    exit 5\n"
        "  fi\n"
        '  chmod 600 "$TMP"\n'
        '  ln "$TMP" "$KEY"\n'
        '  rm -f "$TMP"\n'
        "fi\n"
        'if [ -f "$CONF" ] && [ ! -e "$BACKUP" ]; then\n'
        '  { echo "# The config of $IF before wgmesh import; its PrivateKey is now in $KEY"; '
        f'awk {q(_BACKUP_AWK)} "$CONF"; }} > "$CTMP"\n'
        '  mv -f "$CTMP" "$BACKUP"\n'
        "fi\n"
        f'cat > "$CTMP" {_heredoc("__WGMESH_CONF__", conf_text)}\n'
        'chmod 600 "$CTMP"\n'
        'mv -f "$CTMP" "$CONF"\n'
        f'echo "{MARK}key $from"\n'
    )


def parse_adopt_output(stdout: str) -> str:
    """`kept`, `config` or `interface`: where IF.key came from. ValueError if the line is missing."""
    for line in stdout.splitlines():
        if line.startswith(f"{MARK}key "):
            where = line.split()[-1]
            if where in ("kept", "config", "interface"):
                return where
    raise ValueError("the node did not confirm the import")


# --------------------------------------------------------------------------------------------- the pure core


@dataclass(frozen=True)
class NodeRead:
    target: Target
    live: LiveState
    conf: WgQuick | None


@dataclass(frozen=True)
class Context:
    """What the entries must fit: the mesh (existing or about to be created) and its defaults."""

    interface: str
    networks: tuple[IPNetwork, ...]
    listen_port: int = config.DEFAULT_LISTEN_PORT
    existing_keys: Mapping[str, str] = field(default_factory=dict)  # public key -> node name
    existing_names: frozenset[str] = frozenset()
    ssh_user: str = "root"
    ssh_port: int = 22


@dataclass(frozen=True)
class Entry:
    name: str
    public_key: str
    fields: dict[str, Any]
    key_file: bool  # IF.key already holds the running key (nothing to move)


def _in_mesh(net: IPNetwork, networks: Sequence[IPNetwork]) -> bool:
    return any(net.version == m.version and net.overlaps(m) for m in networks)  # type: ignore[arg-type]


def _in_networks(a: IPInterface, networks: Sequence[IPNetwork]) -> bool:
    return any(a.version == m.version and a.ip in m for m in networks)


def derive_networks(reads: Mapping[str, NodeRead]) -> tuple[IPNetwork, ...]:
    """The mesh networks the interfaces' address prefixes describe (e.g. 10.0.0.1/24 -> 10.0.0.0/24)."""
    found: set[IPNetwork] = set()
    for r in reads.values():
        for a in r.live.addresses:
            if a.network.prefixlen < a.max_prefixlen:
                found.add(a.network)
    nets = sorted(found, key=lambda n: (n.version, n.network_address, n.prefixlen))
    for i, a in enumerate(nets):
        for b in nets[i + 1 :]:
            if a.version == b.version and a.overlaps(b):
                raise ImportProblem(f"the interfaces use overlapping prefixes {a} and {b}: pass --network CIDR")
    if not nets:
        raise ImportProblem("the interface addresses have no network prefix (/32 or /128): pass --network CIDR")
    return tuple(nets)


def _check(name: str, r: NodeRead, ctx: Context, interface: str) -> None:
    live = r.live
    if not live.interface_exists:
        raise ImportProblem(f"{name}: no interface {interface} on the node (import adopts a running interface)")
    if live.public_key is None:
        raise ImportProblem(f"{name}: interface {interface} has no private key")
    if live.key_file_exists and live.key_file_public_key != live.public_key:
        raise ImportProblem(
            f"{name}: {KEY_DIR}/{interface}.key does not hold the key {interface} runs with ({live.public_key}): "
            "move it away, then import again"
        )
    if live.public_key in ctx.existing_keys:
        raise ImportProblem(f"{name}: its key is already in mesh.yaml as node {ctx.existing_keys[live.public_key]}")
    if name in ctx.existing_names:
        raise ImportProblem(f"{name}: a node of that name is already in mesh.yaml (remove it or pick another name)")


def _common(values: Iterable[str]) -> tuple[str | None, bool]:
    """The most common value and whether there was disagreement."""
    counts = Counter(values)
    if not counts:
        return None, False
    return counts.most_common(1)[0][0], len(counts) > 1


def _sort_nets(items: Iterable[IPNetwork]) -> list[IPNetwork]:
    return sorted(set(items), key=lambda n: (n.version, n.network_address, n.prefixlen))


def _commands(name: str, which: str, commands: Sequence[str], warnings: list[str]) -> list[str]:
    kept = []
    for c in commands:
        if REDACTED in c:
            warnings.append(f"{name}: a {which} command holds key material; it is not imported")
        elif c == KEY_POST_UP or "private-key" in c:
            continue  # loads a private key: wgmesh's own first PostUp does that from IF.key
        else:
            kept.append(c)
    return kept


def check_reads(reads: Mapping[str, NodeRead], ctx: Context) -> dict[str, str]:
    """{name: running public key}; ImportProblem for the first node that cannot be imported. Pure."""
    keys: dict[str, str] = {}
    for name, r in reads.items():
        _check(name, r, ctx, ctx.interface)
        key = r.live.public_key or ""
        if key in keys.values():
            other = next(n for n, k in keys.items() if k == key)
            raise ImportProblem(f"{name} and {other} run the same key: each node needs its own key pair")
        keys[name] = key
    return keys


def build_entries(
    reads: Mapping[str, NodeRead], ctx: Context, endpoints: Mapping[str, str] | None = None
) -> tuple[list[Entry], list[str]]:
    """mesh.yaml entries for the nodes read, in the order given, and warnings. ImportProblem if a node
    cannot be imported. Pure."""
    endpoints = endpoints or {}
    warnings: list[str] = []
    keys = check_reads(reads, ctx)
    known = set(keys.values()) | set(ctx.existing_keys)
    entries = []
    for name, r in reads.items():
        entries.append(_entry(name, r, reads, keys, ctx, endpoints.get(name), warnings))
        for key, peer in r.live.peers.items():
            if key not in known:
                nets = ", ".join(str(n) for n in _sort_nets(peer.allowed_ips)) or "no AllowedIPs"
                warnings.append(
                    f"{name}: peer {key[:8]}… ({nets}) is neither imported nor in mesh.yaml: "
                    "the next apply removes it from this node (import it too, or add it to mesh.yaml)"
                )
    return entries, warnings


def _entry(
    name: str,
    r: NodeRead,
    reads: Mapping[str, NodeRead],
    keys: Mapping[str, str],
    ctx: Context,
    endpoint_override: str | None,
    warnings: list[str],
) -> Entry:
    key = keys[name]
    live = r.live
    addresses = sorted((a for a in live.addresses if _in_networks(a, ctx.networks)), key=_iface_key)
    for a in sorted(live.addresses - set(addresses), key=_iface_key):
        warnings.append(f"{name}: address {a} is outside the mesh network; not imported")
    if not addresses:
        shown = ", ".join(str(a) for a in sorted(live.addresses, key=_iface_key)) or "none"
        nets = ", ".join(str(n) for n in ctx.networks)
        raise ImportProblem(f"{name}: none of the interface's addresses ({shown}) is in the mesh network {nets}")
    fields: dict[str, Any] = {}
    fields["address"] = str(addresses[0].ip) if len(addresses) == 1 else [str(a.ip) for a in addresses]
    fields["public_key"] = key

    others = [o for n, o in reads.items() if n != name]
    endpoint = endpoint_override
    if endpoint is None:
        declared = [p.endpoint for o in others if o.conf for p in o.conf.peers if p.public_key == key and p.endpoint]
        endpoint, split = _common(declared)
        if split:
            warnings.append(f"{name}: its peers' configs give different endpoints; using {endpoint}")
    if endpoint is not None:
        try:
            config.parse_endpoint(endpoint)
            fields["endpoint"] = endpoint
        except ValueError as e:
            warnings.append(f"{name}: endpoint {endpoint!r} is not usable ({e}); none imported")

    own = {ipaddress.ip_network(a.ip) for a in addresses}
    views = [frozenset(o.live.peers[key].allowed_ips) for o in others if key in o.live.peers]
    if len(set(views)) > 1:
        warnings.append(f"{name}: its peers route different AllowedIPs to it; importing all of them")
    subnets = []
    for net in _sort_nets(n for v in views for n in v):
        if net in own:
            continue
        if _in_mesh(net, ctx.networks):
            warnings.append(f"{name}: AllowedIPs {net} overlaps the mesh network; not imported as a subnet")
            continue
        subnets.append(str(net))
    if subnets:
        fields["subnets"] = subnets
    if live.listen_port is not None and live.listen_port != ctx.listen_port:
        fields["listen_port"] = live.listen_port
    if r.conf is not None:
        if r.conf.mtu is not None:
            fields["mtu"] = r.conf.mtu
        post_up = _commands(name, "PostUp", r.conf.post_up, warnings)
        post_down = _commands(name, "PostDown", r.conf.post_down, warnings)
        if post_up:
            fields["post_up"] = post_up
        if post_down:
            fields["post_down"] = post_down
        if r.conf.ignored:
            warnings.append(
                f"{name}: {ctx.interface}.conf sets {', '.join(r.conf.ignored)}: wgmesh does not manage "
                f"{'it' if len(r.conf.ignored) == 1 else 'them'}; the new config leaves "
                f"{'it' if len(r.conf.ignored) == 1 else 'them'} out"
            )
    ssh: dict[str, Any] = {"host": r.target.host}
    if r.target.user and r.target.user != ctx.ssh_user:
        ssh["user"] = r.target.user
    if r.target.port and r.target.port != ctx.ssh_port:
        ssh["port"] = r.target.port
    fields["ssh"] = ssh
    return Entry(name, key, fields, key_file=live.key_file_exists)


def _iface_key(a: IPInterface) -> tuple[int, Any]:
    return (a.version, a.ip)


def residual(mesh: Mesh, name: str, live: LiveState) -> list[str]:
    """What the first plan would still show for an imported node (once its key is in IF.key and its
    config is wgmesh's): `~ peer gcp (persistent_keepalive)`, `- peer AbCd…`, ... Pure."""
    text = render_node(mesh, name)
    after = dataclasses.replace(
        live,
        key_file_exists=True,
        key_file_public_key=live.public_key,
        config_exists=True,
        config_sha256=config_digest(text),
    )
    plan = diff_node(mesh, mesh.node(name), after)
    if plan.error:
        return [plan.error]
    out = []
    for c in plan.changes:
        what = f"{c.action.symbol} {c.address}"
        if c.action is Action.UPDATE:
            what += " (" + ", ".join(k for k, _, _ in c.changed_attributes()) + ")"
        out.append(what)
    return out


def new_mesh_text(name: str, interface: str, networks: Sequence[IPNetwork], listen_port: int, keepalive: int,
                  identity_file: str | None, imported: Sequence[str]) -> str:
    """A fresh mesh.yaml without nodes (import adds them)."""
    nets = str(networks[0]) if len(networks) == 1 else "[" + ", ".join(str(n) for n in networks) + "]"
    lines = [
        f"# Written by `wgmesh import` from the running interfaces of {', '.join(imported)}.",
        "# Every node's private key stays on the node, in /etc/wireguard/INTERFACE.key.",
        "version: 1",
        "mesh:",
        f"  name: {name}",
        f"  interface: {interface}",
        f"  network: {nets}",
        f"  listen_port: {listen_port}",
        f"  persistent_keepalive: {keepalive}",
        "ssh:",
        "  known_hosts: known_hosts",
    ]
    if identity_file:
        lines.append(f"  identity_file: {identity_file}")
    lines.append("nodes:")
    return "\n".join(lines) + "\n"


def entries_text(base: str, entries: Sequence[Entry]) -> str:
    text = base
    for e in entries:
        text = nodes.add_node_text(text, e.name, e.fields)
    return text


# --------------------------------------------------------------------------------------------- the shell


@dataclass(frozen=True)
class ImportOptions:
    file: Path
    targets: tuple[str, ...]
    endpoints: tuple[str, ...] = ()
    dry_run: bool = False
    # only when mesh.yaml does not exist yet and import creates it:
    networks: tuple[str, ...] = ()
    name: str | None = None
    interface: str | None = None
    identity_file: str | None = None
    connect: ConnectOptions = field(default_factory=ConnectOptions)


@dataclass(frozen=True)
class _Setup:
    ctx: Context
    base_text: str
    creating: bool
    known_hosts: Path
    identity_file: Path | None
    proxy_jump: str | None
    keepalive: int


def _resolve(directory: Path, text: str) -> Path:
    p = Path(os.path.expanduser(text))
    return p if p.is_absolute() else directory / p


def _setup(opts: ImportOptions, view: HumanView) -> _Setup:
    directory = opts.file.parent
    if not opts.file.exists():
        interface = opts.interface or config.DEFAULT_INTERFACE
        ctx = Context(interface, ())
        identity = _resolve(directory, opts.identity_file) if opts.identity_file else None
        return _Setup(ctx, "", True, directory / config.DEFAULT_KNOWN_HOSTS, identity, None,
                      config.DEFAULT_KEEPALIVE)
    given = [o for o, v in (("--network", opts.networks), ("--name", opts.name), ("--interface", opts.interface),
                            ("--identity-file", opts.identity_file)) if v]
    if given:
        raise Failure(f"{', '.join(given)} only apply when import creates {opts.file}; it exists: edit it instead")
    mesh = load_mesh(opts.file, view)
    text = nodes.read_text(opts.file)
    doc = nodes.parse(text)
    ssh = doc.get("ssh") if isinstance(doc.get("ssh"), dict) else {}
    ctx = Context(
        interface=mesh.interface,
        networks=mesh.networks,
        listen_port=mesh.listen_port,
        existing_keys={n.public_key: n.name for n in mesh.nodes if n.public_key},
        existing_names=frozenset(mesh.node_names),
        ssh_user=str(ssh.get("user") or "root"),
        ssh_port=int(ssh.get("port") or 22),
    )
    known = _resolve(directory, str(ssh.get("known_hosts") or config.DEFAULT_KNOWN_HOSTS))
    identity = _resolve(directory, str(ssh["identity_file"])) if ssh.get("identity_file") else None
    jump = str(ssh["proxy_jump"]) if ssh.get("proxy_jump") else None
    return _Setup(ctx, text, False, known, identity, jump, mesh.persistent_keepalive)


def _ssh_node(t: Target, s: _Setup) -> Node:
    ssh = Ssh(host=t.host, port=t.port or s.ctx.ssh_port, user=t.user or s.ctx.ssh_user, known_hosts=s.known_hosts,
              identity_file=s.identity_file, proxy_jump=s.proxy_jump)
    return Node(name=t.name, addresses=(), public_key=None, endpoint=None, ssh=ssh)


def _read_all(transport: Transport, targets: Sequence[Target], s: _Setup, view: HumanView) -> dict[str, NodeRead]:
    errors = dict(transport.connect([_ssh_node(t, s) for t in targets]))
    scripts = {t.name: import_script(s.ctx.interface) for t in targets if t.name not in errors}
    results = transport.run_many(scripts)
    reads: dict[str, NodeRead] = {}
    for t in targets:
        got = results.get(t.name)
        if got is None:
            continue
        if isinstance(got, str):
            errors[t.name] = got
        elif got.exit_status != 0:
            errors[t.name] = f"reading the node failed (exit {got.exit_status})"
        else:
            try:
                live, conf = parse_import_output(s.ctx.interface, got.stdout)
            except live_mod.ParseError as e:
                errors[t.name] = f"cannot understand the node's output: {e}"
                continue
            reads[t.name] = NodeRead(t, live, conf)
    if errors:
        for name, why in errors.items():
            view.error(f"{name}: {why}")
        raise Failure(f"cannot read {', '.join(errors)}; nothing was imported or changed")
    return reads


def _with_resolved(transport: Transport, mesh: Mesh, states: dict[str, LiveState]) -> dict[str, LiveState]:
    """Endpoints given as names: have each node resolve them (as plan does) so the residual diff is exact."""
    scripts = {
        name: live_mod.read_command(mesh.interface, hosts)
        for name in states
        if (hosts := resolve_hosts(mesh, mesh.node(name)))
    }
    if not scripts:
        return states
    out = dict(states)
    for name, got in transport.run_many(scripts).items():
        if isinstance(got, str) or got.exit_status != 0:
            continue
        try:
            resolved = live_mod.parse_read_output(mesh.interface, got.stdout).resolved
        except live_mod.ParseError:
            continue
        out[name] = dataclasses.replace(states[name], resolved=resolved)
    return out


def _complete(s: _Setup, reads: Mapping[str, NodeRead], opts: ImportOptions) -> _Setup:
    """For a new mesh.yaml: networks, listen port and keepalive from the live nodes, and the base text."""
    if not s.creating:
        return s
    try:
        networks = tuple(ipaddress.ip_network(n, strict=True) for n in opts.networks)
    except ValueError as e:
        raise Failure(f"--network: {e}") from None
    if not networks:
        networks = derive_networks(reads)
    ports = Counter(r.live.listen_port for r in reads.values() if r.live.listen_port)
    listen_port = ports.most_common(1)[0][0] if ports else config.DEFAULT_LISTEN_PORT
    keep = Counter(p.persistent_keepalive for r in reads.values() for p in r.live.peers.values()
                   if p.persistent_keepalive)
    keepalive = keep.most_common(1)[0][0] if keep else config.DEFAULT_KEEPALIVE
    name = opts.name or re.sub(r"[^A-Za-z0-9_.-]", "-", opts.file.resolve().parent.name).strip("-.") or "mesh"
    ctx = dataclasses.replace(s.ctx, networks=networks, listen_port=listen_port)
    identity = opts.identity_file
    base = new_mesh_text(name[:63], ctx.interface, networks, listen_port, keepalive, identity, list(reads))
    return dataclasses.replace(s, ctx=ctx, base_text=base, keepalive=keepalive)


def run_import(opts: ImportOptions, env: Environment, factory: TransportFactory | None = None) -> ExitStatus:
    view = HumanView(env)
    try:
        targets = [parse_target(t) for t in opts.targets]
        overrides = dict(parse_endpoint_override(e) for e in opts.endpoints)
    except ValueError as e:
        raise Failure(str(e)) from None
    if not targets:
        raise Failure("name the nodes to import: wgmesh import NAME=[USER@]HOST[:PORT] ...")
    names = [t.name for t in targets]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise Failure(f"node name given twice: {', '.join(dupes)}")
    unknown = [n for n in overrides if n not in names]
    if unknown:
        raise Failure(f"--endpoint {unknown[0]}: not one of the nodes being imported ({', '.join(names)})")
    setup = _setup(opts, view)
    transport = (factory or ssh_transport)(opts.connect, view.progress)
    try:
        reads = _read_all(transport, targets, setup, view)
        try:
            check_reads(reads, setup.ctx)
            setup = _complete(setup, reads, opts)
            entries, warnings = build_entries(reads, setup.ctx, overrides)
            text = entries_text(setup.base_text, entries)
            mesh = nodes.validated(text, opts.file)
        except (ImportProblem, nodes.EditError) as e:
            raise Failure(f"{e}; nothing was imported or changed") from None
        for e in entries:
            view.message(f"  + node {e.name}: {nodes.describe(mesh, e.name)}")
        for w in warnings:
            view.warning(w)
        states = _with_resolved(transport, mesh, {e.name: reads[e.name].live for e in entries})
        for e in entries:
            for line in residual(mesh, e.name, states[e.name]):
                view.warning(f"{e.name}: the first plan will still show {line}")
        if opts.dry_run:
            view.message(f"Dry run: nothing was changed on the nodes or in {opts.file}.")
            return ExitStatus.OK
        confs = {e.name: render_node(mesh, e.name) for e in entries}
        results = transport.run_many({e.name: adopt_script(mesh.interface, e.public_key, confs[e.name])
                                      for e in entries})
    finally:
        transport.close()
    return _finish(opts, view, setup, entries, results, mesh)


def _finish(opts: ImportOptions, view: HumanView, setup: _Setup, entries: Sequence[Entry],
            results: Mapping[str, Any], mesh: Mesh) -> ExitStatus:
    key_path, conf_path = mesh.key_path(), mesh.conf_path()
    done: list[Entry] = []
    failed: dict[str, str] = {}
    for e in entries:
        got = results.get(e.name)
        if isinstance(got, str) or got is None:
            failed[e.name] = got or "no answer"
            continue
        if got.exit_status != 0:
            err = [ln.strip() for ln in got.stderr.splitlines() if ln.strip()]
            failed[e.name] = err[-1] if err else f"exit status {got.exit_status}"
            continue
        try:
            where = parse_adopt_output(got.stdout)
        except ValueError as exc:
            failed[e.name] = str(exc)
            continue
        done.append(e)
        moved = {
            "kept": f"{key_path} already held its key",
            "config": f"moved its private key from the PrivateKey line of {conf_path} to {key_path} (on the node)",
            "interface": f"saved the interface's private key to {key_path} (on the node)",
        }[where]
        view.message(f"  {e.name}: {moved}; wrote wgmesh's {conf_path} (the previous one, without a PrivateKey "
                     f"line, is {conf_path}{BACKUP_SUFFIX})")
    for name, why in failed.items():
        view.error(f"{name}: {why}")
    if done:
        # an existing file is edited as it is now: it may have changed while the nodes answered
        try:
            text = entries_text(setup.base_text if setup.creating else nodes.read_text(opts.file), done)
            nodes.validated(text, opts.file)
            nodes.write_text(opts.file, text)
        except (nodes.EditError, OSError) as exc:
            raise Failure(f"cannot write {opts.file}: {exc}") from None
        verb = "Created" if setup.creating else "Updated"
        view.message(f"{verb} {opts.file}: imported {len(done)} node(s). Next: `wgmesh plan` "
                     "(it should show no changes for them).")
    if failed:
        raise Failure(f"import failed on {len(failed)} node(s): {', '.join(failed)}"
                      + ("" if done else "; nothing was written"))
    return ExitStatus.OK
