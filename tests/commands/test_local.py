"""commands/local.py render --all: each file written as it is rendered, the bytes of render_all; --json still
prints every config."""

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
    assert not (out / "gcp.conf").exists()  # the writing stopped at the error


def test_render_node_says_which_file_it_could_not_write(mesh_file: Path, tmp_path: Path) -> None:
    with pytest.raises(Failure, match=r"cannot write .*/aws\.conf: No such file or directory"):
        local.render(mesh_file, "aws", False, tmp_path / "missing" / "aws.conf", _env())
