"""The enroll and rotate scripts, and the parser of their key reports. The private key is made on the node and never leaves it."""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from wgmesh import config
from wgmesh.core.model import KEY_DIR
from wgmesh.remote.transport import CommandResult

MARK = "@@wgmesh-key:"


RUN_DIR = "/run/wireguard"


NOT_ENROLLED_EXIT = 3


MISMATCH_EXIT = 4


LOCK_EXIT = 75


DEFAULT_LOCK_TIMEOUT = 60


@dataclass(frozen=True)
class KeyReport:
    """What a key script printed: `created`, `existing` or `rotated`, the public key, the file's mode."""

    status: str
    public_key: str
    mode: str | None = None


def _prelude(interface: str, key_dir: str) -> str:
    key = f"{key_dir}/{interface}.key"
    return (
        "set -eu\n"
        "umask 077\n"
        "LC_ALL=C; export LC_ALL\n"
        'PATH="$PATH:/usr/local/sbin:/usr/local/bin:/usr/sbin:/sbin"; export PATH\n'
        f"KEY={shlex.quote(key)}\n"
        f"DIR={shlex.quote(key_dir)}\n"
        'TMP="$KEY.wgmesh-tmp.$$"\n'
        "if ! command -v wg >/dev/null 2>&1; then\n"
        "  echo 'wg is not installed on this node: apt-get install wireguard-tools' >&2\n"
        f"  exit {NOT_ENROLLED_EXIT}\n"
        "fi\n"
        "trap 'rm -f \"$TMP\"' EXIT\n"
    )


def enroll_script(interface: str, *, key_dir: str = KEY_DIR) -> str:
    """Create IF.key on the node if it is absent; print its public key and the file's mode."""
    return _prelude(interface, key_dir) + (
        'mkdir -p "$DIR"\n'
        "status=existing\n"
        'if [ ! -e "$KEY" ]; then\n'
        '  wg genkey > "$TMP"\n'
        # ln fails if the key appeared in the meantime: an existing key is never replaced
        '  if ln "$TMP" "$KEY" 2>/dev/null; then status=created; fi\n'
        '  rm -f "$TMP"\n'
        "fi\n"
        'if ! pub=$(wg pubkey < "$KEY" 2>/dev/null); then\n'
        '  echo "$KEY exists but does not hold a WireGuard private key: move it away and enroll again" >&2\n'
        f"  exit {NOT_ENROLLED_EXIT}\n"
        "fi\n"
        'mode=$(stat -c %a "$KEY" 2>/dev/null || echo unknown)\n'
        f'echo "{MARK}$status $pub $mode"\n'
    )


def rotate_script(
    interface: str,
    expected_public_key: str,
    *,
    key_dir: str = KEY_DIR,
    run_dir: str = RUN_DIR,
    lock_timeout: int = DEFAULT_LOCK_TIMEOUT,
) -> str:
    """Replace IF.key with a new key if it still has `expected_public_key`; print the new public key."""
    if not config.validate_key(expected_public_key):
        raise ValueError("expected_public_key is not a WireGuard public key")
    lock = f"{run_dir}/wgmesh-{interface}.lock"
    return _prelude(interface, key_dir) + (
        f"EXPECT={shlex.quote(expected_public_key)}\n"
        f"LOCK={shlex.quote(lock)}\n"
        f"mkdir -p {shlex.quote(run_dir)}\n"
        'exec 9>"$LOCK"\n'
        f"if ! flock -w {int(lock_timeout)} 9; then\n"
        f'  echo "another wgmesh apply or rotate holds $LOCK on this node (waited {int(lock_timeout)}s)" >&2\n'
        f"  exit {LOCK_EXIT}\n"
        "fi\n"
        'if [ ! -f "$KEY" ]; then\n'
        '  echo "no key file $KEY on the node: enroll it first" >&2\n'
        f"  exit {NOT_ENROLLED_EXIT}\n"
        "fi\n"
        'if ! cur=$(wg pubkey < "$KEY" 2>/dev/null); then\n'
        '  echo "$KEY does not hold a WireGuard private key" >&2\n'
        f"  exit {NOT_ENROLLED_EXIT}\n"
        "fi\n"
        'if [ "$cur" != "$EXPECT" ]; then\n'
        '  echo "the key in $KEY has public key $cur, not the $EXPECT that mesh.yaml records: '
        'run wgmesh enroll to record it first" >&2\n'
        f"  exit {MISMATCH_EXIT}\n"
        "fi\n"
        'rm -f "$TMP"\n'
        'wg genkey > "$TMP"\n'
        'new=$(wg pubkey < "$TMP")\n'
        'mv -f "$TMP" "$KEY"\n'
        f'echo "{MARK}rotated $new"\n'
    )


def parse_key_output(stdout: str) -> KeyReport:
    """The marked line of a key script. ValueError when it is missing or malformed."""
    for line in stdout.splitlines():
        if not line.startswith(MARK):
            continue
        fields = line[len(MARK) :].split()
        if len(fields) not in (2, 3) or fields[0] not in ("created", "existing", "rotated"):
            break
        if not config.validate_key(fields[1]):
            raise ValueError("the node printed something that is not a public key")
        mode = fields[2] if len(fields) == 3 else None
        return KeyReport(fields[0], fields[1], mode)
    raise ValueError("the node's answer has no public key line")


def node_failure(result: CommandResult) -> str:
    """One line saying why a key script failed on a node."""
    err = [ln.strip() for ln in result.stderr.splitlines() if ln.strip()]
    return err[-1] if err else f"exit status {result.exit_status}"
