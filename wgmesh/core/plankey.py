"""The read-only plan key in the plan: one note per node, once any node of the mesh has the key. Pure.

`LiveState.plan_key` (read.sh's `plankey` section, remote/plankey.py) is one of:
- installed: the key's authorized_keys line and the read script of this wgmesh version;
- outdated: both, but the script is from another wgmesh version (a read through it is refused);
- incomplete: the script without the line, or the line without the script;
- absent: neither.
A mesh where no node has any of it gets no note at all.
"""

from __future__ import annotations

from collections.abc import Mapping

from wgmesh.core.state import LiveState

INSTALLED, OUTDATED, INCOMPLETE, ABSENT = "installed", "outdated", "incomplete", "absent"
_AGAIN = "run `wgmesh plan-key KEY.pub` again"
NOTES = {
    INSTALLED: "read-only plan key: installed",
    OUTDATED: f"read-only plan key: its read script is from another wgmesh version; {_AGAIN}",
    INCOMPLETE: f"read-only plan key: incomplete (script or authorized_keys line missing); {_AGAIN}",
    ABSENT: "read-only plan key: missing, so CI's plan cannot read this node; run `wgmesh plan-key KEY.pub`",
}


def plan_key_notes(states: Mapping[str, LiveState]) -> dict[str, str]:
    """{node: note} for every node read, when at least one node has any part of the plan key."""
    known = {name: s.plan_key for name, s in states.items() if s.plan_key in NOTES}
    if all(v == ABSENT for v in known.values()):
        return {}
    return {name: NOTES[v] for name, v in known.items() if v is not None}
