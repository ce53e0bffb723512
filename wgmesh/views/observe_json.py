"""JSON of check and status."""

from __future__ import annotations

from typing import Any

from wgmesh.core.checks import FORMAT_VERSION, CheckReport, Probe
from wgmesh.core.status import FRESH_SECONDS, PeerView, StatusReport


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
