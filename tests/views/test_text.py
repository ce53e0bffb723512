"""views/text.py: text from nodes becomes one printable line."""

from __future__ import annotations

import pytest

from wgmesh.views.text import markup, safe, safe_lines


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("plain text", "plain text"),
        ("\x1b[2J\x1b[HNo changes.", "\\x1b[2J\\x1b[HNo changes."),
        ("one\ntwo\r\tthree", "one\\ntwo\\r\\tthree"),
        ("\x9b31m \x7f \x00", "\\x9b31m \\x7f \\x00"),
        ("\u202eevil \u200b", "\\u202eevil \\u200b"),
        ("Grüße ✓ 日本 🙂", "Grüße ✓ 日本 🙂"),
        ("C:\\path", "C:\\path"),
    ],
)
def test_safe(raw: str, shown: str) -> None:
    assert safe(raw) == shown


def test_safe_lines_and_markup() -> None:
    assert safe_lines("a\x1b\nb") == "a\\x1b\nb"
    assert markup("[bold]x\x1b[/bold]") == "\\[bold]x\\x1b\\[/bold]"
    assert safe(ValueError("x\ny")) == "x\\ny"
