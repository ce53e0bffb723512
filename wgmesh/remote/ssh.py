"""The transport: one paramiko connection per node, opened in parallel, host keys pinned.

Every node command goes through `SshTransport.run`: the command line is `transport.node_command(ssh)`
(`/bin/sh -s`, or `sudo -n /bin/sh -s` for a non-root user) and the script goes on its standard input, never
on the command line: nothing from mesh.yaml reaches a remote shell except as a quoted word inside a script built
from validated values, nothing secret shows in `ps`, and large configs are not limited by the remote ARG_MAX.

What `run` guarantees, for every command:
- a deadline: past it the channel is closed and the node's error names it;
- an output cap (stdout and stderr together): past it the channel is closed, memory stays bounded;
- the script really ran: its first line prints READY_MARK. Without it, what the node said instead is turned
  into the reason and the fix: sudo wanting a password, a forced command refusing the login (cloud-init's
  "Please login as the user ..."), no sudo on the node.

known_hosts files are read once per run (per transport), whatever the number of connections.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import logging
import os
import re
import select
import socket
import stat
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from wgmesh.core.model import Node, Ssh
from wgmesh.remote.transport import ASK_MARK, DEFAULT_COMMAND_TIMEOUT, CommandResult, SshError, node_command

if TYPE_CHECKING:
    import paramiko

DEFAULT_PARALLELISM = 10
DEFAULT_TIMEOUT = 10.0
EOF_GRACE = 2.0
OUTPUT_CAP = 16 * 1024 * 1024  # stdout + stderr of one command
KEEPALIVE = 5  # seconds between SSH keepalives on an idle connection
DROP_TIMEOUT = 20  # seconds of unacknowledged data (keepalives included) after which the kernel drops the socket
BANNER_WAIT = 3.0  # output that is not our shell's, and no sign of it this long after: a forced command answered
KNOWN_HOSTS_MAX = 64 * 1024 * 1024

READY_MARK = "@@wgmesh:ready"
_READY_LINE = f"echo '{READY_MARK}'\n"
_READY_BYTES = (READY_MARK + "\n").encode()
_ASK_BYTES = (ASK_MARK + "\n").encode()
_PRE_MAX = 64 * 1024  # output before READY_MARK (a chatty .bashrc) that we wait through
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2066-\u2069]+")
_SUGGESTED_USER = re.compile(r"""log\s*in\s+as\s+(?:the\s+user\s+)?["'`]?([a-z_][a-z0-9_.-]{0,31})\b""", re.I)


def _paramiko():  # type: ignore[no-untyped-def]
    """Import paramiko on first use, without `invoke`: paramiko imports it only to run ssh_config's
    `Match exec`, which wgmesh never reads, and it costs about half of paramiko's import time."""
    if "paramiko" not in sys.modules and "invoke" not in sys.modules:
        sys.modules["invoke"] = None  # type: ignore[assignment]
        try:
            import paramiko
        finally:
            del sys.modules["invoke"]
        # paramiko logs its own tracebacks (e.g. of a transport thread that lost its socket) to stderr; a
        # node's failure reaches the user as that node's error instead, once, without a traceback.
        logging.getLogger("paramiko").addHandler(logging.NullHandler())
        logging.getLogger("paramiko").propagate = False
    import paramiko

    return paramiko


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH's SHA256 fingerprint, as `ssh-keygen -lf` prints it."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def one_line(text: str, limit: int = 200) -> str:
    """Text from a node, safe to show: control characters gone, one line, at most `limit` characters."""
    s = " ".join(_CONTROL.sub(" ", text).split())
    return s if len(s) <= limit else s[: limit - 1] + "…"


def _known_hosts_name(host: str, port: int) -> str:
    return host if port == 22 else f"[{host}]:{port}"


# ------------------------------------------------------------------------------------ known_hosts


@dataclass
class _Pins:
    """One known_hosts file, indexed: plain names map to their keys in file order; hashed names are few."""

    plain: dict[str, list[paramiko.PKey]] = field(default_factory=dict)
    hashed: list[tuple[str, paramiko.PKey]] = field(default_factory=list)

    def add(self, name: str, key: paramiko.PKey) -> None:
        if name.startswith("|1|"):
            self.hashed.append((name, key))
        else:
            self.plain.setdefault(name, []).append(key)

    def keys_for(self, name: str) -> list[paramiko.PKey]:
        """The pinned keys of `name`, the first one of each type (as paramiko's own lookup picks)."""
        found = list(self.plain.get(name, ()))
        if self.hashed:
            from paramiko.hostkeys import HostKeys

            found += [k for h, k in self.hashed if HostKeys.hash_host(name, h) == h]
        out: dict[str, paramiko.PKey] = {}
        for k in found:
            out.setdefault(k.get_name(), k)
        return list(out.values())


