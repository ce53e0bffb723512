# shellcheck shell=sh disable=SC2016
# (SC2016: undo commands are single-quoted on purpose; they are evaluated later, by wgm_rollback or wgm_revert)
# apply.sh: one function per plan step (wgmesh/core/steps.py), for converging one node under its lock; and the
# run's record, its revert timer and its undo, shared by rollback.sh, revert.sh and confirm.sh (which include it).
#
# Expects (values, quoted): IF CONF KEY TMP LOG, and per run (RUN, a word the controller chose): PREV SNAP UNDO
# PENDING REVERTED REVERT_SH, REVERT (the text of revert.sh), CONFIRM_TIMEOUT and ANSWER_TIMEOUT; `set -eu`.
#
# One apply, on the node:
# 1. wgm_lock; the state under the lock is printed and the controller compares it with the state its plan was
#    made from: wgm_wait_go reads its answer (`go`, or anything else: nothing changes).
#    After `go` come the steps, as one function (wgm_steps), and the call of it: the shell runs nothing of a
#    function before its closing line, so a connection that stalls or ends while the steps arrive changes
#    nothing (a watchdog ends a stalled script after ANSWER_TIMEOUT seconds, as before `go`).
# 2. wgm_begin: the EXIT trap first (any failing step rolls back: wgm_rollback), then the previous IF.conf
#    ($PREV) and the runtime (`wg showconf` without its PrivateKey and PresharedKey lines: $SNAP), in the tmpfs
#    /run/wireguard, mode 600, named after the run. Every reconcile step checks whether the node still needs it
#    and records its own undo with the values of *now* (wgm_did), newest first.
# 3. wgm_finish: the undo record ($UNDO, no key material) and the revert timer (wgm_arm: revert.sh, detached,
#    holding the node lock): unless confirm.sh claims $PENDING within CONFIRM_TIMEOUT seconds, the node undoes
#    the run by itself. From there the run's files are the timer's, confirm.sh's or rollback.sh's to remove.
# Nothing of a run outlives it: its files are removed when it fails, is confirmed, rolled back or reverted.

# A key goes to wg only once wgm_key_ok took it: wg's errors quote the key they refuse (`Key is not the correct
# length or format: `KEY'`), and they would carry it to the controller. wgm_key_ok KEY: true when `wg pubkey`
# (which quotes nothing) takes KEY, fed by a builtin (never on a command line). wgm_scrub: stdin to stdout with
# key material blanked, each as `(redacted)`: what wg quotes after `correct length or format:` (a key it refused,
# whatever its form), and every key-like text (43 base64 characters and `=`, as read.sh redacts): for wg's,
# wg-quick's and a failing hook's messages before they leave (a long path stays as it is).
wgm_key_ok() {
  [ "${#1}" -eq 44 ] && printf '%s\n' "$1" | wg pubkey >/dev/null 2>&1
}

wgm_scrub() {
  sed -e "s/\(correct length or format: \`\).*\('\)/\1(redacted)\2/" \
    -e 's|[A-Za-z0-9+/]\{43\}=|(redacted)|g'
}

wgm_undo=:
wgm_conf_undo=:
wgm_timer=
wgm_did() { wgm_undo="$1; $wgm_undo"; }

wgm_rollback() {  # the EXIT trap of a failing step: undo what this run did so far, forget the run
  set +e
  if [ -n "$wgm_timer" ]; then kill -9 "$wgm_timer" 2>/dev/null; fi  # armed a moment ago: no revert of its own
  eval "$wgm_undo"
  eval "$wgm_conf_undo"
  wgm_restore_snapshot
  wgm_forget
  rm -f "$TMP" "$LOG"
  echo "wgmesh: a step failed; this apply's steps were undone" >&2 # (the controller reads the node again)
}

wgm_wait_go() {  # the controller's answer to the state printed above: `go`, or nothing changes
  # A controller that is gone (its connection dead, unnoticed by sshd) must not keep the lock: the script
  # ends after ANSWER_TIMEOUT seconds without an answer. ($$ is this script even in the subshell.)
  (sleep "${ANSWER_TIMEOUT:-60}" && kill "$$") </dev/null >/dev/null 2>&1 9>&- &
  wgm_watchdog=$!
  wgm_answer=
  IFS= read -r wgm_answer || :
  kill "$wgm_watchdog" 2>/dev/null || :
  case $wgm_answer in
  go)
    # the steps come next, as one function (wgm_steps) that runs only once its last line is here: until
    # wgm_arrived, a connection that stalls or ends has changed nothing, and the script ends in time too
    (sleep "${ANSWER_TIMEOUT:-60}" && kill "$$") </dev/null >/dev/null 2>&1 9>&- &
    wgm_watchdog=$!
    ;;
  stop) wgm_die "changed since this plan: run plan again" 3 ;;
  *) wgm_die "the controller did not answer (connection lost?): nothing was changed" 3 ;;
  esac
}

