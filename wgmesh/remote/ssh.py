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

channel.py reads a command's channel and judges what came back; known_hosts.py holds the pinned host keys.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import re
import socket
import stat
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wgmesh.core.model import DEFAULT_PARALLELISM, DEFAULT_TIMEOUT, Node, Ssh
from wgmesh.remote.channel import OUTPUT_CAP, READY_LINE, READY_MARK, OverCap, deadline_message, one_line, outcome
from wgmesh.remote.channel import exchange as _exchange  # called by this name: tests/e2e/test_plan.py tees it
from wgmesh.remote.known_hosts import HostKeyRefused, KnownHosts, PinnedPolicy, fingerprint, known_hosts_name
from wgmesh.remote.transport import (
    DEFAULT_COMMAND_TIMEOUT,
    CommandResult,
    SshError,
    deadline_of,
    fan_out,
    node_command,
)

if TYPE_CHECKING:
    import paramiko

__all__ = [
    "DEFAULT_PARALLELISM",
    "DEFAULT_TIMEOUT",
    "OUTPUT_CAP",
    "READY_MARK",
    "SshTransport",
    "fingerprint",
    "one_line",
]

KEEPALIVE = 5  # seconds between SSH keepalives on an idle connection
DROP_TIMEOUT = 20  # seconds of unacknowledged data (keepalives included) after which the kernel drops the socket


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


# ------------------------------------------------------------------------------------ identities


def _others_can_read(st: os.stat_result) -> bool:
    """A key file of ours that group or others may use: OpenSSH refuses it (UNPROTECTED PRIVATE KEY FILE)."""
    return st.st_uid == os.geteuid() and bool(st.st_mode & 0o077)


