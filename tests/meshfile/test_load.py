"""mesh.yaml loading and validation: a corpus of bad files, and the semantics of good ones."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
from meshes import pubkey

from wgmesh.core.model import Endpoint, SshTarget, validate_key
from wgmesh.meshfile import Diagnostic, MeshError, load, loads

TESTS = Path(__file__).resolve().parent.parent
ROOT = TESTS.parent
BAD = TESTS / "fixtures" / "bad"
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
    "key_noncanonical": (12, "nodes.b.public_key", "its last character before the '=' has bits a key cannot have"),
    "key_wrong_length": (12, "nodes.b.public_key", "not a WireGuard public key"),
    "key_duplicate": (12, "nodes.b.public_key", "the same key as a"),
    "node_name_invalid": (10, "nodes.-b", "invalid node name"),
    "node_name_too_long": (10, "nodes." + "b" * 64, "invalid node name: use 1-63"),
    "node_name_number": (10, "nodes", "must be text: quote it"),
    "node_not_mapping": (10, "nodes.b", "must be a mapping with at least `address:`"),
    "nodes_not_mapping": (5, "nodes", "must be a mapping of node name"),
    "interface_too_long": (4, "mesh.interface", "at most 15 characters"),
    "interface_bad_chars": (4, "mesh.interface", "invalid interface name"),
    "interface_wildcard": (4, "mesh.interface", "'wg+' ends with '+', which firewall rules read as every interface "
                           "starting with 'wg'"),
    # review P3: `wg show all` read every interface of the node, the others' private and preshared keys among them
    "interface_wg_word": (4, "mesh.interface", "'all' cannot name an interface (`wg show all` shows every interface): "
                          "use another name, e.g. wg0"),
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
    # every ssh value parsed here, with its position (issue 14 F8)
    "proxy_jump_port_text": (14, "nodes.b.ssh.proxy_jump", "the SSH port after ':' must be a number from 1 to 65535"),
    "proxy_jump_port_zero": (14, "nodes.b.ssh.proxy_jump", "the SSH port must be from 1 to 65535"),
    "proxy_jump_port_range": (14, "nodes.b.ssh.proxy_jump", "the SSH port must be from 1 to 65535"),
    "proxy_jump_empty_user": (14, "nodes.b.ssh.proxy_jump", "empty user before '@'"),
    "proxy_jump_empty_host": (14, "nodes.b.ssh.proxy_jump", "empty host"),
    "proxy_jump_bad_host": (14, "nodes.b.ssh.proxy_jump", "empty label between dots"),
    "ssh_host_empty_label": (14, "nodes.b.ssh.host", "empty label between dots"),
    "ssh_host_bad_ip": (14, "nodes.b.ssh.host", "not a valid IPv4 address"),
    "sudo_not_bool": (14, "nodes.b.ssh.sudo", "must be true or false"),
    "ssh_sudo_mesh_level": (7, "ssh.sudo", "must be true or false"),
    # paths a pull request may not choose (F1)
    "known_hosts_absolute": (14, "nodes.b.ssh.known_hosts", "must be inside the mesh repo"),
    "known_hosts_parent": (14, "nodes.b.ssh.known_hosts", "'..' may not leave it"),
    "known_hosts_home": (14, "nodes.b.ssh.known_hosts", "not an absolute or ~ path"),
    "identity_file_proc": (14, "nodes.b.ssh.identity_file", "must not be a file under /proc, /sys or /dev"),
    "identity_file_dev": (14, "nodes.b.ssh.identity_file", "must not be a file under /proc, /sys or /dev"),
    # YAML features refused before anything expands (F7)
    "alias": (10, "", "anchors and aliases are not supported: write the value out"),
    "merge_key": (13, "", "merge keys (<<) are not supported"),
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


def test_an_empty_required_value_is_named_on_its_own_line() -> None:
    """`address:` with nothing after it: the error is on that line (an empty value has no place of its own; the
    next token, on the next line, is not where the fix goes)."""
    with pytest.raises(MeshError) as info:
        loads(base_text(**{"name: demo": "name:", "    address: 10.0.0.2": "    address:"}))
    assert [(d.line, d.col, d.path) for d in info.value.errors] == [(3, 3, "mesh.name"), (11, 5, "nodes.b.address")]


@pytest.mark.parametrize(
    ("command", "message"),
    [
        ("iptables -A INPUT -m comment --comment '#22' -j ACCEPT", "it would run \"iptables -A INPUT -m comment "
         "--comment '\"; put the command in a script on the node"),
        ("echo a # b", "it would run 'echo a'"),
        ('"echo a\\x00b"', "a control character"),
        ('"echo \\e[2J"', "a control character"),
    ],
)
def test_a_hook_wg_quick_would_cut_or_that_holds_a_control_character_is_refused(command: str, message: str) -> None:
    """wg-quick cuts every config line at its first `#` (`${line%%\\#*}`), in quotes or not: the command would run
    cut short, silently, and an unclosed quote fails PostUp, which takes the interface down."""
    value = command if command.startswith('"') else f"'{command}'" if "'" not in command else f'"{command}"'
    with pytest.raises(MeshError) as info:
        loads(base_text(**{"    endpoint: b.example.com:51820": f"    endpoint: b.example.com:51820\n    post_up: "
                                                                    f"{value}"}))
    (error,) = info.value.errors
    assert error.path == "nodes.b.post_up" and message in error.message, error.message
    mesh, _ = loads(base_text(**{"    endpoint: b.example.com:51820":
                                 "    endpoint: b.example.com:51820\n    post_up: \"echo\\ta\""}))
    assert mesh.node("b").post_up == ("echo\ta",)  # a tab is a blank to the shell


@pytest.mark.parametrize(
    ("old", "new", "line", "message"),
    [
        ("name: demo", "name: 2001-13-45", 3, "(month must be in 1..12): quote values that look like dates"),
        ("name: demo", "name: demo\n  mtu: !!int abc", 4, "(invalid literal for int() with base 10: 'abc')"),
    ],
)
def test_a_value_yaml_cannot_construct_is_named_near_its_line(old: str, new: str, line: int, message: str) -> None:
    with pytest.raises(MeshError) as info:
        loads(base_text(**{old: new}))
    (error,) = info.value.errors
    assert error.line == line and "a value on this line or further down could not be read" in error.message
    assert message in error.message


def test_a_number_past_what_python_reads_is_the_fields_error() -> None:
    with pytest.raises(MeshError) as info:
        loads(base_text(**{"name: demo": "name: demo\n  mtu: " + "9" * 5000}))
    (error,) = info.value.errors
    assert (error.line, error.path) == (4, "mesh.mtu") and "whole number from 576 to 9000" in error.message


def test_a_mesh_name_yaml_reads_as_no_text_says_to_quote_it() -> None:
    for value in ("123", "true", "2001-12-14"):
        with pytest.raises(MeshError) as info:
            loads(base_text(**{"name: demo": f"name: {value}"}))
        (error,) = info.value.errors
        assert (error.line, error.path) == (3, "mesh.name") and error.message.startswith("must be text (got "), error
        assert error.message.endswith("): quote it")


def test_node_names_that_differ_only_in_case_are_a_warning() -> None:
    """`render --all` writes a.conf and A.conf: one file on a case-insensitive file system (macOS)."""
    text = base_text(**{"  b:\n": "  A:\n"})
    mesh, warnings = loads(text)
    assert mesh.node_names == ("a", "A")
    assert [(w.line, w.path) for w in warnings] == [(10, "nodes.A")]
    assert "differs from node a only in case" in warnings[0].message


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
            "    endpoint: b.example.com:51820": "    ssh: {host: 203.0.113.2, port: 2222, known_hosts: k/../k/kh}",
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
    assert b.ssh.known_hosts == tmp_path / "repo" / "k" / "kh"
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
    assert spoke.ssh.proxy_jump == SshTarget("admin", "hub.example.com", 22) and spoke.ssh.host == "spoke.lan"
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


def test_a_dual_stack_mesh_warns_of_a_node_without_an_ipv6_address() -> None:
    """It validated and applied, and its pairs over IPv6 never answered (review C4)."""
    text = base_text(**{"network: 10.0.0.0/24": "network: [10.0.0.0/24, 'fd00:9::/64']",
                        "address: 10.0.0.1": "address: [10.0.0.1, 'fd00:9::1']"})
    _, warnings = loads(text)
    assert [(w.path, w.severity) for w in warnings] == [("nodes.b.address", "warning")]
    assert warnings[0].message == ("the mesh network has IPv6 (fd00:9::/64) but b has no IPv6 address: its pairs over "
                                   "IPv6 cannot work; give it one from fd00:9::/64 (a list: address: [IPv4, IPv6])")


def test_family_warnings_past_ten_say_how_many_more() -> None:
    """They stopped at ten, and "10 warning(s)" hid the rest (review R1)."""
    lines = ["version: 1", "mesh:", "  name: demo", "  network: [10.0.0.0/24, 'fd00::/64']", "nodes:"]
    for i in range(1, 14):
        lines += [f"  n{i}:", f"    address: 10.0.0.{i}", f"    public_key: {pubkey(i)}",
                  f"    endpoint: n{i}.example.com:51820"]
    _, warnings = loads("\n".join(lines) + "\n")
    assert len(warnings) == 11
    assert warnings[-1].message.startswith("3 more like these") and warnings[-1].path == "nodes.n11.address"


def test_an_ipv6_subnet_in_an_ipv4_mesh_is_a_warning() -> None:
    """It validated, applied and planned clean, and no node could reach it (review B6)."""
    text = base_text(**{"b.example.com:51820\n": "b.example.com:51820\n    subnets: ['fd10:3:10::/64']\n"})
    _, warnings = loads(text)
    assert [(w.path, w.severity) for w in warnings] == [("nodes.b.subnets[0]", "warning")]
    assert warnings[0].message.startswith("fd10:3:10::/64 is IPv6 but the mesh network has no IPv6: no node has a "
                                          "mesh address to reach it from")


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

    from wgmesh.cli.app import app

    monkeypatch.chdir(BAD)
    runner = CliRunner()
    for stem, (line, _, _) in sorted(BAD_CASES.items()):
        result = runner.invoke(app, ["validate", "-f", f"{stem}.yaml"])
        assert result.exit_code == 1, (stem, result.output)
        assert f"{stem}.yaml:{line}" in result.output, (stem, result.output)
        assert "Traceback" not in result.output and not isinstance(result.exception, AssertionError)