wgm_arrived() { kill "$wgm_watchdog" 2>/dev/null || :; }  # the whole of wgm_steps is here: it may run

wgm_read_key() {  # $KEY's key without white space (CRLF, a trailing blank, \v or \f), as wg reads it
  tr -d ' \t\n\v\f\r' <"$KEY"
}

wgm_restore_key() {  # the key of the restored runtime: the restored IF.conf's own PrivateKey if it has one (a
  # config wgmesh did not write, as run by hand: the key the interface ran with, which SaveConfig would otherwise
  # replace in the file at the next `wg-quick down`), else $KEY's
  if [ -f "$CONF" ]; then
    wgm_rk=$(wgm_conf_key "$CONF" 2>/dev/null) || wgm_rk=
    if wgm_key_ok "$wgm_rk"; then printf '%s\n' "$wgm_rk"; unset wgm_rk; return 0; fi
    unset wgm_rk
  fi
  wgm_read_key
}

wgm_restore_snapshot() {  # the runtime as $SNAP has it, with the key of wgm_restore_key
  [ -s "$SNAP" ] || return 0
  wgm_key=$(wgm_restore_key 2>/dev/null) || wgm_key=
  if ! wgm_key_ok "$wgm_key"; then
    unset wgm_key
    echo "cannot read the private key in $KEY: the runtime of $IF was not restored" >&2
    return 1
  fi
  wgm_synced "$wgm_key" <"$SNAP"
}

wgm_synced() {  # $1: the private key (checked); stdin: the syncconf input, the key goes after its first line.
  # printf is a shell builtin: the key is never on a command line. wg's messages leave the node scrubbed.
  wgm_sc_err=$({ IFS= read -r wgm_first; printf '%s\nPrivateKey = %s\n' "$wgm_first" "$1"; cat; } |
    wg syncconf "$IF" /dev/stdin 2>&1 >/dev/null) && wgm_sc=0 || wgm_sc=$?
  unset wgm_key
  if [ -n "$wgm_sc_err" ]; then printf '%s\n' "$wgm_sc_err" | wgm_scrub >&2; fi
  return "$wgm_sc"
}

wgm_forget() {  # the files of this run (none holds a private key; $PREV holds the previous IF.conf)
  rm -f "$UNDO" "$SNAP" "$PREV" "$REVERT_SH" "$PENDING" "$PENDING.claimed" "$BUSY"
}

wgm_revert() {  # undo a finished run from its record: its steps (newest first), its config file, its runtime
  set +e
  # shellcheck disable=SC1090
  . "$UNDO"
}

wgm_wake() {  # $1: the PID in the run's $PENDING: TERM wakes its revert timer (only that process: PIDs are reused)
  case $1 in '' | *[!0-9]*) return 0 ;; esac
  if [ -r "/proc/$1/cmdline" ] && ! tr '\000' ' ' <"/proc/$1/cmdline" | grep -qF "$REVERT_SH"; then return 0; fi
  kill "$1" 2>/dev/null || :
}

wgm_expect_interface() {  # present | absent: the state the plan was made from
  if ip link show dev "$IF" >/dev/null 2>&1; then wgm_has=present; else wgm_has=absent; fi
  if [ "$wgm_has" != "$1" ]; then
    if [ "$1" = present ]; then what=disappeared; else what=appeared; fi
    echo "interface $IF $what since the plan was made; run wgmesh plan again" >&2
    exit 1
  fi
}

