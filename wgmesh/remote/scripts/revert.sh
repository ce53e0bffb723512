# shellcheck shell=sh disable=SC2154
# revert.sh: the revert timer of one apply run. wgm_arm (apply.sh) writes it to $REVERT_SH and starts it
# detached, in its own session, with no terminal and no SSH channel: it lives on when the connection ends. It
# inherits the node lock (fd 9) and holds it until it ends, so no other run starts while this one is pending.
#
# It sleeps CONFIRM_TIMEOUT seconds (a TERM wakes it early: confirm.sh after its claim, rollback.sh to revert
# now), then claims the run's record by renaming $PENDING. The claim is the one decision: confirm.sh claims the
# same way, and a rename succeeds once. Claimed here: no confirmation came, so the run is undone ($UNDO: its
# steps, its config file, its runtime) and $REVERTED says so. Not claimed: it was confirmed. Either way the
# run's files are removed. (SC2154: the values come from the apply script.)
# wgmesh-include: apply.sh

revert_sleep=
trap 'if [ -n "$revert_sleep" ]; then kill "$revert_sleep" 2>/dev/null || :; fi' TERM
sleep "$CONFIRM_TIMEOUT" 9>&- &
revert_sleep=$!
printf '%s\n' "$$" | wgm_write "$PENDING"  # armed: wgm_arm waits for this
wait "$revert_sleep" || :
if mv -f "$PENDING" "$PENDING.claimed" 2>/dev/null; then
  wgm_revert
  : >"$REVERTED"
fi
wgm_forget
