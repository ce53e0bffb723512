"""import: targets, the pure conversion live state -> mesh.yaml entries, and the command through a fake
transport. The wg-quick parser and the node scripts (secret filter, key move) are tested in
tests/remote/test_adopt.py."""

from __future__ import annotations

import base64
import dataclasses
import io
import ipaddress
import json
from collections.abc import Iterable, Mapping
from pathlib import Path

import fakes
import pytest
from meshes import converged, four, pubkey
from nacl.public import PrivateKey

from wgmesh import meshfile
from wgmesh.commands import importing as importer
from wgmesh.commands.common import ExitStatus, Failure
from wgmesh.core.adopt import Context, NodeRead, Target
from wgmesh.core.model import Mesh, Node
from wgmesh.core.render import render_node
from wgmesh.core.state import LivePeer, LiveState, normalized
from wgmesh.remote import adopt as remote_adopt
from wgmesh.remote.shell import MARK
from wgmesh.remote.transport import CommandResult
from wgmesh.views.env import Environment


def keypair(seed: int) -> tuple[str, str]:
    """A throwaway (private, public) pair, as `wg genkey`/`wg pubkey` would give."""
    sk = PrivateKey(bytes([seed]) * 32)
    return base64.b64encode(bytes(sk)).decode(), base64.b64encode(bytes(sk.public_key)).decode()


# ------------------------------------------------------------------------------------------ targets


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("aws=203.0.113.1", Target("aws", "203.0.113.1")),
        ("aws=admin@vpn.example.com", Target("aws", "vpn.example.com", "admin")),
        ("aws=root@203.0.113.1:2222", Target("aws", "203.0.113.1", "root", 2222)),
        ("v6=[2001:db8::1]", Target("v6", "2001:db8::1")),
        ("v6=ops@[2001:db8::1]:22", Target("v6", "2001:db8::1", "ops", 22)),
        ("v6=2001:db8::1", Target("v6", "2001:db8::1")),
    ],
)
def test_parse_target(text: str, want: Target) -> None:
    assert importer.parse_target(text) == want


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("aws", "write NAME=[USER@]HOST[:PORT]"),
        ("=host", "write NAME="),
        ("bad name=host", "invalid node name"),
        ("a=Root@host", "invalid user name"),
        ("a=host:ssh", "must be a number"),
        ("a=host:70000", "from 1 to 65535"),
        ("a=-oProxyCommand=x", "not a host name"),
        ("a=[::1", "IPv6 host"),
    ],
)
def test_parse_target_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("[", r"\[")):
        importer.parse_target(text)


def test_parse_endpoint_override() -> None:
    assert importer.parse_endpoint_override("a=vpn.example.com:51820") == ("a", "vpn.example.com:51820")
    with pytest.raises(ValueError, match="missing port"):
        importer.parse_endpoint_override("a=vpn.example.com")


# ------------------------------------------------------------------------------------------ the pure core


def hand_built(mesh: Mesh, **changes: object) -> dict[str, NodeRead]:
    """The reads of a mesh that runs exactly like `mesh`, set up by hand: keys inside the configs."""
    reads = {}
    for n in mesh.nodes:
        live = converged(mesh, n.name, key_file_exists=False, key_file_public_key=None, config_sha256="0" * 64)
        live = dataclasses.replace(live, **changes)  # type: ignore[arg-type]
        conf = remote_adopt.parse_wg_quick(render_node(mesh, n.name))
        reads[n.name] = NodeRead(Target(n.name, n.ssh.host), live, conf)
    return reads


BASE = "version: 1\nmesh:\n  name: demo\n  network: 10.0.0.0/24\nnodes:\n"
CTX = Context("wg0", (ipaddress.ip_network("10.0.0.0/24"),))


def imported(reads: Mapping[str, NodeRead], ctx: Context = CTX, base: str = BASE,
             endpoints: Mapping[str, str] | None = None) -> tuple[Mesh, list[str]]:
    entries, warnings = importer.build_entries(reads, ctx, endpoints)
    mesh, _ = meshfile.loads(importer.entries_text(base, entries), Path("mesh.yaml"))
    return mesh, warnings


