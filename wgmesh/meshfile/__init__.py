"""mesh.yaml in and out: the only code that knows YAML.

`load()`/`loads()` return `(Mesh, warnings)` or raise `MeshError` listing every problem found, each with
`file:line:col`, the field path, what is wrong and how to fix it. Nothing else escapes, whatever the input:
anchors and aliases are refused before they expand, files over 1 MB are refused, and no message quotes the
content of a file. The comment-keeping edits (node add/remove, public keys) raise `EditError`, one line.

Modules: diagnostics (Diagnostic, MeshError, EditError, Report), yamldoc (limits, positions, the atomic
write), roundtrip (ruamel: the documents fastyaml declines, and edits), schema (keys, aliases, patterns),
secrets, paths (which controller files mesh.yaml may name), fields (one validator per field kind), checks (across
nodes), document (load, loads), edit.
"""

from __future__ import annotations

from typing import Any

from wgmesh.meshfile.diagnostics import Diagnostic, EditError, MeshError
from wgmesh.meshfile.document import load, loads
from wgmesh.meshfile.schema import MESH_KEYS, NODE_KEYS, NODE_SSH_KEYS, SSH_KEYS, SUBNET_KEYS, TOP_KEYS, VERSION
from wgmesh.meshfile.yamldoc import MAX_BYTES, file_mode, write_atomic

# The edits and the round trip's writer, imported on first use (they need ruamel; reading plain YAML does not)
_EDIT = frozenset({
    "add_node", "add_node_text", "dumps_document", "editing", "load_document", "parse", "plain", "read_text",
    "remove_node", "remove_node_text", "set_public_key", "set_public_keys_text", "validated", "write_document",
    "write_text",
})


def __getattr__(name: str) -> Any:
    if name in _EDIT:
        from wgmesh.meshfile import edit

        return getattr(edit, name)
    if name == "to_yaml":
        from wgmesh.meshfile.roundtrip import to_yaml

        return to_yaml
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "MAX_BYTES",
    "MESH_KEYS",
    "NODE_KEYS",
    "NODE_SSH_KEYS",
    "SSH_KEYS",
    "SUBNET_KEYS",
    "TOP_KEYS",
    "VERSION",
    "Diagnostic",
    "EditError",
    "MeshError",
    "add_node",
    "add_node_text",
    "dumps_document",
    "editing",
    "file_mode",
    "load",
    "load_document",
    "loads",
    "parse",
    "plain",
    "read_text",
    "remove_node",
    "remove_node_text",
    "set_public_key",
    "set_public_keys_text",
    "to_yaml",
    "validated",
    "write_atomic",
    "write_document",
    "write_text",
]
