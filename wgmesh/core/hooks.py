"""The PostUp/PostDown lines wgmesh writes itself, and how to tell them from the user's: forwarding and firewall
rules for routed subnets and relays, kept preshared keys, endpoint re-resolution. Pure."""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING

from wgmesh.core.model import KEY_DIR, IPNetwork

# wgmesh's own firewall rules carry this comment (%i is the interface: wg-quick and apply replace it), so they
# are told apart from everyone else's, read back by plan and removed exactly.
RULE_COMMENT = "wgmesh:%i"

if TYPE_CHECKING:
    from wgmesh.core.render import InterfaceConfig

KEY_POST_UP = f"wg set %i private-key {KEY_DIR}/%i.key"
RERESOLVE_SCRIPT = f"{KEY_DIR}/wgmesh-reresolve-%i.sh"  # next to IF.conf, as wgmesh-read-IF.sh (plan-key)



# ... and its other lines end with this comment (wg-quick drops everything from `#` on a line), so a user's
# own `sysctl -w net.ipv4.ip_forward=1` hook stays the user's.
MANAGED_MARK = "# wgmesh"


_SYSCTL = {4: "net.ipv4.ip_forward", 6: "net.ipv6.conf.all.forwarding"}
RULE_TOOL = {4: "iptables", 6: "ip6tables"}  # the tool of wgmesh's rules for each IP version
# Every iptables call waits up to 5 s for the xtables lock (legacy iptables) rather than failing at once when
# another tool holds it: at boot, Docker or firewalld may be setting up their rules beside wg-quick's PostUp,
# and one failed PostUp line takes the whole interface down. (iptables-nft takes the option and ignores it.)
RULE_WAIT = "-w 5"


def forward_rule(direction: str) -> str:
    """iptables arguments of wgmesh's FORWARD accept rule for traffic in (-i) or out (-o) of the interface."""
    return f"FORWARD {direction} %i -m comment --comment {RULE_COMMENT} -j ACCEPT"


def masquerade_rule(subnet: IPNetwork) -> str:
    """iptables arguments (nat table) that source-NAT traffic into `subnet` coming from anywhere else."""
    return f"POSTROUTING ! -s {subnet} -d {subnet} -m comment --comment {RULE_COMMENT} -j MASQUERADE"


def _insert_once(tool: str, table: str, rule: str) -> str:
    """The PostUp line that inserts `rule` only when it is missing (-C first): a boot whose later PostUp line fails
    deletes the interface without its PostDown lines, and the rules stay; the next `wg-quick up` must not add a
    second copy of each."""
    return f"{tool} {RULE_WAIT} {table}-C {rule} 2>/dev/null || {tool} {RULE_WAIT} {table}-I {rule}"


def routing_hooks(cfg: InterfaceConfig) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The PostUp and PostDown lines wgmesh adds for a node that routes subnets: forwarding on, and its
    FORWARD accept and MASQUERADE rules (iptables for IPv4, ip6tables for IPv6), so that `wg-quick up` at boot
    brings them back. PostDown removes the rules and leaves forwarding as it is (other things on the node may
    need it)."""
    return _routing_hooks(cfg.forwarding, cfg.masquerade)


@functools.lru_cache(maxsize=256)
def _routing_hooks(
    forwarding: tuple[int, ...], masquerade: tuple[IPNetwork, ...]
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(made once per kind of node: `render --all` asks for the same few for every node, twice)"""
    up = [f"sysctl -q -w {_SYSCTL[v]}=1 {MANAGED_MARK}" for v in forwarding]
    rules = [(RULE_TOOL[v], forward_rule(d)) for v in (4, 6) if v in forwarding for d in ("-i", "-o")]
    up += [_insert_once(tool, "", r) for tool, r in rules]
    nat = [(RULE_TOOL[n.version], masquerade_rule(n)) for n in sorted(masquerade, key=lambda n: n.version)]
    up += [_insert_once(tool, "-t nat ", r) for tool, r in nat]
    down = [f"{tool} {RULE_WAIT} -t nat -D {r} || true" for tool, r in reversed(nat)]
    down += [f"{tool} {RULE_WAIT} -D {r} || true" for tool, r in reversed(rules)]
    return tuple(up), tuple(down)


