"""Hostile mesh.yaml (issue 14): alias bombs, huge and deep files, paths that reach out of the repo, values that
used to pass validation and crash plan later, and messages that must never quote a file."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from wgmesh.core.model import SshTarget
from wgmesh.meshfile import MAX_BYTES, MeshError, load, loads
from wgmesh.meshfile.yamldoc import MAX_LINES, MAX_VALUES

BASE = """\
version: 1
mesh:
  name: demo
  network: 10.0.0.0/24
nodes:
  a:
    address: 10.0.0.1
    endpoint: a.example.com:51820
"""

# The classic "billion laughs": 9 levels of 9 aliases, 9**10 strings once expanded (~600 bytes).
BOMB = 'l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]\n' + "".join(
    f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]\n" for i in range(1, 10)
)


def errors(text: str, path: str | Path = "mesh.yaml") -> list[str]:
    with pytest.raises(MeshError) as info:
        loads(text, path)
    assert info.value.errors
    return [str(d) for d in info.value.errors]


# ---- F7: anchors, aliases, merge keys, size, depth


def test_the_bomb_is_refused_at_its_first_anchor_quickly(tmp_path: Path) -> None:
    assert 550 <= len(BOMB) <= 650, len(BOMB)
    f = tmp_path / "mesh.yaml"
    f.write_text(BOMB)
    started = time.monotonic()
    with pytest.raises(MeshError) as info:
        load(f)
    assert time.monotonic() - started < 2
    assert [str(d) for d in info.value.errors] == [
        f"{f}:1:5: anchors and aliases are not supported: write the value out"
    ]


def test_validate_on_the_bomb_exits_1_with_the_line(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from wgmesh.cli.app import app

    f = tmp_path / "mesh.yaml"
    f.write_text(BOMB)
    started = time.monotonic()
    result = CliRunner().invoke(app, ["validate", "-f", str(f)])
    assert time.monotonic() - started < 2
    assert result.exit_code == 1, result.output
    assert f"{f}:1:5: anchors and aliases are not supported" in result.output


@pytest.mark.parametrize(
    ("text", "where", "message"),
    [
        (BASE + "    subnets: &s [192.168.1.0/24]\n", "9:14", "anchors and aliases are not supported"),
        (BASE + "  b: &n\n    address: 10.0.0.2\n", "9:6", "anchors and aliases are not supported"),
        (BASE.replace("endpoint: a.example.com:51820", "endpoint: *x"), "8:15", "anchors and aliases"),
        (BASE + "  b:\n    <<: {address: 10.0.0.2}\n", "10:5", "merge keys (<<) are not supported"),
        (BASE + "  b: {<<: {address: 10.0.0.2}}\n", "9:7", "merge keys (<<) are not supported"),
        (BASE + "  b:\n    !!merge x: {address: 10.0.0.2}\n", "10:5", "merge keys (<<) are not supported"),
        ("version: 1\nx: " + "[" * 100 + "]" * 100 + "\n", "2:", "nested too deeply"),
    ],
)
def test_refused_constructs_name_their_position(text: str, where: str, message: str) -> None:
    got = errors(text)
    assert len(got) == 1 and got[0].startswith(f"mesh.yaml:{where}") and message in got[0], got


def test_a_quoted_merge_key_is_an_ordinary_unknown_key_and_a_merge_sign_as_a_value_is_no_merge() -> None:
    assert "unknown key \"<<\"" in "\n".join(errors(BASE + "    '<<': x\n"))
    assert errors(BASE + "    post_up: [<<]\n") == [
        "mesh.yaml:9:15: nodes.a.post_up[0]: must be a shell command as text (got <<); quote it"
    ]
    mesh, _ = loads(BASE + "    post_up: ['<<', 'echo <<']\n")
    assert mesh.node("a").post_up == ("<<", "echo <<")


def test_files_over_the_limit_are_refused_before_parsing(tmp_path: Path) -> None:
    big = BASE + "# " + "x" * MAX_BYTES + "\n"
    f = tmp_path / "mesh.yaml"
    f.write_text(big)
    for call in (lambda: load(f), lambda: loads(big)):
        started = time.monotonic()
        with pytest.raises(MeshError) as info:
            call()
        assert time.monotonic() - started < 1
        assert "larger than 1 MB" in str(info.value) and "x" * 20 not in str(info.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("version: 1\n" + "#\n" * MAX_LINES, f"mesh.yaml:{MAX_LINES + 1}: the file has more than {MAX_LINES} lines"),
        ("x: [" + ",".join(["1"] * MAX_VALUES) + "]\n", f"the document has more than {MAX_VALUES} values"),
        ("".join(f"k{i}: 1\n" for i in range(MAX_VALUES // 2 + 1)), f"the document has more than {MAX_VALUES} values"),
    ],
)
def test_files_with_more_lines_or_values_than_a_mesh_needs_are_refused(text: str, message: str) -> None:
    """ruamel's round trip takes tens of microseconds per line or value: these bound the work (issue 14 F7)."""
    started = time.monotonic()
    got = errors(text)
    assert time.monotonic() - started < 10  # ~2 s here; generous for a loaded machine
    assert len(got) == 1 and message in got[0], got


