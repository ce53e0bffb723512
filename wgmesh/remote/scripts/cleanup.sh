# shellcheck shell=sh disable=SC2154
# cleanup.sh: after a verified apply, forget its snapshot and undo record, under the node lock (another
# apply that took the lock since may have written its own). (SC2154: SNAP and UNDO are values.)
wgm_lock
rm -f "$SNAP" "$UNDO"
