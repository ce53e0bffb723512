"""`wgmesh import`, the node side: the read and adopt scripts (scripts/import.sh, scripts/adopt.sh), their
parsers, and the wg-quick config parser."""

from __future__ import annotations

from typing import Any

from wgmesh.core.model import KEY_DIR, validate_key
from wgmesh.core.render import MANAGED_MARK
from wgmesh.core.state import REDACTED, LiveState, QuickPeer, WgQuick
from wgmesh.remote import read as live_mod
from wgmesh.remote import shell

MARK = shell.MARK


_KNOWN_NAMES = {
    "dns": "DNS",
    "table": "Table",
    "fwmark": "FwMark",
    "preup": "PreUp",
    "predown": "PreDown",
    "saveconfig": "SaveConfig",
}


BACKUP_SUFFIX = ".wgmesh-import"


def _int_or_none(value: str) -> int | None:
    return int(value) if value.isdigit() else None


def parse_wg_quick(text: str) -> WgQuick:
    """A wg-quick config as wg-quick reads it: sections, `Key = Value`, '#' starts a comment. Pure;
    PrivateKey and PresharedKey lines are skipped unread (the node already removed them), and so are the lines
    wgmesh writes itself and marks with a trailing `# wgmesh` (forwarding for routed subnets)."""
    iface: dict[str, Any] = {"addresses": [], "post_up": [], "post_down": [], "ignored": []}
    peers: list[dict[str, Any]] = []
    section = ""
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line or raw.rstrip().endswith(MANAGED_MARK):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1].strip().lower()
            if section == "peer":
                peers.append({"allowed_ips": []})
            continue
        shown, sep, value = line.partition("=")
        if not sep:
            continue
        shown, value = shown.strip(), value.strip()
        key = shown.lower().replace(" ", "")
        if key in ("privatekey", "presharedkey"):
            continue
        if section == "interface":
            _interface_setting(iface, key, shown, value)
        elif section == "peer" and peers:
            _peer_setting(peers[-1], key, value)
    return WgQuick(
        addresses=tuple(iface["addresses"]),
        listen_port=iface.get("listen_port"),
        mtu=iface.get("mtu"),
        post_up=tuple(iface["post_up"]),
        post_down=tuple(iface["post_down"]),
        ignored=tuple(dict.fromkeys(iface["ignored"])),
        table=iface.get("table"),
        peers=tuple(
            QuickPeer(p["public_key"], p.get("endpoint"), tuple(p["allowed_ips"]), p.get("keepalive"))
            for p in peers
            if validate_key(p.get("public_key", ""))
        ),
    )


def _interface_setting(iface: dict[str, Any], key: str, shown: str, value: str) -> None:
    if key == "address":
        iface["addresses"] += [a.strip() for a in value.split(",") if a.strip()]
    elif key == "listenport":
        iface["listen_port"] = _int_or_none(value)
    elif key == "mtu":
        iface["mtu"] = _int_or_none(value)
    elif key == "postup":
        iface["post_up"].append(value)
    elif key == "postdown":
        iface["post_down"].append(value)
    elif key == "saveconfig" and value.lower() != "true":
        pass
    elif key == "table" and value.lower() in ("auto", "main"):
        pass  # what wgmesh's config does too: wg-quick routes each peer's AllowedIPs in the main table
    else:
        if key == "table":
            iface["table"] = value

        iface["ignored"].append(_KNOWN_NAMES.get(key, shown))


def _peer_setting(peer: dict[str, Any], key: str, value: str) -> None:
    if key == "publickey":
        peer["public_key"] = value
    elif key == "endpoint":
        peer["endpoint"] = value
    elif key == "allowedips":
        peer["allowed_ips"] += [a.strip() for a in value.split(",") if a.strip()]
    elif key == "persistentkeepalive":
        peer["keepalive"] = 0 if value.lower() == "off" else _int_or_none(value)


def import_script(interface: str, *, key_dir: str = KEY_DIR, deadline: float | None = None) -> str:
    """scripts/import.sh: the wg-quick config (secrets removed on the node), then everything `plan` reads (which
    the node stops itself a little after `deadline`, the controller's)."""
    return shell.script("import", **shell.node_paths(interface, key_dir=key_dir), REDACTED=REDACTED, HOSTS="",
                        STOP_AFTER=shell.stop_after(deadline))


def parse_import_output(interface: str, stdout: str) -> tuple[LiveState, WgQuick | None]:
    """The output of `import_script` -> (live state, config or None when absent). ParseError if garbled."""
    found = shell.sections(stdout)
    conf = next((s for s in found if s.name == "wgquick"), None)
    if conf is None:
        raise live_mod.ParseError("import read output: the config section is missing (not wgmesh output?)")
    body = list(conf.lines)
    if not body or body[0] not in ("present", "absent"):
        raise live_mod.ParseError("import read output: config section malformed")
    live = live_mod.parse_read_sections(interface, found)
    return live, parse_wg_quick("\n".join(body[1:])) if body[0] == "present" else None


def adopt_script(
    interface: str, public_key: str, conf_text: str, *, write_conf: bool = True, key_dir: str = KEY_DIR
) -> str:
    """scripts/adopt.sh: make sure IF.key holds the running key (moving it there if needed), back up the old
    config without its PrivateKey, write wgmesh's config (unless `write_conf` is false: the node's own config
    stays until the first apply). Prints `@@wgmesh:adopted kept|config|interface`."""
    if not validate_key(public_key):
        raise ValueError("public_key is not a WireGuard public key")
    paths = shell.node_paths(interface, key_dir=key_dir)
    return shell.script("adopt", **paths, BACKUP=paths["CONF"] + BACKUP_SUFFIX, EXPECT=public_key,
                        CONF_TEXT=conf_text, WRITE_CONF=int(write_conf), REDACTED=REDACTED)


def parse_adopt_output(stdout: str) -> str:
    """`kept`, `config` or `interface`: where IF.key came from. ValueError if the line is missing."""
    for s in shell.sections(stdout):
        if s.name == "adopted" and s.args and s.args[-1] in ("kept", "config", "interface"):
            return s.args[-1]
    raise ValueError("the node did not confirm the import")
