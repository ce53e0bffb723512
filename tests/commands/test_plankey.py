"""commands/plankey.py (`wgmesh plan-key`) through the fake transport, the plan's note on every node
(core/plankey.py), and commands/graph.py (`wgmesh graph`). The scripts themselves run on stub nodes in
tests/remote/test_plankey.py and on lab hosts in tests/e2e/test_plankey.py."""

from __future__ import annotations

import base64
import dataclasses
import io
import struct
from pathlib import Path

import pytest
from fakes import FakeTransport, read_output, script_values
from meshes import converged, four

from wgmesh.commands.common import ConnectOptions, ExitStatus, Failure, guard
from wgmesh.commands.graph import GraphOptions, run_graph
from wgmesh.commands.plankey import PlanKeyOptions, run_plan_key
from wgmesh.core import plankey as core_plankey
from wgmesh.core.plan import build_plan
from wgmesh.remote import plankey
from wgmesh.remote.transport import CommandResult
from wgmesh.views.env import Environment

MESH_YAML = """\
version: 1
mesh:
  name: demo
  network: 10.0.0.0/24
ssh:
  user: ubuntu
nodes:
  aws:
    address: 10.0.0.1
    public_key: {k1}
    endpoint: aws.example.com:51820
  gcp:
    address: 10.0.0.2
    public_key: {k2}
    endpoint: 198.51.100.2:51820
  home:
    address: 10.0.0.3
    public_key: {k3}
    ssh: {{host: 192.0.2.3}}
"""
BLOB = struct.pack(">I", 11) + b"ssh-ed25519" + struct.pack(">I", 32) + bytes(range(32))
PUB = f"ssh-ed25519 {base64.b64encode(BLOB).decode()} ci-plan"


def _env() -> Environment:
    return Environment(io.StringIO(), io.StringIO(), color=False, stdin_isatty=False, environ={})


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    from meshes import pubkey

    (tmp_path / "mesh.yaml").write_text(MESH_YAML.format(k1=pubkey(1), k2=pubkey(2), k3=pubkey(3)))
    (tmp_path / "plan.pub").write_text(PUB + "\n")
    return tmp_path


def _answer(report: str) -> CommandResult:
    return CommandResult(0, f"@@wgmesh:plankey {report}\n", "")


def _run(repo: Path, fake: FakeTransport, **kw: object) -> tuple[ExitStatus, Environment]:
    env = _env()
    opts = PlanKeyOptions(repo / "mesh.yaml", repo / "plan.pub", **kw)  # type: ignore[arg-type]
    return guard(lambda: run_plan_key(opts, env, lambda o, p: fake), env), env


def test_install_sends_one_script_per_node_with_the_key_and_the_read_script(repo: Path) -> None:
    fake = FakeTransport({})
    for n in ("aws", "gcp", "home"):
        fake.answers[(n, "plankey")] = [_answer("installed ubuntu sudo /home/ubuntu/.ssh/authorized_keys")]
    status, env = _run(repo, fake)
    assert status == ExitStatus.OK, env.stderr.getvalue()
    assert sorted(n for n, kind, _ in fake.scripts) == ["aws", "gcp", "home"]
    values = {n: script_values(s) for n, _, s in fake.scripts}
    kind, data, _ = PUB.split()
    for v in values.values():
        assert (v["ACTION"], v["KEY_TYPE"], v["KEY_DATA"], v["AUTHORIZED_KEYS"]) == ("install", kind, data, "")
        assert v["SCRIPT"] == "/etc/wireguard/wgmesh-read-wg0.sh" and v["SUDOERS"] == "/etc/sudoers.d/wgmesh-plan-wg0"
        assert f"# wgmesh-read-version: {plankey.script_version()}" in v["READ_HEAD"]
    # each node's read script resolves its peers' endpoint names, as plan's read does
    assert "HOSTS=aws.example.com" in values["gcp"]["READ_BODY"] and "HOSTS=''" in values["aws"]["READ_BODY"]
    out = env.stdout.getvalue()
    assert "aws   installed for ubuntu through sudo (/home/ubuntu/.ssh/authorized_keys)" in out
    key = plankey.parse_public_key(PUB)
    assert f"The plan key {key.fingerprint} installed on 3 node(s)." in out
    assert fake.closed


def test_remove_needs_no_key_file_and_sends_remove(repo: Path) -> None:
    (repo / "plan.pub").unlink()
    fake = FakeTransport({})
    for n in ("aws", "gcp", "home"):
        fake.answers[(n, "plankey")] = [_answer("removed ubuntu - /home/ubuntu/.ssh/authorized_keys")]
    status, env = _run(repo, fake, remove=True, connect=ConnectOptions(targets=("aws",)))
    assert status == ExitStatus.OK, env.stderr.getvalue()
    assert [(n, script_values(s)["ACTION"], script_values(s)["READ_BODY"]) for n, _, s in fake.scripts] == [
        ("aws", "remove", "")
    ]
    assert "The plan key removed from 1 node(s)." in env.stdout.getvalue()


def test_a_node_that_refuses_is_named_and_the_run_fails(repo: Path) -> None:
    fake = FakeTransport({}, unreachable={"home": "cannot connect to ubuntu@192.0.2.3:22: timed out"})
    fake.answers[("aws", "plankey")] = [_answer("installed ubuntu sudo /home/ubuntu/.ssh/authorized_keys")]
    fake.answers[("gcp", "plankey")] = [CommandResult(3, "", "sudo is not installed: the plan key of ubuntu ...\n")]
    status, env = _run(repo, fake)
    assert status == ExitStatus.ERROR
    err = env.stderr.getvalue()
    assert "node gcp: sudo is not installed" in err and "node home: cannot connect" in err
    assert "plan-key failed on 2 node(s): home, gcp" in err
    assert "installed on 1 node(s)" in env.stdout.getvalue()


