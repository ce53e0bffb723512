"""Big meshes (issue 16): the fast plain-YAML reader (meshfile/fastyaml.py) and the limits that scale with a mesh.

The fast reader must be indistinguishable from ruamel's round trip wherever it reads a document: the same
values of the same types, the same line and column for every key, value and item (validation's
`mesh.yaml:LINE:COL` comes from them). Where it declines, the round trip reads the document as before.
"""

from __future__ import annotations

import base64
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wgmesh.meshfile import MeshError, fastscalars, fastyaml, loads, roundtrip, yamldoc
from wgmesh.meshfile.diagnostics import Report

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "mesh.example" / "mesh.yaml"


def tree(o: Any) -> Any:
    """Everything validation can see of a parsed document: values, their types, positions, styles."""
    if isinstance(o, dict):
        return ("map", o.lc.line, o.lc.col, o.lc.data if o.lc.data is None else dict(o.lc.data), o.fa.flow_style(),
                [(k, type(k).__name__, tree(v)) for k, v in o.items()])
    if isinstance(o, list):
        return ("seq", o.lc.line, o.lc.col, o.lc.data if o.lc.data is None else dict(o.lc.data), o.fa.flow_style(),
                [tree(v) for v in o])
    return (type(o).__name__, o, getattr(o, "_width", None))


def same_as_round_trip(text: str) -> bool:
    """True when the fast reader read `text` (and read it as the round trip does); False when it declined."""
    try:
        fast, _, _ = fastyaml.read(text, 10**6)
    except fastyaml.Declined:
        return False
    assert tree(fast) == tree(roundtrip.make_yaml().load(text)), text
    return True


@pytest.mark.parametrize("text", [
    "a: 1\nb:\n", "a: 1\nb:", "a:\n\n\n", "x:\n  a:\nb: 1\n", "x: {a: , b: 1}\n", "x: [a,b ,c]\n", "x: {h: a:1}\n",
    "x: [a:1]\n", "  a: 1\n  b: 2\n", "l:\n  - a\n  -   b\n", "x: [ ]\n", "x: {}\n", 'k: ""\n', "k: a#b\n",
    "k: a #b\n", "k: it is\n", "k: 0\n", "k: 010\n", "k: +5\n", "k: 51820\n", "l:\n- a\n- b\nm: 1\n",
    "l:\n- k: v\n  m: n\n-\n  z: 1\nq: x\n", "x: 'a'  # c\n", "s: 'it''s'\n", "t: true\nf: False\nn: null\nm: ~\n",
    "k: [10.0.0.1, fd00::1, 'q', \"d\"]\n", "k: é\n", "a:\n  b: 1\n  # c\n  c: 2\n",
])
def test_the_fast_reader_reads_as_the_round_trip(text: str) -> None:
    assert same_as_round_trip(text)


def test_the_written_out_resolvers_are_ruamels() -> None:
    """fastscalars writes ruamel's YAML 1.2 implicit resolvers out (ruamel is not imported to read plain YAML): a
    ruamel that resolves plain scalars otherwise must show here, not as a value read differently."""
    from ruamel.yaml.resolver import VersionedResolver

    theirs = {first: [(str(tag), rx.pattern, rx.flags) for tag, rx in resolvers]
              for first, resolvers in VersionedResolver().versioned_resolver.items()}
    ours = {first: [(tag, rx.pattern, rx.flags) for tag, rx in resolvers]
            for first, resolvers in fastscalars._table().items()}
    assert ours == theirs


SCALARS = ["", "~", "null", "Null", "nulls", "true", "TRUE", "tRue", "1.5", "1.", ".5", "1.2.3", "10.0.0.1", "0x1f",
           "0o17", "0b101", "1_000", "010", "+5", "-3", "1e3", "1e", ".inf", ".NaN", "2001-12-14", "2001-12-14x",
           "2001-12-14 21:59:43.10 -5", "<<", "<", "=", "!", "&", "*", "node-1", "fd00::1", "172.16.0.0/24"]


