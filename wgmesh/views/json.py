"""The JSON view: one versioned document on stdout per command (`format_version` "1", a `type`), side
messages on stderr (escaped: stderr is often a terminal). json.dumps escapes control characters, so text from
nodes travels raw and round-trips."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from wgmesh.core.checks import FORMAT_VERSION, CheckReport, Probe
from wgmesh.core.plan import NodeResult, Plan
from wgmesh.core.status import FRESH_SECONDS, PeerView, StatusReport
from wgmesh.views.env import Environment
from wgmesh.views.keyreports import ImportReport, KeysReport
from wgmesh.views.reports import Finding, InitReport, RenderReport, ValidateReport
from wgmesh.views.text import safe


class JsonView:
    def __init__(self, env: Environment) -> None:
        self.env = env

    def _dump(self, doc: dict[str, Any]) -> None:
        self.env.stdout.write(json.dumps(doc, indent=2, default=str) + "\n")

    def _side(self, text: str) -> None:
        self.env.stderr.write(safe(text) + "\n")

    def _warnings(self, lines: Sequence[str]) -> None:
        """A report's warnings on stderr too, as the human view shows them (the document holds them as well): a CI
        job that keeps the document and prints stderr shows them."""
        for line in lines:
            self.warning(line)

    def _findings(self, report: ValidateReport | RenderReport) -> None:
        for f in report.warnings:
            self._side(f.text)

    def message(self, text: str) -> None:
        for line in text.split("\n"):
            self._side(line)

    def warning(self, text: str) -> None:
        self._side(f"Warning: {text}")

    def error(self, text: str) -> None:
        self._side(f"Error: {text}")

    def progress(self, node: str, status: str) -> None:
        pass

    def host_key_added(self, line: str) -> None:
        self._side(f"Added to known_hosts (trusted on first use): {line}")

    def prompt(self, question: str) -> None:
        raise AssertionError("the JSON view never asks")  # apply --json needs --auto-approve or a saved plan

    def plan(self, plan: Plan) -> None:
        self._warnings(plan.warnings)
        self._dump({"type": "plan", **plan_to_dict(plan)})

    def plan_saved(self, path: Path, file: Path) -> None:
        pass  # stdout holds the plan document; the saved file is what --out named

    def apply_cancelled(self) -> None:
        self._side("Apply cancelled.")

    def results(
        self, plan: Plan, results: Sequence[NodeResult], rounds: Sequence[tuple[Plan, Sequence[NodeResult]]] = ()
    ) -> None:
        self._warnings(plan.warnings)
        doc = {"type": "apply", **plan_to_dict(plan), "results": _results(results)}
        if rounds:  # apply's hole punching (core/punch.py): a plan and its results per round, in the one document
            doc["hole_punching"] = [{**plan_to_dict(p), "results": _results(rs)} for p, rs in rounds]
        self._dump(doc)

    def check(self, report: CheckReport) -> None:
        self._warnings(report.warnings())
        self._dump(check_to_dict(report))

    def status(self, report: StatusReport) -> None:
        self._dump(status_to_dict(report))

    def keys(self, report: KeysReport) -> None:
        self._warnings([w for k in report.nodes for w in report.warnings_of(k)])
        self._dump(keys_to_dict(report))

    def import_entries(self, report: ImportReport) -> None:
        pass  # one document, at the end: import_result

    def import_result(self, report: ImportReport) -> None:
        self._warnings(report.all_warnings())
        self._dump(import_to_dict(report))

    def validate(self, report: ValidateReport) -> None:
        self._findings(report)
        self._dump(validate_to_dict(report))

    def render(self, report: RenderReport) -> None:
        self._findings(report)
        self._dump(render_to_dict(report))

    def init(self, report: InitReport) -> None:
        self._dump(
            {"format_version": FORMAT_VERSION, "type": "init", "directory": str(report.directory),
             "created": [str(p) for p in report.created], "updated": [str(p) for p in report.updated],
             "kept": [str(p) for p in report.kept], "unchanged": [str(p) for p in report.unchanged]}
        )


def plan_to_dict(plan: Plan) -> dict[str, Any]:
    """The JSON document (format_version 1)."""
    add, change, destroy = plan.counts()
    return {
        "format_version": "1",
        "summary": {"add": add, "change": change, "destroy": destroy, "errors": len(plan.errors)},
        "warnings": list(plan.warnings),
        "nodes": [
            {
                "node": n.node,
                "error": n.error,
                "notes": list(n.notes),
                "steps": [str(step) for step in n.steps],
                "config_diff": list(n.config_diff),
                "changes": [
                    {
                        "action": c.action.value,
                        "kind": c.kind,
                        "name": c.name,
                        "before": dict(c.before) if c.before is not None else None,
                        "after": dict(c.after) if c.after is not None else None,
                    }
                    for c in n.changes
                ],
            }
            for n in plan.nodes
        ],
    }


def _probe_dict(p: Probe) -> dict[str, Any]:
    return {
        "from": p.source,
        "to": p.target.node,
        "address": str(p.target.address),
        "subnet": None if p.target.subnet is None else str(p.target.subnet),
        "from_subnet": None if p.target.from_subnet is None else str(p.target.from_subnet),
        "from_address": None if p.from_address is None else str(p.from_address),
        "skipped": p.skipped,
        "ok": p.ok,
        "rtt_ms": p.rtt_ms,
        "attempts": p.attempts,
        "device": p.device,
        "error": p.error,
    }


def check_to_dict(report: CheckReport) -> dict[str, Any]:
    """The `wgmesh check --json` document."""
    return {
        "format_version": FORMAT_VERSION,
        "type": "check",
        "ok": report.ok,
        "nodes": list(report.nodes),
        "sources": list(report.sources),
        "skipped": [{"node": n, "reason": r} for n, r in report.skipped.items()],
        "errors": [{"node": n, "error": e} for n, e in report.errors.items()],
        "pairs": [
            {"from": p.source, "to": p.dest, "result": p.cell.value, "rtt_ms": p.rtt_ms} for p in report.pairs()
        ],
        "probes": [_probe_dict(p) for p in report.probes],
        "failures": report.failures(),
        "suspects": report.suspects(),
        "warnings": report.warnings(),
    }


def status_to_dict(report: StatusReport) -> dict[str, Any]:
    """The `wgmesh status --json` document."""
    by_source: dict[str, list[PeerView]] = {}
    for v in report.views:
        by_source.setdefault(v.source, []).append(v)
    return {
        "format_version": FORMAT_VERSION,
        "type": "status",
        "ok": report.ok,
        "interface": report.interface,
        "fresh_seconds": FRESH_SECONDS,
        "nodes": list(report.nodes),
        "skipped": [{"node": n, "reason": r} for n, r in report.skipped.items()],
        "hints": list(report.hints),
        "readings": [
            {
                "node": r.node,
                "error": r.error,
                "clock": r.clock,
                "interface_exists": r.interface_exists if r.error is None else None,
                "link_up": r.link_up if r.error is None else None,
                "unknown_peers": list(r.unknown_peers),
                "peers": [
                    {
                        "peer": v.peer,
                        "path": v.path or None,  # direct, hole punched, via relay R (handshake, counters: R's)
                        "via": v.via,
                        "handshake": v.state.value,
                        "handshake_age_s": v.age,
                        "handshake_before_last_apply": v.before_apply,
                        "latest_handshake": v.latest_handshake or None,
                        "endpoint": v.endpoint,
                        "rx_bytes": v.rx_bytes,
                        "tx_bytes": v.tx_bytes,
                    }
                    for v in by_source.get(r.node, [])
                ],
            }
            for r in report.readings
        ],
        "errors": report.errors(),
    }


def keys_to_dict(report: KeysReport) -> dict[str, Any]:
    """The `wgmesh enroll --json` and `wgmesh rotate --json` document."""
    return {
        "format_version": FORMAT_VERSION,
        "type": report.command,
        "ok": not report.errors,
        "file": str(report.file),
        "key_path": report.key_path,
        "written": report.written,
        "nodes": [
            {
                "node": k.node,
                "key": k.status,
                "public_key": k.public_key,
                "previous_public_key": k.previous,
                "changed": k.changed,
                "mode": k.mode,
                "running_public_key": k.running,
            }
            for k in report.nodes
        ],
        "errors": [{"node": n, "error": e} for n, e in report.errors.items()],
        "warnings": [w for k in report.nodes for w in report.warnings_of(k)],
    }


def import_to_dict(report: ImportReport) -> dict[str, Any]:
    """The `wgmesh import --json` document: the entries, what each node did, and whether mesh.yaml was written."""
    adopted = dict(report.adopted)
    entered = {e.node for e in report.entries}
    return {
        "format_version": FORMAT_VERSION,
        "type": "import",
        "ok": not report.failed and report.error is None,
        "error": report.error,
        "file": str(report.file),
        "creating": report.creating,
        "dry_run": report.dry_run,
        "written": report.written,
        "nodes": [
            {
                "node": e.node,
                "public_key": e.public_key,
                "entry": dict(e.fields),
                "key_source": adopted.get(e.node),
                "config": None if e.node not in adopted else "kept" if e.node in report.config_kept else "written",
                "error": report.failed.get(e.node),
            }
            for e in report.entries
        ] + [{"node": n, "error": why} for n, why in report.failed.items() if n not in entered],
        "warnings": list(report.warnings),
        "residual": [{"node": n, "change": line} for n, line in report.residual],
    }


def _finding(f: Finding) -> dict[str, Any]:
    return {"file": f.file, "line": f.line, "col": f.col, "path": f.path, "message": f.message,
            "severity": f.severity}


def validate_to_dict(report: ValidateReport) -> dict[str, Any]:
    """The `wgmesh validate --json` document (also when the file is invalid: `valid` false, the errors)."""
    doc: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "type": "validate",
        "file": str(report.file),
        "valid": report.valid,
        "errors": [_finding(f) for f in report.findings if f.severity != "warning"],
        "warnings": [_finding(f) for f in report.warnings],
    }
    if report.valid:
        doc["mesh"] = {"name": report.mesh, "interface": report.interface, "nodes": report.nodes,
                       "enrolled": report.enrolled}
    return doc


def render_to_dict(report: RenderReport) -> dict[str, Any]:
    """`wgmesh render NODE --json`: {"node", "config"}; with --all, one such object per node under "nodes"."""
    items = [
        {"node": c.node, "config": c.config, "path": None if c.path is None else str(c.path)} for c in report.configs
    ]
    head = {"format_version": FORMAT_VERSION, "type": "render"}
    if report.all_nodes:
        return {**head, "out": str(report.out), "nodes": items, "decommissioned": list(report.decommissioned)}
    return {**head, **items[0]}


def _results(results: Sequence[NodeResult]) -> list[dict[str, str]]:
    return [{"node": r.node, "outcome": r.outcome.value, "message": r.message} for r in results]