def same_nodes(a: Iterable[Node], b: Iterable[Node]) -> None:
    def key(n: Node) -> tuple[object, ...]:
        return (n.name, n.addresses, n.public_key, n.endpoint, n.subnets, n.listen_port, n.post_up, n.ssh.host)

    assert [key(n) for n in a] == [key(n) for n in b]


def test_import_of_a_converged_mesh_gives_back_the_mesh() -> None:
    mesh = four()
    reads = hand_built(mesh)
    got, warnings = imported(reads)
    assert warnings == []
    same_nodes(got.nodes, mesh.nodes)
    for n in got.nodes:
        assert importer.residual(got, n.name, reads[n.name].live) == []


def test_endpoint_override_and_ssh_user_port() -> None:
    mesh = four()
    reads = hand_built(mesh)
    reads["aws"] = dataclasses.replace(reads["aws"], target=Target("aws", "192.0.2.1", "admin", 2222))
    got, _ = imported(reads, endpoints={"aliyun": "203.0.113.4:51820"})
    assert str(got.node("aliyun").endpoint) == "203.0.113.4:51820"
    assert (got.node("aws").ssh.user, got.node("aws").ssh.port) == ("admin", 2222)
    assert got.node("azure").ssh.user == "root"


def test_listen_port_mtu_and_commands() -> None:
    mesh = four()
    reads = hand_built(mesh)
    conf = dataclasses.replace(
        reads["gcp"].conf, mtu=1380,  # type: ignore[type-var]
        post_up=("wg set %i private-key /etc/wireguard/%i.key", "sysctl -w net.ipv4.ip_forward=1",
                 f"echo {remote_adopt.REDACTED}"),
        post_down=("true",), ignored=("DNS",),
    )
    reads["gcp"] = dataclasses.replace(reads["gcp"], conf=conf,
                                       live=dataclasses.replace(reads["gcp"].live, listen_port=51999))
    entries, warnings = importer.build_entries(reads, CTX)
    gcp = next(e for e in entries if e.name == "gcp").fields
    assert (gcp["listen_port"], gcp["mtu"]) == (51999, 1380)
    assert gcp["post_up"] == ["sysctl -w net.ipv4.ip_forward=1"]
    assert gcp["post_down"] == ["true"]
    assert "gcp: a PostUp command holds key material; it is not imported" in warnings
    assert any(w.startswith("gcp: wg0.conf sets DNS") for w in warnings)


def test_what_mesh_yaml_cannot_express_is_reported() -> None:
    mesh = four()
    reads = hand_built(mesh)
    aws = reads["aws"].live
    stranger = LivePeer(pubkey(77), None, frozenset({ipaddress.ip_network("10.0.0.77/32")}), 0, 0, 0, 0, False)
    keepalive_everywhere = {k: dataclasses.replace(p, persistent_keepalive=25) for k, p in aws.peers.items()}
    reads["aws"] = dataclasses.replace(
        reads["aws"],
        live=dataclasses.replace(aws, peers={**keepalive_everywhere, stranger.public_key: stranger},
                                 addresses=aws.addresses | {ipaddress.ip_interface("172.31.0.1/24")}),
    )
    got, warnings = imported(reads)
    assert any(w.startswith(f"aws: peer {pubkey(77)[:8]}… (10.0.0.77/32) is neither imported") for w in warnings)
    assert "aws: address 172.31.0.1/24 is outside the mesh network; not imported" in warnings
    assert importer.residual(got, "aws", reads["aws"].live) == [
        "~ interface wg0 (addresses)",
        "~ peer azure (persistent_keepalive)",
        "~ peer gcp (persistent_keepalive)",
        "~ peer aliyun (persistent_keepalive)",
        f"- peer {pubkey(77)[:8]}…",
    ]
    assert importer.residual(got, "gcp", reads["gcp"].live) == []


