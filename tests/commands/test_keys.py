"""enroll and rotate, the commands: through a fake transport that runs the real node scripts on a stub node
(tests/remote/stubs.py, the host's wg) and gives each node its own folders. The scripts themselves are tested
in tests/remote/test_keys.py."""

from __future__ import annotations

import io
import re
import shutil
import stat
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest
from meshes import pubkey
from remote.stubs import Stubs

from wgmesh import meshfile
from wgmesh.commands import keys
from wgmesh.commands.common import ConnectOptions, ExitStatus, Failure
from wgmesh.core.model import Node
from wgmesh.remote.transport import CommandResult
from wgmesh.views.env import Environment

pytestmark = pytest.mark.skipif(shutil.which("wg") is None, reason="needs wg (wireguard-tools)")


def public_of(path: Path) -> str:
    r = subprocess.run(["wg", "pubkey"], stdin=path.open("rb"), capture_output=True, check=True)
    return r.stdout.decode().strip()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# ------------------------------------------------------------------------------------------ the commands


class LocalNodes:
    """A fake transport: node NAME's /etc/wireguard and /run/wireguard are folders under `root/NAME`;
    the scripts run for real. Records every byte the "nodes" send back."""

    def __init__(self, root: Path, down: Iterable[str] = ()) -> None:
        self.root = root
        self.node = Stubs(root / "_stub-node")  # tests/remote/stubs.py, with the host's wg and flock
        self.node.host("wg", "flock")
        self.down = set(down)
        self.received: list[str] = []
        self.scripts: dict[str, str] = {}
        self.connected: list[str] = []

    def key_dir(self, name: str) -> Path:
        return self.root / name / "etc-wireguard"

    def connect(self, nodes: Iterable[Node]) -> dict[str, str]:
        names = [n.name for n in nodes]
        self.connected += names
        return {n: "cannot connect to root@nowhere:22: Connection refused" for n in names if n in self.down}

    def run(self, node: str, script: str, timeout: float | None = None) -> CommandResult:
        self.scripts[node] = script
        local = script.replace("/etc/wireguard", str(self.key_dir(node))).replace(
            "/run/wireguard", str(self.root / node / "run-wireguard"))
        r = self.node.run(local)
        self.received += [r.stdout, r.stderr]
        return r

    def run_many(self, scripts: Mapping[str, str], timeout: float | None = None) -> dict[str, CommandResult | str]:
        return {n: self.run(n, s) for n, s in scripts.items()}

    def close(self) -> None:
        pass

    def private_keys(self) -> list[str]:
        return [p.read_text().strip() for p in self.root.glob("*/etc-wireguard/*.key")]


MESH = """\
# my mesh
version: 1
mesh:
  name: t
  network: 10.0.0.0/24
nodes:
  a:
    address: 10.0.0.1   # first
    endpoint: a.example.com:51820
  # b is new
  b:
    address: 10.0.0.2
    endpoint: b.example.com:51820
  c:
    address: 10.0.0.3
    public_key: {c_key}
    endpoint: c.example.com:51820
"""


def env() -> Environment:
    return Environment(io.StringIO(), io.StringIO(), color=False, stdin_isatty=False)


def out(e: Environment) -> str:
    return e.stdout.getvalue() + e.stderr.getvalue()  # type: ignore[attr-defined]


def factory(t: LocalNodes):  # type: ignore[no-untyped-def]
    return lambda opts, progress: t


def test_enroll_all_then_again(tmp_path: Path) -> None:
    t = LocalNodes(tmp_path / "nodes")
    f = tmp_path / "mesh.yaml"
    f.write_text(MESH.format(c_key=pubkey(3)))
    e = env()
    assert keys.run_enroll(keys.KeyOptions(f, all_nodes=True), e, factory(t)) == ExitStatus.OK
    mesh, _ = meshfile.load(f)
    for name in ("a", "b", "c"):
        key = t.key_dir(name) / "wg0.key"
        assert mode(key) == 0o600
        assert mesh.node(name).public_key == public_of(key)
    text = f.read_text()
    assert "# my mesh" in text and "# b is new" in text and "# first" in text
    assert f'~ c: created /etc/wireguard/wg0.key; public_key "{pubkey(3)}" -> "{mesh.node("c").public_key}"' in out(e)
    assert "Wrote 3 public key(s)" in out(e)

    e2 = env()
    assert keys.run_enroll(keys.KeyOptions(f, names=("a", "b")), e2, factory(t)) == ExitStatus.OK
    assert f.read_text() == text
    assert "a: /etc/wireguard/wg0.key exists; public_key already recorded (no change)" in out(e2)
    assert f"No changes to {f}." in out(e2)
    for secret in t.private_keys():
        assert all(secret not in r for r in t.received)
        assert secret not in out(e) + out(e2) + text
        assert all(secret not in s for s in t.scripts.values())


