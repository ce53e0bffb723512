"""mesh.yaml loading and validation: a corpus of bad files, semantics of good ones, edits, fuzzing."""

from __future__ import annotations

import copy
import io
import ipaddress
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from wgmesh import config
from wgmesh.config import Diagnostic, MeshError, load, loads, parse_endpoint, validate_key
from wgmesh.core.model import Endpoint

ROOT = Path(__file__).resolve().parent.parent
BAD = Path(__file__).resolve().parent / "fixtures" / "bad"
EXAMPLE = ROOT / "mesh.example" / "mesh.yaml"
FAKE_SECRET = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="  # key-shaped test value, no one's key
KA = "76g31p64QmeSkdVYkRCDqqshYcBF71jU5GtKfq2gmWU="
KB = "fiVvTzvLW+guc0/puGdPheeZRsT4FHHsU1WwyvhO9Xk="

# file stem -> (line, field path, fragment of the message). Every case must fail with this error.
BAD_CASES: dict[str, tuple[int, str, str]] = {
    "syntax_error": (4, "", "YAML syntax error: mapping values are not allowed here"),
    "tab_indent": (3, "", "indent with spaces, not tabs"),
    "empty": (1, "", "the file is empty"),
    "comments_only": (1, "", "the file is empty"),
    "not_mapping": (1, "", "the top level must be a mapping"),
    "scalar_document": (1, "", "the top level must be a mapping"),
    "version_missing": (1, "version", "add `version: 1`"),
    "version_wrong": (1, "version", "unsupported version 2"),
    "version_string": (1, "version", "unsupported version '1'"),
    "duplicate_node": (14, "", 'duplicate key "a"'),
    "unknown_top_key": (5, "node", 'did you mean "nodes"?'),
    "unknown_node_key": (11, "nodes.b.adress", 'did you mean "address"?'),
    "unknown_mesh_key": (5, "mesh.keepalive", 'did you mean "persistent_keepalive"?'),
    "unknown_key_no_hint": (14, "nodes.b.colour", "expected one of address, public_key"),
    "mesh_missing": (1, "mesh", 'missing required section "mesh"'),
    "nodes_missing": (1, "nodes", 'missing required section "nodes"'),
    "mesh_name_missing": (2, "mesh.name", 'missing required field "name"'),
    "mesh_name_invalid": (3, "mesh.name", "letters, digits"),
    "network_missing": (2, "mesh.network", "add e.g. `network: 10.0.0.0/24`"),
    "network_not_cidr": (4, "mesh.network", "is not a CIDR network"),
    "network_host_bits": (4, "mesh.network", "has host bits set: write 10.0.0.0/24"),
    "network_no_prefix": (4, "mesh.network", "missing prefix length"),
    "networks_overlap": (4, "mesh.network[1]", "give disjoint networks"),
    "address_missing": (10, "nodes.b.address", 'missing required field "address"'),
    "address_not_ip": (11, "nodes.b.address", "is not an IP address"),
    "address_outside": (11, "nodes.b.address", "outside the mesh network 10.0.0.0/24"),
    "address_network_address": (11, "nodes.b.address", "network address of 10.0.0.0/24"),
    "address_broadcast": (11, "nodes.b.address", "broadcast address of 10.0.0.0/24"),
    "address_duplicate": (11, "nodes.b.address", "already the address of a"),
    "address_with_prefix": (11, "nodes.b.address", "without a prefix length"),
    "address_wrong_family": (11, "nodes.b.address", "no IPv6 network in mesh.network"),
    "address_list_item": (13, "nodes.b.address[1]", "is not an IP address"),
    "key_not_base64": (12, "nodes.b.public_key", 'not a WireGuard public key (44 base64 characters ending in "=")'),
    "key_noncanonical": (12, "nodes.b.public_key", "not a WireGuard public key"),
    "key_wrong_length": (12, "nodes.b.public_key", "not a WireGuard public key"),
    "key_duplicate": (12, "nodes.b.public_key", "the same key as a"),
    "node_name_invalid": (10, "nodes.-b", "invalid node name"),
    "node_name_too_long": (10, "nodes." + "b" * 64, "invalid node name: use 1-63"),
    "node_name_number": (10, "nodes", "must be text: quote it"),
    "node_not_mapping": (10, "nodes.b", "must be a mapping with at least `address:`"),
    "nodes_not_mapping": (5, "nodes", "must be a mapping of node name"),
    "interface_too_long": (4, "mesh.interface", "at most 15 characters"),
    "interface_bad_chars": (4, "mesh.interface", "invalid interface name"),
    "subnet_host_bits": (14, "nodes.b.subnets[0]", "has host bits set: write 192.168.20.0/24"),
    "subnet_overlaps_mesh": (14, "nodes.b.subnets[0]", "overlaps the mesh network 10.0.0.0/24"),
    "subnet_duplicate": (17, "nodes.b.subnets[1]", "already routed to a (nodes.a.subnets[0])"),
    "subnet_not_list": (14, "nodes.b.subnets", "must be a list: write `subnets: [192.168.20.0/24]`"),
    "subnet_probe_outside": (16, "nodes.b.subnets[0].probe", "is outside 192.168.20.0/24"),
    "subnet_unknown_key": (15, "nodes.b.subnets[0].prefx", 'did you mean "prefix"?'),
    "endpoint_no_port": (13, "nodes.b.endpoint", "missing port: write host:port, e.g. b.example.com:51820"),
    "endpoint_port_range": (13, "nodes.b.endpoint", "port must be from 1 to 65535"),
    "endpoint_v6_no_brackets": (13, "nodes.b.endpoint", "in brackets"),
    "endpoint_bad_host": (13, "nodes.b.endpoint", "must be a DNS name or an IP address"),
    "endpoint_bad_v6": (13, "nodes.b.endpoint", "must be an IPv6 address"),
    "listen_port_zero": (5, "mesh.listen_port", "out of range: use a number from 1 to 65535"),
    "listen_port_text": (14, "nodes.b.listen_port", "must be a whole number from 1 to 65535"),
    "keepalive_range": (5, "mesh.persistent_keepalive", "use a number from 0 to 65535"),
    "keepalive_bool": (5, "mesh.persistent_keepalive", "must be a whole number from 0 to 65535"),
    "mtu_too_small": (5, "mesh.mtu", "from 576 to 9000"),
    "mtu_v6_too_small": (5, "mesh.mtu", "from 1280 to 9000"),
    "private_key_node": (12, "nodes.b.private_key", "remove it from the repo"),
    "private_key_camel": (4, "mesh.PrivateKey", "rotate that key"),
    "preshared_key": (12, "nodes.b.PresharedKey", "preshared key in clear"),
    "private_key_nested": (14, "nodes.b.ssh.wg-private-key", "rotate that key"),
    "private_key_in_command": (12, "nodes.b.post_up", "rotate that key"),
    "ssh_host_missing": (10, "nodes.b.ssh.host", "no ssh host"),
    "ssh_port_range": (6, "ssh.port", "use a number from 1 to 65535"),
    "ssh_user_bad": (6, "ssh.user", "not a valid user name"),
    "ssh_host_dash": (14, "nodes.b.ssh.host", "not starting with '-'"),
    "ssh_host_mesh_level": (6, "ssh.host", "set nodes.NAME.ssh.host"),
    "ssh_unknown_key": (14, "nodes.b.ssh.hostname", 'did you mean "host"?'),
    "proxy_jump_space": (14, "nodes.b.ssh.proxy_jump", "without spaces"),
    "decommission_not_bool": (14, "nodes.b.decommission", "must be true or false"),
    "post_up_newline": (14, "nodes.b.post_up", "must be one line"),
    "post_down_not_string": (14, "nodes.b.post_down[0]", "must be a shell command as text"),
}

