"""`ssh.proxy_command` end to end on the controller side: SshTransport reaches the in-process SSH server of
test_ssh.py only through a proxy command (an `nc`-like relay in Python), with the host key still pinned under
the node's ssh.host; a proxy that fails is named with its exit status and its last stderr line, quickly."""

from __future__ import annotations

import shlex
import sys
import time
from pathlib import Path

import paramiko
import pytest
from remote import test_ssh as base
from remote.test_ssh import Server

from wgmesh.core.model import Node, Ssh
from wgmesh.remote.proxycommand import ProxySock, proxy_line
from wgmesh.remote.ssh import SshTransport, fingerprint

# the in-process server of test_ssh.py and its fixtures
host_key, server, identity = base.host_key, base.server, base.identity

NAME = "node-a.internal"  # not resolvable: only the proxy knows where the node is

# An `nc %h %p` that always dials 127.0.0.1 (the test server) and logs the host and port it was given.
RELAY = r"""
import os, socket, sys, threading
host, port, log = sys.argv[1], int(sys.argv[2]), sys.argv[3]
with open(log, "a") as f:
    f.write(f"{host} {port}\n")
sys.stderr.write("relay: " + "chatter " * 20000 + "\n")  # more than a pipe holds: must not stall
sys.stderr.flush()
s = socket.create_connection(("127.0.0.1", port))
def up():
    while d := os.read(0, 65536):
        s.sendall(d)
    s.shutdown(socket.SHUT_WR)
threading.Thread(target=up, daemon=True).start()
while d := s.recv(65536):
    os.write(1, d)
"""


def _python(code: str) -> str:
    return f"{shlex.quote(sys.executable)} -c {shlex.quote(code)}"


def _node(port: int, known_hosts: Path, proxy_command: str, host: str = NAME, user: str = "root") -> Node:
    ssh = Ssh(host=host, port=port, user=user, known_hosts=known_hosts, proxy_command=proxy_command)
    return Node(name="a", addresses=(), public_key=None, endpoint=None, ssh=ssh)


def _known_hosts(tmp_path: Path, port: int, key: paramiko.PKey, host: str = NAME) -> Path:
    path = tmp_path / "known_hosts"
    path.write_text(f"[{host}]:{port} {key.get_name()} {key.get_base64()}\n")
    return path


def test_a_node_is_reached_through_its_proxy_command(server: Server, identity: str, tmp_path: Path) -> None:
    log = tmp_path / "relay.log"
    node = _node(server.port, _known_hosts(tmp_path, server.port, server.host_key),
                 f"{_python(RELAY)} %h %p {shlex.quote(str(log))}")
    t = SshTransport(identity_override=identity, timeout=10)
    try:
        assert t.connect([node]) == {}
        got = t.run("a", "echo through the proxy\n", 10)
    finally:
        t.close()
    assert got.exit_status == 0 and got.stdout == "through the proxy\n"
    assert log.read_text() == f"{NAME} {server.port}\n"  # %h and %p, expanded
    assert server.commands == [("root", "/bin/sh -s")]


def test_the_host_key_stays_pinned_through_the_proxy(server: Server, identity: str, tmp_path: Path) -> None:
    other = paramiko.ECDSAKey.generate()
    node = _node(server.port, _known_hosts(tmp_path, server.port, other), f"{_python(RELAY)} %h %p /dev/null")
    t = SshTransport(identity_override=identity, timeout=10)
    try:
        errors = t.connect([node])
    finally:
        t.close()
    assert "host key mismatch" in errors["a"] and fingerprint(other) in errors["a"]
    assert server.commands == []


def test_an_unknown_host_key_is_refused_through_the_proxy(server: Server, identity: str, tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    known.write_text("")
    node = _node(server.port, known, f"{_python(RELAY)} %h %p /dev/null")
    t = SshTransport(identity_override=identity, timeout=10)
    try:
        errors = t.connect([node])
    finally:
        t.close()
    assert f"unknown host key for [{NAME}]:{server.port}" in errors["a"]


@pytest.mark.parametrize(
    ("command", "said"),
    [
        (_python("import sys; sys.stderr.write('TargetNotConnected: ' + sys.argv[1] + '\\n'); sys.exit(3)") + " %h",
         f"the proxy command exited with status 3: TargetNotConnected: {NAME}"),
        ("wgmesh-no-such-proxy %h %p", "the proxy command exited with status 127"),
    ],
)
def test_a_failing_proxy_is_named_quickly(identity: str, tmp_path: Path, command: str, said: str) -> None:
    node = _node(2222, tmp_path / "known_hosts", command)
    t = SshTransport(identity_override=identity, timeout=10)
    started = time.monotonic()
    try:
        errors = t.connect([node])
    finally:
        t.close()
    assert time.monotonic() - started < 5, errors  # an exited proxy is EOF, not a wait for the banner timeout
    assert errors["a"].startswith(f"cannot connect to root@{NAME}:2222: ")
    assert said in errors["a"], errors["a"]


def test_a_proxy_that_never_answers_times_out(identity: str, tmp_path: Path) -> None:
    node = _node(2222, tmp_path / "known_hosts", "sleep 30")
    t = SshTransport(identity_override=identity, timeout=1.5)
    started = time.monotonic()
    try:
        errors = t.connect([node])
    finally:
        t.close()
    assert time.monotonic() - started < 8, errors
    assert "root@node-a.internal:2222" in errors["a"]


def test_the_proxy_runs_in_a_shell_with_quoted_values() -> None:
    line = proxy_line(Ssh(host="i-0abc", port=22, user="ubuntu", proxy_command="aws ssm x --target %h | cat"))
    assert shlex.split(line) == ["/bin/sh", "-c", "exec aws ssm x --target i-0abc | cat"]


def test_close_ends_and_reaps_the_process() -> None:
    proxy = ProxySock(shlex.join(["/bin/sh", "-c", "exec sleep 30"]))
    assert proxy.process.poll() is None
    proxy.close()
    assert proxy.process.returncode is not None
    proxy.close()  # twice: no error
