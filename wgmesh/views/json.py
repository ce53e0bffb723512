"""The versioned JSON documents."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from wgmesh.core.checks import FORMAT_VERSION, CheckReport, Probe
from wgmesh.core.plan import NodeResult, Plan
from wgmesh.core.status import FRESH_SECONDS, PeerView, StatusReport
from wgmesh.views.env import Environment


class JsonView:
    def __init__(self, env: Environment) -> None:
        self.env = env

    def _dump(self, doc: dict[str, Any]) -> None:
        self.env.stdout.write(json.dumps(doc, indent=2) + "\n")

    def message(self, text: str) -> None:
        self.env.stderr.write(text + "\n")

    def warning(self, text: str) -> None:
        self.env.stderr.write(f"Warning: {text}\n")

    def error(self, text: str) -> None:
        self.env.stderr.write(f"Error: {text}\n")

    def plan(self, plan: Plan) -> None:
        self._dump({"type": "plan", **plan_to_dict(plan)})

    def results(self, plan: Plan, results: Sequence[NodeResult]) -> None:
        doc = {"type": "apply", **plan_to_dict(plan)}
        doc["results"] = [{"node": r.node, "outcome": r.outcome.value, "message": r.message} for r in results]
        self._dump(doc)

    def progress(self, node: str, status: str) -> None:
        pass


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
                        "handshake": v.state.value,
                        "handshake_age_s": v.age,
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