# Words that introduce the fix in a message; every error must carry one.
FIX_WORDS = (
    "add", "use", "write", "remove", "set", "pick", "give", "quote", "rotate", "did you mean", "paste",
    "split", "indent", "check", "keep", "start", "expected one of", "must be", "put", "generate",
)  # fmt: skip


def test_corpus_matches_table() -> None:
    assert {p.stem for p in BAD.glob("*.yaml")} == set(BAD_CASES)


@pytest.mark.parametrize("stem", sorted(BAD_CASES))
def test_bad_file(stem: str, monkeypatch: pytest.MonkeyPatch) -> None:
    line, path, fragment = BAD_CASES[stem]
    monkeypatch.chdir(BAD)
    with pytest.raises(MeshError) as info:
        load(f"{stem}.yaml")
    errors = info.value.errors
    assert errors, "a MeshError must carry at least one error"
    match = [d for d in errors if d.line == line and d.path == path and fragment in d.message]
    assert match, "\n".join(str(d) for d in errors)
    d = match[0]
    text = str(d)
    assert text.startswith(f"{stem}.yaml:{line}")
    if path:
        assert f": {path}: " in text
    assert any(w in d.message for w in FIX_WORDS), d.message
    assert FAKE_SECRET not in str(info.value)
    assert all(isinstance(x, Diagnostic) for x in info.value.diagnostics)


