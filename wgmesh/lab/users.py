"""Logins of the lab's hosts: root's and the sudo user's homes and authorized_keys, the user itself and its
sudoers file. Users and /etc/sudoers.d are not namespaced: a cloud-like lab adds one user (`wgmlabID`, marked
`wgmesh lab ID` in its GECOS field) and one sudoers file to the machine, both recorded in the lab state
before they are made; `remove` deletes exactly those, by name, and only while they still carry the mark."""

from __future__ import annotations

import contextlib
import os
import pwd
from pathlib import Path

from wgmesh.lab.hosts import (
    SUDOERS_DIR,
    Lab,
    LabError,
    LabHost,
    LabInUse,
    lab_user,
    sudoers_path,
    user_comment,
)
from wgmesh.lab.procs import check, run
from wgmesh.lab.texts import render_root_authorized_keys, render_sudoers


def passwd_entry(name: str) -> pwd.struct_passwd | None:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        return None


def ours(lab_id: int, name: str) -> bool:
    """Whether user `name` exists and is the one a lab with this id made."""
    entry = passwd_entry(name)
    return entry is not None and name == lab_user(lab_id) and entry.pw_gecos == user_comment(lab_id)


def claim(lab: Lab) -> None:
    """LabInUse if the user or sudoers file of this lab id exists (no lab records them: a lab of this id
    that does was taken down before)."""
    if lab.root_login:
        return
    taken, fixes = [], []
    if passwd_entry(lab.ssh_user) is not None:
        taken.append(f"user {lab.ssh_user}")
        fixes.append(f"userdel {lab.ssh_user}")
    if sudoers_path(lab.id).exists():
        taken.append(str(sudoers_path(lab.id)))
        fixes.append(f"rm {sudoers_path(lab.id)}")
    if taken:
        raise LabInUse(
            f"lab id {lab.id}: {' and '.join(taken)} already on this machine, not made by a lab: "
            f"remove ({'; '.join(fixes)}) or pick another --id"
        )


def add(lab: Lab) -> None:
    """Create the sudo user (home: each host mounts its own at lab.home) and its sudoers file."""
    shell = "/bin/bash" if Path("/bin/bash").exists() else "/bin/sh"
    argv = ["useradd", "--comment", user_comment(lab.id), "--home-dir", str(lab.home), "--no-create-home"]
    argv += ["--shell", shell, "--user-group", "--no-log-init", "--password", "*", lab.ssh_user]
    # password "*": no password, yet not "locked" (sshd without PAM refuses keys of a locked account)
    check(argv, f"creating user {lab.ssh_user}")
    _write_sudoers(lab)


def _write_sudoers(lab: Lab) -> None:
    """Written next to its place under a name sudo skips (it has a '.'), checked by visudo, then renamed."""
    path = sudoers_path(lab.id)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o440)
        with os.fdopen(fd, "w") as f:
            f.write(render_sudoers(lab))
        os.chmod(tmp, 0o440)
        check(["visudo", "-c", "-q", "-f", str(tmp)], f"checking {path}")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def remove(lab_id: int, user: str | None, sudoers: Path | None) -> bool:
    """Delete the recorded sudoers file and user (no-op for what is gone); whether there was any. Idempotent."""
    found = False
    if sudoers is not None and sudoers == sudoers_path(lab_id):
        with contextlib.suppress(FileNotFoundError):
            if sudoers.read_text().startswith(f"# {user_comment(lab_id)}:"):
                sudoers.unlink()
                found = True
    if user is not None and ours(lab_id, user):
        r = run(["userdel", user])
        if r.returncode != 0 and passwd_entry(user) is not None:
            detail = (r.stderr.strip() or r.stdout.strip()).splitlines()
            raise LabError(f"removing user {user}: {detail[-1] if detail else f'exit {r.returncode}'}")
        found = True
        # what sudo may have left for the user (it keeps these by name)
        for leftover in (Path("/run/sudo/ts") / user, Path("/var/lib/sudo/lectured") / user):
            leftover.unlink(missing_ok=True)
    if user is not None:
        remove_plan_key_sudoers(user)
    return found


# the first line of the sudoers file `wgmesh plan-key` writes for a login user (remote/scripts/plankey.sh)
PLAN_KEY_SUDOERS_HEAD = "# wgmesh plan-key: the read-only plan key of {user} "


def remove_plan_key_sudoers(user: str, folder: Path = SUDOERS_DIR) -> list[Path]:
    """The plan key's sudoers files for the lab's user: /etc/sudoers.d is the machine's, not a lab host's, so a
    `wgmesh plan-key` on lab hosts writes there, and they go with the lab's user. Returns those removed."""
    head = PLAN_KEY_SUDOERS_HEAD.format(user=user)
    gone = []
    for path in sorted(folder.glob("wgmesh-plan*")):
        with contextlib.suppress(OSError):
            with path.open() as f:
                first = f.readline()
            if first.startswith(head):
                path.unlink()
                gone.append(path)
    return gone


def _secret_file(path: Path, text: str, uid: int, gid: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chown(path, uid, gid)
    os.chmod(path, 0o600)


def _home(home: Path, mode: int, uid: int, gid: int, authorized_keys: str) -> None:
    """A home with .ssh/authorized_keys, owned and moded as sshd's StrictModes wants."""
    home.mkdir(mode=mode)
    (home / ".ssh").mkdir(mode=0o700)
    _secret_file(home / ".ssh" / "authorized_keys", authorized_keys, uid, gid)
    for d in (home / ".ssh", home):
        os.chown(d, uid, gid)
    os.chmod(home, mode)


def make_homes(lab: Lab, host: LabHost, public_key: str) -> None:
    """The host's own fresh root home (the machine's /root/.bashrc must not slow down or change the hosts)
    and, in a cloud-like lab, the user's home; both with the lab's key."""
    hd = lab.host_dir(host)
    _home(hd / "root", 0o700, 0, 0, render_root_authorized_keys(lab, public_key))
    if not lab.root_login:
        entry = passwd_entry(lab.ssh_user)
        if entry is None:
            raise LabError(f"user {lab.ssh_user} is gone")
        _home(hd / "home", 0o750, entry.pw_uid, entry.pw_gid, public_key.strip() + "\n")
