"""Host keys pinned in known_hosts files, checked as OpenSSH checks them.

Each file is read once per run (per transport), whatever the number of connections, and indexed by host
name. A host's key is accepted when a line of the file names the host (exactly, hashed with `ssh-keygen -H`, or by
a pattern with `*`, `?` and `!` negation, as OpenSSH matches them) with that key, and no `@revoked` line revokes
it. A key revoked, or different from every key pinned for the host, is always refused. A host with no pinned key
is refused too, or with --accept-new-host-keys its key is appended to the file (trust on first use), unless
the file trusts a certificate authority for it (`@cert-authority`: wgmesh does not check host certificates, and
does not put trust on first use in place of one).
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import ipaddress
import os
import re
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
    """The name `host` is pinned under, as OpenSSH looks it up: an IP address in its canonical text
    (`FD50:4:0:0::12` is `fd50:4::12`), a host name in lower case; `[host]:port` for a port other than 22."""
    host = canonical_host(host)
    return host if port == 22 else f"[{host}]:{port}"


def canonical_host(host: str) -> str:
    """An IP address in its canonical text, a host name in lower case (host names ignore case)."""
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return host.lower()


def _canonical_name(name: str) -> str:
    """A known_hosts name (`host` or `[host]:port`) as `known_hosts_name` spells it."""
    if name.startswith("["):
        host, sep, port = name[1:].partition("]:")
        return f"[{canonical_host(host)}]:{port}" if sep else name.lower()
    return canonical_host(name)


def _is_pattern(names: list[str]) -> bool:
    return any(n.startswith("!") or "*" in n or "?" in n for n in names)


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """OpenSSH's wildcards: `*` any run of characters, `?` one; everything else literal (fnmatch's `[` sets
    escaped), compared in lower case."""
    return re.compile(fnmatch.translate(pattern.lower().replace("[", "[[]")))


def _matches(name: str, patterns: tuple[tuple[bool, re.Pattern[str]], ...]) -> bool:
    """OpenSSH's match_hostname: some pattern of the list matches and no negated (`!`) one does."""
    positive = False
    for negated, rx in patterns:
        if rx.fullmatch(name):
            if negated:
                return False
            positive = True
    return positive


@dataclass
class _Keys:
    """The keys of one kind of line of one file (plain pins, `@revoked` or `@cert-authority`), indexed: exact
    names map to their keys in file order; hashed names and patterns are few, and tried in turn."""

    plain: dict[str, list[paramiko.PKey]] = field(default_factory=dict)
    hashed: list[tuple[str, paramiko.PKey]] = field(default_factory=list)
    patterns: list[tuple[tuple[tuple[bool, re.Pattern[str]], ...], paramiko.PKey]] = field(default_factory=list)

    def add_line(self, names: list[str], key: paramiko.PKey) -> None:
        if _is_pattern(names):
            self.patterns.append((tuple((n.startswith("!"), _pattern_regex(n.removeprefix("!"))) for n in names),
                                  key))
            return
        for name in names:
            self.add(name, key)

    def add(self, name: str, key: paramiko.PKey) -> None:
        if name.startswith("|1|"):
            _check_hashed(name)
            self.hashed.append((name, key))
        else:
            self.plain.setdefault(_canonical_name(name), []).append(key)

    def keys_for(self, name: str) -> list[paramiko.PKey]:
        """Every key the file gives `name` (`known_hosts_name`'s spelling), each once, in file order by kind."""
        found = list(self.plain.get(name, ()))
        if self.hashed:
            from paramiko.hostkeys import HostKeys

            found += [k for h, k in self.hashed if HostKeys.hash_host(name, h) == h]
        found += [k for patterns, k in self.patterns if _matches(name, patterns)]
        out: list[paramiko.PKey] = []
        for k in found:
            if k not in out:
                out.append(k)
        return out


