"""The guide's mesh, made by hand and adopted (issue 13, item 5's "Done when"): aws, azure, gcp and aliyun, each
routing its subnet, configured as a new user writes wg-quick configs from a guide, brought up with
`wg-quick up wg0`, then `wgmesh import`: one apply gives a full mesh with subnets, the next plan says no changes,
and the three preshared keys are still in place.

The guide's configs: an inline `PrivateKey = ...`; iptables FORWARD/MASQUERADE PostUp lines with matching
PostDown, and `PostUp = sysctl -w net.ipv4.ip_forward=1`; `PersistentKeepalive = 25` on every peer; a
PresharedKey on three pairs; AllowedIPs = the peer's mesh /32 and its subnet; and the classic mistake: three of
the four configs set no ListenPort (WireGuard picks a random port) while every peer dials them at :51820, so
the hand-made mesh never handshakes. Only aliyun (behind NAT: nobody dials it) sets `ListenPort = 51820`.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable

import pytest
from ruamel.yaml import YAML

from e2e import labkit as labmod
from e2e.labkit import NO_CHANGES
from e2e.labkit import described as _out
from wgmesh.lab import Lab

pytestmark = pytest.mark.e2e

LabFactory = Callable[..., Lab]
WgmeshRunner = Callable[..., "subprocess.CompletedProcess[str]"]
PORT = 51820
PSK_PAIRS = (frozenset(("aws", "azure")), frozenset(("aws", "gcp")), frozenset(("azure", "gcp")))
UNDERLAY = "eth0"  # the lab host's own underlay interface (the veth from the lab's bridge), as on a cloud VM


def _on(lab: Lab, node: str, script: str, input: str | None = None) -> str:
    r = labmod.host_exec(lab.dir, node, ["sh", "-c", script], input=input)
    assert r.returncode == 0, f"{node}: {script}: {r.stdout}{r.stderr}"
    return r.stdout


def _guide_conf(lab: Lab, name: str, private: str, public: dict[str, str], psk: dict[frozenset[str], str]) -> str:
    h = lab.host(name)
    lines = ["[Interface]", f"Address = {h.address}/24", f"PrivateKey = {private}"]
    if h.endpoint is None:
        lines.append(f"ListenPort = {PORT}")

    def iptables(op: str) -> str:
        return (f"iptables {op} FORWARD -i %i -j ACCEPT; iptables {op} FORWARD -o %i -j ACCEPT; "
                f"iptables -t nat {op} POSTROUTING -o {UNDERLAY} -j MASQUERADE")

    lines += ["PostUp = sysctl -w net.ipv4.ip_forward=1", f"PostUp = {iptables('-A')}", f"PostDown = {iptables('-D')}"]
    for p in lab.hosts:
        if p.name == name:
            continue
        lines += ["", "[Peer]", f"# {p.name}", f"PublicKey = {public[p.name]}"]
        pair = frozenset((name, p.name))
        if pair in psk:
            lines.append(f"PresharedKey = {psk[pair]}")
        lines.append(f"AllowedIPs = {p.address}/32, {p.subnet}")
        if p.endpoint:
            lines.append(f"Endpoint = {p.ip}:{PORT}")
        lines.append("PersistentKeepalive = 25")
    return "\n".join(lines) + "\n"


def guide_configure(lab: Lab) -> tuple[dict[str, str], dict[str, str], dict[frozenset[str], str]]:
    """Write the guide's wg0.conf on every host and `wg-quick up wg0`. Returns (private keys, public keys,
    preshared keys by pair): throwaway lab secrets, kept to check that none of them ever shows."""
    names = [h.name for h in lab.hosts]
    private = {n: _on(lab, n, "wg genkey").strip() for n in names}
    public = {n: _on(lab, n, "wg pubkey", input=private[n] + "\n").strip() for n in names}
    psk = {pair: _on(lab, "aws", "wg genpsk").strip() for pair in PSK_PAIRS}
    for n in names:
        _on(lab, n, "umask 077; cat > /etc/wireguard/wg0.conf && wg-quick up wg0 </dev/null >/dev/null 2>&1",
            input=_guide_conf(lab, n, private[n], public, psk))
    return private, public, psk


def _live_psks(lab: Lab, node: str) -> dict[str, str]:
    """{peer public key: preshared key or "(none)"} as the node's running interface has them."""
    return dict(line.split() for line in _on(lab, node, "wg show wg0 preshared-keys").splitlines() if line.strip())


def import_all(lab: Lab, run_wgmesh: WgmeshRunner) -> subprocess.CompletedProcess[str]:
    """A skeleton mesh.yaml (the lab's settings, no nodes), then `wgmesh import` of every host as its sudo user
    (cloud-like hosts refuse root)."""
    skeleton = lab.mesh_path.read_text().split("nodes:\n")[0] + "nodes:\n"
    lab.mesh_path.write_text(skeleton)
    r = run_wgmesh(lab.dir, "import", *[f"{h.name}={lab.ssh_user}@{h.ip}" for h in lab.hosts])
    assert r.returncode == 0, _out(r)
    return r


