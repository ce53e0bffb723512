"""Processes of `wgmesh lab` (wgmesh/lab/procs.py): /proc parsing, our processes by PID and start time."""

from __future__ import annotations

import os
import subprocess

import pytest

from wgmesh.lab import procs
from wgmesh.lab.hosts import LabError, Proc


def test_parse_stat_start_survives_odd_process_names() -> None:
    stat = "4242 (a) b (c) S 1 4242 4242 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 98765 1 2 3"
    assert procs.parse_stat_start(stat) == ("S", 98765)


def test_a_process_is_its_pid_and_start_time() -> None:
    me = procs.proc_of(os.getpid())
    assert me is not None and procs.alive(me)
    assert not procs.alive(Proc(me.pid, me.start + 1)), "a reused PID is not ours"


def test_kill_all_stops_exactly_the_given_processes() -> None:
    child = subprocess.Popen(["sleep", "60"])
    other = subprocess.Popen(["sleep", "60"])
    try:
        proc = procs.proc_of(child.pid)
        assert proc is not None
        procs.kill_all([proc, Proc(other.pid, 1)])  # a wrong start time: not ours, left alone
        assert child.wait(timeout=5) is not None
        assert other.poll() is None
    finally:
        other.kill()
        other.wait()


def test_check_names_the_step_and_the_last_line_of_output() -> None:
    with pytest.raises(LabError, match=r"^doing it: two$"):
        procs.check(["sh", "-c", "echo one >&2; echo two >&2; exit 3"], "doing it")
    with pytest.raises(LabError, match="not found"):
        procs.run(["wgmesh-lab-no-such-command"])
    assert procs.env()["PATH"].startswith("/usr/local/sbin:")


def test_a_command_that_does_not_answer_is_named_by_its_label() -> None:
    """Review B5: a boot step that hung was named by its namespace wrapper (`mount : no answer after 60 s`)."""
    with pytest.raises(LabError, match=r"^wg-quick up wg0: no answer after 0\.2 s$"):
        procs.run(["sleep", "5"], timeout=0.2, label="wg-quick up wg0")
    with pytest.raises(LabError, match=r"^sleep 5: no answer after 0\.2 s$"):
        procs.run(["sleep", "5"], timeout=0.2)
