"""The human view of every command (rich). Text from nodes is escaped (`text.safe`) wherever it is printed,
with or without colour; stdout holds the report, stderr the warnings, errors, progress and questions."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from wgmesh.core.model import command_line
from wgmesh.views.env import Environment
from wgmesh.views.reports import InitReport, RenderReport, ValidateReport
from wgmesh.views.text import markup, safe, safe_lines

if TYPE_CHECKING:  # (the plan, check and status types only annotate: validate and render import none of them)
    from rich.console import Console

    from wgmesh.core.checks import CheckReport
    from wgmesh.core.plan import NodeResult, Plan
    from wgmesh.core.status import StatusReport
    from wgmesh.views.keyreports import ImportReport, KeysReport

__all__ = ["HumanView"]

_OUTCOME_STYLES = {"changed": "green", "unchanged": "dim", "failed": "bold red"}  # core.plan.Outcome's values

_KEY_SOURCES = {
    "kept": "{key} already held its key",
    "config": "moved its private key from the PrivateKey line of {conf} to {key} (on the node)",
    "interface": "saved the interface's private key to {key} (on the node)",
}


class HumanView:
    def __init__(self, env: Environment) -> None:
        self.env = env

    # rich is imported when something is drawn through it (validate, render and init write plain text)
    @cached_property
    def out(self) -> Console:
        return self.env.console()

    @cached_property
    def err(self) -> Console:
        return self.env.console(err=True)

    # ------------------------------------------------------------------------------------------ side channel

    def _print(self, style: str, text: str) -> None:
        """One line of the report: escaped (it may hold node text), then styled."""
        self.out.print(f"[{style}]{markup(text)}[/]" if style else markup(text))

    def _line(self, text: str) -> None:
        self._print("", text)

    def message(self, text: str) -> None:
        """Our own text, possibly several lines; any node text in it is escaped line by line."""
        from rich.markup import escape

        self.out.print(escape(safe_lines(text)))

    def warning(self, text: str) -> None:
        self.err.print(f"[yellow]Warning:[/] {markup(text)}")

    def error(self, text: str) -> None:
        self.err.print(f"[bold red]Error:[/] {markup(text)}")

    def progress(self, node: str, status: str) -> None:
        """One line per node as its connection settles, on a terminal only (stderr: stdout stays the plan)."""
        if self.env.color and status != "connecting":
            self.err.print(f"[dim]{markup(node)}: {markup(status)}[/]")

    def host_key_added(self, line: str) -> None:
        """Trust on first use is never silent: every key learned is named, with its fingerprint."""
        self.env.stderr.write(f"Added to known_hosts (trusted on first use): {safe(line)}\n")

    def prompt(self, question: str) -> None:
        self.env.stderr.write(f"\n{question}\n  Enter a value: ")
        self.env.stderr.flush()

    # ------------------------------------------------------------------------------------------ plan, apply

    def plan(self, plan: Plan) -> None:
        from wgmesh.views.plan_text import NO_CHANGES, change_lines, config_diff_lines, summary_line  # (plan's own)

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
            for style, text in config_diff_lines(n.config_diff):
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

    def plan_saved(self, path: Path, file: Path) -> None:
        self.message(f"\nSaved the plan to {path}. To perform exactly these actions, run: "
                     f"{command_line(f'apply {path}', file)}")

    def apply_cancelled(self) -> None:
        self.message("Apply cancelled.")

    def results(
        self, plan: Plan, results: Sequence[NodeResult], rounds: Sequence[tuple[Plan, Sequence[NodeResult]]] = ()
    ) -> None:
        """(`rounds`, apply's hole punching, are shown as they happen: plan() and results() each.)"""
        from wgmesh.core.plan import NOT_STARTED, Outcome

        self.out.print()
        width = max((len(r.node) for r in results), default=0)
        for r in results:
            msg = f" ({r.message})" if r.message else ""
            self._print(_OUTCOME_STYLES[r.outcome], f"{r.node.ljust(width)}  {r.outcome.value}{msg}")
        failed = [r for r in results if r.outcome is Outcome.FAILED]
        # what was done, not what was planned: a node another apply changed meanwhile is `unchanged`
        done = {r.node for r in results if r.outcome is Outcome.CHANGED}
        counts = [n.counts() for n in plan.nodes if n.node in done]
        add, change, destroy = (sum(c[i] for c in counts) for i in range(3))
        self.out.print()
        if failed and all(r.message == NOT_STARTED for r in failed):
            self.error(f"apply was interrupted: {', '.join(r.node for r in failed)} not applied; run wgmesh apply "
                       "again to apply them.")
        elif failed:
            others = "; the other nodes converged" if len(failed) < len(results) else ""
            self.error(f"apply failed on {len(failed)} node(s): {', '.join(r.node for r in failed)}. "
                       f"Fix the cause and run wgmesh apply again{others}.")
        else:
            self._print("bold green", f"Apply complete! Resources: {add} added, {change} changed, "
                                      f"{destroy} destroyed.")

    # ------------------------------------------------------------------------------------------ check, status

    def check(self, report: CheckReport) -> None:
        if len(report.nodes) < 2:
            self._line("Nothing to check: the mesh needs at least two nodes with public keys.")
        else:
            from wgmesh.views.observe_human import print_check

            print_check(self.env, report)

    def status(self, report: StatusReport) -> None:
        from wgmesh.views.observe_human import print_status

        print_status(self.env, report)

    # ------------------------------------------------------------------------------------------ enroll, rotate

    def keys(self, report: KeysReport) -> None:
        from wgmesh.views import keyreports

        key_path, file = report.key_path, report.file
        for k in report.nodes:
            if report.command == "enroll":
                for w in report.warnings_of(k):
                    self.warning(w)
                made = f"created {key_path}" if k.status == "created" else f"{key_path} exists"
                if not k.changed:
                    self._line(f"  {k.node}: {made}; public_key already recorded (no change)")
                    continue
            else:
                made = f"new key in {key_path}"
            self._line(f"  ~ {k.node}: {made}; public_key {keyreports.quote_key(k.previous)} -> "
                       f"{keyreports.quote_key(k.public_key)}")
        changed = report.changed
        if report.written and report.command == "enroll":
            self._line(f"Wrote {len(changed)} public key(s) to {file}. Next: `{command_line('plan', file)}`, then "
                       f"`{command_line('apply', file)}`.")
        elif report.written:
            names = ", ".join(k.node for k in changed)
            self._line(f"Wrote {len(changed)} new public key(s) to {file}. The running interface of {names} "
                         f"keeps its old key until `{command_line('apply', file)}` switches it and its peers "
                         "together.")
        elif report.command == "enroll" and report.nodes and not changed:
            self._line(f"No changes to {file}.")
        for name, why in report.errors.items():
            self.error(f"{name}: {why}")

    # ------------------------------------------------------------------------------------------ import

    def import_entries(self, report: ImportReport) -> None:
        for e in report.entries:
            self._line(f"  + node {e.node}: {e.description}")
        for w in report.all_warnings():
            self.warning(w)

    def import_result(self, report: ImportReport) -> None:
        if report.dry_run:
            self._line(f"Dry run: nothing was changed on the nodes or in {report.file}.")
            return
        key, conf = report.key_path, report.conf_path
        for node, source in report.adopted:
            moved = _KEY_SOURCES[source].format(key=key, conf=conf)
            if node in report.config_kept:
                moved = moved.replace("moved its", "copied its")  # the config keeps its line until the apply
                self._line(f"  {node}: {moved}; left its {conf} as it is, since wgmesh's would change it (above): "
                             f"the first apply replaces it (a copy without its PrivateKey line is "
                             f"{conf}{report.backup_suffix})")
            else:
                self._line(f"  {node}: {moved}; wrote wgmesh's {conf} (the previous one, without a PrivateKey "
                             f"line, is {conf}{report.backup_suffix})")
        for name, why in report.failed.items():
            self.error(f"{name}: {why}")
        if report.written:
            verb = "Created" if report.creating else "Updated"
            kept = [n for n, _ in report.adopted if n in report.config_kept]
            then = (f"it shows what the first apply changes on {', '.join(kept)}" if kept
                    else "it should show no changes for them")
            self._line(f"{verb} {report.file}: imported {len(report.adopted)} node(s). Next: "
                         f"`{command_line('plan', report.file)}` ({then}).")

    # ------------------------------------------------------------------------------------------ local commands

    def _findings(self, report: ValidateReport | RenderReport) -> None:
        for f in report.warnings:
            self.env.stderr.write(f"{safe(f.text)}\n")

    def validate(self, report: ValidateReport) -> None:
        if not report.valid:
            return  # the errors are the failure's lines (stderr)
        self._findings(report)
        warnings = len(report.warnings)
        self.env.stdout.write(
            f"{report.file}: valid. Mesh {report.mesh!r}: {report.nodes} node(s), {report.enrolled} enrolled, "
            f"interface {report.interface}" + (f", {warnings} warning(s)" if warnings else "") + ".\n"
        )

    def render(self, report: RenderReport) -> None:
        """The config text itself, as a file would hold it: never through rich."""
        self._findings(report)
        if report.all_nodes:
            self.env.stdout.write(f"Wrote {len(report.configs)} config(s) to {report.out}/\n")
            if report.decommissioned:
                self.env.stdout.write(f"No config for {', '.join(report.decommissioned)} (decommission: true: apply "
                                      "takes the interface down and removes its config); a file of it already in "
                                      f"{report.out}/ is left as it is\n")
            return
        for c in report.configs:
            self.env.stdout.write(f"Wrote {c.path}\n" if c.path is not None else c.config)

    def init(self, report: InitReport) -> None:
        for p in report.created:
            self.env.stdout.write(f"created {p}\n")
        for p in report.updated:
            self.env.stdout.write(f"updated {p} (this version's)\n")
        for p in report.unchanged:
            self.env.stdout.write(f"unchanged {p}\n")
        for p in report.kept:
            self.env.stdout.write(f"kept {p} (the repo's own: init never replaces it)\n")
        if report.updated or report.kept or report.unchanged:
            self.env.stdout.write("Next: review the changes (git diff), commit them.\n")
            return
        self.env.stdout.write(f"Next: add your nodes to {report.directory / 'mesh.yaml'}, then `wgmesh validate`.\n")
