"""The read-only plan key (`wgmesh plan-key`): the read script it installs on a node, the script that installs
or removes it (scripts/plankey.sh), and the pure parsers of the public key and of what the script prints.

The installed script, $KEY_DIR/wgmesh-read-$IF.sh, is the key's forced command (`restrict,command=...` in the
login user's authorized_keys; through `sudo -n` and a sudoers drop-in when the user is not root). It is
scripts/plankey-read.sh (the guard: only wgmesh's read.sh and status.sh are served) followed by read.sh with its
values baked in, so `wgmesh plan` and `wgmesh status` with that key parse exactly what they parse with the admin
key. Its header carries `script_version()`: a read through a script from another wgmesh version is refused by
remote/read.py (run `plan-key` again), and plan notes it.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import re
import struct
from collections.abc import Iterable
from dataclasses import dataclass

from wgmesh.core.model import KEY_DIR
from wgmesh.remote import shell

TAG = "wgmesh-plan-key"  # the comment of the key's authorized_keys line
LEGACY_SUDOERS = "/etc/sudoers.d/wgmesh-plan"  # one file for every interface, before plan keys were per interface


def sudoers_path(interface: str) -> str:
    """The sudoers drop-in of one interface's plan key. sudo skips a file whose name has a '.' or ends in '~':
    each character of an interface name other than a-z A-Z 0-9 - is written as `_` and its two hex digits, `_`
    itself too, so that two names never share a file (wg.5 -> wg_2e5, wg_5 -> wg_5f5)."""
    return "/etc/sudoers.d/wgmesh-plan-" + re.sub(r"[^A-Za-z0-9-]", lambda m: f"_{ord(m.group()):02x}", interface)
REFUSED_EXIT = 3
KEY_TYPES = (
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "ssh-rsa",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
)
_SPLIT = "# wgmesh-plankey-split\n"  # where plankey.sh puts the `# authorized_keys: PATH` line
MAX_PUBKEY_FILE = 16 * 1024


# The installed read stops itself this long after it began (plus shell.NODE_GRACE). It cannot know the
# controller's --command-timeout, so it allows far more than a read's default deadline (READ_TIMEOUT, 30 s).
INSTALLED_READ_DEADLINE = 300.0


def script_path(interface: str, key_dir: str = KEY_DIR) -> str:
    return f"{key_dir}/wgmesh-read-{interface}.sh"


@functools.cache
def script_version() -> str:
    """The version of the installed read script: a digest of the node-side code it is made of."""
    code = "".join(shell.source(f) for f in ("lib.sh", "plankey-read.sh", "read.sh", "status.sh"))
    return hashlib.sha256(code.encode()).hexdigest()[:16]


def read_script(interface: str, hosts: Iterable[str] = (), *, key_dir: str = KEY_DIR) -> tuple[str, str]:
    """The script to install, as (head, body): plankey.sh writes `# authorized_keys: PATH` between them."""
    names = [h for h in dict.fromkeys(hosts) if h and "\n" not in h and "\r" not in h]
    head = (
        "#!/bin/sh\n"
        f"# wgmesh read-{interface}.sh: installed by `wgmesh plan-key` (root's, 0755). The forced command of the\n"
        "# read-only plan key: it serves wgmesh's read (and status) and nothing else; `wgmesh plan-key --remove`\n"
        "# takes it away.\n"
        f"# wgmesh-read-version: {script_version()}"
    )
    values = shell.assignments(
        {**shell.node_paths(interface, key_dir=key_dir), "HOSTS": "\n".join(names),
         "PLANREAD_VERSION": script_version(), "STOP_AFTER": shell.stop_after(INSTALLED_READ_DEADLINE)}
    )
    body = values + shell.source("lib.sh") + shell.source("plankey-read.sh") + shell.source("read.sh")
    return head, body


@dataclass(frozen=True)
class PublicKey:
    type: str
    data: str  # base64
    comment: str = ""

    @property
    def fingerprint(self) -> str:
        digest = hashlib.sha256(base64.b64decode(self.data)).digest()
        return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def parse_public_key(text: str) -> PublicKey:
    """An OpenSSH public key file (`TYPE BASE64 [comment]`, one key); raises ValueError saying what is wrong.
    Options before the type (an authorized_keys line) are refused: wgmesh writes the options itself."""
    if "PRIVATE KEY" in text:
        raise ValueError("this is a private key: give the public half (the .pub file); the private key goes to CI")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        raise ValueError("no public key in the file (`ssh-keygen -t ed25519 -f wgmesh-plan-key` makes one: "
                         "give wgmesh-plan-key.pub)")
    if len(lines) > 1:
        raise ValueError("more than one line: give the one public key of the plan key (the .pub file)")
    fields = lines[0].split()
    if len(fields) < 2 or fields[0] not in KEY_TYPES:
        raise ValueError(f"not an OpenSSH public key: expected `TYPE BASE64 [comment]` with TYPE one of "
                         f"{', '.join(KEY_TYPES)}")
    kind, data = fields[0], fields[1]
    try:
        blob = base64.b64decode(data, validate=True)
        (n,) = struct.unpack(">I", blob[:4])
        inner = blob[4 : 4 + n].decode("ascii")
    except (binascii.Error, ValueError, struct.error, UnicodeDecodeError):
        raise ValueError("the key data is not valid base64 of an SSH key") from None
    if inner != kind:
        raise ValueError(f"the key data is a {inner!r} key, not {kind!r}")
    return PublicKey(kind, data, " ".join(fields[2:]))


def plankey_script(
    interface: str,
    action: str,
    *,
    key: PublicKey | None = None,
    authorized_keys: str | None = None,
    hosts: Iterable[str] = (),
    key_dir: str = KEY_DIR,
) -> str:
    """scripts/plankey.sh for one node: install (needs `key`) or remove."""
    if action not in ("install", "remove"):
        raise ValueError(f"action must be install or remove, not {action!r}")
    if action == "install" and key is None:
        raise ValueError("install needs the public key")
    head, body = read_script(interface, hosts, key_dir=key_dir) if action == "install" else ("", "")
    paths = shell.node_paths(interface, key_dir=key_dir)
    return shell.script(
        "plankey",
        ACTION=action,
        IF=interface,
        KEY_DIR=paths["KEY_DIR"],
        SCRIPT=script_path(interface, key_dir),
        SUDOERS=sudoers_path(interface),
        LEGACY_SUDOERS=LEGACY_SUDOERS,
        AUTHORIZED_KEYS=authorized_keys or "",
        KEY_TYPE=key.type if key else "",
        KEY_DATA=key.data if key else "",
        READ_HEAD=head,
        READ_BODY=body,
    )


def check_authorized_keys(path: str) -> str:
    """--authorized-keys: a path on the node (absolute, or relative to the user's home); ValueError if not."""
    if not path or "\n" in path or "\r" in path or "\0" in path or not path.isprintable():
        raise ValueError("--authorized-keys must be a path on one line, e.g. /etc/ssh/authorized_keys/ubuntu")
    if len(path) > 1024:
        raise ValueError("--authorized-keys is too long")
    return path


@dataclass(frozen=True)
class PlanKeyReport:
    action: str  # installed | removed
    user: str
    via: str  # root | sudo | - (removed)
    authorized_keys: str


_REPORT = re.compile(r"(installed|removed) (\S+) (root|sudo|-) (.+)")


def parse_plankey_output(stdout: str) -> PlanKeyReport:
    for s in shell.sections(stdout):
        if s.name == "plankey":
            m = _REPORT.fullmatch(s.rest)
            if m:
                return PlanKeyReport(m.group(1), m.group(2), m.group(3), m.group(4))
    raise ValueError("the node did not report the plan key (no @@wgmesh:plankey line)")


# ------------------------------------------------------------------------------------------- read's section


def plan_key_state(body: str | None) -> str | None:
    """read.sh's `plankey` section -> core.plankey's state: installed, outdated, incomplete, absent;
    None when the section is missing (an older read script)."""
    if body is None:
        return None
    script = None
    key = False
    for line in body.splitlines():
        word, _, rest = line.strip().partition(" ")
        if word == "script":
            script = rest.strip()
        elif word == "key":
            key = True
    installed = script not in (None, "", "none")
    if not installed and not key:
        return "absent"
    if installed and key:
        return "installed" if script == script_version() else "outdated"
    return "incomplete"


def served_version(found: Iterable[shell.Section]) -> str | None:
    """The version of the installed read script that produced this output, or None (wgmesh's own script)."""
    served = _served(found)
    return served[0] if served else None


def served_interface(found: Iterable[shell.Section]) -> str | None:
    """The interface the installed read script serves (None: wgmesh's own script, or one that does not say)."""
    served = _served(found)
    return served[1] if served and len(served) > 1 else None


def _served(found: Iterable[shell.Section]) -> list[str] | None:
    for s in found:
        if s.name == "served":
            return s.rest.split() or [""]
    return None