def test_enroll_a_node_that_cannot_be_reached(tmp_path: Path) -> None:
    t = LocalNodes(tmp_path / "nodes", down=["b"])
    f = tmp_path / "mesh.yaml"
    f.write_text(MESH.format(c_key=pubkey(3)))
    e = env()
    with pytest.raises(Failure, match=r"^enroll failed on 1 node\(s\): b$"):
        keys.run_enroll(keys.KeyOptions(f, names=("a", "b")), e, factory(t))
    mesh, _ = meshfile.load(f)
    assert mesh.node("a").public_key is not None, "the reachable node is recorded"
    assert mesh.node("b").public_key is None
    assert "b: cannot connect" in out(e)


def test_enroll_two_nodes_with_the_same_key_writes_nothing(tmp_path: Path) -> None:
    t = LocalNodes(tmp_path / "nodes")
    f = tmp_path / "mesh.yaml"
    f.write_text(MESH.format(c_key=pubkey(3)))
    keys.run_enroll(keys.KeyOptions(f, names=("a",)), env(), factory(t))
    shutil.copytree(t.key_dir("a"), t.key_dir("b"))  # a cloned host
    before = f.read_text()
    with pytest.raises(Failure, match="the same key as a"):
        keys.run_enroll(keys.KeyOptions(f, names=("b",)), env(), factory(t))
    assert f.read_text() == before


