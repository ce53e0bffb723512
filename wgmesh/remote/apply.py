"""The scripts that converge one node, built from its plan's typed steps (core/steps.py); what their failures mean.

Pure: the steps become calls of the functions in scripts/apply.sh. `commands/converge.py` runs them.

One apply run (RUN: a word the controller chooses, naming the run's files on the node) is, on the node:
1. under the node lock (flock on /run/wireguard/wgmesh-IF.lock), the state is read and printed, and the script
   asks (`Transport.converse`): the controller answers `go` only if it is the state the plan was made from, and
   sends the rest of the script after it; anything else, and nothing changes;
2. snapshot the runtime (`wg showconf` without its PrivateKey and PresharedKey lines) and keep the previous
   IF.conf, both in /run/wireguard, mode 600, named after the run;
3. write IF.conf atomically (temp file + rename, mode 600, no PrivateKey line, never SaveConfig);
4. interface absent: `wg-quick up IF`; present: `wg syncconf IF` with a config whose PrivateKey is read
   from IF.key *on the node* and whose ListenPort is set, so neither is ever zeroed;
5. reconcile what syncconf does not touch (addresses, MTU, link state, routes, ...), each step recording its
   undo; any failing step rolls the node back (trap on EXIT) before the script ends;
6. save the undo record and start the revert timer (scripts/revert.sh, detached, holding the lock): unless
   the controller confirms the run (scripts/confirm.sh) over a *new* connection within CONFIRM_TIMEOUT
   seconds, the node undoes the run by itself;
7. print the re-read live state, which the controller diffs against the desired state (a difference: the
   controller's rollback, scripts/rollback.sh, on the same connection).
"""

from __future__ import annotations

import hashlib
import json
import secrets
import shlex

from wgmesh.core.model import KEY_DIR, RUN_DIR, Mesh, Node
from wgmesh.core.plan import NodePlan
from wgmesh.core.render import resolve_hosts
from wgmesh.core.steps import Step, StepKind
from wgmesh.remote import read as live_mod
from wgmesh.remote import shell
from wgmesh.remote.shell import DEFAULT_LOCK_TIMEOUT, LOCK_EXIT, NO_FLOCK_EXIT
from wgmesh.remote.transport import ASK_MARK, CommandResult

VERIFY_MARK = "@@wgmesh:verify"
STOPPED_EXIT = 3  # apply.sh wgm_wait_go: the controller did not say `go`; nothing was changed
DEFAULT_CONFIRM_TIMEOUT = 60  # seconds a node waits for the controller's confirmation before it reverts
ANSWER_TIMEOUT = 60  # seconds the apply script waits, under the lock, for the controller's `go` before it ends
assert ASK_MARK.startswith(shell.MARK)


def new_run_id() -> str:
    """A fresh name for one apply run's files on a node."""
    return secrets.token_hex(6)


def _values(
    mesh: Mesh, lock_timeout: int, run: str = "0", confirm_timeout: int = DEFAULT_CONFIRM_TIMEOUT
) -> dict[str, str | int]:
    """The values every apply-family script gets: the node-side paths, the run's files, the lock."""
    if not shell.RUN_ID.fullmatch(run):
        raise ValueError(f"run id {run!r} must be [a-z0-9]{{1,32}}")
    i = mesh.interface
    base = f"{RUN_DIR}/wgmesh-{i}.{run}"
    return {
        **shell.node_paths(i),
        "TMP": f"{KEY_DIR}/.{i}.conf.wgmesh-tmp",
        "LOG": f"{RUN_DIR}/wgmesh-{i}.log",
        "APPLIED": f"{RUN_DIR}/wgmesh-{i}.applied",  # when the last confirmed apply ended (read.sh `applied`)
        "RUN": run,
        "PREV": f"{base}.prev",
        "SNAP": f"{base}.snapshot",
        "UNDO": f"{base}.undo",
        "PENDING": f"{base}.confirm",
        "REVERTED": f"{base}.reverted",
        "REVERT_SH": f"{base}.revert.sh",
        "BUSY": f"{base}.busy",  # while the run's steps change the node (read.sh: `busy RUN`)
        "CONFIRM_TIMEOUT": int(confirm_timeout),
        "ANSWER_TIMEOUT": ANSWER_TIMEOUT,
        "WGM_LOCK": shell.lock_path(i),
        "WGM_LOCK_TIMEOUT": int(lock_timeout),
    }


def _functions() -> str:
    return shell.source("apply.sh")


_HEREDOC_TAGS = {StepKind.WRITE_CONFIG: "__WGMESH_CONF__", StepKind.SYNC_PEERS: "__WGMESH_SYNC__"}
_NO_VALUE = {StepKind.INTERFACE_UP, StepKind.LINK_UP, StepKind.ENABLE_UNIT, StepKind.REMOVE_INTERFACE,
             StepKind.REMOVE_RERESOLVE, StepKind.SAVE_PRESHARED_KEYS}


def reresolve_script(interface: str) -> str:
    """The node's re-resolution script (scripts/reresolve.sh) as apply installs it: standalone, its interface and
    config file written in, and a version line (the sha256 of the text) for a read to compare."""
    body = shell.source("reresolve.sh")
    head = shell.assignments({"IF": interface, "CONF": f"{KEY_DIR}/{interface}.conf"})
    return f"#!/bin/sh\n# wgmesh-reresolve-version: {reresolve_version(interface)}\n{head}{body}"


