"""view.py: the human (rich) and JSON views of plans and apply results, and the Environment."""

from __future__ import annotations

import dataclasses
import io
import ipaddress
import json
import re

import pytest
from meshes import converged, four, fresh

from wgmesh.core.plan import Action, Change, NodeResult, Outcome, Plan, build_plan
from wgmesh.core.state import LiveState
from wgmesh.views.env import Environment
from wgmesh.views.human import NO_CHANGES, HumanView, change_lines, summary_line
from wgmesh.views.json import JsonView

MESH = four()
NAMES = list(MESH.node_names)
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _env(color: bool = False, tty: bool = False) -> Environment:
    return Environment(io.StringIO(), io.StringIO(), color=color, stdin_isatty=tty)


def _out(env: Environment) -> str:
    return env.stdout.getvalue()  # type: ignore[attr-defined]


def _err(env: Environment) -> str:
    return env.stderr.getvalue()  # type: ignore[attr-defined]


def _plan(states: dict[str, LiveState | str], warnings: tuple[str, ...] = ()) -> Plan:
    return build_plan(MESH, states, warnings=warnings)


def _converged() -> dict[str, LiveState | str]:
    return {n: converged(MESH, n) for n in NAMES}


def _human(plan: Plan, color: bool = False) -> Environment:
    env = _env(color)
    HumanView(env).plan(plan)
    return env


# ------------------------------------------------------------------------------------------------ human plan


def test_no_changes() -> None:
    env = _human(_plan(_converged()))
    assert _out(env).strip() == NO_CHANGES
    assert _err(env) == ""


def test_fresh_mesh_plan_text() -> None:
    out = _out(_human(_plan({n: fresh(MESH, n) for n in NAMES})))
    assert out.startswith("wgmesh will perform the following actions (+ create, ~ update in place, - destroy):")
    assert [ln for ln in out.splitlines() if ln.startswith("  # node")] == [
        f"  # node {n}: 7 to add, 0 to change, 0 to destroy" for n in NAMES
    ]
    assert out.rstrip().endswith("Plan: 28 to add, 0 to change, 0 to destroy.")
    aws = out.split("  # node aws")[1].split("  # node azure")[0]
    assert "  + interface wg0\n" in aws
    assert '      + addresses   = ["10.0.0.1/24"]\n' in aws
    assert "      + listen_port = 51820\n" in aws
    assert "  + peer gcp\n" in aws and "  + route 192.168.30.0/24\n" in aws
    # a route says nothing more; off and unset values are not listed on create
    assert "dev" not in aws
    assert "persistent_keepalive" not in aws  # 0 on aws: it has an endpoint
    aliyun = out.split("  # node aliyun")[1]
    assert "+ persistent_keepalive = 25" in aliyun


def test_update_lines_show_old_and_new_and_fold_the_rest() -> None:
    states = _converged()
    states["gcp"] = dataclasses.replace(converged(MESH, "gcp"), listen_port=51999)
    out = _out(_human(_plan(states)))
    assert "  # node gcp: 0 to add, 1 to change, 0 to destroy\n" in out
    assert "  ~ interface wg0\n      ~ listen_port = 51999 -> 51820\n" in out
    assert "        # (3 unchanged attributes hidden)\n" in out
    assert "# node aws" not in out, "nodes without changes are not listed"
    assert out.rstrip().endswith("Plan: 0 to add, 1 to change, 0 to destroy.")


def test_list_attributes_show_items_added_and_removed() -> None:
    state = converged(MESH, "aws")
    gcp_key = MESH.node("gcp").public_key
    assert gcp_key is not None
    peer = state.peers[gcp_key]
    peer = dataclasses.replace(peer, allowed_ips=frozenset({ipaddress.ip_network("10.0.0.3/32"),
                                                             ipaddress.ip_network("172.16.0.0/12")}))
    states = _converged()
    states["aws"] = dataclasses.replace(state, peers={**state.peers, gcp_key: peer})
    out = _out(_human(_plan(states)))
    block = out.split("  ~ peer gcp\n")[1]
    assert block.startswith(
        "      ~ allowed_ips = [\n"
        '            "10.0.0.3/32",\n'
        '          - "172.16.0.0/12",\n'
        '          + "192.168.30.0/24",\n'
        "        ]\n"
    )


def test_delete_shows_the_public_key_only() -> None:
    lines = change_lines(Change(Action.DELETE, "peer", "old", {"public_key": "K", "allowed_ips": ["10.0.0.9/32"],
                                                                "endpoint": None}, None))
    assert [t for _, t in lines] == ["  - peer old", '      - public_key = "K"']


def test_update_to_null_and_from_null() -> None:
    c = Change(Action.UPDATE, "peer", "p", {"endpoint": "1.2.3.4:1", "keepalive": None},
               {"endpoint": None, "keepalive": 25})
    texts = [t for _, t in change_lines(c)]
    assert '      - endpoint  = "1.2.3.4:1" -> null' in texts
    assert "      + keepalive = 25" in texts


