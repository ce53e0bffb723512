"""import: wg-quick parsing, the node-side secret filter and key move (run for real on temporary folders),
the pure conversion live state -> mesh.yaml entries, and the command through a fake transport."""

from __future__ import annotations

import base64
import dataclasses
import io
import ipaddress
import json
import os
import shutil
import stat
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest
from meshes import converged, four, pubkey
from nacl.public import PrivateKey

from wgmesh import config
from wgmesh.commands import importing as importer
from wgmesh.commands.common import ExitStatus, Failure
from wgmesh.core.adopt import Context, NodeRead, Target
from wgmesh.core.model import Mesh, Node
from wgmesh.core.render import render_node
from wgmesh.core.state import LivePeer, LiveState, normalized
from wgmesh.remote import adopt as remote_adopt
from wgmesh.remote import read as live_mod
from wgmesh.remote.transport import CommandResult
from wgmesh.views.env import Environment

needs_wg = pytest.mark.skipif(shutil.which("wg") is None, reason="needs wg (wireguard-tools)")


def keypair(seed: int) -> tuple[str, str]:
    """A throwaway (private, public) pair, as `wg genkey`/`wg pubkey` would give."""
    sk = PrivateKey(bytes([seed]) * 32)
    return base64.b64encode(bytes(sk)).decode(), base64.b64encode(bytes(sk.public_key)).decode()


def sh(script: str) -> CommandResult:
    r = subprocess.run(["/bin/sh", "-s"], input=script, capture_output=True, text=True, timeout=30)
    return CommandResult(r.returncode, r.stdout, r.stderr)


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


# ------------------------------------------------------------------------------------------ wg-quick configs

CLASSIC = """\
[Interface]
# node a
Address = 10.0.0.1/24, fd00::1/64
address = 10.0.1.1/24
ListenPort = 51821
PrivateKey = {priv}
MTU = 1380
DNS = 1.1.1.1
SaveConfig = true
PostUp = iptables -A FORWARD -i %i -j ACCEPT # allow
PostUp = wg set %i private-key /etc/wireguard/private.key
PostDown = iptables -D FORWARD -i %i -j ACCEPT

[Peer]
PublicKey = {pub_b}
PresharedKey = {psk}
AllowedIPs = 10.0.0.2/32
AllowedIPs = 192.168.20.0/24
Endpoint = b.example.com:51820
PersistentKeepalive = 25

[peer]
publickey={pub_c}
allowedips=10.0.0.3/32
persistentkeepalive = off

[Peer]
AllowedIPs = 10.0.0.9/32
"""


def classic() -> tuple[str, dict[str, str]]:
    priv, _ = keypair(1)
    psk, _ = keypair(9)
    values = {"priv": priv, "psk": psk, "pub_b": keypair(2)[1], "pub_c": keypair(3)[1]}
    return CLASSIC.format(**values), values


def test_parse_wg_quick() -> None:
    text, v = classic()
    got = remote_adopt.parse_wg_quick(text)
    assert got == remote_adopt.WgQuick(
        addresses=("10.0.0.1/24", "fd00::1/64", "10.0.1.1/24"),
        listen_port=51821,
        mtu=1380,
        post_up=("iptables -A FORWARD -i %i -j ACCEPT", "wg set %i private-key /etc/wireguard/private.key"),
        post_down=("iptables -D FORWARD -i %i -j ACCEPT",),
        ignored=("DNS", "SaveConfig"),
        peers=(
            remote_adopt.QuickPeer(v["pub_b"], "b.example.com:51820", ("10.0.0.2/32", "192.168.20.0/24"), 25),
            remote_adopt.QuickPeer(v["pub_c"], None, ("10.0.0.3/32",), 0),
        ),
    )
    assert v["priv"] not in repr(got) and v["psk"] not in repr(got)


def test_the_node_side_filter_removes_every_secret(tmp_path: Path) -> None:
    text, v = classic()
    priv2, _ = keypair(5)
    text += f"  privatekey={priv2}\n[Interface]\nPostUp = echo {priv2} > /tmp/x\n@@wgmesh:end\n"
    (tmp_path / "wgt0.conf").write_text(text)
    r = sh(importer.import_script("wgt0", key_dir=str(tmp_path)))
    assert r.exit_status == 0, r.stderr
    for secret in (v["priv"], v["psk"], priv2):
        assert secret not in r.stdout
    assert "privatekey" not in r.stdout.lower() and "presharedkey" not in r.stdout.lower()
    assert v["pub_b"] in r.stdout and v["pub_c"] in r.stdout
    assert f"PostUp = echo {remote_adopt.REDACTED} > /tmp/x" in r.stdout
    live, conf = importer.parse_import_output("wgt0", r.stdout)
    assert live.interface_exists is False
    assert conf is not None and conf.listen_port == 51821
    assert conf.post_up[-1] == f"echo {remote_adopt.REDACTED} > /tmp/x"


