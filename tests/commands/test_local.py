"""commands/local.py render --all: the bytes of render_all, written on two threads; the earliest error named;
--json still prints every config."""

from __future__ import annotations

import io
import json
import os
import shutil
from pathlib import Path

import pytest

from wgmesh.commands import local
from wgmesh.commands.common import Failure
from wgmesh.core.render import render_all
from wgmesh.meshfile import load
from wgmesh.views.env import Environment

EXAMPLE = Path(__file__).resolve().parents[2] / "mesh.example"


@pytest.fixture
def mesh_file(tmp_path: Path) -> Path:
    shutil.copytree(EXAMPLE, tmp_path / "mesh")
    return tmp_path / "mesh" / "mesh.yaml"


def _env() -> Environment:
    return Environment(io.StringIO(), io.StringIO(), environ={"NO_COLOR": "1"})


def test_render_all_writes_the_bytes_of_render_all(mesh_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "aws.conf").write_text("an older, longer file that is replaced entirely\n" * 100)
    env = _env()
    assert local.render(mesh_file, None, True, out, env) == 0
    want = dict(render_all(load(mesh_file)[0]))
    assert {p.name: p.read_bytes() for p in out.iterdir()} == {f"{n}.conf": t.encode() for n, t in want.items()}
    assert env.stdout.getvalue() == f"Wrote {len(want)} config(s) to {out}/\n"


def test_render_all_json_prints_every_config(mesh_file: Path, tmp_path: Path) -> None:
    env = _env()
    assert local.render(mesh_file, None, True, tmp_path / "out", env, json=True) == 0
    doc = json.loads(env.stdout.getvalue())
    want = dict(render_all(load(mesh_file)[0]))
    assert {n["node"]: n["config"] for n in doc["nodes"]} == want
    assert all(Path(n["path"]).read_text() == want[n["node"]] for n in doc["nodes"])


def test_render_all_does_not_write_through_a_symbolic_link(mesh_file: Path, tmp_path: Path) -> None:
    out, victim = tmp_path / "out", tmp_path / "victim"
    out.mkdir()
    victim.write_text("not a config\n")
    (out / "azure.conf").symlink_to(victim)
    with pytest.raises(Failure, match=r"cannot write .*/azure\.conf: it is a symbolic link \(wgmesh does not write "
                                      r"through links: remove it\); the files before it are written"):
        local.render(mesh_file, None, True, out, _env())
    assert victim.read_text() == "not a config\n"
    assert (out / "azure.conf").is_symlink()


