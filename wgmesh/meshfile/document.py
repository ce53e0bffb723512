"""Loading: the document, section by section (version, mesh, ssh, nodes), then the checks across nodes, then
the Mesh. Every problem is reported (not only the first); the Mesh is built only when there are none.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wgmesh.core.model import (
    DEFAULT_INTERFACE,
    DEFAULT_KEEPALIVE,
    DEFAULT_KNOWN_HOSTS,
    DEFAULT_LISTEN_PORT,
    DEFAULT_SSH_PORT,
    DEFAULT_SSH_USER,
    IPNetwork,
    Mesh,
    Node,
    Ssh,
    SshDefaults,
    SshTarget,
)
from wgmesh.meshfile.checks import NodeDraft, cross_checks
from wgmesh.meshfile.diagnostics import Diagnostic, MeshError, Pos, Report
from wgmesh.meshfile.fields import MISSING, Fields, SshFields, absent
from wgmesh.meshfile.schema import (
    MESH_KEYS,
    NAME_RE,
    NODE_KEYS,
    NODE_SSH_KEYS,
    SSH_KEYS,
    TOP_KEYS,
    VERSION,
    interface_problem,
    show,
)
from wgmesh.meshfile.secrets import check_comment_secrets, check_secrets, is_secret_name
from wgmesh.meshfile.yamldoc import DEEP, key_pos, parse_readonly, read_text, start, val_pos

TOP: Pos = (1, 1)


@dataclass
class MeshDraft:
    """The mesh: section as far as it validated, while the nodes are read."""

    name: str | None = None
    interface: str = DEFAULT_INTERFACE
    networks: list[tuple[IPNetwork, Pos, str]] = field(default_factory=list)
    listen_port: int = DEFAULT_LISTEN_PORT
    keepalive: int = DEFAULT_KEEPALIVE
    mtu: int | None = None
    relay: tuple[str, Pos] | None = None  # mesh.relay as written, and where

    @property
    def nets(self) -> list[IPNetwork]:
        return [n for n, _, _ in self.networks]


class Document:
    """Walks the parsed document, reporting every problem, and builds the Mesh if there are none."""

    def __init__(self, report: Report, mesh_path: Path) -> None:
        self.report = report
        self.mesh_path = mesh_path
        self.directory = mesh_path.parent
        self.known_hosts = self.directory / DEFAULT_KNOWN_HOSTS  # (made once: every node without its own has it)
        self.f = Fields(report, self.directory)

    def mesh(self, doc: dict) -> Mesh | None:
        self.f.keys(doc, TOP_KEYS, "", TOP)
        self.version(doc)
        mesh = self.mesh_section(doc)
        ssh = self.ssh_section(doc)
        drafts = self.nodes_section(doc, mesh)
        cross_checks(self.report, mesh.nets, drafts, mesh.relay)
        if self.report.failed:
            return None
        return self.build(mesh, ssh, drafts)

    def missing(self, doc: dict, k: str, message: str) -> bool:
        """Report a missing top-level `k` (unless a misspelling of it was already reported)."""
        if k in doc:
            return False
        if (id(doc), k) not in self.f.suggested:
            self.report.error(TOP, k, message)
        return True

    # ---- sections

    def version(self, doc: dict) -> None:
        if self.missing(doc, "version", 'missing required field "version": add `version: 1` at the top'):
            return
        v = doc["version"]
        if isinstance(v, bool) or not isinstance(v, int) or v != VERSION:
            self.report.error(
                val_pos(doc, "version", TOP),
                "version",
                f"unsupported version {show(v)}: write `version: {VERSION}`"
                + (" without quotes" if isinstance(v, str) and v.strip() == str(VERSION) else "")
                + " (the format this wgmesh reads)",
            )

    def mesh_section(self, doc: dict) -> MeshDraft:
        draft = MeshDraft()
        if self.missing(doc, "mesh", 'missing required section "mesh": add `mesh:` with name and network'):
            return draft
        m = self.f.mapping(doc, "mesh", "", TOP)
        pos = key_pos(doc, "mesh", TOP)
        if m is None:
            if doc["mesh"] is None:
                self.report.error(pos, "mesh", "empty section: set name and network")
            return draft
        self.f.keys(m, MESH_KEYS, "mesh", pos)
        name = self.f.required(m, "name", "mesh", pos, "demo")
        if name is not MISSING and isinstance(name, str) and NAME_RE.fullmatch(name):
            draft.name = str(name)
        elif name is not MISSING and not isinstance(name, str):  # 123, true, 2001-12-14: YAML read no text
            self.report.error(val_pos(m, "name", pos), "mesh.name", f"must be text (got {show(name)}): quote it")
        elif name is not MISSING:
            self.report.error(
                val_pos(m, "name", pos),
                "mesh.name",
                "must be 1-63 characters of letters, digits, '_', '.', '-', starting with a letter or digit",
            )
        iface = self.f.string(m, "interface", "mesh", pos)
        problem = None if iface is None else interface_problem(iface)
        if problem is not None:
            self.report.error(val_pos(m, "interface", pos), "mesh.interface", problem)
        elif iface is not None:
            draft.interface = iface
        self.networks(m, pos, draft)
        draft.listen_port = _or(self.f.integer(m, "listen_port", "mesh", pos, 1, 65535), draft.listen_port)
        draft.keepalive = _or(self.f.integer(m, "persistent_keepalive", "mesh", pos, 0, 65535), draft.keepalive)
        draft.mtu = self.f.mtu(m, "mesh", pos, draft.nets)
        relay = self.f.string(m, "relay", "mesh", pos)
        if relay is not None:
            draft.relay = (relay, val_pos(m, "relay", pos))
        return draft

    def networks(self, m: dict, pos: Pos, draft: MeshDraft) -> None:
        value = self.f.required(m, "network", "mesh", pos, "10.0.0.0/24")
        if value is MISSING:
            return
        if isinstance(value, list) and not value:
            self.report.error(
                val_pos(m, "network", pos), "mesh.network", "empty list: give at least one CIDR, e.g. 10.0.0.0/24"
            )
        for v, p, sub in self.f.entries(m, "network", "mesh", pos):
            net = self.f.cidr(v, p, sub, "10.0.0.0/24")
            if net is None:
                continue
            clash = next(((o, op) for o, _, op in draft.networks if net.overlaps(o)), None)
            if clash is not None:
                self.report.error(p, sub, f"{net} overlaps {clash[0]} ({clash[1]}): give disjoint networks")
            else:
                draft.networks.append((net, p, sub))

    def ssh_section(self, doc: dict) -> SshFields:
        out = SshFields()
        m = self.f.mapping(doc, "ssh", "", TOP)
        if m is None:
            return out
        pos = key_pos(doc, "ssh", TOP)
        if "host" in m:
            self.report.error(
                key_pos(m, "host", pos),
                "ssh.host",
                "a host cannot be shared by all nodes: set nodes.NAME.ssh.host (default: the endpoint's host)",
            )
        self.f.keys(m, (*SSH_KEYS, "host"), "ssh", pos)
        self.f.ssh(m, "ssh", pos, out)
        return out

    def nodes_section(self, doc: dict, mesh: MeshDraft) -> list[NodeDraft]:
        if self.missing(doc, "nodes", 'missing required section "nodes": add `nodes:` (it may be empty)'):
            return []
        nodes = doc["nodes"]
        if nodes is None:
            return []
        pos = key_pos(doc, "nodes", TOP)
        if not isinstance(nodes, dict):
            self.report.error(
                val_pos(doc, "nodes", pos), "nodes", "must be a mapping of node name to its fields, e.g. `aws:`"
            )
            return []
        drafts = []
        for name in nodes:
            kpos = key_pos(nodes, name, pos)
            if not isinstance(name, str):
                self.report.error(kpos, "nodes", f"node name {show(name)} must be text: quote it")
                continue
            if is_secret_name(name):
                continue
            if not NAME_RE.fullmatch(name):
                self.report.error(
                    kpos,
                    f"nodes.{name}",
                    "invalid node name: use 1-63 letters, digits, '_', '.', '-', starting with a letter or digit",
                )
            drafts.append(self.node(nodes, name, kpos, mesh))
        seen: dict[str, str] = {}
        for d in drafts:  # render --all writes NAME.conf: one file on a case-insensitive file system (macOS)
            other = seen.setdefault(d.name.lower(), d.name)
            if other != d.name:
                self.report.warn(d.pos, f"nodes.{d.name}", f"differs from node {other} only in case: `wgmesh render "
                                 "--all` writes both NAME.conf files, one file where names ignore case (macOS); "
                                 "rename one")
        return drafts

    def node(self, nodes: dict, name: str, pos: Pos, mesh: MeshDraft) -> NodeDraft:
        draft = NodeDraft(str(name), pos)
        path = f"nodes.{name}"
        m = nodes[name]
        if not isinstance(m, dict):
            self.report.error(
                val_pos(nodes, name, pos) if m is not None else pos,
                path,
                "must be a mapping with at least `address:`, e.g. `address: 10.0.0.1`",
            )
            draft.mapping = False
            return draft
        self.f.keys(m, NODE_KEYS, path, pos)
        self.addresses(m, path, pos, mesh, draft)
        key = self.f.public_key(m, path, pos)
        if key is not None:
            draft.public_key, draft.key_pos = key
        draft.endpoint = self.f.endpoint(m, path, pos)
        draft.has_endpoint = not absent(m, "endpoint")
        draft.subnets = self.f.subnets(m, path, pos)
        ssh = self.f.mapping(m, "ssh", path, pos)
        if ssh is not None:
            spos = key_pos(m, "ssh", pos)
            self.f.keys(ssh, NODE_SSH_KEYS, f"{path}.ssh", spos)
            self.f.ssh(ssh, f"{path}.ssh", spos, draft.ssh)
            draft.ssh.host = self.f.ssh_host(ssh, f"{path}.ssh", spos)
            draft.has_ssh_host = not absent(ssh, "host")
        draft.listen_port = self.f.integer(m, "listen_port", path, pos, 1, 65535)
        draft.mtu = self.f.mtu(m, path, pos, mesh.nets)
        draft.post_up = self.f.commands(m, "post_up", path, pos)
        draft.post_down = self.f.commands(m, "post_down", path, pos)
        draft.decommission = bool(self.f.boolean(m, "decommission", path, pos))
        draft.masquerade = bool(self.f.boolean(m, "masquerade", path, pos))
        draft.port_forward = bool(self.f.boolean(m, "port_forward", path, pos))
        draft.shared_keys = self.f.shared_keys(m, path, pos)
        self.endpoint_port(m, path, pos, mesh, draft)
        return draft

    def endpoint_port(self, m: dict, path: str, pos: Pos, mesh: MeshDraft, draft: NodeDraft) -> None:
        """A node's peers dial its endpoint's port: it must listen there, unless a router forwards that port to it
        (`port_forward: true`). Hand-made meshes get this wrong (a config without ListenPort listens on a random
        port while its peers dial 51820): the pair then works only after the node dials out first."""
        listen = _or(draft.listen_port, mesh.listen_port)
        if draft.decommission:
            return
        if draft.endpoint is not None and draft.endpoint.port != listen and not draft.port_forward:
            self.report.warn(
                val_pos(m, "endpoint", pos), f"{path}.endpoint",
                f"peers dial port {draft.endpoint.port}, but the node listens on {listen}: set `listen_port: "
                f"{draft.endpoint.port}` (or the endpoint's port to {listen}); if a router forwards port "
                f"{draft.endpoint.port} to the node's {listen}, say so with `port_forward: true`")
        elif draft.port_forward and not draft.has_endpoint:
            self.report.warn(val_pos(m, "port_forward", pos), f"{path}.port_forward",
                             "has no effect without an endpoint: the endpoint is the forwarded address")

    def addresses(self, m: dict, path: str, pos: Pos, mesh: MeshDraft, draft: NodeDraft) -> None:
        value = self.f.required(m, "address", path, pos, "10.0.0.1")
        if value is MISSING:
            return
        if isinstance(value, list) and not value:
            self.report.error(val_pos(m, "address", pos), f"{path}.address", "empty list: give at least one address")
        for v, p, sub in self.f.entries(m, "address", path, pos):
            addr = self.f.address(v, p, sub, mesh.nets)
            if addr is None:
                continue
            if draft.addresses and any(addr == a for a, _, _ in draft.addresses):
                self.report.error(p, sub, f"{addr} is listed twice: remove one")
                continue
            draft.addresses.append((addr, p, sub))

    # ---- building the model

    def build(self, mesh: MeshDraft, defaults: SshFields, drafts: list[NodeDraft]) -> Mesh:
        return Mesh(
            name=mesh.name or "",
            interface=mesh.interface,
            networks=tuple(mesh.nets),
            nodes=tuple(self.build_node(mesh, defaults, d) for d in drafts),
            listen_port=mesh.listen_port,
            persistent_keepalive=mesh.keepalive,
            mtu=mesh.mtu,
            relay=mesh.relay[0] if mesh.relay else None,
            path=self.mesh_path,
            ssh=SshDefaults(
                port=defaults.port or DEFAULT_SSH_PORT,
                user=defaults.user or DEFAULT_SSH_USER,
                known_hosts=defaults.known_hosts or self.known_hosts,
                identity_file=defaults.identity_file,
                proxy_jump=defaults.proxy_jump,
                proxy_command=defaults.proxy_command,
                sudo=defaults.sudo,
            ),
            node_lines={d.name: d.pos[0] for d in drafts},
        )

    def build_node(self, mesh: MeshDraft, defaults: SshFields, d: NodeDraft) -> Node:
        user = d.ssh.user or defaults.user or DEFAULT_SSH_USER
        # A node's own proxy_jump or proxy_command replaces the mesh-wide one of either kind.
        own = d.ssh.proxy_jump is not None or d.ssh.proxy_command is not None
        jump = d.ssh.proxy_jump if own else defaults.proxy_jump
        proxy_command = d.ssh.proxy_command if own else defaults.proxy_command
        ssh = Ssh(
            host=d.ssh.host or (d.endpoint.host if d.endpoint else ""),
            port=d.ssh.port or defaults.port or DEFAULT_SSH_PORT,
            user=user,
            known_hosts=d.ssh.known_hosts or defaults.known_hosts or self.known_hosts,
            identity_file=d.ssh.identity_file or defaults.identity_file,
            proxy_jump=None if jump is None else SshTarget(jump.user or user, jump.host, jump.port or DEFAULT_SSH_PORT),
            proxy_command=proxy_command,
            sudo=_or(d.ssh.sudo, defaults.sudo),
        )
        return Node(
            name=d.name,
            addresses=tuple(a for a, _, _ in d.addresses),
            public_key=d.public_key,
            endpoint=d.endpoint,
            ssh=ssh,
            subnets=tuple(s for s, _, _ in d.subnets),
            listen_port=_or(d.listen_port, mesh.listen_port),
            mtu=_or(d.mtu, mesh.mtu),
            persistent_keepalive=mesh.keepalive,
            post_up=d.post_up,
            post_down=d.post_down,
            decommission=d.decommission,
            masquerade=d.masquerade,
            port_forward=d.port_forward,
            keep_shared_keys=tuple(peer for peer, _, _ in d.shared_keys),
        )


def _or(value: Any, default: Any) -> Any:
    """`value` unless it is None (0 and False count as given)."""
    return default if value is None else value


def load(path: str | Path) -> tuple[Mesh, list[Diagnostic]]:
    """Read and validate mesh.yaml. Returns the mesh and its warnings; raises MeshError on any error."""
    return loads(read_text(path), path)


def loads(text: str, path: str | Path = "mesh.yaml") -> tuple[Mesh, list[Diagnostic]]:
    """Validate mesh.yaml given as text. `path` names the file in messages and anchors relative paths."""
    report = Report(str(path))
    try:
        mesh = _validate(text, Path(path), report)
    except MeshError:
        raise
    except RecursionError:
        report.error((1, 0), "", DEEP)
        mesh = None
    except Exception as e:  # a safety net: the contract is MeshError or a Mesh, never a traceback
        report.error((1, 0), "", f"internal error while validating ({type(e).__name__}): please report it")
        mesh = None
    if mesh is None or report.failed:
        raise MeshError(report.sorted())
    return mesh, sorted(report.warnings, key=lambda d: (d.line, d.col))


def _validate(text: str, path: Path, report: Report) -> Mesh | None:
    doc = parse_readonly(text, report)  # plain YAML read fast; edits parse with the round trip (edit.py)
    if report.failed:
        return None
    if doc is None or (isinstance(doc, str) and not doc.strip()):
        report.error((1, 0), "", "the file is empty: start from `wgmesh init` or mesh.example/mesh.yaml")
        return None
    if not isinstance(doc, dict):
        report.error(start(doc, (1, 1)), "", "the top level must be a mapping with keys version, mesh, ssh and nodes")
        return None
    check_secrets(doc, report)
    check_comment_secrets(text, report)
    return Document(report, path).mesh(doc)
