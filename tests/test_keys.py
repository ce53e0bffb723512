"""enroll and rotate: the real node scripts run here with /bin/sh and wg on temporary folders, and the
commands run through a fake transport that gives each node its own folder."""

from __future__ import annotations

import io
import os
import shutil
import stat
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest
from meshes import pubkey

from wgmesh import config
from wgmesh.commands import keys
from wgmesh.commands.common import ConnectOptions, ExitStatus, Failure
from wgmesh.core.model import Node
from wgmesh.remote import keys as remote_keys
from wgmesh.remote.transport import CommandResult
from wgmesh.views.env import Environment

pytestmark = pytest.mark.skipif(shutil.which("wg") is None, reason="needs wg (wireguard-tools)")


def sh(script: str, env: Mapping[str, str] | None = None) -> CommandResult:
    r = subprocess.run(["/bin/sh", "-s"], input=script, capture_output=True, text=True, timeout=30,
                       env={**os.environ, **(env or {})})
    return CommandResult(r.returncode, r.stdout, r.stderr)


def public_of(path: Path) -> str:
    r = subprocess.run(["wg", "pubkey"], stdin=path.open("rb"), capture_output=True, check=True)
    return r.stdout.decode().strip()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# ------------------------------------------------------------------------------------------ the scripts


def test_enroll_creates_a_key_with_mode_600_and_prints_only_its_public_key(tmp_path: Path) -> None:
    kd = tmp_path / "wg"
    r = sh(keys.enroll_script("wg0", key_dir=str(kd)))
    assert r.exit_status == 0, r.stderr
    key = kd / "wg0.key"
    report = keys.parse_key_output(r.stdout)
    assert report == keys.KeyReport("created", public_of(key), "600")
    assert mode(key) == 0o600 and mode(kd) == 0o700
    assert key.read_text().strip() not in r.stdout + r.stderr
    assert sorted(os.listdir(kd)) == ["wg0.key"]


def test_enroll_twice_keeps_the_key(tmp_path: Path) -> None:
    kd = tmp_path / "wg"
    first = keys.parse_key_output(sh(keys.enroll_script("wg0", key_dir=str(kd))).stdout)
    before = (kd / "wg0.key").stat()
    second = keys.parse_key_output(sh(keys.enroll_script("wg0", key_dir=str(kd))).stdout)
    after = (kd / "wg0.key").stat()
    assert second == keys.KeyReport("existing", first.public_key, "600")
    assert (before.st_ino, before.st_mtime_ns) == (after.st_ino, after.st_mtime_ns)


def test_enroll_reports_a_loose_mode(tmp_path: Path) -> None:
    kd = tmp_path / "wg"
    sh(keys.enroll_script("wg0", key_dir=str(kd)))
    os.chmod(kd / "wg0.key", 0o644)
    assert keys.parse_key_output(sh(keys.enroll_script("wg0", key_dir=str(kd))).stdout).mode == "644"


def test_enroll_refuses_a_file_that_is_not_a_key(tmp_path: Path) -> None:
    kd = tmp_path / "wg"
    kd.mkdir()
    (kd / "wg0.key").write_text("not a key\n")
    r = sh(keys.enroll_script("wg0", key_dir=str(kd)))
    assert r.exit_status == remote_keys.NOT_ENROLLED_EXIT
    assert "does not hold a WireGuard private key" in r.stderr
    assert (kd / "wg0.key").read_text() == "not a key\n"


def test_enroll_without_wg(tmp_path: Path) -> None:
    r = sh(keys.enroll_script("wg0", key_dir=str(tmp_path)), env={"PATH": "/nonexistent"})
    assert r.exit_status == remote_keys.NOT_ENROLLED_EXIT
    assert "wg is not installed" in r.stderr


def test_rotate_replaces_the_key(tmp_path: Path) -> None:
    kd, run = tmp_path / "wg", tmp_path / "run"
    old = keys.parse_key_output(sh(keys.enroll_script("wg0", key_dir=str(kd))).stdout).public_key
    old_private = (kd / "wg0.key").read_text()
    r = sh(keys.rotate_script("wg0", old, key_dir=str(kd), run_dir=str(run)))
    assert r.exit_status == 0, r.stderr
    report = keys.parse_key_output(r.stdout)
    assert report.status == "rotated"
    assert report.public_key == public_of(kd / "wg0.key") != old
    assert mode(kd / "wg0.key") == 0o600
    assert sorted(os.listdir(kd)) == ["wg0.key"], "no copy of the old key, no temporary file"
    assert (kd / "wg0.key").read_text() not in r.stdout + r.stderr
    assert old_private not in r.stdout + r.stderr


@pytest.mark.parametrize(
    ("setup", "exit_status", "message"),
    [
        ("absent", remote_keys.NOT_ENROLLED_EXIT, "no key file"),
        ("other", remote_keys.MISMATCH_EXIT, "not the"),
        ("garbage", remote_keys.NOT_ENROLLED_EXIT, "does not hold a WireGuard private key"),
    ],
)
def test_rotate_refuses(tmp_path: Path, setup: str, exit_status: int, message: str) -> None:
    kd, run = tmp_path / "wg", tmp_path / "run"
    kd.mkdir()
    if setup == "other":
        sh(keys.enroll_script("wg0", key_dir=str(kd)))
    if setup == "garbage":
        (kd / "wg0.key").write_text("x\n")
    before = (kd / "wg0.key").read_bytes() if (kd / "wg0.key").exists() else None
    r = sh(keys.rotate_script("wg0", pubkey(1), key_dir=str(kd), run_dir=str(run)))
    assert r.exit_status == exit_status
    assert message in r.stderr
    assert ((kd / "wg0.key").read_bytes() if (kd / "wg0.key").exists() else None) == before


