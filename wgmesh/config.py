"""Read mesh.yaml: ruamel round-trip load with line numbers, validation, and comment-keeping edits.

`load()`/`loads()` return `(Mesh, warnings)` or raise `MeshError` listing every problem found, each with
`file:line:col`, the field path, what is wrong and how to fix it. Nothing else escapes, whatever the input.
"""

from __future__ import annotations

import base64
import binascii
import difflib
import ipaddress
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap
from ruamel.yaml.constructor import DuplicateKeyError
from ruamel.yaml.error import YAMLError

from wgmesh.core.model import Endpoint, IPAddress, IPNetwork, Mesh, Node, Ssh, Subnet

Pos = tuple[int, int]  # 1-based (line, col)

VERSION = 1
DEFAULT_LISTEN_PORT = 51820
DEFAULT_KEEPALIVE = 25
DEFAULT_INTERFACE = "wg0"
DEFAULT_KNOWN_HOSTS = "known_hosts"

TOP_KEYS = ("version", "mesh", "ssh", "nodes")
MESH_KEYS = ("name", "interface", "network", "listen_port", "persistent_keepalive", "mtu")
SSH_KEYS = ("user", "port", "known_hosts", "identity_file", "proxy_jump")
NODE_SSH_KEYS = ("host", *SSH_KEYS)
NODE_KEYS = (
    "address",
    "public_key",
    "endpoint",
    "subnets",
    "ssh",
    "listen_port",
    "mtu",
    "post_up",
    "post_down",
    "decommission",
)
SUBNET_KEYS = ("prefix", "probe")

# Names people bring from wg-quick files or other tools, mapped to ours (used for "did you mean").
_ALIASES = {
    "addresses": "address",
    "allowedips": "subnets",
    "subnet": "subnets",
    "routes": "subnets",
    "publickey": "public_key",
    "pubkey": "public_key",
    "key": "public_key",
    "port": "listen_port",
    "listenport": "listen_port",
    "keepalive": "persistent_keepalive",
    "persistentkeepalive": "persistent_keepalive",
    "networks": "network",
    "cidr": "network",
    "postup": "post_up",
    "postdown": "post_down",
    "hostname": "host",
    "username": "user",
    "identity": "identity_file",
    "identityfile": "identity_file",
    "knownhosts": "known_hosts",
    "proxyjump": "proxy_jump",
    "jump": "proxy_jump",
}

_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
_IFACE_RE = re.compile(r"[a-zA-Z0-9_=+.-]{1,15}")
_USER_RE = re.compile(r"[a-z_][a-z0-9_.-]{0,31}")
_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
_HOSTNAME_RE = re.compile(rf"(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*\.?")
_KEYLIKE_RE = re.compile(r"[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=")
_SECRET_WORDS = ("privatekey", "privkey", "presharedkey", "psk", "secretkey")
_MAX_PAIR_WARNINGS = 10  # warnings about nodes without endpoints, before one summary
_SECRET_MENTION_RE = re.compile(r"private|preshared|psk", re.IGNORECASE)


# --------------------------------------------------------------------------------------------------
# Diagnostics


@dataclass(frozen=True)
class Diagnostic:
    file: str
    line: int
    col: int
    path: str
    message: str
    severity: Literal["error", "warning"] = "error"

    def __str__(self) -> str:
        if self.line <= 0:
            loc = self.file
        elif self.col <= 0:
            loc = f"{self.file}:{self.line}"
        else:
            loc = f"{self.file}:{self.line}:{self.col}"
        parts = [loc]
        if self.severity == "warning":
            parts.append("warning")
        if self.path:
            parts.append(self.path)
        parts.append(self.message)
        return ": ".join(parts)


class MeshError(Exception):
    """mesh.yaml is unusable. `diagnostics` holds every error found, and the warnings too."""

    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        self.diagnostics = list(diagnostics)
        super().__init__("\n".join(str(d) for d in self.diagnostics))

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "error"]


@dataclass
class _Report:
    file: str
    diags: list[Diagnostic] = field(default_factory=list)

    def error(self, pos: Pos, path: str, message: str) -> None:
        self.diags.append(Diagnostic(self.file, pos[0], pos[1], path, message))

    def warn(self, pos: Pos, path: str, message: str) -> None:
        self.diags.append(Diagnostic(self.file, pos[0], pos[1], path, message, "warning"))

    @property
    def failed(self) -> bool:
        return any(d.severity == "error" for d in self.diags)

    @property
    def warnings(self) -> list[Diagnostic]:
        return [d for d in self.diags if d.severity == "warning"]


# --------------------------------------------------------------------------------------------------
# Public helpers


def validate_key(text: str) -> bool:
    """A WireGuard key: 32 bytes in canonical base64 (44 characters ending in one '=')."""
    if not isinstance(text, str) or len(text) != 44:
        return False
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        return False
    return len(raw) == 32 and base64.b64encode(raw).decode("ascii") == text


def parse_endpoint(text: str) -> Endpoint:
    """`host:port` or `[v6]:port`; raises ValueError with a message saying what to write instead."""
    if text.startswith("["):
        m = re.fullmatch(r"\[([^\]]*)\]:(\d{1,5})", text)
        if m is None:
            raise ValueError("write an IPv6 endpoint as [2001:db8::1]:51820")
        host, port_text = m.group(1), m.group(2)
        if not _is_ip(host, 6):
            raise ValueError("the part in brackets must be an IPv6 address, e.g. [2001:db8::1]:51820")
    else:
        if ":" not in text:
            example = text if _HOSTNAME_RE.fullmatch(text) or _is_ip(text, 4) else "vpn.example.com"
            raise ValueError(f"missing port: write host:port, e.g. {example}:51820")
        host, _, port_text = text.rpartition(":")
        if ":" in host:
            raise ValueError("put an IPv6 address in brackets: [2001:db8::1]:51820")
        if not port_text.isascii() or not port_text.isdigit() or len(port_text) > 5:
            raise ValueError("the port after ':' must be a number from 1 to 65535")
        if re.fullmatch(r"[0-9.]+", host):
            if not _is_ip(host, 4):
                raise ValueError("not a valid IPv4 address before ':'")
        elif not _HOSTNAME_RE.fullmatch(host):
            raise ValueError("the host must be a DNS name or an IP address, e.g. vpn.example.com:51820")
    port = int(port_text)
    if not 1 <= port <= 65535:
        raise ValueError("the port must be from 1 to 65535")
    return Endpoint(host, port)


