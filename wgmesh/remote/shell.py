"""Node scripts: the `.sh` files in `scripts/` put together with their values; the one heredoc helper; the one
parser of the `@@wgmesh:NAME ARGS` marker protocol every script prints.

A script sent to a node (on the standard input of `/bin/sh -s`, never on a command line) is

    # wgmesh NAME.sh                 the header: which script this is (`script_name`)
    VAR='value'                      the values, quoted with shlex.quote
    <scripts/lib.sh>                 the prelude: set -eu, umask, PATH, wgm_mark, wgm_die, wgm_lock, wgm_write
    <scripts/NAME.sh>                the body (`# wgmesh-include: OTHER.sh` lines are replaced by OTHER.sh)

lib.sh documents its functions and the variables it reads at its top. Node-side paths come from
`core.model` (KEY_DIR, RUN_DIR) through `node_paths` and `lock_path`: scripts get them as values.
"""

from __future__ import annotations

import functools
import math
import re
import shlex
from dataclasses import dataclass
from importlib import resources

from wgmesh.core.model import KEY_DIR, RUN_DIR

MARK = "@@wgmesh:"
RUN_ID = re.compile(r"[a-z0-9]{1,32}")  # an apply run's name in its files' names on the node (remote.apply)
_NEW_MARK = "\n" + MARK  # a marker line after the first line
_LINE_END_CR = re.compile("\r+$", re.MULTILINE)

LOCK_EXIT = 75  # wgm_lock: another run holds the lock (EX_TEMPFAIL)
NO_FLOCK_EXIT = 69  # wgm_lock: the node has no flock (EX_UNAVAILABLE)
DEFAULT_LOCK_TIMEOUT = 60

# What lib.sh appends to PATH (the script harness of the tests takes it out to hide the host's tools).
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

_NAME = re.compile(r"[A-Z_][A-Z0-9_]*")
# Values must not change how the shell itself works (PATH is lib.sh's; the others change parsing or startup).
_RESERVED = frozenset({"PATH", "IFS", "ENV", "CDPATH", "LC_ALL", "PS4", "OPTIND", "OPTARG"})
_INCLUDE = re.compile(r"^# wgmesh-include: ([a-z0-9_-]+\.sh)\n", re.M)
_HEADER = re.compile(r"# wgmesh ([a-z0-9_-]+)\.sh\n")


@functools.cache
def source(file: str) -> str:
    """The text of scripts/FILE, includes expanded (read once)."""
    text = resources.files("wgmesh.remote").joinpath("scripts", file).read_text(encoding="utf-8")
    if not text.endswith("\n"):
        text += "\n"
    return _INCLUDE.sub(lambda m: source(m.group(1)), text)


def assignments(values: dict[str, str | int]) -> str:
    """`NAME='value'` lines. Names are [A-Z_][A-Z0-9_]*; values are str or int, never bool or None."""
    lines = []
    for name, value in values.items():
        if not _NAME.fullmatch(name) or name in _RESERVED:
            raise ValueError(f"{name!r} cannot be a script value")
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise TypeError(f"script value {name} must be a str or an int, not {type(value).__name__}")
        text = str(value)
        if "\0" in text:
            raise ValueError(f"script value {name} contains a NUL character")
        lines.append(f"{name}={shlex.quote(text)}\n")
    return "".join(lines)


def script(name: str, **values: str | int) -> str:
    """The script NAME.sh, ready to send: header, quoted values, lib.sh, the body."""
    return f"# wgmesh {name}.sh\n" + assignments(values) + source("lib.sh") + source(f"{name}.sh")


def script_name(text: str) -> str | None:
    """Which script `text` is (`read`, `probe`, ...), from its header; None for anything else."""
    m = _HEADER.match(text)
    return m.group(1) if m else None


