"""`wgmesh import`, the node side: the read and adopt scripts, their parsers, and the wg-quick config parser."""

from __future__ import annotations

import shlex
from typing import Any

from wgmesh import config
from wgmesh.core.model import KEY_DIR
from wgmesh.core.state import REDACTED, LiveState, QuickPeer, WgQuick
from wgmesh.remote import read as live_mod

MARK = "@@wgmesh-import:"



_KNOWN_NAMES = {
    "dns": "DNS",
    "table": "Table",
    "fwmark": "FwMark",
    "preup": "PreUp",
    "predown": "PreDown",
    "saveconfig": "SaveConfig",
}


BACKUP_SUFFIX = ".wgmesh-import"


_KEYLIKE = "[A-Za-z0-9+/]" * 43 + "="


# Runs on the node over IF.conf: drops PrivateKey/PresharedKey lines and marker-like lines; replaces any
# other key-like text (except a PublicKey value) by (redacted).
_FILTER_AWK = (
    f'BEGIN {{ re = "{_KEYLIKE}" }} '
    '{ l = $0; sub(/^[ \\t]+/, "", l); k = tolower(l); gsub(/[ \\t]/, "", k); '
    "if (k ~ /^(privatekey|presharedkey)=/) next; "
    'if (substr(l, 1, 2) == "@@") next; '
    f'if (k !~ /^publickey=/) gsub(re, "{REDACTED}"); '
    "print }"
)


# Prints the value of the first PrivateKey line (into a file on the node, never to the output).
_PRIVATE_KEY_AWK = (
    '{ l = $0; sub(/^[ \\t]+/, "", l); k = tolower(l); gsub(/[ \\t]/, "", k); '
    'if (k ~ /^privatekey=/) { sub(/^[^=]*=[ \\t]*/, "", l); sub(/[ \\t\\r]*(#.*)?$/, "", l); print l; exit } }'
)


# The backup of the old config: every line but PrivateKey.
_BACKUP_AWK = (
    '{ l = $0; sub(/^[ \\t]+/, "", l); k = tolower(l); gsub(/[ \\t]/, "", k); '
    "if (k ~ /^privatekey=/) next; print }"
)


def _int_or_none(value: str) -> int | None:
    return int(value) if value.isdigit() else None