wgm_begin() {
  wgm_own_dir "${CONF%/*}"  # before any change: nothing is written where another user may plant a link
  # the trap first: from here every way out (a failing step, a signal) rolls back and removes this run's files
  trap wgm_on_exit EXIT
  trap 'exit 129' HUP
  trap 'exit 130' INT
  trap 'exit 141' PIPE
  trap 'exit 143' TERM
  # files of runs that ended without their cleanup (killed): no run is pending while we hold the lock
  rm -f "${UNDO%/*}/wgmesh-$IF".*.undo "${UNDO%/*}/wgmesh-$IF".*.snapshot "${UNDO%/*}/wgmesh-$IF".*.prev \
    "${UNDO%/*}/wgmesh-$IF".*.revert.sh "${UNDO%/*}/wgmesh-$IF".*.confirm "${UNDO%/*}/wgmesh-$IF".*.reverted \
    "${UNDO%/*}/wgmesh-$IF".*.confirm.claimed "${UNDO%/*}/wgmesh-$IF".*.busy
  # this run changes the node from now until wgm_finish (or its rollback): a read meanwhile says so (read.sh
  # `busy RUN`, while this shell, by its PID and start time, still runs)
  printf '%s %s\n' "$$" "$(wgm_started "$$")" >"$BUSY"
  wgm_conf_undo='rm -f "$CONF"'
  if [ -f "$CONF" ]; then
    # its content only, mode 600 (umask): a hand-made IF.conf may hold its PrivateKey, and /run/wireguard is
    # world-readable (wireguard-go makes it 0755); the undo gives the restored file its own mode back
    wgm_conf_mode=$(stat -L -c %a "$CONF" 2>/dev/null) || wgm_conf_mode=600  # (a link's target's: a link is 777)
    case $wgm_conf_mode in '' | *[!0-7]*) wgm_conf_mode=600 ;; esac
    cat "$CONF" >"$PREV"
    wgm_conf_undo="cp -p \"\$PREV\" \"\$CONF\" && chmod $wgm_conf_mode \"\$CONF\""
  fi
  if ip link show dev "$IF" >/dev/null 2>&1; then
    # in a variable, never in a file: the snapshot keeps no key (a restore takes the key from $KEY)
    wgm_conf=$(wg showconf "$IF")
    printf '%s\n' "$wgm_conf" | sed -e '/^[[:space:]]*PrivateKey[[:space:]]*=/d' \
      -e '/^[[:space:]]*PresharedKey[[:space:]]*=/d' >"$SNAP"
    unset wgm_conf
  fi
}

wgm_on_exit() {
  wgm_rc=$?
  if [ "$wgm_rc" -ne 0 ]; then wgm_rollback; fi
  exit "$wgm_rc"
}

wgm_write_config() {  # stdin: the wg-quick config, without a PrivateKey line
  cat > "$TMP"
  chmod 600 "$TMP"
  mv -f "$TMP" "$CONF"
}

wgm_interface_up() {
  # wireguard-go stays behind as a daemon: it must not inherit the lock (fd 9) nor the SSH channel's output.
  # (its PostUp loads $KEY with `wg set`, which would quote a key it refuses in its error)
  if ! wg pubkey <"$KEY" >/dev/null 2>&1; then wgm_bad_key; fi
  if ! wg-quick up "$IF" </dev/null >/dev/null 2>"$LOG" 9>&-; then wgm_scrub <"$LOG" >&2; rm -f "$LOG"; exit 1; fi
  rm -f "$LOG"
  wgm_did 'wg-quick down "$IF" >/dev/null 2>&1 9>&-'
}

wgm_sync_peers() {  # stdin: the syncconf input; its first line is [Interface], the private key goes after it
  wgm_key=$(wgm_read_key)
  if ! wgm_key_ok "$wgm_key"; then unset wgm_key; wgm_bad_key; fi
  wgm_synced "$wgm_key"
}

wgm_bad_key() {  # $KEY no longer holds a key wg takes (plan read one): say so, without quoting it
  echo "$KEY does not hold a WireGuard private key any more (it did when the plan was made): restore it from a backup, or move it away and run \`wgmesh enroll\` for this node" >&2
  exit 1
}

wgm_has_address() { ip -o address show dev "$IF" | grep -qF " $1 "; }

wgm_has_route() {  # `ip route show` lists IPv4 only unless told -6
  case "$1" in *:*) wgm_family=-6 ;; *) wgm_family=-4 ;; esac
  [ -n "$(ip "$wgm_family" -o route show table main exact "$1" dev "$IF" 2>/dev/null)" ]
}

wgm_add_address() {
  if ! wgm_has_address "$1"; then ip address add "$1" dev "$IF"; wgm_did "ip address del $1 dev \"\$IF\""; fi
}

