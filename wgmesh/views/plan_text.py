"""The text of a plan, Terraform style: (style, line) pairs that the human view escapes and prints."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from wgmesh.core.changes import Action, Change, Value

if TYPE_CHECKING:  # (only annotates: validate and render do not import the planner)
    from wgmesh.core.plan import Plan

NO_CHANGES = "No changes. Your mesh matches the configuration."

COLORS = {Action.CREATE: "green", Action.UPDATE: "yellow", Action.DELETE: "red", Action.REPLACE: "magenta"}


def _fmt(v: Value) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, list):
        return "[" + ", ".join(json.dumps(x) for x in v) + "]"
    return json.dumps(v)


def summary_line(plan: Plan) -> str:
    """Terraform's summary; nodes that could not be planned are counted too, so that a plan with errors never
    reads as "nothing to do"."""
    add, change, destroy = plan.counts()
    line = f"Plan: {add} to add, {change} to change, {destroy} to destroy."
    failed = len(plan.errors)
    if failed:
        line += f" {failed} node{'s' if failed != 1 else ''} could not be planned."
    return line


def config_diff_lines(lines: tuple[str, ...]) -> list[tuple[str, str]]:
    """The node's config file against the new one, under the node's changes: `- PostUp = ...` / `+ ...`."""
    if not lines:
        return []
    out = [("dim", "      # the config file, as on the node (-) and as wgmesh writes it (+):")]
    for line in lines:
        style = {"-": "red", "+": "green", "@": "dim"}.get(line[:1], "")
        out.append((style, f"        {line}"))
    return out


def _list_lines(key: str, before: list[str], after: list[str]) -> list[tuple[str, str]]:
    lines = [("yellow", f"      ~ {key} = [")]
    for x in before + [x for x in after if x not in before]:
        item = json.dumps(x)
        if x not in after:
            lines.append(("red", f"          - {item},"))
        elif x not in before:
            lines.append(("green", f"          + {item},"))
        else:
            lines.append(("", f"            {item},"))
    lines.append(("yellow", "        ]"))
    return lines


def change_lines(c: Change) -> list[tuple[str, str]]:
    """(style, text) lines for one change, Terraform style."""
    sym = c.action.symbol
    color = COLORS[c.action]
    lines = [(color, f"  {sym} {c.address}")]
    attrs = c.changed_attributes()
    if c.action is Action.DELETE:
        attrs = [(k, b, a) for k, b, a in attrs if k in ("public_key",)]
    width = max((len(k) for k, _, _ in attrs), default=0)
    for key, before, after in attrs:
        if c.action is Action.CREATE:
            if after is None or after == 0 or c.kind == "route":
                continue  # unset and off values, and a route's device, say nothing
            lines.append((color, f"      + {key.ljust(width)} = {_fmt(after)}"))
        elif c.action is Action.DELETE:
            lines.append((color, f"      - {key.ljust(width)} = {_fmt(before)}"))
        elif isinstance(before, list) and isinstance(after, list):
            lines.extend(_list_lines(key, before, after))
        elif after is None:
            lines.append(("red", f"      - {key.ljust(width)} = {_fmt(before)} -> null"))
        elif before is None:
            lines.append(("green", f"      + {key.ljust(width)} = {_fmt(after)}"))
        else:
            forces = "  # forces replacement" if c.action is Action.REPLACE and key == "public_key" else ""
            lines.append(("yellow", f"      ~ {key.ljust(width)} = {_fmt(before)} -> {_fmt(after)}{forces}"))
    hidden = c.unchanged_count()
    if hidden:
        lines.append(("dim", f"        # ({hidden} unchanged attribute{'s' if hidden != 1 else ''} hidden)"))
    return lines
