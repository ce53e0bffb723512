"""What the rest of wgmesh needs from a transport; `remote.ssh.SshTransport` is the real one.

Also the two things every node command shares, whatever carries it: the command line that runs a script on a
node (`node_command`: the script itself always travels on stdin, never on a command line that `ps` shows),
and the deadline of each kind of command.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol, TypeVar

from wgmesh.core.checks import ATTEMPTS, HEAD_START, PING_WAIT
from wgmesh.core.model import Node, Ssh

T = TypeVar("T")

# Deadlines, in seconds, per kind of node command; `--command-timeout S` replaces all of them.
READ_TIMEOUT = 30.0  # plan's read, status, import's read: a few quick commands
APPLY_TIMEOUT = 120.0  # apply, rollback, cleanup, enroll, rotate, import's adopt (they may wait for the node lock)
DEFAULT_COMMAND_TIMEOUT = APPLY_TIMEOUT  # a caller that names no deadline still gets one

# A script that asks the controller something (`Transport.converse`) prints this line, then reads one line of
# its standard input: the controller's answer, followed by the rest of the script.
ASK_MARK = "@@wgmesh:ask"
CHECK_PER_TARGET = 0.5  # check: every probe runs at once, but each costs a few processes on the node


def apply_timeout(lock_timeout: float) -> float:
    """An apply-like command waits up to `lock_timeout` for the node lock, then does its work."""
    return max(APPLY_TIMEOUT, lock_timeout + 60.0)


def check_timeout(targets: int) -> float:
    """check pings every target at once, each up to ATTEMPTS times: a fixed part plus a little per target."""
    return ATTEMPTS * PING_WAIT + HEAD_START + 15.0 + CHECK_PER_TARGET * max(0, targets)


def deadline_of(transport: object, timeout: float) -> float:
    """The deadline `transport` gives a command asked for with `timeout`: its --command-timeout replaces it."""
    override = getattr(transport, "command_timeout", None)
    return float(override) if isinstance(override, (int, float)) and override > 0 else timeout


def node_command(ssh: Ssh) -> str:
    """The one command line wgmesh runs on a node; the script comes on its stdin.

    A node whose effective user is not root gets `sudo -n`: never a password prompt (sudo fails at once with
    "a password is required" instead), and the script still travels on stdin, never in `ps`.
    """
    return "sudo -n /bin/sh -s" if ssh.use_sudo else "/bin/sh -s"


_ABANDONED = threading.Event()  # set once a fan-out was left behind by Ctrl-C (see fan_out)
# seconds: the main thread waits for workers in steps this long, so that a Ctrl-C the kernel gave another thread
# (paramiko's) is seen at once (a wait on a lock is interrupted only by a signal to its own thread)
WAKE = 0.2


def fan_out(fn: Callable[[str], T], names: Iterable[str], workers: int) -> dict[str, T]:
    """`fn(name)` for every name on `workers` threads, the results in the names' order. Ctrl-C (KeyboardInterrupt
    in the calling thread) does not wait for the calls in flight (a connection that is not answered takes its
    whole --timeout): the calls not started are cancelled, the exception goes on, and the process may end without
    the rest (`abandoned()`): what they do is reading, connecting or a node-side script that ends with its session."""
    from concurrent.futures import ThreadPoolExecutor, wait

    pool = ThreadPoolExecutor(max_workers=max(1, workers))
    try:
        futures = {name: pool.submit(fn, name) for name in names}
        while wait(futures.values(), timeout=WAKE).not_done:  # (WAKE: Ctrl-C seen at once)
            pass
        return {name: f.result() for name, f in futures.items()}
    except KeyboardInterrupt:
        _ABANDONED.set()
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    finally:
        if not _ABANDONED.is_set():
            pool.shutdown(wait=True)


def abandoned() -> bool:
    """A fan-out was left to its threads by Ctrl-C: the process ends without waiting for them (cli/app.py)."""
    return _ABANDONED.is_set()


class SshError(Exception):
    """A node could not be reached or refused us; the message names the reason and the fix."""


@dataclass(frozen=True)
class CommandResult:
    exit_status: int
    stdout: str
    stderr: str

    @property
    def status_text(self) -> str:
        """The exit status in words, for a failure that printed nothing: -1 is none (sshd sends a signal instead
        when the node's shell is killed)."""
        if self.exit_status == -1:
            return "the node's shell ended without an exit status (killed by a signal?)"
        return f"exit status {self.exit_status}"


class Transport(Protocol):
    """What the rest of wgmesh needs from a transport. `ssh.SshTransport` is the real one."""

    def connect(self, nodes: Iterable[Node]) -> dict[str, str]:
        """Open connections; returns {node name: error message} for the nodes that failed."""
        ...

    def run(self, node: str, script: str, timeout: float) -> CommandResult:
        """Run a script on a connected node within `timeout` seconds; raises SshError when the connection
        fails, the deadline passes, the output is too large, or the node did not run the script (sudo wants a
        password, a forced command answered)."""
        ...

    def run_many(self, scripts: Mapping[str, str], timeout: float) -> dict[str, CommandResult | str]:
        """One script per node, in parallel, each within `timeout`; a node's failure comes back as its message."""
        ...

    def converse(
        self, node: str, first: str, decide: Callable[[str], str | None], timeout: float
    ) -> CommandResult:
        """`run` for a script that asks: send `first` and keep stdin open; when the script prints the line
        ASK_MARK, `decide(its stdout before that line)` returns what to send next (the answer line and the rest
        of the script; stdin is closed after it), or None to close stdin at once (the script reads end-of-file).
        One command through the same wrapper: one deadline and one output cap for the whole exchange. A script
        that ends without asking is just a command that ended."""
        ...

    def reconnect(self, node: str) -> None:
        """Close the node's connection and open a new one (a new TCP connection, and a new one to its proxy
        jump): proof that the path to the node works *now*. Raises SshError when it does not."""
        ...

    def close(self) -> None: ...