def test_the_guides_hand_made_mesh_is_adopted(lab: LabFactory, run_wgmesh: WgmeshRunner) -> None:
    made = lab(keys=False)
    names = [h.name for h in made.hosts]
    assert names == ["aws", "azure", "gcp", "aliyun"] and made.host("aliyun").endpoint is None
    private, public, psk = guide_configure(made)
    secrets = [*private.values(), *psk.values()]
    assert len(set(secrets)) == 7 and all(len(s) == 44 for s in secrets)
    ports = {n: int(_on(made, n, "wg show wg0 listen-port")) for n in names}
    dialled = [n for n in names if made.host(n).endpoint]
    assert ports["aliyun"] == PORT and all(ports[n] != PORT for n in dialled), ports
    for n in names:  # the guide's keys are in place
        assert _live_psks(made, n) == {public[p]: psk.get(frozenset((n, p)), "(none)") for p in names if p != n}

    r = import_all(made, run_wgmesh)
    said = re.sub(r"\s+", " ", r.stdout + r.stderr)  # warnings wrap on the terminal width
    outputs = [r.stdout + r.stderr]

    # what import found about the ports, and the consistent fix: listen where the peers dial
    for n in dialled:
        assert (f"{n}: listens on {ports[n]} (its config sets no ListenPort: a random port) while its peers dial "
                f"{PORT}: imported as `listen_port: {PORT}`; the first apply moves it there") in said, _out(r)
    assert "aliyun: listens on" not in said and "port_forward" not in said, _out(r)
    for n, peers in (("aws", "azure, gcp"), ("azure", "gcp")):  # each pair's key kept once, on its first node
        assert f"{n}: a preshared key on its pair" in said and f"with {peers}: kept as it is" in said, _out(r)
    text = made.mesh_path.read_text()
    nodes = YAML(typ="safe").load(text)["nodes"]
    assert list(nodes) == names
    for n in names:
        node = nodes[n]
        assert node["public_key"] == public[n]
        assert node["subnets"] == [str(made.host(n).subnet)]
        assert node.get("endpoint") == made.host(n).endpoint
        assert "listen_port" not in node and "port_forward" not in node, node  # the mesh's 51820
    kept = {frozenset((n, p)) for n, node in nodes.items() for p, v in (node.get("shared_keys") or {}).items()
            if v == "keep"}
    assert kept == set(PSK_PAIRS), nodes
    assert sum(len(node.get("shared_keys") or {}) for node in nodes.values()) == 3, "each pair once"
    for n in names:
        backup = _on(made, n, "cat /etc/wireguard/wg0.conf.wgmesh-import")
        assert not any(s in backup for s in secrets), n
        assert _on(made, n, "stat -c %a /etc/wireguard/wg0.key; wg pubkey < /etc/wireguard/wg0.key").split() == [
            "600", public[n]]
    # the three whose port the first apply moves keep their own config (and its PrivateKey line) until then: a
    # restart before the apply runs what ran before
    for n in dialled:
        assert f"{n}: copied its private key from the PrivateKey line of /etc/wireguard/wg0.conf" in said, _out(r)
        assert private[n] in _on(made, n, "cat /etc/wireguard/wg0.conf"), n

    # one apply: a full mesh with subnets
    r = run_wgmesh(made.dir, "apply", "--auto-approve", timeout=180)
    outputs.append(r.stdout + r.stderr)
    assert r.returncode == 0, _out(r)
    assert {n: int(_on(made, n, "wg show wg0 listen-port")) for n in names} == dict.fromkeys(names, PORT)
    r = run_wgmesh(made.dir, "check")
    outputs.append(r.stdout + r.stderr)
    assert r.returncode == 0, _out(r)
    # every host reaches the machine behind every other host's subnet, and the machines reach each other
    failed = [f"{n} -> {p} {made.host(p).machine_ip}" for n in names for p in names if p != n
              and labmod.host_exec(made.dir, n, ["ping", "-n", "-q", "-c", "1", "-w", "5",
                                                 str(made.host(p).machine_ip)]).returncode != 0]
    failed += [f"machine {a} -> machine {b}" for a, b in (("aliyun", "aws"), ("gcp", "azure"), ("azure", "aliyun"))
               if not labmod.machine_ping(made, a, str(made.host(b).machine_ip), wait=5)]
    assert failed == []

    # the next plan: no changes; every config is wgmesh's now, with no key in it
    r = run_wgmesh(made.dir, "plan", "--detailed-exitcode")
    outputs.append(r.stdout + r.stderr)
    assert r.returncode == 0 and NO_CHANGES in r.stdout, _out(r)
    for n in names:
        assert not any(s in _on(made, n, "cat /etc/wireguard/wg0.conf") for s in secrets), n

    # the three preshared keys are still the guide's, the other pairs have none
    for n in names:
        assert _live_psks(made, n) == {public[p]: psk.get(frozenset((n, p)), "(none)") for p in names if p != n}, n

    for s in secrets:  # no secret in any output or in mesh.yaml
        assert s not in made.mesh_path.read_text()
        assert not any(s in o for o in outputs)


def test_the_kept_preshared_keys_survive_a_restart(lab: LabFactory, run_wgmesh: WgmeshRunner) -> None:
    """After the adoption, `wg-quick down wg0; wg-quick up wg0` on a node (what a reboot with systemd does) puts the
    pair's preshared keys back from wg0.psk: the node still handshakes with its peers, which kept theirs."""
    made = lab(keys=False)
    names = [h.name for h in made.hosts]
    _, public, psk = guide_configure(made)
    import_all(made, run_wgmesh)
    r = run_wgmesh(made.dir, "apply", "--auto-approve", timeout=180)
    assert r.returncode == 0, _out(r)
    _on(made, "gcp", "wg-quick down wg0 >/dev/null 2>&1; wg-quick up wg0 </dev/null >/dev/null 2>&1")
    assert _live_psks(made, "gcp") == {public[p]: psk.get(frozenset(("gcp", p)), "(none)") for p in names if p != "gcp"}
    _on(made, "gcp", f"ping -n -q -c 1 -w 10 {made.host('aws').address}")  # a handshake: the same key on both sides
    r = run_wgmesh(made.dir, "plan", "--detailed-exitcode")
    assert r.returncode == 0 and NO_CHANGES in r.stdout, _out(r)
