"""`wgmesh enroll` and `wgmesh rotate`: a node's key pair is made on the node; only public keys travel.

The script builders are pure; `run_enroll` and `run_rotate` are the shell. On the node:
- enroll: if IF.key is absent, `wg genkey` into a temporary file (umask 077, so mode 600) that is then
  hard-linked to IF.key (atomic, never replaces a key that appeared meanwhile); print `wg pubkey < IF.key`.
  An existing key is left as it is: enroll only records its public key.
- rotate: under the lock apply takes (/run/wireguard/wgmesh-IF.lock), check that IF.key still has the
  public key mesh.yaml records, write a new key to a temporary file (mode 600), rename it over IF.key,
  print its public key. The running interface keeps the old key in memory and is not touched: the next
  `wgmesh apply` switches the node (wg syncconf with the new IF.key) and all its peers together.
  No copy of the old private key is kept anywhere: if the apply never comes, `wgmesh enroll NAME`
  records the new key and the rotation simply happens at the next apply; apply's own rollback uses its
  runtime snapshot, not the key file.
The private key is never printed, never put on a command line, and never sent over SSH.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from wgmesh import nodes
from wgmesh.commands.common import ConnectOptions, ExitStatus, Failure, TransportFactory, load_mesh, ssh_transport
from wgmesh.core.model import Mesh, Node
from wgmesh.remote.keys import KeyReport, enroll_script, node_failure, parse_key_output, rotate_script
from wgmesh.remote.transport import Transport
from wgmesh.views.env import Environment
from wgmesh.views.human import HumanView


def quote_key(key: str | None) -> str:
    return f'"{key}"' if key else "(none)"


@dataclass(frozen=True)
class KeyOptions:
    file: Path
    names: tuple[str, ...] = ()
    all_nodes: bool = False
    connect: ConnectOptions = field(default_factory=ConnectOptions)


def _select(mesh: Mesh, opts: KeyOptions, verb: str) -> list[Node]:
    if opts.all_nodes and opts.names:
        raise Failure("give node names or --all, not both")
    if not opts.all_nodes and not opts.names:
        raise Failure(f"name the node(s) to {verb} ({', '.join(mesh.node_names) or 'none in the file'}), or --all")
    if opts.all_nodes:
        return [n for n in mesh.nodes if not n.decommission]
    unknown = [n for n in opts.names if n not in mesh.node_names]
    if unknown:
        raise Failure(f"no node {unknown[0]!r} in {mesh.path.name} (nodes: {', '.join(mesh.node_names)})")
    return [mesh.node(n) for n in dict.fromkeys(opts.names)]


def _run_on(
    mesh: Mesh,
    targets: Sequence[Node],
    scripts: dict[str, str],
    opts: KeyOptions,
    view: HumanView,
    factory: TransportFactory | None,
) -> tuple[dict[str, KeyReport], dict[str, str]]:
    """Connect and run one script per node; ({name: report}, {name: error})."""
    transport: Transport = (factory or ssh_transport)(opts.connect, view.progress)
    try:
        errors = dict(transport.connect(targets))
        results = transport.run_many({n: s for n, s in scripts.items() if n not in errors})
    finally:
        transport.close()
    reports: dict[str, KeyReport] = {}
    for name, got in results.items():
        if isinstance(got, str):
            errors[name] = got
        elif got.exit_status != 0:
            errors[name] = node_failure(got)
        else:
            try:
                reports[name] = parse_key_output(got.stdout)
            except ValueError as e:
                errors[name] = str(e)
    return reports, errors


def _write_keys(path: Path, keys: dict[str, str]) -> None:
    """Edit the file as it is now (it may have changed while the nodes answered), validate, write."""
    new_text = nodes.set_public_keys_text(nodes.read_text(path), keys)
    nodes.validated(new_text, path)
    nodes.write_text(path, new_text)


def _finish(view: HumanView, verb: str, errors: dict[str, str]) -> ExitStatus:
    for name, why in errors.items():
        view.error(f"{name}: {why}")
    if errors:
        raise Failure(f"{verb} failed on {len(errors)} node(s): {', '.join(errors)}")
    return ExitStatus.OK


def run_enroll(opts: KeyOptions, env: Environment, factory: TransportFactory | None = None) -> ExitStatus:
    """Make each node's key on the node if it has none; record every node's public key in mesh.yaml."""
    view = HumanView(env)
    mesh = load_mesh(opts.file, view)
    targets = _select(mesh, opts, "enroll")
    scripts = {n.name: enroll_script(mesh.interface) for n in targets}
    reports, errors = _run_on(mesh, targets, scripts, opts, view, factory)
    changed: dict[str, str] = {}
    key_path = mesh.key_path()
    for node in targets:
        report = reports.get(node.name)
        if report is None:
            continue
        made = f"created {key_path}" if report.status == "created" else f"{key_path} exists"
        if report.mode not in (None, "600", "400", "unknown"):
            view.warning(f"{node.name}: {key_path} has mode {report.mode}; it should be 600 (chmod 600 {key_path})")
        if node.public_key == report.public_key:
            view.message(f"  {node.name}: {made}; public_key already recorded (no change)")
            continue
        changed[node.name] = report.public_key
        view.message(f"  ~ {node.name}: {made}; public_key {quote_key(node.public_key)} -> "
                     f"{quote_key(report.public_key)}")
    if changed:
        try:
            _write_keys(opts.file, changed)
        except nodes.EditError as e:
            raise Failure(f"{e}; nothing was written to {opts.file}") from None
        view.message(f"Wrote {len(changed)} public key(s) to {opts.file}. Next: `wgmesh plan`, then `wgmesh apply`.")
    elif reports:
        view.message(f"No changes to {opts.file}.")
    return _finish(view, "enroll", errors)


def run_rotate(opts: KeyOptions, env: Environment, factory: TransportFactory | None = None) -> ExitStatus:
    """Give each node a new key on the node; record the new public keys in mesh.yaml."""
    view = HumanView(env)
    mesh = load_mesh(opts.file, view)
    targets = _select(mesh, opts, "rotate")
    for node in targets:
        if node.decommission:
            raise Failure(f"{node.name} is being decommissioned (decommission: true): there is no key to rotate")
        if node.public_key is None:
            raise Failure(f"{node.name} is not enrolled (no public_key in {opts.file}): run `wgmesh enroll "
                          f"{node.name}` first")
    scripts = {n.name: rotate_script(mesh.interface, n.public_key or "") for n in targets}
    reports, errors = _run_on(mesh, targets, scripts, opts, view, factory)
    changed = {name: r.public_key for name, r in reports.items()}
    for node in targets:
        if node.name in changed:
            view.message(f"  ~ {node.name}: new key in {mesh.key_path()}; public_key "
                         f"{quote_key(node.public_key)} -> {quote_key(changed[node.name])}")
    if changed:
        try:
            _write_keys(opts.file, changed)
        except (nodes.EditError, OSError) as e:
            names = " ".join(changed)
            raise Failure(f"{e}; the node(s) {names} have new keys that {opts.file} does not record: "
                          f"run `wgmesh enroll {names}` to record them") from None
        names = ", ".join(changed)
        view.message(f"Wrote {len(changed)} new public key(s) to {opts.file}. The running interface of {names} "
                     "keeps its old key until `wgmesh apply` switches it and its peers together.")
    return _finish(view, "rotate", errors)