def _is_ip(text: str, version: int) -> bool:
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return False
    return addr.version == version and "%" not in text


def _yaml() -> YAML:
    yaml = YAML(typ="rt")
    yaml.allow_duplicate_keys = False
    yaml.preserve_quotes = True
    yaml.width = 4096
    yaml.indent(mapping=2, sequence=4, offset=2)
    return yaml


# --------------------------------------------------------------------------------------------------
# Loading


def load(path: str | Path) -> tuple[Mesh, list[Diagnostic]]:
    """Read and validate mesh.yaml. Returns the mesh and its warnings; raises MeshError on any error."""
    shown = str(path)
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise MeshError(
            [Diagnostic(shown, 0, 0, "", "no such file: run `wgmesh init` to create one, or pass --file PATH")]
        ) from None
    except OSError as e:
        raise MeshError([Diagnostic(shown, 0, 0, "", f"cannot read: {e.strerror or e}")]) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise MeshError(
            [Diagnostic(shown, line, 0, "", f"not UTF-8 text (byte {e.start}): save the file as UTF-8")]
        ) from None
    return loads(text, path)


def loads(text: str, path: str | Path = "mesh.yaml") -> tuple[Mesh, list[Diagnostic]]:
    """Validate mesh.yaml given as text. `path` names the file in messages and anchors relative paths."""
    report = _Report(str(path))
    try:
        mesh = _load_text(text, Path(path), report)
    except MeshError:
        raise
    except RecursionError:
        report.error((1, 0), "", "the document is nested too deeply: mesh.yaml needs only a few levels")
        mesh = None
    except Exception as e:  # a safety net: the contract is MeshError or a Mesh, never a traceback
        report.error((1, 0), "", f"internal error while validating ({type(e).__name__}): please report it")
        mesh = None
    report.diags.sort(key=lambda d: (d.line, d.col))
    if mesh is None or report.failed:
        raise MeshError(report.diags)
    return mesh, report.warnings


def _load_text(text: str, path: Path, report: _Report) -> Mesh | None:
    doc = _parse(text, report)
    if report.failed:
        return None
    if doc is None or (isinstance(doc, str) and not doc.strip()):
        report.error((1, 0), "", "the file is empty: start from `wgmesh init` or mesh.example/mesh.yaml")
        return None
    if not isinstance(doc, dict):
        report.error(_start(doc, (1, 1)), "", "the top level must be a mapping with keys version, mesh, ssh and nodes")
        return None
    _check_secrets(doc, report)
    return _Validator(report, path).document(doc)


def _parse(text: str, report: _Report) -> Any:
    try:
        return _yaml().load(text)
    except DuplicateKeyError as e:
        m = re.search(r'found duplicate key "(.*?)" with value', str(e.problem or ""))
        what = f'duplicate key "{m.group(1)}"' if m else "duplicate key"
        report.error(_mark(e, text), "", f"{what}: a key may appear only once in a mapping; remove one")
    except YAMLError as e:
        report.error(_mark(e, text), "", _syntax_message(e))
    except RecursionError:
        report.error((1, 0), "", "the document is nested too deeply: mesh.yaml needs only a few levels")
    except Exception as e:  # ruamel raises plain ValueError etc. for some scalars (e.g. bad timestamps)
        report.error((1, 0), "", f"YAML could not be read ({type(e).__name__}): check the syntax")
    return None


def _mark(e: Exception, text: str) -> Pos:
    mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
    if mark is not None and getattr(mark, "line", None) is not None:
        return (mark.line + 1, mark.column + 1)
    position = getattr(e, "position", None)
    if isinstance(position, int):
        before = text[:position]
        return (before.count("\n") + 1, position - (before.rfind("\n") + 1) + 1)
    return (1, 0)


def _syntax_message(e: YAMLError) -> str:
    problem = str(getattr(e, "problem", None) or "").strip()
    if not problem:
        problem = "unreadable input" if "ReaderError" in type(e).__name__ else "invalid YAML"
        if "ReaderError" in type(e).__name__:
            return "invalid character: mesh.yaml must be printable UTF-8 text"
    if "\\t" in problem or "'\\t'" in problem or "\t" in problem:
        return f"YAML syntax error: {problem}: indent with spaces, not tabs"
    if "expected a single document" in problem:
        return f"YAML syntax error: {problem}: keep one document (remove the extra '---')"
    return f"YAML syntax error: {problem}: check indentation, quoting and ':' on this line"


def _start(obj: Any, fallback: Pos) -> Pos:
    lc = getattr(obj, "lc", None)
    if lc is None or getattr(lc, "line", None) is None:
        return fallback
    return (lc.line + 1, lc.col + 1)


def _lc_pos(lookup: Callable[[], Any], fallback: Pos) -> Pos:
    """A 1-based (line, col) from one of ruamel's `lc` lookups, or `fallback` when it has none."""
    try:
        line, col = lookup()
    except (AttributeError, KeyError, TypeError, IndexError):
        return fallback
    if line is None:
        return fallback
    return (line + 1, col + 1)


def _key_pos(m: Any, k: Any, fallback: Pos) -> Pos:
    return _lc_pos(lambda: m.lc.key(k), fallback)


def _val_pos(m: Any, k: Any, fallback: Pos) -> Pos:
    return _lc_pos(lambda: m.lc.value(k), fallback)


