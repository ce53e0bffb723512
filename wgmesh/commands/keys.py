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
from typing import Literal

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
from wgmesh.core.model import Mesh, Node, command_line
from wgmesh.remote.keys import KeyReport, enroll_script, node_failure, parse_key_output, rotate_script
from wgmesh.remote.transport import APPLY_TIMEOUT, Transport
from wgmesh.views import make_view
from wgmesh.views.base import View
from wgmesh.views.env import Environment
from wgmesh.views.keyreports import KeysReport, NodeKey


@dataclass(frozen=True)
class KeyOptions:
    file: Path
    names: tuple[str, ...] = ()
    all_nodes: bool = False
    connect: ConnectOptions = field(default_factory=ConnectOptions)
    json: bool = False


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
    view: View,
    env: Environment,
    factory: TransportFactory | None,
) -> tuple[dict[str, KeyReport], dict[str, str]]:
    """Connect and run one script per node; ({name: report}, {name: error})."""
    transport: Transport = open_transport(factory or ssh_transport, opts.connect, view, env)
    try:
        errors = dict(transport.connect(targets))
        results = transport.run_many({n: s for n, s in scripts.items() if n not in errors}, APPLY_TIMEOUT)
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
    with meshfile.editing(path):
        new_text = meshfile.set_public_keys_text(meshfile.read_text(path), keys)
        meshfile.validated(new_text, path)
        meshfile.write_text(path, new_text)


def _finish(verb: str, errors: dict[str, str]) -> ExitStatus:
    """The view has named each failed node and why; the run fails when any did."""
    if errors:
        raise Failure(f"{verb} failed on {len(errors)} node(s): {', '.join(errors)}")
    return ExitStatus.OK


def _keys_report(
    command: Literal["enroll", "rotate"], mesh: Mesh, file: Path, targets: Sequence[Node],
    reports: dict[str, KeyReport], errors: dict[str, str], written: bool,
) -> KeysReport:
    answered = tuple(
        NodeKey(n.name, reports[n.name].status, reports[n.name].public_key, n.public_key, reports[n.name].mode,
                reports[n.name].running)
        for n in targets
        if n.name in reports
    )
    return KeysReport(command, file, mesh.key_path(), answered, dict(errors), written)


def run_enroll(opts: KeyOptions, env: Environment, factory: TransportFactory | None = None) -> ExitStatus:
    """Make each node's key on the node if it has none; record every node's public key in mesh.yaml."""
    view = make_view(env, opts.json)
    mesh = load_mesh(opts.file, view)
    targets = _select(mesh, opts, "enroll")
    scripts = {n.name: enroll_script(mesh.interface) for n in targets}
    reports, errors = _run_on(mesh, targets, scripts, opts, view, env, factory)
    changed = {n.name: reports[n.name].public_key for n in targets
               if n.name in reports and n.public_key != reports[n.name].public_key}
    failure: Failure | None = None
    if changed:
        try:
            _write_keys(opts.file, changed)
        except meshfile.EditError as e:
            failure = Failure(f"{e}; nothing was written to {opts.file}")
        except OSError as e:  # the nodes have their keys: enroll reads them again once the file can be written
            names = " ".join(changed)
            again = command_line("enroll " + names, opts.file)
            failure = Failure(f"cannot write {opts.file}: {e.strerror or e}; the node(s) {names} have keys that it "
                              f"does not record: run `{again}` again once it can be written")
    view.keys(_keys_report("enroll", mesh, opts.file, targets, reports, errors, bool(changed) and not failure))
    if failure is not None:
        raise failure
    return _finish("enroll", errors)


def run_rotate(opts: KeyOptions, env: Environment, factory: TransportFactory | None = None) -> ExitStatus:
    """Give each node a new key on the node; record the new public keys in mesh.yaml."""
    view = make_view(env, opts.json)
    mesh = load_mesh(opts.file, view)
    targets = _select(mesh, opts, "rotate")
    for node in targets:
        if node.decommission:
            raise Failure(f"{node.name} is being decommissioned (decommission: true): its key leaves the mesh with "
                          "it; remove `decommission: true` first to rotate it")
        if node.public_key is None:
            raise Failure(f"{node.name} is not enrolled (no public_key in {opts.file}): run "
                          f"`{command_line('enroll ' + node.name, opts.file)}` first")
    scripts = {n.name: rotate_script(mesh.interface, n.public_key or "") for n in targets}
    reports, errors = _run_on(mesh, targets, scripts, opts, view, env, factory)
    changed = {name: r.public_key for name, r in reports.items()}
    failure: Failure | None = None
    if changed:
        try:
            _write_keys(opts.file, changed)
        except (meshfile.EditError, OSError) as e:
            names = " ".join(changed)
            failure = Failure(f"{e}; the node(s) {names} have new keys that {opts.file} does not record: "
                              f"run `{command_line('enroll ' + names, opts.file)}` to record them")
    view.keys(_keys_report("rotate", mesh, opts.file, targets, reports, errors, bool(changed) and not failure))
    if failure is not None:
        raise failure
    return _finish("rotate", errors)
