"""The key lifecycle against lab hosts (issue 6's "Done when"): node add/remove, enroll, rotate, import.

The commands run as the real `wgmesh` program; where a test must see every byte the controller receives,
the command runs in this process with the real SSH transport wrapped in a recorder.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from ruamel.yaml import YAML
from typer.testing import CliRunner

from e2e import labkit as labmod
from wgmesh import meshfile
from wgmesh.commands import importing as importer
from wgmesh.commands import keys
from wgmesh.commands.common import ConnectOptions, ssh_transport
from wgmesh.core.model import Node
from wgmesh.lab import Lab
from wgmesh.remote.transport import CommandResult, Transport

pytestmark = pytest.mark.e2e

LabFactory = Callable[..., Lab]

# Until cli.py registers the key commands, run them on the real app from here (the same lines cli.py uses).
_MAIN = """
import sys
from wgmesh.cli import app as cli
from wgmesh.cli import keys as cli_keys
if cli_keys.enroll not in [c.callback for c in cli.app.registered_commands]:
    cli.app.add_typer(cli_keys.node_app, name="node")
    cli.app.command()(cli_keys.enroll)
    cli.app.command()(cli_keys.rotate)
    cli.app.command("import")(cli_keys.import_)
sys.argv[0] = "wgmesh"
cli.app()
"""


def wgmesh(cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    r = subprocess.run([sys.executable, "-c", _MAIN, *args], cwd=cwd, capture_output=True, text=True, timeout=180,
                       env={"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "NO_COLOR": "1",
                            "COLUMNS": "200", "HOME": str(Path.home())})
    if check and r.returncode != 0:
        raise AssertionError(f"wgmesh {' '.join(args)} exited {r.returncode}\n{r.stdout}{r.stderr}")
    return r


class Recorder:
    """The real transport, keeping every script sent and every byte received."""

    def __init__(self, inner: Transport) -> None:
        self.inner = inner
        self.sent: list[str] = []
        self.received: list[str] = []

    def connect(self, nodes: list[Node]) -> dict[str, str]:
        return self.inner.connect(nodes)

    def run(self, node: str, script: str, timeout: float | None = None) -> CommandResult:
        self.sent.append(script)
        r = self.inner.run(node, script, timeout)
        self.received += [r.stdout, r.stderr]
        return r

    def run_many(self, scripts: Mapping[str, str], timeout: float | None = None) -> dict[str, CommandResult | str]:
        with ThreadPoolExecutor(max_workers=10) as pool:
            futures = {n: pool.submit(self.run, n, s, timeout) for n, s in scripts.items()}
        return {n: f.result() for n, f in futures.items()}

    def close(self) -> None:
        self.inner.close()


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Recorder]]:
    made: list[Recorder] = []

    def factory(opts: ConnectOptions, progress: Callable[[str, str], None]) -> Recorder:
        made.append(Recorder(ssh_transport(opts, progress)))
        return made[-1]

    monkeypatch.setattr(keys, "ssh_transport", factory)
    monkeypatch.setattr(importer, "ssh_transport", factory)
    yield made


def in_process(lab: Lab, *args: str) -> str:
    """Run a key command in this process (so `recorded` sees the transport); returns its output."""
    import typer

    from wgmesh.cli import keys as cli_keys

    app = typer.Typer()
    app.command()(cli_keys.enroll)
    app.command()(cli_keys.rotate)
    app.command("import")(cli_keys.import_)
    r = CliRunner().invoke(app, [*args, "--file", str(lab.mesh_path)], env={"NO_COLOR": "1"})
    assert r.exit_code == 0, r.output
    return r.output


def on(lab: Lab, node: str, script: str) -> str:
    r = labmod.host_exec(lab.dir, node, ["sh", "-c", script])
    assert r.returncode == 0, f"{node}: {script}: {r.stderr}"
    return r.stdout


def nodes_yaml(lab: Lab) -> dict[str, dict]:
    return YAML(typ="safe").load(lab.mesh_path.read_text())["nodes"] or {}


def ping(lab: Lab, src: str, dst: str, wait: int = 8) -> bool:
    argv = ["ip", "netns", "exec", lab.host(src).netns, "ping", "-n", "-q", "-c", "1", "-w", str(wait), dst]
    return subprocess.run(argv, capture_output=True, timeout=wait + 12).returncode == 0


def assert_full_mesh(lab: Lab, names: list[str]) -> None:
    """Every node pings every other node's mesh address and subnet gateway (nodes behind NAT first)."""
    order = sorted(names, key=lambda n: lab.host(n).endpoint is not None)
    pairs = [(s, d, t) for s in order for d in names if d != s
             for t in (str(lab.host(d).address), str(lab.host(d).subnet.network_address + 1))]
    failed = [f"{s}->{d} {t}" for s, d, t in pairs if not ping(lab, s, t)]
    assert failed == []


