"""Reading a node: scripts/read.sh, and pure parsers of what it prints.

The script prints marked sections (`@@wgmesh:NAME` lines, see remote/shell.py), among them the preflight:
what the node lacks for what wgmesh does there (core/nodeos.py). Secrets never leave the node: the script
replaces the interface private key and every preshared key in the `wg show IF dump` output before printing
it, and the value of every PrivateKey and PresharedKey line of IF.conf before printing its text. The parsers
below turn the text into a `LiveState` and never keep a private key, even when handed one. Routing is read too:
IP forwarding, and wgmesh's own iptables rules for the interface (comment `wgmesh:IF`), other rules ignored.

read_parsers.py parses what the tools print (wg dump, ip -j, getent, iptables -S); this module, read.sh's own
sections, and puts them together into the `LiveState`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from wgmesh.core import nodeos
from wgmesh.core.model import KEY_DIR, IPNetwork
from wgmesh.core.state import LiveState
from wgmesh.remote import shell
from wgmesh.remote.read_parsers import (
    HIDDEN,
    NONE,
    ParseError,
    is_key,
    numbered_lines,
    parse_dump,
    parse_getent,
    parse_ip_addr,
    parse_ip_link,
    parse_ip_route,
    parse_iptables,
    parse_other_routes,
)

__all__ = [
    "FORMAT",
    "HIDDEN",
    "MARK",
    "NONE",
    "ParseError",
    "ReadError",
    "parse_auto_mtu",
    "parse_conf_text",
    "parse_dump",
    "parse_forwarding",
    "parse_getent",
    "parse_ip_addr",
    "parse_ip_link",
    "parse_ip_route",
    "parse_iptables",
    "parse_other_routes",
    "parse_preflight",
    "parse_read_output",
    "parse_read_sections",
    "read_command",
]

MARK = shell.MARK
FORMAT = "v1"


class ReadError(ParseError):
    """The node answered, but its WireGuard state could not be read (e.g. `wg show` failed on a link)."""


# ---------------------------------------------------------------------------------------------
# The remote command


def read_command(
    interface: str, resolve_hosts: Iterable[str] = (), *, key_dir: str = KEY_DIR, deadline: float | None = None
) -> str:
    """scripts/read.sh: every section `parse_read_output` needs, in one round trip.

    Exits 0 even when the interface does not exist. Private and preshared keys are replaced on the node.
    Each name in `resolve_hosts` is resolved once (a name with a line break cannot be one: left out).
    `deadline`: the controller's for this command; the node then stops the read itself a little after it
    (shell.stop_after). None (the read inside apply's scripts): never.
    """
    hosts = [h for h in dict.fromkeys(resolve_hosts) if h and "\n" not in h and "\r" not in h]
    return shell.script("read", **shell.node_paths(interface, key_dir=key_dir), HOSTS="\n".join(hosts),
                        STOP_AFTER=shell.stop_after(deadline))


# ---------------------------------------------------------------------------------------------
# The whole read


_READ_SECTIONS = frozenset({"preflight", "wg", "link", "addr", "route4", "route6", "keyfile", "conf", "systemd"})
_IP_SECTIONS = ("link", "addr", "route4", "route6")
_OS_WORD = re.compile(r"[a-z0-9._-]{1,40}")


def _read_sections(found: Sequence[shell.Section]) -> tuple[dict[str, str], dict[str, str]]:
    """The read's sections as {name: body} and {resolve host: body}; what precedes them (status's clock,
    import's config) is left alone."""
    bodies: dict[str, str] = {}
    resolves: dict[str, str] = {}
    seen_end = False
    for s in found:
        if s.name == "resolve":
            resolves.setdefault(s.rest, s.body)
        elif s.name == "end":
            seen_end = True
            break
        elif s.name in bodies:
            raise ParseError(f"read output: section {s.name!r} appears twice")
        else:
            bodies[s.name] = s.body
    if FORMAT not in bodies:
        raise ParseError(f"read output: missing the {MARK}{FORMAT} header (not wgmesh read output?)")
    if not seen_end:
        raise ParseError("read output: truncated (no end marker)")
    missing = _READ_SECTIONS - bodies.keys()
    if missing:
        raise ParseError(f"read output: missing sections {', '.join(sorted(missing))}")
    return bodies, resolves


def parse_preflight(body: str) -> tuple[tuple[str, ...], str | None]:
    """The preflight section -> (what the node lacks, in nodeos.KNOWN order; its OS family or None)."""
    lacks: set[str] = set()
    words: list[str] = []
    for _, line in numbered_lines(body):
        key, _, value = line.strip().partition(" ")
        if key == "os":
            words = [w for w in value.lower().split() if _OS_WORD.fullmatch(w)]
        elif key == "lacks" and value in nodeos.KNOWN:
            lacks.add(value)
        elif key == "unsafe" and value:
            continue  # (parse_unsafe)
        else:
            raise ParseError("read output: preflight section malformed")
    os_family = nodeos.family(words[0], tuple(words[1:])) if words else None
    return tuple(k for k in nodeos.KNOWN if k in lacks), os_family


def parse_unsafe(body: str) -> tuple[str, ...]:
    """The preflight section's `unsafe PATH` lines -> the folders another user owns or may write."""
    found = (line.strip() for _, line in numbered_lines(body))
    return tuple(dict.fromkeys(line[7:] for line in found if line.startswith("unsafe ")))


def _keyfile(body: str) -> tuple[bool, str | None]:
    rows = [line for _, line in numbered_lines(body)]
    if not rows or rows[0] not in ("present", "absent"):
        raise ParseError("read output: key file section malformed")
    if rows[0] == "absent":
        return False, None
    pub = rows[1].strip() if len(rows) > 1 else ""
    return True, pub if is_key(pub) else None


def _conf(body: str) -> tuple[bool, str | None]:
    rows = [line.strip() for _, line in numbered_lines(body)]
    if not rows or rows[0] not in ("present", "absent"):
        raise ParseError("read output: config section malformed")
    if rows[0] == "absent":
        return False, None
    digest = rows[1] if len(rows) > 1 else ""
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise ParseError("read output: config checksum malformed")
    return True, digest


def _systemd(body: str) -> bool | None:
    rows = [line.strip() for _, line in numbered_lines(body)]
    if rows == ["no-systemd"]:
        return None
    return bool(rows) and rows[0] in ("enabled", "enabled-runtime")


def parse_forwarding(body: str) -> dict[int, bool]:
    """The forwarding section (`4 1`, `6 0`: IP version and the sysctl's value) -> {4: True, 6: False}.
    A version not printed, or printed with a value that is no number, is absent (not known)."""
    out: dict[int, bool] = {}
    for _, line in numbered_lines(body):
        version, _, value = line.strip().partition(" ")
        value = value.strip()
        if version in ("4", "6") and value.isdigit():
            out[int(version)] = value.strip("0") != ""
    return out


def parse_pending(body: str) -> tuple[str, ...]:
    """The pending section -> the run ids of the applies awaiting confirmation (anything else is not one)."""
    return tuple(sorted({r for r in (line.strip() for line in body.splitlines()) if shell.RUN_ID.fullmatch(r)}))


def parse_settling(body: str, word: str = "settling") -> tuple[str, ...]:
    """The pending section's `settling RUN` lines -> the runs being confirmed or undone right now (`busy RUN`
    lines with word="busy": the applies whose steps change the node right now)."""
    runs = (line.split()[1] for line in body.splitlines() if len(line.split()) == 2 and line.split()[0] == word)
    return tuple(sorted({r for r in runs if shell.RUN_ID.fullmatch(r)}))


@dataclass(frozen=True)
class _Rules:
    """The iptables (or ip6tables) section, read."""

    present: bool
    forward: int = 0  # how many of wgmesh's two FORWARD accept rules are there
    masquerade: frozenset[IPNetwork] = frozenset()
    failed: tuple[tuple[str, str], ...] = ()  # (table, why) of a listing that failed on the node
    legacy: bool = False  # iptables-nft warned that iptables-legacy tables are present


def _iptables(interface: str, body: str, tool: str = "iptables") -> _Rules:
    rows = [line for _, line in numbered_lines(body)]
    if not rows or rows[0].strip() not in ("present", "absent"):
        raise ParseError(f"read output: {tool} section malformed")
    if rows[0].strip() == "absent":
        return _Rules(False)
    failed = tuple((table, why.strip()) for table, _, why in
                   (row.removeprefix("failed ").partition(" ") for row in rows[1:] if row.startswith("failed ")))
    legacy = any(row.strip() == "legacy" for row in rows[1:])
    forward, masquerade = parse_iptables(interface, rows[1:])
    return _Rules(True, forward, masquerade, failed, legacy)


_CONF_LINE = re.compile(r"^\|(.*)$", re.MULTILINE)
_NOT_CONF_LINE = re.compile(r"^(?!\|)[^\S\n]*\S", re.MULTILINE)  # a line with text, not behind `|`


def parse_conf_text(body: str) -> str:
    """The conftext section -> IF.conf's text (each line was printed behind `|`; keys already redacted; blank
    lines between them are no part of it)."""
    marked = "\n" + body
    if marked.count("\n|") == marked.count("\n"):  # every line behind `|` (the usual): no scan of each line
        return marked.replace("\n|", "\n")[1:] + "\n"
    if _NOT_CONF_LINE.search(body):
        raise ParseError("read output: config text section malformed")
    lines = _CONF_LINE.findall(body)
    return "\n".join(lines) + "\n" if lines else ""


def parse_read_output(interface: str, text: str) -> LiveState:
    """The output of `read_command(interface, hosts)` -> LiveState. Pure."""
    return parse_read_sections(interface, shell.sections(text))


def parse_read_sections(interface: str, found: Sequence[shell.Section]) -> LiveState:
    """`parse_read_output` over sections already split (status and import print theirs first). Whatever a
    node prints, the result is a state or a ParseError: an output no parser foresaw is still that node's
    error, never the run's."""
    try:
        return _parse_read_sections(interface, found)
    except ParseError:
        raise
    except shell.UNFORESEEN as e:
        raise ParseError(shell.unforeseen(e)) from None


def _parse_read_sections(interface: str, found: Sequence[shell.Section]) -> LiveState:
    _check_served(found, interface)
    sections, resolves = _read_sections(found)
    missing, os_family = parse_preflight(sections["preflight"])
    iface, peers = parse_dump(sections["wg"])
    if {nodeos.IP, nodeos.IP_BUSYBOX, nodeos.IP_JSON} & set(missing):
        # No ip that speaks JSON: nothing is known of links and routes. The plan is an error (preflight);
        # the interface exists if wg could dump it, never "absent" because ip could not say.
        exists, addresses, mtu, up, routes = iface is not None, frozenset(), None, False, frozenset()
    else:
        exists = parse_ip_link(sections["link"])
        addresses, mtu, up = parse_ip_addr(sections["addr"])
        routes = parse_ip_route(sections["route4"], family=4) | parse_ip_route(sections["route6"], family=6)
    if exists and "wgerror" in sections and nodeos.WG not in missing:
        reason = "".join(c for c in sections["wgerror"].strip() if c.isprintable())[:200] or "no reason given"
        raise ReadError(f"interface {interface} exists but `wg show {interface}` failed: {reason}")
    key_exists, key_pub = _keyfile(sections["keyfile"])
    conf_exists, conf_sha = _conf(sections["conf"])
    # Routing and the config text: an output without these sections (a fake, an older capture) says nothing
    # of them, which is not the same as "off" or "absent".
    rules = {v: _iptables(interface, sections[tool], tool) for v, tool in ((4, "iptables"), (6, "ip6tables"))
             if tool in sections}
    r4, r6 = rules.get(4), rules.get(6)
    masquerade: frozenset[IPNetwork] = frozenset().union(*(r.masquerade for r in rules.values()))
    conf_text = parse_conf_text(sections["conftext"]) if conf_exists and "conftext" in sections else None
    other_routes = parse_other_routes(sections["otherroutes"]) if "otherroutes" in sections else {}
    return LiveState(
        interface=interface,
        interface_exists=exists,
        public_key=iface.public_key if iface else None,
        listen_port=iface.listen_port if iface else None,
        fwmark=iface.fwmark if iface else None,
        peers=peers,
        addresses=addresses,
        mtu=mtu,
        link_up=up,
        routes=routes,
        key_file_exists=key_exists,
        key_file_public_key=key_pub,
        config_exists=conf_exists,
        config_sha256=conf_sha,
        resolved={host: parse_getent(body) for host, body in resolves.items()},
        wg_quick_unit_enabled=_systemd(sections["systemd"]),
        missing=missing,
        os_family=os_family,
        unsafe_dirs=parse_unsafe(sections["preflight"]),
        forwarding=parse_forwarding(sections.get("forwarding", "")),
        has_iptables=None if r4 is None else r4.present,
        forward_rules=r4 is not None and r4.forward == 2,
        masquerade=masquerade,
        has_ip6tables=None if r6 is None else r6.present,
        forward_rules6=r6 is not None and r6.forward == 2,
        stray_forward_rules=frozenset(v for v, r in rules.items() if r.forward == 1),
        config_text=conf_text,
        plan_key=_plan_key(sections.get("plankey")),
        auto_mtu=parse_auto_mtu(sections.get("automtu", "")),
        other_routes=other_routes,
        rules_failed={(v, table): why for v, r in rules.items() for table, why in r.failed},
        legacy_tables=frozenset(v for v, r in rules.items() if r.legacy),
        clock=parse_clock(sections.get("now", "")),
        applied=parse_clock(sections.get("applied", "")),
        pending_runs=parse_pending(sections.get("pending", "")),
        settling_runs=parse_settling(sections.get("pending", "")),
        busy_runs=parse_settling(sections.get("pending", ""), "busy"),
        reresolve=parse_reresolve(interface, sections.get("reresolve")),
    )


def parse_reresolve(interface: str, body: str | None) -> str | None:
    """The `reresolve` section -> "running", "stopped", "outdated" (another version's script) or "absent"; None
    when the read had no such section."""
    if body is None:
        return None
    lines = body.split()
    if "script" not in lines or lines.index("script") + 1 >= len(lines):
        return None
    version = lines[lines.index("script") + 1]
    if version == "none":
        return "absent"
    from wgmesh.remote.apply import reresolve_version

    if version != reresolve_version(interface):
        return "outdated"
    return "running" if "running" in lines else "stopped"


def parse_clock(body: str) -> int | None:
    """`date +%s` on the node -> epoch seconds, or None."""
    text = body.strip()
    return int(text) if text.isdigit() and len(text) < 12 else None


def parse_auto_mtu(body: str) -> int | None:
    """read.sh's `automtu` section: the MTU wg-quick would set (a number in 576..65535), or None."""
    text = body.strip()
    if not text:
        return None
    if not text.isdigit() or not 68 <= int(text) <= 65535:
        raise ParseError(f"automtu: {text[:20]!r} is not an MTU")
    return int(text)


# ---------------------------------------------------------------------------------------------
# The read-only plan key (remote/plankey.py): read.sh's `plankey` section, and the output of the read script
# `wgmesh plan-key` installed, which says `@@wgmesh:served VERSION`


def _plan_key(body: str | None) -> str | None:
    from wgmesh.remote import plankey

    return plankey.plan_key_state(body)


def _check_served(found: Sequence[shell.Section], interface: str) -> None:
    """Refuse the output of an installed read script from another wgmesh version (its sections may no longer
    be what this parser expects, and a plan from them could show changes that are not there), or one that reads
    another interface (the login's plan key is another mesh's)."""
    from wgmesh.remote import plankey

    other = plankey.served_interface(found)
    if other is not None and other != interface:
        raise ParseError(
            f"the key this read logged in with is the plan key of interface {other} on this node, not of {interface}: "
            "each mesh on a node needs a plan key of its own (`wgmesh plan-key` with another key)"
        )
    served = plankey.served_version(found)
    if served is not None and served != plankey.script_version():
        raise ParseError(
            f"the read script that `wgmesh plan-key` installed on this node is from another wgmesh version "
            f"({served[:16]}, this one reads {plankey.script_version()}): run `wgmesh plan-key KEY.pub` again "
            "with the admin key"
        )
