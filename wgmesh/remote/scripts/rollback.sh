# shellcheck shell=sh disable=SC2154
# rollback.sh: run by the controller when verification after an apply failed. Under the node lock, undo what
# that apply recorded in $UNDO (its reconcile steps, newest first, with the values of the time; the config
# file; the runtime from the snapshot), then forget the record. (SC2154: IF, SNAP and UNDO are values.)
wgm_lock
set +e
if [ ! -f "$UNDO" ]; then wgm_die "no record of the last apply ($UNDO) to roll back"; fi
# shellcheck disable=SC1090
. "$UNDO"
rm -f "$UNDO" "$SNAP"
