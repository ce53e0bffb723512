"""Which controller files mesh.yaml may name. A pull-request author controls mesh.yaml and the plan job runs
with credentials, so no value may choose an arbitrary file to read:

- `ssh.known_hosts` is a relative path inside the mesh repo (mesh.yaml's folder): not absolute, not `~`, no `..`
  out of it, and not a symlink that leads out of it.
- `ssh.identity_file` may be `~/...`, absolute or relative (keys live in ~/.ssh), but never under /proc, /sys or
  /dev, lexically or through a symlink.

Each check raises ValueError with the fix; the messages name the path, never what the file holds.
"""

from __future__ import annotations

import os
from pathlib import Path

FORBIDDEN_ROOTS = ("/proc", "/sys", "/dev")


def _plain_path(text: str, example: str) -> None:
    if not text.strip() or "\n" in text or "\r" in text or "\x00" in text:
        raise ValueError(f"must be a file path, e.g. {example}")


def known_hosts_path(text: str, directory: Path) -> Path:
    """The known_hosts file named by `text`, inside `directory`. ValueError unless it stays inside."""
    _plain_path(text, "known_hosts")
    fix = "write a path relative to mesh.yaml's folder, e.g. known_hosts"
    if text.startswith("~") or os.path.isabs(text):
        raise ValueError(f"must be inside the mesh repo: {fix} (not an absolute or ~ path)")
    rel = os.path.normpath(text)
    if rel == os.curdir or rel == os.pardir or rel.startswith(os.pardir + os.sep):
        raise ValueError(f"must be a file inside the mesh repo: {fix} ('..' may not leave it)")
    path = directory / rel
    real_dir = os.path.realpath(directory)
    real = os.path.realpath(path)
    if os.path.commonpath([real_dir, real]) != real_dir or real == real_dir:
        raise ValueError(f"leads out of the mesh repo through a symlink: {fix}, a regular file")
    return path


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root + "/")


def identity_file_path(text: str, directory: Path) -> Path:
    """The SSH private key file named by `text` (`~` expanded, relative to `directory`)."""
    _plain_path(text, "~/.ssh/id_ed25519")
    expanded = os.path.expanduser(text)
    path = Path(os.path.normpath(expanded if os.path.isabs(expanded) else directory / expanded))
    for candidate in (str(path), os.path.realpath(path)):
        if any(_under(candidate, root) for root in FORBIDDEN_ROOTS):
            # (a relative name is taken from mesh.yaml's folder: /dev when mesh.yaml was given as /dev/stdin)
            where = "" if os.path.isabs(expanded) else f" ({text} is taken from mesh.yaml's folder, {directory})"
            raise ValueError(f"must not be a file under /proc, /sys or /dev{where}: use your SSH key, e.g. "
                             "~/.ssh/id_ed25519")
    return path
