"""`ssh.proxy_command` in mesh.yaml: mesh-wide or per node, OpenSSH's %h %p %r %% tokens, one line of text,
exclusive with proxy_jump; every error at its `mesh.yaml:LINE:COL`; expansion quotes every value."""

from __future__ import annotations

import shlex

import pytest

from wgmesh.core.model import SshTarget
from wgmesh.core.proxycommand import expand_proxy_command, parse_proxy_command
from wgmesh.meshfile import MeshError, loads

SSM = "aws ssm start-session --target %h --document-name AWS-StartSSHSession --parameters portNumber=%p"


def mesh(ssh: str = "", node_ssh: str = "{host: i-0abc123}") -> str:
    return f"""\
version: 1
mesh:
  name: demo
  network: 10.0.0.0/24
ssh:
  user: ubuntu
{ssh}nodes:
  a:
    address: 10.0.0.1
    endpoint: a.example.com:51820
    ssh: {node_ssh}
  b:
    address: 10.0.0.2
    endpoint: b.example.com:51820
"""


def errors(text: str) -> list[str]:
    with pytest.raises(MeshError) as info:
        loads(text, "mesh.yaml")
    return [str(d) for d in info.value.errors]


def test_mesh_wide_proxy_command_reaches_every_node() -> None:
    m, warnings = loads(mesh(ssh=f"  proxy_command: {SSM}\n"), "mesh.yaml")
    assert warnings == []
    assert m.node("a").ssh.proxy_command == SSM
    assert m.node("b").ssh.proxy_command == SSM
    assert m.node("a").ssh.proxy_jump is None
    assert m.ssh.proxy_command == SSM


def test_a_node_proxy_command_replaces_the_mesh_wide_proxy_jump() -> None:
    m, _ = loads(mesh(ssh="  proxy_jump: admin@bastion.example.com\n",
                      node_ssh='{host: i-0abc123, proxy_command: "nc %h %p"}'), "mesh.yaml")
    assert m.node("a").ssh.proxy_command == "nc %h %p" and m.node("a").ssh.proxy_jump is None
    assert m.node("b").ssh.proxy_command is None
    assert m.node("b").ssh.proxy_jump == SshTarget("admin", "bastion.example.com", 22)


def test_a_node_proxy_jump_replaces_the_mesh_wide_proxy_command() -> None:
    m, _ = loads(mesh(ssh="  proxy_command: nc %h %p\n", node_ssh="{host: i-0abc123, proxy_jump: bastion}"),
                 "mesh.yaml")
    assert m.node("a").ssh.proxy_jump == SshTarget("ubuntu", "bastion", 22)
    assert m.node("a").ssh.proxy_command is None
    assert m.node("b").ssh.proxy_command == "nc %h %p"


@pytest.mark.parametrize(
    ("value", "line_col", "message"),
    [
        ('"nc %h %x"', "7:18", "unknown token %x: use %h (host), %p (port), %r (user), or %% for a literal %"),
        ('"nc %h 100%"', "7:18", "a lone % at the end"),
        ('"nc %h\\n%p"', "7:18", "must be one line"),
        ('"nc\\0 %h"', "7:18", "contains a NUL character"),
        ('"  "', "7:18", "empty: write the command that connects to the node"),
        ("[nc, '%h']", "7:18", "must be text"),
        ("22", "7:18", "must be text"),
    ],
)
def test_bad_values_are_named_at_their_line_and_column(value: str, line_col: str, message: str) -> None:
    found = errors(mesh(ssh=f"  proxy_command: {value}\n"))
    assert len(found) == 1, found
    assert found[0].startswith(f"mesh.yaml:{line_col}: ssh.proxy_command"), found
    assert message in found[0]


def test_proxy_jump_and_proxy_command_together_are_refused() -> None:
    found = errors(mesh(node_ssh='{host: i-0abc123, proxy_jump: bastion, proxy_command: "nc %h %p"}'))
    assert len(found) == 1, found
    assert found[0].startswith("mesh.yaml:11:64:") and "nodes.a.ssh.proxy_command" in found[0]
    assert "give proxy_jump or proxy_command, not both" in found[0]


def test_misspelled_key_gets_a_hint() -> None:
    found = errors(mesh(ssh="  ProxyCommand: nc %h %p\n"))
    assert any('did you mean "proxy_command"' in e for e in found), found


def test_a_very_long_command_is_refused() -> None:
    found = errors(mesh(ssh=f"  proxy_command: {'x' * 5000}\n"))
    assert "longer than 4096 characters" in found[0]


# ---- the grammar and the expansion (pure)


@pytest.mark.parametrize("text", ["nc %h %p", "ssh -W %h:%p %r@jump", "echo 100%%", SSM, "cmd"])
def test_valid_templates(text: str) -> None:
    assert parse_proxy_command(text) == text


def test_expansion_substitutes_every_token() -> None:
    assert expand_proxy_command("ssh -W %h:%p %r@jump 100%% %%h", host="10.0.0.1", port=2222, user="ubuntu") == (
        "ssh -W 10.0.0.1:2222 ubuntu@jump 100% %h"
    )


@pytest.mark.parametrize("host", ["a;touch /tmp/pwned", "$(reboot)", "`id`", "a b", "it's"])
def test_every_value_is_shell_quoted(host: str) -> None:
    """Values from mesh.yaml are validated before they get here; the quoting holds anyway."""
    line = expand_proxy_command("nc %h %p", host=host, port=22, user="root")
    assert shlex.split(line) == ["nc", host, "22"]
