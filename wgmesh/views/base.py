"""The one View protocol every command reports through. Two implementations: `HumanView` (rich text, node text
escaped) and `JsonView` (one versioned JSON document on stdout, side messages on stderr)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:  # (annotations only: a command that draws no plan does not import the planner)
    from collections.abc import Sequence
    from pathlib import Path

    from wgmesh.core.checks import CheckReport
    from wgmesh.core.plan import NodeResult, Plan
    from wgmesh.core.status import StatusReport
    from wgmesh.views.keyreports import ImportReport, KeysReport
    from wgmesh.views.reports import InitReport, RenderReport, ValidateReport


class View(Protocol):
    # side channel (stderr, except a human `message`): lines while a command runs
    def message(self, text: str) -> None: ...

    def warning(self, text: str) -> None: ...

    def error(self, text: str) -> None: ...

    def progress(self, node: str, status: str) -> None: ...

    def host_key_added(self, line: str) -> None: ...

    def prompt(self, question: str) -> None: ...

    # plan and apply
    def plan(self, plan: Plan) -> None: ...

    def plan_saved(self, path: Path, file: Path) -> None: ...  # file: the mesh file the plan was made from

    def apply_cancelled(self) -> None: ...

    def results(
        self, plan: Plan, results: Sequence[NodeResult], rounds: Sequence[tuple[Plan, Sequence[NodeResult]]] = ()
    ) -> None: ...

    # check and status
    def check(self, report: CheckReport) -> None: ...

    def status(self, report: StatusReport) -> None: ...

    # enroll and rotate
    def keys(self, report: KeysReport) -> None: ...

    # import: the entries before anything changes, then the outcome (JSON: one document, at the end)
    def import_entries(self, report: ImportReport) -> None: ...

    def import_result(self, report: ImportReport) -> None: ...

    # the local commands
    def validate(self, report: ValidateReport) -> None: ...

    def render(self, report: RenderReport) -> None: ...

    def init(self, report: InitReport) -> None: ...
