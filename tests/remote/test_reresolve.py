"""scripts/reresolve.sh, the node's re-resolution of endpoint names, under dash and busybox with stub `wg` and
`getent` (tests/remote/stubs.py): only peers with a name, a stale handshake and a moved address are set again."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from remote.stubs import SHELLS, Stubs, answering, calls

from wgmesh.core.steps import Step, StepKind
from wgmesh.remote import shell
from wgmesh.remote.apply import reresolve_script, step_call

A = "A" * 43 + "="  # azure: a name, its handshake stale
B = "B" * 43 + "="  # home: a name, its handshake fresh
C = "C" * 43 + "="  # gcp: a literal endpoint
D = "D" * 43 + "="  # gone: a name that does not resolve
E = "E" * 43 + "="  # never: a name, never a handshake, its address unchanged

CONF = f"""[Interface]
ListenPort = 51820
PostUp = wg set %i private-key /etc/wireguard/%i.key

# azure
[Peer]
PublicKey = {A}
AllowedIPs = 10.0.0.2/32
Endpoint = azure.example.com:51820

# home
[Peer]
PublicKey = {B}
AllowedIPs = 10.0.0.5/32
Endpoint = home.example.net:51999

# gcp
[Peer]
PublicKey={C}
AllowedIPs = 10.0.0.3/32
Endpoint = 198.51.100.3:51820

# gone
[Peer]
PublicKey = {D}
AllowedIPs = 10.0.0.6/32
Endpoint = gone.example.com:51820

# never
[Peer]
PublicKey = {E}
AllowedIPs = 10.0.0.7/32
Endpoint = never.example.com:51820  # a comment
"""


def _ahosts(name: str, *addresses: str) -> str:
    """What `getent ahosts NAME` prints (tests/fixtures/live/getent_dual.txt): each address three times, in the
    resolver's order."""
    lines = []
    for i, a in enumerate(addresses):
        lines += [f"{a:<15} STREAM {name if i == 0 else ''}", f"{a:<15} DGRAM  ", f"{a:<15} RAW    "]
    return "\n".join(lines) + "\n"


def _node(tmp_path: Path, shell_name: str) -> tuple[Stubs, Path]:
    stubs = Stubs(tmp_path, shell_name)
    (tmp_path / "wg0.conf").write_text(CONF)
    now = int(time.time())
    handshakes = f"{A}\t{now - 200}\n{B}\t{now - 10}\n{C}\t{now - 500}\n{D}\t{now - 900}\n{E}\t0\n"
    endpoints = (f"{A}\t203.0.113.2:51820\n{B}\t198.51.100.50:51999\n{C}\t198.51.100.3:51820\n"
                 f"{D}\t203.0.113.6:51820\n{E}\t203.0.113.7:51820\n")
    answering(stubs, "wg", {
        "show wg0 latest-handshakes": handshakes,
        "show wg0 endpoints": endpoints,
        "show wg0 public-key": ("", 1),  # the loop ends at once: no interface
        f"set wg0 peer {A} endpoint 203.0.113.99:51820": "",
    })
    answering(stubs, "getent", {
        "ahosts azure.example.com": _ahosts("azure.example.com", "203.0.113.99"),
        "ahosts home.example.net": _ahosts("home.example.net", "198.51.100.77"),
        "ahosts gone.example.com": ("", 2),
        "ahosts never.example.com": _ahosts("never.example.com", "203.0.113.7"),
    }, otherwise=2)
    script = tmp_path / "wgmesh-reresolve-wg0.sh"
    head = shell.assignments({"IF": "wg0", "CONF": str(tmp_path / "wg0.conf")})
    script.write_text("#!/bin/sh\n" + head + shell.source("reresolve.sh"))
    script.chmod(0o755)
    return stubs, script


@pytest.mark.parametrize("shell_name", SHELLS)
def test_a_pass_sets_only_the_stale_peers_whose_name_moved(tmp_path: Path, shell_name: str) -> None:
    stubs, script = _node(tmp_path, shell_name)
    r = stubs.run(f"sh {script}\n")
    assert r.exit_status == 0, r.stderr
    sets = [c for c in calls(stubs, "wg") if c[0] == "set"]
    assert sets == [["set", "wg0", "peer", A, "endpoint", "203.0.113.99:51820"]]
    assert "azure.example.com is now 203.0.113.99:51820 (was 203.0.113.2:51820)" in r.stderr
    looked_up = [c[1] for c in calls(stubs, "getent")]
    assert "home.example.net" not in looked_up, "a fresh handshake: the endpoint works, no lookup"
    assert "198.51.100.3" not in looked_up, "a literal is never looked up"
    assert {"azure.example.com", "gone.example.com", "never.example.com"} <= set(looked_up)


