"""Logins of `wgmesh lab` (wgmesh/lab/users.py): what `down` may delete, and what `up` refuses to take over.
The real useradd/userdel/visudo runs are in tests/e2e/test_lab.py."""

from __future__ import annotations

import pwd
from pathlib import Path

import pytest

from wgmesh.lab import hosts, texts, users
from wgmesh.lab.hosts import LabInUse


def _entry(name: str, gecos: str) -> pwd.struct_passwd:
    return pwd.struct_passwd((name, "x", 1234, 1234, gecos, "/run/wgmesh-lab/3/home", "/bin/bash"))


@pytest.fixture
def machine(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict:
    """A fake machine: its users, its sudoers.d in tmp_path, and the commands that ran."""
    state: dict = {"users": {}, "ran": []}
    monkeypatch.setattr(users, "passwd_entry", lambda name: state["users"].get(name))
    monkeypatch.setattr(users, "sudoers_path", lambda lab_id: tmp_path / f"wgmesh-lab{lab_id}")

    def run(argv: list[str], **_kw: object) -> object:
        state["ran"].append(argv)
        state["users"].pop(argv[-1], None)
        return type("R", (), {"returncode": 0, "stdout": "", "stderr": ""})()

    monkeypatch.setattr(users, "run", run)
    state["dir"] = tmp_path
    return state


def test_down_deletes_the_recorded_user_and_file_when_they_carry_the_labs_mark(machine: dict) -> None:
    machine["users"]["wgmlab3"] = _entry("wgmlab3", "wgmesh lab 3")
    sudoers = machine["dir"] / "wgmesh-lab3"
    sudoers.write_text(texts.render_sudoers(hosts.make_lab(3, Path("/x"))))
    assert users.remove(3, "wgmlab3", sudoers) is True
    assert machine["ran"] == [["userdel", "wgmlab3"]]
    assert not sudoers.exists()
    assert users.remove(3, "wgmlab3", sudoers) is False, "idempotent"


@pytest.mark.parametrize(
    ("name", "gecos"),
    [("wgmlab3", "Somebody Else"), ("wgmlab3", "wgmesh lab 30"), ("root", "wgmesh lab 3")],
)
def test_down_never_deletes_a_user_without_the_labs_mark(machine: dict, name: str, gecos: str) -> None:
    machine["users"][name] = _entry(name, gecos)
    assert users.remove(3, name, None) is False
    assert machine["ran"] == []


def test_down_never_deletes_a_sudoers_file_it_did_not_write(machine: dict) -> None:
    other = machine["dir"] / "wgmesh-lab3"
    other.write_text("admin ALL=(ALL) ALL\n")
    assert users.remove(3, None, other) is False
    assert other.exists()
    elsewhere = machine["dir"] / "sudoers"
    elsewhere.write_text("# wgmesh lab 3: ...\n")
    assert users.remove(3, None, elsewhere) is False
    assert elsewhere.exists()


def test_up_refuses_a_user_or_file_no_lab_recorded(machine: dict) -> None:
    lab = hosts.make_lab(3, Path("/x"), nodes=1)
    users.claim(lab)  # neither exists: free
    machine["users"]["wgmlab3"] = _entry("wgmlab3", "wgmesh lab 3")
    (machine["dir"] / "wgmesh-lab3").write_text("")
    with pytest.raises(LabInUse, match=r"user wgmlab3 and .*wgmesh-lab3 already on this machine.*userdel wgmlab3"):
        users.claim(lab)
    users.claim(hosts.make_lab(3, Path("/x"), nodes=1, root_login=True))  # root-login labs add no user


def test_down_removes_the_plan_key_sudoers_files_of_the_labs_user_only(tmp_path: Path) -> None:
    """`wgmesh plan-key` on lab hosts writes its sudoers file on the machine (sudoers.d is not namespaced): it goes
    with the lab's user; another user's file, and a file that is not the plan key's, stay."""
    from wgmesh.lab.users import remove_plan_key_sudoers
    from wgmesh.remote import shell

    script = shell.source("plankey.sh")
    assert "plankey_header='# wgmesh plan-key'" in script and ': the read-only plan key of %s runs' in script
    mine = tmp_path / "wgmesh-plan-wg0"
    mine.write_text("# wgmesh plan-key: the read-only plan key of wgmlab7 runs wgmesh's read script as root\n")
    other = tmp_path / "wgmesh-plan-wg1"
    other.write_text("# wgmesh plan-key: the read-only plan key of ubuntu runs wgmesh's read script as root\n")
    unrelated = tmp_path / "wgmesh-plan-notes"
    unrelated.write_text("wgmlab7 ALL=(ALL) ALL\n")
    assert remove_plan_key_sudoers("wgmlab7", tmp_path) == [mine]
    assert not mine.exists() and other.exists() and unrelated.exists()