def test_diagnostic_format_matches_issue_example() -> None:
    d = Diagnostic("mesh.yaml", 14, 17, "nodes.azure.public_key", "not a WireGuard public key")
    assert str(d) == "mesh.yaml:14:17: nodes.azure.public_key: not a WireGuard public key"
    w = Diagnostic("m.yaml", 3, 1, "nodes.a", "careful", "warning")
    assert str(w) == "m.yaml:3:1: warning: nodes.a: careful"
    assert str(Diagnostic("m.yaml", 0, 0, "", "no such file")) == "m.yaml: no such file"


def base_text(**replace: str) -> str:
    text = (BAD / "version_wrong.yaml").read_text().replace("version: 2", "version: 1")
    for old, new in replace.items():
        assert old in text
        text = text.replace(old, new)
    return text


def test_base_is_valid() -> None:
    mesh, warnings = loads(base_text())
    assert mesh.node_names == ("a", "b")
    assert warnings == []


def test_all_errors_are_reported_not_only_the_first() -> None:
    text = base_text(
        **{
            "10.0.0.1": "10.0.9.1",
            KB: "bogus",
            "b.example.com:51820": "b.example.com:0",
            "name: demo": "name: demo\n  mtu: 10",
        }
    )
    with pytest.raises(MeshError) as info:
        loads(text)
    paths = [d.path for d in info.value.errors]
    assert paths == ["mesh.mtu", "nodes.a.address", "nodes.b.public_key", "nodes.b.endpoint"]
    lines = [d.line for d in info.value.errors]
    assert lines == sorted(lines)


def test_example_validates_without_warnings() -> None:
    mesh, warnings = load(EXAMPLE)
    assert warnings == []
    assert mesh.node_names == ("aws", "azure", "gcp", "aliyun")
    assert [str(n.subnets[0].prefix) for n in mesh.nodes] == [f"192.168.{i}0.0/24" for i in range(1, 5)]
    assert mesh.node("aliyun").endpoint is None
    assert all(n.enrolled for n in mesh.nodes)


def test_defaults_and_ssh_resolution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    text = base_text(
        **{
            "nodes:": "ssh:\n  user: deploy\n  identity_file: ~/.ssh/id_ed25519\nnodes:",
            "    endpoint: b.example.com:51820": "    ssh: {host: 203.0.113.2, port: 2222, known_hosts: ../kh}",
        }
    )
    mesh, warnings = loads(text, tmp_path / "repo" / "mesh.yaml")
    assert warnings == []
    a, b = mesh.nodes
    assert mesh.listen_port == 51820 and mesh.persistent_keepalive == 25 and mesh.mtu is None
    assert mesh.interface == "wg0"
    assert a.listen_port == 51820 and a.persistent_keepalive == 25
    assert a.ssh.host == "a.example.com" and a.ssh.port == 22 and a.ssh.user == "deploy"
    assert a.ssh.known_hosts == tmp_path / "repo" / "known_hosts"
    assert a.ssh.identity_file == tmp_path / "home" / ".ssh" / "id_ed25519"
    assert b.ssh.host == "203.0.113.2" and b.ssh.port == 2222 and b.ssh.user == "deploy"
    assert b.ssh.known_hosts == tmp_path / "repo" / ".." / "kh"
    assert b.endpoint is None
    assert mesh.path == tmp_path / "repo" / "mesh.yaml"
    assert mesh.node_lines == {"a": 9, "b": 13}


