"""SshTransport.converse and .reconnect (what apply needs beyond `run`), against the in-process SSH server of
tests/remote/test_ssh.py: the same wrapper (command line, deadline, output cap) for a script that asks the
controller something halfway, and a new connection on demand."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from remote import test_ssh
from remote.test_ssh import Server

from wgmesh.core.model import Ssh
from wgmesh.remote.ssh import OUTPUT_CAP, SshTransport
from wgmesh.remote.transport import ASK_MARK, CommandResult, SshError, node_command

# test_ssh.py's server and connected transports, as fixtures of this module
host_key, server, identity, connect = test_ssh.host_key, test_ssh.server, test_ssh.identity, test_ssh.connect

ASKS = f"echo before; echo '{ASK_MARK}'; IFS= read -r answer || answer=EOF; echo \"got $answer\"\n"


def test_converse_sends_the_answer_and_the_rest_after_the_question(
    server: Server, connect: Callable[..., SshTransport]
) -> None:
    t = connect()
    seen: list[str] = []

    def decide(text: str) -> str:
        seen.append(text)
        return "go\necho rest ran; exit 4\n"

    got = t.converse("n", ASKS, decide, 10)
    assert seen == ["before\n"]  # once, with what came before the question
    assert got == CommandResult(4, f"before\n{ASK_MARK}\ngot go\nrest ran\n", "")
    assert server.commands == [("root", node_command(Ssh(host="h")))]  # one command, the one wrapper


def test_converse_without_an_answer_closes_stdin(connect: Callable[..., SshTransport]) -> None:
    got = connect().converse("n", ASKS + "echo after\n", lambda text: None, 10)
    assert got.exit_status == 0 and got.stdout.endswith("got EOF\nafter\n")


def test_a_question_in_the_middle_of_a_line_is_not_one(connect: Callable[..., SshTransport]) -> None:
    calls: list[str] = []
    script = f"printf 'x{ASK_MARK}\\n'; echo '{ASK_MARK}'; IFS= read -r a; echo \"got $a\"\n"
    got = connect().converse("n", script, lambda text: calls.append(text) or "ok\n", 10)
    assert calls == [f"x{ASK_MARK}\n"] and got.stdout.endswith("got ok\n")


def test_a_script_that_ends_without_asking_is_a_plain_command(connect: Callable[..., SshTransport]) -> None:
    got = connect().converse("n", "echo 'held elsewhere' >&2; exit 75\n", lambda text: pytest.fail("asked"), 10)
    assert got == CommandResult(75, "", "held elsewhere\n")


def test_converse_has_the_deadline_of_run(connect: Callable[..., SshTransport]) -> None:
    t = connect()
    started = time.monotonic()
    with pytest.raises(SshError, match=r"no answer within 2s"):
        t.converse("n", ASKS + "sleep 30\n", lambda text: "go\n", 2)
    assert time.monotonic() - started < 8


def test_a_question_that_is_never_asked_is_bounded_by_the_deadline(connect: Callable[..., SshTransport]) -> None:
    with pytest.raises(SshError, match=r"no answer within 2s"):
        connect().converse("n", "sleep 30\n", lambda text: "go\n", 2)


def test_converse_has_the_output_cap_of_run(connect: Callable[..., SshTransport]) -> None:
    flood = f"head -c {OUTPUT_CAP + 4096} /dev/zero | tr '\\0' A\n" + ASKS
    with pytest.raises(SshError, match="output over 16 MiB"):
        connect().converse("n", flood, lambda text: pytest.fail("asked after the cap"), 30)


def test_reconnect_opens_a_new_connection(server: Server, connect: Callable[..., SshTransport]) -> None:
    t = connect()
    assert t.run("n", "echo one\n", 10).stdout == "one\n"
    first = t._clients["n"].get_transport()
    t.reconnect("n")
    assert first is not None and not first.is_active(), "the old connection is closed"
    assert t._clients["n"].get_transport() is not first
    assert t.run("n", "echo two\n", 10).stdout == "two\n"
    assert len(server.transports) == 2


def test_reconnect_to_a_node_that_is_gone_is_its_error(connect: Callable[..., SshTransport]) -> None:
    t = connect(timeout=2)
    t._ssh["n"] = Ssh(host="127.0.0.1", port=1, user="root", known_hosts=t._ssh["n"].known_hosts)  # nobody there
    with pytest.raises(SshError, match=r"cannot connect to root@127.0.0.1:1"):
        t.reconnect("n")
    with pytest.raises(SshError, match="not connected"):
        t.run("n", "echo hi\n", 5)  # the old connection was closed first: nothing runs on it
    with pytest.raises(SshError, match="not connected"):
        t.reconnect("nobody")
