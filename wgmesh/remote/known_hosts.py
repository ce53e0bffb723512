"""Host keys pinned in known_hosts files.

Each file is read once per run (per transport), whatever the number of connections, and indexed by host
name. A host whose key is not pinned is refused, or with --accept-new-host-keys its key is appended to the
file (trust on first use); a key that differs from the pinned one is always refused.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import os
import stat
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from wgmesh.remote.transport import SshError

if TYPE_CHECKING:
    import paramiko

    from wgmesh.remote.ssh import SshTransport

KNOWN_HOSTS_MAX = 64 * 1024 * 1024


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH's SHA256 fingerprint, as `ssh-keygen -lf` prints it."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def known_hosts_name(host: str, port: int) -> str:
    """The name `host` is pinned under: an IP address in its canonical text (`FD50:4:0:0::12` is `fd50:4::12`, as
    OpenSSH compares addresses), a name as written."""
    host = _canonical_ip(host)
    return host if port == 22 else f"[{host}]:{port}"


def _canonical_ip(host: str) -> str:
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return host


def _canonical_name(name: str) -> str:
    """A known_hosts name (`host` or `[host]:port`) with an IP address in its canonical text."""
    if name.startswith("["):
        host, sep, port = name[1:].partition("]:")
        return f"[{_canonical_ip(host)}]:{port}" if sep else name
    return _canonical_ip(name)


@dataclass
class _Pins:
    """One known_hosts file, indexed: plain names map to their keys in file order; hashed names are few."""

    plain: dict[str, list[paramiko.PKey]] = field(default_factory=dict)
    hashed: list[tuple[str, paramiko.PKey]] = field(default_factory=list)

    def add(self, name: str, key: paramiko.PKey) -> None:
        if name.startswith("|1|"):
            self.hashed.append((name, key))
        else:
            self.plain.setdefault(_canonical_name(name), []).append(key)

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


class KnownHosts:
    """The known_hosts files of one transport: each read on first use and kept for the run (a failure too)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._files: dict[Path, _Pins | SshError] = {}

    def _pins(self, known_hosts: Path) -> _Pins:
        with self._lock:
            pins = self._files.get(known_hosts)
            if pins is None:
                try:
                    pins = _load_known_hosts(known_hosts)
                except SshError as e:
                    pins = e
                self._files[known_hosts] = pins
        if isinstance(pins, SshError):
            raise SshError(str(pins))
        return pins

    def keys_for(self, known_hosts: Path, name: str) -> list[paramiko.PKey]:
        """The keys the file pins for host `name` (as known_hosts spells it); SshError if it cannot be read."""
        pins = self._pins(known_hosts)
        with self._lock:
            return pins.keys_for(name)

    def remember(self, known_hosts: Path, hostname: str, key: paramiko.PKey) -> bool:
        """Append the host's key to the file (and to the file's pins, if read); False if it is there already
        (a parallel connection to the same host learned it a moment ago). A pinned key of the same type that
        differs: paramiko's BadHostKeyException."""
        import paramiko

        line = f"{hostname} {key.get_name()} {key.get_base64()}\n"
        with self._lock:
            pins = self._files.get(known_hosts)
            if isinstance(pins, _Pins):
                same = [k for k in pins.keys_for(hostname) if k.get_name() == key.get_name()]
                if same and same[0] == key:
                    return False
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
        return True


class UnknownHostKey(Exception):
    pass


class PinnedPolicy:
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
        raise UnknownHostKey(
            f"unknown host key for {hostname}: {key.get_name()} {fingerprint(key)} is not in "
            f"{self.known_hosts}. Verify the fingerprint on the host (ssh-keygen -lf "
            f"/etc/ssh/ssh_host_{key.get_name().removeprefix('ssh-')}_key.pub) and add it to known_hosts, "
            f"or run with --accept-new-host-keys to trust it on first use"
        )
