"""meshfile/secrets.py: a private or preshared key anywhere in mesh.yaml is refused, named by its path and line,
its value never echoed; in mappings, in lists, in lists of lists, in flow and block style."""

from __future__ import annotations

from typing import Any

from wgmesh.meshfile.diagnostics import Report
from wgmesh.meshfile.secrets import check_comment_secrets, check_secrets
from wgmesh.meshfile.yamldoc import parse_readonly

KEY = "cGFzdGVkIGJ5IG1pc3Rha2UgaW50byB0aGUgcmVwbyE="  # key-shaped (44 base64 characters)


def found(text: str) -> list[tuple[int, str, str]]:
    report = Report("mesh.yaml")
    doc: Any = parse_readonly(text, report)
    check_secrets(doc, report)
    assert all(KEY not in d.message for d in report.diags)
    return [(d.line, d.path, d.message.split(" in clear")[0]) for d in report.diags]


def test_secrets_are_named_by_path_and_line_wherever_they_are() -> None:
    text = (
        "version: 1\n"
        "nodes:\n"
        "  a:\n"
        "    post_up:\n"
        "      - echo ok\n"
        f"      - wg set %i private-key {KEY}\n"
        "    extra: [[1, 2], [3, {psk: x}]]\n"
        "  b:\n"
        f"    PrivateKey: {KEY}\n"
        "    ssh: {host: b.example}\n"
    )
    assert sorted(found(text)) == [
        (6, "nodes.a.post_up[1]", "a private or preshared key"),
        (7, "nodes.a.extra[1][1].psk", "preshared key"),
        (9, "nodes.b.PrivateKey", "private key"),
    ]


def test_a_clean_document_and_a_top_level_list() -> None:
    assert found("version: 1\nnodes:\n  a: {address: 10.0.0.1, public_key: " + KEY + "}\n") == []
    assert found(f"- x\n- - preshared {KEY}\n") == [(2, "[1][0]", "a private or preshared key")]


def comment_findings(text: str) -> list[tuple[int, int]]:
    report = Report("mesh.yaml")
    check_comment_secrets(text, report)
    assert all(KEY not in str(d) for d in report.diags)
    return [(d.line, d.col) for d in report.diags]


def test_a_private_key_in_a_comment_is_refused_and_a_public_key_there_is_not() -> None:
    text = (
        "version: 1  # was: PrivateKey = " + KEY + "\n"
        "# [Interface]\n"
        f"#PrivateKey={KEY}\n"
        f"# the old node's public key: {KEY}\n"  # no secret word: a public key, kept
        f'mesh: {{name: "a # private {KEY}"}}\n'  # in quotes: a value (check_secrets' to judge), not a comment
        f"post_up: echo private '#' {KEY}  # fine\n"  # the comment holds no key
    )
    assert comment_findings(text) == [(1, 13), (3, 1)]


def test_key_shaped_text_in_a_message_or_field_path_is_never_shown() -> None:
    """A private key pasted as a field name, a node name or a subnets string is named, not echoed (messages quote
    the name of an unknown key, and field paths are made of names)."""
    from wgmesh.meshfile import MeshError, loads

    for text in (
        "version: 1\nmesh: {name: m, network: 10.0.0.0/24}\nnodes:\n  a: {address: 10.0.0.1, " + KEY + ": x}\n",
        "version: 1\nmesh: {name: m, network: 10.0.0.0/24}\nnodes:\n  " + KEY + ": {address: 10.0.0.1}\n",
        "version: 1\nmesh: {name: m, network: 10.0.0.0/24}\nnodes:\n  a: {address: 10.0.0.1, subnets: " + KEY + "}\n",
    ):
        try:
            loads(text)
        except MeshError as e:
            assert e.diagnostics and KEY not in str(e) and all(KEY not in d.path for d in e.diagnostics), str(e)
        else:
            raise AssertionError("accepted")