def test_enroll_that_cannot_write_mesh_yaml_names_the_nodes_and_the_way_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The keys are made on the nodes, the file cannot be written (a read-only checkout, a full disk): the error
    names the nodes whose keys it does not record and says to run enroll again (it reads the same keys)."""
    t = LocalNodes(tmp_path / "nodes")
    f = tmp_path / "mesh.yaml"
    f.write_text(MESH.format(c_key=pubkey(3)))
    before = f.read_text()

    def refused(*args: object, **kwargs: object) -> None:
        raise PermissionError(1, "Operation not permitted", str(f))

    monkeypatch.setattr(keys, "_write_keys", refused)
    with pytest.raises(Failure) as info:
        keys.run_enroll(keys.KeyOptions(f, names=("a", "b")), env(), factory(t))
    assert str(info.value) == (f"cannot write {f}: Operation not permitted; the node(s) a b have keys that it does "
                               f"not record: run `wgmesh enroll a b -f {f}` again once it can be written")
    assert f.read_text() == before
    monkeypatch.undo()
    assert keys.run_enroll(keys.KeyOptions(f, names=("a", "b")), env(), factory(t)) == ExitStatus.OK
    mesh, _ = meshfile.load(f)
    assert mesh.node("a").public_key == public_of(t.key_dir("a") / "wg0.key")


@pytest.mark.parametrize(
    ("opts", "message"),
    [
        ({"names": ("zz",)}, "no node 'zz' in mesh.yaml"),
        ({}, r"name the node\(s\) to enroll \(a, b, c\), or --all"),
        ({"names": ("a",), "all_nodes": True}, "not both"),
    ],
)
def test_enroll_usage_errors_connect_to_nothing(tmp_path: Path, opts: dict, message: str) -> None:
    t = LocalNodes(tmp_path / "nodes")
    f = tmp_path / "mesh.yaml"
    f.write_text(MESH.format(c_key=pubkey(3)))
    with pytest.raises(Failure, match=message):
        keys.run_enroll(keys.KeyOptions(f, **opts), env(), factory(t))
    assert t.connected == []


def test_rotate(tmp_path: Path) -> None:
    t = LocalNodes(tmp_path / "nodes")
    f = tmp_path / "mesh.yaml"
    f.write_text(MESH.format(c_key=pubkey(3)))
    keys.run_enroll(keys.KeyOptions(f, all_nodes=True), env(), factory(t))
    before, _ = meshfile.load(f)
    text = f.read_text()
    e = env()
    assert keys.run_rotate(keys.KeyOptions(f, names=("b",)), e, factory(t)) == ExitStatus.OK
    after, _ = meshfile.load(f)
    new = public_of(t.key_dir("b") / "wg0.key")
    assert after.node("b").public_key == new != before.node("b").public_key
    assert [after.node(n).public_key for n in "ac"] == [before.node(n).public_key for n in "ac"]
    old_line = f"    public_key: {before.node('b').public_key}"
    assert f.read_text() == text.replace(old_line, f"    public_key: {new}")
    assert f'~ b: new key in /etc/wireguard/wg0.key; public_key "{before.node("b").public_key}" -> "{new}"' in out(e)
    assert f"until `wgmesh apply -f {f}`" in out(e)
    for secret in t.private_keys():
        assert all(secret not in r for r in t.received)


def test_rotate_refuses_an_unenrolled_node_before_connecting(tmp_path: Path) -> None:
    t = LocalNodes(tmp_path / "nodes")
    f = tmp_path / "mesh.yaml"
    f.write_text(MESH.format(c_key=pubkey(3)))
    with pytest.raises(Failure, match=rf"a is not enrolled .*run `wgmesh enroll a -f {re.escape(str(f))}` first"):
        keys.run_rotate(keys.KeyOptions(f, names=("a",)), env(), factory(t))
    assert t.connected == []


def test_rotate_refuses_a_node_whose_key_file_differs(tmp_path: Path) -> None:
    t = LocalNodes(tmp_path / "nodes")
    f = tmp_path / "mesh.yaml"
    f.write_text(MESH.format(c_key=pubkey(3)))
    t.node.run(keys.enroll_script("wg0", key_dir=str(t.key_dir("c"))))  # c's real key is not pubkey(3)
    before = f.read_text()
    e = env()
    with pytest.raises(Failure, match=r"rotate failed on 1 node\(s\): c"):
        keys.run_rotate(keys.KeyOptions(f, names=("c",)), e, factory(t))
    assert f.read_text() == before
    assert "run wgmesh enroll to record it first" in out(e)


def test_cli_enroll_and_rotate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import typer
    from typer.testing import CliRunner

    from wgmesh.cli import keys as cli_keys

    t = LocalNodes(tmp_path / "nodes")
    seen: list[ConnectOptions] = []

    def fake(opts: ConnectOptions, progress: object) -> LocalNodes:
        seen.append(opts)
        return t

    monkeypatch.setattr(keys, "ssh_transport", fake)
    app = typer.Typer()
    app.command()(cli_keys.enroll)
    app.command()(cli_keys.rotate)
    f = tmp_path / "mesh.yaml"
    f.write_text(MESH.format(c_key=pubkey(3)))
    runner = CliRunner()
    r = runner.invoke(app, ["enroll", "a", "b", "-f", str(f), "--accept-new-host-keys", "--timeout", "3"])
    assert r.exit_code == 0, r.output
    assert seen == [ConnectOptions(10, 3.0, True)]
    assert meshfile.load(f)[0].node("b").public_key == public_of(t.key_dir("b") / "wg0.key")
    r = runner.invoke(app, ["rotate", "a"], env={"WGMESH_FILE": str(f)})
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["rotate", "zz", "-f", str(f)])
    assert r.exit_code == 1
    assert r.output.strip() == "Error: no node 'zz' in mesh.yaml (nodes: a, b, c)"


def test_enroll_and_rotate_json(tmp_path: Path) -> None:
    import json

    t = LocalNodes(tmp_path / "nodes", down=["b"])
    f = tmp_path / "mesh.yaml"
    f.write_text(MESH.format(c_key=pubkey(3)))
    e = env()
    with pytest.raises(Failure, match=r"enroll failed on 1 node\(s\): b"):
        keys.run_enroll(keys.KeyOptions(f, names=("a", "b"), json=True), e, factory(t))
    doc = json.loads(e.stdout.getvalue())  # type: ignore[attr-defined]
    assert (doc["format_version"], doc["type"], doc["ok"], doc["written"]) == ("1", "enroll", False, True)
    (a,) = doc["nodes"]
    assert a["node"] == "a" and a["key"] == "created" and a["changed"] is True
    assert a["public_key"] == meshfile.load(f)[0].node("a").public_key
    assert [x["node"] for x in doc["errors"]] == ["b"]
    e = env()
    assert keys.run_rotate(keys.KeyOptions(f, names=("a",), json=True), e, factory(t)) == ExitStatus.OK
    doc = json.loads(e.stdout.getvalue())  # type: ignore[attr-defined]
    assert doc["type"] == "rotate" and doc["nodes"][0]["previous_public_key"] == a["public_key"]
    assert doc["nodes"][0]["public_key"] == meshfile.load(f)[0].node("a").public_key != a["public_key"]