def _item_pos(seq: Any, i: int, fallback: Pos) -> Pos:
    return _lc_pos(lambda: seq.lc.item(i), fallback)


def _is_secret_name(key: str) -> bool:
    norm = re.sub(r"[^a-z0-9]", "", key.lower())
    return any(word in norm for word in _SECRET_WORDS) or norm in {"private", "preshared"}


_SECRET_FIX = (
    "remove it from the repo (and from git history) and rotate that key: "
    "mesh.yaml holds public keys only; private keys stay on the nodes"
)


def _check_secrets(doc: Any, report: _Report) -> None:
    """Refuse private/preshared keys anywhere in the document. Never echo the value."""
    for path, pos, kind in _walk_secrets(doc):
        report.error(pos, path, f"{kind} in clear: {_SECRET_FIX}")


def _walk_secrets(doc: Any) -> Iterator[tuple[str, Pos, str]]:
    stack: list[tuple[Any, str, Pos]] = [(doc, "", (1, 1))]
    seen: set[int] = set()
    while stack:
        obj, path, pos = stack.pop()
        if id(obj) in seen:
            continue
        if isinstance(obj, dict):
            seen.add(id(obj))
            items: list[tuple[Any, str, Pos, Pos]] = []
            for k in obj:
                sub = f"{path}.{k}" if path else str(k)
                items.append((k, sub, _key_pos(obj, k, pos), _val_pos(obj, k, pos)))
            for k, sub, kpos, vpos in reversed(items):
                if isinstance(k, str) and _is_secret_name(k):
                    kind = "preshared key" if "pre" in k.lower() or "psk" in k.lower() else "private key"
                    yield sub, kpos, kind
                    continue
                stack.append((obj[k], sub, vpos))
        elif isinstance(obj, list):
            seen.add(id(obj))
            for i in reversed(range(len(obj))):
                stack.append((obj[i], f"{path}[{i}]", _item_pos(obj, i, pos)))
        elif isinstance(obj, str) and _mentions_secret_key(obj):
            yield path, pos, "a private or preshared key"


def _mentions_secret_key(text: str) -> bool:
    """A key-shaped token next to words like 'private-key' (e.g. pasted into a post_up command)."""
    if not _KEYLIKE_RE.search(text):
        return False
    return bool(_SECRET_MENTION_RE.search(_KEYLIKE_RE.sub(" ", text)))


# --------------------------------------------------------------------------------------------------
# Validation


def _suggest(key: str, allowed: tuple[str, ...]) -> str | None:
    norm = re.sub(r"[^a-z0-9]", "", key.lower())
    for a in allowed:
        if re.sub(r"[^a-z0-9]", "", a) == norm:
            return a
    alias = _ALIASES.get(norm)
    if alias in allowed:
        return alias
    close = difflib.get_close_matches(key.lower(), allowed, n=1, cutoff=0.6)
    return close[0] if close else None


def _show(value: Any) -> str:
    """A short, safe rendering of a user value for messages (never a key-like string)."""
    text = str(value)
    if _KEYLIKE_RE.search(text):
        return "this value"
    if len(text) > 60:
        text = text[:57] + "..."
    return repr(text) if isinstance(value, str) else text


@dataclass
class _Ssh:
    host: str | None = None
    port: int | None = None
    user: str | None = None
    known_hosts: str | None = None
    identity_file: str | None = None
    proxy_jump: str | None = None


@dataclass
class _Draft:
    """One node as far as it parsed; None marks a field that was missing or wrong."""

    name: str
    pos: Pos
    index: int
    addresses: list[tuple[IPAddress, Pos, str]] = field(default_factory=list)
    public_key: str | None = None
    key_pos: Pos = (0, 0)
    endpoint: Endpoint | None = None
    subnets: list[tuple[Subnet, Pos, str]] = field(default_factory=list)
    ssh: _Ssh = field(default_factory=_Ssh)
    listen_port: int | None = None
    mtu: int | None = None
    post_up: tuple[str, ...] = ()
    post_down: tuple[str, ...] = ()
    decommission: bool = False
    has_endpoint: bool = False  # an `endpoint:` was given, valid or not
    mapping: bool = True  # the node's value is a mapping at all
    has_ssh_host: bool = False  # an `ssh.host:` was given, valid or not

    @property
    def enrolled(self) -> bool:
        return self.public_key is not None and not self.decommission


@dataclass
class _MeshDraft:
    name: str | None = None
    interface: str = DEFAULT_INTERFACE
    networks: list[tuple[IPNetwork, Pos, str]] = field(default_factory=list)
    listen_port: int = DEFAULT_LISTEN_PORT
    keepalive: int = DEFAULT_KEEPALIVE
    mtu: int | None = None


_MISSING = object()


