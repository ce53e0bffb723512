"""`wgmesh lab` CLI (wgmesh/lab/cli.py): options and error paths that need no root."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from typer.testing import CliRunner

from wgmesh.lab import boot, cli, hosts

runner = CliRunner()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["up", "--id", "99"], "Error: lab id must be 0..50, not 99"),
        (["up", "--nodes", "3", "--names", "a,b"], "Error: --nodes 3 but --names lists 2 names"),
        (["up", "--nat", "mars"], "Error: --nat mars: no such host (hosts: aws, azure, gcp, aliyun)"),
        (
            ["up", "--nat", "gcp:full"],
            "Error: --nat gcp:full: unknown NAT kind 'full' (use NAME, NAME:cone or NAME:symmetric)",
        ),
    ],
)
def test_cli_errors_are_one_line(args: list[str], message: str) -> None:
    result = runner.invoke(cli.app, args)
    assert result.exit_code == 1
    assert result.output.strip() == message
    assert "Traceback" not in result.output


def test_cli_status_without_a_lab(tmp_path: Path) -> None:
    result = runner.invoke(cli.app, ["status", "--dir", str(tmp_path)])
    assert result.exit_code == 1
    assert result.output.startswith(f"Error: no lab in {tmp_path}")


def test_cli_down_without_a_lab_is_a_no_op(tmp_path: Path) -> None:
    result = runner.invoke(cli.app, ["down", "--dir", str(tmp_path)])
    assert result.exit_code == 0
    assert "nothing to do" in result.output


def test_cli_reads_the_lab_id_from_the_environment() -> None:
    result = runner.invoke(cli.app, ["up"], env={"WGMESH_LAB_ID": "77"})
    assert result.exit_code == 1
    assert result.output.strip() == "Error: lab id must be 0..50, not 77"


def test_cli_uses_the_current_folder_inside_a_lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert cli._lab_dir(None) == Path("lab")
    hosts.state_path(tmp_path).parent.mkdir()
    hosts.state_path(tmp_path).write_text(hosts.lab_to_json(hosts.make_lab(3, tmp_path)))
    assert cli._lab_dir(None) == Path(".")
    assert cli._lab_dir(Path("x")) == Path("x")


def test_up_offers_root_login_and_says_what_the_default_is() -> None:
    result = runner.invoke(cli.app, ["up", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "--root-login" in result.output
    assert "cloud-like" in result.output


def test_login_line_by_mode() -> None:
    cloud = hosts.make_lab(4, Path("/x"))
    assert cli._login(cloud) == (
        "Login: wgmlab4, passwordless sudo; root refused with cloud-init's banner; IP forwarding off."
    )
    made = dataclasses.replace(cloud, user="wgmlab4", sudoers=hosts.sudoers_path(4))
    assert "passwordless sudo (/etc/sudoers.d/wgmesh-lab4);" in cli._login(made)
    assert cli._login(hosts.make_lab(4, Path("/x"), root_login=True)) == (
        "Login: root by key (--root-login); IP forwarding on."
    )


def test_reboot_without_a_lab_is_one_line(tmp_path: Path) -> None:
    result = runner.invoke(cli.app, ["reboot", "aws", "--dir", str(tmp_path)])
    assert result.exit_code == 1
    assert result.output.startswith(f"Error: no lab in {tmp_path}")
    assert "Traceback" not in result.output


def test_reboot_of_an_unknown_host_names_the_hosts(tmp_path: Path) -> None:
    hosts.state_path(tmp_path).parent.mkdir()
    hosts.state_path(tmp_path).write_text(hosts.lab_to_json(hosts.make_lab(3, tmp_path)))
    result = runner.invoke(cli.app, ["reboot", "mars", "--dir", str(tmp_path)])
    assert result.exit_code == 1
    assert result.output.strip() == f"Error: no host 'mars' in the lab in {tmp_path} (hosts: aws, azure, gcp, aliyun)"


def test_reboot_prints_each_step_and_fails_on_a_failed_one(monkeypatch: pytest.MonkeyPatch) -> None:
    steps = (
        boot.Step("shutdown", ("sysctl", "-q", "-w", "net.ipv4.ip_forward=0"), 0, ""),
        boot.Step("boot", ("wg-quick", "up", "wg0"), 1, "[#] ip link add wg0\nPostUp failed\n"),
    )
    result_of = boot.Reboot("aws", ("wireguard-go 42",), ("wg0",), steps)
    monkeypatch.setattr(cli.labmod, "reboot", lambda directory, name: result_of)
    result = runner.invoke(cli.app, ["reboot", "aws", "--dir", "/x"])
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert lines[0] == "Rebooting aws: stopped wireguard-go 42 (sshd stays); wg0 gone."
    assert lines[1].split() == ["shutdown", "ok", "sysctl", "-q", "-w", "net.ipv4.ip_forward=0"]
    assert lines[2].split(None, 2) == ["boot", "FAILED", "wg-quick up wg0: PostUp failed"]
    assert lines[3].startswith("Error: aws came back with 1 failed step(s)")

    ok = boot.Reboot("aws", (), (), steps[:1])
    monkeypatch.setattr(cli.labmod, "reboot", lambda directory, name: ok)
    result = runner.invoke(cli.app, ["reboot", "aws", "--dir", "/x"])
    assert result.exit_code == 0
    assert result.output.splitlines()[0] == "Rebooting aws: stopped no process (sshd stays); no WireGuard interface."
    assert result.output.splitlines()[-1].startswith("aws is back (")


def test_move_without_a_lab_is_one_line(tmp_path: Path) -> None:
    result = runner.invoke(cli.app, ["move", "aws", "--dir", str(tmp_path)])
    assert result.exit_code == 1
    assert result.output.startswith(f"Error: no lab in {tmp_path}")
