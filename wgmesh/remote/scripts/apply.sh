# shellcheck shell=sh disable=SC2016
# (SC2016: undo commands are single-quoted on purpose; they are evaluated later, by wgm_rollback or rollback.sh)
# apply.sh: one function per plan step (wgmesh/core/steps.py), for converging one node under its lock.
#
# Expects: IF CONF PREV TMP KEY SNAP LOG UNDO (set by the caller, quoted), and `set -eu`.
# wgm_begin snapshots the runtime (`wg showconf` into a tmpfs, mode 600: the private key stays on the node),
# keeps the previous IF.conf and arms a rollback on any failing step (trap on EXIT). Every reconcile step
# checks, under the lock, whether the node still needs it (another apply may have done it), and records its
# own undo with the values of *now* (wgm_did), newest first. wgm_finish saves that undo log to $UNDO, for the
# controller's rollback when verification fails.

wgm_undo=:
wgm_conf_undo=:
wgm_did() { wgm_undo="$1; $wgm_undo"; }

wgm_rollback() {
  set +e
  eval "$wgm_undo"
  eval "$wgm_conf_undo"
  if [ -f "$SNAP" ]; then wg syncconf "$IF" "$SNAP"; fi
  rm -f "$SNAP" "$UNDO" "$TMP"
  echo "wgmesh: a step failed; the node was rolled back to its previous config" >&2
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
  rm -f "$SNAP" "$UNDO"
  if ip link show dev "$IF" >/dev/null 2>&1; then wg showconf "$IF" > "$SNAP"; fi
  wgm_conf_undo='rm -f "$CONF"'
  if [ -f "$CONF" ]; then cp -p "$CONF" "$PREV"; wgm_conf_undo='cp -p "$PREV" "$CONF"'; fi
  trap wgm_on_exit EXIT
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
  if ! wg-quick up "$IF" </dev/null >/dev/null 2>"$LOG" 9>&-; then cat "$LOG" >&2; rm -f "$LOG"; exit 1; fi
  rm -f "$LOG"
  wgm_did 'wg-quick down "$IF" >/dev/null 2>&1 9>&-'
}

wgm_sync_peers() {  # stdin: the syncconf input; its first line is [Interface], the private key goes after it
  wgm_key=$(cat "$KEY")
  if [ "${#wgm_key}" -ne 44 ]; then echo "cannot read the private key in $KEY" >&2; exit 1; fi
  # printf is a shell builtin: the key is never on a command line, and never leaves the node.
  { IFS= read -r wgm_first; printf '%s\nPrivateKey = %s\n' "$wgm_first" "$wgm_key"; cat; } | wg syncconf "$IF" /dev/stdin
  unset wgm_key
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
  if wgm_has_address "$1"; then ip address del "$1" dev "$IF"; wgm_did "ip address add $1 dev \"\$IF\""; fi
}

