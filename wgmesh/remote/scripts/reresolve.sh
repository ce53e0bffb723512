# shellcheck shell=sh
# reresolve.sh: a node's re-resolution of its peers' endpoint names (wireguard-tools' contrib/reresolve-dns
# behaviour). WireGuard resolves an endpoint name once; when the name moves (DDNS), the peer stays unreachable
# until someone sets it again. For every [Peer] of $CONF whose Endpoint is a name, and whose latest handshake is
# older than 135 s (or never happened), this sets the address the name resolves to now (the resolver's first, as
# wg takes it), unless the name still has the address in use. A name that does not resolve is skipped (never
# `wg set` with a name: wg would retry it for ~72 s).
#
# Installed by apply (scripts/apply.sh wgm_install_reresolve) as /etc/wireguard/wgmesh-reresolve-IF.sh, with
# `IF=...` and `CONF=...` lines ahead of this text; standalone (no lib.sh). Modes:
#   (none)  one pass: what the systemd timer wgmesh-reresolve-IF.timer runs every 30 s
#   loop    a pass every 30 s while the interface exists
#   start   where no systemd runs: the loop, in the background (its PID in /run/wireguard/wgmesh-reresolve-IF.pid,
#           what it set in wgmesh-reresolve-IF.log next to it), unless it runs already; with systemd: nothing (the
#           timer does it; its messages go to the journal). The config's PostUp runs this.
#   stop    end that loop (the config's PostDown runs this)
# Plain POSIX sh: dash and busybox ash.

set -u
PATH="${PATH:+$PATH:}/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
rr_self=$0
rr_pidfile=${RERESOLVE_PIDFILE:-/run/wireguard/wgmesh-reresolve-$IF.pid}  # (tests set another)
rr_log=${rr_pidfile%.pid}.log  # the loop's messages: one line per endpoint it set again
rr_stale=135
rr_every=30

rr_names() {  # "PUBLICKEY HOST PORT" for each [Peer] of $CONF whose Endpoint host is a name
  awk '
    function flush() {
      if (pk != "" && host != "" && host !~ /^\[/ && host !~ /^[0-9.]+$/) print pk, host, port
      pk = ""; host = ""; port = ""
    }
    {
      line = $0; sub(/#.*/, "", line); gsub(/[ \t\r]/, "", line)
    }
    line ~ /^\[/ { flush(); next }
    tolower(line) ~ /^publickey=/ { pk = substr(line, index(line, "=") + 1) }
    tolower(line) ~ /^endpoint=/ {
      ep = substr(line, index(line, "=") + 1); n = split(ep, parts, ":")
      if (n == 2) { host = parts[1]; port = parts[2] }
    }
    END { flush() }
  ' "$CONF" 2>/dev/null
}

rr_resolve() {  # $1: a name, $2: the peer's endpoint now (wg show), $3: the port; prints the endpoint to have
  # wg and wg-quick take the resolver's first answer (getaddrinfo's order, RFC 6724: IPv6 first where the node
  # has IPv6), and so does apply: the endpoint now stays while the name still has its address, else the first
  # address (an IPv4-mapped ::ffff:a.b.c.d is not the name's: WireGuard on Linux sends nothing to one). Nothing
  # when the name does not resolve.
  if command -v timeout >/dev/null 2>&1; then rr_t='timeout 5'; else rr_t=; fi
  # shellcheck disable=SC2086 # $rr_t is empty or two words
  $rr_t getent ahosts "$1" 2>/dev/null | awk -v cur="$2" -v port="$3" '
    NF && !seen[$1]++ { addr[++n] = $1 }
    END {
      if (n == 0) exit
      host = cur; sub(/:[^:]*$/, "", host); gsub(/[[]|[]]/, "", host); sub(/%.*/, "", host)
      if (cur ~ (":" port "$")) for (i = 1; i <= n; i++) if (addr[i] == host) { print cur; exit }
      first = addr[1]
      if (first ~ /:/) first = "[" first "]"
      print first ":" port
    }'
}

rr_pass() {
  rr_now=$(date +%s)
  rr_hs=$(wg show "$IF" latest-handshakes 2>/dev/null) || return 0
  rr_eps=$(wg show "$IF" endpoints 2>/dev/null) || return 0
  rr_names | while read -r rr_pk rr_host rr_port; do
    rr_t=$(printf '%s\n' "$rr_hs" | awk -v k="$rr_pk" '$1 == k { print $2 }')
    [ -n "$rr_t" ] || continue  # not a peer of the interface
    [ $((rr_now - rr_t)) -gt "$rr_stale" ] || continue  # a recent handshake: the endpoint works
    rr_cur=$(printf '%s\n' "$rr_eps" | awk -v k="$rr_pk" '$1 == k { print $2 }')
    rr_ep=$(rr_resolve "$rr_host" "$rr_cur" "$rr_port")
    [ -n "$rr_ep" ] || continue  # the name does not resolve: the peer keeps its endpoint
    [ "$rr_cur" != "$rr_ep" ] || continue
    if wg set "$IF" peer "$rr_pk" endpoint "$rr_ep" 2>/dev/null; then
      echo "wgmesh-reresolve: $IF: $rr_host is now $rr_ep (was ${rr_cur:-none})" >&2
    fi
  done
}

rr_running() {  # the loop of the PID file runs (PIDs are reused: its command line must name this script)
  [ -s "$rr_pidfile" ] || return 1
  rr_pid=$(cat "$rr_pidfile" 2>/dev/null)
  case $rr_pid in '' | *[!0-9]*) return 1 ;; esac
  [ -r "/proc/$rr_pid/cmdline" ] && tr '\000' ' ' <"/proc/$rr_pid/cmdline" | grep -qF "$rr_self loop"
}

case ${1:-pass} in
pass) rr_pass ;;
loop)
  while wg show "$IF" public-key >/dev/null 2>&1; do
    rr_pass
    sleep "$rr_every"
  done
  ;;
start)
  if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then exit 0; fi
  if rr_running; then exit 0; fi
  mkdir -p "${rr_pidfile%/*}"
  # detached: no terminal, no channel, no lock (fd 9), its own session where setsid exists
  if command -v setsid >/dev/null 2>&1; then
    setsid sh "$rr_self" loop </dev/null >/dev/null 2>"$rr_log" 9>&- &
  else
    (trap '' HUP && exec sh "$rr_self" loop) </dev/null >/dev/null 2>"$rr_log" 9>&- &
  fi
  echo $! >"$rr_pidfile"
  rr_running || sleep 1 # (until the child runs the loop: a read right after this sees it running)
  ;;
stop)
  if rr_running; then kill "$rr_pid" 2>/dev/null || :; fi
  rm -f "$rr_pidfile" "$rr_log"
  ;;
*)
  echo "usage: $rr_self [pass|loop|start|stop]" >&2
  exit 2
  ;;
esac
exit 0
