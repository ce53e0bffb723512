"""views/json.py: one versioned document per command on stdout; side messages on stderr, escaped."""

from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path

from meshes import converged, four, fresh, pubkey

from wgmesh.core.checks import check_report
from wgmesh.core.plan import NodeResult, Outcome, Plan, build_plan
from wgmesh.core.state import LiveState
from wgmesh.core.status import status_report
from wgmesh.views.env import Environment
from wgmesh.views.json import JsonView
from wgmesh.views.keyreports import ImportEntry, ImportReport, KeysReport, NodeKey
from wgmesh.views.reports import Finding, InitReport, RenderedConfig, RenderReport, ValidateReport

MESH = four()
NAMES = list(MESH.node_names)
HOSTILE = "\x1b[2J\x1b[HNo changes.\nfake"


def _env() -> Environment:
    return Environment(io.StringIO(), io.StringIO())


def _out(env: Environment) -> str:
    return env.stdout.getvalue()  # type: ignore[attr-defined]


def _err(env: Environment) -> str:
    return env.stderr.getvalue()  # type: ignore[attr-defined]


def _plan(states: dict[str, LiveState | str], warnings: tuple[str, ...] = ()) -> Plan:
    return build_plan(MESH, states, warnings=warnings)


def _converged() -> dict[str, LiveState | str]:
    return {n: converged(MESH, n) for n in NAMES}


def _doc(env: Environment) -> dict:  # type: ignore[type-arg]
    """stdout holds exactly one document, in ASCII (control characters escaped by json.dumps)."""
    out = _out(env)
    assert "\x1b" not in out
    return json.loads(out)  # type: ignore[no-any-return]



def test_json_plan_document() -> None:
    states = _converged()
    states["gcp"] = dataclasses.replace(converged(MESH, "gcp"), listen_port=51999)
    states["aws"] = "timed out"
    env = _env()
    JsonView(env).plan(_plan(states, warnings=("w1",)))
    doc = json.loads(_out(env))
    assert doc["type"] == "plan" and doc["format_version"] == "1"
    assert doc["summary"] == {"add": 0, "change": 1, "destroy": 0, "errors": 1}
    assert doc["warnings"] == ["w1"]
    assert _err(env) == "Warning: w1\n"  # (review C1: the document only)
    nodes = {n["node"]: n for n in doc["nodes"]}
    assert nodes["aws"]["error"] == "timed out"
    (c,) = nodes["gcp"]["changes"]
    assert (c["action"], c["kind"], c["name"]) == ("update", "interface", "wg0")
    assert c["before"]["listen_port"] == 51999 and c["after"]["listen_port"] == 51820


def test_json_results_document_and_side_channels() -> None:
    plan = _plan({n: fresh(MESH, n) for n in NAMES})
    env = _env()
    view = JsonView(env)
    view.progress("aws", "connecting")
    view.message("hello")
    view.warning("careful")
    view.results(plan, [NodeResult(n, Outcome.CHANGED, "ok") for n in NAMES])
    doc = json.loads(_out(env))  # stdout holds exactly one document
    assert doc["type"] == "apply" and doc["format_version"] == "1"
    assert doc["results"] == [{"node": n, "outcome": "changed", "message": "ok"} for n in NAMES]
    assert _err(env) == "hello\nWarning: careful\n"
    assert "hole_punching" not in doc


def test_json_apply_holds_the_hole_punching_rounds_in_its_one_document() -> None:
    plan = _plan({n: fresh(MESH, n) for n in NAMES})
    punched = _plan({n: fresh(MESH, n) for n in NAMES[:2]})
    env = _env()
    JsonView(env).results(plan, [NodeResult(n, Outcome.CHANGED, "ok") for n in NAMES],
                          [(punched, [NodeResult(NAMES[0], Outcome.CHANGED, "1 added")])])
    doc = json.loads(_out(env))
    [round_] = doc["hole_punching"]
    assert round_["results"] == [{"node": NAMES[0], "outcome": "changed", "message": "1 added"}]
    assert [n["node"] for n in round_["nodes"]] == NAMES[:2]




