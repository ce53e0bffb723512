"""SshTransport against an in-process SSH server (paramiko's ServerInterface on loopback).

The server runs the script it receives on stdin with the local /bin/sh, or plays a node that does not:
sudo that wants a password, a cloud image's forced command on root, a command that never ends, a dropped
connection. Every node command goes through `node_command`: the command line is recorded and checked.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import paramiko
import pytest

import wgmesh.remote.channel as channel_mod
import wgmesh.remote.known_hosts as known_hosts_mod
from wgmesh.core.model import Node, Ssh
from wgmesh.remote.ssh import OUTPUT_CAP, SshTransport, fingerprint, one_line
from wgmesh.remote.transport import CommandResult, SshError, node_command

BANNER = b'Please login as the user "ubuntu" rather than the user "root".\r\n\n'

Behaviour = Callable[[paramiko.Channel, str], None]


# ---------------------------------------------------------------------------------------- the server


def shell(chan: paramiko.Channel, command: str) -> None:
    """A node that runs what it is given: `[sudo -n ]/bin/sh -s` with the script on stdin."""
    proc = subprocess.Popen(["/bin/sh", "-s"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdin and proc.stdout and proc.stderr

    def feed() -> None:
        with contextlib.suppress(Exception):
            while data := chan.recv(65536):
                proc.stdin.write(data)  # type: ignore[union-attr]
                proc.stdin.flush()  # type: ignore[union-attr]
        with contextlib.suppress(Exception):
            proc.stdin.close()  # type: ignore[union-attr]

    def copy(src, send) -> None:  # type: ignore[no-untyped-def]
        with contextlib.suppress(Exception):
            while chunk := src.read1(65536):
                send(chunk)

    threads = [
        threading.Thread(target=feed, daemon=True),
        threading.Thread(target=copy, args=(proc.stdout, chan.sendall), daemon=True),
        threading.Thread(target=copy, args=(proc.stderr, chan.sendall_stderr), daemon=True),
    ]
    for t in threads:
        t.start()
    while proc.poll() is None:
        if chan.closed:  # the client gave up (deadline, output cap): stop the command
            proc.kill()
        time.sleep(0.02)
    for t in threads[1:]:
        t.join(5)
    for pipe in (proc.stdout, proc.stderr, proc.stdin):
        with contextlib.suppress(Exception):
            pipe.close()
    with contextlib.suppress(Exception):
        chan.send_exit_status(proc.returncode)
        chan.close()


def sudo_wants_password(chan: paramiko.Channel, command: str) -> None:
    chan.sendall_stderr(b"sudo: a password is required\n")
    chan.send_exit_status(1)
    chan.close()


def forced_command(chan: paramiko.Channel, command: str, sleep: float = 10) -> None:
    """cloud-init's line in root's authorized_keys: echo the banner, ignore stdin, sleep 10, exit 142."""
    chan.sendall(BANNER)
    for _ in range(int(sleep * 10)):
        if chan.closed:
            return
        time.sleep(0.1)
    chan.send_exit_status(142)
    chan.close()


def chatty_login(chan: paramiko.Channel, command: str) -> None:
    """A .bashrc that prints before the command runs."""
    chan.sendall(b"Welcome! \x1b[2Jlast login yesterday\nno newline at the end")
    shell(chan, command)


@dataclass
class Server:
    port: int
    host_key: paramiko.PKey
    behaviours: dict[str, Behaviour] = field(default_factory=dict)
    commands: list[tuple[str, str]] = field(default_factory=list)  # (user, command line)
    transports: list[paramiko.Transport] = field(default_factory=list)
    stall_exec: threading.Event | None = None
    offered: list[str] = field(default_factory=list)  # the public keys clients offered, base64, in order

    def known_hosts_line(self) -> str:
        return f"[127.0.0.1]:{self.port} {self.host_key.get_name()} {self.host_key.get_base64()}\n"


class _Interface(paramiko.ServerInterface):
    def __init__(self, server: Server) -> None:
        self.server = server
        self.user = ""

    def get_allowed_auths(self, username: str) -> str:
        return "publickey"

    def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
        self.user = username
        self.server.offered.append(key.get_base64())
        return paramiko.AUTH_FAILED if username == "refused" else paramiko.AUTH_SUCCESSFUL  # no key lets it in

    def check_channel_request(self, kind: str, chanid: int) -> int:
        return paramiko.OPEN_SUCCEEDED if kind == "session" else paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED

    def check_channel_exec_request(self, channel: paramiko.Channel, command: bytes) -> bool:
        line = command.decode()
        self.server.commands.append((self.user, line))
        if self.server.stall_exec is not None:
            self.server.stall_exec.wait(30)  # never answers the exec request in time
        behaviour = self.server.behaviours.get(self.user, shell)
        threading.Thread(target=behaviour, args=(channel, line), daemon=True).start()
        return True


@pytest.fixture(scope="module")
def host_key() -> paramiko.PKey:
    return paramiko.ECDSAKey.generate()


def serve(host_keys: list[paramiko.PKey], address: str = "127.0.0.1") -> Iterator[Server]:
    """An in-process SSH server on `address` with these host keys (the first one is `Server.host_key`)."""
    listener = socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET)
    listener.bind((address, 0))
    listener.listen(64)
    srv = Server(listener.getsockname()[1], host_keys[0])

    def accept() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            t = paramiko.Transport(conn)
            for key in host_keys:
                t.add_server_key(key)
            srv.transports.append(t)
            with contextlib.suppress(Exception):
                t.start_server(server=_Interface(srv))

    threading.Thread(target=accept, daemon=True).start()
    yield srv
    if srv.stall_exec is not None:
        srv.stall_exec.set()
    listener.close()
    for t in srv.transports:
        t.close()


@pytest.fixture
def server(host_key: paramiko.PKey) -> Iterator[Server]:
    yield from serve([host_key])


@pytest.fixture(scope="module")
def identity(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("id") / "id_ecdsa"
    paramiko.ECDSAKey.generate().write_private_key_file(str(path))
    return str(path)


def _node(name: str, port: int, known_hosts: Path, user: str = "root", sudo: bool | None = None) -> Node:
    ssh = Ssh(host="127.0.0.1", port=port, user=user, known_hosts=known_hosts, sudo=sudo)
    return Node(name=name, addresses=(), public_key=None, endpoint=None, ssh=ssh)


@pytest.fixture
def connect(server: Server, identity: str, tmp_path: Path) -> Iterator[Callable[..., SshTransport]]:
    """connect(user="root", sudo=None, names=("n",), **transport options) -> a connected SshTransport."""
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(server.known_hosts_line())
    made: list[SshTransport] = []

    def make(user: str = "root", sudo: bool | None = None, names: tuple[str, ...] = ("n",), **kw: object):  # type: ignore[no-untyped-def]
        t = SshTransport(identity_override=identity, **kw)  # type: ignore[arg-type]
        made.append(t)
        errors = t.connect([_node(n, server.port, known_hosts, user, sudo) for n in names])
        assert errors == {}
        return t

    yield make
    for t in made:
        t.close()


# ---------------------------------------------------------------------------------------- the wrapper


@pytest.mark.parametrize(
    ("user", "sudo", "command"),
    [
        ("root", None, "/bin/sh -s"),
        ("ubuntu", None, "sudo -n /bin/sh -s"),
        ("ubuntu", False, "/bin/sh -s"),
        ("root", True, "sudo -n /bin/sh -s"),
    ],
)
def test_node_command_per_user_and_flag(user: str, sudo: bool | None, command: str) -> None:
    assert node_command(Ssh(host="h", user=user, sudo=sudo)) == command


@pytest.mark.parametrize(("user", "sudo"), [("root", None), ("ubuntu", None), ("ubuntu", False)])
def test_script_goes_on_stdin_and_the_command_line_is_the_wrapper(
    server: Server, connect: Callable[..., SshTransport], user: str, sudo: bool | None
) -> None:
    t = connect(user=user, sudo=sudo)
    got = t.run("n", "echo secret-config-line; echo err >&2\n", 10)
    assert got == CommandResult(0, "secret-config-line\n", "err\n")
    expected = node_command(Ssh(host="h", user=user, sudo=sudo))
    assert server.commands == [(user, expected)]  # nothing of the script on the command line


def test_the_script_own_failure_is_its_result(connect: Callable[..., SshTransport]) -> None:
    got = connect().run("n", "echo partial; echo 'wg: oops' >&2; exit 3\n", 10)
    assert got == CommandResult(3, "partial\n", "wg: oops\n")


def test_output_before_our_shell_is_dropped(server: Server, connect: Callable[..., SshTransport]) -> None:
    server.behaviours["root"] = chatty_login
    assert connect().run("n", "echo '@@wgmesh:x 1'\n", 10).stdout == "@@wgmesh:x 1\n"


def test_sudo_wanting_a_password_is_named_with_the_fix(server: Server, connect: Callable[..., SshTransport]) -> None:
    server.behaviours["ubuntu"] = sudo_wants_password
    t = connect(user="ubuntu", names=("web1",))
    started = time.monotonic()
    with pytest.raises(SshError) as e:
        t.run("web1", "echo hi\n", 30)
    assert time.monotonic() - started < 5
    assert str(e.value) == (
        "sudo on web1 wants a password for ubuntu: give ubuntu passwordless sudo (a sudoers line "
        '"ubuntu ALL=(ALL) NOPASSWD: ALL") or set ssh.sudo: false if ubuntu already has the rights (if you '
        "logged in with the read-only plan key, as CI's plan job does, do neither: that key's own sudoers file is "
        "missing on the node; run `wgmesh plan-key KEY.pub` again with the admin key)"
    )
    assert server.commands == [("ubuntu", "sudo -n /bin/sh -s")]


def test_forced_command_banner_is_quoted_early_with_the_user_to_set(
    server: Server, connect: Callable[..., SshTransport]
) -> None:
    server.behaviours["root"] = forced_command
    t = connect(names=("aws",))
    started = time.monotonic()
    with pytest.raises(SshError) as e:
        t.run("aws", "echo hi\n", 30)
    took = time.monotonic() - started
    assert took < 8, took  # the forced command sleeps 10 s before its exit 142: not waited for
    msg = str(e.value)
    assert '\'Please login as the user "ubuntu" rather than the user "root".\'' in msg
    assert "the login as root on aws" in msg and "set ssh.user: ubuntu" in msg
    assert "\r" not in msg and "\n" not in msg


def test_forced_command_exit_142_without_early_sign(
    server: Server, connect: Callable[..., SshTransport], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(channel_mod, "BANNER_WAIT", 60.0)
    server.behaviours["root"] = lambda chan, command: forced_command(chan, command, sleep=1)
    with pytest.raises(SshError, match=r"\(exit status 142\).*set ssh.user: ubuntu"):
        connect(names=("aws",)).run("aws", "echo hi\n", 30)


def test_the_plan_key_used_for_more_than_the_read_names_the_key_not_the_user(
    server: Server, connect: Callable[..., SshTransport]
) -> None:
    def plan_key(chan: paramiko.Channel, command: str) -> None:  # what scripts/plankey-read.sh says to apply.sh
        chan.sendall_stderr(b"wgmesh read-only plan key: this key cannot run apply.sh; use the admin key for "
                            b"anything else\n")
        chan.send_exit_status(2)
        chan.close()

    server.behaviours["ubuntu"] = plan_key
    with pytest.raises(SshError) as e:
        connect(user="ubuntu", names=("aws",)).run("aws", "echo hi\n", 30)
    msg = str(e.value)
    assert msg.startswith("the key used to log in as ubuntu on aws is wgmesh's read-only plan key")
    assert "other commands need the admin key (ssh.identity_file or WGMESH_SSH_IDENTITY); if this was plan or " \
        "status, the key's install on this node is broken: run `wgmesh plan-key KEY.pub` again" in msg
    assert "ssh.user" not in msg


def test_a_command_that_never_ends_is_stopped_at_its_deadline(connect: Callable[..., SshTransport]) -> None:
    t = connect()
    started = time.monotonic()
    with pytest.raises(SshError, match=r"^no answer within 1\.5s \(--command-timeout\)$"):
        t.run("n", "echo started; sleep 60\n", 1.5)
    assert 1.4 < time.monotonic() - started < 4
    assert t.run("n", "echo still usable\n", 10).stdout == "still usable\n"  # the connection is fine


def test_command_timeout_option_replaces_the_callers_deadline(connect: Callable[..., SshTransport]) -> None:
    t = connect(command_timeout=1.0)
    with pytest.raises(SshError, match=r"no answer within 1s \(--command-timeout\)"):
        t.run("n", "sleep 60\n", 120)


def test_a_node_that_never_answers_the_exec_request_is_bounded(
    server: Server, connect: Callable[..., SshTransport]
) -> None:
    t = connect()
    server.stall_exec = threading.Event()
    started = time.monotonic()
    with pytest.raises(SshError, match=r"no answer within 1s"):
        t.run("n", "echo hi\n", 1)
    assert time.monotonic() - started < 4


def test_one_slow_node_does_not_hold_up_the_others(connect: Callable[..., SshTransport]) -> None:
    t = connect(names=("slow", "fast"))
    started = time.monotonic()
    got = t.run_many({"slow": "sleep 60\n", "fast": "echo ok\n"}, 1.5)
    assert got["fast"] == CommandResult(0, "ok\n", "")
    assert got["slow"] == "no answer within 1.5s (--command-timeout)"
    assert time.monotonic() - started < 4


def test_a_connection_that_drops_mid_command_is_named(server: Server, connect: Callable[..., SshTransport]) -> None:
    t = connect()

    def drop(chan: paramiko.Channel, command: str) -> None:
        time.sleep(0.3)
        chan.get_transport().close()

    server.behaviours["root"] = drop
    started = time.monotonic()
    with pytest.raises(SshError, match=r"connection to n lost while the command ran"):
        t.run("n", "echo hi\n", 30)
    assert time.monotonic() - started < 3


def test_output_over_the_cap_stops_the_command(
    connect: Callable[..., SshTransport], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert OUTPUT_CAP == 16 * 1024 * 1024
    monkeypatch.setattr(channel_mod, "OUTPUT_CAP", 1024 * 1024)
    t = connect()
    with pytest.raises(SshError, match=r"^output over 1 MiB"):
        t.run("n", "head -c 50000000 /dev/zero\n", 30)


def test_output_cap_message_names_16_mib() -> None:
    assert f"output over {OUTPUT_CAP >> 20} MiB" == "output over 16 MiB"


def test_one_line_strips_control_characters() -> None:
    assert one_line("a\x1b[2J\r\nb\tc\u202e d") == "a [2J b c d"
    assert len(one_line("x" * 500)) == 200


# ---------------------------------------------------------------------------------------- connecting


def test_known_hosts_is_read_once_for_many_connections(
    server: Server, identity: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text("# pinned\n" + server.known_hosts_line())
    loads: list[Path] = []
    real = known_hosts_mod._load_known_hosts
    monkeypatch.setattr(known_hosts_mod, "_load_known_hosts", lambda p: loads.append(p) or real(p))
    t = SshTransport(identity_override=identity, parallelism=4)
    try:
        nodes = [_node(f"n{i}", server.port, known_hosts) for i in range(8)]
        assert t.connect(nodes) == {}
        assert t.connect([_node("again", server.port, known_hosts)]) == {}
        assert t.run_many({n.name: "echo ok\n" for n in nodes}, 10) == {
            n.name: CommandResult(0, "ok\n", "") for n in nodes
        }
    finally:
        t.close()
    assert loads == [known_hosts]


def test_trust_on_first_use_writes_each_key_once(server: Server, identity: str, tmp_path: Path) -> None:
    known_hosts = tmp_path / "known_hosts"
    other = "[other]:22 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHXm0GZzdC1+0ueXmW4Gw0MtMQD5pXu2JJSu6R3GkH4j"
    known_hosts.write_text(other)  # no newline at the end
    added: list[str] = []
    t = SshTransport(identity_override=identity, accept_new_host_keys=True, on_host_key_added=added.append)
    try:
        assert t.connect([_node(f"n{i}", server.port, known_hosts) for i in range(5)]) == {}
    finally:
        t.close()
    lines = known_hosts.read_text().splitlines()
    assert lines[1:] == [server.known_hosts_line().strip()]  # appended on a line of its own, once
    assert added == [f"[127.0.0.1]:{server.port} {server.host_key.get_name()} {fingerprint(server.host_key)}"]
    # the next run trusts it without the option
    t2 = SshTransport(identity_override=identity)
    try:
        assert t2.connect([_node("n", server.port, known_hosts)]) == {}
    finally:
        t2.close()


def test_unknown_host_key_is_refused_with_its_fingerprint(server: Server, identity: str, tmp_path: Path) -> None:
    t = SshTransport(identity_override=identity)
    errors = t.connect([_node("n", server.port, tmp_path / "known_hosts")])
    assert errors["n"].startswith(
        f"unknown host key for [127.0.0.1]:{server.port}: {server.host_key.get_name()} "
        f"{fingerprint(server.host_key)} is not in {tmp_path / 'known_hosts'}. Verify the fingerprint"
    )
    assert not (tmp_path / "known_hosts").exists()


def test_host_key_mismatch_is_refused(server: Server, identity: str, tmp_path: Path) -> None:
    other = paramiko.ECDSAKey.generate()
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{server.port} {other.get_name()} {other.get_base64()}\n")
    t = SshTransport(identity_override=identity, accept_new_host_keys=True)
    errors = t.connect([_node("n", server.port, known_hosts)])
    assert errors["n"].startswith(
        f"host key mismatch for root@127.0.0.1:{server.port}: the server offered {server.host_key.get_name()} "
        f"{fingerprint(server.host_key)}, but {known_hosts} pins {fingerprint(other)}."
    )


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b"# ok\n[h]:22 ssh-ed25519 SECRET=TOKEN=not-base64!!\n", "line 2 is not a valid known_hosts entry"),
        (b"PATH=/usr/bin\x00AWS_SECRET_ACCESS_KEY=abc\xff\xfe def ghi\n", "line 1 is not UTF-8 text"),
        (b"h ssh-ed25519 QUJDREVGR0g=\n", "line 1 is not a valid known_hosts entry"),
    ],
)
def test_a_broken_known_hosts_names_file_and_line_never_its_content(
    server: Server, identity: str, tmp_path: Path, content: bytes, why: str
) -> None:
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_bytes(content)
    t = SshTransport(identity_override=identity)
    errors = t.connect([_node("a", server.port, known_hosts), _node("b", server.port, known_hosts)])
    assert errors == {n: f"cannot read known_hosts {known_hosts}: {why}" for n in ("a", "b")}
    assert "SECRET" not in str(errors) and "AWS" not in str(errors)


def test_an_ipv6_host_is_pinned_under_its_canonical_address(host_key: paramiko.PKey, tmp_path: Path) -> None:
    """`ssh.host: FD50:4:0:0::12` is the host known_hosts pins as `[fd50:4::12]:2222`, and the reverse, as OpenSSH
    compares addresses (review B9: "unknown host key"). Names stay as written."""
    other = paramiko.ECDSAKey.generate()
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(f"[fd50:4::12]:2222 {host_key.get_name()} {host_key.get_base64()}\n"
                           f"FD50:4:0:0::13 {other.get_name()} {other.get_base64()}\n")
    pins = known_hosts_mod.KnownHosts()
    name = known_hosts_mod.known_hosts_name("FD50:4:0:0::12", 2222)
    assert name == "[fd50:4::12]:2222"
    assert pins.keys_for(known_hosts, name) == [host_key]
    assert pins.keys_for(known_hosts, known_hosts_mod.known_hosts_name("fd50:4::13", 22)) == [other]
    assert known_hosts_mod.known_hosts_name("Node-1.Example.com", 22) == "node-1.example.com"  # as OpenSSH


def test_known_hosts_that_is_not_a_file_is_refused(server: Server, identity: str, tmp_path: Path) -> None:
    t = SshTransport(identity_override=identity)
    errors = t.connect([_node("a", server.port, tmp_path)])
    assert errors == {"a": f"cannot read known_hosts {tmp_path}: not a regular file"}


def test_any_exception_while_connecting_is_that_nodes_error(
    server: Server, identity: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(server.known_hosts_line())
    real = SshTransport._connect

    def flaky(self: SshTransport, ssh: Ssh, sock: object = None) -> paramiko.SSHClient:
        if ssh.user == "bad":
            raise RuntimeError("\x1b[2Jsurprise")
        return real(self, ssh, sock)  # type: ignore[arg-type]

    monkeypatch.setattr(SshTransport, "_connect", flaky)
    t = SshTransport(identity_override=identity)
    try:
        errors = t.connect([_node("a", server.port, known_hosts, user="bad"), _node("b", server.port, known_hosts)])
        assert errors == {"a": f"cannot connect to bad@127.0.0.1:{server.port}: RuntimeError: [2Jsurprise"}
        assert t.run("b", "echo ok\n", 10).stdout == "ok\n"
    finally:
        t.close()


# ---------------------------------------------------------------------------------------- moved from tests/test_ssh.py


def test_fingerprint_matches_ssh_keygen(tmp_path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "k")], check=True)
    out = subprocess.run(["ssh-keygen", "-lf", str(tmp_path / "k.pub")], capture_output=True, text=True, check=True)
    pub = paramiko.Ed25519Key(filename=str(tmp_path / "k"))
    assert fingerprint(pub) == out.stdout.split()[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_refused_connection_is_named_and_retried_once(tmp_path: Path) -> None:
    port = _free_port()  # nothing listens there
    t = SshTransport(timeout=2)
    started = time.monotonic()
    with pytest.raises(SshError, match=rf"cannot connect to root@127.0.0.1:{port}"):
        t._connect_with_retry(_node("n", port, tmp_path / "known_hosts"))
    assert time.monotonic() - started >= 0.3  # the one retry waited before trying again


def test_silent_server_times_out(tmp_path: Path) -> None:
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen()
        t = SshTransport(timeout=0.5)
        with pytest.raises(SshError, match=r"timed out|cannot connect"):
            t._connect(_node("n", srv.getsockname()[1], tmp_path / "known_hosts").ssh)


def test_missing_identity_file_is_named(tmp_path: Path) -> None:
    t = SshTransport(identity_override=str(tmp_path / "nope"))
    with pytest.raises(SshError, match=r"identity file .*nope does not exist"):
        t._connect(_node("n", 22, tmp_path / "known_hosts").ssh)


def test_the_plan_key_answer_is_what_its_script_prints() -> None:
    script = (Path(channel_mod.__file__).parent / "scripts" / "plankey-read.sh").read_text()
    assert f"printf '{channel_mod.PLAN_KEY_ANSWER} %s;" in script