def test_peers_that_disagree() -> None:
    mesh = four()
    reads = hand_built(mesh)
    gcp = reads["gcp"].live
    aws_key = mesh.node("aws").public_key or ""
    wider = dataclasses.replace(gcp.peers[aws_key], allowed_ips=gcp.peers[aws_key].allowed_ips
                                | {ipaddress.ip_network("172.16.0.0/16"), ipaddress.ip_network("10.0.0.0/24")})
    reads["gcp"] = dataclasses.replace(reads["gcp"], live=dataclasses.replace(gcp, peers={**gcp.peers,
                                                                                           aws_key: wider}))
    entries, warnings = importer.build_entries(reads, CTX)
    aws = next(e for e in entries if e.name == "aws").fields
    assert aws["subnets"] == ["172.16.0.0/16", "192.168.10.0/24"]
    assert "aws: its peers route different AllowedIPs to it; importing all of them" in warnings
    assert "aws: AllowedIPs 10.0.0.0/24 overlaps the mesh network; not imported as a subnet" in warnings


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda r: dataclasses.replace(r, live=dataclasses.replace(r.live, interface_exists=False)),
         "aws: no interface wg0 on the node"),
        (lambda r: dataclasses.replace(r, live=dataclasses.replace(r.live, public_key=None)),
         "aws: interface wg0 has no private key"),
        (lambda r: dataclasses.replace(r, live=dataclasses.replace(r.live, key_file_exists=True,
                                                                   key_file_public_key=pubkey(99))),
         "aws: /etc/wireguard/wg0.key does not hold the key wg0 runs with"),
        (lambda r: dataclasses.replace(r, live=dataclasses.replace(r.live, public_key=pubkey(2))),
         "aws and azure run the same key"),
        (lambda r: dataclasses.replace(r, live=dataclasses.replace(
            r.live, addresses=frozenset({ipaddress.ip_interface("10.9.0.1/24")}))),
         r"aws: none of the interface's addresses \(10.9.0.1/24\) is in the mesh network 10.0.0.0/24"),
    ],
)
def test_nodes_that_cannot_be_imported(change: object, message: str) -> None:
    mesh = four()
    reads = hand_built(mesh)
    reads = {"azure": reads["azure"], "aws": change(reads["aws"])}  # type: ignore[operator]
    with pytest.raises(importer.ImportProblem, match=message):
        importer.build_entries(reads, CTX)


def test_names_and_keys_already_in_mesh_yaml() -> None:
    reads = hand_built(four())
    with pytest.raises(importer.ImportProblem, match=r"aws: a node of that name is already in mesh\.yaml"):
        importer.build_entries(reads, dataclasses.replace(CTX, existing_names=frozenset({"aws"})))
    with pytest.raises(importer.ImportProblem, match=r"gcp: its key is already in mesh\.yaml as node old"):
        importer.build_entries(reads, dataclasses.replace(CTX, existing_keys={pubkey(3): "old"}))


@pytest.mark.parametrize(
    ("addresses", "want"),
    [
        (["10.0.0.1/24", "10.0.0.2/24", "fd00::1/64"], ["10.0.0.0/24", "fd00::/64"]),
        (["10.0.0.1/24", "10.0.0.2/32"], ["10.0.0.0/24"]),
        (["10.0.0.1/32"], "no network prefix"),
        (["10.0.0.1/24", "10.0.0.2/16"], "overlapping prefixes"),
    ],
)
def test_derive_networks(addresses: list[str], want: list[str] | str) -> None:
    mesh = four()
    reads = {
        f"n{i}": NodeRead(Target(f"n{i}", "h"), dataclasses.replace(
            converged(mesh, "aws"), addresses=frozenset({ipaddress.ip_interface(a)})), None)
        for i, a in enumerate(addresses)
    }
    if isinstance(want, str):
        with pytest.raises(importer.ImportProblem, match=want):
            importer.derive_networks(reads)
    else:
        assert [str(n) for n in importer.derive_networks(reads)] == want


# ------------------------------------------------------------------------------------------ the command


def read_output(state: LiveState, conf: str | None) -> str:
    """What `import_script` prints on a node in `state` (the inverse of the parsers, for the fake)."""
    head = [f"{MARK}wgquick", "present" if conf is not None else "absent", *(conf or "").splitlines()]
    return "\n".join(head) + "\n" + fakes.read_output(state)


def test_read_output_helper_round_trips() -> None:
    mesh = four()
    for n in mesh.nodes:
        state = converged(mesh, n.name)
        live, conf = importer.parse_import_output("wg0", read_output(state, render_node(mesh, n.name)))
        assert normalized(live) == normalized(state)
        assert conf == remote_adopt.parse_wg_quick(render_node(mesh, n.name))


