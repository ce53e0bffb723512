"""remote/adopt.py: the wg-quick config parser, scripts/import.sh (the node-side secret filter) and
scripts/adopt.sh (the key move), run for real on temporary folders on stub nodes under dash and busybox."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest
from meshes import pubkey
from nacl.public import PrivateKey
from remote.stubs import Stubs

from wgmesh.core.state import REDACTED
from wgmesh.remote import adopt as remote_adopt
from wgmesh.remote import read as live_mod
from wgmesh.remote.adopt import adopt_script, import_script, parse_adopt_output, parse_import_output
from wgmesh.remote.shell import MARK, sections


def keypair(seed: int) -> tuple[str, str]:
    """A throwaway (private, public) pair, as `wg genkey`/`wg pubkey` would give."""
    sk = PrivateKey(bytes([seed]) * 32)
    return base64.b64encode(bytes(sk)).decode(), base64.b64encode(bytes(sk.public_key)).decode()


# ------------------------------------------------------------------------------------------ wg-quick configs

CLASSIC = """\
[Interface]
# node a
Address = 10.0.0.1/24, fd00::1/64
address = 10.0.1.1/24
ListenPort = 51821
PrivateKey = {priv}
MTU = 1380
DNS = 1.1.1.1
SaveConfig = true
PostUp = iptables -A FORWARD -i %i -j ACCEPT # allow
PostUp = wg set %i private-key /etc/wireguard/private.key
PostDown = iptables -D FORWARD -i %i -j ACCEPT

[Peer]
PublicKey = {pub_b}
PresharedKey = {psk}
AllowedIPs = 10.0.0.2/32
AllowedIPs = 192.168.20.0/24
Endpoint = b.example.com:51820
PersistentKeepalive = 25

[peer]
publickey={pub_c}
allowedips=10.0.0.3/32
persistentkeepalive = off

