"""Comment-keeping edits of mesh.yaml: by lines (comments, order and layout kept), and by a ruamel round trip."""

from __future__ import annotations

import difflib
import ipaddress
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from meshes import LAB_STYLE, pubkey

from wgmesh.core.model import Mesh
from wgmesh.meshfile import (
    EditError,
    MeshError,
    add_node,
    add_node_text,
    load,
    load_document,
    loads,
    parse,
    plain,
    remove_node,
    remove_node_text,
    set_public_key,
    set_public_keys_text,
    write_document,
)

EXAMPLE = Path(__file__).resolve().parent.parent.parent / "mesh.example" / "mesh.yaml"
KA = "76g31p64QmeSkdVYkRCDqqshYcBF71jU5GtKfq2gmWU="
KB = "fiVvTzvLW+guc0/puGdPheeZRsT4FHHsU1WwyvhO9Xk="


FOUR_SPACES = """\
version: 1
mesh:
    name: wide
    network: [10.1.0.0/24, 'fd10::/64']
nodes:
    a:
        address: [10.1.0.1, 'fd10::1']
        endpoint: a.example.com:51820
    b:
        address: [10.1.0.2, 'fd10::2']
        endpoint: b.example.com:51820
"""

FLOW_NODES = """\
version: 1
mesh: {name: flow, network: 10.2.0.0/24}
nodes: {a: {address: 10.2.0.1, endpoint: a.example.com:51820}, b: {address: 10.2.0.2, endpoint: 'b.example.com:1'}}
"""

EMPTY_NODES = """\
version: 1
mesh:
  name: empty
  network: 10.3.0.0/24
# no nodes yet
nodes:
"""

TEXTS = {"lab": LAB_STYLE, "four_spaces": FOUR_SPACES, "flow": FLOW_NODES, "empty": EMPTY_NODES}


def _diff(before: str, after: str) -> tuple[list[str], list[str]]:
    """(removed lines, added lines) between two texts."""
    removed, added = [], []
    for line in difflib.ndiff(before.splitlines(), after.splitlines()):
        if line.startswith("- "):
            removed.append(line[2:])
        elif line.startswith("+ "):
            added.append(line[2:])
    return removed, added


def _load(text: str) -> Mesh:
    mesh, _ = loads(text, Path("/tmp/mesh.yaml"))
    return mesh


@pytest.mark.parametrize("name", list(TEXTS))
def test_the_fixtures_are_valid(name: str) -> None:
    _load(TEXTS[name])


# ------------------------------------------------------------------------------------------ remove


def test_remove_takes_the_node_and_its_own_comment_only() -> None:
    after = remove_node_text(LAB_STYLE, "aws")
    removed, added = _diff(LAB_STYLE, after)
    assert added == []
    assert removed == [
        "  # Frankfurt",
        "  aws:",
        "    address: 10.0.0.1",
        "    endpoint: 192.0.2.1:51820  # public IP",
        "    subnets: [192.168.10.0/24]",
        "    ssh: {host: 192.0.2.1}",
    ]
    assert _load(after).node_names == ("aliyun", "gcp")


def test_remove_keeps_the_next_nodes_comment_and_a_comment_inside_a_kept_node() -> None:
    after = remove_node_text(LAB_STYLE, "aliyun")
    removed, _ = _diff(LAB_STYLE, after)
    assert removed == [
        "  # Tokyo, behind NAT",
        "  aliyun:",
        "    address: 10.0.0.4",
        "    # no endpoint: behind NAT",
        "    ssh: {host: 192.0.2.4}",
    ]
    assert "  # Paris" in after.splitlines()


def test_remove_the_last_node_keeps_the_end_comment() -> None:
    after = remove_node_text(LAB_STYLE, "gcp")
    assert after.endswith("    ssh: {host: 192.0.2.4}\n\n# end of file\n")
    assert "# Paris" not in after
    assert _load(after).node_names == ("aws", "aliyun")


def test_remove_every_node_leaves_an_empty_valid_nodes_section() -> None:
    text = LAB_STYLE
    for name in ("aws", "aliyun", "gcp"):
        text = remove_node_text(text, name)
    assert _load(text).nodes == ()
    assert "# end of file" in text and "# the mesh" in text


def test_remove_in_flow_style_falls_back_to_the_round_trip() -> None:
    after = remove_node_text(FLOW_NODES, "a")
    assert _load(after).node_names == ("b",)


def test_remove_unknown_node() -> None:
    with pytest.raises(EditError, match="no node named 'zz'"):
        remove_node_text(LAB_STYLE, "zz")


# ------------------------------------------------------------------------------------------ add