# ------------------------------------------------------------------------------------------------ F6: node text


def test_node_text_round_trips_through_json() -> None:
    states = _converged()
    states["gcp"] = HOSTILE
    env = _env()
    JsonView(env).results(_plan(states), [NodeResult("aws", Outcome.FAILED, HOSTILE)])
    doc = _doc(env)
    assert {n["node"]: n["error"] for n in doc["nodes"]}["gcp"] == HOSTILE
    assert doc["results"][0]["message"] == HOSTILE


def test_status_endpoint_round_trips_through_json() -> None:
    aws = converged(MESH, "aws")
    peers = {**aws.peers, pubkey(3): dataclasses.replace(aws.peers[pubkey(3)], endpoint=HOSTILE)}
    report = status_report(MESH, list(MESH.nodes), ["aws"], {"aws": dataclasses.replace(aws, peers=peers)},
                           {"aws": 1}, now=0)
    env = _env()
    JsonView(env).status(report)
    (reading,) = _doc(env)["readings"]
    assert {p["peer"]: p["endpoint"] for p in reading["peers"]}["gcp"] == HOSTILE


def test_side_messages_are_escaped() -> None:
    env = _env()
    view = JsonView(env)
    view.error(f"aws: {HOSTILE}")
    view.host_key_added(f"aws ssh-ed25519 {HOSTILE}")
    assert "\x1b" not in _err(env)
    assert _err(env).splitlines() == [
        "Error: aws: \\x1b[2J\\x1b[HNo changes.\\nfake",
        "Added to known_hosts (trusted on first use): aws ssh-ed25519 \\x1b[2J\\x1b[HNo changes.\\nfake",
    ]


# ------------------------------------------------------------------------------------------------ the other commands


def test_check_document_even_with_nothing_to_check() -> None:
    env = _env()
    JsonView(env).check(check_report(["aws"], [], {}, {"b": "no public key yet"}))
    doc = _doc(env)
    assert (doc["format_version"], doc["type"], doc["ok"]) == ("1", "check", True)
    assert doc["skipped"] == [{"node": "b", "reason": "no public key yet"}]


def test_keys_documents() -> None:
    nodes = (NodeKey("a", "created", pubkey(1), None, "600", pubkey(9)), NodeKey("b", "existing", pubkey(2), pubkey(2)))
    env = _env()
    JsonView(env).keys(KeysReport("enroll", Path("mesh.yaml"), "/etc/wireguard/wg0.key", nodes,
                                  {"c": HOSTILE}, written=True))
    doc = _doc(env)
    assert (doc["format_version"], doc["type"], doc["ok"], doc["written"]) == ("1", "enroll", False, True)
    assert doc["nodes"][0] == {"node": "a", "key": "created", "public_key": pubkey(1), "previous_public_key": None,
                               "changed": True, "mode": "600", "running_public_key": pubkey(9)}
    assert doc["nodes"][1]["changed"] is False and doc["nodes"][1]["running_public_key"] is None
    assert doc["errors"] == [{"node": "c", "error": HOSTILE}]
    # review R4: enroll's warnings (here: a's interface runs with another key) went nowhere with --json
    assert len(doc["warnings"]) == 1 and doc["warnings"][0].startswith("a: its interface runs with another key now")
    assert _err(env) == f"Warning: {doc['warnings'][0]}\n"
    env = _env()
    JsonView(env).keys(KeysReport("rotate", Path("mesh.yaml"), "k", (), {}))
    assert _doc(env)["type"] == "rotate" and _err(env) == ""


