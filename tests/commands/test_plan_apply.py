"""run_plan and run_apply (the commands, minus typer) with a FakeTransport and an Environment over StringIO."""

from __future__ import annotations

import dataclasses
import io
import ipaddress
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from fakes import FakeTransport
from meshes import converged, fresh, pubkey

from wgmesh import meshfile
from wgmesh.commands import converge as apply_mod
from wgmesh.commands import planfile
from wgmesh.commands.common import ConnectOptions, ExitStatus, guard
from wgmesh.commands.converge import APPROVE_PROMPT, ApplyOptions, PlanOptions, run_apply, run_plan
from wgmesh.core.model import Mesh
from wgmesh.core.relay import relaying
from wgmesh.core.state import LiveState
from wgmesh.remote.transport import CommandResult
from wgmesh.views.env import Environment
from wgmesh.views.plan_text import NO_CHANGES

NAMES = ["aws", "azure", "gcp", "aliyun"]

MESH_YAML = f"""\
version: 1
mesh:
  name: demo
  interface: wg0
  network: 10.0.0.0/24
ssh:
  known_hosts: known_hosts
nodes:
  aws:
    address: 10.0.0.1
    public_key: {pubkey(1)}
    endpoint: 198.51.100.1:51820
    subnets: [192.168.10.0/24]
    ssh: {{host: 192.0.2.1}}
  azure:
    address: 10.0.0.2
    public_key: {pubkey(2)}
    endpoint: azure.example.com:51820
    subnets: [192.168.20.0/24]
    ssh: {{host: 192.0.2.2}}
  gcp:
    address: 10.0.0.3
    public_key: {pubkey(3)}
    endpoint: 198.51.100.3:51820
    subnets: [192.168.30.0/24]
    ssh: {{host: 192.0.2.3}}
  aliyun:
    address: 10.0.0.4
    public_key: {pubkey(4)}
    subnets: [192.168.40.0/24]
    ssh: {{host: 192.0.2.4}}
"""


@dataclasses.dataclass
class World:
    path: Path
    mesh: Mesh

    def states(self, make: Callable[..., LiveState] = converged) -> dict[str, LiveState]:
        return {n: make(self.mesh, n) for n in NAMES}


@pytest.fixture
def world(tmp_path: Path) -> World:
    path = tmp_path / "mesh.yaml"
    path.write_text(MESH_YAML)
    (tmp_path / "known_hosts").write_text("")
    mesh, warnings = meshfile.load(path)
    assert warnings == []
    return World(path, mesh)


def _env(tty: bool = False, stdin: str = "") -> Environment:
    return Environment(io.StringIO(), io.StringIO(), color=False, stdin_isatty=tty, stdin=io.StringIO(stdin),
                       environ={})


def _out(env: Environment) -> str:
    return env.stdout.getvalue()  # type: ignore[attr-defined]


def _err(env: Environment) -> str:
    return env.stderr.getvalue()  # type: ignore[attr-defined]


def _factory(fake: FakeTransport, seen: list[ConnectOptions] | None = None):  # type: ignore[no-untyped-def]
    def make(opts: ConnectOptions, progress: Callable[[str, str], None]) -> FakeTransport:
        if seen is not None:
            seen.append(opts)
        return fake

    return make


def _plan(world: World, fake: FakeTransport, env: Environment | None = None, **kw: object) -> tuple[int, Environment]:
    env = env or _env()
    opts = PlanOptions(file=world.path, **kw)  # type: ignore[arg-type]
    return guard(lambda: run_plan(opts, env, _factory(fake)), env), env


def _apply(world: World, fake: FakeTransport, env: Environment | None = None, **kw: object) -> tuple[int, Environment]:
    env = env or _env()
    opts = ApplyOptions(file=world.path, **kw)  # type: ignore[arg-type]
    return guard(lambda: run_apply(opts, env, _factory(fake)), env), env


def _no_traceback(env: Environment) -> None:
    assert "Traceback" not in _out(env) + _err(env)


# ------------------------------------------------------------------------------------------------ plan


