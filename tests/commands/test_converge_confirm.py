"""commands/converge.py through the fake transport: the check under the node lock (item 4: a node another apply
moved since the plan fails with "changed since this plan (WHAT: ...)" and nothing changes there), and
confirm-or-revert (item 5: the change is confirmed over a new connection, or the node reverts it by itself and
apply says so). The node side of both is tested on stub nodes in tests/remote/test_apply_confirm.py."""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import pytest
from fakes import FakeTransport, read_output, script_values
from meshes import converged, four, fresh, pubkey

from wgmesh import meshfile
from wgmesh.commands import converge
from wgmesh.commands.common import ExitStatus, guard
from wgmesh.commands.converge import ALREADY, STALE, UNREACHABLE, ApplyOptions, apply_node, apply_plan, run_apply
from wgmesh.core.plan import Outcome, build_plan
from wgmesh.core.state import LiveState
from wgmesh.remote.apply import DEFAULT_CONFIRM_TIMEOUT, VERIFY_MARK
from wgmesh.remote.shell import MARK
from wgmesh.remote.transport import CommandResult, SshError
from wgmesh.views.env import Environment

MESH = four()
NAMES = list(MESH.node_names)


@pytest.fixture(autouse=True)
def _no_pause(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(converge, "CONFIRM_RETRY_PAUSE", 0.01)


def _missing_peer(name: str) -> tuple[LiveState, LiveState]:
    full = converged(MESH, name)
    first = next(iter(full.peers))
    return dataclasses.replace(full, peers={k: v for k, v in full.peers.items() if k != first}), full


def _setup(names: list[str] = NAMES) -> tuple[FakeTransport, dict[str, LiveState], list]:  # type: ignore[type-arg]
    states, after = {}, {}
    for n in names:
        states[n], after[n] = _missing_peer(n)
    fake = FakeTransport(dict(states), after=after)
    fake.connect(MESH.nodes)
    plans = [p for p in build_plan(MESH, states).nodes if p.node in names]
    return fake, states, plans


def _one(fake: FakeTransport, states: dict[str, LiveState], plans: list, name: str, **kw: object):  # type: ignore[no-untyped-def, type-arg]
    plan = next(p for p in plans if p.node == name)
    return apply_node(MESH, fake, plan, states[name], **kw)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------- item 4


def test_a_node_moved_by_another_apply_is_refused_and_left_alone() -> None:
    fake, states, plans = _setup()
    moved = dataclasses.replace(states["gcp"], routes=frozenset())  # another apply took gcp's routes away
    fake.locked["gcp"] = moved
    results = {r.node: r for r in apply_plan(MESH, fake, plans, states, parallelism=2)}
    assert results["gcp"].outcome is Outcome.FAILED
    assert results["gcp"].message == ("changed since this plan (routes: another apply, a rotate or a change by hand): "
                                      "run plan again")
    assert results["gcp"].message.startswith(STALE)
    assert ("gcp", "stop") in fake.decisions
    assert fake.states["gcp"] == moved, "nothing changed there"
    assert fake.kinds("gcp") == ["apply"] and "gcp" not in fake.reconnects  # no rollback, no confirm
    assert all(results[n].outcome is Outcome.CHANGED for n in NAMES if n != "gcp")
    assert sorted(n for n, d in fake.decisions if d == "go") == sorted(n for n in NAMES if n != "gcp")


def test_a_node_another_apply_already_converged_is_unchanged() -> None:
    """Two applies of the same mesh.yaml at once: the second finds the first's change made, and leaves it."""
    fake, states, plans = _setup(["azure"])
    fake.locked["azure"] = fake.after["azure"]
    result = _one(fake, states, plans, "azure")
    assert (result.outcome, result.message) == (Outcome.UNCHANGED, ALREADY)
    assert fake.decisions == [("azure", "stop")] and fake.kinds("azure") == ["apply"]


def test_the_check_is_made_on_the_state_under_the_lock_with_the_rest_sent_only_on_go() -> None:
    fake, states, plans = _setup(["aws"])
    result = _one(fake, states, plans, "aws")
    assert result.outcome is Outcome.CHANGED, result.message
    (sent,) = [s for n, k, s in fake.scripts if k == "apply"]
    first, _, rest = sent.partition("\ngo\n")
    assert "wgm_wait_go" in first and "wgm_begin" not in first.split("wgm_wait_go")[-1]
    assert rest.startswith("wgm_steps() {\nwgm_expect_interface present\nwgm_begin\n") and f"echo {VERIFY_MARK}" in rest


def test_what_the_plan_ignores_is_no_reason_to_refuse() -> None:
    """Handshakes, counters, a roaming peer's endpoint and names the node resolved do not count as moved."""
    fake, states, plans = _setup(["aliyun"])
    live = states["aliyun"]
    peers = {k: dataclasses.replace(p, latest_handshake=p.latest_handshake + 99, rx_bytes=p.rx_bytes + 1)
             for k, p in live.peers.items()}
    fake.locked["aliyun"] = dataclasses.replace(live, peers=peers, resolved={"x.example": ("192.0.2.9",)})
    assert _one(fake, states, plans, "aliyun").outcome is Outcome.CHANGED
    assert fake.decisions == [("aliyun", "go")]


def test_a_node_that_cannot_be_read_under_its_lock_changes_nothing() -> None:
    fake, states, plans = _setup(["azure"])

    def garbage(node: str, first: str, decide, timeout=None) -> CommandResult:  # type: ignore[no-untyped-def]
        answer = decide("@@wgmesh:v1\nnonsense\n")
        assert answer is None  # stdin closed: the script reads end-of-file and changes nothing
        return CommandResult(3, "", "the controller did not answer (connection lost?): nothing was changed\n")

    fake.converse = garbage  # type: ignore[method-assign]
    result = _one(fake, states, plans, "azure")
    assert result.outcome is Outcome.FAILED and result.message.startswith("cannot read the node under its lock")


def _lost_after_go(fake: FakeTransport, states: dict[str, LiveState]) -> None:
    def lost(node: str, first: str, decide, timeout=None) -> CommandResult:  # type: ignore[no-untyped-def]
        assert (decide(read_output(states[node])) or "").startswith("go\n")
        raise SshError(f"connection to {node} lost while the command ran")

    fake.converse = lost  # type: ignore[method-assign]


def test_a_connection_lost_after_go_is_rolled_back_over_a_new_one() -> None:
    fake, states, plans = _setup(["aws"])
    _lost_after_go(fake, states)
    result = _one(fake, states, plans, "aws", confirm_timeout=45)
    assert result.outcome is Outcome.FAILED
    assert result.message == "connection to aws lost while the command ran; rolled back to the previous config"
    assert fake.reconnects == ["aws"] and fake.kinds("aws") == ["rollback"]


def test_a_connection_lost_after_go_to_a_node_that_stays_unreachable_is_reported_reverted() -> None:
    fake, states, plans = _setup(["aws"])
    _lost_after_go(fake, states)
    fake.reconnect_errors["aws"] = [SshError("timed out connecting to root@192.0.2.1:22 after 10s")] * 1000
    result = _one(fake, states, plans, "aws", confirm_timeout=1)
    assert result.message.startswith(f"{UNREACHABLE} (connection to aws lost while the command ran; then: timed "
                                     "out connecting")
    assert result.message.endswith("it restores its previous config by itself 1s after the change")


def test_a_node_that_reverted_by_itself_before_the_rollback_says_so() -> None:
    """Review B3: a node rebooted during the apply (the shutdown's SIGTERM had its timer undo the run) was said
    unreachable, restored "by itself 300s after the change": the controller had reached it within a second, and
    nothing compared what it has. Now: undone by itself, and compared (the rollback script's own read)."""
    fake, states, plans = _setup(["aws"])
    _lost_after_go(fake, states)
    fake.answers[("aws", "rollback")] = [
        CommandResult(0, f"{MARK}reverted\n{VERIFY_MARK}\n{read_output(states['aws'])}", "")]
    result = _one(fake, states, plans, "aws", confirm_timeout=20)
    assert result.message == ("connection to aws lost while the command ran; the node had undone this apply by "
                              "itself (its revert timer, or a shutdown in order); read again: as before the apply")
    changed = dataclasses.replace(states["aws"], mtu=1300)
    fake.answers[("aws", "rollback")] = [CommandResult(0, f"{MARK}reverted\n{VERIFY_MARK}\n{read_output(changed)}", "")]
    result = _one(fake, states, plans, "aws", confirm_timeout=20)
    assert result.message.endswith("(its revert timer, or a shutdown in order), but the node still differs from "
                                   "before the apply (mtu)")



def test_a_node_that_reverted_while_it_could_not_be_reached_says_so() -> None:
    """The change locked the controller out (a hook that drops SSH): the rollback's first tries fail, and once the
    node's timer has undone the change it answers `reverted`: unreachable, restored by itself, and compared."""
    fake, states, plans = _setup(["aws"])
    _lost_after_go(fake, states)
    fake.answers[("aws", "rollback")] = [
        SshError("timed out connecting to aws"),
        CommandResult(0, f"{MARK}reverted\n{VERIFY_MARK}\n{read_output(states['aws'])}", "")]
    result = _one(fake, states, plans, "aws", confirm_timeout=20)
    assert result.message == (f"{UNREACHABLE} (connection to aws lost while the command ran); it restored its "
                              "previous config by itself (its revert timer, 20s after the change, or a shutdown in "
                              "order); read again: as before the apply")


def test_a_connection_lost_before_the_node_changed_anything() -> None:
    fake, states, plans = _setup(["aws"])
    _lost_after_go(fake, states)
    fake.answers[("aws", "rollback")] = [CommandResult(3, "", "no record of this apply on the node (x) to roll "
                                                              "back\n")]
    result = _one(fake, states, plans, "aws")
    assert result.message == ("connection to aws lost while the command ran; no record of this apply on the node; "
                              "read again: as before the apply")


def test_a_node_restarted_during_the_apply_is_read_not_said_unchanged() -> None:
    """Review K: a node rebooted mid-apply has no record of the run (its files were on a tmpfs) but keeps the new
    IF.conf: "no change of this apply is left on the node" was false. The node is read and compared."""
    fake, states, plans = _setup(["aws"])
    _lost_after_go(fake, states)
    fake.answers[("aws", "rollback")] = [CommandResult(3, "", "no record of this apply on the node (x) to roll "
                                                              "back\n")]
    rebooted = dataclasses.replace(states["aws"], mtu=1300)
    fake.answers[("aws", "read")] = [CommandResult(0, read_output(rebooted), "")]
    result = _one(fake, states, plans, "aws")
    assert result.message == ("connection to aws lost while the command ran; no record of this apply on the node; "
                              "read again, the node still differs from before the apply (mtu)")


# ------------------------------------------------------------------------------------------- item 5


def test_the_confirmation_goes_over_a_new_connection() -> None:
    fake, states, plans = _setup(["gcp"])
    assert _one(fake, states, plans, "gcp").outcome is Outcome.CHANGED
    assert fake.reconnects == ["gcp"]
    run = script_values(next(s for n, k, s in fake.scripts if k == "apply"))["RUN"]
    confirm = next(s for n, k, s in fake.scripts if k == "confirm")
    assert script_values(confirm)["RUN"] == run


def test_a_node_unreachable_after_the_change_is_reported_reverted() -> None:
    fake, states, plans = _setup()
    fake.reconnect_errors["gcp"] = [SshError("timed out connecting to root@192.0.2.3:22 after 10s")] * 1000
    results = {r.node: r for r in apply_plan(MESH, fake, plans, states, parallelism=4, confirm_timeout=1)}
    gcp = results["gcp"]
    assert gcp.outcome is Outcome.FAILED
    assert gcp.message.startswith(UNREACHABLE + " (timed out connecting to root@192.0.2.3:22 after 10s)")
    assert gcp.message.startswith("reverted: the controller could not reach it after the change")
    assert "by itself 1s after the change" in gcp.message
    assert fake.reconnects.count("gcp") > 1, "tried again until the node's own deadline"
    assert "confirm" not in fake.kinds("gcp")
    assert all(results[n].outcome is Outcome.CHANGED for n in NAMES if n != "gcp")


def test_a_node_reachable_again_in_time_is_confirmed() -> None:
    fake, states, plans = _setup(["azure"])
    fake.reconnect_errors["azure"] = [SshError("connection refused")] * 3
    result = _one(fake, states, plans, "azure", confirm_timeout=30)
    assert result.outcome is Outcome.CHANGED, result.message
    assert fake.reconnects == ["azure"] * 4


def test_a_node_whose_timer_came_first_is_reported_reverted() -> None:
    fake, states, plans = _setup(["aws"])
    fake.answers[("aws", "confirm")] = [CommandResult(0, f"{MARK}reverted\n", "")]
    result = _one(fake, states, plans, "aws", confirm_timeout=20)
    assert result.outcome is Outcome.FAILED
    assert result.message == (f"{UNREACHABLE} in time; it restored its previous config by itself 20s after the "
                              "change")


def test_a_confirmation_the_node_refuses_is_a_failure() -> None:
    fake, states, plans = _setup(["aws"])
    fake.answers[("aws", "confirm")] = [CommandResult(3, "", "no record of this apply on the node (x): was it "
                                                         "restarted?\n")]
    result = _one(fake, states, plans, "aws")
    assert result.outcome is Outcome.FAILED
    assert result.message.startswith("the change could not be confirmed: no record of this apply on the node "
                                     "(restarted? a shutdown in order undoes the change first, a crash keeps it); "
                                     "read again, the node still differs from before the apply (")  # review K, U


def test_a_rollback_is_reported_done_only_when_the_node_is_as_before() -> None:
    fake, states, plans = _setup(["gcp"])
    fake.after["gcp"] = states["gcp"]  # verification fails: the node did not take the change
    half = dataclasses.replace(states["gcp"], routes=frozenset())
    fake.answers[("gcp", "rollback")] = [
        CommandResult(0, f"{MARK}rolledback\n{VERIFY_MARK}\n{read_output(half)}", "")]
    result = _one(fake, states, plans, "gcp")
    assert result.outcome is Outcome.FAILED
    assert "rolled back, but the node still differs from before the apply (routes)" in result.message


MESH_YAML = f"""\
version: 1
mesh: {{name: demo, interface: wg0, network: 10.0.0.0/24}}
ssh: {{known_hosts: known_hosts}}
nodes:
  aws: {{address: 10.0.0.1, public_key: {pubkey(1)}, endpoint: 198.51.100.1:51820, ssh: {{host: 192.0.2.1}}}}
  gcp: {{address: 10.0.0.3, public_key: {pubkey(3)}, endpoint: 198.51.100.3:51820, ssh: {{host: 192.0.2.3}}}}
"""


@pytest.mark.parametrize("unreachable", [False, True])
def test_run_apply_gives_the_node_its_confirm_timeout(tmp_path: Path, unreachable: bool) -> None:
    (tmp_path / "mesh.yaml").write_text(MESH_YAML)
    (tmp_path / "known_hosts").write_text("")
    mesh, _ = meshfile.load(tmp_path / "mesh.yaml")
    fake = FakeTransport({n: fresh(mesh, n) for n in ("aws", "gcp")},
                         after={n: converged(mesh, n) for n in ("aws", "gcp")})
    if unreachable:
        fake.reconnect_errors["gcp"] = [SshError("timed out connecting to root@192.0.2.3:22 after 10s")] * 1000
    env = Environment(io.StringIO(), io.StringIO(), color=False, environ={})
    opts = ApplyOptions(file=tmp_path / "mesh.yaml", auto_approve=True, confirm_timeout=17 if not unreachable else 0)
    code = guard(lambda: run_apply(opts, env, lambda *_: fake), env)
    out, err = env.stdout.getvalue(), env.stderr.getvalue()  # type: ignore[attr-defined]
    applied = [script_values(s) for n, k, s in fake.scripts if k == "apply"]
    assert len(applied) == 2 and {v["CONFIRM_TIMEOUT"] for v in applied} == {"17" if not unreachable else "0"}
    if unreachable:
        assert code == ExitStatus.ERROR
        assert "gcp  failed (reverted: the controller could not reach it after the change" in out
        assert "apply failed on 1 node(s): gcp" in err
    else:
        assert code == ExitStatus.OK, out + err


def test_default_confirm_timeout() -> None:
    assert DEFAULT_CONFIRM_TIMEOUT == 60 == ApplyOptions(file=Path("m")).confirm_timeout


# ------------------------------------------------------------------------------ another apply's pending change


def test_a_pending_apply_is_planned_and_confirmed_first() -> None:
    """A controller stopped between its apply and its confirmation: the node keeps the change only if someone
    confirms it. The plan shows that (converged otherwise), and apply confirms it, without an apply script."""
    state = dataclasses.replace(converged(MESH, "aws"), pending_runs=("0a1b2c",))
    plan = next(p for p in build_plan(MESH, {"aws": state}).nodes if p.node == "aws")
    assert [(c.action.value, c.kind, c.name) for c in plan.changes] == [("update", "pending", "apply 0a1b2c")]
    fake = FakeTransport({"aws": state})
    fake.connect(MESH.nodes)
    result = apply_node(MESH, fake, plan, state)
    assert (result.outcome, result.message) == (Outcome.CHANGED, "confirmed the pending apply 0a1b2c")
    assert fake.kinds("aws") == ["confirm"]
    assert script_values(fake.scripts[0][2])["RUN"] == "0a1b2c"


def test_a_pending_apply_is_confirmed_before_the_changes_of_this_one() -> None:
    fake, states, _ = _setup(["gcp"])
    states["gcp"] = dataclasses.replace(states["gcp"], pending_runs=("0a1b2c",))
    fake.states["gcp"] = states["gcp"]
    (plan,) = [p for p in build_plan(MESH, states).nodes if p.node == "gcp"]
    result = _one(fake, states, [plan], "gcp")
    assert result.outcome is Outcome.CHANGED, result.message
    assert fake.kinds("gcp") == ["confirm", "apply", "confirm"]  # theirs, then this apply and its own confirmation
    assert fake.decisions == [("gcp", "go")]  # the state under the lock is the plan's, pending run confirmed


def test_a_pending_apply_the_node_undid_meanwhile_fails_the_node() -> None:
    state = dataclasses.replace(converged(MESH, "aws"), pending_runs=("0a1b2c",))
    plan = next(p for p in build_plan(MESH, {"aws": state}).nodes if p.node == "aws")
    fake = FakeTransport({"aws": state})
    fake.connect(MESH.nodes)
    fake.answers[("aws", "confirm")] = [CommandResult(0, f"{MARK}reverted\n", "")]
    result = apply_node(MESH, fake, plan, state)
    assert result.outcome is Outcome.FAILED
    assert result.message == ("the pending apply 0a1b2c was not confirmed (the node undid it by itself): run "
                              "wgmesh plan again")
