"""The scripts that converge one node, built from its plan's typed steps (core/steps.py); what their failures mean.

Pure: the steps become calls of the functions in scripts/apply.sh. `commands/converge.py` runs them.

On a node, one script does everything under a lock (flock on /run/wireguard/wgmesh-IF.lock):
1. snapshot the runtime (`wg showconf` into /run/wireguard, mode 600: the private key stays on the node)
   and keep the previous IF.conf as IF.conf.wgmesh-prev;
2. write IF.conf atomically (temp file + rename, mode 600, no PrivateKey line, never SaveConfig);
3. interface absent: `wg-quick up IF`; present: `wg syncconf IF` with a config whose PrivateKey is read
   from IF.key *on the node* and whose ListenPort is set, so neither is ever zeroed;
4. reconcile what syncconf does not touch: addresses, MTU, link state, routes, and keepalives or
   preshared keys that syncconf keeps when they are left out;
5. print the re-read live state, which the controller diffs against the desired state.
Any failing command rolls the node back from the snapshot (trap on EXIT) before the script ends.
"""

from __future__ import annotations

import json
import shlex

from wgmesh.core.model import KEY_DIR, RUN_DIR, Mesh, Node
from wgmesh.core.plan import NodePlan
from wgmesh.core.render import resolve_hosts
from wgmesh.core.steps import Step, StepKind
from wgmesh.remote import read as live_mod
from wgmesh.remote import shell
from wgmesh.remote.shell import DEFAULT_LOCK_TIMEOUT, LOCK_EXIT, NO_FLOCK_EXIT
from wgmesh.remote.transport import CommandResult

VERIFY_MARK = "@@wgmesh:verify"


def _values(mesh: Mesh, lock_timeout: int) -> dict[str, str | int]:
    """The values every apply-family script gets: the node-side paths and the lock."""
    i = mesh.interface
    return {
        **shell.node_paths(i),
        "PREV": f"{KEY_DIR}/{i}.conf.wgmesh-prev",
        "TMP": f"{KEY_DIR}/.{i}.conf.wgmesh-tmp",
        "SNAP": f"{RUN_DIR}/wgmesh-{i}.snapshot",
        "LOG": f"{RUN_DIR}/wgmesh-{i}.log",
        "UNDO": f"{RUN_DIR}/wgmesh-{i}.undo",
        "WGM_LOCK": shell.lock_path(i),
        "WGM_LOCK_TIMEOUT": int(lock_timeout),
    }


def _functions() -> str:
    return shell.source("apply.sh")


_HEREDOC_TAGS = {StepKind.WRITE_CONFIG: "__WGMESH_CONF__", StepKind.SYNC_PEERS: "__WGMESH_SYNC__"}
_NO_VALUE = {StepKind.INTERFACE_UP, StepKind.LINK_UP, StepKind.ENABLE_UNIT, StepKind.REMOVE_INTERFACE,
             StepKind.ADD_FORWARD_RULES, StepKind.DELETE_FORWARD_RULES}


def _hook_lines(step: Step, interface: str) -> str:
    """The user's changed hooks: the old PostDown lines, then (after recording how to undo them: the new
    PostDown lines, then the old PostUp lines) the new PostUp lines. `%i` is the interface, as in wg-quick."""
    hooks = {k: [c.replace("%i", interface) for c in v] for k, v in json.loads(step.value).items()}
    q = shlex.quote
    undo = "; ".join(f"bash -c {q(c)} >/dev/null 2>&1 </dev/null || true"
                     for c in [*hooks["new_down"], *hooks["old_up"]])
    lines = [f"wgm_hook PostDown {q(c)}" for c in hooks["old_down"]]
    if undo:
        lines.append(f"wgm_did {q(undo)}")
    lines += [f"wgm_hook PostUp {q(c)}" for c in hooks["new_up"]]
    return "\n".join(lines) or ":"


def step_call(step: Step, interface: str = "") -> str:
    """The shell line that runs one plan step: `wgm_<kind>` with its value (a heredoc for texts)."""
    if step.kind is StepKind.RUN_HOOKS:
        return _hook_lines(step, interface)
    fn = f"wgm_{step.kind.value}"
    if step.kind in _HEREDOC_TAGS:
        return f"{fn} {shell.heredoc(_HEREDOC_TAGS[step.kind], step.value)}"
    if step.kind in _NO_VALUE:
        return fn
    return f"{fn} {shlex.quote(step.value)}"


def apply_script(
    mesh: Mesh, node: Node, plan: NodePlan, *, lock_timeout: int = DEFAULT_LOCK_TIMEOUT
) -> str:
    """The script that converges one node: its plan's steps, in order, under the node lock (see above)."""
    kinds = {s.kind for s in plan.steps}
    out = [shell.script("apply", **_values(mesh, lock_timeout)).rstrip("\n"), "wgm_lock"]
    if StepKind.REMOVE_INTERFACE in kinds:
        out += [step_call(s, mesh.interface) for s in plan.steps]
    else:
        out.append(f"wgm_expect_interface {'absent' if StepKind.INTERFACE_UP in kinds else 'present'}")
        out.append("wgm_begin")
        out += [step_call(s, mesh.interface) for s in plan.steps]
        out.append("wgm_finish")
    out.append("set +e")
    out.append(f"echo {VERIFY_MARK}")
    out.append(live_mod.read_command(mesh.interface, resolve_hosts(mesh, node)))
    return "\n".join(out)


def rollback_script(mesh: Mesh, *, lock_timeout: int = DEFAULT_LOCK_TIMEOUT) -> str:
    """Run when verification failed: undo what the apply recorded (addresses, routes, MTU, a new
    interface), then the previous config file and the runtime state from the snapshot."""
    return shell.script("rollback", **_values(mesh, lock_timeout))


def cleanup_script(mesh: Mesh, *, lock_timeout: int = DEFAULT_LOCK_TIMEOUT) -> str:
    """After a verified apply: forget the snapshot and the undo log, under the lock (another apply that took
    the lock since may have written its own)."""
    return shell.script("cleanup", **_values(mesh, lock_timeout))


def _failure(result: CommandResult) -> str:
    if result.exit_status == -1:
        return "the connection was lost during apply; run wgmesh plan to see where the node stands"
    if result.exit_status in (LOCK_EXIT, NO_FLOCK_EXIT):
        return result.stderr.strip().splitlines()[-1] if result.stderr.strip() else "lock timeout"
    err = [ln for ln in result.stderr.strip().splitlines() if ln.strip()]
    tail = "; ".join(err[-3:]) if err else f"exit status {result.exit_status}"
    return f"apply failed (exit {result.exit_status}): {tail}"
