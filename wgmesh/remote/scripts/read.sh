# shellcheck shell=sh
# read.sh: everything `plan` needs from a node, in one round trip; remote/read.py parses it.
#
# Values: IF (interface), KEY_DIR (/etc/wireguard), KEY and CONF (IF.key and IF.conf in it),
#         HOSTS (endpoint names to resolve on the node, one per line; may be empty),
#         STOP_AFTER (seconds after which the node stops the read itself: lib.sh's wgm_stop_after; may be empty).
# Sections, in order: v1, preflight, wg (+ wgerror), link, addr, route4, route6, otherroutes, keyfile, conf,
#                     conftext,
#                     systemd, forwarding, iptables, ip6tables, automtu, resolve NAME (one per name), plankey,
#                     reresolve, now, applied, pending, end.
# It never fails: what a command cannot do is data. The interface's private key and every preshared key
# are replaced by awk on the node, before anything is printed (in the `wg show` dump and in IF.conf's
# text); error text of `wg` is kept as it is.

if [ -n "${STOP_AFTER-}" ]; then wgm_stop_after "$STOP_AFTER"; fi
wgm_mark v1

# ------------------------------------------------------------------------------------------ preflight
# What the node lacks for what wgmesh does there (`lacks WHAT` lines), and its OS (`os ID ID_LIKE...`).

read_os_field() {
  for read_os_file in /etc/os-release /usr/lib/os-release; do
    if [ -r "$read_os_file" ]; then
      sed -n "s/^$1=//p" "$read_os_file" | head -n 1 | tr -cd 'A-Za-z0-9._ -'
      return 0
    fi
  done
}

wgm_mark preflight
read_os="$(read_os_field ID) $(read_os_field ID_LIKE)"
echo "os ${read_os% }"
for read_tool in wg wg-quick flock; do
  wgm_have "$read_tool" || echo "lacks $read_tool"
done
read_ip=json
if ! wgm_have ip; then
  read_ip=ip
else
  read_ip_out=$(ip -j link show dev lo 2>&1) || :
  case $read_ip_out in
  '['*) ;;
  *BusyBox*) read_ip=ip-busybox ;;
  *)
    case $(readlink -f "$(command -v ip)" 2>/dev/null) in
    */busybox*) read_ip=ip-busybox ;;
    *) read_ip=ip-json ;;
    esac
    ;;
  esac