def _check_hashed(name: str) -> None:
    """A hashed name (`ssh-keygen -H`) is `|1|SALT|HASH`, both base64 of 20 bytes; ValueError if not."""
    parts = name.split("|")
    if len(parts) != 4 or any(len(base64.b64decode(p, validate=True)) != 20 for p in parts[2:]):
        raise ValueError("not |1|SALT|HASH")


@dataclass
class _Pins:
    """One known_hosts file: its pins, its `@revoked` keys and its `@cert-authority` keys."""

    pinned: _Keys = field(default_factory=_Keys)
    revoked: _Keys = field(default_factory=_Keys)
    authorities: _Keys = field(default_factory=_Keys)

    def revoked_for(self, name: str) -> list[paramiko.PKey]:
        """The keys revoked for `name` or its bare host (a revocation holds on every port)."""
        return [*self.revoked.keys_for(name), *self.revoked.keys_for(_bare(name))]


MARKERS = {"@revoked": "revoked", "@cert-authority": "authorities"}


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
        if not line or line.startswith("#"):
            continue
        keys = pins.pinned
        fields = line.split()  # fields apart by any run of blanks and tabs, as OpenSSH reads them
        if fields[0].startswith("@"):
            if fields[0] not in MARKERS:
                raise SshError(f"cannot read known_hosts {path}: line {lineno} has an unknown marker (OpenSSH knows "
                               f"@revoked and @cert-authority)")
            keys = getattr(pins, MARKERS[fields[0]])
            fields = fields[1:]
        try:
            entry = HostKeyEntry.from_line(" ".join(fields), lineno)
        except Exception:  # invalid base64 or key data: paramiko's messages quote the line
            raise SshError(f"cannot read known_hosts {path}: line {lineno} is not a valid known_hosts entry") from None
        if entry is None:  # too few fields or a key type paramiko does not know: skipped, as paramiko does
            continue
        # a hashed field is one name, commas and all, as OpenSSH reads it (paramiko splits it at its commas)
        names = [fields[0]] if fields and fields[0].startswith("|1|") else entry.hostnames
        try:
            keys.add_line(names, entry.key)
        except ValueError:
            raise SshError(f"cannot read known_hosts {path}: line {lineno} has a hashed host name that is not "
                           "|1|SALT|HASH (as ssh-keygen -H writes it)") from None
    return pins


def _bare(name: str) -> str:
    """`[host]:port` -> host; any other name as it is."""
    host, sep, _ = name[1:].rpartition("]:") if name.startswith("[") else ("", "", "")
    return host if sep else name


def _lookup_name(pins: _Pins, name: str) -> str:
    """The name whose pins order the key types asked for: `[host]:port` when some line names it so, else (a
    port other than 22 with no line of its own) the bare host."""
    if any(k.keys_for(name) for k in (pins.pinned, pins.revoked, pins.authorities)):
        return name
    return _bare(name)


def key_file_name(key: paramiko.PKey) -> str:
    """Where an OpenSSH server keeps its host key of this type."""
    kind = key.get_name()
    kind = "ecdsa" if kind.startswith("ecdsa-") else kind.removeprefix("ssh-").replace("dss", "dsa")
    return f"/etc/ssh/ssh_host_{kind}_key.pub"


class HostKeyRefused(Exception):
    """The host's key is not to be trusted: the message says why and what to do."""