class _Validator:
    """Walks the parsed document, reporting every problem, and builds the Mesh if there are none."""

    def __init__(self, report: _Report, mesh_path: Path) -> None:
        self.report = report
        self.suggested: set[tuple[int, str]] = set()  # (id(mapping), key) already hinted as a misspelling
        self.mesh_path = mesh_path
        self.directory = mesh_path.parent

    # ---- generic field helpers

    def keys(self, m: dict, allowed: tuple[str, ...], path: str, pos: Pos) -> None:
        for k in m:
            kpos = _key_pos(m, k, pos)
            if not isinstance(k, str):
                self.report.error(
                    kpos, path, f"key {_show(k)} must be a name (text); expected one of " + ", ".join(allowed)
                )
                continue
            if k in allowed or _is_secret_name(k):
                continue
            sub = f"{path}.{k}" if path else k
            hint = _suggest(k, allowed)
            if hint:
                self.suggested.add((id(m), hint))
                self.report.error(kpos, sub, f'unknown key "{k}": did you mean "{hint}"?')
            else:
                self.report.error(kpos, sub, f'unknown key "{k}": expected one of {", ".join(allowed)}')

    def required(self, m: dict, k: str, path: str, pos: Pos, example: str) -> Any:
        sub = f"{path}.{k}" if path else k
        if k not in m:
            if (id(m), k) not in self.suggested:
                self.report.error(pos, sub, f'missing required field "{k}": add e.g. `{k}: {example}`')
            return _MISSING
        if m[k] is None:
            self.report.error(_val_pos(m, k, pos), sub, f"no value: set it, e.g. `{k}: {example}`")
            return _MISSING
        return m[k]

    def integer(self, m: dict, k: str, path: str, pos: Pos, lo: int, hi: int) -> int | None:
        """An optional integer field; None when absent, null or invalid (invalid is reported)."""
        if k not in m or m[k] is None:
            return None
        v = m[k]
        vpos = _val_pos(m, k, pos)
        sub = f"{path}.{k}" if path else k
        if isinstance(v, bool) or not isinstance(v, int):
            self.report.error(vpos, sub, f"must be a whole number from {lo} to {hi} (got {_show(v)})")
            return None
        if not lo <= v <= hi:
            self.report.error(vpos, sub, f"{int(v)} is out of range: use a number from {lo} to {hi}")
            return None
        return int(v)

    def string(self, m: dict, k: str, path: str, pos: Pos) -> str | None:
        if k not in m or m[k] is None:
            return None
        v = m[k]
        if not isinstance(v, str):
            sub = f"{path}.{k}" if path else k
            self.report.error(_val_pos(m, k, pos), sub, f"must be text (got {_show(v)}); quote it")
            return None
        return str(v)

    def mapping(self, m: dict, k: str, path: str, pos: Pos) -> dict | None:
        if k not in m or m[k] is None:
            return None
        v = m[k]
        if not isinstance(v, dict):
            sub = f"{path}.{k}" if path else k
            self.report.error(_val_pos(m, k, pos), sub, "must be a mapping of `key: value` lines")
            return None
        return v

    # ---- the document

    def document(self, doc: dict) -> Mesh | None:
        top = (1, 1)
        self.keys(doc, TOP_KEYS, "", top)
        self.version(doc)
        mesh = self.mesh_section(doc)
        ssh = self.ssh_defaults(doc)
        drafts = self.nodes_section(doc, mesh)
        self.cross_checks(mesh, drafts)
        if self.report.failed:
            return None
        return self.build(mesh, ssh, drafts)

    def version(self, doc: dict) -> None:
        if "version" not in doc:
            if (id(doc), "version") not in self.suggested:
                self.report.error((1, 1), "version", 'missing required field "version": add `version: 1` at the top')
            return
        v = doc["version"]
        if isinstance(v, bool) or not isinstance(v, int) or v != VERSION:
            self.report.error(
                _val_pos(doc, "version", (1, 1)),
                "version",
                f"unsupported version {_show(v)}: write `version: {VERSION}`"
                + (" without quotes" if isinstance(v, str) and v.strip() == str(VERSION) else "")
                + " (the format this wgmesh reads)",
            )

    def mesh_section(self, doc: dict) -> _MeshDraft:
        draft = _MeshDraft()
        if "mesh" not in doc:
            if (id(doc), "mesh") not in self.suggested:
                self.report.error((1, 1), "mesh", 'missing required section "mesh": add `mesh:` with name and network')
            return draft
        m = self.mapping(doc, "mesh", "", (1, 1))
        if m is None:
            if doc["mesh"] is None:
                self.report.error(_key_pos(doc, "mesh", (1, 1)), "mesh", "empty section: set name and network")
            return draft
        pos = _key_pos(doc, "mesh", (1, 1))
        self.keys(m, MESH_KEYS, "mesh", pos)
        name = self.required(m, "name", "mesh", pos, "demo")
        if name is not _MISSING:
            if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
                self.report.error(
                    _val_pos(m, "name", pos),
                    "mesh.name",
                    "must be 1-63 characters of letters, digits, '_', '.', '-', starting with a letter or digit",
                )
            else:
                draft.name = str(name)
        iface = self.string(m, "interface", "mesh", pos)
        if iface is not None:
            if not _IFACE_RE.fullmatch(iface) or iface in {".", ".."}:
                self.report.error(
                    _val_pos(m, "interface", pos),
                    "mesh.interface",
                    f"invalid interface name {_show(iface)}: use at most 15 characters of a-z A-Z 0-9 _ = + . -"
                    ", e.g. wg0",
                )
            else:
                draft.interface = iface
        self.networks(m, pos, draft)
        port = self.integer(m, "listen_port", "mesh", pos, 1, 65535)
        if port is not None:
            draft.listen_port = port
        keepalive = self.integer(m, "persistent_keepalive", "mesh", pos, 0, 65535)
        if keepalive is not None:
            draft.keepalive = keepalive
        draft.mtu = self.mtu(m, "mesh", pos, draft)
        return draft

    def networks(self, m: dict, pos: Pos, draft: _MeshDraft) -> None:
        value = self.required(m, "network", "mesh", pos, "10.0.0.0/24")
        if value is _MISSING:
            return
        vpos = _val_pos(m, "network", pos)
        if isinstance(value, list):
            if not value:
                self.report.error(vpos, "mesh.network", "empty list: give at least one CIDR, e.g. 10.0.0.0/24")
            entries = [(v, _item_pos(value, i, vpos), f"mesh.network[{i}]") for i, v in enumerate(value)]
        else:
            entries = [(value, vpos, "mesh.network")]
        for v, p, sub in entries:
            net = self.cidr(v, p, sub, "10.0.0.0/24")
            if net is None:
                continue
            for other, _, other_path in draft.networks:
                if net.overlaps(other):
                    self.report.error(p, sub, f"{net} overlaps {other} ({other_path}): give disjoint networks")
                    break
            else:
                draft.networks.append((net, p, sub))

    def cidr(self, v: Any, pos: Pos, path: str, example: str) -> IPNetwork | None:
        if not isinstance(v, str):
            self.report.error(pos, path, f"must be a CIDR like {example} (got {_show(v)})")
            return None
        text = str(v).strip()
        if "/" not in text:
            self.report.error(pos, path, f"missing prefix length: write a CIDR like {example}")
            return None
        try:
            return ipaddress.ip_network(text, strict=True)
        except ValueError:
            pass
        try:
            loose = ipaddress.ip_network(text, strict=False)
        except ValueError:
            self.report.error(pos, path, f"{_show(v)} is not a CIDR network: write e.g. {example}")
            return None
        self.report.error(pos, path, f"{text} has host bits set: write {loose}")
        return None

    def mtu(self, m: dict, path: str, pos: Pos, mesh: _MeshDraft) -> int | None:
        low = 1280 if any(n.version == 6 for n, _, _ in mesh.networks) else 576
        if k_missing(m, "mtu"):
            return None
        v = m["mtu"]
        sub = f"{path}.mtu"
        vpos = _val_pos(m, "mtu", pos)
        if isinstance(v, bool) or not isinstance(v, int) or not low <= v <= 9000:
            why = "IPv6 needs at least 1280" if low == 1280 else "IPv4 needs at least 576"
            self.report.error(vpos, sub, f"must be a whole number from {low} to 9000 ({why}; 1420 suits most links)")
            return None
        return int(v)

    def ssh_defaults(self, doc: dict) -> _Ssh:
        out = _Ssh()
        m = self.mapping(doc, "ssh", "", (1, 1))
        if m is None:
            return out
        pos = _key_pos(doc, "ssh", (1, 1))
        if "host" in m:
            self.report.error(
                _key_pos(m, "host", pos),
                "ssh.host",
                "a host cannot be shared by all nodes: set nodes.NAME.ssh.host (default: the endpoint's host)",
            )
        self.keys(m, (*SSH_KEYS, "host"), "ssh", pos)
        self.ssh_fields(m, "ssh", pos, out)
        return out

    def ssh_fields(self, m: dict, path: str, pos: Pos, out: _Ssh) -> None:
        out.port = self.integer(m, "port", path, pos, 1, 65535)
        user = self.string(m, "user", path, pos)
        if user is not None:
            if _USER_RE.fullmatch(user):
                out.user = user
            else:
                self.report.error(
                    _val_pos(m, "user", pos),
                    f"{path}.user",
                    "not a valid user name: use lowercase letters, digits, '_', '.', '-' (e.g. root)",
                )
        for k in ("known_hosts", "identity_file"):
            v = self.string(m, k, path, pos)
            if v is None:
                continue
            if not v.strip() or "\n" in v or "\x00" in v:
                self.report.error(
                    _val_pos(m, k, pos),
                    f"{path}.{k}",
                    "must be a file path, e.g. " + ("known_hosts" if k == "known_hosts" else "~/.ssh/id_ed25519"),
                )
                continue
            setattr(out, k, v)
        jump = self.string(m, "proxy_jump", path, pos)
        if jump is not None:
            if not jump or jump.startswith("-") or re.search(r"\s", jump):
                self.report.error(
                    _val_pos(m, "proxy_jump", pos),
                    f"{path}.proxy_jump",
                    "must be user@host:port without spaces and not starting with '-', e.g. admin@bastion:22",
                )
            else:
                out.proxy_jump = jump

    def ssh_host(self, m: dict, path: str, pos: Pos) -> str | None:
        host = self.string(m, "host", path, pos)
        if host is None:
            return None
        if not host or host.startswith("-") or re.search(r"\s", host) or "\x00" in host:
            self.report.error(
                _val_pos(m, "host", pos),
                f"{path}.host",
                "must be a host name or IP without spaces and not starting with '-', e.g. 203.0.113.10",
            )
            return None
        return host

    # ---- nodes

    def nodes_section(self, doc: dict, mesh: _MeshDraft) -> list[_Draft]:
        if "nodes" not in doc:
            if (id(doc), "nodes") not in self.suggested:
                self.report.error((1, 1), "nodes", 'missing required section "nodes": add `nodes:` (it may be empty)')
            return []
        nodes = doc["nodes"]
        if nodes is None:
            return []
        pos = _key_pos(doc, "nodes", (1, 1))
        if not isinstance(nodes, dict):
            self.report.error(
                _val_pos(doc, "nodes", pos), "nodes", "must be a mapping of node name to its fields, e.g. `aws:`"
            )
            return []
        drafts = []
        for index, name in enumerate(nodes):
            kpos = _key_pos(nodes, name, pos)
            if not isinstance(name, str):
                self.report.error(kpos, "nodes", f"node name {_show(name)} must be text: quote it")
                continue
            if _is_secret_name(name):
                continue
            if not _NAME_RE.fullmatch(name):
                self.report.error(
                    kpos,
                    f"nodes.{name}",
                    "invalid node name: use 1-63 letters, digits, '_', '.', '-', starting with a letter or digit",
                )
            drafts.append(self.node(nodes, name, kpos, index, mesh))
        return drafts

    def node(self, nodes: dict, name: str, pos: Pos, index: int, mesh: _MeshDraft) -> _Draft:
        draft = _Draft(str(name), pos, index)
        path = f"nodes.{name}"
        m = nodes[name]
        if m is None or not isinstance(m, dict):
            self.report.error(
                _val_pos(nodes, name, pos) if m is not None else pos,
                path,
                "must be a mapping with at least `address:`, e.g. `address: 10.0.0.1`",
            )
            draft.mapping = False
            return draft
        self.keys(m, NODE_KEYS, path, pos)
        self.addresses(m, path, pos, mesh, draft)
        self.public_key(m, path, pos, draft)
        endpoint = self.string(m, "endpoint", path, pos)
        draft.has_endpoint = not k_missing(m, "endpoint")
        if endpoint is not None:
            try:
                draft.endpoint = parse_endpoint(endpoint)
            except ValueError as e:
                self.report.error(_val_pos(m, "endpoint", pos), f"{path}.endpoint", str(e))
        self.subnets(m, path, pos, draft)
        ssh = self.mapping(m, "ssh", path, pos)
        if ssh is not None:
            spos = _key_pos(m, "ssh", pos)
            self.keys(ssh, NODE_SSH_KEYS, f"{path}.ssh", spos)
            self.ssh_fields(ssh, f"{path}.ssh", spos, draft.ssh)
            draft.ssh.host = self.ssh_host(ssh, f"{path}.ssh", spos)
            draft.has_ssh_host = not k_missing(ssh, "host")
        draft.listen_port = self.integer(m, "listen_port", path, pos, 1, 65535)
        draft.mtu = self.mtu(m, path, pos, mesh)
        draft.post_up = self.commands(m, "post_up", path, pos)
        draft.post_down = self.commands(m, "post_down", path, pos)
        if not k_missing(m, "decommission"):
            v = m["decommission"]
            if isinstance(v, bool):
                draft.decommission = v
            else:
                self.report.error(_val_pos(m, "decommission", pos), f"{path}.decommission", "must be true or false")
        return draft

    def addresses(self, m: dict, path: str, pos: Pos, mesh: _MeshDraft, draft: _Draft) -> None:
        value = self.required(m, "address", path, pos, "10.0.0.1")
        if value is _MISSING:
            return
        vpos = _val_pos(m, "address", pos)
        if isinstance(value, list):
            if not value:
                self.report.error(vpos, f"{path}.address", "empty list: give at least one address")
            entries = [(v, _item_pos(value, i, vpos), f"{path}.address[{i}]") for i, v in enumerate(value)]
        else:
            entries = [(value, vpos, f"{path}.address")]
        for v, p, sub in entries:
            addr = self.address(v, p, sub, mesh)
            if addr is None:
                continue
            if any(addr == a for a, _, _ in draft.addresses):
                self.report.error(p, sub, f"{addr} is listed twice: remove one")
                continue
            draft.addresses.append((addr, p, sub))

    def address(self, v: Any, pos: Pos, path: str, mesh: _MeshDraft) -> IPAddress | None:
        if not isinstance(v, str):
            self.report.error(pos, path, f"must be an IP address like 10.0.0.1 (got {_show(v)})")
            return None
        text = str(v).strip()
        if "/" in text:
            self.report.error(
                pos,
                path,
                f"write the address without a prefix length (the mesh network's is used): {text.split('/')[0]}",
            )
            return None
        try:
            addr = ipaddress.ip_address(text)
        except ValueError:
            self.report.error(pos, path, f"{_show(v)} is not an IP address: write e.g. 10.0.0.1")
            return None
        if "%" in text:
            self.report.error(pos, path, "remove the %zone suffix: mesh addresses have no scope")
            return None
        if not mesh.networks:
            return addr  # the network itself is wrong or missing, reported there
        same = [n for n, _, _ in mesh.networks if n.version == addr.version]
        if not same:
            self.report.error(
                pos,
                path,
                f"no IPv{addr.version} network in mesh.network: add one or use an address in "
                + ", ".join(str(n) for n, _, _ in mesh.networks),
            )
            return None
        net = next((n for n in same if addr in n), None)
        if net is None:
            self.report.error(
                pos, path, f"{addr} is outside the mesh network {', '.join(map(str, same))}: use an address in it"
            )
            return None
        if net.version == 4 and net.prefixlen < 31:
            if addr == net.network_address:
                self.report.error(pos, path, f"{addr} is the network address of {net}: use a host address")
                return None
            if addr == net.broadcast_address:
                self.report.error(pos, path, f"{addr} is the broadcast address of {net}: use a host address")
                return None
        return addr

    def public_key(self, m: dict, path: str, pos: Pos, draft: _Draft) -> None:
        if k_missing(m, "public_key"):
            return
        v = m["public_key"]
        vpos = _val_pos(m, "public_key", pos)
        if not isinstance(v, str) or not validate_key(str(v)):
            hint = ""
            if isinstance(v, str) and len(v.strip()) == 44 and validate_key(v.strip()):
                hint = "; remove the spaces around it"
            self.report.error(
                vpos,
                f"{path}.public_key",
                'not a WireGuard public key (44 base64 characters ending in "="): paste the output of '
                f"`wg pubkey` on the node, or remove the line until it is enrolled{hint}",
            )
            return
        draft.public_key = str(v)
        draft.key_pos = vpos

    def subnets(self, m: dict, path: str, pos: Pos, draft: _Draft) -> None:
        if k_missing(m, "subnets"):
            return
        value = m["subnets"]
        vpos = _val_pos(m, "subnets", pos)
        if isinstance(value, str):
            self.report.error(vpos, f"{path}.subnets", f"must be a list: write `subnets: [{value}]`")
            return
        if not isinstance(value, list):
            self.report.error(vpos, f"{path}.subnets", "must be a list of CIDRs, e.g. [192.168.10.0/24]")
            return
        for i, item in enumerate(value):
            ipos = _item_pos(value, i, vpos)
            sub = f"{path}.subnets[{i}]"
            subnet = self.subnet(item, ipos, sub)
            if subnet is not None:
                draft.subnets.append((subnet, ipos, sub))

    def subnet(self, item: Any, pos: Pos, path: str) -> Subnet | None:
        if not isinstance(item, dict):
            net = self.cidr(item, pos, path, "192.168.10.0/24")
            return None if net is None else Subnet(net)
        self.keys(item, SUBNET_KEYS, path, pos)
        prefix = self.required(item, "prefix", path, pos, "192.168.10.0/24")
        if prefix is _MISSING:
            return None
        net = self.cidr(prefix, _val_pos(item, "prefix", pos), f"{path}.prefix", "192.168.10.0/24")
        probe = None
        if not k_missing(item, "probe"):
            ppos = _val_pos(item, "probe", pos)
            raw = item["probe"]
            try:
                probe = ipaddress.ip_address(str(raw).strip()) if isinstance(raw, str) else None
            except ValueError:
                probe = None
            if probe is None or "%" in str(raw):
                self.report.error(ppos, f"{path}.probe", "must be an IP address inside the prefix, e.g. 192.168.10.1")
                return None
            if net is not None and (probe.version != net.version or probe not in net):
                self.report.error(ppos, f"{path}.probe", f"{probe} is outside {net}: pick an address inside it")
                return None
        return None if net is None else Subnet(net, probe)

    def commands(self, m: dict, k: str, path: str, pos: Pos) -> tuple[str, ...]:
        if k_missing(m, k):
            return ()
        v = m[k]
        vpos = _val_pos(m, k, pos)
        entries = (
            [(x, _item_pos(v, i, vpos), f"{path}.{k}[{i}]") for i, x in enumerate(v)]
            if isinstance(v, list)
            else [(v, vpos, f"{path}.{k}")]
        )
        out = []
        for x, p, sub in entries:
            if not isinstance(x, str):
                self.report.error(p, sub, f"must be a shell command as text (got {_show(x)}); quote it")
            elif not x.strip():
                self.report.error(p, sub, "empty command: remove it")
            elif "\n" in x or "\r" in x:
                self.report.error(p, sub, "a command must be one line: split it into a list of commands")
            else:
                out.append(str(x))
        return tuple(out)

    # ---- checks across nodes

    def cross_checks(self, mesh: _MeshDraft, drafts: list[_Draft]) -> None:
        self.unique_addresses(drafts)
        self.unique_keys(drafts)
        self.ssh_hosts(drafts)
        self.subnet_overlaps(mesh, drafts)
        self.unreachable_pairs(drafts)

    def unique_addresses(self, drafts: list[_Draft]) -> None:
        owner: dict[IPAddress, str] = {}
        for d in drafts:
            for addr, p, sub in d.addresses:
                if addr in owner:
                    self.report.error(p, sub, f"{addr} is already the address of {owner[addr]}: pick a free one")
                else:
                    owner[addr] = d.name

    def unique_keys(self, drafts: list[_Draft]) -> None:
        owner: dict[str, str] = {}
        for d in drafts:
            if d.public_key is None:
                continue
            if d.public_key in owner:
                self.report.error(
                    d.key_pos,
                    f"nodes.{d.name}.public_key",
                    f"the same key as {owner[d.public_key]}: each node needs its own key pair "
                    "(generate a new one on this node)",
                )
            else:
                owner[d.public_key] = d.name

    def ssh_hosts(self, drafts: list[_Draft]) -> None:
        for d in drafts:
            if d.mapping and not d.has_ssh_host and not d.has_endpoint:
                self.report.error(
                    d.pos,
                    f"nodes.{d.name}.ssh.host",
                    "no ssh host: set `ssh: {host: ...}` (a node without an endpoint needs one)",
                )

    def subnet_overlaps(self, mesh: _MeshDraft, drafts: list[_Draft]) -> None:
        entries: list[tuple[IPNetwork, Pos, str, str, int]] = []
        for d in drafts:
            for subnet, p, sub in d.subnets:
                for net, _, _ in mesh.networks:
                    if subnet.prefix.overlaps(net):
                        self.report.error(
                            p, sub, f"{subnet.prefix} overlaps the mesh network {net}: pick a prefix outside it"
                        )
                        break
                else:
                    entries.append((subnet.prefix, p, sub, d.name, len(entries)))
        for first, second in _overlapping([(e[0], e) for e in entries]):
            a, b = sorted((first, second), key=lambda e: e[4])
            if a[0] == b[0]:
                who = "this node" if a[3] == b[3] else a[3]
                self.report.error(
                    b[1],
                    b[2],
                    f"{b[0]} is already routed to {who} ({a[2]}): WireGuard would silently move it to one "
                    "peer; remove one",
                )
            else:
                self.report.warn(
                    b[1], b[2], f"{b[0]} overlaps {a[0]} of {a[3]} ({a[2]}): the longer prefix wins for its range"
                )

    def unreachable_pairs(self, drafts: list[_Draft]) -> None:
        behind_nat: list[str] = []
        for d in drafts:
            if not d.enrolled or d.endpoint is not None:
                continue
            if len(behind_nat) > _MAX_PAIR_WARNINGS:
                pass
            elif len(behind_nat) == _MAX_PAIR_WARNINGS:
                self.report.warn(
                    d.pos,
                    f"nodes.{d.name}",
                    "more nodes without an endpoint follow; no pair of them can connect "
                    "(give one of each pair an endpoint; relays are not supported yet)",
                )
            elif behind_nat:
                shown = ", ".join(behind_nat[:3]) + (f" and {len(behind_nat) - 3} more" if len(behind_nat) > 3 else "")
                self.report.warn(
                    d.pos,
                    f"nodes.{d.name}",
                    f"neither {d.name} nor {shown} has an endpoint: they cannot connect to each other "
                    "(give one of each pair an endpoint; relays are not supported yet)",
                )
            behind_nat.append(d.name)

    # ---- building the model

    def build(self, mesh: _MeshDraft, defaults: _Ssh, drafts: list[_Draft]) -> Mesh:
        nodes = tuple(self.build_node(mesh, defaults, d) for d in drafts)
        return Mesh(
            name=mesh.name or "",
            interface=mesh.interface,
            networks=tuple(n for n, _, _ in mesh.networks),
            nodes=nodes,
            listen_port=mesh.listen_port,
            persistent_keepalive=mesh.keepalive,
            mtu=mesh.mtu,
            path=self.mesh_path,
            node_lines={d.name: d.pos[0] for d in drafts},
        )

    def build_node(self, mesh: _MeshDraft, defaults: _Ssh, d: _Draft) -> Node:
        host = d.ssh.host or (d.endpoint.host if d.endpoint else "")
        known_hosts = d.ssh.known_hosts or defaults.known_hosts or DEFAULT_KNOWN_HOSTS
        identity = d.ssh.identity_file or defaults.identity_file
        ssh = Ssh(
            host=host,
            port=d.ssh.port or defaults.port or 22,
            user=d.ssh.user or defaults.user or "root",
            known_hosts=self.resolve(known_hosts),
            identity_file=self.resolve(identity) if identity else None,
            proxy_jump=d.ssh.proxy_jump or defaults.proxy_jump,
        )
        return Node(
            name=d.name,
            addresses=tuple(a for a, _, _ in d.addresses),
            public_key=d.public_key,
            endpoint=d.endpoint,
            ssh=ssh,
            subnets=tuple(s for s, _, _ in d.subnets),
            listen_port=d.listen_port if d.listen_port is not None else mesh.listen_port,
            mtu=d.mtu if d.mtu is not None else mesh.mtu,
            persistent_keepalive=mesh.keepalive,
            post_up=d.post_up,
            post_down=d.post_down,
            decommission=d.decommission,
        )

    def resolve(self, text: str) -> Path:
        p = Path(os.path.expanduser(text))
        return p if p.is_absolute() else self.directory / p