@pytest.mark.parametrize(
    ("make", "detailed", "expected"),
    [
        (converged, False, ExitStatus.OK),
        (converged, True, ExitStatus.OK),
        (fresh, False, ExitStatus.OK),
        (fresh, True, ExitStatus.CHANGES),
    ],
)
def test_plan_exit_codes(world: World, make, detailed: bool, expected: ExitStatus) -> None:  # type: ignore[no-untyped-def]
    fake = FakeTransport(world.states(make))
    code, env = _plan(world, fake, detailed_exitcode=detailed)
    assert code == expected
    assert fake.closed
    assert fake.kinds() == ["read"] * 4
    if make is converged:
        assert NO_CHANGES in _out(env)
    else:
        for n in NAMES:
            assert f"# node {n}: " in _out(env)
        # interface, peers, routes, FORWARD rules, reresolve (azure's endpoint is a name); forwarding on
        assert "Plan: 35 to add, 4 to change, 0 to destroy." in _out(env)


@pytest.mark.parametrize("detailed", [False, True])
def test_unreachable_node_is_named_and_others_still_planned(world: World, detailed: bool) -> None:
    fake = FakeTransport(world.states(fresh), unreachable={"gcp": "cannot connect to root@192.0.2.3:22: refused"})
    code, env = _plan(world, fake, detailed_exitcode=detailed)
    assert code == ExitStatus.ERROR
    assert "Error: node gcp: cannot connect to root@192.0.2.3:22: refused" in _err(env)
    for n in ("aws", "azure", "aliyun"):
        assert f"# node {n}: " in _out(env)
    assert "# node gcp" not in _out(env)
    assert sorted(n for n, _, _ in fake.scripts) == ["aliyun", "aws", "azure"]
    _no_traceback(env)


def test_node_whose_read_fails_is_an_error(world: World) -> None:
    fake = FakeTransport(world.states())
    fake.answers[("azure", "read")] = [CommandResult(127, "", "sh: 1: wg: not found\n")]
    code, env = _plan(world, fake, detailed_exitcode=True)
    assert code == ExitStatus.ERROR
    assert "node azure: reading the node failed: sh: 1: wg: not found" in _err(env)


def test_plan_json(world: World) -> None:
    fake = FakeTransport(world.states(fresh), unreachable={"aliyun": "timed out"})
    code, env = _plan(world, fake, json=True, detailed_exitcode=True)
    assert code == ExitStatus.ERROR
    doc = json.loads(_out(env))
    assert doc["format_version"] == "1" and doc["type"] == "plan"
    assert doc["summary"] == {"add": 26, "change": 3, "destroy": 0, "errors": 1}
    nodes = {n["node"]: n for n in doc["nodes"]}
    assert nodes["aliyun"]["error"] == "timed out" and nodes["aliyun"]["changes"] == []
    for n in ("aws", "azure", "gcp"):
        kinds = [(c["action"], c["kind"]) for c in nodes[n]["changes"]]
        assert kinds.count(("create", "interface")) == 1 and kinds.count(("create", "peer")) == 3


def test_plan_json_on_changes_has_before_and_after(world: World) -> None:
    states = world.states()
    states["gcp"] = dataclasses.replace(states["gcp"], listen_port=51999)
    code, env = _plan(world, FakeTransport(states), json=True, detailed_exitcode=True)
    assert code == ExitStatus.CHANGES
    (gcp,) = [n for n in json.loads(_out(env))["nodes"] if n["node"] == "gcp"]
    (change,) = gcp["changes"]
    assert change["action"] == "update" and change["before"]["listen_port"] == 51999
    assert change["after"]["listen_port"] == 51820


def test_plan_target(world: World) -> None:
    fake = FakeTransport(world.states(fresh))
    code, env = _plan(world, fake, connect=ConnectOptions(targets=("azure",)), json=True)
    assert code == ExitStatus.OK
    assert [n["node"] for n in json.loads(_out(env))["nodes"]] == ["azure"]
    assert fake.connected == ["azure"]


def test_a_targeted_plan_that_changes_what_other_nodes_hold_warns(world: World) -> None:
    """`wgmesh rotate gcp` then `apply -t gcp`: gcp runs the new key, the nodes left out keep the old one and lose
    gcp, and nothing said so (review C3). A whole plan of the same change has no such warning."""
    states = world.states()
    states["gcp"] = converged(world.mesh, "gcp", public_key=pubkey(9))  # the key file holds the new key already
    code, env = _plan(world, FakeTransport(states), connect=ConnectOptions(targets=("gcp",)))
    assert code == ExitStatus.OK
    assert ("--target: gcp's public key changes, and the nodes outside --target (aws, azure, aliyun) keep the old "
            "one: they lose gcp until they are applied too (wgmesh apply without --target)") in _err(env)
    code, env = _plan(world, FakeTransport(states), connect=ConnectOptions(targets=("aws",)))
    assert "--target" not in _err(env)
    code, env = _plan(world, FakeTransport(states))
    assert "--target" not in _err(env)