def plan_is_clean(lab: Lab) -> None:
    r = wgmesh(lab.dir, "plan", "--detailed-exitcode", check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "No changes. Your mesh matches the configuration." in r.stdout


def key_facts(lab: Lab, node: str) -> tuple[str, str]:
    """(mode, public key) of the node's /etc/wireguard/wg0.key."""
    mode, public = on(lab, node, "stat -c %a /etc/wireguard/wg0.key; wg pubkey < /etc/wireguard/wg0.key").split()
    return mode, public


def secret_of(lab: Lab, node: str, path: str) -> str:
    """A throwaway lab private key, read inside the host so the test can check it never travelled."""
    return on(lab, node, f"cat {path}").strip()


# ----------------------------------------------------------------------------------------------- node add/remove


def test_node_add_and_remove_keep_comments_and_validate(lab: LabFactory) -> None:
    made = lab(nodes=3)
    text = made.mesh_path.read_text()
    text = text.replace("nodes:\n", "nodes:\n  # --- our nodes, keep this comment ---\n", 1)
    text = text.replace("    ssh: {host: 10", "    # n-comment\n    ssh: {host: 10")
    made.mesh_path.write_text(text)
    n3 = made.host("n3")

    r = wgmesh(made.dir, "node", "remove", "n3")
    assert r.stdout.startswith(f"- node n3: {n3.address}, endpoint {n3.endpoint}")
    after = made.mesh_path.read_text()
    assert "# --- our nodes, keep this comment ---" in after and after.count("# n-comment") == 2
    assert list(nodes_yaml(made)) == ["n1", "n2"]
    wgmesh(made.dir, "validate")

    r = wgmesh(made.dir, "node", "add", "n3", "--endpoint", str(n3.endpoint), "--ssh-host", str(n3.ip),
               "--subnet", str(n3.subnet))
    assert r.stdout.startswith(f"+ node n3: {n3.address}, endpoint {n3.endpoint}, subnets {n3.subnet}")
    wgmesh(made.dir, "node", "add", "spare", "--address", "10.0.0.200", "--ssh-host", "192.0.2.200", "-f",
           str(made.mesh_path))
    added = made.mesh_path.read_text()
    assert added.startswith(after), "node add only appends"
    assert nodes_yaml(made)["spare"] == {"address": "10.0.0.200", "ssh": {"host": "192.0.2.200"}}
    wgmesh(made.dir, "validate")
    wgmesh(made.dir, "node", "remove", "spare")
    assert made.mesh_path.read_text() == added.split("  spare:\n")[0]
    wgmesh(made.dir, "validate")

    # the re-added node joins the mesh: its key is on the host already, enroll records it
    r = wgmesh(made.dir, "enroll", "n3")
    assert "n3: /etc/wireguard/wg0.key exists" in r.stdout
    assert nodes_yaml(made)["n3"]["public_key"] == key_facts(made, "n3")[1]
    wgmesh(made.dir, "apply", "--auto-approve")
    plan_is_clean(made)
    assert_full_mesh(made, ["n1", "n2", "n3"])

    bad = wgmesh(made.dir, "node", "add", "n4", "--address", "10.0.0.1", "--ssh-host", "h", check=False)
    assert bad.returncode == 1
    assert bad.stderr.strip().splitlines() == [
        "Error: the edited mesh.yaml would not be valid: nodes.n4.address: 10.0.0.1 is already the address of n1: "
        "pick a free one"]


# ----------------------------------------------------------------------------------------------- enroll


def test_enroll_then_apply_gives_a_working_mesh(lab: LabFactory, recorded: list[Recorder]) -> None:
    made = lab(nodes=4, keys=False)
    names = list(made.names)
    for n in names:
        assert on(made, n, "test -e /etc/wireguard/wg0.key && echo yes || echo no").strip() == "no"
    before = made.mesh_path.read_text()

    output = in_process(made, "enroll", "--all")
    text = made.mesh_path.read_text()
    facts = {n: key_facts(made, n) for n in names}
    assert {n: f[0] for n, f in facts.items()} == dict.fromkeys(names, "600")
    assert {n: v["public_key"] for n, v in nodes_yaml(made).items()} == {n: f[1] for n, f in facts.items()}
    # exactly one public_key line per node was added, nothing else changed
    assert re.sub(r"\n    public_key: \S+", "", text) == before
    secrets = [secret_of(made, n, "/etc/wireguard/wg0.key") for n in names]
    for s in secrets:
        assert s not in output and s not in text
        assert not any(s in got for rec in recorded for got in rec.received)
        assert not any(s in sent for rec in recorded for sent in rec.sent)

    hashes = {n: on(made, n, "sha256sum /etc/wireguard/wg0.key; stat -c %i /etc/wireguard/wg0.key") for n in names}
    r = wgmesh(made.dir, "enroll", *names)
    assert "No changes to mesh.yaml." in r.stdout
    assert made.mesh_path.read_text() == text
    assert {n: on(made, n, "sha256sum /etc/wireguard/wg0.key; stat -c %i /etc/wireguard/wg0.key")
            for n in names} == hashes

    wgmesh(made.dir, "apply", "--auto-approve")
    plan_is_clean(made)
    assert_full_mesh(made, names)


# ----------------------------------------------------------------------------------------------- rotate


def test_rotate_then_apply(lab: LabFactory, recorded: list[Recorder]) -> None:
    made = lab(nodes=4)
    names = list(made.names)
    wgmesh(made.dir, "apply", "--auto-approve")
    assert_full_mesh(made, names)
    old_public = nodes_yaml(made)["aws"]["public_key"]
    old_secret = secret_of(made, "aws", "/etc/wireguard/wg0.key")

    output = in_process(made, "rotate", "aws")
    new_public = nodes_yaml(made)["aws"]["public_key"]
    assert new_public != old_public
    assert key_facts(made, "aws") == ("600", new_public)
    new_secret = secret_of(made, "aws", "/etc/wireguard/wg0.key")
    for s in (old_secret, new_secret):
        assert s not in output and s not in made.mesh_path.read_text()
        assert not any(s in got for rec in recorded for got in rec.received + rec.sent)
    # the running interface is undisturbed until apply
    assert on(made, "aws", "wg show wg0 public-key").strip() == old_public
    assert ping(made, "aws", str(made.host("azure").address))

    r = wgmesh(made.dir, "plan", "--detailed-exitcode", check=False)
    assert r.returncode == 2, r.stdout + r.stderr
    assert f'~ public_key = "{old_public}" -> "{new_public}"' in r.stdout

    wgmesh(made.dir, "apply", "--auto-approve")
    assert on(made, "aws", "wg show wg0 public-key").strip() == new_public
    for peer in names[1:]:
        held = on(made, peer, "wg show wg0 peers").split()
        assert new_public in held and old_public not in held, peer
    leftovers = on(made, "aws", f"grep -rlF -- '{old_secret}' /etc/wireguard /run/wireguard || true")
    assert leftovers.strip() == "", "the old private key is gone from the node"
    assert_full_mesh(made, names)
    plan_is_clean(made)


# ----------------------------------------------------------------------------------------------- import


def hand_configure(lab: Lab) -> None:
    """A full mesh set up by hand as the classic guides do: `wg genkey | tee privatekey | wg pubkey`,
    the private key pasted into wg0.conf, `wg-quick up wg0`. The last host keeps its key in a separate
    file loaded by PostUp instead (the other classic layout)."""
    publics = {h.name: on(lab, h.name, "umask 077; wg genkey | tee /etc/wireguard/privatekey | wg pubkey").strip()
               for h in lab.hosts}
    for h in lab.hosts:
        separate = h is lab.hosts[-1]
        lines = ["[Interface]", "# set up by hand", f"Address = {h.address}/24", "ListenPort = 51820",
                 "PostUp = wg set %i private-key /etc/wireguard/privatekey" if separate
                 else "PrivateKey = $(cat /etc/wireguard/privatekey)",
                 "PostUp = sysctl -q -w net.ipv4.ip_forward=1"]
        for p in lab.hosts:
            if p is h:
                continue
            lines += ["", f"# {p.name}", "[Peer]", f"PublicKey = {publics[p.name]}",
                      f"AllowedIPs = {p.address}/32, {p.subnet}"]
            if p.endpoint:
                lines.append(f"Endpoint = {p.endpoint}")
                if h.endpoint is None:
                    lines.append("PersistentKeepalive = 25")
        body = "\n".join(lines) + "\n"
        remove = "" if separate else "rm -f /etc/wireguard/privatekey"
        on(lab, h.name, f"set -e; umask 077; cat > /etc/wireguard/wg0.conf <<EOF\n{body}EOF\n{remove}\n"
                        "wg-quick up wg0 </dev/null >/dev/null 2>&1")


def test_import_of_hand_configured_hosts(lab: LabFactory, recorded: list[Recorder]) -> None:
    made = lab(nodes=4, keys=False)
    names = list(made.names)
    hand_configure(made)
    assert_full_mesh(made, names)
    inline = {h.name: on(made, h.name, "sed -n 's/^PrivateKey = //p' /etc/wireguard/wg0.conf").strip()
              for h in made.hosts[:-1]}
    separate = secret_of(made, names[-1], "/etc/wireguard/privatekey")
    secrets = [*inline.values(), separate]
    assert all(len(s) == 44 for s in secrets)
    running = {n: on(made, n, "wg show wg0 public-key").strip() for n in names}

    # a mesh.yaml with the lab's settings and no nodes yet
    skeleton = made.mesh_path.read_text().split("nodes:\n")[0] + "nodes:\n# imported below\n"
    made.mesh_path.write_text(skeleton)
    specs = [f"{h.name}={made.ssh_user}@{h.ip}" for h in made.hosts]  # the sudo user: cloud-like hosts refuse root
    output = in_process(made, "import", *specs)

    mesh, _ = meshfile.load(made.mesh_path)
    assert mesh.node_names == tuple(names)
    new_lines = iter(made.mesh_path.read_text().splitlines())
    assert all(line in new_lines for line in skeleton.splitlines()), "import only adds lines"
    for h in made.hosts:
        node = mesh.node(h.name)
        assert node.public_key == running[h.name]
        assert [str(a) for a in node.addresses] == [str(h.address)]
        assert [str(s.prefix) for s in node.subnets] == [str(h.subnet)]
        assert (str(node.endpoint) if node.endpoint else None) == h.endpoint
        assert node.post_up == ("sysctl -q -w net.ipv4.ip_forward=1",)
        assert key_facts(made, h.name) == ("600", running[h.name])
        backup = on(made, h.name, "cat /etc/wireguard/wg0.conf.wgmesh-import")
        assert not re.search(r"^\s*PrivateKey\s*=", backup, re.MULTILINE | re.IGNORECASE)
        assert not any(s in backup for s in secrets)
    # wgmesh's configs would add forwarding and firewall rules: until the first apply, each node keeps its own
    # config, so a restart before it runs what ran before (the private key is copied to IF.key, not moved)
    assert "copied its private key from the PrivateKey line" in output
    assert "left its /etc/wireguard/wg0.conf as it is" in output
    assert f"{names[-1]}: saved the interface's private key to /etc/wireguard/wg0.key" in output
    for s in secrets:
        assert s not in output and s not in made.mesh_path.read_text()
        assert not any(s in got for rec in recorded for got in rec.received + rec.sent)

    # the hand-made mesh lacked what wgmesh manages for nodes that route subnets: the first plan adds only that
    r = wgmesh(made.dir, "plan", "--detailed-exitcode", "--no-color", check=False)
    assert r.returncode in (0, 2), r.stdout + r.stderr
    changes = [ln.strip() for ln in r.stdout.splitlines() if re.match(r"^  [-+~] \w", ln)]
    # (and wgmesh's config in place of the node's own: `~ interface wg0`)
    assert all(re.match(r"([+~] (firewall forward wg0|forwarding ipv4)|~ interface wg0)$", c) for c in changes), \
        changes
    wgmesh(made.dir, "apply", "--auto-approve")
    plan_is_clean(made)
    for h in made.hosts:  # wgmesh's configs now: no key in any
        conf = on(made, h.name, "cat /etc/wireguard/wg0.conf")
        assert not re.search(r"^\s*PrivateKey\s*=", conf, re.MULTILINE | re.IGNORECASE)
        assert not any(s in conf for s in secrets)
    assert_full_mesh(made, names)
    # the adopted interface restarts from wgmesh's config and IF.key alone
    on(made, names[0], "wg-quick down wg0 >/dev/null 2>&1; wg-quick up wg0 </dev/null >/dev/null 2>&1")
    plan_is_clean(made)
    # the node behind NAT notices the restarted peer once its old session times out (about 15 s)
    assert ping(made, names[-1], str(made.host(names[0]).address), wait=40)
    assert_full_mesh(made, names)
