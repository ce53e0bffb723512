"""The kernel's neighbour table and the labs up (wgmesh/lab/neigh.py): what H hosts need, when to raise, what
the last `down` puts back."""

from __future__ import annotations

import pytest

from wgmesh.lab import neigh
from wgmesh.lab.neigh import Record

T1, T2, T3 = neigh.KEYS
DEFAULTS = {T1: 128, T2: 512, T3: 1024}


def test_need_is_two_times_h_plus_one_squared() -> None:
    assert neigh.need(48) == 4802
    assert neigh.needed(48) == {T1: 1200, T2: 2401, T3: 4802}
    assert neigh.needed(24) == {T1: 312, T2: 625, T3: 1250}


@pytest.mark.parametrize("hosts", [0, 1, 4, 16, 21])
def test_small_labs_leave_the_default_table_alone(hosts: int) -> None:
    assert neigh.to_raise(DEFAULTS, hosts) == {}


def test_the_default_table_is_too_small_from_22_hosts() -> None:
    assert neigh.to_raise(DEFAULTS, 22) == {T1: 264, T2: 529, T3: 1058}
    assert neigh.to_raise(DEFAULTS, 48) == {T1: 1200, T2: 2401, T3: 4802}


def test_only_ever_raises() -> None:
    big = {T1: 2000, T2: 512, T3: 100000}
    assert neigh.to_raise(big, 48) == {T2: 2401}  # gc_thresh1 and gc_thresh3 are big enough already
    assert neigh.to_raise({T1: 4096, T2: 8192, T3: 16384}, 64) == {}


def test_gc_thresh1_alone_is_not_too_small() -> None:
    assert neigh.to_raise({T1: 1, T2: 2401, T3: 4802}, 48) == {}


def test_the_first_raise_records_the_machines_values_and_later_ones_keep_them() -> None:
    first = neigh.record_after_raise(None, DEFAULTS, {T2: 625, T3: 1250})
    assert first == Record(original=DEFAULTS, set={T2: 625, T3: 1250})
    second = neigh.record_after_raise(first, {T1: 128, T2: 625, T3: 1250}, {T1: 1200, T2: 2401, T3: 4802})
    assert second == Record(original=DEFAULTS, set={T1: 1200, T2: 2401, T3: 4802})


def test_restore_puts_back_what_the_labs_set() -> None:
    record = Record(original=DEFAULTS, set={T1: 1200, T2: 2401, T3: 4802})
    assert neigh.to_restore(record, {T1: 1200, T2: 2401, T3: 4802}) == DEFAULTS


def test_restore_leaves_what_someone_else_changed_and_what_the_labs_never_set() -> None:
    record = Record(original=DEFAULTS, set={T2: 2401, T3: 4802})
    # T3 changed by someone else since; T1 never set by a lab
    assert neigh.to_restore(record, {T1: 999, T2: 2401, T3: 8000}) == {T2: 512}
    assert neigh.to_restore(record, DEFAULTS) == {}


def test_record_round_trip_and_unreadable_records() -> None:
    record = Record(original=DEFAULTS, set={T3: 4802})
    assert neigh.record_from_json(neigh.record_to_json(record)) == record
    for bad in ("", "[]", "{}", '{"original": {"net.ipv4.neigh.default.gc_thresh3": "x"}}'):
        assert neigh.record_from_json(bad) is None
    # keys that are not the thresholds are ignored
    text = '{"original": {"net.ipv4.ip_forward": 1, "net.ipv4.neigh.default.gc_thresh3": 1024}}'
    assert neigh.record_from_json(text) == Record(original={T3: 1024})


def test_lab_ids_are_the_numbered_folders() -> None:
    assert neigh.lab_ids(["42", "neigh.json", "3", "x1", "١"]) == [3, 42]


def test_sysctl_path() -> None:
    assert neigh.sysctl_path(T3) == "net/ipv4/neigh/default/gc_thresh3"


def test_the_line_up_prints() -> None:
    line = neigh.raised_message(DEFAULTS, {T1: 1200, T2: 2401, T3: 4802}, 48)
    assert line == (
        "Raised the kernel's neighbour table (net.ipv4.neigh.default.gc_thresh1 128 -> 1200, gc_thresh2 512 -> "
        "2401, gc_thresh3 1024 -> 4802) for 48 lab hosts on this machine; the last `wgmesh lab down` puts it back"
    )
    assert neigh.raised_message(DEFAULTS, {T3: 4802}, 48).startswith(
        "Raised the kernel's neighbour table (net.ipv4.neigh.default.gc_thresh3 1024 -> 4802) for 48"
    )