def test_rotate_waits_for_the_apply_lock(tmp_path: Path) -> None:
    kd, run = tmp_path / "wg", tmp_path / "run"
    run.mkdir()
    old = keys.parse_key_output(sh(keys.enroll_script("wg0", key_dir=str(kd))).stdout).public_key
    holder = subprocess.Popen(["flock", str(run / "wgmesh-wg0.lock"), "sleep", "5"])
    try:
        for _ in range(50):
            probe = subprocess.run(["flock", "-n", str(run / "wgmesh-wg0.lock"), "true"], check=False)
            if probe.returncode != 0:
                break
            subprocess.run(["sleep", "0.05"], check=True)
        r = sh(keys.rotate_script("wg0", old, key_dir=str(kd), run_dir=str(run), lock_timeout=1))
    finally:
        holder.kill()
        holder.wait()
    assert r.exit_status == remote_keys.LOCK_EXIT
    assert "holds" in r.stderr
    assert public_of(kd / "wg0.key") == old


def test_rotate_script_refuses_a_bad_expected_key() -> None:
    with pytest.raises(ValueError):
        keys.rotate_script("wg0", "$(reboot)")


@pytest.mark.parametrize(
    ("stdout", "want"),
    [
        (f"noise\n{remote_keys.MARK}created {pubkey(1)} 600\n", keys.KeyReport("created", pubkey(1), "600")),
        (f"{remote_keys.MARK}rotated {pubkey(2)}\n", keys.KeyReport("rotated", pubkey(2), None)),
        (f"{remote_keys.MARK}existing {pubkey(3)} 640\n", keys.KeyReport("existing", pubkey(3), "640")),
        (f"{remote_keys.MARK}created nope 600\n", ValueError),
        (f"{remote_keys.MARK}stolen {pubkey(1)}\n", ValueError),
        ("", ValueError),
    ],
)
def test_parse_key_output(stdout: str, want: object) -> None:
    if want is ValueError:
        with pytest.raises(ValueError):
            keys.parse_key_output(stdout)
    else:
        assert keys.parse_key_output(stdout) == want


# ------------------------------------------------------------------------------------------ the commands


class LocalNodes:
    """A fake transport: node NAME's /etc/wireguard and /run/wireguard are folders under `root/NAME`;
    the scripts run for real. Records every byte the "nodes" send back."""

    def __init__(self, root: Path, down: Iterable[str] = ()) -> None:
        self.root = root
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
        r = sh(local)
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
    mesh, _ = config.load(f)
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
    mesh, _ = config.load(f)
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
    before, _ = config.load(f)
    text = f.read_text()
    e = env()
    assert keys.run_rotate(keys.KeyOptions(f, names=("b",)), e, factory(t)) == ExitStatus.OK
    after, _ = config.load(f)
    new = public_of(t.key_dir("b") / "wg0.key")
    assert after.node("b").public_key == new != before.node("b").public_key
    assert [after.node(n).public_key for n in "ac"] == [before.node(n).public_key for n in "ac"]
    old_line = f"    public_key: {before.node('b').public_key}"
    assert f.read_text() == text.replace(old_line, f"    public_key: {new}")
    assert f'~ b: new key in /etc/wireguard/wg0.key; public_key "{before.node("b").public_key}" -> "{new}"' in out(e)
    assert "until `wgmesh apply`" in out(e)
    for secret in t.private_keys():
        assert all(secret not in r for r in t.received)


def test_rotate_refuses_an_unenrolled_node_before_connecting(tmp_path: Path) -> None:
    t = LocalNodes(tmp_path / "nodes")
    f = tmp_path / "mesh.yaml"
    f.write_text(MESH.format(c_key=pubkey(3)))
    with pytest.raises(Failure, match=r"a is not enrolled .*run `wgmesh enroll a` first"):
        keys.run_rotate(keys.KeyOptions(f, names=("a",)), env(), factory(t))
    assert t.connected == []


def test_rotate_refuses_a_node_whose_key_file_differs(tmp_path: Path) -> None:
    t = LocalNodes(tmp_path / "nodes")
    f = tmp_path / "mesh.yaml"
    f.write_text(MESH.format(c_key=pubkey(3)))
    sh(keys.enroll_script("wg0", key_dir=str(t.key_dir("c"))))  # c's real key is not pubkey(3)
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
    assert config.load(f)[0].node("b").public_key == public_of(t.key_dir("b") / "wg0.key")
    r = runner.invoke(app, ["rotate", "a"], env={"WGMESH_FILE": str(f)})
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["rotate", "zz", "-f", str(f)])
    assert r.exit_code == 1
    assert r.output.strip() == "Error: no node 'zz' in mesh.yaml (nodes: a, b, c)"