def test_import_output_without_a_config(tmp_path: Path) -> None:
    r = sh(importer.import_script("wgt0", key_dir=str(tmp_path)))
    live, conf = importer.parse_import_output("wgt0", r.stdout)
    assert conf is None and live.interface_exists is False


@pytest.mark.parametrize("bad", ["", "@@wgmesh-import:conf\nmaybe\n@@wgmesh-import:done\n", "hello\n"])
def test_import_output_garbled(bad: str) -> None:
    with pytest.raises(live_mod.ParseError):
        importer.parse_import_output("wg0", bad)


# ------------------------------------------------------------------------------------------ moving the key


@needs_wg
class TestAdopt:
    CONF = "# new config\n[Interface]\nListenPort = 51820\n"

    def make(self, tmp_path: Path, conf: str | None) -> Path:
        d = tmp_path / "wg"
        d.mkdir(mode=0o700)
        if conf is not None:
            (d / "wg0.conf").write_text(conf)
        return d

    def test_moves_the_key_from_the_config(self, tmp_path: Path) -> None:
        priv, pub = keypair(1)
        old = f"[Interface]\nAddress = 10.0.0.1/24\n  PrivateKey = {priv}  # inline\n[Peer]\nPublicKey = {pubkey(2)}\n"
        d = self.make(tmp_path, old)
        r = sh(importer.adopt_script("wg0", pub, self.CONF, key_dir=str(d)))
        assert r.exit_status == 0, r.stderr
        assert importer.parse_adopt_output(r.stdout) == "config"
        assert (d / "wg0.key").read_text() == priv + "\n"
        assert stat.S_IMODE((d / "wg0.key").stat().st_mode) == 0o600
        assert (d / "wg0.conf").read_text() == self.CONF
        assert stat.S_IMODE((d / "wg0.conf").stat().st_mode) == 0o600
        backup = (d / "wg0.conf.wgmesh-import").read_text()
        assert priv not in backup
        assert backup.splitlines()[1:] == [ln for ln in old.splitlines() if "PrivateKey" not in ln]
        assert sorted(os.listdir(d)) == ["wg0.conf", "wg0.conf.wgmesh-import", "wg0.key"]
        assert priv not in r.stdout + r.stderr

    def test_keeps_a_matching_key_file_and_the_first_backup(self, tmp_path: Path) -> None:
        priv, pub = keypair(1)
        d = self.make(tmp_path, "[Interface]\nPostUp = wg set %i private-key /etc/wireguard/%i.key\n")
        (d / "wg0.key").write_text(priv + "\n")
        (d / "wg0.conf.wgmesh-import").write_text("first backup\n")
        r = sh(importer.adopt_script("wg0", pub, self.CONF, key_dir=str(d)))
        assert r.exit_status == 0, r.stderr
        assert importer.parse_adopt_output(r.stdout) == "kept"
        assert (d / "wg0.conf.wgmesh-import").read_text() == "first backup\n"
        assert (d / "wg0.conf").read_text() == self.CONF

    def test_refuses_a_key_file_with_another_key(self, tmp_path: Path) -> None:
        priv, _ = keypair(1)
        _, other_pub = keypair(2)
        d = self.make(tmp_path, "[Interface]\n")
        (d / "wg0.key").write_text(priv + "\n")
        r = sh(importer.adopt_script("wg0", other_pub, self.CONF, key_dir=str(d)))
        assert r.exit_status == 4
        assert "does not hold the key" in r.stderr
        assert (d / "wg0.conf").read_text() == "[Interface]\n"

    def test_refuses_when_the_key_is_nowhere(self, tmp_path: Path) -> None:
        priv, _ = keypair(1)
        _, other_pub = keypair(2)
        old = f"[Interface]\nPrivateKey = {priv}\n"
        d = self.make(tmp_path, None)
        (d / "wgmnone0.conf").write_text(old)  # no such interface here: the fallback finds nothing either
        r = sh(importer.adopt_script("wgmnone0", other_pub, self.CONF, key_dir=str(d)))
        assert r.exit_status == 5
        assert "cannot find the private key" in r.stderr
        assert sorted(os.listdir(d)) == ["wgmnone0.conf"]
        assert (d / "wgmnone0.conf").read_text() == old
        assert priv not in r.stdout + r.stderr

    def test_builder_refuses_bad_input(self) -> None:
        with pytest.raises(ValueError):
            importer.adopt_script("wg0", "nope", self.CONF)
        with pytest.raises(ValueError):
            importer.adopt_script("wg0", pubkey(1), "x\n__WGMESH_CONF__\ny\n")


