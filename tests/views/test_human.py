"""views/human.py: the human (rich) view of every command; node text escaped (F6)."""

from __future__ import annotations

import dataclasses
import io
import ipaddress
import re
from pathlib import Path

import pytest
from meshes import converged, four, fresh, pubkey

from wgmesh.core.changes import Action, Change
from wgmesh.core.checks import Probe, check_report, targets
from wgmesh.core.plan import NOT_STARTED, NodeResult, Outcome, Plan, build_plan
from wgmesh.core.state import LiveState
from wgmesh.core.status import status_report
from wgmesh.views import make_view
from wgmesh.views.env import Environment
from wgmesh.views.human import HumanView
from wgmesh.views.json import JsonView
from wgmesh.views.keyreports import ImportEntry, ImportReport, KeysReport, NodeKey
from wgmesh.views.plan_text import NO_CHANGES, change_lines, summary_line
from wgmesh.views.reports import Finding, InitReport, RenderedConfig, RenderReport, ValidateReport

MESH = four()
NAMES = list(MESH.node_names)
ANSI = re.compile(r"\x1b\[[0-9;]*m")
HOSTILE = "\x1b[2J\x1b[HNo changes."
SHOWN = "\\x1b[2J\\x1b[HNo changes."


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


def test_make_view_picks_one() -> None:
    assert isinstance(make_view(_env()), HumanView)
    assert isinstance(make_view(_env(), json=True), JsonView)


# ------------------------------------------------------------------------------------------------ human plan


def test_no_changes() -> None:
    env = _human(_plan(_converged()))
    assert _out(env).strip() == NO_CHANGES
    assert _err(env) == ""


def test_fresh_mesh_plan_text() -> None:
    out = _out(_human(_plan({n: fresh(MESH, n) for n in NAMES})))
    assert out.startswith("wgmesh will perform the following actions (+ create, ~ update in place, - destroy):")
    assert [ln for ln in out.splitlines() if ln.startswith("  # node")] == [
        # + reresolve wg0 on the nodes whose peer azure has an endpoint name
        f"  # node {n}: {8 if n == 'azure' else 9} to add, 1 to change, 0 to destroy" for n in NAMES
    ]
    assert out.rstrip().endswith("Plan: 35 to add, 4 to change, 0 to destroy.")
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
    assert "Plan: 27 to add, 3 to change, 0 to destroy. 1 node could not be planned." in _out(env)


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
    assert summary_line(_plan({n: fresh(MESH, n) for n in NAMES})) == "Plan: 35 to add, 4 to change, 0 to destroy."


# ------------------------------------------------------------------------------------------------ human results


def test_results_success() -> None:
    plan = _plan({n: fresh(MESH, n) for n in NAMES})
    env = _env()
    HumanView(env).results(plan, [NodeResult(n, Outcome.CHANGED, "7 added, 0 changed, 0 destroyed") for n in NAMES])
    out = _out(env)
    assert "aliyun  changed (7 added, 0 changed, 0 destroyed)" in out
    assert "aws     changed (7 added" in out
    assert "Apply complete! Resources: 35 added, 4 changed, 0 destroyed." in out
    assert _err(env) == ""


def test_results_count_what_was_done_not_what_was_planned() -> None:
    """A node another apply changed meanwhile is `unchanged`: its planned changes are not in the summary."""
    plan = _plan({n: fresh(MESH, n) for n in NAMES})
    env = _env()
    results = [NodeResult(n, Outcome.UNCHANGED if n == "aws" else Outcome.CHANGED, "") for n in NAMES]
    HumanView(env).results(plan, results)
    aws = next(n for n in plan.nodes if n.node == "aws").counts()
    total = plan.counts()
    want = tuple(t - a for t, a in zip(total, aws, strict=True))
    assert want != total
    assert f"Apply complete! Resources: {want[0]} added, {want[1]} changed, {want[2]} destroyed." in _out(env)


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
    assert "the other nodes converged" in _err(env)