PSK_FILE = f"{KEY_DIR}/%i.psk"  # the kept preshared keys, `PUBLICKEY PRESHAREDKEY` lines, mode 600, on the node


def psk_hooks(cfg: InterfaceConfig) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """A pair that keeps its preshared key (`shared_keys`) keeps it over a restart too: the config has no
    PresharedKey line (wgmesh never sees the value), so the node keeps the runtime's in PSK_FILE (apply writes it,
    step save_preshared_keys; PreDown writes it again), and PostUp puts it back. Nothing leaves the node.
    Returns (PostUp lines, PreDown lines): the save runs before wg-quick deletes the interface (a PostDown would
    find none, and must never replace the file with nothing when `wg show` fails)."""
    if not cfg.kept_preshared_keys:
        return (), ()
    up = (f'[ ! -f {PSK_FILE} ] || while read -r p k; do if wg show %i peers | grep -qxF -- "$p"; then '
          f'printf "%s\\n" "$k" | wg set %i peer "$p" preshared-key /dev/stdin; fi; done < {PSK_FILE} {MANAGED_MARK}')
    # every preshared key the runtime has: apply clears all but the kept ones (no public key in the line: read.sh
    # redacts key-like text in the config it shows)
    down = (f'k=$(wg show %i preshared-keys) && {{ printf "%s\\n" "$k" | grep -v "(none)" || true; }} > '
            f"{PSK_FILE}.new && mv -f {PSK_FILE}.new {PSK_FILE} {MANAGED_MARK}")
    return (up,), (down,)


def reresolve_hooks(cfg: InterfaceConfig) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """PostUp starts the re-resolution loop where no systemd runs (the script decides), PostDown stops it."""
    if not cfg.reresolve:
        return (), ()
    guard = f"[ ! -x {RERESOLVE_SCRIPT} ] || {RERESOLVE_SCRIPT}"
    return (f"{guard} start {MANAGED_MARK}",), (f"{guard} stop {MANAGED_MARK}",)


def is_managed_hook(line: str) -> bool:
    """A PostUp/PostDown line wgmesh writes itself (the key loader, forwarding, its own rules)."""
    return line == KEY_POST_UP or RULE_COMMENT in line or line.endswith(MANAGED_MARK)


# a PostUp or PostDown line of a wg-quick config, its key in any case (wg-quick's own reading), its value
_HOOK_LINE = re.compile(r"^[^\S\n]*(post(?:up|down))[^\S\n]*=(.*)$", re.IGNORECASE | re.MULTILINE)


def _hook_lines(text: str) -> Iterator[re.Match[str]]:
    """_HOOK_LINE's matches in `text`. ASCII text (any config wg-quick reads well): only the lines where "post"
    occurs are matched, found by str.find in the lowered text (a C scan, where the pattern is tried at every
    line start)."""
    if not text.isascii():
        yield from _HOOK_LINE.finditer(text)
        return
    lowered = text.lower()
    at = lowered.find("post")
    while at != -1:
        start = text.rfind("\n", 0, at) + 1
        end = text.find("\n", at)
        end = len(text) if end == -1 else end
        m = _HOOK_LINE.match(text[start:end])
        if m is not None:
            yield m
        at = lowered.find("post", end)


def user_hooks(text: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The PostUp and PostDown lines of a wg-quick config text that are not wgmesh's own, in order. One scan of
    the text (a node's config has a stanza per peer: thousands of lines, a handful of hooks)."""
    up: list[str] = []
    down: list[str] = []
    for m in _hook_lines(text):
        value = m.group(2).strip()
        if not is_managed_hook(value):
            (up if m.group(1).lower() == "postup" else down).append(value)
    return tuple(up), tuple(down)
