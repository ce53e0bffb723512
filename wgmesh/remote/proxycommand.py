"""The socket of a node reached through `ssh.proxy_command`: paramiko's ProxyCommand, run as OpenSSH runs one.

OpenSSH runs a ProxyCommand with the user's shell (`sh -c 'exec CMD'`) after expanding its tokens; so does
this (core/proxycommand.py expands them, each value shell-quoted). paramiko's own ProxyCommand splits the
line itself and runs it without a shell; three more differences are fixed here:
- a proxy that exits makes `recv` return b"" (EOF) at once, so paramiko fails the connection instead of
  spinning until the banner timeout;
- its stderr is drained into a small buffer (a chatty proxy cannot fill the pipe and stall), whose last line
  explains a failed connection ("aws: command not found", "TargetNotConnected"): `explain`;
- it runs in a process group of its own, which `close` ends (children included) and reaps.
The host key is still checked against known_hosts under the node's ssh.host and ssh.port: the proxy carries
bytes, it is never trusted.

Imported by remote/ssh.py after paramiko (whose import is kept lean there).
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import shlex
import signal
import subprocess
import threading

import paramiko

from wgmesh.core.model import Ssh
from wgmesh.core.proxycommand import expand_proxy_command

# paramiko logs a failed transport's traceback through logging's last resort (stderr); wgmesh reports the
# failure itself, as one line.
logging.getLogger("paramiko").addHandler(logging.NullHandler())

EXIT_WAIT = 0.3  # seconds `close` gives the proxy to exit by itself before it is ended
STDERR_KEEP = 4096  # bytes of the proxy's stderr kept for the error message


def proxy_line(ssh: Ssh) -> str:
    """The command line of the node's proxy: `/bin/sh -c 'exec EXPANDED'`, as one shell-quoted string."""
    if not ssh.proxy_command:
        raise ValueError("the node has no ssh.proxy_command")
    expanded = expand_proxy_command(ssh.proxy_command, host=ssh.host, port=ssh.port, user=ssh.user)
    return shlex.join(["/bin/sh", "-c", f"exec {expanded}"])


_RUNNING: set[ProxySock] = set()  # proxies started and not closed yet (end_all)
_RUNNING_LOCK = threading.Lock()


def end_all() -> None:
    """Kill every proxy not closed yet, with what it started: the process is ending without the threads that
    would close them (Ctrl-C during a connection, SIGTERM), and a proxy (`aws ssm start-session`) must not stay
    behind, as OpenSSH ends its ProxyCommand."""
    with _RUNNING_LOCK:
        running = list(_RUNNING)
    for proxy in running:
        proxy._signal(signal.SIGKILL)


class ProxySock(paramiko.ProxyCommand):
    """paramiko.ProxyCommand with a shell, EOF, a drained stderr and a reaped process."""

    def __init__(self, command_line: str) -> None:  # paramiko's, with the proxy in a process group of its own
        self.cmd = shlex.split(command_line)
        self.process = subprocess.Popen(
            self.cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0,
            start_new_session=True,
        )
        self.timeout: float | None = None
        self._err = bytearray()
        self._err_lock = threading.Lock()
        self._killed = False  # closed by us while it still ran (its exit status is then ours, not its own)
        self._drain = threading.Thread(target=self._read_stderr, daemon=True)
        self._drain.start()
        with _RUNNING_LOCK:
            _RUNNING.add(self)

    def _read_stderr(self) -> None:
        stream = self.process.stderr
        assert stream is not None
        with contextlib.suppress(OSError, ValueError):
            while chunk := os.read(stream.fileno(), 65536):
                with self._err_lock:
                    self._err += chunk
                    del self._err[:-STDERR_KEEP]

    def recv(self, size: int) -> bytes:
        """What the proxy wrote, as a socket gives it: some bytes, b"" once it closed its output, or
        socket.timeout when nothing came within the timeout paramiko set."""
        stdout = self.process.stdout
        assert stdout is not None
        try:
            ready, _, _ = select.select([stdout], [], [], self.timeout)
            if not ready:
                raise TimeoutError()
            return os.read(stdout.fileno(), size)
        except TimeoutError:
            raise
        except (OSError, ValueError) as e:
            raise paramiko.ProxyCommandFailure(" ".join(self.cmd), getattr(e, "strerror", None) or str(e)) from None

    def _said(self) -> str | None:
        self._drain.join(0.5)
        with self._err_lock:
            lines = [ln.strip() for ln in self._err.decode(errors="replace").splitlines() if ln.strip()]
        return lines[-1][:300] if lines else None

    def explain(self, reason: str) -> str:
        """The reason a connection through this proxy failed: the proxy's own exit when it ended by itself,
        else paramiko's `reason` and what the proxy last said."""
        if not self._killed:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(0.5)
        status = None if self._killed else self.process.poll()
        said = self._said()
        if status is not None:
            return f"the proxy command exited with status {status}{': ' + said if said else ''}"
        if said:
            return f"no SSH server answered through the proxy command ({reason}); it said: {said}"
        return f"no SSH server answered through the proxy command ({reason})"

    def _signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, sig)

    def close(self) -> None:
        """End the proxy (its stdin closed, then SIGTERM, SIGKILL after 2 s) and reap it."""
        with _RUNNING_LOCK:
            _RUNNING.discard(self)
        with contextlib.suppress(OSError, ValueError):
            if self.process.stdin is not None:
                self.process.stdin.close()
        # a proxy ends on its stdin's end; one that just closed its output may still be exiting
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(EXIT_WAIT)
        if self.process.poll() is None:
            self._killed = True
            self._signal(signal.SIGTERM)
            try:
                self.process.wait(2)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.process.wait(2)
        self._signal(signal.SIGKILL)  # what the proxy started (session-manager-plugin, a `sleep`) goes too
        self._drain.join(1)
        for pipe in (self.process.stdout, self.process.stderr):
            with contextlib.suppress(OSError, ValueError):
                if pipe is not None:
                    pipe.close()


def open_proxy(ssh: Ssh) -> ProxySock:
    """Start the node's proxy command; raises OSError when it cannot be started."""
    return ProxySock(proxy_line(ssh))
