"""Preflight: what a node lacks for what wgmesh does there, and the package that provides it on the node's OS
family. Pure. The read script reports the facts (`lacks WHAT` lines, /etc/os-release's ID and ID_LIKE);
`core.plan.diff_node` turns them into the node's error, so nothing changes on such a node.
"""

from __future__ import annotations

from wgmesh.core.model import KEY_DIR, RUN_DIR

# What the read script may report as lacking.
WG = "wg"
WG_QUICK = "wg-quick"
IP = "ip"  # no `ip` at all
IP_BUSYBOX = "ip-busybox"  # busybox's ip: no JSON output (`ip -j`)
IP_JSON = "ip-json"  # an ip that cannot print JSON (iproute2 older than 4.14)
FLOCK = "flock"
CONF_DIR = "confdir"  # /etc/wireguard is not writable (and cannot be created)
CONF_OWNER = "confowner"  # /etc/wireguard or its parent is not root's alone (another user owns or may write it)
RUN_OWNER = "runowner"  # the same of /run/wireguard (the lock, a run's records and its revert timer's script)
RUN_DIR_RO = "rundir"  # /run/wireguard is not writable (and cannot be created)
KNOWN = (WG, WG_QUICK, IP, IP_BUSYBOX, IP_JSON, FLOCK, CONF_DIR, CONF_OWNER, RUN_OWNER, RUN_DIR_RO)
# The firewall tools, needed only where the plan asks for rules (core.routing names them).
IPTABLES = "iptables"
IP6TABLES = "ip6tables"

_WHAT = {
    WG: "wg",
    WG_QUICK: "wg-quick",
    IP: "ip",
    IP_BUSYBOX: "an ip with JSON output, not busybox's",
    IP_JSON: "an ip with JSON output (`ip -j`), newer than this node's",
    FLOCK: "flock",
}

# OS family -> (install command, {what: package}).
PACKAGES: dict[str, tuple[str, dict[str, str]]] = {
    "debian": ("apt-get install", {WG: "wireguard-tools", WG_QUICK: "wireguard-tools", IP: "iproute2",
                                   FLOCK: "util-linux", IPTABLES: "iptables", IP6TABLES: "iptables"}),
    "fedora": ("dnf install", {WG: "wireguard-tools", WG_QUICK: "wireguard-tools", IP: "iproute",
                               FLOCK: "util-linux", IPTABLES: "iptables", IP6TABLES: "iptables"}),
    "alpine": ("apk add", {WG: "wireguard-tools", WG_QUICK: "wireguard-tools", IP: "iproute2", FLOCK: "flock",
                           IPTABLES: "iptables", IP6TABLES: "ip6tables"}),
    "arch": ("pacman -S", {WG: "wireguard-tools", WG_QUICK: "wireguard-tools", IP: "iproute2",
                           FLOCK: "util-linux", IPTABLES: "iptables", IP6TABLES: "iptables"}),
    "suse": ("zypper install", {WG: "wireguard-tools", WG_QUICK: "wireguard-tools", IP: "iproute2",
                                FLOCK: "util-linux", IPTABLES: "iptables", IP6TABLES: "iptables"}),
}

# /etc/os-release ID or ID_LIKE word -> family.
_FAMILY = {
    "debian": "debian", "ubuntu": "debian", "raspbian": "debian", "linuxmint": "debian", "pop": "debian",
    "fedora": "fedora", "rhel": "fedora", "centos": "fedora", "rocky": "fedora", "almalinux": "fedora",
    "ol": "fedora", "amzn": "fedora",
    "alpine": "alpine",
    "arch": "arch", "manjaro": "arch",
    "suse": "suse", "opensuse": "suse", "sles": "suse", "opensuse-leap": "suse", "opensuse-tumbleweed": "suse",
}


def family(os_id: str | None, id_like: tuple[str, ...] = ()) -> str | None:
    """The OS family of /etc/os-release's ID (or else the first ID_LIKE word we know), or None."""
    for word in (os_id or "", *id_like):
        if word.lower() in _FAMILY:
            return _FAMILY[word.lower()]
    return None


def _package(what: str, fam: str) -> str:
    return PACKAGES[fam][1][IP if what in (IP_BUSYBOX, IP_JSON) else what]


def install_hint(what: str, os_family: str | None) -> str:
    """How to get `what` (a key of PACKAGES' tables) on that OS family: `apk add ip6tables`; Debian's package
    name, said to be that, when the family is unknown."""
    if os_family in PACKAGES:
        return f"{PACKAGES[os_family][0]} {_package(what, os_family)}"
    return f"Debian's package {_package(what, 'debian')}"


def preflight_error(missing: tuple[str, ...], os_family: str | None, unsafe: tuple[str, ...] = ()) -> str | None:
    """The node's error naming each missing tool and the package that provides it on that family (Debian's
    names when the family is unknown); None when nothing is missing. `unsafe`: the folders that another user
    owns or may write (named with the fix, when the read says which)."""
    if not missing:
        return None
    fam = os_family if os_family in PACKAGES else None
    by_package: dict[str, list[str]] = {}
    for what in missing:
        if what in _WHAT:
            by_package.setdefault(_package(what, fam or "debian"), []).append(_WHAT[what])
    problems = []
    if by_package:
        lacks = ", ".join(f"{' and '.join(whats)} (package {p})" for p, whats in by_package.items())
        if fam is None:
            problems.append(f"this node lacks {lacks}; those are Debian's package names: its OS is not one we know")
        else:
            problems.append(f"this node lacks {lacks}; install: {PACKAGES[fam][0]} {' '.join(by_package)}")
    if CONF_DIR in missing:
        problems.append(f"{KEY_DIR} is not writable (nor can it be created)")
    if unsafe and (CONF_OWNER in missing or RUN_OWNER in missing):
        fixes = "; ".join(f"chown root: {d}; chmod go-w {d}" for d in unsafe)
        problems.append(f"{', '.join(unsafe)} must be root's, and written by no one else (another user could plant "
                        f"a link where wgmesh writes keys, configs, its lock and a run's records as root, under "
                        f"{KEY_DIR} and {RUN_DIR}): {fixes}")
        missing = tuple(m for m in missing if m not in (CONF_OWNER, RUN_OWNER))
    if CONF_OWNER in missing:
        problems.append(f"{KEY_DIR} or its parent folder is not root's alone (another user owns it or may write "
                        f"in it, and could plant a link where wgmesh writes keys and configs as root): chown root: "
                        f"{KEY_DIR}; chmod 700 {KEY_DIR}; chmod go-w {KEY_DIR.rsplit('/', 1)[0] or '/'}")
    if RUN_DIR_RO in missing:
        problems.append(f"{RUN_DIR} is not writable (nor can it be created): wgmesh keeps its lock and a run's "
                        "records there")
    if RUN_OWNER in missing:
        problems.append(f"{RUN_DIR} or its parent folder is not root's alone (another user owns it or may write in "
                        f"it, where wgmesh keeps its lock and a run's records as root): chown root: {RUN_DIR}; "
                        f"chmod 755 {RUN_DIR}; chmod go-w {RUN_DIR.rsplit('/', 1)[0] or '/'}")
    return "preflight: " + "; ".join(problems) + "; wgmesh changes nothing on this node until then"
