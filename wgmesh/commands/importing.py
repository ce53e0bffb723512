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
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wgmesh import meshfile
from wgmesh.commands.common import (
    ConnectOptions,
    ExitStatus,
    Failure,
    TransportFactory,
    load_mesh,
    open_transport,
    ssh_transport,
)
from wgmesh.commands.nodes import describe
from wgmesh.core.adopt import (
    Context,
    Entry,
    ImportProblem,
    NodeRead,
    Target,
    build_entries,
    check_reads,
    derive_networks,
    parse_endpoint_override,
    parse_target,
    residual,
)
from wgmesh.core.model import (
    DEFAULT_INTERFACE,
    DEFAULT_KEEPALIVE,
    DEFAULT_KNOWN_HOSTS,
    DEFAULT_LISTEN_PORT,
    DEFAULT_SSH_PORT,
    IPNetwork,
    Mesh,
    Node,
    Ssh,
    SshTarget,
)
from wgmesh.core.render import render_node, resolve_hosts
from wgmesh.core.state import LiveState, WgQuick
from wgmesh.meshfile.schema import interface_problem
from wgmesh.remote import read as live_mod
from wgmesh.remote.adopt import BACKUP_SUFFIX, adopt_script, import_script, parse_adopt_output, parse_import_output
from wgmesh.remote.transport import APPLY_TIMEOUT, READ_TIMEOUT, Transport, deadline_of
from wgmesh.views import make_view
from wgmesh.views.base import View
from wgmesh.views.env import Environment
from wgmesh.views.keyreports import ImportEntry, ImportReport


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
        text = meshfile.add_node_text(text, e.name, e.fields)
    return text


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
    json: bool = False


@dataclass(frozen=True)
class _Setup:
    ctx: Context
    base_text: str
    creating: bool
    known_hosts: Path
    identity_file: Path | None
    proxy_jump: SshTarget | None
    keepalive: int
    sudo: bool | None = None


def _resolve(directory: Path, text: str) -> Path:
    p = Path(os.path.expanduser(text))
    return p if p.is_absolute() else directory / p


def _setup(opts: ImportOptions, view: View) -> _Setup:
    directory = opts.file.parent
    if not opts.file.exists():
        interface = opts.interface or DEFAULT_INTERFACE
        problem = interface_problem(interface)
        if problem is not None:  # before any node is read (`all` would read every interface of the node)
            raise Failure(f"--interface: {problem}")
        ctx = Context(interface, ())
        identity = _resolve(directory, opts.identity_file) if opts.identity_file else None
        return _Setup(ctx, "", True, directory / DEFAULT_KNOWN_HOSTS, identity, None,
                      DEFAULT_KEEPALIVE)
    given = [o for o, v in (("--network", opts.networks), ("--name", opts.name), ("--interface", opts.interface),
                            ("--identity-file", opts.identity_file)) if v]
    if given:
        raise Failure(f"{', '.join(given)} only apply when import creates {opts.file}; it exists: edit it instead")
    mesh = load_mesh(opts.file, view)
    text = meshfile.read_text(opts.file)
    ssh = mesh.ssh  # the mesh-wide ssh: section, validated by the loader (paths included)
    ctx = Context(
        interface=mesh.interface,
        networks=mesh.networks,
        listen_port=mesh.listen_port,
        existing_keys={n.public_key: n.name for n in mesh.nodes if n.public_key},
        existing_names=frozenset(mesh.node_names),
        ssh_user=ssh.user,
        ssh_port=ssh.port,
    )
    known = _resolve(directory, str(ssh.known_hosts))
    identity = _resolve(directory, str(ssh.identity_file)) if ssh.identity_file else None
    return _Setup(ctx, text, False, known, identity, ssh.proxy_jump, mesh.persistent_keepalive, ssh.sudo)


def _ssh_node(t: Target, s: _Setup) -> Node:
    user = t.user or s.ctx.ssh_user
    jump = s.proxy_jump
    if jump is not None:
        jump = dataclasses.replace(jump, user=jump.user or user, port=jump.port or DEFAULT_SSH_PORT)
    ssh = Ssh(host=t.host, port=t.port or s.ctx.ssh_port, user=user, known_hosts=s.known_hosts,
              identity_file=s.identity_file, proxy_jump=jump, sudo=s.sudo)
    return Node(name=t.name, addresses=(), public_key=None, endpoint=None, ssh=ssh)


def _read_all(transport: Transport, targets: Sequence[Target], s: _Setup, view: View) -> dict[str, NodeRead]:
    errors = dict(transport.connect([_ssh_node(t, s) for t in targets]))
    deadline = deadline_of(transport, READ_TIMEOUT)
    scripts = {t.name: import_script(s.ctx.interface, deadline=deadline) for t in targets if t.name not in errors}
    results = transport.run_many(scripts, READ_TIMEOUT)
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
        raise _Unread(f"cannot read {', '.join(errors)}; nothing was imported or changed", errors)
    return reads


class _Unread(Failure):
    """Nodes that could not be read (each one named, with why)."""

    def __init__(self, message: str, errors: Mapping[str, str]) -> None:
        super().__init__(message)
        self.errors = dict(errors)