def test_results_failure_on_every_node_claims_no_other_converged() -> None:
    plan = _plan({n: fresh(MESH, n) for n in NAMES})
    env = _env()
    HumanView(env).results(plan, [NodeResult(n, Outcome.FAILED, "verification failed") for n in NAMES])
    assert "Error: apply failed on 4 node(s): aws, azure, gcp, aliyun. Fix the cause and run wgmesh apply again.\n" \
        in _err(env)
    assert "converged" not in _err(env)


# ------------------------------------------------------------------------------------------------ F6: node text


def _no_raw_controls(text: str) -> None:
    """Only the view's own colour codes may reach the terminal."""
    assert "\x1b[2J" not in text and "\x1b[H" not in text
    assert "\n" + "No changes." not in text


@pytest.mark.parametrize("color", [False, True])
def test_a_node_result_is_printed_escaped(color: bool) -> None:
    plan = _plan({n: fresh(MESH, n) for n in NAMES})
    env = _env(color)
    results = [NodeResult(n, Outcome.CHANGED, "ok") for n in NAMES[1:]]
    HumanView(env).results(plan, [NodeResult("aws", Outcome.FAILED, f"wg said {HOSTILE}\nline two"), *results])
    text = _out(env) + _err(env)
    _no_raw_controls(text)
    assert f"aws     failed (wg said {SHOWN}\\nline two)" in ANSI.sub("", _out(env))


@pytest.mark.parametrize("color", [False, True])
def test_a_plan_error_is_printed_escaped(color: bool) -> None:
    states = _converged()
    states["gcp"] = f"reading the node failed: {HOSTILE}"
    env = _human(_plan(states, warnings=(f"w {HOSTILE}",)), color=color)
    _no_raw_controls(_out(env) + _err(env))
    plain = ANSI.sub("", _err(env))
    assert f"Error: node gcp: reading the node failed: {SHOWN}\n" in plain
    assert f"Warning: w {SHOWN}\n" in plain


def test_escaping_keeps_printable_unicode_and_escapes_markup_and_bidi() -> None:
    states = _converged()
    states["gcp"] = "Verbindung abgelehnt ✗ [bold]x[/bold] \u202eevil\x9b2J"
    env = _human(_plan(states))
    assert "Verbindung abgelehnt ✗ [bold]x[/bold] \\u202eevil\\x9b2J" in _err(env)


@pytest.mark.parametrize("color", [False, True])
def test_a_status_endpoint_and_error_are_printed_escaped(color: bool) -> None:
    aws = converged(MESH, "aws")
    gcp_key = pubkey(3)
    peers = {**aws.peers, gcp_key: dataclasses.replace(aws.peers[gcp_key], endpoint=HOSTILE)}
    results: dict[str, LiveState | str] = {"aws": dataclasses.replace(aws, peers=peers), "gcp": f"lost: {HOSTILE}"}
    report = status_report(MESH, list(MESH.nodes), ["aws", "gcp"], results, {"aws": 1_700_000_030}, now=0)
    env = _env(color)
    HumanView(env).status(report)
    _no_raw_controls(_out(env) + _err(env))
    plain = ANSI.sub("", _out(env))
    assert SHOWN in plain and f"Error: gcp: lost: {SHOWN}" in plain


@pytest.mark.parametrize("color", [False, True])
def test_check_failures_from_a_node_are_printed_escaped(color: bool) -> None:
    nodes = list(MESH.nodes)
    probes = tuple(Probe("aws", t, False, error=f"ping: {HOSTILE}") for t in targets(MESH.node("aws"), nodes))
    report = check_report(NAMES, ["aws", "gcp"], {"aws": probes, "gcp": f"cannot connect: {HOSTILE}"})
    env = _env(color)
    HumanView(env).check(report)
    _no_raw_controls(_out(env) + _err(env))
    plain = ANSI.sub("", _out(env))
    assert f"  aws -> azure 10.0.0.2: ping: {SHOWN}" in plain
    assert f"  gcp: cannot connect: {SHOWN}" in plain


def test_messages_warnings_and_progress_are_escaped() -> None:
    env = _env(color=True)
    view = HumanView(env)
    view.message(f"first\nsecond {HOSTILE}")
    view.warning(f"careful {HOSTILE}")
    view.error(f"bad {HOSTILE}")
    view.progress("aws", f"failed: {HOSTILE}")
    view.host_key_added(f"aws ssh-ed25519 {HOSTILE}")
    _no_raw_controls(_out(env) + _err(env))
    assert ANSI.sub("", _out(env)) == f"first\nsecond {SHOWN}\n"


