"""Plan -> one shell script per node; run them through the transport; verify; roll back on failure.

The script builders are pure (tested by reading the scripts they produce); `apply_plan` is the shell.

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

import shlex

from wgmesh.core.model import Mesh, Node
from wgmesh.core.plan import NodePlan, wanted_routes
from wgmesh.core.render import InterfaceConfig, desired, render, resolve_hosts, syncconf_text
from wgmesh.core.state import LiveState
from wgmesh.remote import read as live_mod
from wgmesh.remote.transport import CommandResult

LOCK_EXIT = 75


VERIFY_MARK = "@@wgmesh-apply:verify"


DEFAULT_LOCK_TIMEOUT = 60


def _heredoc(tag: str, body: str, *, expand: bool = False) -> str:
    if f"\n{tag}\n" in f"\n{body}":
        raise ValueError("config text contains the heredoc terminator")
    quoted = tag if expand else f"'{tag}'"
    return f"<<{quoted}\n{body}{'' if body.endswith(chr(10)) else chr(10)}{tag}"


def _paths(mesh: Mesh) -> dict[str, str]:
    i = mesh.interface
    return {
        "IF": i,
        "CONF": f"/etc/wireguard/{i}.conf",
        "PREV": f"/etc/wireguard/{i}.conf.wgmesh-prev",
        "TMP": f"/etc/wireguard/.{i}.conf.wgmesh-tmp",
        "KEY": f"/etc/wireguard/{i}.key",
        "SNAP": f"/run/wireguard/wgmesh-{i}.snapshot",
        "LOCK": f"/run/wireguard/wgmesh-{i}.lock",
        "LOG": f"/run/wireguard/wgmesh-{i}.log",
        "UNDO": f"/run/wireguard/wgmesh-{i}.undo",
    }


def _preamble(mesh: Mesh, lock_timeout: int) -> str:
    p = _paths(mesh)
    assigns = "\n".join(f"{k}={shlex.quote(v)}" for k, v in p.items())
    return f"""set -eu
umask 077
{assigns}
mkdir -p /run/wireguard /etc/wireguard
exec 9>"$LOCK"
if ! flock -w {int(lock_timeout)} 9; then
  echo "another wgmesh apply holds $LOCK on this node (waited {int(lock_timeout)}s)" >&2
  exit {LOCK_EXIT}
fi
"""


def apply_script(
    mesh: Mesh, node: Node, plan: NodePlan, live: LiveState, *, lock_timeout: int = DEFAULT_LOCK_TIMEOUT
) -> str:
    """The script that converges one node (see the module docstring)."""
    out = [_preamble(mesh, lock_timeout)]
    if plan.removes_interface:
        out.append(_decommission_body())
    else:
        cfg = desired(mesh, node.name)
        out.append(_write_conf(render(cfg, mesh.name)))
        out.append(_create_body() if plan.creates_interface else _update_body(cfg, live))
        out.append(_SAVE_UNDO)
    out.append("trap - EXIT\nset +e\n")
    out.append(f"echo {VERIFY_MARK}\n")
    out.append(live_mod.read_command(mesh.interface, resolve_hosts(mesh, node)))
    return "".join(out)


# How to undo this run, newest step first: what the steps recorded with wgm_did, then the config file, then
# the runtime from the snapshot. A failing step runs it at once (trap); a successful run saves it to $UNDO,
# for the controller's rollback when verification fails. Only validated, quoted values are ever recorded.
_UNDO_HELPERS = """wgm_undo=:
wgm_did() { wgm_undo="$1; $wgm_undo"; }
"""


_SAVE_UNDO = """{
  printf '%s\\n' "$wgm_undo" "$wgm_conf_undo"
  echo 'if [ -f "$SNAP" ]; then wg syncconf "$IF" "$SNAP"; fi'
} > "$UNDO"
"""


def _write_conf(text: str) -> str:
    return f"""rm -f "$SNAP" "$UNDO"
if ip link show dev "$IF" >/dev/null 2>&1; then wg showconf "$IF" > "$SNAP"; fi
wgm_conf_undo='rm -f "$CONF"'
if [ -f "$CONF" ]; then cp -p "$CONF" "$PREV"; wgm_conf_undo='cp -p "$PREV" "$CONF"'; fi
{_UNDO_HELPERS}rollback() {{
  set +e
  eval "$wgm_undo"
  eval "$wgm_conf_undo"
  if [ -f "$SNAP" ]; then wg syncconf "$IF" "$SNAP"; fi
  rm -f "$SNAP" "$UNDO"
  echo "wgmesh: a step failed; the node was rolled back to its previous config" >&2
}}
trap 'rc=$?; if [ $rc -ne 0 ]; then rollback; fi; exit $rc' EXIT
cat > "$TMP" {_heredoc("__WGMESH_CONF__", text)}
chmod 600 "$TMP"
mv -f "$TMP" "$CONF"
"""


def _create_body() -> str:
    return """if ip link show dev "$IF" >/dev/null 2>&1; then
  echo "interface $IF appeared since the plan was made; run wgmesh plan again" >&2
  exit 1
fi
# wireguard-go stays behind as a daemon: it must not inherit the lock (fd 9) nor the SSH channel's output.
if ! wg-quick up "$IF" </dev/null >/dev/null 2>"$LOG" 9>&-; then cat "$LOG" >&2; rm -f "$LOG"; exit 1; fi
rm -f "$LOG"
wgm_did 'wg-quick down "$IF" >/dev/null 2>&1 9>&-'
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
  systemctl enable "wg-quick@$IF" >/dev/null 2>&1 || true
