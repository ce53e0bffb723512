"""mesh.yaml fields for NATs and hand-made meshes: `mesh.relay`, `port_forward`, `shared_keys`; and the checks
that go with them (pairs without endpoints, an endpoint port nobody listens on)."""

from __future__ import annotations

import base64

import pytest

from wgmesh.meshfile import MeshError, loads


def _key(i: int) -> str:
    return base64.b64encode(bytes([i]) * 32).decode()


def mesh_text(relay: str | None = None, extra: dict[str, str] | None = None, public: tuple[str, ...] = ("aws",)) -> str:
    """aws public; gcp and aliyun without endpoints. `extra`: lines added to a node (already indented)."""
    extra = extra or {}
    lines = ["version: 1", "mesh:", "  name: m", "  network: 10.0.0.0/24"]
    if relay is not None:
        lines.append(f"  relay: {relay}")
    lines.append("nodes:")
    for i, name in enumerate(("aws", "azure", "gcp", "aliyun"), start=1):
        lines += [f"  {name}:", f"    address: 10.0.0.{i}", f"    public_key: {_key(i)}"]
        if name in public:
            lines.append(f"    endpoint: {name}.example.com:51820")
        else:
            lines.append(f"    ssh: {{host: 192.0.2.{i}}}")
        if name in extra:
            lines.append(extra[name])
    return "\n".join(lines) + "\n"


def _errors(text: str) -> list[str]:
    with pytest.raises(MeshError) as info:
        loads(text)
    return [str(d) for d in info.value.errors]


# ------------------------------------------------------------------------------------------- relay


def test_pairs_without_endpoints_are_relayed_not_warned_about() -> None:
    mesh, warnings = loads(mesh_text())
    assert warnings == [] and mesh.relay is None


def test_without_any_endpoint_the_pairs_are_still_a_warning() -> None:
    _, warnings = loads(mesh_text(public=()))
    assert warnings and all("no node has an endpoint to relay through" in w.message for w in warnings)


def test_mesh_relay_names_a_node_with_an_endpoint() -> None:
    mesh, warnings = loads(mesh_text(relay="azure", public=("aws", "azure")))
    assert mesh.relay == "azure" and warnings == []
    assert _errors(mesh_text(relay="gcp")) == [
        "mesh.yaml:5:10: mesh.relay: gcp has no endpoint: the relay must be a node the others can dial "
        "(give it an endpoint, or name a node that has one)"]
    (err,) = _errors(mesh_text(relay="asw"))
    assert err.startswith("mesh.yaml:5:10: mesh.relay: no node named 'asw'") and 'did you mean "aws"?' in err
    (err,) = _errors(mesh_text(relay="[a, b]"))
    assert "mesh.relay: must be text" in err


def test_a_relay_that_is_not_enrolled_is_a_warning_and_the_next_relays() -> None:
    text = mesh_text(relay="azure", public=("aws", "azure")).replace(f"    public_key: {_key(2)}\n", "")
    mesh, warnings = loads(text)
    assert mesh.relay == "azure"
    assert [w.message for w in warnings] == ["azure is not enrolled yet: aws relays meanwhile"]


# ------------------------------------------------------------------------------------------- ports


def test_an_endpoint_port_nobody_listens_on_is_caught() -> None:
    text = mesh_text().replace("aws.example.com:51820", "aws.example.com:51821")
    _, warnings = loads(text)
    assert [(w.line, w.path) for w in warnings] == [(9, "nodes.aws.endpoint")]
    assert "peers dial port 51821, but the node listens on 51820: set `listen_port: 51821`" in warnings[0].message
    assert "`port_forward: true`" in warnings[0].message


@pytest.mark.parametrize("extra", ["    listen_port: 51821", "    port_forward: true"])
def test_a_matching_listen_port_or_a_port_forward_is_fine(extra: str) -> None:
    text = mesh_text(extra={"aws": extra}).replace("aws.example.com:51820", "aws.example.com:51821")
    mesh, warnings = loads(text)
    assert warnings == []
    assert mesh.node("aws").port_forward is ("port_forward" in extra)


def test_port_forward_without_an_endpoint_says_it_does_nothing() -> None:
    _, warnings = loads(mesh_text(extra={"gcp": "    port_forward: true"}))
    assert [w.path for w in warnings] == ["nodes.gcp.port_forward"]


# ------------------------------------------------------------------------------------------- shared keys


def test_shared_keys_keep_names_peers() -> None:
    mesh, warnings = loads(mesh_text(extra={"aws": "    shared_keys: {gcp: keep, aliyun: keep}"}))
    assert warnings == [] and mesh.node("aws").keep_shared_keys == ("gcp", "aliyun")
    assert mesh.node("gcp").keep_shared_keys == ()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("{gcq: keep}", 'no node named \'gcq\': did you mean "gcp"?'),
        ("{aws: keep}", "a node has no pair with itself"),
        ("{gcp: generate}", "must be `keep` (got 'generate')"),
        ("[gcp]", "must be a mapping"),
        (f"{{gcp: '{_key(9)}'}}", "a preshared key in clear: remove it from the repo"),
    ],
)
def test_bad_shared_keys(value: str, message: str) -> None:
    errors = _errors(mesh_text(extra={"aws": f"    shared_keys: {value}"}))
    assert len(errors) == 1 and message in errors[0], errors
    assert _key(9) not in errors[0]