# ------------------------------------------------------------------------------------------------ the other commands


def _keys(command: str = "enroll", **kw: object) -> KeysReport:
    nodes = (
        NodeKey("a", "created", pubkey(1), None, "600"),
        NodeKey("b", "existing", pubkey(2), pubkey(2), "644"),
    )
    fields = {"command": command, "file": Path("mesh.yaml"), "key_path": "/etc/wireguard/wg0.key",
              "nodes": nodes, "errors": {"c": f"cannot connect: {HOSTILE}"}, "written": True, **kw}
    return KeysReport(**fields)  # type: ignore[arg-type]


def test_enroll_lines() -> None:
    env = _env()
    HumanView(env).keys(_keys())
    assert _out(env) == (
        f'  ~ a: created /etc/wireguard/wg0.key; public_key (none) -> "{pubkey(1)}"\n'
        "  b: /etc/wireguard/wg0.key exists; public_key already recorded (no change)\n"
        "Wrote 1 public key(s) to mesh.yaml. Next: `wgmesh plan`, then `wgmesh apply`.\n"
    )
    assert _err(env) == (
        "Warning: b: /etc/wireguard/wg0.key has mode 644; it should be 600 (chmod 600 /etc/wireguard/wg0.key)\n"
        f"Error: c: cannot connect: {SHOWN}\n"
    )


def test_enroll_without_changes_and_rotate_lines() -> None:
    env = _env()
    HumanView(env).keys(_keys(nodes=(NodeKey("b", "existing", pubkey(2), pubkey(2)),), errors={}, written=False))
    assert _out(env).endswith("No changes to mesh.yaml.\n")
    env = _env()
    HumanView(env).keys(_keys("rotate", nodes=(NodeKey("b", "rotated", pubkey(9), pubkey(2), "644"),), errors={}))
    assert _out(env) == (
        f'  ~ b: new key in /etc/wireguard/wg0.key; public_key "{pubkey(2)}" -> "{pubkey(9)}"\n'
        "Wrote 1 new public key(s) to mesh.yaml. The running interface of b keeps its old key until `wgmesh apply` "
        "switches it and its peers together.\n"
    )
    assert _err(env) == "", "rotate does not judge the key file's mode"


def _import(**kw: object) -> ImportReport:
    entry = ImportEntry("aws", f"10.0.0.1, endpoint {HOSTILE}", pubkey(1), {"address": "10.0.0.1"})
    fields = {"file": Path("mesh.yaml"), "creating": True, "dry_run": False, "entries": (entry,),
              "warnings": ("w",), "residual": (("aws", "~ peer x"),), "key_path": "/etc/wireguard/wg0.key",
              "conf_path": "/etc/wireguard/wg0.conf", "backup_suffix": ".wgmesh-import", **kw}
    return ImportReport(**fields)  # type: ignore[arg-type]


def test_import_lines() -> None:
    env = _env()
    view = HumanView(env)
    view.import_entries(_import())
    view.import_result(_import(adopted=(("aws", "config"),), failed={"gcp": HOSTILE}, written=True))
    assert _out(env) == (
        f"  + node aws: 10.0.0.1, endpoint {SHOWN}\n"
        "  aws: moved its private key from the PrivateKey line of /etc/wireguard/wg0.conf to /etc/wireguard/wg0.key "
        "(on the node); wrote wgmesh's /etc/wireguard/wg0.conf (the previous one, without a PrivateKey line, is "
        "/etc/wireguard/wg0.conf.wgmesh-import)\n"
        "Created mesh.yaml: imported 1 node(s). Next: `wgmesh plan` (it should show no changes for them).\n"
    )
    assert _err(env) == f"Warning: w\nWarning: aws: the first plan will still show ~ peer x\nError: gcp: {SHOWN}\n"
    env = _env()
    HumanView(env).import_result(_import(dry_run=True))
    assert _out(env) == "Dry run: nothing was changed on the nodes or in mesh.yaml.\n"