def test_a_targeted_node_that_takes_up_a_left_out_nodes_new_key_warns(world: World) -> None:
    """`wgmesh rotate aws`, then `apply -t azure`: azure switched to aws's new key, aws still ran the old one, and
    the pair was cut with no warning (review R1: the other direction of C3)."""
    states = world.states()  # every node holds aws's old key, and aws runs it
    world.path.write_text(world.path.read_text().replace(f"public_key: {pubkey(1)}", f"public_key: {pubkey(11)}"))
    states["aws"] = converged(world.mesh, "aws", key_file_public_key=pubkey(11))
    code, env = _plan(world, FakeTransport(states), connect=ConnectOptions(targets=("azure",)))
    assert code == ExitStatus.OK
    assert ("--target: azure's entry for aws takes up aws's new public key; if aws (outside --target) does not run "
            "it yet, the pair stops working until aws is applied too (wgmesh apply without --target)") in _err(env)
    _, env = _plan(world, FakeTransport(states))
    assert "--target" not in _err(env)


def test_the_reverse_target_warning_names_a_new_port_and_not_a_subnet_removed(world: World) -> None:
    """A left-out node's new listen port was not warned of, and a /32 subnet taken away was taken for an address
    (review R3)."""
    states = world.states()
    moved = world.path.read_text().replace("endpoint: 198.51.100.1:51820", "endpoint: 198.51.100.1:51999")
    world.path.write_text(moved)
    _, env = _plan(world, FakeTransport(states), connect=ConnectOptions(targets=("azure",)))
    assert "azure's entry for aws takes up aws's new listen port" in _err(env)
    world.path.write_text(MESH_YAML)
    states["azure"] = converged(world.mesh, "azure")
    gcp = states["azure"].peers[pubkey(3)]
    extra = dataclasses.replace(gcp, allowed_ips=gcp.allowed_ips | {ipaddress.ip_network("10.77.0.5/32")})
    states["azure"] = dataclasses.replace(states["azure"], peers={**states["azure"].peers, pubkey(3): extra})
    _, env = _plan(world, FakeTransport(states), connect=ConnectOptions(targets=("azure",)))
    assert "~ peer gcp" in _out(env) and "--target" not in _err(env)


@pytest.mark.parametrize("where", ["missing folder", "a folder"])
def test_a_plan_that_cannot_be_saved_is_refused_before_any_node_is_read(world: World, where: str) -> None:
    """It read every node, then failed with "internal error: FileNotFoundError ... please report it" (review A5)."""
    out = world.path.parent / "nosuch" / "x.plan" if where == "missing folder" else world.path.parent
    fake = FakeTransport(world.states())
    code, env = _plan(world, fake, out=out)
    assert code == ExitStatus.ERROR and fake.connected == []
    assert _err(env).startswith(f"Error: --out {out}") and "internal error" not in _err(env)
    assert _err(env).count("\n") == 1