def test_a_file_that_could_not_be_written_whole_is_named_and_removed(
    mesh_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = os.writev

    def full_at_gcp(fd: int, buffers: list[memoryview]) -> int:  # the disk fills up during gcp.conf
        if os.readlink(f"/proc/self/fd/{fd}").endswith("/gcp.conf"):
            real(fd, [bytes(buffers[0])[:10]])
            raise OSError(28, "No space left on device")
        return real(fd, buffers)

    monkeypatch.setattr(local.os, "writev", full_at_gcp)
    out = tmp_path / "out"
    with pytest.raises(Failure, match=r"cannot write .*/gcp\.conf: No space left on device \(the file is removed, "
                                      r"not left cut short\); the files before it are written"):
        local.render(mesh_file, None, True, out, _env())
    assert not (out / "gcp.conf").exists()
    assert (out / "azure.conf").read_text() == dict(render_all(load(mesh_file)[0]))["azure"]


def test_a_short_writev_goes_on_from_where_it_stopped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = os.writev
    calls = []

    def at_most_7(fd: int, buffers: list[memoryview]) -> int:  # a file system that takes 7 bytes at a time
        calls.append(len(buffers))
        return real(fd, [b"".join(bytes(b) for b in buffers)[:7]])

    monkeypatch.setattr(local.os, "writev", at_most_7)
    pieces = [b"head\n", memoryview(b"0123456789abcdef")[2:12], b"", memoryview(b"tail\n")]
    with open(tmp_path / "f", "wb") as f:
        local._write_all(f.fileno(), pieces)
    assert (tmp_path / "f").read_bytes() == b"head\n23456789abtail\n"
    assert len(calls) == 3


def test_render_all_raises_the_first_file_it_could_not_write(mesh_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "azure.conf").mkdir(parents=True)  # a folder where a file goes
    with pytest.raises(Failure, match=r"cannot write .*/azure\.conf: Is a directory"):
        local.render(mesh_file, None, True, out, _env())
    assert (out / "aws.conf").read_text() == dict(render_all(load(mesh_file)[0]))["aws"]


def test_render_all_names_the_earliest_of_several_files_it_could_not_write(mesh_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    for name in ("aliyun", "gcp"):  # the last two: the writer threads may meet them in either order
        (out / f"{name}.conf").mkdir(parents=True)
    for _ in range(20):
        with pytest.raises(Failure, match=r"cannot write .*/gcp\.conf: Is a directory"):
            local.render(mesh_file, None, True, out, _env())
        assert (out / "azure.conf").read_text() == dict(render_all(load(mesh_file)[0]))["azure"]


def test_the_writer_starts_no_file_after_an_error(tmp_path: Path) -> None:
    (tmp_path / "1").mkdir()  # a folder where file 1 goes
    files = [(tmp_path / str(i), [b"x"]) for i in range(4)]
    with pytest.raises(IsADirectoryError):
        local.write_files(files, writers=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["0", "1"]  # up to the failed file; 2 and 3 not started


def test_the_writer_raises_an_error_that_is_not_an_os_error_in_the_caller(tmp_path: Path) -> None:
    files = [(tmp_path / str(i), [b"x"] if i != 5 else [object()]) for i in range(8)]  # not bytes: a TypeError
    with pytest.raises(TypeError):
        local.write_files(files, writers=2)  # type: ignore[list-item]
    assert {"0", "1", "2", "3", "4", "5"} <= {p.name for p in tmp_path.iterdir()}


def test_render_all_says_when_out_is_no_folder(mesh_file: Path) -> None:
    with pytest.raises(Failure, match=r"cannot create the folder .*mesh\.yaml: File exists"):
        local.render(mesh_file, None, True, mesh_file, _env())
    with pytest.raises(Failure, match=r"cannot create the folder .*mesh\.yaml/sub: Not a directory"):
        local.render(mesh_file, None, True, mesh_file / "sub", _env())


def test_render_node_says_which_file_it_could_not_write(mesh_file: Path, tmp_path: Path) -> None:
    with pytest.raises(Failure, match=r"cannot write .*/aws\.conf: No such file or directory"):
        local.render(mesh_file, "aws", False, tmp_path / "missing" / "aws.conf", _env())


def test_a_decommissioned_node_has_no_config_to_render(mesh_file: Path, tmp_path: Path) -> None:
    text = mesh_file.read_text()
    mesh_file.write_text(text.replace("  gcp:\n", "  gcp:\n    decommission: true\n", 1))
    with pytest.raises(Failure, match=r"^gcp has `decommission: true`: there is no config to render"):
        local.render(mesh_file, "gcp", False, None, _env())
    out = tmp_path / "out"
    env = _env()
    assert local.render(mesh_file, None, True, out, env) == 0
    assert "gcp.conf" not in {p.name for p in out.iterdir()}
    assert env.stdout.getvalue().splitlines()[1].startswith("No config for gcp (decommission: true: apply takes")
    env = _env()
    assert local.render(mesh_file, None, True, out, env, json=True) == 0
    assert json.loads(env.stdout.getvalue())["decommissioned"] == ["gcp"]


# ------------------------------------------------------------------------------------------ garbage collection

_HOLDING = """
import gc, json, sys
from pathlib import Path
from wgmesh.commands import common, local
from wgmesh.views.env import Environment
seen = []
load = local.meshfile.load
def watched(path):
    seen.append(gc.isenabled())  # while mesh.yaml's model is built
    return load(path)
local.meshfile.load = watched
gc.enable()
frozen = gc.get_freeze_count()
env = Environment(open("/dev/null", "w"), sys.stderr, environ={})
local.validate(Path(sys.argv[1]), env)
after = gc.get_freeze_count()
gc.disable()
with common.holding():
    pass
print(json.dumps([seen, after > frozen, gc.isenabled()]))
"""


def test_the_model_is_built_with_the_collector_paused_then_frozen() -> None:
    """validate and render build mesh.yaml's model (many small objects it holds to its end) with the cyclic
    collector paused, then freeze it and collect again; a collector that was off stays off."""
    import subprocess
    import sys

    mesh = Path(__file__).resolve().parents[2] / "mesh.example" / "mesh.yaml"
    done = subprocess.run([sys.executable, "-c", _HOLDING, str(mesh)], capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [[False], True, False]


def test_more_pieces_than_one_writev_takes_are_written_in_order(tmp_path: Path) -> None:
    pieces = [bytes([65 + i % 26]) for i in range(2500)]  # more than IOV_MAX (1024) buffers
    with open(tmp_path / "f", "wb") as f:
        local._write_all(f.fileno(), pieces)
    assert (tmp_path / "f").read_bytes() == b"".join(pieces)