def test_the_report_is_capped() -> None:
    text = BASE + "".join(f"    adress{i}: 1\n" for i in range(500))
    with pytest.raises(MeshError) as info:
        loads(text)
    assert len(info.value.diagnostics) == 201
    assert str(info.value.diagnostics[-1]) == "mesh.yaml: and 300 more: fix these first"


def test_an_endless_file_is_refused(tmp_path: Path) -> None:
    if not Path("/dev/zero").exists():
        pytest.skip("no /dev/zero")
    with pytest.raises(MeshError, match="larger than 1 MB"):
        load("/dev/zero")


# ---- F1: which files mesh.yaml may name; no message quotes a file


def test_known_hosts_stays_inside_the_repo(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "keys").mkdir(parents=True)
    (repo / "out").symlink_to("/etc")
    (repo / "kh").symlink_to(tmp_path / "elsewhere")
    ok, _ = loads(BASE.replace("nodes:", "ssh: {known_hosts: keys/known_hosts}\nnodes:"), repo / "mesh.yaml")
    assert ok.node("a").ssh.known_hosts == repo / "keys" / "known_hosts"
    assert ok.ssh.known_hosts == repo / "keys" / "known_hosts"
    for value, fragment in [
        ("/etc/ssh/ssh_known_hosts", "not an absolute or ~ path"),
        ("~/.ssh/known_hosts", "not an absolute or ~ path"),
        ("../known_hosts", "'..' may not leave it"),
        ("keys/../../known_hosts", "'..' may not leave it"),
        (".", "must be a file inside the mesh repo"),
        ("out/passwd", "through a symlink"),
        ("kh", "through a symlink"),
    ]:
        got = errors(BASE.replace("nodes:", f"ssh: {{known_hosts: '{value}'}}\nnodes:"), repo / "mesh.yaml")
        assert len(got) == 1 and ":5:20: ssh.known_hosts: " in got[0] and fragment in got[0], (value, got)


