"""The enroll and rotate scripts (scripts/enroll.sh, scripts/rotate.sh) and the parser of their key reports.
The private key is made on the node and never leaves it."""

from __future__ import annotations

from dataclasses import dataclass

from wgmesh.core.model import KEY_DIR, RUN_DIR, validate_key
from wgmesh.remote import shell
from wgmesh.remote.transport import CommandResult

NOT_ENROLLED_EXIT = 3


MISMATCH_EXIT = 4


LOCK_EXIT = shell.LOCK_EXIT


DEFAULT_LOCK_TIMEOUT = shell.DEFAULT_LOCK_TIMEOUT


@dataclass(frozen=True)
class KeyReport:
    """What a key script printed: `created`, `existing` or `rotated`, the public key, the file's mode."""

    status: str
    public_key: str
    mode: str | None = None
    running: str | None = None  # enroll: the public key the interface runs with, when it is another one


def enroll_script(interface: str, *, key_dir: str = KEY_DIR) -> str:
    """Create IF.key on the node if it is absent; print its public key and the file's mode."""
    return shell.script("enroll", **shell.node_paths(interface, key_dir=key_dir))


def rotate_script(
    interface: str,
    expected_public_key: str,
    *,
    key_dir: str = KEY_DIR,
    run_dir: str = RUN_DIR,
    lock_timeout: int = DEFAULT_LOCK_TIMEOUT,
) -> str:
    """Replace IF.key with a new key if it still has `expected_public_key`; print the new public key."""
    if not validate_key(expected_public_key):
        raise ValueError("expected_public_key is not a WireGuard public key")
    return shell.script(
        "rotate",
        **shell.node_paths(interface, key_dir=key_dir),
        EXPECT=expected_public_key,
        WGM_LOCK=shell.lock_path(interface, run_dir),
        WGM_LOCK_TIMEOUT=int(lock_timeout),
    )


def parse_key_output(stdout: str) -> KeyReport:
    """The `key` section of a key script. ValueError when it is missing or malformed."""
    found = shell.sections(stdout)
    running = next((s.args[0] for s in found if s.name == "running" and len(s.args) == 1 and validate_key(s.args[0])),
                   None)
    for s in found:
        if s.name != "key":
            continue
        fields = s.args
        if len(fields) not in (2, 3) or fields[0] not in ("created", "existing", "rotated"):
            break
        if not validate_key(fields[1]):
            raise ValueError("the node printed something that is not a public key")
        mode = fields[2] if len(fields) == 3 else None
        return KeyReport(fields[0], fields[1], mode, running)
    raise ValueError("the node's answer has no public key line")


def node_failure(result: CommandResult) -> str:
    """One line saying why a key script failed on a node."""
    err = [ln.strip() for ln in result.stderr.splitlines() if ln.strip()]
    return err[-1] if err else result.status_text