wgm_delete_address() {
  if wgm_has_address "$1"; then
    # A new address in the same subnet is a secondary one: without promotion (the kernel's default, kept by
    # systems without systemd's sysctl files) deleting the primary deletes it too, and with no IPv4 address left
    # the kernel drops every route on the interface. Promotion is a setting of this interface only (where /proc/sys
    # is read-only, as in some containers, the delete goes on as before).
    case "$1" in *:*) ;; *) { echo 1 > "/proc/sys/net/ipv4/conf/$IF/promote_secondaries"; } 2>/dev/null || : ;; esac
    ip address del "$1" dev "$IF"; wgm_did "ip address add $1 dev \"\$IF\""
  fi
}

wgm_add_route() {
  if wgm_has_route "$1"; then return 0; fi
  if ! wgm_route_err=$(ip route add "$1" dev "$IF" 2>&1); then
    # the usual cause: the node routes the prefix through another device already (its own LAN, another mesh,
    # a route added by hand); wgmesh replaces no route it did not make
    wgm_other=$(ip "$wgm_family" route show table main exact "$1" 2>/dev/null | head -n 1)
    if [ -n "$wgm_other" ]; then
      printf '%s\n' "cannot route $1 through $IF: the node routes it already ($wgm_other): delete that route, or take $1 out of mesh.yaml's subnets if this node still has that network" >&2
    else
      printf '%s\n' "cannot route $1 through $IF: $wgm_route_err" >&2
    fi
    exit 1
  fi
  wgm_did "ip route del $1 dev \"\$IF\""
}

wgm_delete_route() {
  if wgm_has_route "$1"; then ip route del "$1" dev "$IF"; wgm_did "ip route add $1 dev \"\$IF\""; fi
}

wgm_set_mtu() {
  wgm_old=$(ip -o link show dev "$IF" | sed -n 's/.* mtu \([0-9][0-9]*\) .*/\1/p')
  if [ "$wgm_old" != "$1" ]; then
    ip link set mtu "$1" dev "$IF"
    # the old value is written into the undo now: a rollback in another process knows no variables of ours
    if [ -n "$wgm_old" ]; then wgm_did "ip link set mtu $wgm_old dev \"\$IF\""; fi
  fi
}

wgm_link_up() { ip link set up dev "$IF"; }

wgm_clear_keepalive() { wg set "$IF" peer "$1" persistent-keepalive 0; }

wgm_set_endpoint() { wg set "$IF" peer "${1%% *}" endpoint "${1#* }"; }  # KEY ADDRESS:PORT (hole punching)

wgm_clear_preshared_key() { wg set "$IF" peer "$1" preshared-key /dev/null; }

wgm_enable_unit() {  # so that the interface comes back at boot; a failure is the node's error
  if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    if ! wgm_unit_err=$(systemctl enable "wg-quick@$IF" 2>&1 >/dev/null); then
      printf '%s\n' "cannot enable wg-quick@$IF (it would not come back at boot): $(printf '%s' "$wgm_unit_err" | tail -n 1)" >&2
      exit 1
    fi
  fi
}

wgm_remove_interface() {  # wgm_begin kept IF.conf in $PREV: a revert brings the interface back from it
  if ip link show dev "$IF" >/dev/null 2>&1; then
    if [ -f "$CONF" ]; then
      wg-quick down "$IF" >/dev/null 2>&1 9>&- || ip link del dev "$IF"
      wgm_did 'cp -p "$PREV" "$CONF" && wg-quick up "$IF" </dev/null >/dev/null 2>&1 9>&-'
    else
      ip link del dev "$IF"
    fi
  fi
  if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    if systemctl is-enabled --quiet "wg-quick@$IF" 2>/dev/null; then
      systemctl disable "wg-quick@$IF" >/dev/null 2>&1 || true
      wgm_did 'systemctl enable "wg-quick@$IF" >/dev/null 2>&1'
    fi
  fi
  rm -f "$CONF"
}

wgm_finish() {  # the undo record, and the revert timer: from here the run is undone unless it is confirmed
  { printf '%s\n' "$wgm_undo" "$wgm_conf_undo"; echo wgm_restore_snapshot; } | wgm_write "$UNDO"
  wgm_arm
  rm -f "$TMP" "$LOG" "$BUSY"
  trap - EXIT HUP INT PIPE TERM
}