def k_missing(m: dict, k: str) -> bool:
    return k not in m or m[k] is None


def _overlapping(items: list[tuple[IPNetwork, Any]]) -> Iterator[tuple[Any, Any]]:
    """Pairs of overlapping prefixes, in O(n log n + pairs): CIDR blocks nest or are disjoint."""
    for version in (4, 6):
        blocks = sorted(
            (
                (int(net.network_address), -int(net.broadcast_address), i, int(net.broadcast_address), tag)
                for i, (net, tag) in enumerate(items)
                if net.version == version
            ),
            key=lambda b: b[:3],
        )
        stack: list[tuple[int, Any]] = []
        for start, _, _, end, tag in blocks:
            while stack and stack[-1][0] < start:
                stack.pop()
            for _, outer in stack:
                yield outer, tag
            stack.append((end, tag))


# --------------------------------------------------------------------------------------------------
# Round-trip edits (node add/remove, enrolment) that keep the user's comments and layout


def load_document(path: str | Path) -> CommentedMap:
    """The raw round-trip document, for edits. Raises MeshError if it cannot be read or parsed."""
    shown = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        raise MeshError([Diagnostic(shown, 0, 0, "", f"cannot read: {reason}")]) from None
    report = _Report(shown)
    doc = _parse(text, report)
    if report.failed:
        raise MeshError(report.diags)
    if not isinstance(doc, CommentedMap):
        raise MeshError([Diagnostic(shown, 1, 0, "", "the top level must be a mapping: fix it by hand first")])
    return doc