fi
"""


# Reconcile steps are decided again on the node, under the lock: another apply may have done them since
# this plan was read. Only what this run really changed is recorded for the rollback (newest first).
_RECONCILE_HELPERS = r"""wgm_has_addr() { ip -o address show dev "$IF" | grep -qF " $1 "; }
wgm_has_route() {  # `ip route show` lists IPv4 only unless told -6
  case "$1" in *:*) wgm_family=-6 ;; *) wgm_family=-4 ;; esac
  [ -n "$(ip "$wgm_family" -o route show table main exact "$1" dev "$IF" 2>/dev/null)" ]
}
"""


def _update_body(cfg: InterfaceConfig, live: LiveState) -> str:
    q = shlex.quote
    lines = [
        'if ! ip link show dev "$IF" >/dev/null 2>&1; then',
        '  echo "interface $IF disappeared since the plan was made; run wgmesh plan again" >&2; exit 1',
        "fi",
        'WGMESH_KEY=$(cat "$KEY")',
        'if [ "${#WGMESH_KEY}" -ne 44 ]; then echo "cannot read the private key in $KEY" >&2; exit 1; fi',
        # The key is expanded by the node's shell into the syncconf input and never leaves the node.
        f'wg syncconf "$IF" /dev/stdin {_heredoc("__WGMESH_SYNC__", syncconf_text(cfg), expand=True)}',
        "unset WGMESH_KEY",
    ]

    def step(check: str, do: str, undo: str) -> None:
        lines.append(f"if {check}; then {do}; wgm_did {q(undo)}; fi")

    def ensure(obj: str, value: object, present: bool) -> None:
        """Add (present) or delete an address or route, only if the node needs it now."""
        v = q(str(value))
        has = f"wgm_has_{'addr' if obj == 'address' else 'route'} {v}"
        add, delete = f'ip {obj} add {v} dev "$IF"', f'ip {obj} del {v} dev "$IF"'
        if present:
            step(f"! {has}", add, delete)
        else:
            step(has, delete, add)

    want_addrs = set(cfg.addresses)
    for a in sorted(want_addrs - live.addresses, key=str):
        ensure("address", a, present=True)
    for a in sorted(live.addresses - want_addrs, key=str):
        ensure("address", a, present=False)
    if cfg.mtu is not None and cfg.mtu != live.mtu:
        mtu = int(cfg.mtu)
        lines.append("""wgm_mtu=$(ip -o link show dev "$IF" | sed -n 's/.* mtu \\([0-9][0-9]*\\) .*/\\1/p')""")
        step(f'[ "$wgm_mtu" != {mtu} ]', f'ip link set mtu {mtu} dev "$IF"', 'ip link set mtu "$wgm_mtu" dev "$IF"')
    if not live.link_up:
        lines.append('ip link set up dev "$IF"')
    want_routes = wanted_routes(cfg)
    for r in sorted(want_routes - live.routes, key=str):
        ensure("route", r, present=True)
    for r in sorted(live.routes - want_routes, key=str):
        ensure("route", r, present=False)
    for p in cfg.peers:
        lp = live.peers.get(p.public_key)
        if lp is None:
            continue
        if p.persistent_keepalive == 0 and lp.persistent_keepalive:
            lines.append(f'wg set "$IF" peer {q(p.public_key)} persistent-keepalive 0')
        if lp.has_preshared_key:
            lines.append(f'wg set "$IF" peer {q(p.public_key)} preshared-key /dev/null')
    return _RECONCILE_HELPERS + "\n".join(lines) + "\n"


def _decommission_body() -> str:
    return """if [ -f "$CONF" ]; then cp -p "$CONF" "$PREV"; fi
if ip link show dev "$IF" >/dev/null 2>&1; then
  if [ -f "$CONF" ]; then wg-quick down "$IF" >/dev/null 2>&1 || ip link del dev "$IF"; else ip link del dev "$IF"; fi
fi
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
  systemctl disable "wg-quick@$IF" >/dev/null 2>&1 || true
fi
rm -f "$CONF"
"""


def rollback_script(mesh: Mesh, *, lock_timeout: int = DEFAULT_LOCK_TIMEOUT) -> str:
    """Run when verification failed: undo what the apply recorded (addresses, routes, MTU, a new
    interface), then the previous config file and the runtime state from the snapshot."""
    return _preamble(mesh, lock_timeout) + """set +e
if [ ! -f "$UNDO" ]; then echo "no record of the last apply ($UNDO) to roll back" >&2; exit 1; fi
. "$UNDO"
rm -f "$UNDO" "$SNAP"
"""


def cleanup_script(mesh: Mesh) -> str:
    p = _paths(mesh)
    return f"rm -f {shlex.quote(p['SNAP'])} {shlex.quote(p['UNDO'])}\n"


def _failure(result: CommandResult) -> str:
    if result.exit_status == -1:
        return "the connection was lost during apply; run wgmesh plan to see where the node stands"
    if result.exit_status == LOCK_EXIT:
        return result.stderr.strip().splitlines()[-1] if result.stderr.strip() else "lock timeout"
    err = [ln for ln in result.stderr.strip().splitlines() if ln.strip()]
    tail = "; ".join(err[-3:]) if err else f"exit status {result.exit_status}"
    return f"apply failed (exit {result.exit_status}): {tail}"
