# shellcheck shell=sh
# probe.sh: `wgmesh check` on one node: ping every target at once; remote/probe.py parses the output.
#
# Values: FORMAT (the check format version), ATTEMPTS (pings per target while there is no reply),
#         PING_WAIT (seconds ping waits for a reply), TARGETS (one line per target: INDEX ADDRESS FAMILY
#         DELAY, indexes 0..N-1 in order; DELAY is seconds to wait first, 0 for none).
# Output: `check FORMAT`, then one block per target in index order, then `end`:
#     @@wgmesh:ping INDEX ADDRESS
#     @@wgmesh:route
#     <ip -o route get ADDRESS>
#     @@wgmesh:attempt N          (once per ping sent)
#     <ping's output>
#     @@wgmesh:result EXIT ATTEMPTS
# or `noping` before `end` when the node has no ping command. Each probe is a background job writing its
# own file in a temporary folder; after `wait` the files are printed in order, so output never interleaves.

wgm_mark check "$FORMAT"
if ! wgm_have ping; then
  wgm_mark noping
  wgm_mark end
  exit 0
fi
probe_dir=$(mktemp -d 2>/dev/null || mktemp -d -t wgmesh.XXXXXX)
trap 'rm -rf "$probe_dir"' EXIT

# probe_one INDEX ADDRESS FAMILY DELAY: run in the background; three processes (the job, ip, ping).
probe_one() {
  exec >"$probe_dir/$1" 2>&1
  if [ "$4" != 0 ]; then sleep "$4"; fi
  wgm_mark ping "$1" "$2"
  wgm_mark route
  ip -o route get "$2" || :
  probe_n=0
  probe_status=1
  while [ "$probe_n" -lt "$ATTEMPTS" ]; do
    probe_n=$((probe_n + 1))
    wgm_mark attempt "$probe_n"
    if ping -"$3" -c 1 -W "$PING_WAIT" -n "$2"; then probe_status=0; else probe_status=$?; fi
    [ "$probe_status" -eq 1 ] || break
  done
  wgm_mark result "$probe_status" "$probe_n"
}

probe_count=0
while read -r probe_index probe_address probe_family probe_delay; do
  [ -n "$probe_index" ] || continue
  probe_one "$probe_index" "$probe_address" "$probe_family" "$probe_delay" &
  probe_count=$((probe_count + 1))
done <<EOF
$TARGETS
EOF
wait

set --
probe_i=0
while [ "$probe_i" -lt "$probe_count" ]; do
  set -- "$@" "$probe_dir/$probe_i"
  probe_i=$((probe_i + 1))
done
if [ "$#" -gt 0 ]; then cat "$@" 2>/dev/null || :; fi
wgm_mark end