def test_a_plan_is_saved_only_over_an_empty_file_or_a_saved_plan(world: World, tmp_path: Path) -> None:
    """The plan is renamed over the path: `--out /dev/null` replaced the machine's /dev/null with a file, a link's
    target and mesh.yaml itself were replaced too (review R1)."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    (tmp_path / "x.txt").write_text("notes\n")
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "elsewhere")
    # (a FIFO stands for a device: a test that regressed must not replace the machine's /dev/null)
    for out, why in ((fifo, "is not a regular file"), (link, "is a symbolic link"),
                     (world.path, "is one of the mesh's own files"),
                     (tmp_path / "x.txt", "exists and is not a saved plan")):
        fake = FakeTransport(world.states())
        code, env = _plan(world, fake, out=out)
        assert code == ExitStatus.ERROR and fake.connected == [], out
        assert _err(env).startswith(f"Error: --out {out} {why}"), _err(env)
    assert fifo.is_fifo() and not (tmp_path / "elsewhere").exists()
    assert world.path.read_text() == MESH_YAML
    known_hosts = world.path.parent / "known_hosts"  # empty, but the mesh's own (review R3)
    code, env = _plan(world, FakeTransport(world.states()), out=known_hosts)
    assert code == ExitStatus.ERROR and "is one of the mesh's own files" in _err(env)
    saved = tmp_path / "x.plan"
    saved.write_text("")  # empty (mktemp): replaced
    assert _plan(world, FakeTransport(world.states()), out=saved)[0] == ExitStatus.OK
    assert _plan(world, FakeTransport(world.states()), out=saved)[0] == ExitStatus.OK  # a saved plan: replaced


def test_a_plan_file_written_by_someone_during_the_plan_is_not_replaced(tmp_path: Path) -> None:
    """Checked before the read and written after it: a file that was empty then and is not now (known_hosts with
    the host keys the read accepted) is not replaced (review R3)."""
    out = tmp_path / "x.plan"
    out.write_text("")
    assert planfile.writable(out) is None
    out.write_text("|1|abc= ssh-ed25519 AAAA\n")
    with pytest.raises(planfile.PlanFileError, match=r"exists and is not a saved plan.*changed during the plan"):
        planfile.write(out, tmp_path / "mesh.yaml", (), None, None)  # type: ignore[arg-type]
    assert out.read_text() == "|1|abc= ssh-ed25519 AAAA\n"


def test_plan_unknown_target_is_one_line(world: World) -> None:
    code, env = _plan(world, FakeTransport({}), connect=ConnectOptions(targets=("nosuch",)))
    assert code == ExitStatus.ERROR
    assert _err(env).startswith("Error: --target nosuch: no such node")
    assert _err(env).count("\n") == 1


def test_invalid_mesh_never_connects(world: World) -> None:
    world.path.write_text(MESH_YAML.replace("address: 10.0.0.3", "address: 10.0.0.300"))
    line = world.path.read_text().splitlines().index("    address: 10.0.0.300") + 1

    def factory(opts: ConnectOptions, progress: Callable[[str, str], None]) -> FakeTransport:
        raise AssertionError("connected despite an invalid mesh.yaml")

    for run, opts in ((run_plan, PlanOptions(file=world.path)), (run_apply, ApplyOptions(file=world.path,
                                                                                        auto_approve=True))):
        env = _env()
        code = guard(lambda run=run, opts=opts, env=env: run(opts, env, factory), env)  # type: ignore[misc]
        assert code == ExitStatus.ERROR
        assert f"mesh.yaml:{line}:" in _err(env)
        assert "nothing was changed on any host" in _err(env)


def test_plan_out_saves_a_plan(world: World, tmp_path: Path) -> None:
    out = tmp_path / "p.json"
    code, env = _plan(world, FakeTransport(world.states(fresh)), out=out)
    assert code == ExitStatus.OK
    doc = json.loads(out.read_text())
    assert doc["kind"] == "wgmesh-plan" and doc["format_version"] == "1"
    assert sorted(doc["fingerprints"]) == sorted(NAMES)
    assert f"wgmesh apply {out}" in _out(env)


# ------------------------------------------------------------------------------------------------ apply


def _drifted(world: World) -> tuple[dict[str, LiveState], dict[str, LiveState]]:
    """aws and gcp each miss one peer; the others are converged. Returns (states, states after apply)."""
    after = world.states()
    states = dict(after)
    for n in ("aws", "gcp"):
        first = next(iter(after[n].peers))
        states[n] = dataclasses.replace(after[n], peers={k: v for k, v in after[n].peers.items() if k != first})
    return states, after


def test_apply_refuses_without_a_terminal(world: World) -> None:
    states, after = _drifted(world)
    fake = FakeTransport(dict(states), after=after)
    code, env = _apply(world, fake, _env(tty=False))
    assert code == ExitStatus.ERROR
    assert "no terminal" in _err(env) and "--auto-approve" in _err(env)
    assert "apply" not in fake.kinds()
    assert fake.closed


def test_apply_json_refuses_without_auto_approve(world: World) -> None:
    states, after = _drifted(world)
    fake = FakeTransport(dict(states), after=after)
    code, env = _apply(world, fake, _env(tty=True), json=True)
    assert code == ExitStatus.ERROR
    assert "--auto-approve" in _err(env) and _out(env) == ""
    assert "apply" not in fake.kinds()


@pytest.mark.parametrize(("answer", "applied"), [("yes\n", True), ("no\n", False), ("y\n", False), ("", False)])
def test_apply_asks_on_a_terminal(world: World, answer: str, applied: bool) -> None:
    states, after = _drifted(world)
    fake = FakeTransport(dict(states), after=after)
    code, env = _apply(world, fake, _env(tty=True, stdin=answer))
    assert APPROVE_PROMPT in _err(env)
    assert "# node aws" in _out(env), "the plan is shown before the question"
    if applied:
        assert code == ExitStatus.OK
        assert sorted(n for n, k, _ in fake.scripts if k == "apply") == ["aws", "gcp"]
    else:
        assert code == ExitStatus.ERROR
        assert "Apply cancelled." in _out(env)
        assert "apply" not in fake.kinds()


def test_apply_auto_approve(world: World) -> None:
    states, after = _drifted(world)
    fake = FakeTransport(dict(states), after=after)
    code, env = _apply(world, fake, auto_approve=True)
    assert code == ExitStatus.OK
    assert "Apply complete! Resources: 2 added, 0 changed, 0 destroyed." in _out(env)
    assert sorted(n for n, k, _ in fake.scripts if k == "apply") == ["aws", "gcp"]
    assert fake.closed


def test_apply_nothing_to_do(world: World) -> None:
    fake = FakeTransport(world.states())
    code, env = _apply(world, fake, auto_approve=True)
    assert code == ExitStatus.OK
    assert NO_CHANGES in _out(env)
    assert fake.kinds() == ["read"] * 4


def test_apply_one_node_failing(world: World) -> None:
    states, after = _drifted(world)
    fake = FakeTransport(dict(states), after=after, unreachable={"azure": "cannot connect: refused"})
    fake.answers[("gcp", "apply")] = [CommandResult(1, "", "wg: Unable to modify interface\n")]
    code, env = _apply(world, fake, auto_approve=True)
    assert code == ExitStatus.ERROR
    assert "apply failed on 2 node(s): azure, gcp" in _err(env)
    out = _out(env)
    assert "aws     changed" in out and "gcp     failed" in out and "Unable to modify interface" in out
    assert "azure   failed (cannot connect: refused)" in out
    _no_traceback(env)


def test_apply_json_is_one_document(world: World) -> None:
    states, after = _drifted(world)
    code, env = _apply(world, FakeTransport(dict(states), after=after), json=True, auto_approve=True)
    assert code == ExitStatus.OK
    doc = json.loads(_out(env))
    assert doc["type"] == "apply" and doc["format_version"] == "1"
    assert {r["node"]: r["outcome"] for r in doc["results"]} == {
        "aws": "changed", "azure": "unchanged", "gcp": "changed", "aliyun": "unchanged"
    }


def test_ctrl_c_after_every_node_started_runs_nothing_more_and_fails(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C while the nodes are being applied, every node already started (the default parallelism): they
    finish, and then nothing more runs (no hole punching) and the exit status is 1."""
    import concurrent.futures

    real_wait = concurrent.futures.wait
    calls: list[int] = []

    def ctrl_c_once(fs, *args, **kw):  # type: ignore[no-untyped-def]
        calls.append(len(fs))
        if len(calls) == 1:
            deadline = time.monotonic() + 10
            while sorted(started) != ["aws", "gcp"]:  # every node with changes started
                assert time.monotonic() < deadline
                time.sleep(0.01)
            raise KeyboardInterrupt
        return real_wait(fs, *args, **kw)

    monkeypatch.setattr(concurrent.futures, "wait", ctrl_c_once)
    started: list[str] = []
    real_apply = apply_mod.apply_node

    def recorded(mesh, transport, plan, *args, **kw):  # type: ignore[no-untyped-def]
        started.append(plan.node)
        return real_apply(mesh, transport, plan, *args, **kw)

    monkeypatch.setattr(apply_mod, "apply_node", recorded)
    punched: list[object] = []
    monkeypatch.setattr(apply_mod, "_punch", lambda *a, **k: punched.append(a) or False)
    states, after = _drifted(world)
    fake = FakeTransport(dict(states), after=after)
    code, env = _apply(world, fake, auto_approve=True)
    assert code == ExitStatus.ERROR
    assert sorted(n for n, k, _ in fake.scripts if k == "apply") == ["aws", "gcp"], "the started nodes finished"
    assert "Interrupt received" in _out(env) + _err(env)
    assert "Apply was interrupted: nothing more was started" in _out(env) + _err(env)  # (review R6: no word of
    # hole punching in a mesh without a pair that could punch)
    assert ("no hole punching ran" in _out(env) + _err(env)) is relaying(world.mesh).active
    assert punched == []


