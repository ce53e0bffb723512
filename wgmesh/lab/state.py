"""The lab's state: DIR/.lab/state.json and /run/wgmesh-lab/ID/state.json (the runtime copy, gone after a
reboot of the machine), written atomically; and the lock under which one lab operation at a time claims an id."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from wgmesh.lab.hosts import RUN_ROOT, Lab, LabError, lab_from_json, lab_to_json, runtime_dir, state_path


@contextlib.contextmanager
def id_lock() -> Iterator[None]:
    """One lab operation at a time claims an id (other labs may be created by other processes)."""
    RUN_ROOT.mkdir(parents=True, exist_ok=True)
    fd = os.open(RUN_ROOT, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def write_atomic(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    tmp.chmod(mode)
    os.replace(tmp, path)


def save(lab: Lab) -> None:
    text = lab_to_json(lab)
    write_atomic(lab.runtime / "state.json", text)
    write_atomic(lab.state_path, text)


def load(directory: Path) -> Lab:
    """The lab whose mesh repo is `directory`; LabError if there is none."""
    directory = Path(directory).resolve()
    try:
        return lab_from_json(state_path(directory).read_text())
    except FileNotFoundError:
        raise LabError(f"no lab in {directory} (start one with `wgmesh lab up --dir {directory}`)") from None
    except (ValueError, KeyError, TypeError) as e:
        raise LabError(f"{state_path(directory)}: unreadable lab state ({e})") from None


def runtime_state(lab_id: int) -> Lab | None:
    """The lab that the runtime state of id `lab_id` records, or None (none, or unreadable)."""
    try:
        return lab_from_json((runtime_dir(lab_id) / "state.json").read_text())
    except (OSError, ValueError, KeyError, TypeError, LabError):
        return None


def runtime_owner(lab_id: int) -> Path | None:
    """The mesh repo folder of the lab that holds this id now, or None."""
    lab = runtime_state(lab_id)
    return lab.dir if lab else None
