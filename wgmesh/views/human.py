"""Plans and apply results for people (rich text) and for programs (JSON). One interface, two views.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Protocol

from rich.markup import escape

from wgmesh.core.plan import Action, Change, NodeResult, Outcome, Plan, Value
from wgmesh.views.env import Environment

NO_CHANGES = "No changes. Your mesh matches the configuration."


_COLORS = {Action.CREATE: "green", Action.UPDATE: "yellow", Action.DELETE: "red", Action.REPLACE: "magenta"}


class View(Protocol):
    def plan(self, plan: Plan) -> None: ...

    def results(self, plan: Plan, results: Sequence[NodeResult]) -> None: ...

    def message(self, text: str) -> None: ...


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
    add, change, destroy = plan.counts()
    return f"Plan: {add} to add, {change} to change, {destroy} to destroy."


def change_lines(c: Change) -> list[tuple[str, str]]:
    """(style, text) lines for one change, Terraform style."""
    sym = c.action.symbol
    color = _COLORS[c.action]
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
            lines.append(("yellow", f"      ~ {key} = ["))
            for x in before + [x for x in after if x not in before]:
                item = json.dumps(x)
                if x not in after:
                    lines.append(("red", f"          - {item},"))
                elif x not in before:
                    lines.append(("green", f"          + {item},"))
                else:
                    lines.append(("", f"            {item},"))
            lines.append(("yellow", "        ]"))
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


class HumanView:
    def __init__(self, env: Environment) -> None:
        self.env = env
        self.out = env.console()
        self.err = env.console(err=True)

    def _print(self, style: str, text: str) -> None:
        self.out.print(f"[{style}]{escape(text)}[/]" if style else escape(text))

    def message(self, text: str) -> None:
        self.out.print(escape(text))

    def warning(self, text: str) -> None:
        self.err.print(f"[yellow]Warning:[/] {escape(text)}")

    def error(self, text: str) -> None:
        self.err.print(f"[bold red]Error:[/] {escape(text)}")

    def plan(self, plan: Plan) -> None:
        for w in plan.warnings:
            self.warning(w)
        if plan.has_changes:
            self.out.print(
                "wgmesh will perform the following actions "
                "([green]+[/] create, [yellow]~[/] update in place, [red]-[/] destroy):"
            )
        for n in plan.nodes:
            if not n.changes and not n.notes:
                continue
            self.out.print()
            header = f"  # node {n.node}"
            if n.changes:
                add, chg, dst = n.counts()
                header += f": {add} to add, {chg} to change, {dst} to destroy"
            self._print("bold", header)
            for note in n.notes:
                self._print("dim", f"  # {note}")
            for c in n.changes:
                for style, text in change_lines(c):
                    self._print(style, text)
        if plan.errors:
            self.out.print()
        for n in plan.errors:
            self.error(f"node {n.node}: {n.error}")
        self.out.print()
        if plan.has_changes or plan.errors:
            self._print("bold", summary_line(plan))
        else:
            self._print("bold green", NO_CHANGES)

    def results(self, plan: Plan, results: Sequence[NodeResult]) -> None:
        self.out.print()
        styles = {Outcome.CHANGED: "green", Outcome.UNCHANGED: "dim", Outcome.FAILED: "bold red",
                  Outcome.SKIPPED: "yellow"}
        width = max((len(r.node) for r in results), default=0)
        for r in results:
            msg = f" ({r.message})" if r.message else ""
            self._print(styles[r.outcome], f"{r.node.ljust(width)}  {r.outcome.value}{msg}")
        failed = [r for r in results if r.outcome is Outcome.FAILED]
        add, change, destroy = plan.counts()
        self.out.print()
        if failed:
            self.error(f"apply failed on {len(failed)} node(s): {', '.join(r.node for r in failed)}. "
                       "Fix the cause and run wgmesh apply again; the other nodes converged.")
        else:
            self._print("bold green", f"Apply complete! Resources: {add} added, {change} changed, "
                                      f"{destroy} destroyed.")

    def progress(self, node: str, status: str) -> None:
        """One line per node as its connection settles, on a terminal only (stderr: stdout stays the plan)."""
        if self.env.color and status != "connecting":
            self.err.print(f"[dim]{escape(node)}: {escape(status)}[/]")
