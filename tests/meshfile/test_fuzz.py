"""Fuzzing the loader: any input gives a Mesh or a MeshError, never another exception."""

from __future__ import annotations

import copy
import io
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from wgmesh.meshfile import MESH_KEYS, NODE_KEYS, NODE_SSH_KEYS, MeshError, loads

EXAMPLE = Path(__file__).resolve().parent.parent.parent / "mesh.example" / "mesh.yaml"
FAKE_SECRET = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="  # key-shaped test value, no one's key
KA = "76g31p64QmeSkdVYkRCDqqshYcBF71jU5GtKfq2gmWU="


def check_never_crashes(text: str) -> None:
    try:
        mesh, warnings = loads(text)
    except MeshError as e:
        assert e.errors
        assert not any("internal error" in d.message for d in e.diagnostics), str(e)
        assert all(d.line >= 0 and d.col >= 0 for d in e.diagnostics)
        return
    assert all(d.severity == "warning" for d in warnings)
    assert len(set(mesh.node_names)) == len(mesh.nodes)


# The budget comes from the profile (tests/conftest.py): small by default, deep with HYPOTHESIS_PROFILE=fuzz.
FUZZ = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.text())
def test_fuzz_arbitrary_text(text: str) -> None:
    check_never_crashes(text)


EXAMPLE_LINES = EXAMPLE.read_text().splitlines(keepends=True)


@FUZZ
@given(st.lists(st.tuples(st.integers(0, len(EXAMPLE_LINES) - 1), st.sampled_from("dsx"), st.text(max_size=8))))
def test_fuzz_line_mutations(edits: list[tuple[int, str, str]]) -> None:
    lines = list(EXAMPLE_LINES)
    for i, op, text in edits:
        i %= max(len(lines), 1)
        if not lines:
            break
        if op == "d":
            del lines[i]
        elif op == "s":
            lines.insert(i, lines[i])
        else:
            col = len(text) % (len(lines[i]) + 1)
            lines[i] = lines[i][:col] + text + lines[i][col:]
    check_never_crashes("".join(lines))


def _plain_example() -> dict:
    return YAML(typ="safe").load(EXAMPLE.read_text())


PLAIN = _plain_example()
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True),
    st.text(max_size=30),
    st.sampled_from(
        ["10.0.0.9", "10.0.0.0/24", "fd00::1", "fd00::/64", KA, FAKE_SECRET, "h:1", "[::1]:5", "~", "0/0",
         "192.168.10.0/24", "aws", "private_key", "x" * 70, "10.0.0.1", "1e9", "-1", "%i"]
    ),
)  # fmt: skip
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12) | scalars, inner, max_size=4)
    ),
    max_leaves=12,
)


def _paths(doc: object, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out.extend(_paths(v, (*prefix, k)))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out.extend(_paths(v, (*prefix, i)))
    return out


ALL_PATHS = _paths(PLAIN)
KEY_NAMES = st.sampled_from([*NODE_KEYS, *MESH_KEYS, *NODE_SSH_KEYS, "prefix", "probe", "zz"])


@FUZZ
@given(st.lists(st.tuples(st.sampled_from(ALL_PATHS), st.sampled_from("rdak"), values, KEY_NAMES), max_size=6))
def test_fuzz_structured_mutations(edits: list[tuple[tuple, str, object, str]]) -> None:
    doc = copy.deepcopy(PLAIN)
    for path, op, value, key in edits:
        parent, target = None, doc
        try:
            for step in path:
                parent, target = target, target[step]
        except (KeyError, IndexError, TypeError):
            continue
        if op == "r" and parent is not None:
            parent[path[-1]] = value
        elif op == "d" and parent is not None:
            del parent[path[-1]]
        elif op in "ak" and isinstance(target, dict):
            target[key] = value
        elif op == "a" and isinstance(target, list):
            target.append(value)
    out = io.StringIO()
    try:
        YAML(typ="safe").dump(doc, out)
    except Exception:  # a mutation the dumper cannot write (e.g. unhashable keys) is not our input
        return
    check_never_crashes(out.getvalue())


@pytest.mark.parametrize(
    "text",
    [
        "a: &x [*x]\n",
        "&a [*a, *a]\n",
        "[" * 2000 + "]" * 2000,
        "{" * 500,
        "version: 1\nmesh: !!python/object:os.system {}\nnodes:\n",
        "version: !!binary AAAA\n",
        "? [a, b]\n: 1\n",
        "version: 1\n---\nversion: 1\n",
        "<<: {version: 1}\nmesh: {name: x, network: 10.0.0.0/24}\nnodes:\n",
        "version: 1\nmesh: &m {name: x, network: 10.0.0.0/24}\nnodes: {a: {<<: *m, address: 10.0.0.1}}\n",
        "2020-13-45: 1\n",
        "\x00",
        "\ufeffversion: 1\n",
        "version: 1\nmesh:\n  name: x\n  network: 10.0.0.0/24\nnodes:\n  a:\n    address: 10.0.0.1\n"
        "    ssh: {host: h}\n    subnets: [0.0.0.0/0, ::/0]\n",
    ],
)
def test_nasty_inputs(text: str) -> None:
    check_never_crashes(text)