fi
[ "$read_ip" = json ] || echo "lacks $read_ip"
read_ro() {  # true when folder $1 (as on disk) is on a file system mounted read-only, by /proc/self/mounts:
  # busybox's `test -w` is true for root even there, and a read writes nothing to find out. The mounts are in
  # the order they were made: one on a folder hides every earlier one on or under it.
  awk -v p="$1" '{
    m = $2; gsub(/\\040/, " ", m)
    for (i in at) if (m == "/" || at[i] == m || index(at[i], m "/") == 1) delete at[i]
    n++; at[n] = m; ro[n] = ($4 ~ /(^|,)ro(,|$)/)
  } END {
    for (i in at) if ((at[i] == "/" || p == at[i] || index(p, at[i] "/") == 1) && length(at[i]) > best) {
      best = length(at[i]); found = ro[i]
    }
    exit !found
  }' /proc/self/mounts 2>/dev/null
}
read_unwritable() {  # true when folder $1 (or, absent, its parent, where it would be made) cannot be written
  if [ -d "$1" ]; then read_wd=$1; else read_wd=${1%/*}/; fi
  read_wd_real=$(cd "$read_wd" 2>/dev/null && pwd -P) || read_wd_real=$read_wd
  [ ! -w "$read_wd" ] || read_ro "$read_wd_real"
}
if read_unwritable "$KEY_DIR"; then echo "lacks confdir"; fi
if read_unwritable /run/wireguard; then echo "lacks rundir"; fi
# which folder, with the lack (`unsafe PATH`): the one to fix may be far from the one wgmesh writes in
if read_bad=$(wgm_unsafe_dir "$KEY_DIR"); then
  echo "lacks confowner"
  echo "unsafe $(printf '%s' "$read_bad" | tr -d '\000-\037\177')"
fi
if read_bad=$(wgm_unsafe_dir /run/wireguard); then
  echo "lacks runowner"
  echo "unsafe $(printf '%s' "$read_bad" | tr -d '\000-\037\177')"
fi

# ------------------------------------------------------------------------------------------ WireGuard
# Field 1 of the interface line is the private key; field 2 of a peer line is its preshared key.

wgm_mark wg
{
  wg show "$IF" dump 2>/dev/null || {
    wgm_mark wgerror
    wg show "$IF" public-key 2>&1 >/dev/null | head -n 1
  }
} | awk -F '\t' '
  BEGIN { OFS = "\t" }
  /^@@wgmesh:wgerror/ { err = 1 }
  err { print; next }
  NR == 1 { $1 = "(hidden)"; print; next }
  { if ($2 != "(none)") $2 = "(hidden)"; print }
'

# ------------------------------------------------------------------------------------------ ip
# Printed only by an `ip` that speaks JSON: anything else would be read as "no interface".

for read_section in link addr route4 route6; do
  wgm_mark "$read_section"
  [ "$read_ip" = json ] || continue
  case $read_section in
  link) ip -j link show dev "$IF" 2>/dev/null || : ;;
  addr) ip -j addr show dev "$IF" 2>/dev/null || : ;;
  route4) ip -j -4 route show table main dev "$IF" 2>/dev/null || : ;;
  route6) ip -j -6 route show table main dev "$IF" 2>/dev/null || : ;;
  esac
done

# The main table's routes through other devices (or none: unreachable, blackhole): a prefix the mesh routes through
# IF that one of these has already cannot be added (or would go unused). One line each, as `ip -o` prints it, the
# first OTHER_ROUTES of each family (a BGP router's table is a million lines: what is past them plan does not see,
# and apply names such a route when its step meets it).
wgm_mark otherroutes
if [ "$read_ip" = json ]; then
  for read_family in -4 -6; do
    ip -o "$read_family" route show table main 2>/dev/null |
      awk -v dev="$IF" -v max=20000 '{ for (i = 1; i < NF; i++) if ($i == "dev" && $(i + 1) == dev) next }
        { print; if (++n >= max) exit }' || :
  done
fi

# ------------------------------------------------------------------------------------------ files

wgm_mark keyfile
if [ -f "$KEY" ]; then
  echo present
  wg pubkey <"$KEY" 2>/dev/null || :
else
  echo absent
fi

wgm_mark conf
if [ -f "$CONF" ]; then
  echo present
  { sha256sum <"$CONF" 2>/dev/null || :; } | cut -d ' ' -f 1
else
  echo absent
fi

# IF.conf's text, for the plan's line diff: every line behind `|` (so no line of it can pass for a marker),
# the value of each PrivateKey and PresharedKey line replaced by `(redacted)`. `wg` reads keys without regard
# to case or blanks (`private key=` is a PrivateKey): the test ignores both, and commented-out keys too.
# Any other key-like text (a key in a PostUp command or a comment), except a PublicKey's value, is replaced
# as well (WGM_KEYLESS_AWK).
# Nothing when there is no file.
wgm_mark conftext
if [ -f "$CONF" ]; then
  awk "$WGM_KEYLESS_AWK"'
    {
      k = tolower($0); gsub(/[ \t\r]/, "", k); sub(/^[#;]+/, "", k)
      if (k ~ /^(privatekey|presharedkey)=/) $0 = substr($0, 1, index($0, "=")) " (redacted)"
      else $0 = wgm_keyless($0, "(redacted)")
      print "|" $0
    }
  ' "$CONF" 2>/dev/null || :
fi

wgm_mark systemd
if wgm_have systemctl && [ -d /run/systemd/system ]; then
  systemctl is-enabled "wg-quick@$IF" 2>/dev/null || :
else
  echo no-systemd
fi

# ------------------------------------------------------------------------------------------ routing
# IP forwarding now (`4 VALUE`, `6 VALUE`; a version the kernel does not have prints nothing), by sysctl or
# from /proc/sys. Then, for iptables (IPv4) and ip6tables (IPv6), whether the tool is here and wgmesh's rules
# for IF: the lines of `-S` for FORWARD and nat POSTROUTING that carry the comment `wgmesh:IF` (read.py keeps
# exactly that comment).

wgm_mark forwarding
for read_sysctl in 4:net.ipv4.ip_forward 6:net.ipv6.conf.all.forwarding; do
  read_key=${read_sysctl#*:}
  read_value=
  if wgm_have sysctl; then read_value=$(sysctl -n "$read_key" 2>/dev/null) || read_value=; fi
  if [ -z "$read_value" ]; then
    read_value=$(cat "/proc/sys/$(printf '%s' "$read_key" | tr . /)" 2>/dev/null) || read_value=
  fi
  if [ -n "$read_value" ]; then echo "${read_sysctl%%:*} $read_value"; fi
done

read_list() {  # a table (filter, nat), a tool and its arguments: wgmesh's rules of the listing, or `failed TABLE
  # REASON` (the last line of its stderr: plan cannot tell which of its rules are there); `legacy` where iptables-nft warns that iptables-legacy tables
  # are present (their rules, a DROP too, apply besides the ones it lists)
  read_table=$1
  shift
  if read_out=$("$@" 2>&1); then
    printf '%s\n' "$read_out" | grep -F -e "wgmesh:$IF" || :
    case $read_out in *'iptables-legacy tables present'*) echo legacy ;; esac
  else
    echo "failed $read_table $(printf '%s\n' "$read_out" | grep -v '^#' | tail -n 1 | tr -d '\000-\037\177' | cut -c1-200)"
  fi
}

read_rules() {  # $1: iptables | ip6tables
  wgm_mark "$1"
  if wgm_have "$1"; then
    echo present
    read_list filter "$1" -w 5 -S FORWARD
    read_list nat "$1" -w 5 -t nat -S POSTROUTING
  else
    echo absent
  fi
}
read_rules iptables
read_rules ip6tables

# ------------------------------------------------------------------------------------------ MTU
# What `wg-quick up` gives IF from a config without MTU (its set_mtu_up): the largest MTU of the routes to the
# peers' endpoints (the route's `mtu`, else its device's), else the default route's, else 1500; minus 80.
# wgmesh wants exactly that when mesh.yaml sets no mtu, so that a reboot changes nothing (F11).

read_route_mtu() {  # stdin: `ip route` output; prints its mtu, else its device's, else nothing (as wg-quick)
  read_out=$(cat)
  read_m=$(printf '%s\n' "$read_out" | sed -n 's/.*mtu \([0-9]\{1,6\}\).*/\1/p' | head -n 1)
  if [ -z "$read_m" ]; then
    read_d=$(printf '%s\n' "$read_out" | sed -n 's/.* dev \([^ ]*\).*/\1/p' | head -n 1)
    if [ -n "$read_d" ]; then
      read_m=$(ip link show dev "$read_d" 2>/dev/null | sed -n 's/.* mtu \([0-9]\{1,6\}\) .*/\1/p' | head -n 1)
    fi
  fi
  printf '%s' "$read_m"
}

wgm_mark automtu
if [ "$read_ip" = json ]; then
  read_mtu=0
  for read_ep in $(wg show "$IF" endpoints 2>/dev/null | awk '{ print $2 }'); do
    read_addr=${read_ep%:*}
    read_addr=${read_addr#[}
    read_addr=${read_addr%]}
    case $read_addr in '' | *[!a-z0-9:.]*) continue ;; esac
    read_m=$(ip route get "$read_addr" 2>/dev/null | read_route_mtu)
    if [ -n "$read_m" ] && [ "$read_m" -gt "$read_mtu" ]; then read_mtu=$read_m; fi
  done
  if [ "$read_mtu" -eq 0 ]; then
    read_m=$(ip route show default 2>/dev/null | head -n 1 | read_route_mtu)
    if [ -n "$read_m" ]; then read_mtu=$read_m; fi
  fi
  if [ "$read_mtu" -eq 0 ]; then read_mtu=1500; fi
  echo $((read_mtu - 80))
