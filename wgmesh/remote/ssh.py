"""The transport: one paramiko connection per node, opened in parallel, host keys pinned.

Scripts are sent on the standard input of `/bin/sh -s`, never on the command line: nothing from
mesh.yaml reaches a remote shell except as a quoted word inside a script built from validated values,
and large configs are not limited by the remote ARG_MAX.
"""

from __future__ import annotations

import base64
import hashlib
import os
import select
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from wgmesh.core.model import Node, Ssh
from wgmesh.remote.transport import CommandResult, SshError

if TYPE_CHECKING:
    import paramiko

DEFAULT_PARALLELISM = 10
DEFAULT_TIMEOUT = 10.0
EOF_GRACE = 2.0


def _paramiko():  # type: ignore[no-untyped-def]
    """Import paramiko on first use, without `invoke`: paramiko imports it only to run ssh_config's
    `Match exec`, which wgmesh never reads, and it costs about half of paramiko's import time."""
    if "paramiko" not in sys.modules and "invoke" not in sys.modules:
        sys.modules["invoke"] = None  # type: ignore[assignment]
        try:
            import paramiko
        finally:
            del sys.modules["invoke"]
    import paramiko

    return paramiko


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH's SHA256 fingerprint, as `ssh-keygen -lf` prints it."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def _known_hosts_name(host: str, port: int) -> str:
    return host if port == 22 else f"[{host}]:{port}"


def _parse_jump(spec: str, default_user: str) -> tuple[str, str, int]:
    user, _, rest = spec.rpartition("@")
    host, port = rest, 22
    if rest.startswith("["):
        host, _, tail = rest[1:].partition("]")
        if tail.startswith(":"):
            port = int(tail[1:])
    elif rest.count(":") == 1:
        host, p = rest.split(":")
        port = int(p)
    return user or default_user, host, port


class SshTransport:
    def __init__(
        self,
        *,
        parallelism: int = DEFAULT_PARALLELISM,
        timeout: float = DEFAULT_TIMEOUT,
        accept_new_host_keys: bool = False,
        identity_override: str | None = None,
        on_progress: Callable[[str, str], None] | None = None,
        on_host_key_added: Callable[[str], None] | None = None,
    ) -> None:
        self.parallelism = max(1, parallelism)
        self.timeout = timeout
        self.accept_new = accept_new_host_keys
        self.identity_override = identity_override if identity_override is not None else os.environ.get(
            "WGMESH_SSH_IDENTITY"
        )
        self.on_progress = on_progress or (lambda node, status: None)
        self.on_host_key_added = on_host_key_added or (lambda line: None)
        self._clients: dict[str, paramiko.SSHClient] = {}
        self._extra: list[paramiko.SSHClient] = []
        self._known_hosts_lock = threading.Lock()

    # -------------------------------------------------------------------------------- connecting

    def connect(self, nodes: Iterable[Node]) -> dict[str, str]:
        nodes = list(nodes)
        errors: dict[str, str] = {}
        _paramiko()  # once, before the threads
        with ThreadPoolExecutor(max_workers=min(self.parallelism, max(1, len(nodes)))) as pool:
            futures = {n.name: pool.submit(self._connect_with_retry, n) for n in nodes}
            for name, fut in futures.items():
                try:
                    self._clients[name] = fut.result()
                    self.on_progress(name, "connected")
                except SshError as e:
                    errors[name] = str(e)
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

    def _client(self, known_hosts: Path) -> paramiko.SSHClient:
        paramiko = _paramiko()

        client = paramiko.SSHClient()
        if known_hosts.exists():
            try:
                client.load_host_keys(str(known_hosts))
            except (OSError, paramiko.SSHException) as e:
                raise SshError(f"cannot read known_hosts {known_hosts}: {e}") from None
        client.set_missing_host_key_policy(_PinnedPolicy(self, known_hosts))
        return client

    def _connect(self, ssh: Ssh, sock: paramiko.Channel | None = None) -> paramiko.SSHClient:
        paramiko = _paramiko()

        if ssh.proxy_jump and sock is None:
            user, host, port = _parse_jump(ssh.proxy_jump, ssh.user)
            jump = self._connect(Ssh(host=host, port=port, user=user, known_hosts=ssh.known_hosts,
                                     identity_file=ssh.identity_file))
            self._extra.append(jump)
            transport = jump.get_transport()
            assert transport is not None
            try:
                sock = transport.open_channel("direct-tcpip", (ssh.host, ssh.port), ("127.0.0.1", 0),
                                              timeout=self.timeout)
            except (paramiko.SSHException, OSError) as e:
                raise SshError(f"proxy jump {host} cannot reach {ssh.host}:{ssh.port}: {e}") from None

        identity = self.identity_override or (str(ssh.identity_file) if ssh.identity_file else None)
        if identity and not Path(identity).expanduser().exists():
            raise SshError(f"identity file {identity} does not exist (ssh.identity_file or WGMESH_SSH_IDENTITY)")
        client = self._client(ssh.known_hosts)
        where = f"{ssh.user}@{ssh.host}:{ssh.port}"
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
                f"authentication failed for {where} ({e}); check ssh.identity_file, WGMESH_SSH_IDENTITY "
                f"or ssh-agent"
            ) from None
        except TimeoutError:
            client.close()
            raise SshError(f"timed out connecting to {where} after {self.timeout:g}s") from None
        except (OSError, EOFError, paramiko.SSHException) as e:
            client.close()
            reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e) or type(e).__name__
            err = SshError(f"cannot connect to {where}: {reason}")
            err.retryable = isinstance(e, ConnectionError | paramiko.ssh_exception.NoValidConnectionsError)  # type: ignore[attr-defined]
            raise err from None
        return client

    def _remember_host_key(self, known_hosts: Path, hostname: str, key: paramiko.PKey) -> None:
        line = f"{hostname} {key.get_name()} {key.get_base64()}\n"
        with self._known_hosts_lock:
            known_hosts.parent.mkdir(parents=True, exist_ok=True)
            with known_hosts.open("a") as f:
                f.write(line)
        self.on_host_key_added(f"{hostname} {key.get_name()} {fingerprint(key)}")

    # -------------------------------------------------------------------------------- running

    def run(self, node: str, script: str, timeout: float | None = None) -> CommandResult:
        paramiko = _paramiko()

        client = self._clients.get(node)
        if client is None:
            raise SshError("not connected")
        transport = client.get_transport()
        if transport is None or not transport.is_active():
            raise SshError("connection lost")
        try:
            chan = transport.open_session(timeout=self.timeout)
            chan.exec_command("/bin/sh -s")
            chan.sendall(script.encode())
            chan.shutdown_write()
            return _collect(chan, timeout)
        except (OSError, EOFError, paramiko.SSHException) as e:
            raise SshError(f"connection lost: {e or type(e).__name__}") from None

    def run_many(self, scripts: Mapping[str, str], timeout: float | None = None) -> dict[str, CommandResult | str]:
        """Run one script per node in parallel; a failure is returned as its message."""

        def one(name: str) -> CommandResult | str:
            try:
                return self.run(name, scripts[name], timeout)
            except SshError as e:
                return str(e)

        with ThreadPoolExecutor(max_workers=min(self.parallelism, max(1, len(scripts)))) as pool:
            futures = {name: pool.submit(one, name) for name in scripts}
            return {name: f.result() for name, f in futures.items()}

    def close(self) -> None:
        for c in list(self._clients.values()) + self._extra:
            c.close()
        self._clients.clear()
        self._extra.clear()