wgm_arm() {  # start revert.sh detached (own session, no terminal, no channel); it inherits the lock (fd 9)
  printf '%s\n' "$REVERT" | wgm_write "$REVERT_SH"
  # started from a subshell that ends at once: not a child of ours, so a `wait` of ours never waits for it
  if wgm_have setsid; then
    (setsid sh "$REVERT_SH" </dev/null >/dev/null 2>&1 &)
  else
    (trap '' HUP && sh "$REVERT_SH" </dev/null >/dev/null 2>&1 &)
  fi
  wgm_i=0
  while [ ! -s "$PENDING" ]; do  # it writes its PID there once it sleeps: then it is armed
    wgm_i=$((wgm_i + 1))
    if [ "$wgm_i" -gt 100 ]; then wgm_die "the revert timer did not start on the node (sh $REVERT_SH)"; fi
    sleep 0.1 2>/dev/null || sleep 1
  done
  wgm_timer=$(cat "$PENDING")
}

# Routing (core/routing.py): forwarding and wgmesh's own iptables (IPv4) and ip6tables (IPv6) rules, told apart
# by their comment `wgmesh:IF`. The rendered config has the same as PostUp lines, for `wg-quick up` at boot.
wgm_set_forwarding() {  # $1: 4 or 6. Never undone, as wgmesh never turns forwarding off: by the time a run is
  # undone (its revert timer fires up to --confirm-timeout later), another mesh or service may rely on it
  if [ "$1" = 6 ]; then wgm_key=net.ipv6.conf.all.forwarding; else wgm_key=net.ipv4.ip_forward; fi
  if [ "$(sysctl -n "$wgm_key")" != 1 ]; then sysctl -q -w "$wgm_key=1"; fi
}

wgm_tool() {  # $1: 4 or 6, or a subnet: the tool of wgmesh's rules for its IP version
  case $1 in
    6 | *:*) printf ip6tables ;;
    *) printf iptables ;;
  esac
}

wgm_forward_rule() {  # $1: iptables | ip6tables, $2: -C | -I | -D, $3: -i | -o
  "$1" -w 5 "$2" FORWARD "$3" "$IF" -m comment --comment "wgmesh:$IF" -j ACCEPT
}

wgm_add_forward_rules() {  # $1: 4 or 6
  wgm_t=$(wgm_tool "$1")
  for wgm_dir in -o -i; do
    if ! wgm_forward_rule "$wgm_t" -C "$wgm_dir" 2>/dev/null; then
      wgm_forward_rule "$wgm_t" -I "$wgm_dir"
      wgm_did "$wgm_t -w 5 -D FORWARD $wgm_dir \"\$IF\" -m comment --comment \"wgmesh:\$IF\" -j ACCEPT"
    fi
  done
}

wgm_delete_forward_rules() {  # $1: 4 or 6
  wgm_t=$(wgm_tool "$1")
  for wgm_dir in -i -o; do
    while wgm_forward_rule "$wgm_t" -C "$wgm_dir" 2>/dev/null; do
      wgm_forward_rule "$wgm_t" -D "$wgm_dir"
      wgm_did "$wgm_t -w 5 -I FORWARD $wgm_dir \"\$IF\" -m comment --comment \"wgmesh:\$IF\" -j ACCEPT"
    done
  done
}

wgm_masquerade_rule() {  # $1: -C | -I | -D, $2: the subnet (iptables or ip6tables by its version)
  "$(wgm_tool "$2")" -w 5 -t nat "$1" POSTROUTING ! -s "$2" -d "$2" -m comment --comment "wgmesh:$IF" -j MASQUERADE
}

wgm_add_masquerade() {
  if ! wgm_masquerade_rule -C "$1" 2>/dev/null; then
    wgm_masquerade_rule -I "$1"
    wgm_did "$(wgm_tool "$1") -w 5 -t nat -D POSTROUTING ! -s $1 -d $1 -m comment --comment \"wgmesh:\$IF\" -j MASQUERADE"
  fi
}

wgm_delete_masquerade() {
  while wgm_masquerade_rule -C "$1" 2>/dev/null; do
    wgm_masquerade_rule -D "$1"
    wgm_did "$(wgm_tool "$1") -w 5 -t nat -I POSTROUTING ! -s $1 -d $1 -m comment --comment \"wgmesh:\$IF\" -j MASQUERADE"
  done
}

