"""core/checks.py: how a node's probes are paced (waves) and how long they may take (the node's deadline).
The targets and the report are tested with the check command (tests/commands/test_observe.py)."""

from __future__ import annotations

import pytest

from wgmesh.core import checks


@pytest.mark.parametrize(("targets", "waves"), [(0, 0), (1, 1), (checks.WAVE, 1), (checks.WAVE + 1, 2), (141, 3)])
def test_waves(targets: int, waves: int) -> None:
    assert checks.waves(targets) == waves


def test_a_wave_lasts_at_most_every_attempt_of_one_probe() -> None:
    assert checks.wave_seconds() >= checks.HEAD_START + checks.ATTEMPTS * checks.PING_WAIT


@pytest.mark.parametrize(("limit", "deadline"), [(95.5, 90), (30.0, 25), (6.0, 4), (3.0, 2), (1.0, 1), (0.5, 1)])
def test_the_node_stops_before_the_controller_does(limit: float, deadline: int) -> None:
    """The node keeps a margin (5 s, at most a third of the limit) to print what it has and send it."""
    assert checks.node_deadline(limit) == deadline