class FakeNodes:
    """Answers the import read with canned state; records the adopt scripts and answers them."""

    def __init__(self, reads: Mapping[str, tuple[LiveState, str | None]], fail_adopt: Iterable[str] = (),
                 down: Iterable[str] = ()) -> None:
        self.reads = reads
        self.fail_adopt = set(fail_adopt)
        self.down = set(down)
        self.adopted: dict[str, str] = {}
        self.connected: list[Node] = []

    def connect(self, nodes: Iterable[Node]) -> dict[str, str]:
        self.connected += list(nodes)
        return {n.name: "cannot connect: Connection refused" for n in self.connected if n.name in self.down}

    def run(self, node: str, script: str, timeout: float | None = None) -> CommandResult:
        kind = fakes.script_kind(script)
        if kind == "import":
            state, conf = self.reads[node]
            return CommandResult(0, read_output(state, conf), "")
        if kind == "read":  # a plain read (resolving endpoint names)
            state, _ = self.reads[node]
            return CommandResult(0, fakes.read_output(state), "")
        assert kind == "adopt"
        assert "PrivateKey" not in fakes.script_values(script)["CONF_TEXT"]
        self.adopted[node] = script
        if node in self.fail_adopt:
            return CommandResult(5, "", "cannot find the private key of wg0\n")
        return CommandResult(0, f"{MARK}adopted config\n", "")

    def run_many(self, scripts: Mapping[str, str], timeout: float | None = None) -> dict[str, CommandResult | str]:
        return {n: self.run(n, s) for n, s in scripts.items()}

    def close(self) -> None:
        pass


def hand_mesh() -> tuple[Mesh, dict[str, tuple[LiveState, str | None]]]:
    mesh = four()
    reads = hand_built(mesh)
    texts = {}
    for name, r in reads.items():
        priv = keypair(10 + len(texts))[0]
        conf = render_node(mesh, name).replace("PostUp = wg set %i private-key /etc/wireguard/%i.key\n",
                                               f"PrivateKey = {priv}\n")
        texts[name] = (r.live, conf)
    return mesh, texts


def env() -> Environment:
    return Environment(io.StringIO(), io.StringIO(), color=False, stdin_isatty=False)


def out(e: Environment) -> str:
    return e.stdout.getvalue() + e.stderr.getvalue()  # type: ignore[attr-defined]


TARGETS = ("aws=192.0.2.1", "azure=192.0.2.2", "gcp=admin@192.0.2.3:2222", "aliyun=192.0.2.4")


def test_import_creates_mesh_yaml(tmp_path: Path) -> None:
    mesh, reads = hand_mesh()
    fake = FakeNodes(reads)
    f = tmp_path / "repo" / "mesh.yaml"
    f.parent.mkdir()
    e = env()
    opts = importer.ImportOptions(f, TARGETS, identity_file="~/.ssh/id_ed25519")
    assert importer.run_import(opts, e, lambda o, p: fake) == ExitStatus.OK
    got, _ = meshfile.load(f)
    assert (got.name, got.interface, [str(n) for n in got.networks]) == ("repo", "wg0", ["10.0.0.0/24"])
    same_nodes([dataclasses.replace(n, ssh=mesh.node(n.name).ssh) for n in got.nodes], mesh.nodes)
    assert (got.node("gcp").ssh.user, got.node("gcp").ssh.port) == ("admin", 2222)
    assert got.node("aws").ssh.identity_file == Path.home() / ".ssh/id_ed25519"
    assert [n.ssh.known_hosts for n in fake.connected] == [f.parent / "known_hosts"] * 4
    for name, script in fake.adopted.items():
        assert fakes.script_values(script)["CONF_TEXT"] == render_node(got, name)
        assert f"EXPECT={got.node(name).public_key}" in script
    text = out(e)
    assert "  + node aliyun: 10.0.0.4, subnets 192.168.40.0/24, ssh root@192.0.2.4" in text
    assert "Warning" not in text
    assert f"Created {f}: imported 4 node(s)" in text
    for _, conf in reads.values():
        priv = next(ln for ln in (conf or "").splitlines() if ln.startswith("PrivateKey")).split(" = ")[1]
        assert priv not in text and priv not in f.read_text()