def test_node_overrides_dual_stack_subnets_and_hooks() -> None:
    text = f"""version: 1
mesh:
  name: ds
  network: [10.1.0.0/16, "fd00:1::/64"]
  listen_port: 51000
  persistent_keepalive: 15
  mtu: 1400
nodes:
  hub:
    address: [10.1.0.1, "fd00:1::1"]
    public_key: {KA}
    endpoint: "[2001:db8::1]:51001"
    listen_port: 51001
    mtu: 1380
    subnets:
      - 192.168.1.0/24
      - {{prefix: "2001:db8:1::/48", probe: "2001:db8:1::53"}}
    post_up: iptables -A FORWARD -i %i -j ACCEPT
    post_down: [iptables -D FORWARD -i %i -j ACCEPT, "true"]
  spoke:
    address: 10.1.0.2
    ssh: {{host: spoke.lan, proxy_jump: "admin@hub.example.com:22"}}
  old:
    address: 10.1.0.3
    public_key: {KB}
    endpoint: 198.51.100.3:51820
    decommission: true
"""
    mesh, warnings = loads(text)
    assert warnings == []
    hub, spoke, old = mesh.nodes
    assert mesh.networks == (ipaddress.ip_network("10.1.0.0/16"), ipaddress.ip_network("fd00:1::/64"))
    assert hub.addresses == (ipaddress.ip_address("10.1.0.1"), ipaddress.ip_address("fd00:1::1"))
    assert hub.endpoint == Endpoint("2001:db8::1", 51001)
    assert hub.listen_port == 51001 and hub.mtu == 1380 and hub.persistent_keepalive == 15
    assert spoke.listen_port == 51000 and spoke.mtu == 1400
    assert hub.subnets[1].probe == ipaddress.ip_address("2001:db8:1::53")
    assert [str(s.prefix) for s in hub.subnets] == ["192.168.1.0/24", "2001:db8:1::/48"]
    assert hub.post_up == ("iptables -A FORWARD -i %i -j ACCEPT",)
    assert hub.post_down == ("iptables -D FORWARD -i %i -j ACCEPT", "true")
    assert spoke.public_key is None and not spoke.enrolled
    assert spoke.ssh.proxy_jump == "admin@hub.example.com:22" and spoke.ssh.host == "spoke.lan"
    assert old.decommission and not old.enrolled
    assert [str(i) for i in mesh.interface_addresses(hub)] == ["10.1.0.1/16", "fd00:1::1/64"]


def test_zero_nodes_is_valid() -> None:
    mesh, warnings = loads("version: 1\nmesh: {name: x, network: 10.0.0.0/24}\nnodes:\n")
    assert mesh.nodes == () and warnings == []


def test_warning_for_pair_without_endpoints() -> None:
    text = base_text(
        **{
            "    endpoint: a.example.com:51820": "    ssh: {host: 203.0.113.1}",
            "    endpoint: b.example.com:51820": "    ssh: {host: 203.0.113.2}",
        }
    )
    _, warnings = loads(text)
    assert [(w.line, w.path, w.severity) for w in warnings] == [(10, "nodes.b", "warning")]
    assert "cannot connect" in warnings[0].message and "nor a" in warnings[0].message


def test_unenrolled_node_without_endpoint_gives_no_warning() -> None:
    text = base_text(**{f"    public_key: {KB}\n    endpoint: b.example.com:51820": "    ssh: {host: h}"})
    text = text.replace("    endpoint: a.example.com:51820", "    ssh: {host: g}")
    _, warnings = loads(text)
    assert warnings == []