def _load_known_hosts(path: Path) -> _Pins:
    """Read and index one known_hosts file. Errors name the file and the line, never the line's text."""
    from paramiko.hostkeys import HostKeyEntry

    pins = _Pins()
    try:
        st = path.stat()
    except FileNotFoundError:
        return pins  # nothing pinned yet: every host is unknown
    except OSError as e:
        raise SshError(f"cannot read known_hosts {path}: {e.strerror or type(e).__name__}") from None
    if not stat.S_ISREG(st.st_mode):
        raise SshError(f"cannot read known_hosts {path}: not a regular file")
    try:
        with path.open("rb") as f:
            data = f.read(KNOWN_HOSTS_MAX + 1)
    except OSError as e:
        raise SshError(f"cannot read known_hosts {path}: {e.strerror or type(e).__name__}") from None
    if len(data) > KNOWN_HOSTS_MAX:
        raise SshError(f"cannot read known_hosts {path}: larger than {KNOWN_HOSTS_MAX >> 20} MiB")
    for lineno, raw in enumerate(data.split(b"\n"), 1):
        try:
            line = raw.decode().strip()
        except UnicodeDecodeError:
            raise SshError(f"cannot read known_hosts {path}: line {lineno} is not UTF-8 text") from None
        if not line or line.startswith(("#", "@")):  # comments; @cert-authority/@revoked: not supported
            continue
        try:
            entry = HostKeyEntry.from_line(line, lineno)
        except Exception:  # invalid base64 or key data: paramiko's messages quote the line
            raise SshError(f"cannot read known_hosts {path}: line {lineno} is not a valid known_hosts entry") from None
        if entry is None:  # too few fields or a key type paramiko does not know: skipped, as paramiko does
            continue
        for name in entry.hostnames:
            pins.add(name, entry.key)
    return pins


# ------------------------------------------------------------------------------------ the transport