fi

# ------------------------------------------------------------------------------------------ names
# In parallel; each lookup prints its whole block with one printf (one small write: no interleaving).

if [ -n "${HOSTS:-}" ]; then
  if wgm_have timeout; then read_timeout='timeout 5'; else read_timeout=; fi
  read_jobs=
  while IFS= read -r read_host; do
    [ -n "$read_host" ] || continue
    (
      # shellcheck disable=SC2086 # $read_timeout is empty or two words
      read_addrs=$($read_timeout getent ahosts "$read_host" 2>/dev/null) || :
      printf '%s\n%s\n' "$(wgm_mark resolve "$read_host")" "$read_addrs"
    ) &
    read_jobs="$read_jobs $!"
  done <<EOF
$HOSTS
EOF
  # these lookups only: a bare `wait` would wait for wgm_stop_after's watcher too
  # shellcheck disable=SC2086 # a list of process ids
  if [ -n "$read_jobs" ]; then wait $read_jobs; fi
fi

# ------------------------------------------------------------------------------------------ plan key
# `wgmesh plan-key` (remote/plankey.py): `script VERSION` of the read script it installed ($KEY_DIR/wgmesh-read-
# $IF.sh; `script none`), and `key` when the login user's authorized_keys (the file that script names, else
# ~/.ssh/authorized_keys of SUDO_USER or the current user) has a `wgmesh-plan-key` line running that script.

wgm_mark plankey
read_pk_script="$KEY_DIR/wgmesh-read-$IF.sh"
read_pk_keys=
if [ -f "$read_pk_script" ]; then
  read_pk_version=$(sed -n 's/^# wgmesh-read-version: \([0-9a-f]\{1,64\}\)$/\1/p' "$read_pk_script" | head -n 1)
  echo "script ${read_pk_version:-unknown}"
  read_pk_keys=$(sed -n 's/^# authorized_keys: \(\/.*\)$/\1/p' "$read_pk_script" | head -n 1)
else
  echo "script none"
