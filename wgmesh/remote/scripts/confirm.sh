# shellcheck shell=sh disable=SC2154
# confirm.sh: the controller's confirmation of one apply run, sent over a new SSH connection opened after the
# change (proof that the controller still reaches the node). It claims the run's record by renaming $PENDING,
# as the run's revert timer (revert.sh) does when it wakes: a rename succeeds once, so exactly one of them wins.
# Won: the undo record and the snapshot are forgotten and the timer is woken (it finds the claim gone and ends,
#      releasing the node lock): `@@wgmesh:confirmed`.
# Lost: the timer reverted the run, or is reverting it: wait for the node lock (the timer holds it until it
#      is done): `@@wgmesh:reverted`. Or another connection confirmed it first ($APPLIED names it): the change
#      stays, `@@wgmesh:confirmed`.
# Won also stamps the time and the run in $APPLIED (`TIME RUN`; read.sh's `applied` section is the time).
# Exit 3: no record of the run on the node (it was restarted, or its files were removed). (SC2154: values.)
# wgmesh-include: apply.sh

if mv -f "$PENDING" "$PENDING.claimed" 2>/dev/null; then
  confirm_pid=$(cat "$PENDING.claimed")
  wgm_forget
  # when the node last changed (older handshakes prove nothing of it), and by which run
  printf '%s %s\n' "$(date +%s)" "$RUN" >"$APPLIED" 2>/dev/null || :
  wgm_wake "$confirm_pid"
  wgm_mark confirmed
  exit 0
fi
wgm_lock
if [ -f "$REVERTED" ]; then
  rm -f "$REVERTED"
  wgm_mark reverted
  exit 0
fi
confirm_last=
if [ -f "$APPLIED" ]; then read -r _ confirm_last <"$APPLIED" || :; fi
if [ "$confirm_last" = "$RUN" ]; then
  wgm_mark confirmed
  exit 0
fi
wgm_die "no record of this apply on the node ($PENDING): was it restarted?" 3
