"""The lab's machine-wide setup in wgmesh/lab/system.py that needs no root: the kernel's neighbour table
thresholds raised for the labs up and put back by the last `down` (on a fake /proc/sys and RUN_ROOT)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from wgmesh.lab import hosts, neigh, state, system

T1, T2, T3 = neigh.KEYS


@pytest.fixture
def machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fake RUN_ROOT (returned) and /proc/sys with the kernel's default thresholds."""
    run_root, proc_sys = tmp_path / "run", tmp_path / "proc-sys"
    for module in (hosts, state, system):
        monkeypatch.setattr(module, "RUN_ROOT", run_root)
    monkeypatch.setattr(system, "PROC_SYS", proc_sys)
    run_root.mkdir()
    for key, value in ((T1, 128), (T2, 512), (T3, 1024)):
        path = proc_sys / neigh.sysctl_path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"{value}\n")
    return run_root


def _values() -> list[int]:
    return [int((system.PROC_SYS / neigh.sysctl_path(k)).read_text()) for k in neigh.KEYS]


def _lab_up(lab_id: int, nodes: int) -> str | None:
    """What `up` does under the lock once the lab's runtime state is saved."""
    lab = hosts.make_lab(lab_id, Path(f"/srv/lab{lab_id}"), nodes=nodes)
    lab.runtime.mkdir()
    (lab.runtime / "state.json").write_text(hosts.lab_to_json(lab))
    with state.id_lock():
        return system._raise_neigh()


def _lab_down(run_root: Path, lab_id: int) -> None:
    shutil.rmtree(run_root / str(lab_id))
    system._restore_neigh()


def test_small_labs_change_nothing(machine: Path) -> None:
    assert _lab_up(1, 4) is None
    assert _lab_up(2, 16) is None
    assert _values() == [128, 512, 1024]
    assert not (machine / neigh.RECORD_NAME).exists()
    _lab_down(machine, 1)
    _lab_down(machine, 2)
    assert _values() == [128, 512, 1024]


def test_raised_for_every_lab_up_and_put_back_by_the_last_down(machine: Path) -> None:
    assert _lab_up(1, 4) is None
    line = _lab_up(2, 24)  # 28 hosts up
    assert line is not None and "gc_thresh3 1024 -> 1682) for 28 lab hosts" in line
    assert _values() == [420, 841, 1682]
    line = _lab_up(3, 48)  # 76 hosts: raised again, the originals recorded once
    assert line is not None and "gc_thresh3 1682 -> 11858" in line
    record = neigh.record_from_json((machine / neigh.RECORD_NAME).read_text())
    assert record is not None and record.original == {T1: 128, T2: 512, T3: 1024}
    _lab_down(machine, 3)
    _lab_down(machine, 1)
    assert _values() == [2964, 5929, 11858]  # lab 2 is still up: never lowered under what it needs
    assert _lab_up(4, 4) is None  # big enough already
    _lab_down(machine, 2)
    _lab_down(machine, 4)
    assert _values() == [128, 512, 1024]
    assert not (machine / neigh.RECORD_NAME).exists()


def test_the_last_down_leaves_a_value_someone_else_changed(machine: Path) -> None:
    _lab_up(1, 30)
    (system.PROC_SYS / neigh.sysctl_path(T3)).write_text("65536\n")
    _lab_down(machine, 1)
    assert _values() == [128, 512, 65536]
    assert not (machine / neigh.RECORD_NAME).exists()


def test_an_unreadable_proc_sys_is_a_note_not_a_failure(machine: Path) -> None:
    shutil.rmtree(system.PROC_SYS)
    line = _lab_up(1, 48)
    assert line is not None and line.startswith("Could not raise the kernel's neighbour table")