def test_apply_json_nothing_to_do_is_one_document(world: World) -> None:
    code, env = _apply(world, FakeTransport(world.states()), json=True)
    assert code == ExitStatus.OK
    doc = json.loads(_out(env))
    assert doc["summary"]["add"] == 0 and {r["outcome"] for r in doc["results"]} == {"unchanged"}


# ------------------------------------------------------------------------------------------------ saved plans


def _saved(world: World, states: dict[str, LiveState], tmp_path: Path) -> Path:
    out = tmp_path / "p.json"
    code, _ = _plan(world, FakeTransport(dict(states)), out=out)
    assert code == ExitStatus.OK
    return out


def test_saved_plan_applies_without_asking(world: World, tmp_path: Path) -> None:
    states, after = _drifted(world)
    saved = _saved(world, states, tmp_path)
    fake = FakeTransport(dict(states), after=after)
    code, env = _apply(world, fake, _env(tty=False), saved_plan=saved)
    assert code == ExitStatus.OK, _err(env)
    assert sorted(n for n, k, _ in fake.scripts if k == "apply") == ["aws", "gcp"]


def test_saved_plan_keeps_its_targets(world: World, tmp_path: Path) -> None:
    states, after = _drifted(world)
    out = tmp_path / "p.json"
    assert _plan(world, FakeTransport(dict(states)), out=out, connect=ConnectOptions(targets=("gcp",)))[0] == 0
    fake = FakeTransport(dict(states), after=after)
    code, _ = _apply(world, fake, saved_plan=out)
    assert code == ExitStatus.OK
    assert fake.connected == ["gcp"]


