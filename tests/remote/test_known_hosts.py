"""Host keys checked as OpenSSH checks them (review S): `@revoked` keys refused even on first use, patterns with
`*`, `?` and `!`, several keys of one type, `@cert-authority` hosts never trusted on first use, IPv6 addresses
and host names compared canonically, and the pinned key types preferred. Against a real in-process SSH server
(test_ssh.py's, here with one or two host keys, on 127.0.0.1 or ::1)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import paramiko
import pytest
from remote import test_ssh as base
from remote.test_ssh import Server

from wgmesh.core.model import Node, Ssh
from wgmesh.remote.known_hosts import KnownHosts, key_file_name, known_hosts_name
from wgmesh.remote.ssh import SshTransport, fingerprint

identity = base.identity

@pytest.fixture(scope="module")
def ecdsa() -> paramiko.PKey:
    return paramiko.ECDSAKey.generate()


@pytest.fixture(scope="module")
def rsa() -> paramiko.PKey:
    return paramiko.RSAKey.generate(2048)


@pytest.fixture
def server(ecdsa: paramiko.PKey) -> Iterator[Server]:
    yield from base.serve([ecdsa])


@pytest.fixture
def two_keys(ecdsa: paramiko.PKey, rsa: paramiko.PKey) -> Iterator[Server]:
    """A server with an ECDSA and an RSA host key: paramiko asks for ECDSA first unless told otherwise."""
    yield from base.serve([ecdsa, rsa])


def line(name: str, key: paramiko.PKey, marker: str = "") -> str:
    return f"{marker + ' ' if marker else ''}{name} {key.get_name()} {key.get_base64()}\n"


def connect(identity: str, port: int, known_hosts: Path, host: str = "127.0.0.1",
            accept_new: bool = False) -> tuple[dict[str, str], list[str]]:
    added: list[str] = []
    t = SshTransport(identity_override=identity, accept_new_host_keys=accept_new, on_host_key_added=added.append)
    try:
        ssh = Ssh(host=host, port=port, user="root", known_hosts=known_hosts)
        return t.connect([Node(name="n", addresses=(), public_key=None, endpoint=None, ssh=ssh)]), added
    finally:
        t.close()


@pytest.mark.parametrize("accept_new", [False, True])
def test_a_revoked_key_is_refused_even_where_it_is_pinned(
    server: Server, identity: str, tmp_path: Path, accept_new: bool
) -> None:
    kh = tmp_path / "known_hosts"
    name = f"[127.0.0.1]:{server.port}"
    kh.write_text(line(name, server.host_key, "@revoked") + line(name, server.host_key))
    before = kh.read_bytes()
    errors, added = connect(identity, server.port, kh, accept_new=accept_new)
    assert errors["n"].startswith(
        f"host key REVOKED for root@127.0.0.1:{server.port}: the server offered {server.host_key.get_name()} "
        f"{fingerprint(server.host_key)}, which {kh} marks @revoked.")
    assert added == [] and kh.read_bytes() == before


def test_a_key_revoked_for_every_host_is_never_trusted_on_first_use(
    server: Server, identity: str, tmp_path: Path
) -> None:
    kh = tmp_path / "known_hosts"
    kh.write_text(line("*", server.host_key, "@revoked"))
    errors, added = connect(identity, server.port, kh, accept_new=True)
    assert "REVOKED" in errors["n"] and added == []
    assert kh.read_text() == line("*", server.host_key, "@revoked")  # nothing pinned


def test_patterns_pin_as_openssh_matches_them(server: Server, identity: str, tmp_path: Path) -> None:
    kh = tmp_path / "known_hosts"
    other = paramiko.ECDSAKey.generate()
    kh.write_text(line(f"[127.0.0.?]:{server.port}", other))
    errors, added = connect(identity, server.port, kh, accept_new=True)
    assert errors["n"].startswith(f"host key mismatch for root@127.0.0.1:{server.port}") and added == []

    kh.write_text(line(f"[127.*]:{server.port},!nothing", server.host_key))
    assert connect(identity, server.port, kh) == ({}, [])

    kh.write_text(line(f"[127.*]:{server.port},![127.0.0.1]:*", other))  # negated: the pattern is not this host's
    errors, added = connect(identity, server.port, kh, accept_new=True)
    assert errors == {} and len(added) == 1


def test_any_of_several_keys_of_one_type_is_the_host(server: Server, identity: str, tmp_path: Path) -> None:
    kh = tmp_path / "known_hosts"
    name = f"[127.0.0.1]:{server.port}"
    kh.write_text(line(name, paramiko.ECDSAKey.generate()) + line(name, server.host_key))
    assert connect(identity, server.port, kh) == ({}, [])


@pytest.mark.parametrize("accept_new", [False, True])
def test_a_host_trusted_through_a_certificate_authority_is_refused_not_trusted_on_first_use(
    server: Server, identity: str, tmp_path: Path, accept_new: bool
) -> None:
    kh = tmp_path / "known_hosts"
    kh.write_text(line("[127.0.0.1]:*", paramiko.ECDSAKey.generate(), "@cert-authority"))
    before = kh.read_bytes()
    errors, added = connect(identity, server.port, kh, accept_new=accept_new)
    assert "certificate authority (@cert-authority in" in errors["n"]
    assert "pin the host's own key" in errors["n"] and "ssh_host_ecdsa_key.pub" in errors["n"]
    assert added == [] and kh.read_bytes() == before


def test_an_unknown_marker_names_the_line(server: Server, identity: str, tmp_path: Path) -> None:
    kh = tmp_path / "known_hosts"
    kh.write_text("# pins\n" + line("h", server.host_key, "@revokd"))
    errors, _ = connect(identity, server.port, kh)
    assert errors["n"] == (f"cannot read known_hosts {kh}: line 2 has an unknown marker (OpenSSH knows @revoked and "
                           f"@cert-authority)")


@pytest.mark.parametrize("accept_new", [False, True])
def test_an_ipv6_host_as_written_in_mesh_yaml_is_checked_against_its_canonical_pin(
    ecdsa: paramiko.PKey, identity: str, tmp_path: Path, accept_new: bool
) -> None:
    """`ssh.host: "0:0::1"` is [::1]: a pin of another key for [::1] is a mismatch (not an unknown host whose
    key --accept-new-host-keys would take)."""
    other = paramiko.ECDSAKey.generate()
    for srv in base.serve([ecdsa], "::1"):
        kh = tmp_path / "known_hosts"
        kh.write_text(line(f"[::1]:{srv.port}", other))
        errors, added = connect(identity, srv.port, kh, host="0:0::1", accept_new=accept_new)
        assert errors["n"].startswith(f"host key mismatch for root@0:0::1:{srv.port}") and added == []
        kh.write_text(line(f"[::1]:{srv.port}", ecdsa))
        assert connect(identity, srv.port, kh, host="0:0::1", accept_new=accept_new) == ({}, [])


def test_host_names_ignore_case_and_hashed_names_match(server: Server, identity: str, tmp_path: Path) -> None:
    kh = tmp_path / "known_hosts"
    hashed = paramiko.HostKeys.hash_host(f"[localhost]:{server.port}")
    kh.write_text(line(hashed, server.host_key))
    assert connect(identity, server.port, kh, host="LocalHost") == ({}, [])
    kh.write_text(line(f"[LOCALHOST]:{server.port}", server.host_key))
    assert connect(identity, server.port, kh, host="localhost") == ({}, [])


def test_the_pinned_key_type_is_asked_for_first(two_keys: Server, rsa: paramiko.PKey, identity: str,
                                                tmp_path: Path) -> None:
    """The host pins only its RSA key: the server is asked for RSA first (as OpenSSH orders the known types),
    so the host is known, not taken for a changed or new one."""
    kh = tmp_path / "known_hosts"
    kh.write_text(line(f"[127.0.0.1]:{two_keys.port}", rsa))
    assert connect(identity, two_keys.port, kh, accept_new=True) == ({}, [])
    assert kh.read_text() == line(f"[127.0.0.1]:{two_keys.port}", rsa)


def test_a_key_of_a_type_not_pinned_is_a_mismatch_naming_the_pinned_ones(
    server: Server, identity: str, tmp_path: Path, rsa: paramiko.PKey
) -> None:
    kh = tmp_path / "known_hosts"
    kh.write_text(line(f"[127.0.0.1]:{server.port}", rsa))  # the server has no RSA key
    errors, added = connect(identity, server.port, kh, accept_new=True)
    assert errors["n"].startswith(f"host key mismatch for root@127.0.0.1:{server.port}: the server offered "
                                  f"{server.host_key.get_name()} {fingerprint(server.host_key)}, but {kh} pins "
                                  f"ssh-rsa {fingerprint(rsa)} (other key types).")
    assert added == []


def test_revoked_keys_are_not_offered_as_pins(ecdsa: paramiko.PKey, tmp_path: Path) -> None:
    kh = tmp_path / "known_hosts"
    kh.write_text(line("h", ecdsa) + line("h,g", ecdsa, "@revoked"))
    assert KnownHosts().keys_for(kh, known_hosts_name("H", 22)) == []


def _ed25519() -> paramiko.PKey:
    """A public Ed25519 key (paramiko makes none: its wire form from 32 random bytes)."""
    msg = paramiko.Message()
    msg.add_string("ssh-ed25519")
    msg.add_string(os.urandom(32))
    return paramiko.Ed25519Key(data=msg.asbytes())


@pytest.mark.parametrize(("make", "path"), [
    (paramiko.ECDSAKey.generate, "/etc/ssh/ssh_host_ecdsa_key.pub"),
    (_ed25519, "/etc/ssh/ssh_host_ed25519_key.pub"),
])
def test_the_host_key_file_hint_names_the_servers_file(make: Callable[[], paramiko.PKey], path: str) -> None:
    assert key_file_name(make()) == path


# the identity file, as OpenSSH treats it (review S, finding 8)

def test_an_identity_file_others_can_read_is_refused_as_openssh_does(server: Server, identity: str,
                                                                   tmp_path: Path) -> None:
    loose = tmp_path / "id_loose"
    loose.write_bytes(Path(identity).read_bytes())
    loose.chmod(0o644)
    kh = tmp_path / "known_hosts"
    kh.write_text(server.known_hosts_line())
    errors, _ = connect(str(loose), server.port, kh)
    assert errors["n"] == (f"identity file {loose} can be read by others (mode 0644): a private key must be "
                           f"private, as OpenSSH requires: chmod 600 {loose}")
    loose.chmod(0o600)
    assert connect(str(loose), server.port, kh) == ({}, [])


def test_an_identity_that_is_a_folder_or_a_public_key_is_named(server: Server, tmp_path: Path) -> None:
    kh = tmp_path / "known_hosts"
    kh.write_text(server.known_hosts_line())
    errors, _ = connect(str(tmp_path), server.port, kh)
    assert errors["n"] == f"identity file {tmp_path} is not a file (ssh.identity_file or WGMESH_SSH_IDENTITY)"
    pub = tmp_path / "id.pub"
    pub.write_text(line("", server.host_key).strip() + "\n")
    pub.chmod(0o600)
    errors, _ = connect(str(pub), server.port, kh)
    assert errors["n"] == (f"cannot use the identity file {pub}: it holds no private key paramiko can read "
                           "(ValueError); give the private key, not its .pub (ssh.identity_file or "
                           "WGMESH_SSH_IDENTITY)")


def test_no_key_and_no_agent_says_where_a_key_comes_from(server: Server, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.ssh/id_*
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    monkeypatch.delenv("WGMESH_SSH_IDENTITY", raising=False)
    kh = tmp_path / "known_hosts"
    kh.write_text(server.known_hosts_line())
    t = SshTransport()
    try:
        ssh = Ssh(host="127.0.0.1", port=server.port, user="root", known_hosts=kh)
        errors = t.connect([Node(name="n", addresses=(), public_key=None, endpoint=None, ssh=ssh)])
    finally:
        t.close()
    assert errors["n"] == (f"cannot connect to root@127.0.0.1:{server.port}: No authentication methods available "
                           f"(no key to log in with: set ssh.identity_file or WGMESH_SSH_IDENTITY, or add the key to "
                           f"ssh-agent)")


def test_a_host_on_another_port_without_a_line_of_its_own_is_looked_up_by_its_bare_name(
    server: Server, identity: str, tmp_path: Path
) -> None:
    """Review R1: OpenSSH accepts `127.0.0.1 KEY` for 127.0.0.1 on port 2222 when no `[127.0.0.1]:2222` line
    exists; wgmesh said "unknown host key". A different key there is a mismatch, never trusted on first use; a
    key revoked under the bare name is revoked on every port."""
    kh = tmp_path / "known_hosts"
    kh.write_text(line("127.0.0.1", server.host_key))
    assert connect(identity, server.port, kh, accept_new=True) == ({}, [])
    assert kh.read_text() == line("127.0.0.1", server.host_key)
    # another key under the bare host (another machine behind the same address, on port 22): the port form is
    # unknown, as OpenSSH says (review R3), not a mismatch; trust on first use adds `[127.0.0.1]:PORT`
    other = paramiko.ECDSAKey.generate()
    kh.write_text(line("127.0.0.1", other))
    errors, added = connect(identity, server.port, kh)
    assert errors["n"].startswith(f"unknown host key for [127.0.0.1]:{server.port}: "), errors
    errors, added = connect(identity, server.port, kh, accept_new=True)
    assert errors == {} and len(added) == 1
    assert kh.read_text() == line("127.0.0.1", other) + line(f"[127.0.0.1]:{server.port}", server.host_key)
    kh.write_text(line(f"[127.0.0.1]:{server.port}", server.host_key) + line("127.0.0.1", server.host_key, "@revoked"))
    errors, _ = connect(identity, server.port, kh)
    assert "REVOKED" in errors["n"]


def test_blanks_between_fields_are_read_as_openssh_reads_them(server: Server, identity: str, tmp_path: Path) -> None:
    kh = tmp_path / "known_hosts"
    name = f"[127.0.0.1]:{server.port}"
    kh.write_text(f"{name}  {server.host_key.get_name()}\t {server.host_key.get_base64()}  # a comment\n")
    assert connect(identity, server.port, kh) == ({}, [])
    kh.write_text(f"@revoked\t{name} {server.host_key.get_name()} {server.host_key.get_base64()}\n")
    errors, _ = connect(identity, server.port, kh)
    assert "REVOKED" in errors["n"]


SALTED = "|1|" + "A" * 27 + "=|" + "A" * 27 + "="  # well-formed: 20 bytes each


@pytest.mark.parametrize("hashed", ["|1|AAAA|AAAA", "|1|", "|1|xyz", "|1|" + "A" * 28 + "|" + "A" * 27,
                                    SALTED + ",127.0.0.1"])  # one hashed field, commas and all (review R3)
def test_a_broken_hashed_name_is_named_by_its_line(server: Server, identity: str, tmp_path: Path, hashed: str) -> None:
    """Review R1: such a line failed every node with a bare `AssertionError` (paramiko asserts the salt's length)
    or `Incorrect padding`, naming no line."""
    kh = tmp_path / "known_hosts"
    kh.write_text(line(f"[127.0.0.1]:{server.port}", server.host_key) + line(hashed, server.host_key))
    errors, _ = connect(identity, server.port, kh)
    assert errors["n"] == (f"cannot read known_hosts {kh}: line 2 has a hashed host name that is not |1|SALT|HASH "
                           "(as ssh-keygen -H writes it)")


@pytest.mark.parametrize("make", [lambda: paramiko.RSAKey.generate(2048), paramiko.ECDSAKey.generate])
def test_a_key_the_node_refuses_is_a_failed_login_not_an_invalid_key(
    server: Server, tmp_path: Path, make: Callable[[], paramiko.PKey]
) -> None:
    """Review R1: an RSA or ECDSA identity the node did not accept was reported as `Invalid key` (paramiko's last
    try, reading the file as another key type), which sends one hunting for a broken key file."""
    key = tmp_path / "id"
    make().write_private_key_file(str(key))
    kh = tmp_path / "known_hosts"
    kh.write_text(server.known_hosts_line())
    t = SshTransport(identity_override=str(key))
    try:
        ssh = Ssh(host="127.0.0.1", port=server.port, user="refused", known_hosts=kh)
        errors = t.connect([Node(name="n", addresses=(), public_key=None, endpoint=None, ssh=ssh)])
    finally:
        t.close()
    assert errors["n"].startswith(f"authentication failed for refused@127.0.0.1:{server.port}")
    assert "Invalid key" not in errors["n"]


def test_a_default_key_others_can_read_is_left_out_as_openssh_does(
    server: Server, identity: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Review R1: with no identity file, ~/.ssh/id_* that others could read were used; OpenSSH ignores them."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    monkeypatch.delenv("WGMESH_SSH_IDENTITY", raising=False)
    (tmp_path / ".ssh").mkdir(mode=0o700)
    default = tmp_path / ".ssh" / "id_ecdsa"
    default.write_bytes(Path(identity).read_bytes())
    default.chmod(0o644)
    kh = tmp_path / "known_hosts"
    kh.write_text(server.known_hosts_line())

    def attempt() -> dict[str, str]:
        t = SshTransport()
        try:
            ssh = Ssh(host="127.0.0.1", port=server.port, user="root", known_hosts=kh)
            return t.connect([Node(name="n", addresses=(), public_key=None, endpoint=None, ssh=ssh)])
        finally:
            t.close()

    assert attempt()["n"].endswith(f"add the key to ssh-agent) ({default} left out: others can read it, and OpenSSH "
                                   "ignores such a key too; chmod 600)")
    default.chmod(0o600)
    assert attempt() == {}


def test_an_identity_with_a_passphrase_says_to_load_it_into_the_agent(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    key = tmp_path / "id_locked"
    paramiko.ECDSAKey.generate().write_private_key_file(str(key), password="secret")
    kh = tmp_path / "known_hosts"
    kh.write_text(server.known_hosts_line())
    errors, _ = connect(str(key), server.port, kh)
    assert errors["n"].endswith(f"({key} needs a passphrase: add the key to ssh-agent)"), errors


@pytest.fixture
def agent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[Path], None]]:
    """An ssh-agent of the test's own (SSH_AUTH_SOCK set to it); yields `add(KEY_FILE)`. Ended at the end."""
    agent_bin, add_bin = shutil.which("ssh-agent"), shutil.which("ssh-add")
    if agent_bin is None or add_bin is None or shutil.which("ssh-keygen") is None:
        pytest.skip("needs ssh-agent, ssh-add and ssh-keygen")
    sock = tmp_path / "agent.sock"
    proc = subprocess.Popen([agent_bin, "-D", "-a", str(sock)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            if sock.exists():
                break
            time.sleep(0.05)
        monkeypatch.setenv("SSH_AUTH_SOCK", str(sock))
        env = {**os.environ, "SSH_AUTH_SOCK": str(sock)}

        def add(key: Path) -> None:
            subprocess.run([add_bin, "-q", str(key)], env=env, check=True, capture_output=True)

        yield add
    finally:
        proc.kill()
        proc.wait()


def test_an_identity_with_a_passphrase_is_the_agents_key_offered_first_and_alone(
    server: Server, tmp_path: Path, agent: Callable[[Path], None]
) -> None:
    """Review R3: with a passphrase on the identity, every agent key was offered in turn, and with six others in
    the agent sshd's MaxAuthTries ended the login first ("No existing session"). `ssh -i` offers the agent's key
    of that identity (by its .pub) first; so does wgmesh, and no other."""
    keys = []
    for i in range(7):  # six others, then the identity's own
        path = tmp_path / f"k{i}"
        key = paramiko.ECDSAKey.generate()
        key.write_private_key_file(str(path))
        agent(path)
        keys.append(key)
    locked = tmp_path / "id_locked"
    keys[-1].write_private_key_file(str(locked), password="secret")
    (tmp_path / "id_locked.pub").write_text(f"{keys[-1].get_name()} {keys[-1].get_base64()} me\n")
    kh = tmp_path / "known_hosts"
    kh.write_text(server.known_hosts_line())
    assert connect(str(locked), server.port, kh) == ({}, [])
    assert server.offered == [keys[-1].get_base64()]


def test_an_openssh_identity_with_a_passphrase_needs_no_pub_file(
    server: Server, tmp_path: Path, agent: Callable[[Path], None]
) -> None:
    """Review R4: CI often has only the private file. OpenSSH's format keeps the public half unencrypted, and
    `ssh -i` reads it there: so does wgmesh, to offer the agent's key of it first and alone (a stale .pub beside
    it does not count)."""
    keygen = shutil.which("ssh-keygen") or "ssh-keygen"
    for i in range(6):
        other = tmp_path / f"k{i}"
        subprocess.run([keygen, "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
        agent(other)
    locked = tmp_path / "id_locked"
    subprocess.run([keygen, "-q", "-t", "ed25519", "-N", "", "-f", str(locked)], check=True)
    agent(locked)
    own = (tmp_path / "id_locked.pub").read_text().split()[1]
    subprocess.run([keygen, "-q", "-p", "-P", "", "-N", "secret", "-f", str(locked)], check=True)
    (tmp_path / "id_locked.pub").write_text((tmp_path / "k0.pub").read_text())  # stale: another key's
    kh = tmp_path / "known_hosts"
    kh.write_text(server.known_hosts_line())
    assert connect(str(locked), server.port, kh) == ({}, [])
    assert server.offered == [own]
    (tmp_path / "id_locked.pub").unlink()
    server.offered.clear()
    assert connect(str(locked), server.port, kh) == ({}, []) and server.offered == [own]


def test_a_dsa_identity_is_one_line_naming_the_key_type(server: Server, tmp_path: Path) -> None:
    """Review R3: a DSA key printed cryptography's deprecation warning and `UnknownKeyType(type=<class ...>)`."""
    keygen = shutil.which("ssh-keygen")
    key = tmp_path / "id_dsa"
    if keygen is None or subprocess.run([keygen, "-q", "-t", "dsa", "-N", "", "-f", str(key)],
                                        capture_output=True).returncode != 0:
        pytest.skip("this ssh-keygen makes no DSA key")
    kh = tmp_path / "known_hosts"
    kh.write_text(server.known_hosts_line())
    errors, _ = connect(str(key), server.port, kh)
    assert errors["n"] == (f"cannot use the identity file {key}: paramiko does not take its key type (DSA); use an "
                           "ed25519 key (ssh-keygen -t ed25519)")