def test_validate_render_init_lines() -> None:
    warn = Finding("mesh.yaml:3: warning: x", "mesh.yaml", 3, 0, "", "x", "warning")
    env = _env()
    view = HumanView(env)
    view.validate(ValidateReport(Path("mesh.yaml"), True, (warn,), mesh="demo", interface="wg0", nodes=4,
                                 enrolled=3))
    view.validate(ValidateReport(Path("mesh.yaml"), False, (warn,)))
    assert _out(env) == "mesh.yaml: valid. Mesh 'demo': 4 node(s), 3 enrolled, interface wg0, 1 warning(s).\n"
    assert _err(env) == "mesh.yaml:3: warning: x\n"
    env = _env()
    view = HumanView(env)
    view.render(RenderReport((RenderedConfig("aws", "[Interface]\n"),)))
    view.render(RenderReport((RenderedConfig("aws", "[Interface]\n", Path("o.conf")),)))
    view.render(RenderReport((RenderedConfig("aws", "x", Path("d/aws.conf")),), all_nodes=True, out=Path("d")))
    view.init(InitReport(Path("m"), (Path("m/mesh.yaml"),)))
    assert _out(env) == ("[Interface]\nWrote o.conf\nWrote 1 config(s) to d/\ncreated m/mesh.yaml\n"
                         "Next: add your nodes to m/mesh.yaml, then `wgmesh validate`.\n")


def test_nothing_to_check() -> None:
    env = _env()
    HumanView(env).check(check_report(["aws"], [], {}))
    assert _out(env) == "Nothing to check: the mesh needs at least two nodes with public keys.\n"



def test_both_views_implement_every_method_of_the_protocol() -> None:
    import inspect

    from wgmesh.views.base import View

    methods = [n for n, _ in inspect.getmembers(View, inspect.isfunction) if not n.startswith("_")]
    assert len(methods) >= 17
    for cls in (HumanView, JsonView):
        for name in methods:
            ours = inspect.signature(getattr(View, name)).parameters
            theirs = inspect.signature(getattr(cls, name)).parameters
            assert list(theirs) == list(ours), (cls.__name__, name)


def test_an_interrupted_apply_says_so_not_fix_the_cause() -> None:
    plan = _plan({n: fresh(MESH, n) for n in NAMES})
    env = _env()
    results = [NodeResult(n, Outcome.CHANGED if n == "aws" else Outcome.FAILED, "" if n == "aws" else NOT_STARTED)
               for n in NAMES]
    HumanView(env).results(plan, results)
    others = ", ".join(n for n in NAMES if n != "aws")
    assert f"apply was interrupted: {others} not applied; run wgmesh apply again to apply them." in _err(env)
    assert "Fix the cause" not in _err(env)


def test_enroll_warns_of_a_running_key_it_does_not_know() -> None:
    """Review F: the node's interface runs with another key (a config made by hand): said, with what the first
    apply does and how to keep that key."""
    env = _env()
    HumanView(env).keys(_keys(nodes=(NodeKey("a", "created", pubkey(1), None, "600", pubkey(9)),), errors={}))
    assert _err(env) == (
        f'Warning: a: its interface runs with another key now ("{pubkey(9)}", from a config made by hand?): the first '
        "apply switches it to the key in /etc/wireguard/wg0.key, and the peers that know the running key lose this "
        "node; to keep that key, import the node (`wgmesh import`) rather than enroll it\n")


def test_a_saved_plan_says_how_to_apply_it_with_its_mesh_file() -> None:
    """Review R5: `plan -f lab1/m.yaml --out p.plan` said `wgmesh apply p.plan`, which fails from that folder
    (no ./mesh.yaml) or applies another mesh."""
    e = Environment(io.StringIO(), io.StringIO(), color=False)
    HumanView(e).plan_saved(Path("p.plan"), Path("lab1/m.yaml"))
    HumanView(e).plan_saved(Path("q.plan"), Path("mesh.yaml"))
    said = e.stdout.getvalue() + e.stderr.getvalue()  # type: ignore[attr-defined]
    assert "run: wgmesh apply p.plan -f lab1/m.yaml\n" in said and "run: wgmesh apply q.plan\n" in said