def parse_wg_quick(text: str) -> WgQuick:
    """A wg-quick config as wg-quick reads it: sections, `Key = Value`, '#' starts a comment. Pure;
    PrivateKey and PresharedKey lines are skipped unread (the node already removed them)."""
    iface: dict[str, Any] = {"addresses": [], "post_up": [], "post_down": [], "ignored": []}
    peers: list[dict[str, Any]] = []
    section = ""
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
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
        peers=tuple(
            QuickPeer(p["public_key"], p.get("endpoint"), tuple(p["allowed_ips"]), p.get("keepalive"))
            for p in peers
            if config.validate_key(p.get("public_key", ""))
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
    else:
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


def import_script(interface: str, *, key_dir: str = KEY_DIR) -> str:
    """Print the wg-quick config (secrets removed on the node), then everything `plan` reads."""
    conf = shlex.quote(f"{key_dir}/{interface}.conf")
    return (
        f"echo '{MARK}conf'\n"
        f"if [ -f {conf} ]; then echo present; awk {shlex.quote(_FILTER_AWK)} {conf} || true; "
        "else echo absent; fi\n"
        f"echo '{MARK}done'\n"
    ) + live_mod.read_command(interface)


def parse_import_output(interface: str, stdout: str) -> tuple[LiveState, WgQuick | None]:
    """The output of `import_script` -> (live state, config or None when absent). ParseError if garbled."""
    lines = stdout.split("\n")
    try:
        start = lines.index(f"{MARK}conf")
        end = lines.index(f"{MARK}done", start)
    except ValueError:
        raise live_mod.ParseError("import read output: markers missing (not wgmesh output?)") from None
    body = lines[start + 1 : end]
    if not body or body[0] not in ("present", "absent"):
        raise live_mod.ParseError("import read output: config section malformed")
    live = live_mod.parse_read_output(interface, "\n".join(lines[end + 1 :]))
    return live, parse_wg_quick("\n".join(body[1:])) if body[0] == "present" else None


def _heredoc(tag: str, body: str) -> str:
    if f"\n{tag}\n" in f"\n{body}":
        raise ValueError("config text contains the heredoc terminator")
    return f"<<'{tag}'\n{body}{'' if body.endswith(chr(10)) else chr(10)}{tag}"


def adopt_script(interface: str, public_key: str, conf_text: str, *, key_dir: str = KEY_DIR) -> str:
    """On the node: make sure IF.key holds the running key (moving it there if needed), back up the
    old config without its PrivateKey, write wgmesh's config. Prints `key kept|config|interface`."""
    if not config.validate_key(public_key):
        raise ValueError("public_key is not a WireGuard public key")
    q = shlex.quote
    return (
        "set -eu\n"
        "umask 077\n"
        "LC_ALL=C; export LC_ALL\n"
        'PATH="$PATH:/usr/local/sbin:/usr/local/bin:/usr/sbin:/sbin"; export PATH\n'
        f"IF={q(interface)}\n"
        f"DIR={q(key_dir)}\n"
        'KEY="$DIR/$IF.key"\n'
        'CONF="$DIR/$IF.conf"\n'
        f'BACKUP="$CONF{BACKUP_SUFFIX}"\n'
        'TMP="$KEY.wgmesh-tmp.$$"\n'
        'CTMP="$DIR/.$IF.conf.wgmesh-tmp.$$"\n'
        f"EXPECT={q(public_key)}\n"
        "trap 'rm -f \"$TMP\" \"$CTMP\"' EXIT\n"
        "same() { [ -s \"$1\" ] && [ \"$(wg pubkey < \"$1\" 2>/dev/null)\" = \"$EXPECT\" ]; }\n"
        'if [ -e "$KEY" ]; then\n'
        '  if ! same "$KEY"; then\n'
        '    echo "$KEY does not hold the key $IF runs with ($EXPECT): move it away and import again" >&2\n'
        "    exit 4\n"
        "  fi\n"
        "  from=kept\n"
        "else\n"
        "  from=\n"
        '  if [ -f "$CONF" ]; then\n'
        f'    awk {q(_PRIVATE_KEY_AWK)} "$CONF" > "$TMP"\n'
        '    if same "$TMP"; then from=config; fi\n'
        "  fi\n"
        '  if [ -z "$from" ]; then\n'
        '    wg show "$IF" private-key > "$TMP" 2>/dev/null || true\n'
        '    if same "$TMP"; then from=interface; fi\n'
        "  fi\n"
        '  if [ -z "$from" ]; then\n'
        '    echo "cannot find the private key of $IF (public key $EXPECT) in $CONF or the interface" >&2\n'
        "    exit 5\n"
        "  fi\n"
        '  chmod 600 "$TMP"\n'
        '  ln "$TMP" "$KEY"\n'
        '  rm -f "$TMP"\n'
        "fi\n"
        'if [ -f "$CONF" ] && [ ! -e "$BACKUP" ]; then\n'
        '  { echo "# The config of $IF before wgmesh import; its PrivateKey is now in $KEY"; '
        f'awk {q(_BACKUP_AWK)} "$CONF"; }} > "$CTMP"\n'
        '  mv -f "$CTMP" "$BACKUP"\n'
        "fi\n"
        f'cat > "$CTMP" {_heredoc("__WGMESH_CONF__", conf_text)}\n'
        'chmod 600 "$CTMP"\n'
        'mv -f "$CTMP" "$CONF"\n'
        f'echo "{MARK}key $from"\n'
    )


def parse_adopt_output(stdout: str) -> str:
    """`kept`, `config` or `interface`: where IF.key came from. ValueError if the line is missing."""
    for line in stdout.splitlines():
        if line.startswith(f"{MARK}key "):
            where = line.split()[-1]
            if where in ("kept", "config", "interface"):
                return where
    raise ValueError("the node did not confirm the import")