def _collect(chan: paramiko.Channel, timeout: float | None) -> CommandResult:
    """Read stdout and stderr until the command has exited and the channel reached EOF.

    sshd may send the exit status before the last output, so EOF is awaited too; but a daemon started by
    the script could hold the channel open, so after the exit status EOF is awaited for EOF_GRACE only.
    """
    out: list[bytes] = []
    err: list[bytes] = []
    deadline = None if timeout is None else time.monotonic() + timeout
    exited_at: float | None = None

    def drain() -> None:
        while chan.recv_ready():
            out.append(chan.recv(65536))
        while chan.recv_stderr_ready():
            err.append(chan.recv_stderr(65536))

    while True:
        drain()
        now = time.monotonic()
        if chan.exit_status_ready():
            if chan.eof_received or chan.closed:
                break
            exited_at = exited_at or now
            if now - exited_at > EOF_GRACE:
                break
        if deadline is not None and now > deadline:
            chan.close()
            raise SshError(f"command timed out after {timeout:g}s")
        if chan.eof_received:
            chan.status_event.wait(0.05)  # only the exit status is still to come
        else:
            select.select([chan], [], [], 0.05)  # wakes on stdout data and on EOF
    drain()
    status = chan.recv_exit_status()
    chan.close()
    return CommandResult(status, b"".join(out).decode(errors="replace"), b"".join(err).decode(errors="replace"))


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
            client.get_host_keys().add(hostname, key.get_name(), key)
            self.transport._remember_host_key(self.known_hosts, hostname, key)
            return
        raise _UnknownHostKey(
            f"unknown host key for {hostname}: {key.get_name()} {fingerprint(key)} is not in "
            f"{self.known_hosts}. Verify the fingerprint on the host (ssh-keygen -lf "
            f"/etc/ssh/ssh_host_{key.get_name().removeprefix('ssh-')}_key.pub) and add it to known_hosts, "
            f"or run with --accept-new-host-keys to trust it on first use"
        )
