"""Text that came from a node is data: `safe` makes it one printable line before any view shows it.

A node may be hostile or broken. Whatever it prints (an error message, the tail of its stderr, an endpoint, a
peer's name, a probe's error) could hold terminal escape sequences that clear the screen and print a fake
"No changes." above the approval prompt. Every view passes such text through `safe` (and `markup` where rich
markup is parsed): control and other unprintable characters become Python-style escapes (`\\x1b`, `\\n`,
`\\u202e`), printable Unicode stays as it is. JSON needs none of this: `json.dumps` escapes control characters.
"""

from __future__ import annotations


def _escape_char(ch: str) -> str:
    return ch.encode("unicode_escape").decode("ascii")


def safe(text: object) -> str:
    """One printable line: control characters (newlines included), format characters such as bidi overrides,
    and unassigned code points escaped; everything printable kept."""
    s = str(text)
    if s.isprintable():
        return s
    return "".join(ch if ch.isprintable() else _escape_char(ch) for ch in s)


def safe_lines(text: str) -> str:
    """Our own multi-line text: each line made safe, the line breaks kept."""
    return "\n".join(safe(line) for line in text.split("\n"))


def markup(text: object) -> str:
    """`safe`, then rich markup escaped: for text placed inside a rich markup string."""
    from rich.markup import escape  # imported where rich draws (a fast start elsewhere)

    return escape(safe(text))