def dumps_document(doc: CommentedMap) -> str:
    from io import StringIO

    out = StringIO()
    _yaml().dump(doc, out)
    return out.getvalue()


def write_document(path: str | Path, doc: CommentedMap) -> None:
    """Write atomically: a temporary file in the same folder, then os.replace()."""
    target = Path(path)
    text = dumps_document(doc)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        if target.exists():
            os.chmod(tmp, target.stat().st_mode & 0o7777)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _nodes_map(doc: CommentedMap) -> CommentedMap:
    nodes = doc.get("nodes")
    if nodes is None:
        nodes = CommentedMap()
        doc["nodes"] = nodes
    if not isinstance(nodes, CommentedMap):
        raise ValueError("`nodes:` in mesh.yaml is not a mapping: fix it by hand first")
    return nodes


def add_node(doc: CommentedMap, name: str, fields: dict[str, Any]) -> None:
    """Append node `name` with `fields` (plain values) at the end of `nodes:`; ValueError if it exists."""
    if not _NAME_RE.fullmatch(name):
        raise ValueError(f"invalid node name {name!r}: use letters, digits, '_', '.', '-' (at most 63)")
    nodes = _nodes_map(doc)
    if name in nodes:
        raise ValueError(f"node {name!r} already exists in mesh.yaml")
    nodes[name] = to_yaml(fields)