@pytest.mark.parametrize("shell_name", SHELLS)
def test_a_pass_follows_the_resolver_and_keeps_an_address_the_name_has(tmp_path: Path, shell_name: str) -> None:
    """An IPv6-only node whose resolver gives IPv6 first (as getaddrinfo does there, and wg takes the first
    answer); `getent ahostsv4` would still give the IPv4 addresses, unreachable there. A peer at an address its
    name has stays; a peer elsewhere, or at an IPv4-mapped address (to which WireGuard sends nothing), gets the
    first."""
    stubs, script = _node(tmp_path, shell_name)
    now = int(time.time())
    answering(stubs, "wg", {
        "show wg0 latest-handshakes": f"{A}\t{now - 200}\n{D}\t{now - 900}\n{E}\t0\n",
        "show wg0 endpoints": f"{A}\t[fd50:4::12]:51820\n{D}\t[::ffff:10.250.4.6]:51820\n{E}\t[fd50:4::99]:51820\n",
        f"set wg0 peer {E} endpoint [fd50:4::17]:51820": "",
        f"set wg0 peer {D} endpoint [fd50:4::6]:51820": "",
    })
    answering(stubs, "getent", {
        "ahosts azure.example.com": _ahosts("azure.example.com", "fd50:4::12", "10.250.4.12"),
        "ahostsv4 azure.example.com": _ahosts("azure.example.com", "10.250.4.12"),
        "ahosts gone.example.com": _ahosts("gone.example.com", "fd50:4::6", "10.250.4.6"),
        "ahostsv4 gone.example.com": _ahosts("gone.example.com", "10.250.4.6"),
        "ahosts never.example.com": _ahosts("never.example.com", "fd50:4::17", "10.250.4.17"),
        "ahostsv4 never.example.com": _ahosts("never.example.com", "10.250.4.17"),
    }, otherwise=2)
    r = stubs.run(f"sh {script}\n")
    assert r.exit_status == 0, r.stderr
    sets = [c for c in calls(stubs, "wg") if c[0] == "set"]
    assert sorted(sets) == sorted([["set", "wg0", "peer", E, "endpoint", "[fd50:4::17]:51820"],
                                   ["set", "wg0", "peer", D, "endpoint", "[fd50:4::6]:51820"]])
    assert "never.example.com is now [fd50:4::17]:51820 (was [fd50:4::99]:51820)" in r.stderr


@pytest.mark.parametrize("shell_name", SHELLS)
def test_without_an_interface_a_pass_does_nothing(tmp_path: Path, shell_name: str) -> None:
    stubs, script = _node(tmp_path, shell_name)
    answering(stubs, "wg", {"show wg0 latest-handshakes": ("", 1)})
    r = stubs.run(f"sh {script} pass\n")
    assert r.exit_status == 0 and calls(stubs, "getent") == []


@pytest.mark.parametrize("shell_name", SHELLS)
def test_start_and_stop_the_loop_where_no_systemd_runs(tmp_path: Path, shell_name: str) -> None:
    stubs, script = _node(tmp_path, shell_name)
    pidfile = tmp_path / "rr.pid"
    env = {"RERESOLVE_PIDFILE": str(pidfile)}
    r = stubs.run(f"sh {script} start\n", env=env)
    assert r.exit_status == 0, r.stderr
    assert pidfile.read_text().strip().isdigit()
    r = stubs.run(f"sh {script} stop\n", env=env)
    assert r.exit_status == 0 and not pidfile.exists()
    assert stubs.run(f"sh {script} bogus\n").exit_status == 2


def test_apply_installs_the_script_with_its_interface_and_a_version() -> None:
    text = reresolve_script("wg7")
    lines = text.splitlines()
    assert lines[0] == "#!/bin/sh" and lines[1].startswith("# wgmesh-reresolve-version: ")
    assert lines[2:4] == ["IF=wg7", "CONF=/etc/wireguard/wg7.conf"]
    call = step_call(Step(StepKind.INSTALL_RERESOLVE), "wg7")
    assert call.startswith("wgm_install_reresolve <<'__WGMESH_RERESOLVE__'\n#!/bin/sh\n")
    assert step_call(Step(StepKind.REMOVE_RERESOLVE), "wg7") == "wgm_remove_reresolve"


@pytest.mark.parametrize("shell_name", SHELLS)
def test_apply_sh_installs_starts_and_removes_it(tmp_path: Path, shell_name: str) -> None:
    """wgm_install_reresolve (no systemd here: it starts the loop) records its undo; wgm_remove_reresolve stops
    the loop and removes the script."""
    stubs, _ = _node(tmp_path, shell_name)
    keydir = tmp_path / "etc"
    keydir.mkdir()
    values = {"IF": "wg0", "KEY_DIR": str(keydir), "CONF": str(tmp_path / "wg0.conf")}
    installed = keydir / "wgmesh-reresolve-wg0.sh"
    text = reresolve_script("wg0").replace("CONF=/etc/wireguard/wg0.conf", f"CONF={tmp_path / 'wg0.conf'}")
    env = {"RERESOLVE_PIDFILE": str(tmp_path / "rr.pid")}
    prelude = shell.assignments(values) + shell.source("lib.sh") + shell.source("apply.sh")
    r = stubs.run(prelude + f"wgm_install_reresolve {shell.heredoc('__RR__', text)}\nprintf '%s' \"$wgm_undo\"\n",
                  env=env)
    assert r.exit_status == 0, r.stderr
    # (the harness puts its own folder where lib.sh's system folders are: in the script's PATH line too)
    assert installed.read_text() == text.replace(shell.SYSTEM_PATH, str(stubs.base))
    assert installed.stat().st_mode & 0o777 == 0o755
    assert r.stdout.startswith("wgm_remove_reresolve"), "a new install is undone by removing it"
    assert (tmp_path / "rr.pid").exists(), "no systemd: the loop was started"
    r = stubs.run(prelude + "wgm_remove_reresolve\n", env=env)
    assert r.exit_status == 0, r.stderr
    assert not installed.exists() and not (tmp_path / "rr.pid").exists()