def test_stale_saved_plan_is_refused_when_a_node_moved(world: World, tmp_path: Path) -> None:
    states, after = _drifted(world)
    saved = _saved(world, states, tmp_path)
    moved = dict(states)
    moved["azure"] = dataclasses.replace(moved["azure"], listen_port=40000)
    fake = FakeTransport(moved, after=after)
    code, env = _apply(world, fake, saved_plan=saved)
    assert code == ExitStatus.ERROR
    assert "Saved plan is stale" in _err(env) and "node azure" in _err(env) and "node aws" not in _err(env)
    assert "apply" not in fake.kinds()
    assert fake.closed


def test_a_route_that_appeared_since_a_saved_plan_is_named(world: World, tmp_path: Path) -> None:
    """The saved plan said "the plan now differs from the saved one (now: no change)" while the node's plan now
    fails on a route through eth0 (review R2): the state names it."""
    states, after = _drifted(world)
    saved = _saved(world, states, tmp_path)
    moved = dict(states)
    route = ipaddress.ip_network("192.168.10.0/24")
    moved["azure"] = dataclasses.replace(moved["azure"], other_routes={route: ("192.168.10.0/24 dev eth0", 0)})
    fake = FakeTransport(moved, after=after)
    code, env = _apply(world, fake, saved_plan=saved)
    assert code == ExitStatus.ERROR and "apply" not in fake.kinds()
    assert "node azure: live state changed (route_conflicts.192.168.10.0/24)" in _err(env), _err(env)


def test_stale_saved_plan_is_refused_when_mesh_yaml_moved(world: World, tmp_path: Path) -> None:
    states, after = _drifted(world)
    saved = _saved(world, states, tmp_path)
    world.path.write_text(MESH_YAML + "# reviewed\n")
    fake = FakeTransport(dict(states), after=after)
    code, env = _apply(world, fake, saved_plan=saved)
    assert code == ExitStatus.ERROR
    assert "Saved plan is stale: mesh.yaml changed" in _err(env)
    assert "apply" not in fake.kinds()


def test_stale_message_says_what_moved(world: World, tmp_path: Path) -> None:
    states, after = _drifted(world)
    saved = _saved(world, states, tmp_path)
    moved = dict(states)
    moved["azure"] = dataclasses.replace(moved["azure"], listen_port=40000)
    code, env = _apply(world, FakeTransport(moved, after=after), saved_plan=saved)
    assert code == ExitStatus.ERROR
    assert "listen_port" in _err(env)


