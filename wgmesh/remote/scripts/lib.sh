# shellcheck shell=sh
# wgmesh lib.sh: the prelude of every node script.
#
# remote/shell.py `script(NAME, **values)` sends, on the standard input of `/bin/sh -s`:
#   1. the values, as shell-quoted assignments (NAME='value'; names are [A-Z_][A-Z0-9_]*),
#   2. this file,
#   3. NAME.sh (a line `# wgmesh-include: OTHER.sh` in it is replaced by OTHER.sh).
# Plain POSIX sh: it runs under dash and busybox ash (no `local`, arrays, `[[`, pipefail); shellcheck -s sh.
# The script is read from stdin as it runs: a command that reads stdin must have it redirected.
#
# Settings: set -eu; umask 077; LC_ALL=C; PATH gets the sbin folders (wg, wg-quick and ip live there, and a
# non-login shell of a minimal image leaves them out).
#
# Variables this file reads (set them as values):
#   WGM_LOCK          the lock file of wgm_lock: /run/wireguard/wgmesh-IF.lock (apply, rollback and rotate
#                     share it; shell.lock_path() is the one definition)
#   WGM_LOCK_TIMEOUT  seconds wgm_lock waits for it (default 60)
#
# Functions (the library's own variables are named wgm_*; scripts use other names):
#   wgm_mark NAME [ARGS...]  print the marker line `@@wgmesh:NAME ARGS`: the one protocol of every script.
#                            A section is a marker line and the lines up to the next marker; shell.sections()
#                            is its one parser.
#   wgm_die MESSAGE [STATUS] print MESSAGE on stderr and exit STATUS (default 1). The controller shows the
#                            last line of stderr as the node's error: say what is wrong and what to do.
#   wgm_have COMMAND         true when COMMAND is on PATH.
#   wgm_lock                 take $WGM_LOCK on file descriptor 9 (flock), waiting $WGM_LOCK_TIMEOUT seconds;
#                            exit 75 (EX_TEMPFAIL) when another run holds it, 69 (EX_UNAVAILABLE) when the node
#                            has no flock. Held until the script exits; a daemon started under the lock must
#                            not inherit it (`9>&-`).
#   wgm_write FILE           write stdin to FILE atomically: a temporary file in FILE's folder, mode 600,
#                            flushed, renamed over FILE. Always feed it explicitly (`... | wgm_write F`, or a
#                            heredoc): unredirected, it would read the rest of the script.
#   wgm_unsafe_dir DIR       print DIR (a link followed) when it is not the script user's (root's) alone (owned by
#                            another user, or writable by group or others), or a folder above it (or above the
#                            link) that is neither root's nor ours, or that others may write without the sticky
#                            bit; false when all are safe (or absent).
#   wgm_own_dir DIR          exit 3 naming the folder and the fix when wgm_unsafe_dir finds one: another user
#                            could plant a link where the script writes keys and configs as root.
#   wgm_writable DIR         true when a file can be created in DIR (a probe file, removed at once: `test -w` is
#                            always true for root in busybox, even on a read-only file system).
#   wgm_started PID          the process's start time (clock ticks since boot, /proc/PID/stat field 22): with the
#                            PID, it names a process that a reused PID cannot pass for. Nothing when it is gone.
#   wgm_conf_key FILE        print the PrivateKey a wg-quick config FILE gives its interface: the value of the last
#                            PrivateKey line of its [Interface] section (as wg reads it), without white space;
#                            nothing when it has none. For the node's own use: never printed to the controller.
#   wgm_stop_after SECONDS   for a read-only script: if it still runs SECONDS from now, stop it and every command
#                            it started (SIGTERM to its process group, SIGKILL 5 s later), so that a hung `wg`
#                            or DNS lookup does not pile up on a node the controller has given up on. A watcher
#                            in the background, holding none of the script's files, that ends within a second
#                            of the script. Not for a script that starts what must outlive it in its process
#                            group (apply's `wg-quick up` may start wireguard-go).
#   wgm_stale_keys KEY       remove KEY.wgmesh-tmp.PID files whose PID runs no more: what a killed enroll or
#                            rotate left (a new private key, mode 600, that nothing used); a running one's is kept.
#   WGM_KEYLESS_AWK          awk functions for a script that shows a wg-quick config's lines: wgm_keyless(LINE, R)
#                            is LINE with every key-like text (43 base64 characters and `=`) replaced by R, except
#                            a PublicKey line's value (its first key before any `#`: a key in its comment is
#                            replaced too). PrivateKey and PresharedKey lines are each script's own to drop.
#
# Exit statuses: 75 lock held (LOCK_EXIT), 69 no flock (NO_FLOCK_EXIT); scripts document their own.

set -eu
umask 077
LC_ALL=C
export LC_ALL
PATH="${PATH:+$PATH:}/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
export PATH

# shellcheck disable=SC2034 # (used by the scripts that include this file)
WGM_KEYLESS_AWK='
function wgm_keyless(line, r,   k, i, head, tail) {
  if (wgm_re == "") { for (i = 0; i < 43; i++) wgm_re = wgm_re "[A-Za-z0-9+/]"; wgm_re = wgm_re "=" }
  k = tolower(line); gsub(/[ \t\r]/, "", k)
  if (k !~ /^publickey=/) { gsub(wgm_re, r, line); return line }
  i = index(line, "#"); head = line; tail = ""
  if (i) { head = substr(line, 1, i - 1); tail = substr(line, i) }
  if (match(head, wgm_re)) { tail = substr(head, RSTART + RLENGTH) tail; head = substr(head, 1, RSTART + RLENGTH - 1) }
  else { tail = head tail; head = "" }
  gsub(wgm_re, r, tail)
  return head tail
}'

