"""The SSH transport against lab hosts: a jump host (ssh.proxy_jump)."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Callable

import pytest

from e2e import labkit as labmod

LabFactory = Callable[..., labmod.Lab]
WgmeshRunner = Callable[..., "subprocess.CompletedProcess[str]"]


@pytest.fixture(scope="module")
def pair(lab: LabFactory) -> labmod.Lab:
    return lab(names=("bastion", "inner"), nat=(), root_login=True)  # a few tests keep root-login hosts


def test_proxy_jump_reaches_a_host_only_the_bastion_can_name(pair: labmod.Lab, run_wgmesh: WgmeshRunner) -> None:
    inner, bastion = pair.host("inner"), pair.host("bastion")
    # The lab hosts resolve each other's names through their own /etc/hosts; this machine cannot, so a
    # connection to that name can only go through the bastion.
    with pytest.raises(OSError):
        socket.getaddrinfo(inner.hostname, 22)
    mesh = pair.dir / "mesh.yaml"
    mesh.write_text(
        mesh.read_text().replace(
            f"    ssh: {{host: {inner.ip}}}", f"    ssh: {{host: {inner.hostname}, proxy_jump: root@{bastion.ip}}}"
        )
    )
    assert inner.hostname in mesh.read_text()

    refused = run_wgmesh(pair.dir, "plan")  # the name is not pinned in known_hosts yet
    assert refused.returncode == 1 and f"unknown host key for {inner.hostname}" in refused.stderr

    planned = run_wgmesh(pair.dir, "plan", "--accept-new-host-keys", "--detailed-exitcode")
    assert planned.returncode == 2, planned.stdout + planned.stderr
    assert "# node inner" in planned.stdout and "Traceback" not in planned.stderr
    applied = run_wgmesh(pair.dir, "apply", "--auto-approve")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert run_wgmesh(pair.dir, "plan", "--detailed-exitcode").returncode == 0


def test_unreachable_jump_host_is_named(pair: labmod.Lab, run_wgmesh: WgmeshRunner) -> None:
    mesh = pair.dir / "mesh.yaml"
    original = mesh.read_text()
    try:
        bastion = pair.host("bastion")
        labmod.stop_sshd(pair.dir, "bastion")
        r = run_wgmesh(pair.dir, "plan", "--timeout", "3")
        assert r.returncode == 1
        assert "node inner" in r.stderr and f"{bastion.ip}" in r.stderr, r.stderr
        assert "Traceback" not in r.stderr
    finally:
        labmod.start_sshd(pair.dir, "bastion")
        mesh.write_text(original)
