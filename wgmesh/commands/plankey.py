"""`wgmesh plan-key PUBKEY_FILE [--remove]`: give CI's plan job a key that can read the mesh and do nothing else.

With the admin key's normal transport, on every node (or `--target` ones): scripts/plankey.sh installs the read
script (remote/plankey.py), a sudoers drop-in when the login user is not root, and the key's authorized_keys
line `restrict,command="[sudo -n ]/etc/wireguard/wgmesh-read-IF.sh" TYPE KEY wgmesh-plan-key`. `--remove`
takes all three away. `wgmesh plan` then shows on every node whether it has the key (core/plankey.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from wgmesh.commands.common import (
    ConnectOptions,
    ExitStatus,
    Failure,
    TransportFactory,
    load_mesh,
    open_transport,
    select_nodes,
)
from wgmesh.core.render import resolve_hosts
from wgmesh.remote import plankey
from wgmesh.remote.transport import APPLY_TIMEOUT, CommandResult
from wgmesh.views import make_view
from wgmesh.views.env import Environment


@dataclass(frozen=True)
class PlanKeyOptions:
    file: Path
    public_key: Path
    remove: bool = False
    authorized_keys: str | None = None
    connect: ConnectOptions = field(default_factory=ConnectOptions)


def read_public_key(path: Path) -> plankey.PublicKey:
    try:
        with path.open("rb") as f:
            data = f.read(plankey.MAX_PUBKEY_FILE + 1)
    except OSError as e:
        raise Failure(f"cannot read {path}: {e.strerror or e}") from None
    if len(data) > plankey.MAX_PUBKEY_FILE:
        raise Failure(f"{path}: not a public key file (larger than {plankey.MAX_PUBKEY_FILE >> 10} KiB)")
    try:
        return plankey.parse_public_key(data.decode("utf-8", errors="replace"))
    except ValueError as e:
        raise Failure(f"{path}: {e}") from None


def _failure(got: CommandResult) -> str:
    tail = got.stderr.strip().splitlines()[-1:] or [got.status_text]
    return tail[0]


def run_plan_key(opts: PlanKeyOptions, env: Environment, factory: TransportFactory | None = None) -> ExitStatus:
    view = make_view(env)
    mesh = load_mesh(opts.file, view)
    key = None if opts.remove else read_public_key(opts.public_key)
    if opts.authorized_keys is not None:
        try:
            plankey.check_authorized_keys(opts.authorized_keys)
        except ValueError as e:
            raise Failure(str(e)) from None
    nodes = select_nodes(mesh, opts.connect.targets)
    action = "remove" if opts.remove else "install"
    scripts = {
        n.name: plankey.plankey_script(mesh.interface, action, key=key, authorized_keys=opts.authorized_keys,
                                       hosts=resolve_hosts(mesh, n))
        for n in nodes
    }
    transport = open_transport(factory, opts.connect, view, env)
    try:
        errors = dict(transport.connect(nodes))
        ran = transport.run_many({n: s for n, s in scripts.items() if n not in errors}, APPLY_TIMEOUT)
    finally:
        transport.close()
    done: dict[str, plankey.PlanKeyReport] = {}
    for name, got in ran.items():
        if isinstance(got, str):
            errors[name] = got
        elif got.exit_status != 0:
            errors[name] = _failure(got)
        else:
            try:
                done[name] = plankey.parse_plankey_output(got.stdout)
            except ValueError as e:
                errors[name] = str(e)
    width = max((len(n.name) for n in nodes), default=0)
    for n in nodes:
        if n.name in done:
            r = done[n.name]
            how = "through sudo" if r.via == "sudo" else "as root" if r.via == "root" else ""
            view.message(f"{n.name.ljust(width)}  {r.action} for {r.user}{' ' + how if how else ''} "
                         f"({r.authorized_keys})")
    for name, why in errors.items():
        view.error(f"node {name}: {why}")
    what = f"plan key {key.fingerprint}" if key else "plan key"
    if done:
        verb = "removed from" if opts.remove else "installed on"
        view.message(f"\nThe {what} {verb} {len(done)} node(s).")
        if not opts.remove:
            view.message("CI's plan job logs in with its private half (the secret WGMESH_PLAN_SSH_KEY of the "
                         "generated workflow): WGMESH_SSH_IDENTITY=PRIVATE_KEY_FILE wgmesh plan")
    if errors:
        raise Failure(f"plan-key failed on {len(errors)} node(s): {', '.join(errors)}")
    return ExitStatus.OK
