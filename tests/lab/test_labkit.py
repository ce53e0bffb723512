"""tests/e2e/labkit.py's pure helper: plain OpenSSH into a lab host."""

from __future__ import annotations

from pathlib import Path

from e2e import labkit

from wgmesh.lab import make_lab

DIR = Path("/srv/meshlab")


def test_ssh_argv_pins_host_keys_and_logs_in_as_mesh_yamls_user() -> None:
    spec = make_lab(0, DIR, root_login=True)
    argv = labkit.ssh_argv(spec, "gcp", "true")
    assert argv[0] == "ssh" and argv[-2:] == ["root@10.250.0.13", "true"]
    assert "StrictHostKeyChecking=yes" in argv and f"UserKnownHostsFile={DIR / 'known_hosts'}" in argv
    assert str(DIR / "id_ed25519") in argv
    assert labkit.ssh_argv(make_lab(0, DIR), "gcp", "true")[-2] == "wgmlab0@10.250.0.13"
    assert labkit.ssh_argv(make_lab(0, DIR), "gcp", "true", user="root")[-2] == "root@10.250.0.13"