@pytest.mark.parametrize("value", SCALARS)
def test_one_match_per_first_character_resolves_as_trying_each_in_turn(value: str) -> None:
    table = fastscalars._table()
    expected = next((tag for tag, rx in table.get(value[:1], []) if rx.match(value)), "tag:yaml.org,2002:str")
    assert fastscalars._implicit(value) == expected


@pytest.mark.parametrize("text", [
    "a: &x 1\n", "a: *x\n", "<<: {a: 1}\n", "a: !!str 1\n", "a: |\n  x\n", "a: >\n  x\n", "a: b\n  c\n", "a:\tb\n",
    "a: 1\r\n", '"a": 1\n', "a: 1\na: 2\n", "a: 1.5\n", "a: 2001-12-14\n", "a: 1_000\n", "a: 0x1f\n", "a: [[1]]\n",
    "a: [a\n  , b]\n", 'a: "x\\ny"\n', "---\na: 1\n", "- a\n", "a: b: c\n", "true: 1\n", "a: =\n", "a:  # c\nb: 1\n",
    "", "# only a comment\n", "a: 'x\n  y'\n", "? a\n: b\n", "a: {b: [1]}\n", "a: -\n", "a:\n# c\n", "x: {k:}\n",
    "k: -5\n", "x: [a, b,]\n", "a: echo hi\x85rm x\n", "a: 'x\x85y'\n",  # NEL: a line break to the round trip
])
def test_anything_else_goes_to_the_round_trip(text: str) -> None:
    assert not same_as_round_trip(text)


def test_mesh_example_is_read_fast_and_alike() -> None:
    assert same_as_round_trip(EXAMPLE.read_text())


# The documents mesh.yaml is made of, and the near misses around them.
KEYS = st.sampled_from(["a", "b", "node-1", "x.y", "k_2", "version", "Yes", "on", "c", "true", "1", "<<", "'q'", "a b"])
SCALARS = st.sampled_from([
    "x", "1", "0", "010", "-5", "+5", "-0", "10.0.0.1", "fd00::1", "a:1", "it's", "'q'", "'it''s'", '"dq"', "true",
    "False", "null", "~", "", "a #c", "a#b", "a,b", "x[1]", "[1, 2]", "[]", "{}", "[a, 'b', \"c\"]", "{h: 1, k: }",
    "{h: a:1}", "[a:1]", "[ a , b ]", "{ a: 1 ,b: 2 }", "{a: 'x'}", "x # y", "'a' #c", "é", "{k:}", "{k: ,j: 2}",
    "1.5", "&a x", "*a", "!t x", "|", "a: b", "[a, ]", "[a,,b]", "{a, b}", "[[1]]", "'open", "x\ty", "- a", "-",
])


@st.composite
def documents(draw: st.DrawFn) -> str:
    lines: list[str] = []

    def block(indent: int, depth: int) -> None:
        seq = draw(st.booleans()) and depth > 0 and draw(st.booleans())
        for _ in range(draw(st.integers(1, 3))):
            pad = " " * indent
            if draw(st.integers(0, 9)) == 0:
                lines.append(pad + draw(st.sampled_from(["# c", "", "   "])))
            nested = depth < 3 and draw(st.integers(0, 3)) == 0
            head = f"{pad}- " if seq else ""
            if seq and not nested:
                lines.append(head + draw(SCALARS))
                continue
            key = draw(KEYS)
            if not nested:
                lines.append(f"{head or pad}{key}:{draw(st.sampled_from([' ', '  ', '']))}{draw(SCALARS)}")
                continue
            lines.append(f"{head or pad}{key}:" + draw(st.sampled_from(["", "  # t"])))
            block(indent + (2 if seq else 0) + draw(st.sampled_from([2, 2, 4, 0, 1])), depth + 1)

    block(0, 0)
    return "\n".join(lines) + draw(st.sampled_from(["\n", "", "\n\n", "\n# end\n"]))


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents())
def test_generated_documents_are_read_alike_or_declined(text: str) -> None:
    same_as_round_trip(text)


EXAMPLE_LINES = EXAMPLE.read_text().splitlines(keepends=True)


def _round_trip_only(monkeypatch: pytest.MonkeyPatch) -> None:
    def declined(text: str, max_values: int) -> Any:
        raise fastyaml.Declined(0, "the round trip, for comparison")

    monkeypatch.setattr(fastyaml, "read", declined)


