"""commands/observe.py, check's deadlines: the command's (scaled with the targets and their waves, or
--command-timeout) and the one the probe script keeps on the node, a little shorter."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from meshes import four

from wgmesh.commands import observe
from wgmesh.core import checks
from wgmesh.core.model import Node
from wgmesh.remote.transport import CommandResult, check_timeout


def test_check_limit_scales_with_the_targets_and_never_undercuts_the_waves() -> None:
    assert observe.check_limit(9) >= check_timeout(9)
    assert observe.check_limit(141) >= checks.waves(141) * checks.wave_seconds()
    assert observe.check_limit(141) >= check_timeout(141)
    assert observe.check_limit(141, command_timeout=6.0) == 6.0


class Recording:
    """A transport that records the scripts and deadline it was given and answers nothing."""

    def __init__(self) -> None:
        self.scripts: dict[str, str] = {}
        self.timeout: float | None = None

    def connect(self, nodes: Iterable[Node]) -> dict[str, str]:
        return {}

    def run_many(self, scripts: Mapping[str, str], timeout: float | None = None) -> dict[str, CommandResult | str]:
        self.scripts = dict(scripts)
        self.timeout = timeout
        return {n: "no answer" for n in scripts}


def _deadline(script: str) -> int:
    m = re.search(r"^DEADLINE=(\d+)$", script, re.M)
    assert m, "the script names no deadline"
    return int(m.group(1))


def test_the_node_gets_a_deadline_shorter_than_the_commands() -> None:
    mesh = four()
    for command_timeout in (None, 6.0):
        t = Recording()
        got = observe._probe_results(mesh, t, mesh.nodes, mesh.nodes, command_timeout)  # type: ignore[arg-type]
        assert set(got) == set(mesh.node_names)
        limit = observe.check_limit(9, command_timeout)
        assert t.timeout == limit
        assert {_deadline(s) for s in t.scripts.values()} == {checks.node_deadline(limit)}
        assert checks.node_deadline(limit) < limit
