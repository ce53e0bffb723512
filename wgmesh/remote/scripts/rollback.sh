# shellcheck shell=sh disable=SC2154
# rollback.sh: run by the controller when verification after an apply failed (on the apply's connection), or
# after that connection was lost once the controller had said `go` (on a new one). The run's revert timer
# (revert.sh) holds the node lock once the run is done: wake it, so that it reverts the run now, under that
# lock, and wait for the lock (the run may still be running its steps: its timer is woken once it is armed).
# With the lock: the timer reverted the run (`@@wgmesh:rolledback`; `@@wgmesh:reverted` when it had done so
# by itself, before we asked), or the timer is gone (killed) and its record unclaimed: undo the run here.
# The controller appends a read of the state, which it compares with the state before the apply.
# Exit 3: no record of the run (it failed on the node and rolled itself back, or never started); 75, 69: as
# wgm_lock. (SC2154: values.)
# wgmesh-include: apply.sh

wgm_have flock || wgm_die "flock is not installed on this node, so wgmesh cannot take its lock $WGM_LOCK" 69
mkdir -p "${WGM_LOCK%/*}"
exec 9>"$WGM_LOCK"
rollback_asked=
rollback_tries=0
while ! flock -n 9; do
  if [ -s "$PENDING" ]; then
    rollback_asked=1
    wgm_wake "$(cat "$PENDING" 2>/dev/null || :)"
  fi
  rollback_tries=$((rollback_tries + 1))
  if [ "$rollback_tries" -gt $((${WGM_LOCK_TIMEOUT:-60} * 5)) ]; then
    wgm_die "another wgmesh apply or rotate holds $WGM_LOCK on this node (waited ${WGM_LOCK_TIMEOUT:-60}s)" 75
  fi
  sleep 0.2 2>/dev/null || sleep 1
done
if [ -f "$REVERTED" ]; then
  rm -f "$REVERTED"
  if [ -n "$rollback_asked" ]; then wgm_mark rolledback; else wgm_mark reverted; fi
elif mv -f "$PENDING" "$PENDING.claimed" 2>/dev/null; then
  wgm_revert
  set -e
  wgm_forget
  wgm_mark rolledback
else
  wgm_die "no record of this apply on the node ($UNDO) to roll back" 3
fi