def test_add_inserts_only_the_new_block_after_the_last_node() -> None:
    fields = {"address": "10.0.0.5", "endpoint": "[2001:db8::5]:51820", "subnets": ["192.168.50.0/24"],
              "ssh": {"host": "192.0.2.5", "port": 2222}}
    after = add_node_text(LAB_STYLE, "azure", fields)
    removed, added = _diff(LAB_STYLE, after)
    assert removed == []
    assert added == [
        "  azure:",
        "    address: 10.0.0.5",
        "    endpoint: '[2001:db8::5]:51820'",
        "    subnets: [192.168.50.0/24]",
        "    ssh: {host: 192.0.2.5, port: 2222}",
    ]
    assert after.index("  azure:") < after.index("# end of file")
    mesh = _load(after)
    assert mesh.node_names == ("aws", "aliyun", "gcp", "azure")
    assert str(mesh.node("azure").endpoint) == "[2001:db8::5]:51820"


def test_add_follows_the_files_indentation() -> None:
    after = add_node_text(FOUR_SPACES, "c", {"address": ["10.1.0.3", "fd10::3"], "endpoint": "c.example.com:1"})
    removed, added = _diff(FOUR_SPACES, after)
    assert removed == []
    assert added == ["    c:", "        address: [10.1.0.3, fd10::3]", "        endpoint: c.example.com:1"]
    assert _load(after).node("c").addresses == (ipaddress.ip_address("10.1.0.3"), ipaddress.ip_address("fd10::3"))


def test_add_to_an_empty_nodes_section() -> None:
    after = add_node_text(EMPTY_NODES, "first", {"address": "10.3.0.1", "ssh": {"host": "h1"}})
    assert after == EMPTY_NODES + "  first:\n    address: 10.3.0.1\n    ssh: {host: h1}\n"
    assert _load(after).node_names == ("first",)


def test_add_in_flow_style_falls_back_to_the_round_trip() -> None:
    after = add_node_text(FLOW_NODES, "c", {"address": "10.2.0.3", "endpoint": "c.example.com:2"})
    assert _load(after).node_names == ("a", "b", "c")


def test_add_an_existing_name() -> None:
    with pytest.raises(EditError, match="already exists"):
        add_node_text(LAB_STYLE, "aws", {"address": "10.0.0.9"})


@settings(deadline=None)
@given(
    text=st.sampled_from(sorted(TEXTS)),
    name=st.from_regex(r"[a-z][a-z0-9-]{0,10}", fullmatch=True),
    with_endpoint=st.booleans(),
    subnets=st.lists(st.integers(1, 250), max_size=3, unique=True),
)
def test_add_then_remove_gives_back_the_same_text(
    text: str, name: str, with_endpoint: bool, subnets: list[int]
) -> None:
    original = TEXTS[text]
    if name in _load(original).node_names:
        return
    fields: dict[str, object] = {"address": "10.9.9.9"}
    if with_endpoint:
        fields["endpoint"] = f"{name}.example.com:51820"
    if subnets:
        fields["subnets"] = [f"172.16.{s}.0/24" for s in subnets]
    fields["ssh"] = {"host": f"{name}.example.net"}
    added = add_node_text(original, name, fields)
    back = remove_node_text(added, name)
    if text == "flow":  # the round-trip fallback re-flows a flow-style file; the data must still match
        assert plain(parse(back)) == plain(parse(original))
    else:
        assert back == original


# ------------------------------------------------------------------------------------------ public keys


def test_set_public_key_inserts_after_address_and_replaces_in_place() -> None:
    k1, k2 = pubkey(1), pubkey(2)
    once = set_public_keys_text(LAB_STYLE, {"aws": k1, "aliyun": k2})
    removed, added = _diff(LAB_STYLE, once)
    assert removed == []
    assert added == [f"    public_key: {k1}", f"    public_key: {k2}"]
    lines = once.splitlines()
    assert lines[lines.index("    address: 10.0.0.1") + 1] == f"    public_key: {k1}"
    assert lines[lines.index("    address: 10.0.0.4") + 1] == f"    public_key: {k2}"
    twice = set_public_keys_text(once, {"aws": k2.replace(k2, pubkey(3))})
    removed, added = _diff(once, twice)
    assert removed == [f"    public_key: {k1}"] and added == [f"    public_key: {pubkey(3)}"]


def test_set_public_key_after_a_block_list_address() -> None:
    after = set_public_keys_text(LAB_STYLE, {"gcp": pubkey(7)})
    lines = after.splitlines()
    assert lines[lines.index("      - 10.0.0.3") + 1] == f"    public_key: {pubkey(7)}"
    assert _load(after).node("gcp").public_key == pubkey(7)


def test_set_public_key_when_address_is_the_last_field() -> None:
    text = "version: 1\nmesh: {name: m, network: 10.0.0.0/24}\nnodes:\n  a:\n    endpoint: a.example:1\n" \
           "    address: 10.0.0.1\n  # b next\n  b:\n    address: 10.0.0.2\n    endpoint: b.example:1\n"
    after = set_public_keys_text(text, {"a": pubkey(1)})
    assert after.splitlines()[6] == f"    public_key: {pubkey(1)}"
    assert after.splitlines()[7] == "  # b next"