def to_yaml(value: Any) -> Any:
    """Plain data as ruamel round-trip nodes: mappings block style, lists of scalars flow style."""
    from ruamel.yaml.comments import CommentedSeq

    if isinstance(value, dict):
        out = CommentedMap()
        for k, v in value.items():
            out[k] = to_yaml(v)
        return out
    if isinstance(value, list | tuple):
        seq = CommentedSeq(to_yaml(v) for v in value)
        if all(isinstance(v, str | int) for v in value):
            seq.fa.set_flow_style()
        return seq
    if isinstance(value, Path):
        return str(value)
    return value


def remove_node(doc: CommentedMap, name: str) -> None:
    """Remove node `name` from `nodes:`; KeyError if there is no such node."""
    nodes = _nodes_map(doc)
    if name not in nodes:
        raise KeyError(f"no node named {name!r} in mesh.yaml")
    del nodes[name]


def set_public_key(doc: CommentedMap, name: str, key: str) -> None:
    """Set nodes.NAME.public_key (placed after `address` when new); ValueError for a non-canonical key."""
    if not validate_key(key):
        raise ValueError("not a WireGuard public key (44 base64 characters ending in '=')")
    nodes = _nodes_map(doc)
    if name not in nodes:
        raise KeyError(f"no node named {name!r} in mesh.yaml")
    node = nodes[name]
    if not isinstance(node, CommentedMap):
        raise ValueError(f"nodes.{name} in mesh.yaml is not a mapping: fix it by hand first")
    if "public_key" in node:
        node["public_key"] = key
    else:
        keys = list(node)
        at = keys.index("address") + 1 if "address" in keys else len(keys)
        node.insert(at, "public_key", key)
