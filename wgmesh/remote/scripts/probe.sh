# shellcheck shell=sh
# probe.sh: `wgmesh check` on one node: ping the targets in parallel, in waves; remote/probe.py parses the output.
#
# Values: FORMAT (the check format version), ATTEMPTS (pings per target while there is no reply),
#         PING_WAIT (seconds ping waits for a reply), WAVE (at most this many probes at once), DEADLINE (whole
#         seconds the probes may take on this node: a probe retries no more, and no wave starts, once it has
#         passed; 0 for none), WAVE_TICKS (quarter seconds after which a wave's probes still running are
#         stopped), LATE (the result status of a probe stopped or not started at the deadline),
#         TARGETS (one line per target: INDEX ADDRESS FAMILY DELAY FROM, indexes 0..N-1 in order; DELAY is
#         seconds to wait first, 0 for none; FROM is `-`, or a subnet of this node: ping from this node's
#         address inside it).
# Output: `check FORMAT`, `wave N` before each wave is started (`wait` every second while it runs), then one block per target in index order, then
# `end`:
#     @@wgmesh:ping INDEX ADDRESS
#     @@wgmesh:source SOURCE      (FROM given: this node's address inside FROM, the first `ip addr` lists)
#     @@wgmesh:route
#     <ip -o route get ADDRESS [from SOURCE]>
#     @@wgmesh:attempt N          (once per ping sent)
#     <ping's output>
#     @@wgmesh:result EXIT ATTEMPTS
# A probe whose node has no address inside FROM is `ping`, `nosource FROM`, `result 2 0` (not run). A probe
# the deadline stopped ends with `result LATE ATTEMPTS` (ATTEMPTS is 0 when its wave never started).
# `noping` before `end` when the node has no ping command. Each probe is a background job writing its own file
# in a temporary folder; after the last wave the files are printed in order, so output never interleaves.
# Nothing outlives the script: each wave is waited for, and a script stopped early (the controller hung up:
# writing `wait` or `wave` fails; HUP, INT, TERM) stops the probes it started on its way out. A ping is retried on no
# reply (status 1) and on a packet the kernel would not queue (ENOBUFS: "No buffer space available").

wgm_mark check "$FORMAT"
if ! wgm_have ping; then
  wgm_mark noping
  wgm_mark end
  exit 0
fi
probe_dir=$(mktemp -d 2>/dev/null || mktemp -d -t wgmesh.XXXXXX)
probe_jobs=
# probe_stop: on the way out, stop the probes still running (they stop their pings), wait for them, clean up.
probe_stop() {
  if [ -n "$probe_jobs" ]; then
    # shellcheck disable=SC2086 # the job ids, one word each
    kill $probe_jobs 2>/dev/null || :
    # shellcheck disable=SC2086
    wait $probe_jobs 2>/dev/null || :
  fi
  probe_jobs=
  rm -rf "$probe_dir"
}
trap probe_stop EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 141' PIPE
trap 'exit 143' TERM

# The deadline as the node's clock (seconds since the epoch); empty: none (DEADLINE 0, or no `date +%s`).
probe_now() {
  date +%s 2>/dev/null || :
}
probe_end=
if [ "$DEADLINE" -gt 0 ]; then
  probe_start=$(probe_now)
  case $probe_start in
  '' | *[!0-9]*) ;;
  *) probe_end=$((probe_start + DEADLINE)) ;;
  esac
fi
# probe_late: true once the deadline has passed.
probe_late() {
  [ -n "$probe_end" ] || return 1
  probe_clock=$(probe_now)
  case $probe_clock in '' | *[!0-9]*) return 1 ;; esac
  [ "$probe_clock" -ge "$probe_end" ]
}

# probe_source FAMILY PREFIX: this node's first address inside PREFIX (`ip addr show to PREFIX` lists the
# addresses that PREFIX contains), without its length; nothing when it has none.
probe_source() {
  ip -o -"$1" addr show to "$2" 2>/dev/null | awk '
    { for (i = 1; i < NF; i++) if ($i == "inet" || $i == "inet6") { sub(/\/.*/, "", $(i + 1)); print $(i + 1); exit } }
  ' || :
}