def test_set_public_key_keeps_quotes() -> None:
    text = LAB_STYLE.replace("    address: 10.0.0.1\n", f'    address: 10.0.0.1\n    public_key: "{pubkey(1)}"\n')
    after = set_public_keys_text(text, {"aws": pubkey(2)})
    assert f'    public_key: "{pubkey(2)}"' in after.splitlines()


def test_set_public_key_in_flow_style() -> None:
    after = set_public_keys_text(FLOW_NODES, {"b": pubkey(9)})
    assert _load(after).node("b").public_key == pubkey(9)


def test_windows_line_endings_are_kept() -> None:
    crlf = LAB_STYLE.replace("\n", "\r\n")
    for after in (
        add_node_text(crlf, "azure", {"address": "10.0.0.2", "ssh": {"host": "h"}}),
        remove_node_text(crlf, "aws"),
        set_public_keys_text(crlf, {"aws": pubkey(1), "aliyun": pubkey(2)}),
    ):
        assert "\n" not in after.replace("\r\n", "")
        _load(after)
    assert add_node_text(crlf, "azure", {"address": "10.0.0.2"}).startswith(crlf.split("# end of file")[0])


def test_line_endings_and_byte_order_mark_survive_the_round_trip_fallback() -> None:
    """A flow-style node makes the key edit fall back to ruamel's round trip, which writes LF and drops the mark:
    the result gets the file's CRLF and its mark back (not a file with both endings, every line changed)."""
    text = "\ufeff" + FLOW_NODES.replace("\n", "\r\n").replace("nodes:", "# the mesh\r\nnodes:", 1)
    after = set_public_keys_text(text, {"b": pubkey(9)})
    assert after.startswith("\ufeff") and "\n" not in after.replace("\r\n", "") and "\r\r" not in after
    assert "# the mesh\r\n" in after
    assert _load(after.removeprefix("\ufeff")).node("b").public_key == pubkey(9)
    assert set_public_keys_text(FLOW_NODES, {"b": pubkey(9)}).count("\r") == 0


# ------------------------------------------------------------------------------------------ round trip


def test_round_trip_edits_keep_comments(tmp_path: Path) -> None:
    path = tmp_path / "mesh.yaml"
    path.write_text(EXAMPLE.read_text())
    doc = load_document(path)
    add_node(doc, "hetzner", {"address": "10.0.0.5", "endpoint": "hetzner.example.com:51820"})
    remove_node(doc, "gcp")
    set_public_key(doc, "hetzner", KA)
    set_public_key(doc, "azure", KB)
    write_document(path, doc)
    text = path.read_text()
    assert "# format version; this wgmesh reads version 1" in text
    assert "# the node's mesh address" in text
    assert "# behind NAT: no endpoint" in text
    mesh, _ = load(path)
    assert mesh.node_names == ("aws", "azure", "aliyun", "hetzner")
    assert mesh.node("hetzner").public_key == KA and mesh.node("azure").public_key == KB
    assert list(load_document(path)["nodes"]["hetzner"]) == ["address", "public_key", "endpoint"]
    assert [p.name for p in tmp_path.iterdir()] == ["mesh.yaml"]  # no temporary file left behind


def test_edit_errors(tmp_path: Path) -> None:
    doc = load_document(EXAMPLE)
    with pytest.raises(ValueError):
        add_node(doc, "aws", {"address": "10.0.0.9"})
    with pytest.raises(ValueError):
        add_node(doc, "bad name", {"address": "10.0.0.9"})
    with pytest.raises(KeyError):
        remove_node(doc, "nope")
    with pytest.raises(ValueError):
        set_public_key(doc, "aws", "not-a-key")
    with pytest.raises(KeyError):
        set_public_key(doc, "nope", KA)
    (tmp_path / "bad.yaml").write_text("a: [")
    with pytest.raises(MeshError):
        load_document(tmp_path / "bad.yaml")


def test_add_node_to_empty_nodes(tmp_path: Path) -> None:
    path = tmp_path / "mesh.yaml"
    path.write_text("version: 1\nmesh: {name: x, network: 10.0.0.0/24}  # the mesh\nnodes:\n# none yet\n")
    doc = load_document(path)
    add_node(doc, "a", {"address": "10.0.0.1", "ssh": {"host": "h"}, "subnets": ["192.168.1.0/24"]})
    write_document(path, doc)
    mesh, _ = load(path)
    assert mesh.node("a").ssh.host == "h" and str(mesh.node("a").subnets[0].prefix) == "192.168.1.0/24"
    assert "# the mesh" in path.read_text()


def test_write_document_keeps_mode(tmp_path: Path) -> None:
    path = tmp_path / "mesh.yaml"
    path.write_text(EXAMPLE.read_text())
    os.chmod(path, 0o640)
    write_document(path, load_document(path))
    assert path.stat().st_mode & 0o777 == 0o640
    assert path.read_text() == EXAMPLE.read_text()