def _with_resolved(transport: Transport, mesh: Mesh, states: dict[str, LiveState]) -> dict[str, LiveState]:
    """Endpoints given as names: have each node resolve them (as plan does) so the residual diff is exact."""
    scripts = {
        name: live_mod.read_command(mesh.interface, hosts, deadline=deadline_of(transport, READ_TIMEOUT))
        for name in states
        if (hosts := resolve_hosts(mesh, mesh.node(name)))
    }
    if not scripts:
        return states
    out = dict(states)
    for name, got in transport.run_many(scripts, READ_TIMEOUT).items():
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
    listen_port = ports.most_common(1)[0][0] if ports else DEFAULT_LISTEN_PORT
    keep = Counter(p.persistent_keepalive for r in reads.values() for p in r.live.peers.values()
                   if p.persistent_keepalive)
    keepalive = keep.most_common(1)[0][0] if keep else DEFAULT_KEEPALIVE
    name = opts.name or re.sub(r"[^A-Za-z0-9_.-]", "-", opts.file.resolve().parent.name).strip("-.") or "mesh"
    ctx = dataclasses.replace(s.ctx, networks=networks, listen_port=listen_port)
    identity = opts.identity_file
    base = new_mesh_text(name[:63], ctx.interface, networks, listen_port, keepalive, identity, list(reads))
    return dataclasses.replace(s, ctx=ctx, base_text=base, keepalive=keepalive)


def run_import(opts: ImportOptions, env: Environment, factory: TransportFactory | None = None) -> ExitStatus:
    view = make_view(env, opts.json)
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
    transport = open_transport(factory or ssh_transport, opts.connect, view, env)
    try:
        try:
            reads = _read_all(transport, targets, setup, view)
            try:
                check_reads(reads, setup.ctx)
                setup = _complete(setup, reads, opts)
                entries, warnings = build_entries(reads, setup.ctx, overrides)
                text = entries_text(setup.base_text, entries)
                mesh = meshfile.validated(text, opts.file)
            except (ImportProblem, meshfile.EditError) as e:
                raise Failure(f"{e}; nothing was imported or changed") from None
        except Failure as e:
            if opts.json:  # the document says why too (the Error line still goes to stderr)
                view.import_result(ImportReport(opts.file, setup.creating, opts.dry_run, (),
                                                failed=getattr(e, "errors", {}), error=str(e)))
            raise
        states = _with_resolved(transport, mesh, {e.name: reads[e.name].live for e in entries})
        left = {e.name: residual(mesh, e.name, states[e.name]) for e in entries}
        # wgmesh's config replaces the node's own only where that changes nothing, now or at its next start: no
        # change left for the first plan, no setting wgmesh leaves out. Elsewhere the node keeps its config (a
        # restart must not drop what mesh.yaml does not list yet) and the first apply replaces it, as planned.
        keep_conf = tuple(e.name for e in entries if left[e.name] or (reads[e.name].conf or WgQuick()).ignored)
        report = ImportReport(
            opts.file,
            setup.creating,
            opts.dry_run,
            tuple(ImportEntry(e.name, describe(mesh, e.name), e.public_key, e.fields) for e in entries),
            tuple(warnings),
            tuple((e.name, line) for e in entries for line in left[e.name]),
            key_path=mesh.key_path(),
            conf_path=mesh.conf_path(),
            backup_suffix=BACKUP_SUFFIX,
            config_kept=keep_conf,
        )
        view.import_entries(report)
        if opts.dry_run:
            view.import_result(report)
            return ExitStatus.OK
        confs = {e.name: render_node(mesh, e.name) for e in entries}
        results = transport.run_many({e.name: adopt_script(mesh.interface, e.public_key, confs[e.name],
                                                           write_conf=e.name not in keep_conf)
                                      for e in entries}, APPLY_TIMEOUT)
    finally:
        transport.close()
    return _finish(opts, view, setup, entries, results, report)


def _finish(opts: ImportOptions, view: View, setup: _Setup, entries: Sequence[Entry],
            results: Mapping[str, Any], report: ImportReport) -> ExitStatus:
    done: list[Entry] = []
    sources: list[tuple[str, str]] = []
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
        sources.append((e.name, where))
    failure: Failure | None = None
    fresh = setup.creating
    if done:
        # an existing file is edited as it is now: it may have changed while the nodes answered, and one this
        # import set out to create may have been made meanwhile (another import at once): its nodes are kept
        try:
            with meshfile.editing(opts.file):
                fresh = setup.creating and not opts.file.exists()
                text = entries_text(setup.base_text if fresh else meshfile.read_text(opts.file), done)
                meshfile.validated(text, opts.file)
                meshfile.write_text(opts.file, text)
        except (meshfile.EditError, OSError) as exc:
            failure = Failure(f"cannot write {opts.file}: {exc}; {', '.join(e.name for e in done)} took part already "
                              f"(each one's key is in {setup.ctx.interface}.key on it): once the file can be "
                              "written, run the same import again, which finds the keys in place")
    view.import_result(dataclasses.replace(report, creating=fresh, adopted=tuple(sources), failed=failed,
                                           written=bool(done) and failure is None,
                                           error=None if failure is None else str(failure)))
    if failure is not None:
        raise failure
    if failed:
        raise Failure(f"import failed on {len(failed)} node(s): {', '.join(failed)}"
                      + ("" if done else "; nothing was written"))
    return ExitStatus.OK