def test_errors_go_to_stderr_and_the_rest_is_still_shown() -> None:
    states: dict[str, LiveState | str] = {n: fresh(MESH, n) for n in NAMES}
    states["azure"] = "cannot connect to root@192.0.2.2:22: Connection refused"
    env = _human(_plan(states))
    assert "Error: node azure: cannot connect to root@192.0.2.2:22: Connection refused" in _err(env)
    assert "# node aws" in _out(env) and "# node azure" not in _out(env)
    assert "Plan: 21 to add, 0 to change, 0 to destroy." in _out(env)


def test_errors_alone_show_the_summary_not_no_changes() -> None:
    states = _converged()
    states["gcp"] = "timed out"
    env = _human(_plan(states))
    assert NO_CHANGES not in _out(env)
    assert "Plan: 0 to add, 0 to change, 0 to destroy." in _out(env)


def test_rich_markup_in_data_is_printed_literally() -> None:
    states = _converged()
    states["gcp"] = "sshd said [bold]no[/bold] and [link=x]y[/link]"
    env = _human(_plan(states, warnings=("[red]careful[/red]",)))
    assert "sshd said [bold]no[/bold] and [link=x]y[/link]" in _err(env)
    assert "Warning: [red]careful[/red]" in _err(env)


def test_notes_are_shown() -> None:
    states = _converged()
    mesh = dataclasses.replace(MESH, nodes=tuple(
        dataclasses.replace(n, public_key=None) if n.name == "gcp" else n for n in MESH.nodes
    ))
    plan = build_plan(mesh, {n: converged(MESH, n) for n in NAMES} | {"gcp": states["gcp"]})
    env = _env()
    HumanView(env).plan(plan)
    assert "# node gcp" in _out(env) and "not enrolled" in _out(env)


@pytest.mark.parametrize("color", [False, True])
def test_colour_only_when_asked(color: bool) -> None:
    states = _converged()
    states["gcp"] = dataclasses.replace(converged(MESH, "gcp"), listen_port=51999)
    states["aws"] = "down"
    env = _human(_plan(states), color=color)
    text = _out(env) + _err(env)
    assert bool(ANSI.search(text)) is color
    plain = ANSI.sub("", text)
    assert "~ listen_port = 51999 -> 51820" in plain and "Error: node aws: down" in plain


def test_progress_only_on_a_terminal() -> None:
    quiet, loud = _env(color=False), _env(color=True)
    for status in ("connecting", "connected"):
        HumanView(quiet).progress("aws", status)
        HumanView(loud).progress("aws", status)
    assert _err(quiet) == "" and _out(quiet) == ""
    # one line per node, when its connection settled
    assert ANSI.sub("", _err(loud)) == "aws: connected\n" and _out(loud) == ""


def test_summary_line() -> None:
    assert summary_line(_plan({n: fresh(MESH, n) for n in NAMES})) == "Plan: 28 to add, 0 to change, 0 to destroy."


# ------------------------------------------------------------------------------------------------ human results


def test_results_success() -> None:
    plan = _plan({n: fresh(MESH, n) for n in NAMES})
    env = _env()
    HumanView(env).results(plan, [NodeResult(n, Outcome.CHANGED, "7 added, 0 changed, 0 destroyed") for n in NAMES])
    out = _out(env)
    assert "aliyun  changed (7 added, 0 changed, 0 destroyed)" in out
    assert "aws     changed (7 added" in out
    assert "Apply complete! Resources: 28 added, 0 changed, 0 destroyed." in out
    assert _err(env) == ""


def test_results_failure_names_the_nodes() -> None:
    plan = _plan({n: fresh(MESH, n) for n in NAMES})
    env = _env()
    results = [
        NodeResult("aws", Outcome.CHANGED, "7 added, 0 changed, 0 destroyed"),
        NodeResult("azure", Outcome.FAILED, "another wgmesh apply holds /run/wireguard/wgmesh-wg0.lock"),
        NodeResult("gcp", Outcome.UNCHANGED),
        NodeResult("aliyun", Outcome.FAILED, "connection lost"),
    ]
    HumanView(env).results(plan, results)
    assert "azure   failed (another wgmesh apply holds /run/wireguard/wgmesh-wg0.lock)" in _out(env)
    assert "gcp     unchanged\n" in _out(env)
    assert "Apply complete" not in _out(env)
    assert "Error: apply failed on 2 node(s): azure, aliyun." in _err(env)


# ------------------------------------------------------------------------------------------------ JSON


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


# ------------------------------------------------------------------------------------------------ environment


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    ("tty", "no_color_env", "flag", "color"),
    [
        (True, False, False, True),
        (True, True, False, False),
        (True, False, True, False),
        (False, False, False, False),
    ],
)
def test_environment_colour_rules(
    monkeypatch: pytest.MonkeyPatch, tty: bool, no_color_env: bool, flag: bool, color: bool
) -> None:
    monkeypatch.setattr("sys.stdout", _Tty() if tty else io.StringIO())
    monkeypatch.setattr("sys.stdin", _Tty())
    if no_color_env:
        monkeypatch.setenv("NO_COLOR", "1")
    else:
        monkeypatch.delenv("NO_COLOR", raising=False)
    env = Environment.from_system(no_color=flag)
    assert env.color is color
    assert env.stdin_isatty is True