class SshTransport:
    def __init__(
        self,
        *,
        parallelism: int = DEFAULT_PARALLELISM,
        timeout: float = DEFAULT_TIMEOUT,
        command_timeout: float | None = None,
        accept_new_host_keys: bool = False,
        identity_override: str | None = None,
        on_progress: Callable[[str, str], None] | None = None,
        on_host_key_added: Callable[[str], None] | None = None,
    ) -> None:
        self.parallelism = max(1, parallelism)
        self.timeout = timeout
        self.command_timeout = command_timeout  # --command-timeout: replaces every caller's deadline
        self.accept_new = accept_new_host_keys
        self.identity_override = (
            identity_override if identity_override is not None else os.environ.get("WGMESH_SSH_IDENTITY")
        )
        self.on_progress = on_progress or (lambda node, status: None)
        self.on_host_key_added = on_host_key_added or (lambda line: None)
        self._clients: dict[str, paramiko.SSHClient] = {}
        self._ssh: dict[str, Ssh] = {}
        self._extra: list[paramiko.SSHClient] = []
        self._known_hosts_lock = threading.Lock()
        self._known_hosts: dict[Path, _Pins | SshError] = {}

    # -------------------------------------------------------------------------------- connecting

    def connect(self, nodes: Iterable[Node]) -> dict[str, str]:
        nodes = list(nodes)
        errors: dict[str, str] = {}
        _paramiko()  # once, before the threads
        for n in nodes:
            self._ssh[n.name] = n.ssh
        with ThreadPoolExecutor(max_workers=min(self.parallelism, max(1, len(nodes)))) as pool:
            futures = {n.name: (n, pool.submit(self._connect_with_retry, n)) for n in nodes}
            for name, (n, fut) in futures.items():
                try:
                    self._clients[name] = fut.result()
                    self.on_progress(name, "connected")
                except SshError as e:
                    errors[name] = str(e)
                    self.on_progress(name, "failed")
                except Exception as e:  # a bug or an unforeseen failure: this node's error, never the run's
                    where = f"{n.ssh.user}@{n.ssh.host}:{n.ssh.port}"
                    errors[name] = f"cannot connect to {where}: {type(e).__name__}: {one_line(str(e))}"
                    self.on_progress(name, "failed")
        return errors

    def _connect_with_retry(self, node: Node) -> paramiko.SSHClient:
        self.on_progress(node.name, "connecting")
        started = time.monotonic()
        try:
            return self._connect(node.ssh)
        except SshError as e:
            # One retry, only for a connection that failed at once (a refused or reset socket),
            # never for a host key problem or an authentication failure.
            if getattr(e, "retryable", False) and time.monotonic() - started < 1.0:
                time.sleep(0.3)
                return self._connect(node.ssh)
            raise

    def _pins(self, known_hosts: Path) -> _Pins:
        """The known_hosts file, read on first use and kept for the run (a failure too)."""
        with self._known_hosts_lock:
            pins = self._known_hosts.get(known_hosts)
            if pins is None:
                try:
                    pins = _load_known_hosts(known_hosts)
                except SshError as e:
                    pins = e
                self._known_hosts[known_hosts] = pins
        if isinstance(pins, SshError):
            raise SshError(str(pins))
        return pins

    def _client(self, ssh: Ssh) -> paramiko.SSHClient:
        paramiko = _paramiko()

        pins = self._pins(ssh.known_hosts)
        name = _known_hosts_name(ssh.host, ssh.port)
        client = paramiko.SSHClient()
        with self._known_hosts_lock:
            keys = pins.keys_for(name)
        for key in keys:  # only this host's pins: no reload, no scan of the whole file per connection
            client.get_host_keys().add(name, key.get_name(), key)
        client.set_missing_host_key_policy(_PinnedPolicy(self, ssh.known_hosts))
        return client

    def _connect(self, ssh: Ssh, sock: paramiko.Channel | None = None) -> paramiko.SSHClient:
        paramiko = _paramiko()

        if ssh.proxy_jump and sock is None:
            jump_to = ssh.proxy_jump
            user, host, port = jump_to.user or ssh.user, jump_to.host, jump_to.port or 22
            jump = self._connect(
                Ssh(host=host, port=port, user=user, known_hosts=ssh.known_hosts, identity_file=ssh.identity_file)
            )
            self._extra.append(jump)
            transport = jump.get_transport()
            assert transport is not None
            try:
                sock = transport.open_channel(
                    "direct-tcpip", (ssh.host, ssh.port), ("127.0.0.1", 0), timeout=self.timeout
                )
            except (paramiko.SSHException, OSError) as e:
                raise SshError(f"proxy jump {host} cannot reach {ssh.host}:{ssh.port}: {e}") from None

        identity = self.identity_override or (str(ssh.identity_file) if ssh.identity_file else None)
        if identity and not Path(identity).expanduser().exists():
            raise SshError(f"identity file {identity} does not exist (ssh.identity_file or WGMESH_SSH_IDENTITY)")
        client = self._client(ssh)
        where = f"{ssh.user}@{ssh.host}:{ssh.port}"
        proxy = None
        if ssh.proxy_command and sock is None:  # ssh.proxy_command: the connection rides on a local command
            from wgmesh.remote.proxycommand import open_proxy

            try:
                sock = proxy = open_proxy(ssh)
            except OSError as e:
                client.close()
                raise SshError(f"cannot start the proxy command of {where}: {e.strerror or e}") from None
        try:
            client.connect(
                ssh.host,
                port=ssh.port,
                username=ssh.user,
                key_filename=str(Path(identity).expanduser()) if identity else None,
                timeout=self.timeout,
                banner_timeout=self.timeout,
                auth_timeout=self.timeout,
                allow_agent=True,
                look_for_keys=identity is None,
                sock=sock,
            )
        except paramiko.BadHostKeyException as e:
            client.close()
            raise SshError(
                f"host key mismatch for {where}: the server offered {e.key.get_name()} {fingerprint(e.key)}, "
                f"but {ssh.known_hosts} pins {fingerprint(e.expected_key)}. Someone may be intercepting the "
                f"connection; if the host key really changed, verify it and replace its line in known_hosts"
            ) from None
        except _UnknownHostKey as e:
            client.close()
            raise SshError(str(e)) from None
        except paramiko.AuthenticationException as e:
            client.close()
            raise SshError(
                f"authentication failed for {where} ({e}); check ssh.identity_file, WGMESH_SSH_IDENTITY or ssh-agent"
            ) from None
        except TimeoutError:
            client.close()
            if proxy is not None:
                why = proxy.explain(f"timed out after {self.timeout:g}s")
                raise SshError(f"cannot connect to {where}: {why}") from None
            raise SshError(f"timed out connecting to {where} after {self.timeout:g}s") from None
        except (OSError, EOFError, paramiko.SSHException) as e:
            client.close()
            reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e) or type(e).__name__
            reason = proxy.explain(reason) if proxy is not None else reason
            err = SshError(f"cannot connect to {where}: {reason}")
            err.retryable = isinstance(e, ConnectionError | paramiko.ssh_exception.NoValidConnectionsError)  # type: ignore[attr-defined]
            raise err from None
        except BaseException:
            client.close()
            raise
        finally:
            if proxy is not None and client.get_transport() is None:  # failed: the proxy's process goes too
                proxy.close()
        _watch_connection(client)
        return client

    def _remember_host_key(self, known_hosts: Path, hostname: str, key: paramiko.PKey) -> None:
        paramiko = _paramiko()

        line = f"{hostname} {key.get_name()} {key.get_base64()}\n"
        with self._known_hosts_lock:
            pins = self._known_hosts.get(known_hosts)
            if isinstance(pins, _Pins):
                same = [k for k in pins.keys_for(hostname) if k.get_name() == key.get_name()]
                if same and same[0] == key:
                    return  # a parallel connection to the same host learned it a moment ago
                if same:
                    raise paramiko.BadHostKeyException(hostname, key, same[0])
            known_hosts.parent.mkdir(parents=True, exist_ok=True)
            with known_hosts.open("a+b") as f:
                f.seek(0, os.SEEK_END)
                if f.tell():
                    f.seek(f.tell() - 1)
                    if f.read(1) != b"\n":
                        line = "\n" + line
                f.write(line.encode())
            if isinstance(pins, _Pins):
                pins.add(hostname, key)
        self.on_host_key_added(f"{hostname} {key.get_name()} {fingerprint(key)}")

    # -------------------------------------------------------------------------------- running

    def run(self, node: str, script: str, timeout: float | None = None) -> CommandResult:
        """Run `script` on `node` through `node_command`, within the deadline (--command-timeout replaces
        the caller's). Raises SshError naming the reason and the fix when the script did not run to the end."""
        return self._command(node, script, timeout, None)

    def converse(
        self, node: str, first: str, decide: Callable[[str], str | None], timeout: float | None = None
    ) -> CommandResult:
        """`run` for a script that asks (transport.ASK_MARK): the same command line, deadline and output cap;
        stdin stays open until `decide` has answered (see Transport.converse)."""
        return self._command(node, first, timeout, decide)

    def reconnect(self, node: str) -> None:
        """A new connection to `node` in place of the current one (closed first): see Transport.reconnect."""
        ssh = self._ssh.get(node)
        if ssh is None:
            raise SshError("not connected")
        old = self._clients.pop(node, None)
        if old is not None:
            with contextlib.suppress(Exception):
                old.close()
        try:
            self._clients[node] = self._connect(ssh)
        except SshError:
            raise
        except Exception as e:  # as in connect: this node's error, never the run's
            where = f"{ssh.user}@{ssh.host}:{ssh.port}"
            raise SshError(f"cannot connect to {where}: {type(e).__name__}: {one_line(str(e))}") from None

    def _command(
        self, node: str, script: str, timeout: float | None, decide: Callable[[str], str | None] | None
    ) -> CommandResult:
        """The one wrapper of every node command (see the module's docstring)."""
        paramiko = _paramiko()

        limit = self.command_timeout or timeout or DEFAULT_COMMAND_TIMEOUT
        deadline = time.monotonic() + limit
        client = self._clients.get(node)
        if client is None:
            raise SshError("not connected")
        ssh = self._ssh[node]
        transport = client.get_transport()
        if transport is None or not transport.is_active():
            raise SshError("connection lost")
        try:
            chan = transport.open_session(timeout=min(self.timeout, limit))
        except (OSError, EOFError, paramiko.SSHException) as e:
            raise SshError(f"connection lost: cannot open a session: {e or type(e).__name__}") from None
        expired = threading.Event()

        def expire() -> None:  # exec_command and a stuck send block in paramiko: closing the channel frees them
            expired.set()
            with contextlib.suppress(Exception):  # a dead connection cannot send the close: it is closed anyway
                chan.close()

        watchdog = threading.Timer(max(0.0, deadline - time.monotonic()), expire)
        watchdog.daemon = True
        watchdog.start()
        try:
            try:
                chan.exec_command(node_command(ssh))
            except paramiko.SSHException:
                if expired.is_set() or not transport.is_active():
                    raise
                # The channel closed at once: the node refused the command or answered and hung up (sudo
                # wanting a password can be that fast); what it sent before tells which.
            got = _exchange(chan, (_READY_LINE + script).encode(), deadline, decide)
        except _OverCap:
            raise SshError(
                f"output over {OUTPUT_CAP >> 20} MiB (stdout and stderr together): the command was stopped"
            ) from None
        except (OSError, EOFError, paramiko.SSHException) as e:
            if expired.is_set() or time.monotonic() >= deadline:
                raise SshError(_deadline_message(limit)) from None
            if not transport.is_active():
                raise SshError(f"connection to {node} lost while the command ran") from None
            raise SshError(f"connection lost: {e or type(e).__name__}") from None
        finally:
            watchdog.cancel()
            with contextlib.suppress(Exception):
                chan.close()
        if got.timed_out or (expired.is_set() and not got.exited):
            raise SshError(_deadline_message(limit))
        if got.exited is False and not got.early and not transport.is_active():
            raise SshError(f"connection to {node} lost while the command ran")
        return _outcome(node, ssh, got, lost=not transport.is_active())

    def run_many(self, scripts: Mapping[str, str], timeout: float | None = None) -> dict[str, CommandResult | str]:
        """Run one script per node in parallel; a failure is returned as its message."""

        def one(name: str) -> CommandResult | str:
            try:
                return self.run(name, scripts[name], timeout)
            except SshError as e:
                return str(e)
            except Exception as e:  # unforeseen: still this node's error, never the run's
                return f"the command failed on the controller: {type(e).__name__}: {one_line(str(e))}"

        with ThreadPoolExecutor(max_workers=min(self.parallelism, max(1, len(scripts)))) as pool:
            futures = {name: pool.submit(one, name) for name in scripts}
            return {name: f.result() for name, f in futures.items()}

    def close(self) -> None:
        for c in list(self._clients.values()) + self._extra:
            c.close()
        self._clients.clear()
        self._extra.clear()


