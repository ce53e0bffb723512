# shellcheck shell=sh
# probe.sh: `wgmesh check` on one node: ping every target at once; remote/probe.py parses the output.
#
# Values: FORMAT (the check format version), ATTEMPTS (pings per target while there is no reply),
#         PING_WAIT (seconds ping waits for a reply), TARGETS (one line per target: INDEX ADDRESS FAMILY
#         DELAY FROM, indexes 0..N-1 in order; DELAY is seconds to wait first, 0 for none; FROM is `-`, or a
#         subnet of this node: ping from this node's address inside it).
# Output: `check FORMAT`, then one block per target in index order, then `end`:
#     @@wgmesh:ping INDEX ADDRESS
#     @@wgmesh:source SOURCE      (FROM given: this node's address inside FROM, the first `ip addr` lists)
#     @@wgmesh:route
#     <ip -o route get ADDRESS [from SOURCE]>
#     @@wgmesh:attempt N          (once per ping sent)
#     <ping's output>
#     @@wgmesh:result EXIT ATTEMPTS
# A probe whose node has no address inside FROM is `ping`, `nosource FROM`, `result 2 0` (not run).
# `noping` before `end` when the node has no ping command. Each probe is a background job writing its
# own file in a temporary folder; after `wait` the files are printed in order, so output never interleaves.

wgm_mark check "$FORMAT"
if ! wgm_have ping; then
  wgm_mark noping
  wgm_mark end
  exit 0
fi
probe_dir=$(mktemp -d 2>/dev/null || mktemp -d -t wgmesh.XXXXXX)
trap 'rm -rf "$probe_dir"' EXIT

# probe_source FAMILY PREFIX: this node's first address inside PREFIX (`ip addr show to PREFIX` lists the
# addresses that PREFIX contains), without its length; nothing when it has none.
probe_source() {
  ip -o -"$1" addr show to "$2" 2>/dev/null | awk '
    { for (i = 1; i < NF; i++) if ($i == "inet" || $i == "inet6") { sub(/\/.*/, "", $(i + 1)); print $(i + 1); exit } }
  ' || :
}

# probe_one INDEX ADDRESS FAMILY DELAY FROM: run in the background; three processes (the job, ip, ping).
probe_one() {
  exec >"$probe_dir/$1" 2>&1
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
    probe_n=$((probe_n + 1))
    wgm_mark attempt "$probe_n"
    if ping -"$3" -c 1 -W "$PING_WAIT" ${probe_from:+-I "$probe_from"} -n "$2"; then
      probe_status=0
    else
      probe_status=$?
    fi
    [ "$probe_status" -eq 1 ] || break
  done
  wgm_mark result "$probe_status" "$probe_n"
}

probe_count=0
while read -r probe_index probe_address probe_family probe_delay probe_subnet; do
  [ -n "$probe_index" ] || continue
  probe_one "$probe_index" "$probe_address" "$probe_family" "$probe_delay" "${probe_subnet:--}" &
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