@pytest.mark.parametrize("interface", ["all", "interfaces", "wg+", "a-name-over-15-chars"])
def test_import_refuses_an_interface_name_before_it_reads_a_node(tmp_path: Path, interface: str) -> None:
    """Review P3: `--interface all` had every node's read run `wg show all dump`: the private and preshared keys of
    the node's other interfaces crossed the wire. The name is checked as mesh.yaml's is, before any connection."""
    _, reads = hand_mesh()
    fake = FakeNodes(reads)
    f = tmp_path / "mesh.yaml"
    opts = importer.ImportOptions(f, TARGETS, interface=interface)
    with pytest.raises(Failure, match=r"^--interface: .*e\.g\. wg0$"):
        importer.run_import(opts, env(), lambda o, p: fake)
    assert fake.connected == [] and not f.exists()


def test_import_into_an_existing_mesh_yaml(tmp_path: Path) -> None:
    _, reads = hand_mesh()
    f = tmp_path / "mesh.yaml"
    original = ("# our mesh\nversion: 1\nmesh:\n  name: demo\n  network: 10.0.0.0/24  # keep\nssh:\n  user: ops\n"
                "nodes:\n  # the old one\n  old:\n    address: 10.0.0.50\n    ssh: {host: 192.0.2.50}\n")
    f.write_text(original)
    targets = ("aws=192.0.2.1", "azure=ops@192.0.2.2", "gcp=root@192.0.2.3", "aliyun=192.0.2.4")
    assert importer.run_import(importer.ImportOptions(f, targets), env(), lambda o, p: FakeNodes(reads)) == 0
    text = f.read_text()
    assert text.startswith(original)
    got, _ = meshfile.load(f)
    assert got.node_names == ("old", "aws", "azure", "gcp", "aliyun")
    assert [got.node(n).ssh.user for n in ("aws", "azure", "gcp")] == ["ops", "ops", "root"]
    assert "user" not in text.split("  azure:")[1].split("  gcp:")[0]


def test_dry_run_changes_nothing(tmp_path: Path) -> None:
    _, reads = hand_mesh()
    fake = FakeNodes(reads)
    f = tmp_path / "mesh.yaml"
    e = env()
    assert importer.run_import(importer.ImportOptions(f, TARGETS, dry_run=True), e, lambda o, p: fake) == 0
    assert not f.exists() and fake.adopted == {}
    assert "Dry run: nothing was changed" in out(e)


def test_a_node_that_fails_to_adopt_is_left_out(tmp_path: Path) -> None:
    _, reads = hand_mesh()
    fake = FakeNodes(reads, fail_adopt=["gcp"])
    f = tmp_path / "mesh.yaml"
    e = env()
    with pytest.raises(Failure, match=r"import failed on 1 node\(s\): gcp$"):
        importer.run_import(importer.ImportOptions(f, TARGETS), e, lambda o, p: fake)
    assert meshfile.load(f)[0].node_names == ("aws", "azure", "aliyun")
    assert "gcp: cannot find the private key of wg0" in out(e)


def test_an_unreachable_node_stops_everything(tmp_path: Path) -> None:
    _, reads = hand_mesh()
    fake = FakeNodes(reads, down=["azure"])
    f = tmp_path / "mesh.yaml"
    with pytest.raises(Failure, match="cannot read azure; nothing was imported or changed"):
        importer.run_import(importer.ImportOptions(f, TARGETS), env(), lambda o, p: fake)
    assert not f.exists() and fake.adopted == {}


def test_a_node_that_cannot_be_imported_stops_everything(tmp_path: Path) -> None:
    _, reads = hand_mesh()
    state, conf = reads["aws"]
    reads["aws"] = (dataclasses.replace(state, key_file_exists=True, key_file_public_key=pubkey(99)), conf)
    fake = FakeNodes(reads)
    f = tmp_path / "mesh.yaml"
    with pytest.raises(Failure, match=r"aws: /etc/wireguard/wg0\.key does not hold.*nothing was imported or changed"):
        importer.run_import(importer.ImportOptions(f, TARGETS), env(), lambda o, p: fake)
    assert not f.exists() and fake.adopted == {}