def _watch_connection(client: paramiko.SSHClient) -> None:
    """Keepalives on an idle connection, and a kernel that drops the socket when they go unacknowledged for
    DROP_TIMEOUT: a connection that dies mid-command then ends the command, well within its deadline."""
    transport = client.get_transport()
    if transport is None:
        return
    transport.set_keepalive(KEEPALIVE)
    sock = transport.sock
    if isinstance(sock, socket.socket) and hasattr(socket, "TCP_USER_TIMEOUT") and sock.family != socket.AF_UNIX:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, DROP_TIMEOUT * 1000)


def _deadline_message(limit: float) -> str:
    return f"no answer within {limit:g}s (--command-timeout)"


class _OverCap(Exception):
    pass


@dataclass
class _Exchange:
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


def _exchange(
    chan: paramiko.Channel, data: bytes, deadline: float, decide: Callable[[str], str | None] | None = None
) -> _Exchange:
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
            raise _OverCap
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

    def result(**kw: bool) -> _Exchange:
        exited = chan.status_event.is_set() and chan.exit_status != -1
        return _Exchange(chan.exit_status if exited else -1, exited, ready, bytes(pre), bytes(out), bytes(err), **kw)

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


def _outcome(node: str, ssh: Ssh, got: _Exchange, *, lost: bool) -> CommandResult:
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
                f'"{user} ALL=(ALL) NOPASSWD: ALL") or set ssh.sudo: false if {user} already has the rights'
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


class _UnknownHostKey(Exception):
    pass


class _PinnedPolicy:
    """Refuse unknown host keys, or with --accept-new-host-keys record them (trust on first use).
    A mismatch is always refused: paramiko raises BadHostKeyException before asking a policy."""

    def __init__(self, transport: SshTransport, known_hosts: Path) -> None:
        self.transport = transport
        self.known_hosts = known_hosts

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        if self.transport.accept_new:
            self.transport._remember_host_key(self.known_hosts, hostname, key)
            client.get_host_keys().add(hostname, key.get_name(), key)
            return
        raise _UnknownHostKey(
            f"unknown host key for {hostname}: {key.get_name()} {fingerprint(key)} is not in "
            f"{self.known_hosts}. Verify the fingerprint on the host (ssh-keygen -lf "
            f"/etc/ssh/ssh_host_{key.get_name().removeprefix('ssh-')}_key.pub) and add it to known_hosts, "
            f"or run with --accept-new-host-keys to trust it on first use"
        )