def test_warning_for_overlapping_subnets() -> None:
    text = base_text(
        **{
            "a.example.com:51820\n": "a.example.com:51820\n    subnets: [192.168.0.0/16]\n",
            "b.example.com:51820\n": "b.example.com:51820\n    subnets: [192.168.7.0/24]\n",
        }
    )
    _, warnings = loads(text)
    assert len(warnings) == 1
    assert warnings[0].path == "nodes.b.subnets[0]" and warnings[0].line == 15
    assert "overlaps 192.168.0.0/16 of a" in warnings[0].message
    assert str(warnings[0]).startswith("mesh.yaml:15:15: warning: ")


def test_warnings_are_in_mesh_error_too() -> None:
    text = base_text(
        **{
            "a.example.com:51820\n": "a.example.com:51820\n    subnets: [192.168.0.0/16]\n",
            "b.example.com:51820\n": "b.example.com:51820\n    subnets: [192.168.7.0/24]\n    mtu: 1\n",
        }
    )
    with pytest.raises(MeshError) as info:
        loads(text)
    severities = sorted(d.severity for d in info.value.diagnostics)
    assert severities == ["error", "warning"]


def test_missing_file_directory_and_bad_encoding(tmp_path: Path) -> None:
    with pytest.raises(MeshError) as info:
        load(tmp_path / "nope.yaml")
    assert "wgmesh init" in str(info.value) and info.value.errors[0].line == 0
    with pytest.raises(MeshError) as info:
        load(tmp_path)
    assert "cannot read" in str(info.value)
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes(b"version: 1\nmesh:\n  name: caf\xe9\n")
    with pytest.raises(MeshError) as info:
        load(bad)
    assert info.value.errors[0].line == 3 and "UTF-8" in str(info.value)


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        (KA, True),
        (KB, True),
        (KA[:42] + "l=", False),  # non-canonical: padding bits set
        (KA[:43], False),
        (KA + "=", False),
        (" " + KA[1:], False),
        ("A" * 43 + "=", True),
        ("", False),
        ("é" * 44, False),
        ("YWJj" * 11, False),  # 33 bytes, no padding
    ],
)
def test_validate_key(text: str, ok: bool) -> None:
    assert validate_key(text) is ok


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("aws.example.com:51820", Endpoint("aws.example.com", 51820)),
        ("198.51.100.7:1", Endpoint("198.51.100.7", 1)),
        ("[2001:db8::1]:65535", Endpoint("2001:db8::1", 65535)),
        ("localhost:51820", Endpoint("localhost", 51820)),
    ],
)
def test_parse_endpoint_ok(text: str, expected: Endpoint) -> None:
    assert parse_endpoint(text) == expected
    assert str(parse_endpoint(text)) == text


@pytest.mark.parametrize(
    "text",
    ["aws", "aws:", "aws:0", "aws:65536", "2001:db8::1:51820", "[2001:db8::1]", "[10.0.0.1]:5", "a b:1",
     "-x.com:1", "999.1.1.1:5", "[fe80::1%eth0]:5", "host:+5", "host:٥"],
)  # fmt: skip
def test_parse_endpoint_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_endpoint(text)


# ---- round-trip edits


def test_round_trip_edits_keep_comments(tmp_path: Path) -> None:
    path = tmp_path / "mesh.yaml"
    path.write_text(EXAMPLE.read_text())
    doc = config.load_document(path)
    config.add_node(doc, "hetzner", {"address": "10.0.0.5", "endpoint": "hetzner.example.com:51820"})
    config.remove_node(doc, "gcp")
    config.set_public_key(doc, "hetzner", KA)
    config.set_public_key(doc, "azure", KB)
    config.write_document(path, doc)
    text = path.read_text()
    assert "# format version; this wgmesh reads version 1" in text
    assert "# the node's mesh address" in text
    assert "# behind NAT: no endpoint" in text
    mesh, _ = load(path)
    assert mesh.node_names == ("aws", "azure", "aliyun", "hetzner")
    assert mesh.node("hetzner").public_key == KA and mesh.node("azure").public_key == KB
    assert list(config.load_document(path)["nodes"]["hetzner"]) == ["address", "public_key", "endpoint"]
    assert [p.name for p in tmp_path.iterdir()] == ["mesh.yaml"]  # no temporary file left behind