# Hooks: the user's PostUp/PostDown lines, run as wg-quick runs them (bash, %i already replaced). A failing
# PostUp fails the node (its rollback runs the new PostDown and the old PostUp again); a failing PostDown is a
# warning, as in `wg-quick down`.
wgm_hook() {  # $1: PostUp | PostDown, $2: the command (messages with printf: dash's echo reads backslashes)
  if command -v bash >/dev/null 2>&1; then wgm_sh="bash"; else wgm_sh="sh"; fi
  if ! wgm_hook_err=$("$wgm_sh" -c "$2" 2>&1 </dev/null 9>&-); then
    wgm_hook_err=$(printf '%s\n' "$wgm_hook_err" | tail -n 3 | wgm_scrub | tr '\n' ' ')  # (wg quotes a bad key)
    wgm_hook_err=${wgm_hook_err% }
    if [ -z "$wgm_hook_err" ]; then wgm_hook_err="(no output)"; fi
    if [ "$1" = PostDown ]; then
      printf '%s\n' "wgmesh: warning: the $1 hook failed: $2: $wgm_hook_err" >&2
      return 0
    fi
    printf '%s\n' "the $1 hook failed: $2: $wgm_hook_err" >&2
    exit 1
  fi
}

# Re-resolution of endpoint names (scripts/reresolve.sh; core/routing.py reresolve): the script, and every 30 s a
# pass of it: a systemd timer where systemd runs, else the loop the config's PostUp starts (and apply starts now).
wgm_rr_script() { printf '%s' "$KEY_DIR/wgmesh-reresolve-$IF.sh"; }
wgm_rr_systemd() { [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; }

wgm_install_reresolve() {  # stdin: the script (its IF and CONF lines included)
  wgm_rr=$(wgm_rr_script)
  wgm_rr_new=1
  if [ -f "$wgm_rr" ]; then wgm_rr_new=; fi
  cat >"$wgm_rr.wgmesh-tmp"
  chmod 755 "$wgm_rr.wgmesh-tmp"
  mv -f "$wgm_rr.wgmesh-tmp" "$wgm_rr"
  if wgm_rr_systemd; then
    wgm_rr_unit="/etc/systemd/system/wgmesh-reresolve-$IF"
    printf '%s\n' "[Unit]" "Description=wgmesh: re-resolve the endpoint names of $IF's peers" \
      "After=wg-quick@$IF.service" "" "[Service]" "Type=oneshot" "ExecStart=$wgm_rr" >"$wgm_rr_unit.service"
    printf '%s\n' "[Unit]" "Description=wgmesh: re-resolve the endpoint names of $IF's peers every 30 s" "" \
      "[Timer]" "OnBootSec=30" "OnUnitActiveSec=30" "AccuracySec=5" "" "[Install]" "WantedBy=timers.target" \
      >"$wgm_rr_unit.timer"
    chmod 644 "$wgm_rr_unit.service" "$wgm_rr_unit.timer"
    systemctl daemon-reload
    if ! wgm_rr_err=$(systemctl enable --now "wgmesh-reresolve-$IF.timer" 2>&1 >/dev/null); then
      printf '%s\n' "cannot start wgmesh-reresolve-$IF.timer: $(printf '%s' "$wgm_rr_err" | tail -n 1)" >&2
      exit 1
    fi
  else
    "$wgm_rr" start </dev/null >/dev/null 2>&1 9>&-
  fi
  if [ -n "$wgm_rr_new" ]; then wgm_did 'wgm_remove_reresolve'; fi
}

wgm_remove_reresolve() {  # the loop or the timer, then the files; nothing when none is there
  wgm_rr=$(wgm_rr_script)
  if [ -x "$wgm_rr" ]; then "$wgm_rr" stop </dev/null >/dev/null 2>&1 9>&- || :; fi
  wgm_rr_unit="/etc/systemd/system/wgmesh-reresolve-$IF"
  if wgm_rr_systemd && [ -f "$wgm_rr_unit.timer" ]; then
    systemctl disable --now "wgmesh-reresolve-$IF.timer" >/dev/null 2>&1 || :
  fi
  if [ -f "$wgm_rr_unit.timer" ] || [ -f "$wgm_rr_unit.service" ]; then
    rm -f "$wgm_rr_unit.timer" "$wgm_rr_unit.service"
    if wgm_rr_systemd; then systemctl daemon-reload >/dev/null 2>&1 || :; fi
  fi
  rm -f "$wgm_rr"
}

# Kept preshared keys (mesh.yaml `shared_keys: {PEER: keep}`): the config has no PresharedKey line, so the node
# keeps the runtime's in $KEY_DIR/$IF.psk (mode 600), which the config's PostUp puts back at `wg-quick up`. The
# values go from `wg` into the file on the node: never into a variable, an argument or the output.
wgm_save_preshared_keys() {
  { wg show "$IF" preshared-keys | grep -v '(none)' || :; } | wgm_write "$KEY_DIR/$IF.psk"
}