@pytest.mark.parametrize(
    ("text", "said"),
    [("-----BEGIN OPENSSH PRIVATE KEY-----\n", "this is a private key"), ("hello\n", "not an OpenSSH public key")],
)
def test_a_bad_key_file_stops_before_any_node_is_touched(repo: Path, text: str, said: str) -> None:
    (repo / "plan.pub").write_text(text)
    fake = FakeTransport({})
    status, env = _run(repo, fake)
    assert status == ExitStatus.ERROR and said in env.stderr.getvalue()
    assert fake.connected == [] and fake.scripts == []


def test_a_bad_authorized_keys_path_is_refused(repo: Path) -> None:
    fake = FakeTransport({})
    status, env = _run(repo, fake, authorized_keys="/a\nb")
    assert status == ExitStatus.ERROR and "--authorized-keys must be a path on one line" in env.stderr.getvalue()
    assert fake.scripts == []


def test_missing_key_file_is_one_line(repo: Path) -> None:
    with pytest.raises(Failure, match=r"cannot read .*nope\.pub"):
        run_plan_key(PlanKeyOptions(repo / "mesh.yaml", repo / "nope.pub"), _env(), lambda o, p: FakeTransport({}))


# ------------------------------------------------------------------------------------------- the plan's notes

MESH = four()


def _states(**plan_keys: str | None) -> dict:  # type: ignore[type-arg]
    return {n: dataclasses.replace(converged(MESH, n), plan_key=plan_keys.get(n)) for n in MESH.node_names}


def test_no_plan_key_anywhere_means_no_note() -> None:
    plan = build_plan(MESH, _states(aws="absent", azure="absent", gcp="absent", aliyun="absent"))
    assert all(not n.notes for n in plan.nodes) and not plan.has_changes
    assert all(not n.notes for n in build_plan(MESH, _states()).nodes)  # an older read: nothing known


def test_every_node_says_whether_it_has_the_key_once_one_has_it() -> None:
    states = _states(aws="installed", azure="absent", gcp="outdated", aliyun="incomplete")
    notes = {n.node: n.notes for n in build_plan(MESH, states).nodes}
    assert notes["aws"] == ("read-only plan key: installed",)
    assert "missing, so CI's plan cannot read this node" in notes["azure"][0]
    assert "from another wgmesh version" in notes["gcp"][0]
    assert "incomplete" in notes["aliyun"][0]
    assert not build_plan(MESH, states).has_changes  # a note, never a change


def test_an_unreadable_node_gets_its_error_not_a_note() -> None:
    states: dict = _states(aws="installed")  # type: ignore[type-arg]
    states["gcp"] = "cannot connect"
    plan = build_plan(MESH, states)
    gcp = next(n for n in plan.nodes if n.node == "gcp")
    assert gcp.error == "cannot connect" and gcp.notes == ()


def test_the_plan_key_is_not_part_of_the_saved_plans_fingerprint() -> None:
    from wgmesh.core.state import digest, normalized

    a, b = converged(MESH, "aws"), dataclasses.replace(converged(MESH, "aws"), plan_key="installed")
    assert digest(normalized(a)) == digest(normalized(b))
    assert core_plankey.NOTES.keys() == {"installed", "outdated", "incomplete", "absent"}


# ------------------------------------------------------------------------------------------- wgmesh graph


def _status_answer(state) -> CommandResult:  # type: ignore[no-untyped-def]
    return CommandResult(0, f"@@wgmesh:clock\n1700000000\n{read_output(state)}", "")


def test_graph_static_needs_no_node(repo: Path) -> None:
    env = _env()
    fake = FakeTransport({})
    status = run_graph(GraphOptions(repo / "mesh.yaml"), env, lambda o, p: fake)
    assert status == ExitStatus.OK and fake.connected == []
    assert env.stdout.getvalue().startswith("flowchart LR\n")
    assert '  n2(["home<br/>behind NAT<br/>10.0.0.3"])' in env.stdout.getvalue()


def test_graph_live_reads_each_node_once_and_marks_an_unreadable_one(tmp_path: Path) -> None:
    from wgmesh import meshfile

    text = (Path(__file__).resolve().parents[2] / "mesh.example" / "mesh.yaml").read_text()
    (tmp_path / "mesh.yaml").write_text(text)
    mesh, _ = meshfile.load(tmp_path / "mesh.yaml")
    enrolled = [n.name for n in mesh.nodes if n.enrolled]
    fake = FakeTransport({}, unreachable={enrolled[-1]: "cannot connect: timed out"})
    for name in enrolled[:-1]:
        fake.answers[(name, "status")] = [_status_answer(converged(mesh, name))]
    env = _env()
    status = run_graph(GraphOptions(tmp_path / "mesh.yaml", live=True, format="dot"), env, lambda o, p: fake)
    assert status == ExitStatus.ERROR  # a node could not be read: the picture is printed all the same
    assert sorted(n for n, *_ in fake.scripts) == sorted(enrolled[:-1])
    out = env.stdout.getvalue()
    assert out.startswith('graph "') and "live" in out and "not read" in out
    assert f"{enrolled[-1]}: cannot connect: timed out" in env.stderr.getvalue()


def test_graph_unknown_format(repo: Path) -> None:
    env = _env()
    status = guard(lambda: run_graph(GraphOptions(repo / "mesh.yaml", format="png"), env), env)
    assert status == ExitStatus.ERROR and "--format png: use one of mermaid, dot" in env.stderr.getvalue()