wgm_mark() {
  wgm_mark_name=$1
  shift
  if [ "$#" -gt 0 ]; then
    printf '@@wgmesh:%s %s\n' "$wgm_mark_name" "$*"
  else
    printf '@@wgmesh:%s\n' "$wgm_mark_name"
  fi
}

wgm_die() {
  printf '%s\n' "$1" >&2
  exit "${2:-1}"
}

wgm_have() {
  command -v "$1" >/dev/null 2>&1
}

wgm_lock() {
  wgm_lock_wait=${WGM_LOCK_TIMEOUT:-60}
  if ! wgm_have flock; then
    wgm_die "flock is not installed on this node, so wgmesh cannot take its lock $WGM_LOCK: install util-linux (Alpine: flock)" 69
  fi
  mkdir -p "${WGM_LOCK%/*}"
  wgm_own_dir "${WGM_LOCK%/*}"  # the lock, the run's records and its revert timer's script live there
  exec 9>"$WGM_LOCK"
  if ! flock -w "$wgm_lock_wait" 9; then
    wgm_die "another wgmesh apply or rotate holds $WGM_LOCK on this node (waited ${wgm_lock_wait}s), or the revert timer of a change awaiting confirmation: wgmesh plan shows it as a pending apply (the next apply confirms it; else it is undone within --confirm-timeout); then run this again" 75
  fi
}

wgm_unsafe_dir() {
  wgm_ud_me=$(id -u)
  wgm_ud_real=$(cd "$1" 2>/dev/null && pwd -P) || wgm_ud_real=$1
  # the folder itself, as it is on disk (a symbolic link followed): ours alone
  if [ -d "$wgm_ud_real" ]; then
    case $(stat -c '%u %a' "$wgm_ud_real" 2>/dev/null) in
    "$wgm_ud_me "*[0145][0145] | "$wgm_ud_me "[0145][0145]) ;;
    *) printf '%s\n' "$wgm_ud_real"; return 0 ;;
    esac
  fi
  # every folder above it, and above the name given (who may write there may replace the link): root's or ours,
  # and written by others only with the sticky bit (they cannot rename what is not theirs), as OpenSSH's
  # StrictModes asks of a path
  for wgm_ud_top in "$wgm_ud_real" "$1"; do
    wgm_ud=${wgm_ud_top%/*}
    while [ -n "$wgm_ud" ]; do
      if [ -d "$wgm_ud" ]; then
        case $(stat -c '%u %a' "$wgm_ud" 2>/dev/null) in
        "0 "*[0145][0145] | "$wgm_ud_me "*[0145][0145] | "0 "[1357]??? | "$wgm_ud_me "[1357]???) ;;
        *) printf '%s\n' "$wgm_ud"; return 0 ;;
        esac
      fi
      wgm_ud=${wgm_ud%/*}
    done
  done
  return 1
}

wgm_own_dir() {
  if wgm_od=$(wgm_unsafe_dir "$1"); then
    wgm_die "$wgm_od must be root's and writable by root only: another user could plant a link where wgmesh writes keys and configs as root (chown root: $wgm_od; chmod go-w $wgm_od)" 3
  fi
}

wgm_started() {
  wgm_st=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
  printf '%s\n' "${wgm_st##*) }" | cut -d' ' -f20
}

wgm_conf_key() {
  awk '{
    l = $0; sub(/^[ \t]+/, "", l); k = tolower(l); gsub(/[ \t\r]/, "", k)
    if (k ~ /^\[/) { iface = (k ~ /^\[interface\]/); next }
    if (iface && k ~ /^privatekey=/) { sub(/^[^=]*=[ \t]*/, "", l); sub(/[ \t\r\v\f]*(#.*)?$/, "", l); v = l }
  } END { if (v != "") print v }' "$1"
}

wgm_stale_keys() {
  for wgm_sk in "$1".wgmesh-tmp.*; do
    case ${wgm_sk##*.} in '' | *[!0-9]*) continue ;; esac
    if [ -f "$wgm_sk" ] && ! kill -0 "${wgm_sk##*.}" 2>/dev/null; then rm -f "$wgm_sk"; fi
  done
}

wgm_writable() {
  wgm_wp="$1/.wgmesh-probe.$$"
  if (: >"$wgm_wp") 2>/dev/null; then
    rm -f "$wgm_wp"
    return 0
  fi
  return 1
}

wgm_write() {
  wgm_write_tmp="${1%/*}/.${1##*/}.wgmesh-tmp.$$"
  if cat >"$wgm_write_tmp" && chmod 600 "$wgm_write_tmp" && { sync "$wgm_write_tmp" 2>/dev/null || :; } &&
    mv -f "$wgm_write_tmp" "$1"; then
    return 0
  fi
  rm -f "$wgm_write_tmp"
  return 1
}

wgm_stop_after() {
  # a value that is not a count of seconds the shell can do arithmetic on stops nothing
  case $1 in '' | *[!0-9]* | ??????????*) return 0 ;; esac
  (
    trap '' TERM # (kill -TERM 0 below signals this watcher too)
    wgm_left=$1
    while [ "$wgm_left" -gt 0 ]; do
      sleep 1
      kill -0 "$$" 2>/dev/null || exit 0
      wgm_left=$((wgm_left - 1))
    done
    kill -TERM 0
    sleep 5
    kill -KILL 0
  ) </dev/null >/dev/null 2>&1 &
}