def test_import_document_is_written_once_at_the_end() -> None:
    entry = ImportEntry("aws", "10.0.0.1", pubkey(1), {"address": "10.0.0.1", "ssh": {"host": "192.0.2.1"}})
    report = ImportReport(Path("mesh.yaml"), True, False, (entry,), ("w",), (("aws", "~ peer x"),))
    env = _env()
    view = JsonView(env)
    view.import_entries(report)
    assert _out(env) == ""
    view.import_result(dataclasses.replace(report, adopted=(("aws", "interface"),), written=True))
    doc = _doc(env)
    assert (doc["type"], doc["ok"], doc["written"], doc["creating"], doc["dry_run"]) == (
        "import", True, True, True, False)
    assert doc["nodes"] == [{"node": "aws", "public_key": pubkey(1), "entry": entry.fields,
                             "key_source": "interface", "config": "written", "error": None}]
    assert doc["warnings"] == ["w"] and doc["residual"] == [{"node": "aws", "change": "~ peer x"}]
    assert _err(env) == "Warning: w\nWarning: aws: the first plan will still show ~ peer x\n"


def test_warnings_go_to_stderr_as_well() -> None:
    """Review C1: with --json, warnings were in the document only (render's nowhere), so the CI apply job, which
    prints stderr and keeps the document, never showed them; the README says warnings stay on stderr."""
    warn = Finding("mesh.yaml:9:3: nodes.a: careful", "mesh.yaml", 9, 3, "nodes.a", "careful", "warning")
    env = _env()
    JsonView(env).render(RenderReport((RenderedConfig("aws", "[Interface]\n"),), warnings=(warn,)))
    assert _err(env) == "mesh.yaml:9:3: nodes.a: careful\n"
    env = _env()
    JsonView(env).validate(ValidateReport(Path("m.yaml"), True, (warn,), mesh="demo", interface="wg0", nodes=2))
    assert _err(env) == "mesh.yaml:9:3: nodes.a: careful\n"
    assert _doc(env)["warnings"][0]["message"] == "careful"
    env = _env()
    JsonView(env).results(_plan(_converged(), warnings=("w1",)), [])
    assert _err(env) == "Warning: w1\n"
    assert _doc(env)["warnings"] == ["w1"]


def test_validate_render_init_documents() -> None:
    err = Finding("mesh.yaml:3:5: nodes.a: bad", "mesh.yaml", 3, 5, "nodes.a", "bad")
    env = _env()
    JsonView(env).validate(ValidateReport(Path("mesh.yaml"), False, (err,)))
    doc = _doc(env)
    assert (doc["type"], doc["valid"], doc["warnings"]) == ("validate", False, [])
    assert doc["errors"] == [{"file": "mesh.yaml", "line": 3, "col": 5, "path": "nodes.a", "message": "bad",
                              "severity": "error"}]
    env = _env()
    JsonView(env).validate(ValidateReport(Path("m.yaml"), True, (), mesh="demo", interface="wg0", nodes=2))
    assert _doc(env)["mesh"] == {"name": "demo", "interface": "wg0", "nodes": 2, "enrolled": 0}
    env = _env()
    JsonView(env).render(RenderReport((RenderedConfig("aws", "[Interface]\n"),)))
    assert _doc(env) == {"format_version": "1", "type": "render", "node": "aws", "config": "[Interface]\n",
                         "path": None}
    env = _env()
    JsonView(env).render(RenderReport((RenderedConfig("aws", "x", Path("d/aws.conf")),), all_nodes=True,
                                      out=Path("d")))
    assert _doc(env)["nodes"] == [{"node": "aws", "config": "x", "path": "d/aws.conf"}]
    env = _env()
    JsonView(env).init(InitReport(Path("m"), (Path("m/mesh.yaml"),)))
    assert _doc(env) == {"format_version": "1", "type": "init", "directory": "m", "created": ["m/mesh.yaml"],
                         "updated": [], "kept": [], "unchanged": []}
    env = _env()
    JsonView(env).init(InitReport(Path("m"), (), (Path("m/r"),), (Path("m/mesh.yaml"),), (Path("m/a"),)))
    assert _doc(env)["updated"] == ["m/r"] and _doc(env)["kept"] == ["m/mesh.yaml"] and _doc(env)["unchanged"] == [
        "m/a"]
