"""Saved plans (`wgmesh plan --out FILE`, `wgmesh apply FILE`).

A saved plan records what it was made from: the digest of mesh.yaml, the targets, and per node a
fingerprint and a normalized copy of the live state (public data only: keys, addresses, peers, routes;
never a private or preshared key, which the node never sends). `apply FILE` re-reads the nodes and refuses
the plan when mesh.yaml or any node moved since, saying what moved.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wgmesh.commands.common import Failure
from wgmesh.commands.read import Reading
from wgmesh.core.plan import Plan
from wgmesh.meshfile import write_atomic
from wgmesh.views.json import plan_to_dict

KIND = "wgmesh-plan"
FORMAT_VERSION = "1"


class PlanFileError(Failure):
    pass


@dataclass(frozen=True)
class SavedPlan:
    mesh_sha256: str
    targets: tuple[str, ...]
    fingerprints: dict[str, str]
    states: dict[str, Any]
    errors: dict[str, str]
    changes: dict[str, Any] | None = None  # per node, the changes the saved plan showed (None: not recorded)
    plan_errors: dict[str, str] | None = None  # per node, the error its plan was (a preflight, a conflict)


def mesh_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write(path: Path, mesh_path: Path, targets: tuple[str, ...], reading: Reading, plan: Plan) -> None:
    unwritable = writable(path)  # again: the read may have written it since (known_hosts, with new host keys)
    if unwritable:
        raise PlanFileError(f"{unwritable} (it changed during the plan); the plan was not saved")
    doc = {
        "kind": KIND,
        "format_version": FORMAT_VERSION,
        "mesh_sha256": mesh_digest(mesh_path),
        "targets": list(targets),
        "fingerprints": reading.fingerprints,
        "states": reading.comparable,
        "errors": reading.errors,
        "plan": plan_to_dict(plan),
    }
    text = json.dumps(doc, indent=2, sort_keys=True) + "\n"
    try:
        write_atomic(path.resolve(), text, 0o600)  # it describes the hosts in detail: the owner's only
    except OSError as e:
        raise PlanFileError(f"cannot write the plan to {path}: {e.strerror or type(e).__name__}") from None


def writable(path: Path, own: Iterable[Path] = ()) -> str | None:
    """Why a plan cannot be saved at `path` (checked before any node is read), or None. The plan replaces the file
    (a new file renamed over it), so only a file that is a saved plan already, or empty, is replaced: never a
    device (`--out /dev/null` replaced the machine's /dev/null), a FIFO, a link's target, or mesh.yaml."""
    if path.is_symlink():
        return f"--out {path} is a symbolic link: wgmesh does not write through links; give the file itself"
    if path.resolve() in {p.resolve() for p in own}:
        return f"--out {path} is one of the mesh's own files (mesh.yaml, known_hosts, an SSH key): give another file"
    if path.is_dir():
        return f"--out {path} is a folder: give a file name, e.g. {path / 'mesh.plan'}"
    if path.exists():
        if not path.is_file():
            return (f"--out {path} is not a regular file (a device or a FIFO): give a file name; to plan without "
                    "saving, leave --out out")
        if not _replaceable(path):
            return f"--out {path} exists and is not a saved plan: wgmesh replaces only its own plan files"
    folder = path.resolve().parent
    if not folder.is_dir():
        return f"--out {path}: no folder {folder}: create it first, or save the plan elsewhere"
    if not os.access(folder, os.W_OK):
        return f"--out {path}: the folder {folder} is not writable"
    return None


def _replaceable(path: Path) -> bool:
    """An empty file, or a saved plan (a file another `plan --out` wrote)."""
    try:
        if path.stat().st_size == 0:
            return True
        doc = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return False
    return isinstance(doc, dict) and doc.get("kind") == KIND


def read(path: Path) -> SavedPlan:
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise PlanFileError(f"{path}: no such saved plan") from None
    except (OSError, ValueError) as e:
        raise PlanFileError(f"{path}: not a wgmesh saved plan ({e})") from None
    if not isinstance(doc, dict) or doc.get("kind") != KIND:
        raise PlanFileError(f"{path}: not a wgmesh saved plan (make one with `wgmesh plan --out FILE`)")
    if doc.get("format_version") != FORMAT_VERSION:
        raise PlanFileError(f"{path}: saved plan format {doc.get('format_version')!r} is not supported")
    try:
        return SavedPlan(
            mesh_sha256=str(doc["mesh_sha256"]),
            targets=tuple(doc["targets"]),
            fingerprints=dict(doc["fingerprints"]),
            states=dict(doc["states"]),
            errors=dict(doc.get("errors", {})),
            changes=_changes(doc["plan"]) if isinstance(doc.get("plan"), dict) else None,
            plan_errors=_plan_errors(doc["plan"]) if isinstance(doc.get("plan"), dict) else None,
        )
    except (KeyError, TypeError) as e:
        raise PlanFileError(f"{path}: damaged saved plan ({e})") from None


def _changes(plan_doc: dict[str, Any]) -> dict[str, Any]:
    """{node: its changes} of a plan's JSON document, as JSON reads them back."""
    nodes = json.loads(json.dumps(plan_doc.get("nodes") or []))
    return {n["node"]: n.get("changes") or [] for n in nodes if isinstance(n, dict) and "node" in n}


def _plan_errors(plan_doc: dict[str, Any]) -> dict[str, str]:
    """{node: the error its plan was} of a plan's JSON document."""
    nodes = plan_doc.get("nodes") or []
    return {n["node"]: str(n["error"]) for n in nodes if isinstance(n, dict) and "node" in n and n.get("error")}


def mesh_changed(saved: SavedPlan, mesh_path: Path) -> str | None:
    """Why the plan is stale from mesh.yaml alone (checked before any node is read), or None."""
    if mesh_digest(mesh_path) != saved.mesh_sha256:
        return f"{mesh_path.name} changed since the plan was made"
    return None


def staleness(
    saved: SavedPlan, mesh_path: Path, reading: Reading, plan: Plan | None = None,
    names: Mapping[str, str] | None = None,
) -> list[str]:
    """Why a saved plan no longer applies; empty when it still does. `plan`: the plan made now from `reading`,
    which must show the saved plan's changes exactly (a plan also depends on what no fingerprint records, such as
    handshake ages: a hole punched or not); `names`: public key -> node name, to name peers that moved."""
    reasons: list[str] = []
    why = mesh_changed(saved, mesh_path)
    if why:
        reasons.append(why)
    if any(isinstance(saved.states.get(n), dict) and set(saved.states[n]) != set(reading.comparable[n])
           for n in reading.comparable):
        # a node state of other fields than this wgmesh records: not a change on the node
        return [*reasons, "it was saved by another wgmesh version (its node states have other fields)"]
    for name in sorted(set(saved.fingerprints) | set(reading.fingerprints) | set(reading.errors)):
        if name in reading.errors:
            continue  # reported as a node error by apply
        before = saved.fingerprints.get(name)
        now = reading.fingerprints.get(name)
        if before != now:
            reasons.append(f"node {name}: {_what_moved(saved.states.get(name), reading, name, names or {})}")
    if not reasons and plan is not None and saved.changes is not None:
        now_changes = _changes(plan_to_dict(plan))
        # a node whose plan is an error now and was not then (a preflight fact no fingerprint records); one that
        # was an error in the saved plan too, or cannot be read now, is that node's error at apply, as before
        was_error = saved.plan_errors or {}
        now_errors = {n.node: n.error for n in plan.nodes
                      if n.error and n.node not in was_error and n.node not in reading.errors}
        for name in sorted(set(saved.changes) | set(now_changes)):
            if name in now_errors:
                reasons.append(f"node {name}: {now_errors[name]}")
            elif saved.changes.get(name, []) != now_changes.get(name, []):
                shown = ", ".join(dict.fromkeys(f"{c.get('action')} {c.get('kind')} {c.get('name')}".rstrip()
                                                for c in now_changes.get(name, []))) or "no change"
                reasons.append(f"node {name}: the plan now differs from the saved one (now: {shown})")
    return reasons


def _what_moved(before: Any, reading: Reading, name: str, names: Mapping[str, str]) -> str:
    after = reading.comparable.get(name)
    if before is None or after is None:
        return "was not readable when the plan was made" if before is None else "cannot be read now"
    from deepdiff import DeepDiff  # imported here: only a stale plan needs it

    diff = DeepDiff(before, json.loads(json.dumps(after)), ignore_order=True, verbose_level=1)
    # root['peers'][2]['endpoint'] -> peers[2].endpoint
    peers = [p.get("public_key") if isinstance(p, dict) else None for p in (after.get("peers") or [])]

    def peer_name(m: re.Match[str]) -> str:  # peers[2] -> peer gcp (the index says nothing to an operator)
        i = int(m.group(1))
        key = peers[i] if i < len(peers) else None
        return f"peer {names[key]}" if key in names else m.group(0)

    paths = sorted({re.sub(r"^peers\[(\d+)\]", peer_name,
                           re.sub(r"\['([^']*)'\]", r".\1", str(p).replace("root", "", 1)).lstrip("."))
                    for group in diff.values() for p in group})
    shown = ", ".join(paths[:5]) + (", …" if len(paths) > 5 else "")
    return f"live state changed ({shown})" if shown else "live state changed"