[Peer]
AllowedIPs = 10.0.0.9/32
"""


def classic() -> tuple[str, dict[str, str]]:
    priv, _ = keypair(1)
    psk, _ = keypair(9)
    values = {"priv": priv, "psk": psk, "pub_b": keypair(2)[1], "pub_c": keypair(3)[1]}
    return CLASSIC.format(**values), values


def test_parse_wg_quick() -> None:
    text, v = classic()
    got = remote_adopt.parse_wg_quick(text)
    assert got == remote_adopt.WgQuick(
        addresses=("10.0.0.1/24", "fd00::1/64", "10.0.1.1/24"),
        listen_port=51821,
        mtu=1380,
        post_up=("iptables -A FORWARD -i %i -j ACCEPT", "wg set %i private-key /etc/wireguard/private.key"),
        post_down=("iptables -D FORWARD -i %i -j ACCEPT",),
        ignored=("DNS", "SaveConfig"),
        peers=(
            remote_adopt.QuickPeer(v["pub_b"], "b.example.com:51820", ("10.0.0.2/32", "192.168.20.0/24"), 25),
            remote_adopt.QuickPeer(v["pub_c"], None, ("10.0.0.3/32",), 0),
        ),
    )
    assert v["priv"] not in repr(got) and v["psk"] not in repr(got)


def test_the_node_side_filter_removes_every_secret(node: Stubs, tmp_path: Path) -> None:
    text, v = classic()
    priv2, _ = keypair(5)
    psk2 = keypair(6)[0]  # (review P: a key in a PublicKey line's comment was sent whole)
    text += f"  privatekey={priv2}\n[Peer]\nPublicKey = {v['pub_c']} # psk {psk2}\n[Interface]\n"
    text += f"PostUp = echo {priv2} > /tmp/x\n@@wgmesh:end\n"
    (tmp_path / "wgt0.conf").write_text(text)
    r = node.run(import_script("wgt0", key_dir=str(tmp_path)))
    assert r.exit_status == 0, r.stderr
    for secret in (v["priv"], v["psk"], priv2, psk2):
        assert secret not in r.stdout
    assert f"PublicKey = {v['pub_c']} # psk {REDACTED}" in r.stdout
    # import's filter drops the key lines (read.sh's conftext keeps them, their values redacted)
    wgquick = next(s.body for s in sections(r.stdout) if s.name == "wgquick")
    assert "privatekey" not in wgquick.lower() and "presharedkey" not in wgquick.lower()
    assert v["pub_b"] in r.stdout and v["pub_c"] in r.stdout
    assert f"PostUp = echo {REDACTED} > /tmp/x" in r.stdout
    live, conf = parse_import_output("wgt0", r.stdout)
    assert live.interface_exists is False
    assert conf is not None and conf.listen_port == 51821
    assert conf.post_up[-1] == f"echo {REDACTED} > /tmp/x"


def test_import_output_without_a_config(node: Stubs, tmp_path: Path) -> None:
    r = node.run(import_script("wgt0", key_dir=str(tmp_path)))
    live, conf = parse_import_output("wgt0", r.stdout)
    assert conf is None and live.interface_exists is False


@pytest.mark.parametrize("bad", ["", f"{MARK}wgquick\nmaybe\n{MARK}v1\n", f"{MARK}wgquick\nabsent\n", "hello\n"])
def test_import_output_garbled(bad: str) -> None:
    with pytest.raises(live_mod.ParseError):
        parse_import_output("wg0", bad)


# ------------------------------------------------------------------------------------------ moving the key


class TestAdopt:
    CONF = "# new config\n[Interface]\nListenPort = 51820\n"

    @pytest.fixture(autouse=True)
    def _node(self, node: Stubs) -> None:
        node.host("wg")
        self.node = node

    def sh(self, script: str):  # type: ignore[no-untyped-def]
        return self.node.run(script)

    def make(self, tmp_path: Path, conf: str | None) -> Path:
        d = tmp_path / "wg"
        d.mkdir(mode=0o700)
        if conf is not None:
            (d / "wg0.conf").write_text(conf)
        return d

    def test_moves_the_key_from_the_config(self, tmp_path: Path) -> None:
        priv, pub = keypair(1)
        old = f"[Interface]\nAddress = 10.0.0.1/24\n  PrivateKey = {priv}  # inline\n[Peer]\nPublicKey = {pubkey(2)}\n"
        d = self.make(tmp_path, old)
        r = self.sh(adopt_script("wg0", pub, self.CONF, key_dir=str(d)))
        assert r.exit_status == 0, r.stderr
        assert parse_adopt_output(r.stdout) == "config"
        assert (d / "wg0.key").read_text() == priv + "\n"
        assert stat.S_IMODE((d / "wg0.key").stat().st_mode) == 0o600
        assert (d / "wg0.conf").read_text() == self.CONF
        assert stat.S_IMODE((d / "wg0.conf").stat().st_mode) == 0o600
        backup = (d / "wg0.conf.wgmesh-import").read_text()
        assert priv not in backup
        assert backup.splitlines()[1:] == [ln for ln in old.splitlines() if "PrivateKey" not in ln]
        assert sorted(os.listdir(d)) == ["wg0.conf", "wg0.conf.wgmesh-import", "wg0.key"]
        assert priv not in r.stdout + r.stderr

    def test_the_backup_keeps_no_key_in_a_public_key_lines_comment(self, tmp_path: Path) -> None:
        """Review P: the backup kept a PublicKey line whole, a key in its comment too."""
        priv, pub = keypair(1)
        psk = keypair(3)[0]
        old = f"[Interface]\nPrivateKey = {priv}\n[Peer]\nPublicKey = {pubkey(2)} # psk: {psk}\n"
        d = self.make(tmp_path, old)
        r = self.sh(adopt_script("wg0", pub, self.CONF, key_dir=str(d)))
        assert r.exit_status == 0, r.stderr
        backup = (d / "wg0.conf.wgmesh-import").read_text()
        assert psk not in backup and priv not in backup
        assert backup.splitlines()[-1] == f"PublicKey = {pubkey(2)} # psk: {REDACTED}"

    def test_the_key_moved_from_the_config_is_the_one_wg_runs(self, tmp_path: Path) -> None:
        """The last PrivateKey line of [Interface] is the one wg keeps (review R2)."""
        first, _ = keypair(2)
        priv, pub = keypair(1)
        d = self.make(tmp_path, f"[Interface]\nPrivateKey = {first}\nPrivateKey = {priv}\n[Peer]\nPublicKey = "
                                f"{pubkey(3)}\n")
        r = self.sh(adopt_script("wg0", pub, self.CONF, key_dir=str(d)))
        assert r.exit_status == 0, r.stderr
        assert parse_adopt_output(r.stdout) == "config" and (d / "wg0.key").read_text() == priv + "\n"

    def test_a_read_only_key_folder_is_named_and_nothing_changes(self, tmp_path: Path) -> None:
        """Review F: the shell's own `cannot create ...wg0.key.wgmesh-tmp...` was all import said."""
        priv, pub = keypair(1)
        old = f"[Interface]\nPrivateKey = {priv}\n"
        d = self.make(tmp_path, old)
        self.node.make_read_only(d)
        r = self.sh(adopt_script("wg0", pub, self.CONF, key_dir=str(d)))
        assert r.exit_status == 3
        assert r.stderr.strip() == (f"{d} is not writable (a read-only file system?): import keeps the key and the "
                                    "config there; nothing was changed")
        assert sorted(os.listdir(d)) == ["wg0.conf"] and (d / "wg0.conf").read_text() == old

    def test_keeps_a_matching_key_file_and_the_first_backup(self, tmp_path: Path) -> None:
        priv, pub = keypair(1)
        d = self.make(tmp_path, "[Interface]\nPostUp = wg set %i private-key /etc/wireguard/%i.key\n")
        (d / "wg0.key").write_text(priv + "\n")
        (d / "wg0.conf.wgmesh-import").write_text("first backup\n")
        r = self.sh(adopt_script("wg0", pub, self.CONF, key_dir=str(d)))
        assert r.exit_status == 0, r.stderr
        assert parse_adopt_output(r.stdout) == "kept"
        assert (d / "wg0.conf.wgmesh-import").read_text() == "first backup\n"
        assert (d / "wg0.conf").read_text() == self.CONF

    def test_refuses_a_key_file_with_another_key(self, tmp_path: Path) -> None:
        priv, _ = keypair(1)
        _, other_pub = keypair(2)
        d = self.make(tmp_path, "[Interface]\n")
        (d / "wg0.key").write_text(priv + "\n")
        r = self.sh(adopt_script("wg0", other_pub, self.CONF, key_dir=str(d)))
        assert r.exit_status == 4
        assert "does not hold the key" in r.stderr
        assert (d / "wg0.conf").read_text() == "[Interface]\n"

    def test_refuses_when_the_key_is_nowhere(self, tmp_path: Path) -> None:
        priv, _ = keypair(1)
        _, other_pub = keypair(2)
        old = f"[Interface]\nPrivateKey = {priv}\n"
        d = self.make(tmp_path, None)
        (d / "wgmnone0.conf").write_text(old)  # no such interface here: the fallback finds nothing either
        r = self.sh(adopt_script("wgmnone0", other_pub, self.CONF, key_dir=str(d)))
        assert r.exit_status == 5
        assert "cannot find the private key" in r.stderr
        assert sorted(os.listdir(d)) == ["wgmnone0.conf"]
        assert (d / "wgmnone0.conf").read_text() == old
        assert priv not in r.stdout + r.stderr

    def test_takes_the_key_from_the_interface_when_the_config_has_none(self, tmp_path: Path) -> None:
        priv, pub = keypair(3)
        d = self.make(tmp_path, "[Interface]\nPostUp = wg set %i private-key /somewhere\n")
        secret = tmp_path / "running.key"
        secret.write_text(priv + "\n")
        real_wg = self.node.bin / "wg"
        target = os.readlink(real_wg)
        real_wg.unlink()
        self.node.stub("wg", f'if [ "$1 $2 $3" = "show wg0 private-key" ]; then exec cat {secret}; fi\n'
                             f'exec {target} "$@"\n')
        r = self.sh(adopt_script("wg0", pub, self.CONF, key_dir=str(d)))
        assert r.exit_status == 0, r.stderr
        assert parse_adopt_output(r.stdout) == "interface"
        assert (d / "wg0.key").read_text() == priv + "\n"
        assert priv not in r.stdout + r.stderr

    def test_the_config_is_written_as_it_is(self, tmp_path: Path) -> None:
        priv, pub = keypair(1)
        d = self.make(tmp_path, None)
        (d / "wg0.key").write_text(priv + "\n")
        text = "[Interface]\nPostUp = echo '$(reboot)' \"`id`\" $HOME\n__WGMESH_CONF__\nEOF\n\n"
        r = self.sh(adopt_script("wg0", pub, text, key_dir=str(d)))
        assert r.exit_status == 0, r.stderr
        assert (d / "wg0.conf").read_text() == text
        assert not (d / "wg0.conf.wgmesh-import").exists(), "no old config, no backup"

    def test_builder_refuses_bad_input(self) -> None:
        with pytest.raises(ValueError):
            adopt_script("wg0", "nope", self.CONF)
        with pytest.raises(ValueError):
            adopt_script("wg0", pubkey(1), "x\0y\n")


def test_parse_adopt_output() -> None:
    assert parse_adopt_output(f"noise\n{MARK}adopted interface\n") == "interface"
    for bad in (f"{MARK}adopted elsewhere\n", "@@wgmesh-import:key config\n"):
        with pytest.raises(ValueError):
            parse_adopt_output(bad)
    with pytest.raises(ValueError):
        parse_adopt_output("")


