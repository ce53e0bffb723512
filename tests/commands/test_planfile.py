from __future__ import annotations

import dataclasses
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


def test_a_plan_that_now_differs_is_stale_though_no_node_moved(saved: tuple[Path, Path]) -> None:
    """What a plan shows also depends on what no fingerprint records (handshake ages decide whether a hole is
    punched): the plan made at apply time must be the saved one, change for change."""
    out, mesh_path = saved
    got = planfile.read(out)
    same = _reading({"aws": fresh(MESH, "aws"), "gcp": converged(MESH, "gcp")})
    assert planfile.staleness(got, mesh_path, same, plan_from_reading(MESH, same)) == []
    other = dataclasses.replace(MESH, nodes=tuple(dataclasses.replace(n, mtu=1380) for n in MESH.nodes))
    reasons = planfile.staleness(got, mesh_path, same, plan_from_reading(other, same))
    assert reasons == ["node aws: the plan now differs from the saved one (now: create interface wg0, create peer "
                       "azure, create peer gcp, create peer aliyun, create route 192.168.20.0/24, create route "
                       "192.168.30.0/24, create route 192.168.40.0/24, update forwarding ipv4, create firewall "
                       "forward wg0, create reresolve wg0)",
                       "node gcp: the plan now differs from the saved one (now: update interface wg0)"]


def test_a_moved_peer_is_named_not_numbered(saved: tuple[Path, Path]) -> None:
    out, mesh_path = saved
    got = planfile.read(out)
    gcp = converged(MESH, "gcp")
    azure = MESH.node("azure").public_key
    peers = {k: dataclasses.replace(p, endpoint="192.0.2.99:51820") if k == azure else p for k, p in gcp.peers.items()}
    moved = _reading({"aws": fresh(MESH, "aws"), "gcp": dataclasses.replace(gcp, peers=peers)})
    names = {n.public_key: n.name for n in MESH.nodes if n.public_key}
    reasons = planfile.staleness(got, mesh_path, moved, names=names)
    assert reasons == ["node gcp: live state changed (peer azure.endpoint)"]


def test_a_plan_saved_by_another_version_says_so(saved: tuple[Path, Path]) -> None:
    """Review U: a plan saved by the version before (its node states without a field this one records) was
    refused as if every node had moved (`live state changed (busy_runs)`)."""
    out, mesh_path = saved
    doc = json.loads(out.read_text())
    for state in doc["states"].values():
        del state["busy_runs"]
    out.write_text(json.dumps(doc))
    same = _reading({"aws": fresh(MESH, "aws"), "gcp": converged(MESH, "gcp")})
    assert planfile.staleness(planfile.read(out), mesh_path, same) == [
        "it was saved by another wgmesh version (its node states have other fields)"]


def test_a_node_whose_plan_is_an_error_now_is_named_with_it(saved: tuple[Path, Path]) -> None:
    """Review R3: a node made unsafe since (a preflight fact no fingerprint records) read as `now: no change`."""
    out, mesh_path = saved
    same = _reading({"aws": fresh(MESH, "aws"), "gcp": converged(MESH, "gcp")})
    unsafe = _reading({"aws": fresh(MESH, "aws"), "gcp": converged(MESH, "gcp", missing=("runowner",))})
    unsafe = dataclasses.replace(unsafe, fingerprints=same.fingerprints, comparable=same.comparable)
    reasons = planfile.staleness(planfile.read(out), mesh_path, unsafe, plan_from_reading(MESH, unsafe))
    assert reasons == ["node gcp: preflight: /run/wireguard or its parent folder is not root's alone (another user "
                       "owns it or may write in it, where wgmesh keeps its lock and a run's records as root): chown "
                       "root: /run/wireguard; chmod 755 /run/wireguard; chmod go-w /run; wgmesh changes nothing on "
                       "this node until then"]


def test_a_node_that_was_an_error_in_the_saved_plan_too_does_not_make_it_stale(tmp_path: Path) -> None:
    """Review R4: a saved plan with a node that could not be planned (unreachable, a preflight error) could never
    be applied any more: that node's error, the same at apply, made the plan stale. It is that node's error, and
    the others are applied."""
    mesh_path = tmp_path / "mesh.yaml"
    mesh_path.write_text("version: 1\n")
    unsafe = _reading({"aws": fresh(MESH, "aws"), "gcp": converged(MESH, "gcp", missing=("runowner",))})
    out = tmp_path / "p.plan"
    planfile.write(out, mesh_path, ("aws", "gcp"), unsafe, plan_from_reading(MESH, unsafe))
    saved = planfile.read(out)
    assert saved.plan_errors is not None and "gcp" in saved.plan_errors
    assert planfile.staleness(saved, mesh_path, unsafe, plan_from_reading(MESH, unsafe)) == []
    gone = Reading({"aws": fresh(MESH, "aws")}, {"gcp": "cannot connect: timed out"},
                   {"aws": unsafe.fingerprints["aws"]}, {"aws": unsafe.comparable["aws"]})
    assert planfile.staleness(saved, mesh_path, gone, plan_from_reading(MESH, gone)) == []