class UnknownHostKey(HostKeyRefused):
    pass


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
        """The keys the file pins for host `name` (`known_hosts_name`'s spelling), revoked ones left out;
        SshError if it cannot be read."""
        pins = self._pins(known_hosts)
        with self._lock:
            revoked = pins.revoked_for(name)
            return [k for k in pins.pinned.keys_for(_lookup_name(pins, name)) if k not in revoked]

    def check(self, known_hosts: Path, name: str, key: paramiko.PKey, where: str) -> bool:
        """Whether the file pins `key` for `name`: True if it does; False if it pins nothing for the host (it
        is unknown). HostKeyRefused when the key is revoked or differs from every key pinned for the host, or
        when the host is to be trusted through a certificate authority."""
        pins = self._pins(known_hosts)
        with self._lock:
            return self._check(known_hosts, pins, name, key, where)

    def _check(self, known_hosts: Path, pins: _Pins, name: str, key: paramiko.PKey, where: str) -> bool:
        offered = f"{key.get_name()} {fingerprint(key)}"
        revoked = pins.revoked_for(name)
        if _lookup_name(pins, name) != name and key in pins.pinned.keys_for(_bare(name)) and key not in revoked:
            # a port other than 22 with no line of its own: a key pinned under the bare host is accepted, as
            # OpenSSH does; any other key is unknown for `[host]:port` (not a mismatch of the bare host's)
            return True
        if key in revoked:
            raise HostKeyRefused(
                f"host key REVOKED for {where}: the server offered {offered}, which {known_hosts} marks @revoked. "
                f"Do not trust this host; if it has a new key, verify it on the host and pin it in known_hosts")
        pinned = pins.pinned.keys_for(name)
        if key in pinned:
            return True
        if pinned:
            same = [k for k in pinned if k.get_name() == key.get_name()]
            if same:
                expected = ", ".join(fingerprint(k) for k in same)
            else:
                expected = ", ".join(f"{k.get_name()} {fingerprint(k)}" for k in pinned) + " (other key types)"
            raise HostKeyRefused(
                f"host key mismatch for {where}: the server offered {offered}, but {known_hosts} pins {expected}. "
                f"Someone may be intercepting the connection; if the host key really changed, verify it and replace "
                f"its line in known_hosts")
        if pins.authorities.keys_for(name):
            raise HostKeyRefused(
                f"host key for {where} is to be checked against a certificate authority (@cert-authority in "
                f"{known_hosts}), and wgmesh does not check host certificates: pin the host's own key in "
                f"known_hosts (the server offered {offered}; verify it with ssh-keygen -lf {key_file_name(key)} on "
                f"the host)")
        return False

    def remember(self, known_hosts: Path, name: str, key: paramiko.PKey, where: str) -> bool:
        """Append the host's key to the file (and to the file's pins); False if it is pinned already (a
        parallel connection to the same host learned it a moment ago). HostKeyRefused as `check` says."""
        pins = self._pins(known_hosts)
        line = f"{name} {key.get_name()} {key.get_base64()}\n"
        with self._lock:
            if self._check(known_hosts, pins, name, key, where):
                return False
            known_hosts.parent.mkdir(parents=True, exist_ok=True)
            with known_hosts.open("a+b") as f:
                f.seek(0, os.SEEK_END)
                if f.tell():
                    f.seek(f.tell() - 1)
                    if f.read(1) != b"\n":
                        line = "\n" + line
                f.write(line.encode())
            pins.pinned.add(name, key)
        return True


class PinnedPolicy:
    """Every host key is checked here (the client is given no key of its own, so paramiko asks this policy
    each time, before authenticating): pinned is accepted; revoked or changed is refused; unknown is refused, or
    with --accept-new-host-keys recorded (trust on first use)."""

    def __init__(self, transport: SshTransport, known_hosts: Path, name: str, where: str) -> None:
        self.transport = transport
        self.known_hosts = known_hosts
        self.name = name
        self.where = where

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        pins = self.transport._known_hosts
        if pins.check(self.known_hosts, self.name, key, self.where):
            return
        if self.transport.accept_new:
            self.transport._remember_host_key(self.known_hosts, self.name, key, self.where)
            return
        raise UnknownHostKey(
            f"unknown host key for {self.name}: {key.get_name()} {fingerprint(key)} is not in "
            f"{self.known_hosts}. Verify the fingerprint on the host (ssh-keygen -lf {key_file_name(key)}) and add "
            f"it to known_hosts, or run with --accept-new-host-keys to trust it on first use"
        )
