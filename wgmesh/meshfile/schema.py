"""What mesh.yaml may contain: the allowed keys of each section, the names people bring from other tools
(for "did you mean"), the name and interface patterns, and `show()`, the safe rendering of a value."""

from __future__ import annotations

import re
from typing import Any

from wgmesh.meshfile.diagnostics import KEYLIKE_RE

VERSION = 1

TOP_KEYS = ("version", "mesh", "ssh", "nodes")
MESH_KEYS = ("name", "interface", "network", "listen_port", "persistent_keepalive", "mtu", "relay")
SSH_KEYS = ("user", "port", "known_hosts", "identity_file", "proxy_jump", "proxy_command", "sudo")
NODE_SSH_KEYS = ("host", *SSH_KEYS)
NODE_KEYS = (
    "address",
    "public_key",
    "endpoint",
    "subnets",
    "ssh",
    "listen_port",
    "mtu",
    "post_up",
    "post_down",
    "decommission",
    "masquerade",
    "port_forward",
    "shared_keys",
)
SUBNET_KEYS = ("prefix", "probe", "masquerade")

# Names people bring from wg-quick files or other tools, mapped to ours (used for "did you mean").
ALIASES = {
    "addresses": "address",
    "allowedips": "subnets",
    "subnet": "subnets",
    "routes": "subnets",
    "publickey": "public_key",
    "pubkey": "public_key",
    "key": "public_key",
    "port": "listen_port",
    "listenport": "listen_port",
    "keepalive": "persistent_keepalive",
    "persistentkeepalive": "persistent_keepalive",
    "networks": "network",
    "cidr": "network",
    "postup": "post_up",
    "postdown": "post_down",
    "hostname": "host",
    "username": "user",
    "identity": "identity_file",
    "identityfile": "identity_file",
    "knownhosts": "known_hosts",
    "proxyjump": "proxy_jump",
    "jump": "proxy_jump",
    "proxycommand": "proxy_command",
    "proxy": "proxy_command",
    "usesudo": "sudo",
    "become": "sudo",
    "nat": "masquerade",
    "snat": "masquerade",
    "relaynode": "relay",
    "hub": "relay",
    "portforward": "port_forward",
    "portforwarded": "port_forward",
    "forwarded": "port_forward",
    "sharedkey": "shared_keys",
    "keep": "shared_keys",
}

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
IFACE_RE = re.compile(r"[a-zA-Z0-9_=+.-]{1,15}")
MAX_PAIR_WARNINGS = 10  # warnings about nodes without endpoints, before one summary


def _norm(key: str) -> str:
    return re.sub(r"[^a-z0-9]", "", key.lower())


def suggest(key: str, allowed: tuple[str, ...]) -> str | None:
    """The allowed key that `key` most likely meant, or None."""
    norm = _norm(key)
    for a in allowed:
        if _norm(a) == norm:
            return a
    alias = ALIASES.get(norm)
    if alias in allowed:
        return alias
    import difflib  # (only for a misspelt key)

    close = difflib.get_close_matches(key.lower()[:64], allowed, n=1, cutoff=0.6)
    return close[0] if close else None


def show(value: Any) -> str:
    """A short, safe rendering of a mesh.yaml value for messages (never a key-like string)."""
    text = str(value)
    if KEYLIKE_RE.search(text):
        return "this value"
    if len(text) > 60:
        text = text[:57] + "..."
    return repr(text) if isinstance(value, str) else text


# names the tools read as something else: `wg show all` and `wg show interfaces` (every interface: the private and
# preshared keys of the others among them), the kernel's net.ipv4.conf.all and .default (no interface has them)
_IFACE_WORDS = {
    "all": "`wg show all` shows every interface",
    "interfaces": "`wg show interfaces` lists every interface",
    "default": "net.ipv4.conf.default is the kernel's settings for new interfaces",
}


def interface_problem(name: str) -> str | None:
    """Why `name` cannot be the mesh's WireGuard interface, the fix included; None when it can."""
    if not IFACE_RE.fullmatch(name) or name in {".", ".."}:
        return f"invalid interface name {show(name)}: use at most 15 characters of a-z A-Z 0-9 _ = + . -, e.g. wg0"
    if name.endswith("+"):
        # iptables reads a trailing + as "every interface starting with": the FORWARD rules of `wg+` would
        # accept traffic of wg0 and every other wg* tunnel
        return (f"{show(name)} ends with '+', which firewall rules read as every interface starting with "
                f"{show(name[:-1])}: choose a name that does not end with '+', e.g. wg0")
    if name in _IFACE_WORDS:
        return f"{show(name)} cannot name an interface ({_IFACE_WORDS[name]}): use another name, e.g. wg0"
    return None
