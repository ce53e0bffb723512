"""Reading one command's channel, and judging what came back.

`exchange` sends the script as the command's stdin while it reads stdout and stderr, within a deadline and
an output cap (stdout and stderr together: past it the command is stopped, memory stays bounded). The
script's first line prints READY_MARK: without it, `outcome` turns what the node said instead into the
reason and the fix (sudo wanting a password, a forced command refusing the login such as cloud-init's
"Please login as the user ...", no sudo on the node). The transport (ssh.py) opens the channel and maps
what this module raises to the node's error.
"""

from __future__ import annotations

import re
import select
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from wgmesh.core.model import Ssh
from wgmesh.remote.transport import ASK_MARK, CommandResult, SshError, node_command

if TYPE_CHECKING:
    import paramiko

EOF_GRACE = 2.0
OUTPUT_CAP = 16 * 1024 * 1024  # stdout + stderr of one command
BANNER_WAIT = 3.0  # output that is not our shell's, and no sign of it this long after: a forced command answered

READY_MARK = "@@wgmesh:ready"
READY_LINE = f"echo '{READY_MARK}'\n"
_READY_BYTES = (READY_MARK + "\n").encode()
_ASK_BYTES = (ASK_MARK + "\n").encode()
_PRE_MAX = 64 * 1024  # output before READY_MARK (a chatty .bashrc) that we wait through
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2066-\u2069]+")
_SUGGESTED_USER = re.compile(r"""log\s*in\s+as\s+(?:the\s+user\s+)?["'`]?([a-z_][a-z0-9_.-]{0,31})\b""", re.I)

# What the plan key's forced command (scripts/plankey-read.sh) answers to anything but wgmesh's read.
PLAN_KEY_ANSWER = "wgmesh read-only plan key:"


def one_line(text: str, limit: int = 200) -> str:
    """Text from a node, safe to show: control characters gone, one line, at most `limit` characters."""
    s = " ".join(_CONTROL.sub(" ", text).split())
    return s if len(s) <= limit else s[: limit - 1] + "…"


def deadline_message(limit: float) -> str:
    return f"no answer within {limit:g}s (--command-timeout)"


class OverCap(Exception):
    """The output passed OUTPUT_CAP; the message says so."""


@dataclass
class Exchange:
    """What came back from one command, before it is judged."""

    status: int  # -1: none (yet)
    exited: bool  # an exit status arrived
    ready: bool  # our shell printed READY_MARK: the script ran
    pre: bytes  # stdout before READY_MARK (all of stdout when the script never ran)
    stdout: bytes
    stderr: bytes
    early: bool = False  # stopped early: output that is not our shell's (a forced command)
    timed_out: bool = False


def _ask_at(out: bytearray, start: int) -> int:
    """Where the line ASK_MARK starts in `out` (searching from `start`), or -1."""
    i = out.find(_ASK_BYTES, start)
    while i > 0 and out[i - 1] != 0x0A:
        i = out.find(_ASK_BYTES, i + 1)
    return i


def exchange(
    chan: paramiko.Channel, data: bytes, deadline: float, decide: Callable[[str], str | None] | None = None
) -> Exchange:
    """Send `data` as the command's stdin while reading stdout and stderr, until the command has exited and
    the channel reached EOF, the deadline passes, or the output passes OUTPUT_CAP.

    sshd may send the exit status before the last output, so EOF is awaited too; but a daemon started by
    the script could hold the channel open, so after the exit status EOF is awaited for EOF_GRACE only.
    Sending never blocks: a command that does not read its stdin (a forced command) cannot stall us.

    With `decide`, stdin stays open after `data` until the script prints the line ASK_MARK; `decide` gets the
    script's stdout before that line (once) and returns more to send, or None; then stdin is closed.
    """
    asking = decide is not None
    scanned = 0  # how far stdout was searched for ASK_MARK
    pre = bytearray()
    out = bytearray()
    err = bytearray()
    ready = False
    total = 0
    sent = 0
    writing = True
    first_output: float | None = None
    exited_at: float | None = None
    poller = select.poll()  # not select(): a run with hundreds of connections has descriptors past FD_SETSIZE
    poller.register(chan.fileno(), select.POLLIN)

    def take(chunk: bytes, to: bytearray) -> None:
        nonlocal total
        total += len(chunk)
        if total > OUTPUT_CAP:
            raise OverCap(f"output over {OUTPUT_CAP >> 20} MiB (stdout and stderr together): the command was stopped")
        to += chunk

    def drain() -> None:
        nonlocal ready, first_output
        while chan.recv_ready():
            chunk = chan.recv(65536)
            if not chunk:
                break
            first_output = first_output or time.monotonic()
            if ready:
                take(chunk, out)
                continue
            take(chunk, pre)
            i = pre.find(_READY_BYTES)
            if i >= 0:  # what came before it (a chatty .bashrc, without a newline at its end even) is dropped
                ready = True
                out.extend(pre[i + len(_READY_BYTES) :])
                del pre[i:]
        while chan.recv_stderr_ready():
            chunk = chan.recv_stderr(65536)
            if not chunk:
                break
            first_output = first_output or time.monotonic()
            take(chunk, err)

    def result(**kw: bool) -> Exchange:
        exited = chan.status_event.is_set() and chan.exit_status != -1
        return Exchange(chan.exit_status if exited else -1, exited, ready, bytes(pre), bytes(out), bytes(err), **kw)

    while True:
        if writing:
            try:
                while sent < len(data) and chan.send_ready() and not chan.closed:
                    n = chan.send(data[sent : sent + 32768])
                    if n <= 0:
                        break
                    sent += n
                if sent >= len(data) and not asking:
                    chan.shutdown_write()
                    writing = False
            except (OSError, EOFError):
                writing = asking = False  # the remote end stopped reading: what it printed says why
        drain()
        if asking and ready:
            at = _ask_at(out, scanned)
            if at < 0:
                scanned = max(0, len(out) - len(_ASK_BYTES))
            else:
                asking = False
                assert decide is not None
                answer = decide(out[:at].decode(errors="replace"))
                if answer:
                    data = data + answer.encode()
                continue  # send it now
        now = time.monotonic()
        if chan.exit_status_ready():
            if chan.eof_received or chan.closed:
                break
            exited_at = exited_at or now
            if now - exited_at > EOF_GRACE:
                break
        if now > deadline:
            return result(timed_out=True)
        if (
            not ready
            and first_output is not None
            and (len(pre) > _PRE_MAX or (now - first_output > BANNER_WAIT and b"sudo" not in err))
        ):
            return result(early=True)  # something other than our shell answers, and may sleep before exiting
        if chan.eof_received:
            chan.status_event.wait(0.05)  # only the exit status is still to come
        else:
            poller.poll(50)  # wakes on stdout data and on EOF; stderr and the send window by the timeout
    drain()
    return result()


