"""Fixtures of the node-script tests: `node` is a fake node (tests/remote/stubs.py) under each shell."""

from __future__ import annotations

from pathlib import Path

import pytest
from remote.stubs import SHELLS, Stubs


@pytest.fixture(params=SHELLS)
def node(request: pytest.FixtureRequest, tmp_path: Path) -> Stubs:
    """A fake node under /bin/sh (dash) and under busybox sh (skipped with a reason when busybox is absent)."""
    return Stubs(tmp_path / "node", request.param)


@pytest.fixture
def dash_node(tmp_path: Path) -> Stubs:
    """A fake node under /bin/sh only, for tests of what the controller does with a script's output."""
    return Stubs(tmp_path / "node", "dash")