def test_saved_plan_not_stale_when_a_nat_peer_roams(world: World, tmp_path: Path) -> None:
    states, after = _drifted(world)
    saved = _saved(world, states, tmp_path)
    roamed = dict(states)
    aliyun = pubkey(4)
    peer = roamed["azure"].peers[aliyun]
    roamed["azure"] = dataclasses.replace(
        roamed["azure"], peers={**roamed["azure"].peers, aliyun: dataclasses.replace(peer, endpoint="100.64.9.9:4500")}
    )
    assert _plan(world, FakeTransport(dict(roamed)), detailed_exitcode=True)[0] == ExitStatus.CHANGES
    code, env = _apply(world, FakeTransport(roamed, after=after), saved_plan=saved)
    assert code == ExitStatus.OK, _err(env)


def test_not_a_saved_plan(world: World, tmp_path: Path) -> None:
    bogus = tmp_path / "p.json"
    bogus.write_text("{}")
    code, env = _apply(world, FakeTransport(world.states()), saved_plan=bogus)
    assert code == ExitStatus.ERROR
    assert "not a wgmesh saved plan" in _err(env)
    code, env = _apply(world, FakeTransport(world.states()), saved_plan=tmp_path / "missing.json")
    assert code == ExitStatus.ERROR and "no such saved plan" in _err(env)


# ------------------------------------------------------------------------------------------------ environment, F6


def test_a_hostile_node_cannot_fake_the_screen_before_the_question(world: World) -> None:
    states, after = _drifted(world)
    fake = FakeTransport(dict(states), after=after, unreachable={"azure": "\x1b[2J\x1b[HNo changes."})
    code, env = _apply(world, fake, _env(tty=True, stdin="no\n"))
    assert code == ExitStatus.ERROR
    assert "\x1b" not in _out(env) + _err(env)
    assert "Error: node azure: \\x1b[2J\\x1b[HNo changes.\n" in _err(env)
    assert APPROVE_PROMPT in _err(env) and "Apply cancelled." in _out(env)


def test_plan_json_with_out_keeps_stdout_one_document(world: World, tmp_path: Path) -> None:
    out = tmp_path / "p.json"
    code, env = _plan(world, FakeTransport(world.states(fresh)), json=True, out=out)
    assert code == ExitStatus.OK and out.exists()
    assert json.loads(_out(env))["type"] == "plan"


def test_the_ssh_identity_comes_from_the_environment() -> None:
    from wgmesh.commands.common import open_transport, ssh_transport
    from wgmesh.views.human import HumanView

    env = Environment(io.StringIO(), io.StringIO(), environ={"WGMESH_SSH_IDENTITY": "/keys/ci"})
    transport = open_transport(None, ConnectOptions(), HumanView(env), env)
    assert transport.identity_override == "/keys/ci"  # type: ignore[attr-defined]
    transport.on_host_key_added("gcp ssh-ed25519 SHA256:x")  # type: ignore[attr-defined]
    assert _err(env) == "Added to known_hosts (trusted on first use): gcp ssh-ed25519 SHA256:x\n"
    assert open_transport(ssh_transport, ConnectOptions(), HumanView(env), env).identity_override == "/keys/ci"  # type: ignore[attr-defined]
    seen: list[ConnectOptions] = []
    assert open_transport(_factory(FakeTransport({}), seen), ConnectOptions(), HumanView(env), env) is not None
    assert seen == [ConnectOptions()]


def test_a_saved_plan_takes_no_target(world: World, tmp_path: Path) -> None:
    states, after = _drifted(world)
    saved = _saved(world, states, tmp_path)
    fake = FakeTransport(dict(states), after=after)
    code, env = _apply(world, fake, saved_plan=saved, connect=ConnectOptions(targets=("azure",)))
    assert code == ExitStatus.ERROR
    assert "--target cannot be given with a saved plan: it applies the nodes it was made for (all)" in _err(env)
    assert fake.connected == []


def test_a_saved_plan_for_a_node_since_removed_is_stale_not_a_bad_target(world: World, tmp_path: Path) -> None:
    states, after = _drifted(world)
    out = tmp_path / "p.json"
    assert _plan(world, FakeTransport(dict(states)), out=out, connect=ConnectOptions(targets=("gcp",)))[0] == 0
    world.path.write_text(world.path.read_text().replace("  gcp:", "  gcp-new:"))
    fake = FakeTransport(dict(states), after=after)
    code, env = _apply(world, fake, saved_plan=out)
    assert code == ExitStatus.ERROR
    assert "Saved plan is stale: mesh.yaml changed since the plan was made" in _err(env) and "--target" not in _err(env)
    assert fake.connected == [], "no node is read for a plan that mesh.yaml already made stale"