def _outcome(text: str) -> Any:
    try:
        mesh, warnings = loads(text)
    except MeshError as e:
        return [str(d) for d in e.diagnostics]
    return mesh, [str(w) for w in warnings]


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.integers(0, len(EXAMPLE_LINES) - 1), st.sampled_from("dsx"), st.text(max_size=6))))
def test_validation_says_the_same_through_either_reader(
    monkeypatch: pytest.MonkeyPatch, edits: list[tuple[int, str, str]]
) -> None:
    """mesh.example with lines deleted, doubled or typed into: the same Mesh, or the same diagnostics."""
    lines = list(EXAMPLE_LINES)
    for i, op, text in edits:
        if not lines:
            break
        i %= len(lines)
        if op == "d":
            del lines[i]
        elif op == "s":
            lines.insert(i, lines[i])
        else:
            col = len(text) % (len(lines[i]) + 1)
            lines[i] = lines[i][:col] + text + lines[i][col:]
    text = "".join(lines)
    fast = _outcome(text)
    with monkeypatch.context() as m:
        _round_trip_only(m)
        slow = _outcome(text)
    assert fast == slow, text


# ---- the limits scale with the mesh


def big_mesh(n: int, extra: str = "") -> str:
    out = ["version: 1", "mesh:", "  name: big", "  network: 10.0.0.0/16", "nodes:"]
    for i in range(n):
        key = base64.b64encode((i + 1).to_bytes(32, "big")).decode()
        out += [f"  node-{i}:", f"    address: 10.0.{(i + 1) // 256}.{(i + 1) % 256}", f"    public_key: {key}",
                f"    endpoint: node-{i}.example.com:51820", f"    subnets: [172.{16 + i // 256}.{i % 256}.0/24]"]
    return "\n".join(out) + "\n" + extra


def test_a_mesh_over_1_mb_in_plain_yaml_validates(tmp_path: Path) -> None:
    text = big_mesh(6_500)
    assert len(text) > yamldoc.MAX_BYTES
    f = tmp_path / "mesh.yaml"
    f.write_text(text)
    started = time.monotonic()
    from wgmesh.meshfile import load

    mesh, _ = load(f)
    assert len(mesh.nodes) == 6_500 and time.monotonic() - started < 10
    # ... while an edit, which takes the round trip, keeps the 1 MB limit
    report = Report("mesh.yaml")
    assert roundtrip.parse(text, report) is None and yamldoc.TOO_BIG in str(report.diags[0])


def test_a_big_mesh_that_leaves_plain_yaml_is_refused_with_the_line() -> None:
    text = big_mesh(6_500).replace("  node-3000:\n", "  node-3000: &n\n", 1)
    started = time.monotonic()
    with pytest.raises(MeshError) as info:
        loads(text)
    assert time.monotonic() - started < 5
    got = [str(d) for d in info.value.diagnostics]
    assert any("larger than 1 MB" in g for g in got), got
    line = text[: text.index("&n")].count("\n") + 1
    assert any(g.startswith(f"mesh.yaml:{line}:") and "must keep to plain YAML" in g for g in got), got


def test_values_beyond_what_the_nodes_may_take_are_refused_where_they_start() -> None:
    n = 1_100  # limit: 40 values a node, 44,000
    extra = "extra: [" + ",".join(["1"] * 44_000) + "]\n"
    with pytest.raises(MeshError) as info:
        loads(big_mesh(n, extra))
    (d,) = info.value.diagnostics
    assert "more than 44000 values" in d.message
    assert d.line == 5 + 5 * n + 1  # the extra line


def test_a_plain_file_with_few_nodes_keeps_the_base_limits() -> None:
    with pytest.raises(MeshError, match="more than 40000 values"):
        loads("x: [" + ",".join(["1"] * 40_000) + "]\n")
    with pytest.raises(MeshError, match=f"mesh.yaml:{yamldoc.MAX_LINES + 1}: the file has more than"):
        loads("version: 1\n" + "#\n" * yamldoc.MAX_LINES)