# probe_one INDEX ADDRESS FAMILY DELAY FROM: run in the background; three processes (the job, ip, ping). Stopped
# (TERM), it stops its ping too. A ping's output goes through INDEX.out, to look for ENOBUFS in it.
probe_one() {
  exec >"$probe_dir/$1" 2>&1
  # shellcheck disable=SC2064 # $1 now: the index of this probe
  trap ": >'$probe_dir/$1.done'" EXIT
  probe_ping=
  trap 'if [ -n "$probe_ping" ]; then kill "$probe_ping" 2>/dev/null || :; fi; exit 143' TERM
  trap - HUP INT PIPE
  if [ "$4" != 0 ]; then sleep "$4"; fi
  wgm_mark ping "$1" "$2"
  probe_from=
  if [ "$5" != - ]; then
    probe_from=$(probe_source "$3" "$5")
    if [ -z "$probe_from" ]; then
      wgm_mark nosource "$5"
      wgm_mark result 2 0
      return 0
    fi
    wgm_mark source "$probe_from"
  fi
  wgm_mark route
  ip -o route get "$2" ${probe_from:+from "$probe_from"} || :
  probe_n=0
  probe_status=1
  while [ "$probe_n" -lt "$ATTEMPTS" ]; do
    if [ "$probe_n" -gt 0 ] && probe_late; then
      probe_status=$LATE
      break
    fi
    probe_n=$((probe_n + 1))
    wgm_mark attempt "$probe_n"
    ping -"$3" -c 1 -W "$PING_WAIT" ${probe_from:+-I "$probe_from"} -n "$2" >"$probe_dir/$1.out" 2>&1 &
    probe_ping=$!
    if wait "$probe_ping"; then probe_status=0; else probe_status=$?; fi
    probe_ping=
    probe_nobufs=
    while IFS= read -r probe_line || [ -n "$probe_line" ]; do
      printf '%s\n' "$probe_line"
      case $probe_line in *"No buffer space available"*) probe_nobufs=1 ;; esac
    done <"$probe_dir/$1.out"
    [ "$probe_status" -ne 0 ] || break
    [ "$probe_status" -eq 1 ] || [ -n "$probe_nobufs" ] || break
  done
  wgm_mark result "$probe_status" "$probe_n"
}

# probe_wave: start the probes listed in $probe_dir/wave, then wait for them: each marks INDEX.done as it
# exits. While they run, `wait` is written every second: when the controller has hung up, that write fails
# and the script stops (trap PIPE). A probe still running after WAVE_TICKS quarter seconds (longer than its
# attempts can take) is stopped.
probe_wave() {
  probe_jobs=
  probe_pending=
  while read -r probe_index probe_address probe_family probe_delay probe_subnet; do
    probe_one "$probe_index" "$probe_address" "$probe_family" "$probe_delay" "${probe_subnet:--}" </dev/null &
    probe_jobs="$probe_jobs $!"
    probe_pending="$probe_pending $probe_index"
  done <"$probe_dir/wave"
  probe_tick=0
  while :; do
    probe_left=
    for probe_i in $probe_pending; do
      [ -e "$probe_dir/$probe_i.done" ] || probe_left="$probe_left $probe_i"
    done
    probe_pending=$probe_left
    if [ -z "$probe_pending" ] || [ "$probe_tick" -ge "$WAVE_TICKS" ]; then break; fi
    sleep 0.25
    probe_tick=$((probe_tick + 1))
    if [ $((probe_tick % 4)) -eq 0 ]; then wgm_mark wait; fi
  done
  # shellcheck disable=SC2086 # the job ids, one word each
  if [ -n "$probe_pending" ]; then kill $probe_jobs 2>/dev/null || :; fi
  # shellcheck disable=SC2086
  wait $probe_jobs || :
  probe_jobs=
}

probe_count=0
probe_waves=0
probe_queued=0
: >"$probe_dir/wave"
# probe_flush: run the queued wave, or (the deadline has passed) report its probes as not started.
probe_flush() {
  [ "$probe_queued" -gt 0 ] || return 0
  if probe_late; then
    while read -r probe_index probe_address _; do
      { wgm_mark ping "$probe_index" "$probe_address"; wgm_mark result "$LATE" 0; } >"$probe_dir/$probe_index"
    done <"$probe_dir/wave"
  else
    probe_waves=$((probe_waves + 1))
    wgm_mark wave "$probe_waves"
    probe_wave
  fi
  : >"$probe_dir/wave"
  probe_queued=0
}
while read -r probe_line; do
  [ -n "$probe_line" ] || continue
  printf '%s\n' "$probe_line" >>"$probe_dir/wave"
  probe_queued=$((probe_queued + 1))
  probe_count=$((probe_count + 1))
  if [ "$probe_queued" -ge "$WAVE" ]; then probe_flush; fi
done <<EOF
$TARGETS
EOF
probe_flush

set --
probe_i=0
while [ "$probe_i" -lt "$probe_count" ]; do
  set -- "$@" "$probe_dir/$probe_i"
  probe_i=$((probe_i + 1))
done
if [ "$#" -gt 0 ]; then cat "$@" 2>/dev/null || :; fi
wgm_mark end