fi
if [ -z "$read_pk_keys" ]; then
  read_pk_user=${SUDO_USER:-$(id -un)}
  read_pk_home=$(awk -F: -v u="$read_pk_user" '$1 == u { print $6; exit }' /etc/passwd 2>/dev/null) || :
  if [ -z "$read_pk_home" ] && wgm_have getent; then # a user from LDAP or the like
    read_pk_home=$(getent passwd "$read_pk_user" 2>/dev/null | head -n 1 | cut -d: -f6) || :
  fi
  read_pk_keys="${read_pk_home:-/nonexistent}/.ssh/authorized_keys"
fi
if [ -f "$read_pk_keys" ] && grep -F ' wgmesh-plan-key' "$read_pk_keys" 2>/dev/null | grep -qF "wgmesh-read-$IF.sh"; then
  echo key
fi

# ------------------------------------------------------------------------------------------ re-resolution
# The endpoint names' re-resolution that apply installs (scripts/reresolve.sh): `script VERSION` (`script none`),
# and `running` when its systemd timer is active, or, without systemd, its loop runs (the PID file's process
# runs that script's loop).

wgm_mark reresolve
read_rr="$KEY_DIR/wgmesh-reresolve-$IF.sh"
if [ -f "$read_rr" ]; then
  read_rr_version=$(sed -n 's/^# wgmesh-reresolve-version: \([0-9a-f]\{1,64\}\)$/\1/p' "$read_rr" | head -n 1)
  echo "script ${read_rr_version:-unknown}"
  if [ -d /run/systemd/system ] && wgm_have systemctl; then
    if systemctl is-active --quiet "wgmesh-reresolve-$IF.timer" 2>/dev/null; then echo running; fi
  else
    read_rr_pid=$(cat "/run/wireguard/wgmesh-reresolve-$IF.pid" 2>/dev/null) || read_rr_pid=
    case $read_rr_pid in
    '' | *[!0-9]*) ;;
    *)
      if [ -r "/proc/$read_rr_pid/cmdline" ] && tr '\000' ' ' <"/proc/$read_rr_pid/cmdline" | grep -qF "$read_rr loop"; then
        echo running
      fi
      ;;
    esac
  fi
else
  echo "script none"
fi

# ------------------------------------------------------------------------------------------ clock
# The node's clock (epoch seconds), last: what handshake times are measured against (hole punching's "fresh").

wgm_mark now
date +%s

# when the last confirmed apply ended here (confirm.sh), if one did since the node booted (a tmpfs)
wgm_mark applied
if [ -f "/run/wireguard/wgmesh-$IF.applied" ]; then
  read -r read_applied _ <"/run/wireguard/wgmesh-$IF.applied" || :
  echo "${read_applied:-}"
fi

# applies whose change awaits the controller's confirmation (apply.sh: the node undoes each by itself unless
# confirm.sh claims it): one run id per line; `settling RUN` for a run claimed right now (confirm.sh confirming
# it, or its revert timer undoing it: the node is about to be what it was, or stay what it is)
wgm_mark pending
for read_pending in "/run/wireguard/wgmesh-$IF".*.confirm; do
  [ -f "$read_pending" ] || continue
  read_pending=${read_pending##*/"wgmesh-$IF".}
  echo "${read_pending%.confirm}"
done
for read_pending in "/run/wireguard/wgmesh-$IF".*.confirm.claimed; do
  [ -f "$read_pending" ] || continue
  read_run=${read_pending##*/"wgmesh-$IF".}
  read_run=${read_run%.confirm.claimed}
  # only while its revert timer (the PID in the file) still runs: a file whose timer was killed settles nothing
  read_pid=$(cat "$read_pending" 2>/dev/null) || read_pid=
  case $read_pid in '' | *[!0-9]*) continue ;; esac
  if [ -r "/proc/$read_pid/cmdline" ] &&
    tr '\000' ' ' <"/proc/$read_pid/cmdline" | grep -qF "wgmesh-$IF.$read_run.revert.sh"; then
    echo "settling $read_run"
  fi
done
# `busy RUN`: an apply whose steps change the node right now (apply.sh's wgm_begin to wgm_finish), while that
# shell runs (its PID and start time: a reused PID does not pass)
for read_busy in "/run/wireguard/wgmesh-$IF".*.busy; do
  [ -f "$read_busy" ] || continue
  read_run=${read_busy##*/"wgmesh-$IF".}
  read -r read_pid read_start _ <"$read_busy" 2>/dev/null || continue
  case $read_pid in '' | *[!0-9]*) continue ;; esac
  if [ -n "$read_start" ] && [ "$(wgm_started "$read_pid")" = "$read_start" ]; then
    echo "busy ${read_run%.busy}"
  fi
done

wgm_mark end
exit 0