def outcome(node: str, ssh: Ssh, got: Exchange, *, lost: bool) -> CommandResult:
    """The command's result, or the reason the script never ran on the node, with the fix."""
    if got.ready:
        if not got.exited and lost:
            raise SshError(f"connection to {node} lost while the command ran")
        return CommandResult(got.status, got.stdout.decode(errors="replace"), got.stderr.decode(errors="replace"))
    err = got.stderr.decode(errors="replace")
    user = ssh.user
    if node_command(ssh).startswith("sudo"):
        if "password is required" in err or "a terminal is required" in err:
            raise SshError(
                f"sudo on {node} wants a password for {user}: give {user} passwordless sudo (a sudoers line "
                f'"{user} ALL=(ALL) NOPASSWD: ALL") or set ssh.sudo: false if {user} already has the rights (if '
                "you logged in with the read-only plan key, as CI's plan job does, do neither: that key's own "
                "sudoers file is missing on the node; run `wgmesh plan-key KEY.pub` again with the admin key)"
            )
        if "must have a tty" in err:
            raise SshError(
                f"sudo on {node} refuses to run without a terminal (Defaults requiretty): add a sudoers line "
                f'"Defaults:{user} !requiretty", or set ssh.sudo: false if {user} already has the rights'
            )
        if "not in the sudoers" in err or "not allowed to execute" in err or "may not run sudo" in err:
            raise SshError(
                f"sudo on {node} does not let {user} run /bin/sh as root: give {user} passwordless sudo (a sudoers "
                f'line "{user} ALL=(ALL) NOPASSWD: ALL"), or set ssh.sudo: false if {user} already has the rights'
            )
        if got.status == 127 and "sudo" in err:
            raise SshError(
                f"sudo is not installed on {node} (needed because ssh.user is {user}): install it, log in as "
                "root (ssh.user: root), or set ssh.sudo: false if the user already has the rights"
            )
    if lost and not got.pre and not err:
        raise SshError(f"connection to {node} lost while the command ran")
    said = one_line(got.pre.decode(errors="replace") or err)
    status = f" (exit status {got.status})" if got.exited else ""
    if said.startswith(PLAN_KEY_ANSWER):  # the user is right, the key is not: the CI plan key, used for more
        raise SshError(
            f"the key used to log in as {user} on {node} is wgmesh's read-only plan key, which runs wgmesh's read "
            f"only (it answered: '{said}'): other commands need the admin key (ssh.identity_file or "
            "WGMESH_SSH_IDENTITY); if this was plan or status, the key's install on this node is broken: run "
            "`wgmesh plan-key KEY.pub` again with the admin key"
        )
    m = _SUGGESTED_USER.search(said)
    suggested = m.group(1) if m and m.group(1).lower() not in ("the", "a", "an", user) else None
    fix = (
        f"set ssh.user: {suggested} for this node"
        if suggested
        else "set ssh.user to the user this host lets you log in as (e.g. ssh.user: ubuntu)"
    )
    answer = f": '{said}'" if said else " without a word"
    raise SshError(
        f"the login as {user} on {node} does not run commands (a forced command in authorized_keys?){status}; "
        f"it answered{answer}; {fix}"
    )