@pytest.mark.parametrize(
    ("opts", "message"),
    [
        ({"targets": ("aws=h", "aws=h2")}, "node name given twice: aws"),
        ({"targets": ("aws",)}, "write NAME="),
        ({"targets": ("aws=h",), "endpoints": ("gcp=x:1",)}, "--endpoint gcp: not one of the nodes"),
        ({"targets": ("aws=h",), "networks": ("10.0.0.0/24",), "exists": True}, "--network only apply when"),
    ],
)
def test_usage_errors(tmp_path: Path, opts: dict, message: str) -> None:
    f = tmp_path / "mesh.yaml"
    if opts.pop("exists", False):
        f.write_text(BASE)
    fake = FakeNodes({})
    with pytest.raises(Failure, match=message):
        importer.run_import(importer.ImportOptions(f, **opts), env(), lambda o, p: fake)
    assert fake.connected == []


def test_cli_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import typer
    from typer.testing import CliRunner

    from wgmesh.cli import keys as cli_keys

    _, reads = hand_mesh()
    monkeypatch.setattr(importer, "ssh_transport", lambda o, p: FakeNodes(reads))
    app = typer.Typer()
    app.command("import")(cli_keys.import_)
    app.command()(cli_keys.enroll)
    f = tmp_path / "mesh.yaml"
    r = CliRunner().invoke(app, ["import", *TARGETS, "-f", str(f), "--name", "hand", "--network", "10.0.0.0/24"])
    assert r.exit_code == 0, r.output
    assert meshfile.load(f)[0].name == "hand"
    r = CliRunner().invoke(app, ["import", "x=h", "-f", str(f), "--name", "again"])
    assert r.exit_code == 1
    assert r.output.strip().splitlines() == [
        f"Error: --name only apply when import creates {f}; it exists: edit it instead"]


def test_a_missing_interface_is_named_before_networks_are_guessed(tmp_path: Path) -> None:
    _, reads = hand_mesh()
    state, _ = reads["gcp"]
    reads["gcp"] = (dataclasses.replace(state, interface_exists=False, addresses=frozenset(), peers={}), None)
    for name in ("aws", "azure", "aliyun"):
        s, c = reads[name]
        reads[name] = (dataclasses.replace(s, addresses=frozenset(ipaddress.ip_interface(f"{a.ip}/32")
                                                                  for a in s.addresses)), c)
    f = tmp_path / "mesh.yaml"
    with pytest.raises(Failure, match=r"^gcp: no interface wg0 on the node"):
        importer.run_import(importer.ImportOptions(f, TARGETS), env(), lambda o, p: FakeNodes(reads))
    with pytest.raises(Failure, match=r"no network prefix \(/32 or /128\): pass --network CIDR"):
        importer.run_import(importer.ImportOptions(f, (TARGETS[0], TARGETS[1])), env(),
                            lambda o, p: FakeNodes(reads))
    opts = importer.ImportOptions(f, (TARGETS[0], TARGETS[1]), networks=("10.0.0.0/24",))
    assert importer.run_import(opts, env(), lambda o, p: FakeNodes(reads)) == ExitStatus.OK
    got, _ = meshfile.load(f)
    assert [str(n) for n in got.networks] == ["10.0.0.0/24"]


def test_import_json_is_one_document(tmp_path: Path) -> None:
    import json

    _, reads = hand_mesh()
    f = tmp_path / "mesh.yaml"
    e = env()
    opts = importer.ImportOptions(f, TARGETS, json=True)
    assert importer.run_import(opts, e, lambda o, p: FakeNodes(reads)) == ExitStatus.OK
    doc = json.loads(e.stdout.getvalue())  # type: ignore[attr-defined]
    assert (doc["format_version"], doc["type"], doc["ok"], doc["written"], doc["creating"]) == (
        "1", "import", True, True, True)
    assert [n["node"] for n in doc["nodes"]] == ["aws", "azure", "gcp", "aliyun"]
    assert {n["key_source"] for n in doc["nodes"]} == {"config"}
    assert doc["nodes"][0]["entry"]["address"] == "10.0.0.1"
    e = env()
    dry = importer.ImportOptions(tmp_path / "other.yaml", TARGETS, dry_run=True, json=True)
    assert importer.run_import(dry, e, lambda o, p: FakeNodes(reads)) == ExitStatus.OK
    doc = json.loads(e.stdout.getvalue())  # type: ignore[attr-defined]
    assert doc["dry_run"] is True and doc["written"] is False


