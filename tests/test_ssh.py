from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import paramiko
import pytest

from wgmesh.core.model import Ssh
from wgmesh.remote.ssh import SshTransport, _parse_jump, fingerprint
from wgmesh.remote.transport import SshError


def test_fingerprint_matches_ssh_keygen(tmp_path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "k")], check=True)
    out = subprocess.run(["ssh-keygen", "-lf", str(tmp_path / "k.pub")], capture_output=True, text=True, check=True)
    pub = paramiko.Ed25519Key(filename=str(tmp_path / "k"))
    assert fingerprint(pub) == out.stdout.split()[1]


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("bastion", ("root", "bastion", 22)),
        ("ops@bastion", ("ops", "bastion", 22)),
        ("ops@bastion:2222", ("ops", "bastion", 2222)),
        ("ops@[2001:db8::1]:2222", ("ops", "2001:db8::1", 2222)),
        ("[2001:db8::1]", ("root", "2001:db8::1", 22)),
    ],
)
def test_parse_jump(spec: str, expected: tuple[str, str, int]) -> None:
    assert _parse_jump(spec, "root") == expected


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_refused_connection_is_named_and_retried_once(tmp_path: Path) -> None:
    port = _free_port()  # nothing listens there
    t = SshTransport(timeout=2)
    started = time.monotonic()
    with pytest.raises(SshError, match=rf"cannot connect to root@127.0.0.1:{port}"):
        t._connect_with_retry(_node(tmp_path, port))
    assert time.monotonic() - started >= 0.3  # the one retry waited before trying again


def test_silent_server_times_out(tmp_path: Path) -> None:
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen()
        t = SshTransport(timeout=0.5)
        with pytest.raises(SshError, match=r"timed out|cannot connect"):
            t._connect(_node(tmp_path, srv.getsockname()[1]).ssh)


def test_missing_identity_file_is_named(tmp_path: Path) -> None:
    t = SshTransport(identity_override=str(tmp_path / "nope"))
    with pytest.raises(SshError, match=r"identity file .*nope does not exist"):
        t._connect(_node(tmp_path, 22).ssh)


def _node(tmp_path: Path, port: int):  # type: ignore[no-untyped-def]
    from wgmesh.core.model import Node

    return Node(
        name="n", addresses=(), public_key=None, endpoint=None,
        ssh=Ssh(host="127.0.0.1", port=port, known_hosts=tmp_path / "known_hosts"),
    )