def _check_identity(identity: str) -> None:
    """The identity file must exist, be a file, and (as OpenSSH requires of a private key file the user owns)
    be readable by its owner only."""
    path = Path(identity).expanduser()
    try:
        st = path.stat()
    except FileNotFoundError:
        raise SshError(f"identity file {identity} does not exist (ssh.identity_file or WGMESH_SSH_IDENTITY)") from None
    except OSError as e:
        raise SshError(f"cannot read the identity file {identity}: {e.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise SshError(f"identity file {identity} is not a file (ssh.identity_file or WGMESH_SSH_IDENTITY)")
    if _others_can_read(st):
        raise SshError(f"identity file {identity} can be read by others (mode {stat.S_IMODE(st.st_mode):04o}): a "
                       f"private key must be private, as OpenSSH requires: chmod 600 {identity}")

def _load_identity(identity: str) -> paramiko.PKey | None:
    """The private key in the identity file; None when it needs a passphrase. SshError naming the file when it
    holds no private key paramiko can use (a .pub, garbage, a DSA key)."""
    import warnings

    from paramiko.pkey import UnknownKeyType

    paramiko = _paramiko()
    try:
        with warnings.catch_warnings():  # cryptography's deprecation of DSA: said below, once, as our own line
            warnings.simplefilter("ignore")
            return paramiko.PKey.from_path(Path(identity).expanduser())
    except paramiko.PasswordRequiredException:
        return None
    except UnknownKeyType as e:
        kind = e.key_type.__name__ if isinstance(e.key_type, type) else str(e.key_type)
        raise SshError(f"cannot use the identity file {identity}: paramiko does not take its key type "
                       f"({kind.removesuffix('PrivateKey')}); use an ed25519 key (ssh-keygen -t ed25519)") from None
    except OSError as e:
        raise SshError(f"cannot read the identity file {identity}: {e.strerror or type(e).__name__}") from None
    except (TypeError, paramiko.SSHException, ValueError) as e:  # (cryptography's own words point to its FAQ)
        if isinstance(e, TypeError) and "password" in str(e).lower():  # cryptography: an OpenSSH key, locked
            return None
        raise SshError(f"cannot use the identity file {identity}: it holds no private key paramiko can read "
                       f"({type(e).__name__}); give the private key, not its .pub (ssh.identity_file or "
                       "WGMESH_SSH_IDENTITY)") from None


OPENSSH_KEY = re.compile(r"-----BEGIN OPENSSH PRIVATE KEY-----(.*?)-----END OPENSSH PRIVATE KEY-----", re.S)
OPENSSH_MAGIC = b"openssh-key-v1\0"


def _identity_public(identity: str) -> bytes | None:
    """The public half of an identity whose private half needs a passphrase: from the file itself (OpenSSH's
    format keeps it unencrypted, as `ssh -i` reads it), else from IDENTITY.pub; None when neither has it."""
    paramiko = _paramiko()
    path = Path(identity).expanduser()
    try:
        found = OPENSSH_KEY.search(path.read_text(errors="replace"))
        if found:
            data = base64.b64decode("".join(found.group(1).split()))
            if data.startswith(OPENSSH_MAGIC):
                msg = paramiko.Message(data[len(OPENSSH_MAGIC):])
                for _ in range(3):  # cipher, kdf, kdf options
                    msg.get_string()
                if msg.get_int() >= 1:
                    return msg.get_binary()
        return base64.b64decode(Path(str(path) + ".pub").read_text().split()[1])
    except (OSError, IndexError, ValueError, paramiko.SSHException):
        return None


def _agent_key_for(identity: str) -> paramiko.PKey | None:
    """ssh-agent's key of the identity (by its public half); None without an agent, a public half or a match."""
    paramiko = _paramiko()
    blob = _identity_public(identity)
    if blob is None:
        return None
    try:
        keys = paramiko.Agent().get_keys()
    except (OSError, paramiko.SSHException):
        return None
    return next((k for k in keys if k.asbytes() == blob), None)


DEFAULT_KEYS = ("id_rsa", "id_ecdsa", "id_ed25519")  # what paramiko's look_for_keys tries, in its order


def _default_keys() -> tuple[list[str], list[str]]:
    """~/.ssh's default keys: those to log in with, and those left out because others can read them (as OpenSSH
    ignores them)."""
    usable: list[str] = []
    loose: list[str] = []
    for name in DEFAULT_KEYS:
        path = Path("~/.ssh", name).expanduser()
        try:
            st = path.stat()
        except OSError:
            continue
        if not stat.S_ISREG(st.st_mode):
            continue
        (loose if _others_can_read(st) else usable).append(str(path))
    return usable, loose


# ------------------------------------------------------------------------------------ the transport


def _host_key_type(algorithm: str) -> str:
    """The key type (as a key's get_name() says it) of a host key algorithm: RSA's SHA-2 signatures are ssh-rsa keys."""
    return "ssh-rsa" if algorithm in ("rsa-sha2-512", "rsa-sha2-256") else algorithm


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
        self._known_hosts = KnownHosts()

    # -------------------------------------------------------------------------------- connecting

    def connect(self, nodes: Iterable[Node]) -> dict[str, str]:
        nodes = list(nodes)
        _paramiko()  # once, before the threads
        by_name = {n.name: n for n in nodes}
        got = fan_out(lambda name: self.connect_node(by_name[name]), [n.name for n in nodes],
                      min(self.parallelism, max(1, len(nodes))))
        return {name: error for name, error in got.items() if error is not None}

    def connect_node(self, node: Node) -> str | None:
        """Connect to one node and keep the connection for its commands; the reason it failed, or None."""
        _paramiko()
        self._ssh[node.name] = node.ssh
        try:
            self._clients[node.name] = self._connect_with_retry(node)
        except SshError as e:
            self.on_progress(node.name, "failed")
            return str(e)
        except Exception as e:  # a bug or an unforeseen failure: this node's error, never the run's
            self.on_progress(node.name, "failed")
            return f"cannot connect to {node.ssh.user}@{node.ssh.host}:{node.ssh.port}: {type(e).__name__}: " \
                   f"{one_line(str(e))}"
        self.on_progress(node.name, "connected")
        return None

    def release(self, node: str) -> None:
        """Close the node's connection: a command with nothing more to run there (plan, once it has read the
        node) keeps no idle connection, whose paramiko thread wakes 10 times a second while the others are read.
        `reconnect` opens a new one."""
        client = self._clients.pop(node, None)
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()

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

    def _client(self, ssh: Ssh, where: str) -> tuple[paramiko.SSHClient, Callable[..., paramiko.Transport]]:
        """A client that checks the host's key against known_hosts (PinnedPolicy: it holds no key of its own,
        so paramiko asks the policy every time), and the transport factory to connect with: it puts the key
        types pinned for the host first among those the server may offer, as OpenSSH does."""
        paramiko = _paramiko()

        name = known_hosts_name(ssh.host, ssh.port)
        pinned = self._known_hosts.keys_for(ssh.known_hosts, name)  # the file is read once per transport
        client = paramiko.SSHClient()
        client.set_missing_host_key_policy(PinnedPolicy(self, ssh.known_hosts, name, where))

        def transport(*args: Any, **kwargs: Any) -> paramiko.Transport:
            t = paramiko.Transport(*args, **kwargs)
            options = t.get_security_options()
            offered = list(options.key_types)
            first = [k for k in offered if any(_host_key_type(k) == p.get_name() for p in pinned)]
            if first:
                options.key_types = first + [k for k in offered if k not in first]
            return t

        return client, transport

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
        default_keys: list[str] = []
        loose: list[str] = []
        pkey: paramiko.PKey | None = None
        unused = ""
        if identity:
            _check_identity(identity)
            pkey = _load_identity(identity)  # None: it needs a passphrase (ssh-agent may hold the key)
            if pkey is None:
                unused = f" ({identity} needs a passphrase: add the key to ssh-agent)"
                # the agent's key of that identity (by its public half) first and alone, as `ssh -i` offers
                # it: offered every agent key in turn, sshd's MaxAuthTries (6) ends the login before it
                pkey = _agent_key_for(identity)
        else:
            default_keys, loose = _default_keys()
            if loose:
                unused = (f" ({', '.join(loose)} left out: others can read {'it' if len(loose) == 1 else 'them'}, "
                          "and OpenSSH ignores such a key too; chmod 600)")
        where = f"{ssh.user}@{ssh.host}:{ssh.port}"
        client, transport_factory = self._client(ssh, where)
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
                pkey=pkey,  # the identity file, read above: the node's refusal of it is a failed login
                key_filename=None if identity else default_keys or None,
                timeout=self.timeout,
                banner_timeout=self.timeout,
                auth_timeout=self.timeout,
                allow_agent=not (identity and pkey is not None),  # an identity given: that key, none other
                look_for_keys=False,  # the default keys are given above, those others cannot read
                sock=sock,
                transport_factory=transport_factory,
            )
        except HostKeyRefused as e:
            client.close()
            raise SshError(str(e)) from None
        except paramiko.AuthenticationException as e:
            client.close()
            raise SshError(
                f"authentication failed for {where} ({e}); check ssh.identity_file, WGMESH_SSH_IDENTITY or ssh-agent"
                f"{unused}"
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
            if reason == "No authentication methods available":
                reason += unused if identity else (" (no key to log in with: set ssh.identity_file or "
                                                   f"WGMESH_SSH_IDENTITY, or add the key to ssh-agent){unused}")
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

    def _remember_host_key(self, known_hosts: Path, hostname: str, key: paramiko.PKey, where: str) -> None:
        """--accept-new-host-keys: pin a host's key in known_hosts (PinnedPolicy), and say so."""
        if self._known_hosts.remember(known_hosts, hostname, key, where):
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

        limit = deadline_of(self, timeout or DEFAULT_COMMAND_TIMEOUT)
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
            got = _exchange(chan, (READY_LINE + script).encode(), deadline, decide)
        except OverCap as e:  # says how much
            raise SshError(str(e)) from None
        except (OSError, EOFError, paramiko.SSHException) as e:
            if expired.is_set() or time.monotonic() >= deadline:
                raise SshError(deadline_message(limit)) from None
            if not transport.is_active():
                raise SshError(f"connection to {node} lost while the command ran") from None
            raise SshError(f"connection lost: {e or type(e).__name__}") from None
        finally:
            watchdog.cancel()
            with contextlib.suppress(Exception):
                chan.close()
        if got.timed_out or (expired.is_set() and not got.exited):
            raise SshError(deadline_message(limit))
        if got.exited is False and not got.early and not transport.is_active():
            raise SshError(f"connection to {node} lost while the command ran")
        return outcome(node, ssh, got, lost=not transport.is_active())

    def run_many(self, scripts: Mapping[str, str], timeout: float | None = None) -> dict[str, CommandResult | str]:
        """Run one script per node in parallel; a failure is returned as its message."""

        def one(name: str) -> CommandResult | str:
            try:
                return self.run(name, scripts[name], timeout)
            except SshError as e:
                return str(e)
            except Exception as e:  # unforeseen: still this node's error, never the run's
                return f"the command failed on the controller: {type(e).__name__}: {one_line(str(e))}"

        return fan_out(one, scripts, min(self.parallelism, max(1, len(scripts))))

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
