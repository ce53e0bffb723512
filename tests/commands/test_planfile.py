from __future__ import annotations

import json
from pathlib import Path

import pytest
from meshes import converged, four, fresh

from wgmesh.commands import planfile
from wgmesh.commands.read import Reading, comparable_state, plan_from_reading
from wgmesh.core.state import digest

MESH = four()


def _reading(states: dict) -> Reading:  # type: ignore[type-arg]
    comparable = {n: comparable_state(MESH, s) for n, s in states.items()}
    return Reading(states, {}, {n: digest(c) for n, c in comparable.items()}, comparable)


@pytest.fixture
def saved(tmp_path: Path) -> tuple[Path, Path]:
    mesh_path = tmp_path / "mesh.yaml"
    mesh_path.write_text("version: 1\n")
    reading = _reading({"aws": fresh(MESH, "aws"), "gcp": converged(MESH, "gcp")})
    out = tmp_path / "p.plan"
    planfile.write(out, mesh_path, ("aws", "gcp"), reading, plan_from_reading(MESH, reading))
    return out, mesh_path


def test_round_trip_and_fresh_plan_is_not_stale(saved: tuple[Path, Path]) -> None:
    out, mesh_path = saved
    got = planfile.read(out)
    assert got.targets == ("aws", "gcp")
    same = _reading({"aws": fresh(MESH, "aws"), "gcp": converged(MESH, "gcp")})
    assert planfile.staleness(got, mesh_path, same) == []


def test_moved_node_and_edited_mesh_are_named(saved: tuple[Path, Path]) -> None:
    out, mesh_path = saved
    got = planfile.read(out)
    moved = _reading({"aws": fresh(MESH, "aws"), "gcp": converged(MESH, "gcp", listen_port=1234)})
    reasons = planfile.staleness(got, mesh_path, moved)
    assert len(reasons) == 1 and reasons[0] == "node gcp: live state changed (listen_port)"
    mesh_path.write_text("version: 1\n# edited\n")
    assert planfile.staleness(got, mesh_path, moved)[0] == "mesh.yaml changed since the plan was made"


def test_the_file_holds_public_data_only(saved: tuple[Path, Path]) -> None:
    out, _ = saved
    doc = json.loads(out.read_text())
    assert doc["kind"] == "wgmesh-plan" and doc["format_version"] == "1"
    text = out.read_text().lower()
    assert "private" not in text and "preshared_key\": \"" not in text


@pytest.mark.parametrize(
    ("content", "message"),
    [("{}", "not a wgmesh saved plan"), ("not json", "not a wgmesh saved plan"),
     ('{"kind": "wgmesh-plan", "format_version": "9"}', "format '9' is not supported"),
     ('{"kind": "wgmesh-plan", "format_version": "1"}', "damaged saved plan")],
)
def test_bad_files_are_refused(tmp_path: Path, content: str, message: str) -> None:
    bad = tmp_path / "bad.plan"
    bad.write_text(content)
    with pytest.raises(planfile.PlanFileError, match=message):
        planfile.read(bad)