def reresolve_version(interface: str) -> str:
    """The version line of `reresolve_script(interface)`: what a read compares with the node's script."""
    head = shell.assignments({"IF": interface, "CONF": f"{KEY_DIR}/{interface}.conf"})
    return hashlib.sha256((head + shell.source("reresolve.sh")).encode()).hexdigest()[:16]


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
    if step.kind is StepKind.INSTALL_RERESOLVE:
        return f"wgm_install_reresolve {shell.heredoc('__WGMESH_RERESOLVE__', reresolve_script(interface))}"
    fn = f"wgm_{step.kind.value}"
    if step.kind in _HEREDOC_TAGS:
        return f"{fn} {shell.heredoc(_HEREDOC_TAGS[step.kind], step.value)}"
    if step.kind in _NO_VALUE:
        return fn
    return f"{fn} {shlex.quote(step.value)}"


class ApplyScript(str):
    """One run's apply script: as a str, its whole text (for reading; the answer line is not part of it); and
    the two parts `Transport.converse` sends: `first` (values, functions, the lock, the state under the lock,
    the question) and `rest` (after `go`: the steps, the undo record and the revert timer, the verify read)."""

    run: str
    first: str
    rest: str

    def __new__(cls, run: str, first: str, rest: str) -> ApplyScript:
        obj = super().__new__(cls, first + rest)
        obj.run, obj.first, obj.rest = run, first, rest
        return obj


def apply_script(
    mesh: Mesh,
    node: Node,
    plan: NodePlan,
    *,
    lock_timeout: int = DEFAULT_LOCK_TIMEOUT,
    confirm_timeout: int = DEFAULT_CONFIRM_TIMEOUT,
    run: str | None = None,
) -> ApplyScript:
    """The script that converges one node: its plan's steps, in order, under the node lock (see above)."""
    run = run or new_run_id()
    values = _values(mesh, lock_timeout, run, confirm_timeout)
    values["REVERT"] = shell.script("revert", **values)
    first = [
        shell.script("apply", **values).rstrip("\n"),
        "wgm_lock",
        "(",  # read.sh ends with `exit 0`: a subshell
        live_mod.read_command(mesh.interface).rstrip("\n"),
        ") || :",
        f"wgm_mark {ASK_MARK.removeprefix(shell.MARK)}",
        "wgm_wait_go",
    ]
    kinds = {s.kind for s in plan.steps}
    # one function, called once all of it has arrived: a connection cut while the steps arrive changes nothing
    # (the shell runs the lines of `sh -s` as they come, but a function only once its closing line is read)
    rest = ["wgm_steps() {"]
    if StepKind.REMOVE_INTERFACE not in kinds:
        rest.append(f"wgm_expect_interface {'absent' if StepKind.INTERFACE_UP in kinds else 'present'}")
    rest.append("wgm_begin")
    rest += [step_call(s, mesh.interface) for s in plan.steps if s.kind is not StepKind.CONFIRM_PENDING]
    rest.append("wgm_finish")
    rest += ["}", "wgm_arrived", "wgm_steps"]
    rest.append("set +e")
    rest.append(f"echo {VERIFY_MARK}")
    rest.append(live_mod.read_command(mesh.interface, resolve_hosts(mesh, node)))
    return ApplyScript(run, "\n".join(first) + "\n", "\n".join(rest))


def rollback_script(mesh: Mesh, run: str, *, lock_timeout: int = DEFAULT_LOCK_TIMEOUT) -> str:
    """Run when verification failed: the run's revert timer undoes the run now (its steps, then the previous
    config file and the runtime from the snapshot); then the state is read again, after VERIFY_MARK, for
    the controller to compare with the state before the apply."""
    return "\n".join([shell.script("rollback", **_values(mesh, lock_timeout, run)).rstrip("\n"), "set +e",
                      f"echo {VERIFY_MARK}", live_mod.read_command(mesh.interface)])


def confirm_script(mesh: Mesh, run: str, *, lock_timeout: int = DEFAULT_LOCK_TIMEOUT) -> str:
    """The confirmation of a run, sent over a new connection: `confirmed`, or `reverted` when the node's
    revert timer came first (see scripts/confirm.sh)."""
    return shell.script("confirm", **_values(mesh, lock_timeout, run))


def parse_outcome(stdout: str) -> str | None:
    """The last of `confirmed`, `reverted` or `rolledback` that a confirm or rollback script printed."""
    found = [s.name for s in shell.sections(stdout) if s.name in ("confirmed", "reverted", "rolledback")]
    return found[-1] if found else None


def _failure(result: CommandResult) -> str:
    if result.exit_status == -1:
        return "the connection was lost during apply; run wgmesh plan to see where the node stands"
    if result.exit_status in (LOCK_EXIT, NO_FLOCK_EXIT):
        return result.stderr.strip().splitlines()[-1] if result.stderr.strip() else "lock timeout"
    err = [ln for ln in result.stderr.strip().splitlines() if ln.strip()]
    tail = "; ".join(err[-3:]) if err else result.status_text
    return f"apply failed (exit {result.exit_status}): {tail}"