wgm_add_route() {
  if ! wgm_has_route "$1"; then ip route add "$1" dev "$IF"; wgm_did "ip route del $1 dev \"\$IF\""; fi
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

wgm_clear_preshared_key() { wg set "$IF" peer "$1" preshared-key /dev/null; }

wgm_enable_unit() {  # so that the interface comes back at boot; a failure is the node's error
  if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    if ! wgm_unit_err=$(systemctl enable "wg-quick@$IF" 2>&1 >/dev/null); then
      echo "cannot enable wg-quick@$IF (it would not come back at boot): $(printf '%s' "$wgm_unit_err" | tail -n 1)" >&2
      exit 1
    fi
  fi
}

wgm_remove_interface() {
  if [ -f "$CONF" ]; then cp -p "$CONF" "$PREV"; fi
  if ip link show dev "$IF" >/dev/null 2>&1; then
    if [ -f "$CONF" ]; then wg-quick down "$IF" >/dev/null 2>&1 || ip link del dev "$IF"; else ip link del dev "$IF"; fi
  fi
  if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    systemctl disable "wg-quick@$IF" >/dev/null 2>&1 || true
  fi
  rm -f "$CONF"
}

wgm_finish() {  # save how to undo this run, for the controller's rollback after a failed verification
  {
    printf '%s\n' "$wgm_undo" "$wgm_conf_undo"
    echo 'if [ -f "$SNAP" ]; then wg syncconf "$IF" "$SNAP"; fi'
  } > "$UNDO"
  trap - EXIT
}

# Routing (core/routing.py): forwarding and wgmesh's own iptables rules, told apart by their comment
# `wgmesh:IF`. The rendered config has the same as PostUp lines, for `wg-quick up` at boot.
wgm_set_forwarding() {  # $1: 4 or 6
  if [ "$1" = 6 ]; then wgm_key=net.ipv6.conf.all.forwarding; else wgm_key=net.ipv4.ip_forward; fi
  wgm_old=$(sysctl -n "$wgm_key")
  if [ "$wgm_old" != 1 ]; then
    sysctl -q -w "$wgm_key=1"
    wgm_did "sysctl -q -w $wgm_key=$wgm_old"
  fi
}

wgm_forward_rule() {  # $1: -C | -I | -D, $2: -i | -o
  iptables "$1" FORWARD "$2" "$IF" -m comment --comment "wgmesh:$IF" -j ACCEPT
}

wgm_add_forward_rules() {
  for wgm_dir in -o -i; do
    if ! wgm_forward_rule -C "$wgm_dir" 2>/dev/null; then
      wgm_forward_rule -I "$wgm_dir"
      wgm_did "iptables -D FORWARD $wgm_dir \"\$IF\" -m comment --comment \"wgmesh:\$IF\" -j ACCEPT"
    fi
  done
}

wgm_delete_forward_rules() {
  for wgm_dir in -i -o; do
    while wgm_forward_rule -C "$wgm_dir" 2>/dev/null; do
      wgm_forward_rule -D "$wgm_dir"
      wgm_did "iptables -I FORWARD $wgm_dir \"\$IF\" -m comment --comment \"wgmesh:\$IF\" -j ACCEPT"
    done
  done
}

wgm_masquerade_rule() {  # $1: -C | -I | -D, $2: the subnet
  iptables -t nat "$1" POSTROUTING ! -s "$2" -d "$2" -m comment --comment "wgmesh:$IF" -j MASQUERADE
}

wgm_add_masquerade() {
  if ! wgm_masquerade_rule -C "$1" 2>/dev/null; then
    wgm_masquerade_rule -I "$1"
    wgm_did "iptables -t nat -D POSTROUTING ! -s $1 -d $1 -m comment --comment \"wgmesh:\$IF\" -j MASQUERADE"
  fi
}

wgm_delete_masquerade() {
  while wgm_masquerade_rule -C "$1" 2>/dev/null; do
    wgm_masquerade_rule -D "$1"
    wgm_did "iptables -t nat -I POSTROUTING ! -s $1 -d $1 -m comment --comment \"wgmesh:\$IF\" -j MASQUERADE"
  done
}

# Hooks: the user's PostUp/PostDown lines, run as wg-quick runs them (bash, %i already replaced). A failing
# PostUp fails the node (its rollback runs the new PostDown and the old PostUp again); a failing PostDown is a
# warning, as in `wg-quick down`.
wgm_hook() {  # $1: PostUp | PostDown, $2: the command
  if command -v bash >/dev/null 2>&1; then wgm_sh="bash"; else wgm_sh="sh"; fi
  if ! wgm_hook_err=$("$wgm_sh" -c "$2" 2>&1 </dev/null 9>&-); then
    wgm_hook_err=$(printf '%s' "$wgm_hook_err" | tail -n 3 | tr '\n' ' ')
    if [ "$1" = PostDown ]; then
      echo "wgmesh: warning: the $1 hook failed: $2: $wgm_hook_err" >&2
      return 0
    fi
    echo "the $1 hook failed: $2: $wgm_hook_err" >&2
    exit 1
  fi
}