def heredoc(tag: str, body: str, *, expand: bool = False) -> str:
    """`<<'TAG'` + body + TAG, to follow a command. expand=True leaves the tag unquoted, so the node's shell
    expands `$VAR` in the body (never `$(...)` from a value: only text written by wgmesh may go there)."""
    if not re.fullmatch(r"[A-Z_][A-Z0-9_]*", tag):
        raise ValueError(f"heredoc tag {tag!r} must be [A-Z_][A-Z0-9_]*")
    if f"\n{tag}\n" in f"\n{body}\n":
        raise ValueError(f"the text contains the heredoc terminator {tag}")
    quoted = tag if expand else f"'{tag}'"
    return f"<<{quoted}\n{body}{'' if body.endswith(chr(10)) or not body else chr(10)}{tag}"


def lock_path(interface: str, run_dir: str = RUN_DIR) -> str:
    """The lock apply, rollback and rotate take on a node (one per interface)."""
    return f"{run_dir}/wgmesh-{interface}.lock"


NODE_GRACE = 5  # seconds: a read the node stops itself (wgm_stop_after) outlives the controller's deadline by this


def stop_after(deadline: float | None) -> str:
    """The STOP_AFTER value of a read-only script (lib.sh's wgm_stop_after): the controller's deadline for it,
    in whole seconds, plus NODE_GRACE, so that the controller gives up and names the node first; "" for none."""
    return "" if deadline is None else str(math.ceil(deadline) + NODE_GRACE)


def node_paths(interface: str, *, key_dir: str = KEY_DIR) -> dict[str, str]:
    """The values naming a node's WireGuard files: IF, KEY_DIR, KEY (IF.key), CONF (IF.conf)."""
    return {"IF": interface, "KEY_DIR": key_dir, "KEY": f"{key_dir}/{interface}.key",
            "CONF": f"{key_dir}/{interface}.conf"}


# ---------------------------------------------------------------------------------------------
# The marker protocol


@dataclass(frozen=True)
class Section:
    """A marker line `@@wgmesh:NAME REST` and the lines after it, up to the next marker."""

    name: str
    rest: str  # what follows the name on the marker line ("" when nothing does)
    text: str | None  # the lines after it, joined by newlines; None when there is none (not even an empty one)
    line_no: int  # of the marker line, from 1

    @property
    def args(self) -> list[str]:
        return self.rest.split()

    @property
    def marker(self) -> str:
        return f"{MARK}{self.name}{' ' + self.rest if self.rest else ''}"

    @property
    def body(self) -> str:
        return self.text or ""

    @property
    def lines(self) -> tuple[str, ...]:
        return () if self.text is None else tuple(self.text.split("\n"))


# What a parser of a node's output may raise on output nobody foresaw (a 5,000-digit number, JSON nested beyond
# the stack): the node's error, named by `unforeseen`, never the run's.
UNFORESEEN = (ValueError, ArithmeticError, LookupError, TypeError, AttributeError, RecursionError)


def unforeseen(e: BaseException) -> str:
    """The reason for such an error, safe to show (one line, printable, short)."""
    shown = "".join(c for c in " ".join(str(e).split()) if c.isprintable())[:200]
    return f"unexpected output ({type(e).__name__}: {shown})"


def sections(text: str) -> list[Section]:
    """Every section of a script's output, in order. Lines before the first marker are dropped; `\\r` at the
    end of a line is too. Pure and total: what the sections mean is for each script's parser to say.

    Found with str.find (a C scan) for the marker lines, each section's text a slice: a node's output is thousands of
    lines (a peer's dump line, its config stanza), and a Python loop over each of them was a cost per peer of
    every plan."""
    if "\r" in text:
        text = _LINE_END_CR.sub("", text)
    starts = [0] if text.startswith(MARK) else []
    at = text.find(_NEW_MARK)
    while at != -1:
        starts.append(at + 1)
        at = text.find(_NEW_MARK, at + 1)
    out: list[Section] = []
    line_no, pos = 1, 0
    for i, start in enumerate(starts):
        line_no += text.count("\n", pos, start)
        pos = start
        end = text.find("\n", start)
        name, _, rest = text[start + len(MARK) : len(text) if end == -1 else end].partition(" ")
        body: str | None
        if end == -1:  # the marker ends the text
            body = None
        elif i + 1 < len(starts):
            body = text[end + 1 : starts[i + 1] - 1] if end + 1 < starts[i + 1] else None
        else:
            body = text[end + 1 :]
        out.append(Section(name, rest.strip(), body, line_no))
    return out