def test_edit_errors(tmp_path: Path) -> None:
    doc = config.load_document(EXAMPLE)
    with pytest.raises(ValueError):
        config.add_node(doc, "aws", {"address": "10.0.0.9"})
    with pytest.raises(ValueError):
        config.add_node(doc, "bad name", {"address": "10.0.0.9"})
    with pytest.raises(KeyError):
        config.remove_node(doc, "nope")
    with pytest.raises(ValueError):
        config.set_public_key(doc, "aws", "not-a-key")
    with pytest.raises(KeyError):
        config.set_public_key(doc, "nope", KA)
    (tmp_path / "bad.yaml").write_text("a: [")
    with pytest.raises(MeshError):
        config.load_document(tmp_path / "bad.yaml")


def test_add_node_to_empty_nodes(tmp_path: Path) -> None:
    path = tmp_path / "mesh.yaml"
    path.write_text("version: 1\nmesh: {name: x, network: 10.0.0.0/24}  # the mesh\nnodes:\n# none yet\n")
    doc = config.load_document(path)
    config.add_node(doc, "a", {"address": "10.0.0.1", "ssh": {"host": "h"}, "subnets": ["192.168.1.0/24"]})
    config.write_document(path, doc)
    mesh, _ = load(path)
    assert mesh.node("a").ssh.host == "h" and str(mesh.node("a").subnets[0].prefix) == "192.168.1.0/24"
    assert "# the mesh" in path.read_text()


def test_write_document_keeps_mode(tmp_path: Path) -> None:
    path = tmp_path / "mesh.yaml"
    path.write_text(EXAMPLE.read_text())
    os.chmod(path, 0o640)
    config.write_document(path, config.load_document(path))
    assert path.stat().st_mode & 0o777 == 0o640
    assert path.read_text() == EXAMPLE.read_text()


# ---- fuzzing: any input gives a Mesh or a MeshError, never another exception


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


FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


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
KEY_NAMES = st.sampled_from([*config.NODE_KEYS, *config.MESH_KEYS, *config.NODE_SSH_KEYS, "prefix", "probe", "zz"])


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


@pytest.mark.parametrize(
    "key", ["AAAAAAAAAAPsKAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", "privateAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="]
)
def test_public_key_containing_secret_words_is_accepted(key: str) -> None:
    assert validate_key(key)
    mesh, _ = loads(base_text(**{KB: key}))
    assert mesh.node("b").public_key == key


def test_many_nodes_without_endpoint_give_bounded_warnings() -> None:
    nodes = "".join(
        f"  n{i}:\n    address: 10.0.0.{i + 1}\n    public_key: {_key(i + 1)}\n    ssh: {{host: h{i}}}\n"
        for i in range(30)
    )
    _, warnings = loads(f"version: 1\nmesh: {{name: x, network: 10.0.0.0/24}}\nnodes:\n{nodes}")
    assert len(warnings) == 10
    assert all("cannot connect" in w.message for w in warnings[:-1])
    assert "more nodes without an endpoint" in warnings[-1].message


def _key(i: int) -> str:
    import base64

    return base64.b64encode(i.to_bytes(32, "big")).decode()


def test_validate_command_on_the_corpus(monkeypatch: pytest.MonkeyPatch) -> None:
    """The issue's done-when: every bad file makes `wgmesh validate` exit 1 with FILE:LINE, no traceback."""
    from typer.testing import CliRunner

    from wgmesh.cli import app

    monkeypatch.chdir(BAD)
    runner = CliRunner()
    for stem, (line, _, _) in sorted(BAD_CASES.items()):
        result = runner.invoke(app, ["validate", "-f", f"{stem}.yaml"])
        assert result.exit_code == 1, (stem, result.output)
        assert f"{stem}.yaml:{line}" in result.output, (stem, result.output)
        assert "Traceback" not in result.output and not isinstance(result.exception, AssertionError)