def test_import_json_says_why_nothing_was_imported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _, reads = hand_mesh()
    e = env()
    opts = importer.ImportOptions(tmp_path / "mesh.yaml", TARGETS, json=True)
    with pytest.raises(Failure):
        importer.run_import(opts, e, lambda o, p: FakeNodes(reads, down=["azure"]))
    doc = json.loads(e.stdout.getvalue())  # type: ignore[attr-defined]
    assert (doc["type"], doc["ok"], doc["written"]) == ("import", False, False)
    assert doc["error"] == "cannot read azure; nothing was imported or changed"
    assert doc["nodes"] == [{"node": "azure", "error": "cannot connect: Connection refused"}]
    e = env()
    f = tmp_path / "full" / "mesh.yaml"
    f.parent.mkdir()

    def full(path: Path, text: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(importer.meshfile, "write_text", full)
    with pytest.raises(Failure, match=r"cannot write .*; aws, azure, gcp, aliyun took part already .*run the same "
                                      r"import again"):
        importer.run_import(importer.ImportOptions(f, TARGETS, json=True), e, lambda o, p: FakeNodes(reads))
    doc = json.loads(e.stdout.getvalue())  # type: ignore[attr-defined]
    assert (doc["ok"], doc["written"]) == (False, False) and doc["error"].startswith("cannot write")


def test_a_node_whose_config_would_change_keeps_it_until_the_first_apply(tmp_path: Path) -> None:
    """Importing part of a hand-made mesh: aws's config lists a peer that is not imported. Writing wgmesh's config
    there at once would drop that peer at aws's next start, before any apply; so aws keeps its own config (the
    first apply replaces it, as plan shows), the others, whose configs would not change, get wgmesh's."""
    _, reads = hand_mesh()
    fake = FakeNodes(reads)
    f = tmp_path / "mesh.yaml"
    e = env()
    targets = ("aws=192.0.2.1", "azure=192.0.2.2", "gcp=admin@192.0.2.3:2222")  # not aliyun
    assert importer.run_import(importer.ImportOptions(f, targets), e, lambda o, p: fake) == ExitStatus.OK
    wrote = {n: fakes.script_values(s)["WRITE_CONF"] for n, s in fake.adopted.items()}
    assert wrote == {"aws": "0", "azure": "0", "gcp": "0"}, "each of them has aliyun as a peer"
    text = out(e)
    assert "aws: the first plan will still show - peer" in text
    assert ("  aws: copied its private key from the PrivateKey line of /etc/wireguard/wg0.conf to "
            "/etc/wireguard/wg0.key (on the node); left its /etc/wireguard/wg0.conf as it is, since wgmesh's would "
            "change it (above): the first apply replaces it") in text
    assert (f"imported 3 node(s). Next: `wgmesh plan -f {f}` (it shows what the first apply changes on aws, azure, "
            "gcp)") in text


def test_a_node_with_settings_wgmesh_leaves_out_keeps_its_config(tmp_path: Path) -> None:
    _, reads = hand_mesh()
    state, conf = reads["gcp"]
    reads["gcp"] = (state, (conf or "").replace("[Interface]\n", "[Interface]\nDNS = 10.0.0.53\n"))
    fake = FakeNodes(reads)
    e = env()
    assert importer.run_import(importer.ImportOptions(tmp_path / "mesh.yaml", TARGETS, json=True), e,
                               lambda o, p: fake) == 0
    assert {n: fakes.script_values(s)["WRITE_CONF"] for n, s in fake.adopted.items()} == {
        "aws": "1", "azure": "1", "gcp": "0", "aliyun": "1"}
    doc = json.loads(e.stdout.getvalue())
    assert {n["node"]: n["config"] for n in doc["nodes"]} == {
        "aws": "written", "azure": "written", "gcp": "kept", "aliyun": "written"}


@pytest.mark.parametrize("table", ["off", "1234"])
def test_table_off_with_its_own_route_hooks_is_refused(table: str) -> None:
    """`Table = off` and PostUp lines that add the routes: wgmesh's config lets wg-quick route the AllowedIPs, and
    a kept `ip route add` then fails `wg-quick up` at the next start; import stops before anything changes."""
    mesh = four()
    reads = hand_built(mesh)
    text = render_node(mesh, "aws").replace(
        "[Interface]\n", f"[Interface]\nTable = {table}\nPostUp = ip route add 192.168.20.0/24 dev %i\n")
    reads["aws"] = dataclasses.replace(reads["aws"], conf=remote_adopt.parse_wg_quick(text))
    with pytest.raises(importer.ImportProblem, match=rf"aws: its wg0.conf sets `Table = {table}` .* and has PostUp "
                                                     r"lines.*take `Table` and the route lines out of wg0.conf"):
        importer.build_entries(reads, CTX)


@pytest.mark.parametrize("line", ["Table = auto", "Table = main", "table=off"])
def test_table_without_hooks_or_the_default_table_is_imported(line: str) -> None:
    mesh = four()
    reads = hand_built(mesh)
    conf = remote_adopt.parse_wg_quick(render_node(mesh, "aws").replace("[Interface]\n", f"[Interface]\n{line}\n"))
    reads["aws"] = dataclasses.replace(reads["aws"], conf=conf)
    _, warnings = imported(reads)
    default = line.split("=")[1].strip() in ("auto", "main")
    assert (conf.table, conf.ignored) == ((None, ()) if default else ("off", ("Table",)))
    assert any(w.startswith("aws: wg0.conf sets Table") for w in warnings) is not default


def test_two_imports_creating_mesh_yaml_at_once_keep_each_others_nodes(tmp_path: Path) -> None:
    """Review K: imports run at once into a fresh folder each wrote the file they set out to create, and only
    the last one's nodes were left. The one that finds the file made meanwhile (under the folder's lock) adds
    its nodes to it."""
    _, reads = hand_mesh()
    f = tmp_path / "repo" / "mesh.yaml"
    f.parent.mkdir()
    other = importer.ImportOptions(f, TARGETS[2:])

    class Racing(FakeNodes):
        def run(self, node: str, script: str, timeout: float | None = None) -> CommandResult:
            if fakes.script_kind(script) == "adopt" and node == "aws":  # the other import ends meanwhile
                assert importer.run_import(other, env(), lambda o, p: FakeNodes(reads)) == ExitStatus.OK
                assert f.exists()
            return super().run(node, script, timeout)

    e = env()
    assert importer.run_import(importer.ImportOptions(f, TARGETS[:2]), e, lambda o, p: Racing(reads)) == ExitStatus.OK
    got, _ = meshfile.load(f)
    assert got.node_names == ("gcp", "aliyun", "aws", "azure")
    assert f"Created {f}" not in out(e)  # the other import created it


def test_a_broken_endpoint_in_one_peers_config_does_not_outvote_a_usable_one() -> None:
    """Review E: aws's config gave azure a malformed Endpoint, gcp's the right one: the tie went to aws's (read
    first), which was then refused, and azure was imported as behind NAT."""
    mesh = four()
    reads = hand_built(mesh)
    azure_key = mesh.node("azure").public_key
    good = next(p.endpoint for p in reads["gcp"].conf.peers if p.public_key == azure_key)  # type: ignore[union-attr]
    assert good

    def endpoint_of_azure(name: str, endpoint: str | None) -> None:
        conf = reads[name].conf
        assert conf is not None
        peers = [dataclasses.replace(p, endpoint=endpoint) if p.public_key == azure_key else p for p in conf.peers]
        reads[name] = dataclasses.replace(reads[name], conf=dataclasses.replace(conf, peers=tuple(peers)))

    endpoint_of_azure("aws", "azure.example.com:notaport")
    endpoint_of_azure("aliyun", None)
    got, warnings = imported(reads)
    assert str(got.node("azure").endpoint) == good
    assert any(w.startswith("azure: endpoint 'azure.example.com:notaport' in a peer's config is not usable")
               for w in warnings), warnings