def test_identity_file_may_live_in_home_not_in_proc_sys_dev(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "env").symlink_to("/proc/self/environ")
    for value, want in [("~/.ssh/id_ed25519", tmp_path / ".ssh" / "id_ed25519"), ("/keys/id", Path("/keys/id")),
                        ("id_ed25519", tmp_path / "repo" / "id_ed25519")]:
        text = BASE.replace("nodes:", f"ssh: {{identity_file: '{value}'}}\nnodes:")
        mesh, _ = loads(text, tmp_path / "repo" / "m.yaml")
        assert mesh.node("a").ssh.identity_file == want
    for value in ("/proc/self/environ", "/sys/kernel/notes", "/dev/stdin", "/tmp/../proc/1/environ", "~/env", "/dev"):
        got = errors(BASE.replace("nodes:", f"ssh: {{identity_file: '{value}'}}\nnodes:"))
        assert len(got) == 1 and "ssh.identity_file: must not be a file under /proc, /sys or /dev" in got[0], got
    # review C7: `validate -f /dev/stdin`: a relative name is taken from mesh.yaml's folder, /dev; the message says so
    text = BASE.replace("nodes:", "ssh: {identity_file: id_ed25519}\nnodes:")
    with pytest.raises(MeshError) as info:
        loads(text, Path("/dev/stdin"))
    assert ("ssh.identity_file: must not be a file under /proc, /sys or /dev (id_ed25519 is taken from mesh.yaml's "
            "folder, /dev): use your SSH key") in str(info.value)


def test_no_message_quotes_the_content_of_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    marker = "hunter2-do-not-print"
    monkeypatch.setenv("WGMESH_TEST_MARKER", marker)
    secret = tmp_path / "secret"
    secret.write_text(f"{marker}\n{marker}: 1\n")
    (tmp_path / "repo").mkdir()
    (tmp_path / "repo" / "link").symlink_to(secret)
    texts = [
        BASE.replace("nodes:", f"ssh: {{known_hosts: {v}}}\nnodes:")
        for v in ("/proc/self/environ", str(secret), "link", "../secret")
    ] + [BASE.replace("nodes:", "ssh: {identity_file: /proc/self/environ}\nnodes:")]
    for text in texts:
        with pytest.raises(MeshError) as info:
            loads(text, tmp_path / "repo" / "mesh.yaml")
        assert marker not in str(info.value)
    with pytest.raises(MeshError) as info:  # a file that is not YAML at all, given as mesh.yaml
        load(secret)
    assert marker not in str(info.value)


def test_control_characters_in_keys_are_escaped_in_messages() -> None:
    got = "\n".join(errors(BASE + '    "\\e[2Jsneaky": 1\n'))
    assert "\x1b" not in got and "\\x1b[2Jsneaky" in got


# ---- F8: ssh values parsed once, here


def test_proxy_jump_is_parsed_with_defaults_filled_in() -> None:
    def jump(value: str, user: str = "") -> SshTarget | None:
        extra = f", user: {user}" if user else ""
        mesh, _ = loads(BASE.replace("nodes:", f"ssh: {{proxy_jump: '{value}'{extra}}}\nnodes:"))
        assert mesh.ssh.proxy_jump is not None
        return mesh.node("a").ssh.proxy_jump

    assert jump("bastion.example.com") == SshTarget("root", "bastion.example.com", 22)
    assert jump("bastion", user="ubuntu") == SshTarget("ubuntu", "bastion", 22)
    assert jump("admin@203.0.113.9:2222") == SshTarget("admin", "203.0.113.9", 2222)
    assert jump("ops@[2001:db8::9]:2200") == SshTarget("ops", "2001:db8::9", 2200)
    assert jump("2001:db8::9") == SshTarget("root", "2001:db8::9", 22)
    assert str(jump("ops@[2001:db8::9]:2200")) == "ops@[2001:db8::9]:2200"