def test_parse_adopt_output() -> None:
    assert importer.parse_adopt_output(f"{remote_adopt.MARK}key interface\n") == "interface"
    with pytest.raises(ValueError):
        importer.parse_adopt_output("")


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
    mesh, _ = config.loads(importer.entries_text(base, entries), Path("mesh.yaml"))
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
    out = [f"{remote_adopt.MARK}conf", "present" if conf is not None else "absent"]
    if conf is not None:
        out += conf.splitlines()
    out += [f"{remote_adopt.MARK}done", "@@wgmesh:v1", "@@wgmesh:wg"]
    if state.interface_exists:
        out.append("\t".join(["(hidden)", state.public_key or "(none)", str(state.listen_port or 0), "off"]))
        for p in state.peers.values():
            out.append("\t".join([
                p.public_key, "(hidden)" if p.has_preshared_key else "(none)", p.endpoint or "(none)",
                ",".join(str(n) for n in p.allowed_ips) or "(none)", str(p.latest_handshake), str(p.rx_bytes),
                str(p.tx_bytes), str(p.persistent_keepalive or "off"),
            ]))
    iface = state.interface
    link = [{"ifname": iface, "flags": ["UP"] if state.link_up else []}] if state.interface_exists else []
    addr = [{**link[0], "mtu": state.mtu, "addr_info": [
        {"family": "inet" if a.version == 4 else "inet6", "local": str(a.ip), "prefixlen": a.network.prefixlen,
         "scope": "global"} for a in state.addresses]}] if link else []
    out += ["@@wgmesh:link", json.dumps(link), "@@wgmesh:addr", json.dumps(addr)]
    for v in (4, 6):
        out += [f"@@wgmesh:route{v}", json.dumps([{"dst": str(r), "scope": "link"}
                                                  for r in state.routes if r.version == v])]
    out += ["@@wgmesh:keyfile"] + (["present", state.key_file_public_key or ""] if state.key_file_exists
                                   else ["absent"])
    out += ["@@wgmesh:conf"] + (["present", state.config_sha256 or ""] if state.config_exists else ["absent"])
    out += ["@@wgmesh:systemd", "no-systemd"]
    for host, addrs in state.resolved.items():
        out += [f"@@wgmesh:resolve {host}"] + [f"{a}  STREAM {host}" for a in sorted(addrs)]
    out += ["@@wgmesh:end"]
    return "\n".join(out) + "\n"


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
        if script.startswith(f"echo '{remote_adopt.MARK}conf'"):
            state, conf = self.reads[node]
            return CommandResult(0, read_output(state, conf), "")
        if script.startswith("LC_ALL=C"):  # a plain read (resolving endpoint names)
            state, _ = self.reads[node]
            return CommandResult(0, read_output(state, None).split(f"{remote_adopt.MARK}done\n")[1], "")
        assert "PrivateKey" not in script.split("__WGMESH_CONF__")[1]
        self.adopted[node] = script
        if node in self.fail_adopt:
            return CommandResult(5, "", "cannot find the private key of wg0\n")
        return CommandResult(0, f"{remote_adopt.MARK}key config\n", "")

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
    got, _ = config.load(f)
    assert (got.name, got.interface, [str(n) for n in got.networks]) == ("repo", "wg0", ["10.0.0.0/24"])
    same_nodes([dataclasses.replace(n, ssh=mesh.node(n.name).ssh) for n in got.nodes], mesh.nodes)
    assert (got.node("gcp").ssh.user, got.node("gcp").ssh.port) == ("admin", 2222)
    assert got.node("aws").ssh.identity_file == Path.home() / ".ssh/id_ed25519"
    assert [n.ssh.known_hosts for n in fake.connected] == [f.parent / "known_hosts"] * 4
    for name, script in fake.adopted.items():
        assert f"<<'__WGMESH_CONF__'\n{render_node(got, name)}__WGMESH_CONF__\n" in script
        assert f"EXPECT={got.node(name).public_key}" in script
    text = out(e)
    assert "  + node aliyun: 10.0.0.4, subnets 192.168.40.0/24, ssh root@192.0.2.4" in text
    assert "Warning" not in text
    assert f"Created {f}: imported 4 node(s)" in text
    for _, conf in reads.values():
        priv = next(ln for ln in (conf or "").splitlines() if ln.startswith("PrivateKey")).split(" = ")[1]
        assert priv not in text and priv not in f.read_text()


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
    got, _ = config.load(f)
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
    assert config.load(f)[0].node_names == ("aws", "azure", "aliyun")
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
    assert config.load(f)[0].name == "hand"
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
    got, _ = config.load(f)
    assert [str(n) for n in got.networks] == ["10.0.0.0/24"]
