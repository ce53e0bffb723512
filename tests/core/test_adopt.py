"""`wgmesh import` of meshes made by hand (issue 13, item 5): listen ports nobody dials, port forwards, and
preshared keys that the pairs keep. Pure: core/adopt.py on live states built from the model."""

from __future__ import annotations

import dataclasses
import ipaddress
from pathlib import Path

from meshes import converged, four

from wgmesh import meshfile
from wgmesh.core import adopt
from wgmesh.core.adopt import Context, NodeRead, Target
from wgmesh.core.model import Mesh
from wgmesh.core.plan import diff_node
from wgmesh.core.render import render_node
from wgmesh.core.steps import StepKind
from wgmesh.remote import adopt as remote_adopt

CTX = Context("wg0", (ipaddress.ip_network("10.0.0.0/24"),))
BASE = "version: 1\nmesh:\n  name: demo\n  network: 10.0.0.0/24\nnodes:\n"


def hand_made(mesh: Mesh) -> dict[str, NodeRead]:
    reads = {}
    for n in mesh.nodes:
        live = converged(mesh, n.name, key_file_exists=False, key_file_public_key=None, config_sha256="0" * 64)
        conf = remote_adopt.parse_wg_quick(render_node(mesh, n.name))
        reads[n.name] = NodeRead(Target(n.name, n.ssh.host), live, conf)
    return reads


def _import(reads: dict[str, NodeRead]) -> tuple[Mesh, list[str], list[meshfile.Diagnostic]]:
    entries, warnings = adopt.build_entries(reads, CTX)
    from wgmesh.commands.importing import entries_text

    mesh, diagnostics = meshfile.loads(entries_text(BASE, entries), Path("mesh.yaml"))
    return mesh, warnings, diagnostics


def _listening(reads: dict[str, NodeRead], name: str, port: int, config_port: int | None) -> None:
    r = reads[name]
    conf = dataclasses.replace(r.conf, listen_port=config_port)  # type: ignore[type-var]
    reads[name] = dataclasses.replace(r, live=dataclasses.replace(r.live, listen_port=port), conf=conf)


def test_a_config_without_listen_port_listens_where_its_peers_dial() -> None:
    reads = hand_made(four())
    _listening(reads, "gcp", 59240, None)  # WireGuard picked a port; aws, azure, aliyun dial 51820
    mesh, warnings, diagnostics = _import(reads)
    assert mesh.node("gcp").listen_port == 51820 and not mesh.node("gcp").port_forward
    assert ("gcp: listens on 59240 (its config sets no ListenPort: a random port) while its peers dial 51820: "
            "imported as `listen_port: 51820`; the first apply moves it there") in warnings
    assert diagnostics == [], "the mesh is consistent: no port warning"
    assert adopt.residual(mesh, "gcp", reads["gcp"].live) == ["~ interface wg0 (listen_port)"]
    for other in ("aws", "azure", "aliyun"):
        assert adopt.residual(mesh, other, reads[other].live) == [], "its peers see no roamed endpoint change"


def test_an_explicit_listen_port_unlike_the_dialed_one_is_a_port_forward() -> None:
    reads = hand_made(four())
    _listening(reads, "gcp", 51821, 51821)
    mesh, warnings, diagnostics = _import(reads)
    gcp = mesh.node("gcp")
    assert (gcp.listen_port, gcp.port_forward, str(gcp.endpoint)) == (51821, True, "198.51.100.3:51820")
    assert any(w.startswith("gcp: listens on 51821 (ListenPort in its config) while its peers dial 51820: "
                            "imported as a port forward (`port_forward: true`)") for w in warnings)
    assert diagnostics == []
    assert adopt.residual(mesh, "gcp", reads["gcp"].live) == []


def _with_psk(reads: dict[str, NodeRead], name: str, *peers: str) -> None:
    mesh = four()
    keys = {mesh.node(p).public_key for p in peers}
    r = reads[name]
    live = dataclasses.replace(r.live, peers={k: dataclasses.replace(v, has_preshared_key=k in keys)
                                              for k, v in r.live.peers.items()})
    reads[name] = dataclasses.replace(r, live=live)


def test_preshared_keys_are_kept_once_per_pair_and_never_cleared() -> None:
    reads = hand_made(four())
    _with_psk(reads, "aws", "gcp", "aliyun")
    _with_psk(reads, "gcp", "aws")
    _with_psk(reads, "aliyun", "aws")
    _with_psk(reads, "azure", "gcp")
    _with_psk(reads, "gcp", "aws", "azure")
    mesh, warnings, diagnostics = _import(reads)
    assert diagnostics == []
    assert mesh.node("aws").keep_shared_keys == ("aliyun", "gcp")
    assert mesh.node("azure").keep_shared_keys == ("gcp",)
    assert mesh.node("gcp").keep_shared_keys == () and mesh.node("aliyun").keep_shared_keys == ()
    assert ("aws: a preshared key on its pairs with aliyun, gcp: kept as it is (`shared_keys: {aliyun: keep, gcp: "
            "keep}`); wgmesh never reads or moves the value") in warnings
    for name in ("aws", "azure", "gcp", "aliyun"):
        plan = diff_node(mesh, mesh.node(name), dataclasses.replace(reads[name].live, key_file_exists=True,
                                                                      key_file_public_key=reads[name].live.public_key))
        assert not any(c.kind == "peer" for c in plan.changes), name
        assert StepKind.CLEAR_PRESHARED_KEY not in [s.kind for s in plan.steps]


def test_a_kept_pair_survives_a_restart_from_the_node_s_own_file() -> None:
    reads = hand_made(four())
    _with_psk(reads, "aws", "gcp")
    mesh, _, _ = _import(reads)
    text = render_node(mesh, "aws")
    assert "PostUp = [ ! -f /etc/wireguard/%i.psk ] || while read -r p k" in text
    # saved before wg-quick deletes the interface, and never replaced by nothing when `wg show` fails
    assert ('PreDown = k=$(wg show %i preshared-keys) && { printf "%s\\n" "$k" | grep -v "(none)" || true; } > '
            "/etc/wireguard/%i.psk.new && mv -f") in text
    assert "PostDown = k=" not in text
    assert "PresharedKey" not in text and ".psk" in render_node(mesh, "gcp"), "either side of the pair keeps it"
    assert ".psk" not in render_node(mesh, "azure")
    # an apply with changes on aws writes the runtime's kept keys into the node's file, never anywhere else
    live = dataclasses.replace(reads["aws"].live, link_up=False, key_file_exists=True,
                               key_file_public_key=reads["aws"].live.public_key)
    steps = [s.kind for s in diff_node(mesh, mesh.node("aws"), live).steps]
    assert StepKind.SAVE_PRESHARED_KEYS in steps and StepKind.CLEAR_PRESHARED_KEY not in steps


def test_a_preshared_key_mesh_yaml_does_not_keep_is_cleared() -> None:
    mesh = four()
    live = converged(mesh, "aws")
    gcp = mesh.node("gcp").public_key or ""
    live = dataclasses.replace(live, peers={**live.peers, gcp: dataclasses.replace(live.peers[gcp],
                                                                                   has_preshared_key=True)})
    plan = diff_node(mesh, mesh.node("aws"), live)
    change = next(c for c in plan.changes if c.name == "gcp")
    assert (change.before or {})["preshared_key"] == "(set)" and (change.after or {})["preshared_key"] is None
    assert StepKind.CLEAR_PRESHARED_KEY in [s.kind for s in plan.steps]