@pytest.mark.parametrize(
    ("ssh", "fragment"),
    [
        ("{host: a..b}", "nodes.a.ssh.host: empty label between dots"),
        ("{host: '.a'}", "nodes.a.ssh.host: empty label between dots"),
        ("{host: 'a b'}", "nodes.a.ssh.host: not a host name or IP: write one without spaces"),
        ("{host: '[2001:db8::1]'}", "nodes.a.ssh.host: write the IPv6 address without brackets"),
        ("{host: 'fe80::1%$(reboot)'}", "nodes.a.ssh.host: not an IPv6 address"),
        ("{host: 'h:22'}", "nodes.a.ssh.host: not an IPv6 address"),
        ("{host: ''}", "nodes.a.ssh.host: empty host"),
        ("{proxy_jump: 'admin@bastion:abc'}", "nodes.a.ssh.proxy_jump: the SSH port after ':' must be a number"),
        ("{proxy_jump: 'bastion:'}", "nodes.a.ssh.proxy_jump: empty port after ':'"),
        ("{proxy_jump: 'Admin@bastion'}", "nodes.a.ssh.proxy_jump: invalid user name 'Admin'"),
        ("{proxy_jump: '-J@x'}", "nodes.a.ssh.proxy_jump: invalid user name"),
        ("{proxy_jump: '-oProxyCommand=x'}", "nodes.a.ssh.proxy_jump: not a host name or IP"),
        ("{proxy_jump: '[::1'}", "nodes.a.ssh.proxy_jump: write an IPv6 host as"),
        ("{proxy_jump: ''}", "nodes.a.ssh.proxy_jump: empty"),
        ("{proxy_jump: 22}", "nodes.a.ssh.proxy_jump: must be text"),
    ],
)
def test_bad_ssh_values_are_errors_with_their_position(ssh: str, fragment: str) -> None:
    got = errors(BASE + f"    ssh: {ssh}\n")
    assert len(got) == 1 and got[0].startswith("mesh.yaml:9:") and fragment in got[0], got


def test_ssh_hosts_that_are_fine() -> None:
    for host in ("node1", "node1.example.com.", "203.0.113.7", "2001:db8::7", "fe80::1%eth0", "my_host.lan"):
        mesh, _ = loads(BASE + f"    ssh: {{host: '{host}'}}\n")
        assert mesh.node("a").ssh.host == host


# ---- ssh.sudo (issue 11)


def test_sudo_mesh_wide_and_per_node() -> None:
    text = BASE.replace("nodes:", "ssh: {user: ubuntu}\nnodes:") + (
        "    ssh: {sudo: false}\n"
        "  b: {address: 10.0.0.2, endpoint: 'b.example.com:1'}\n"
        "  c: {address: 10.0.0.3, endpoint: 'c.example.com:1', ssh: {user: root}}\n"
        "  d: {address: 10.0.0.4, endpoint: 'd.example.com:1', ssh: {user: root, sudo: true}}\n"
    )
    mesh, _ = loads(text)
    got = {n.name: (n.ssh.user, n.ssh.sudo, n.ssh.use_sudo) for n in mesh.nodes}
    assert got == {
        "a": ("ubuntu", False, False),
        "b": ("ubuntu", None, True),
        "c": ("root", None, False),
        "d": ("root", True, True),
    }
    mesh, _ = loads(text.replace("ssh: {user: ubuntu}", "ssh: {user: ubuntu, sudo: false}"))
    assert [n.ssh.use_sudo for n in mesh.nodes] == [False, False, False, True]
    assert mesh.ssh.sudo is False and mesh.ssh.user == "ubuntu"


def test_mesh_wide_ssh_defaults_are_on_the_mesh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    text = BASE.replace(
        "nodes:", "ssh: {user: ops, port: 2222, identity_file: ~/.ssh/k, proxy_jump: jump.example.com}\nnodes:"
    )
    mesh, _ = loads(text, tmp_path / "repo" / "mesh.yaml")
    d = mesh.ssh
    assert (d.user, d.port, d.known_hosts, d.identity_file, d.proxy_jump, d.sudo) == (
        "ops", 2222, tmp_path / "repo" / "known_hosts", tmp_path / ".ssh" / "k",
        SshTarget(None, "jump.example.com", None), None)  # fmt: skip
    assert mesh.node("a").ssh.proxy_jump == SshTarget("ops", "jump.example.com", 22)
    assert os.fspath(loads(BASE)[0].ssh.known_hosts) == "known_hosts"
