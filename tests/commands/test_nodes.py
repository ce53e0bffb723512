"""`wgmesh node add|remove` on files and through the CLI: the edit is validated, written atomically, mode kept."""

from __future__ import annotations

import difflib
import os
import stat
from pathlib import Path

import pytest
from meshes import LAB_STYLE
from typer.testing import CliRunner

from wgmesh.cli import keys as cli_keys
from wgmesh.commands.nodes import NodeSpec, add, remove
from wgmesh.meshfile import EditError, load


def _diff(before: str, after: str) -> tuple[list[str], list[str]]:
    """(removed lines, added lines) between two texts."""
    removed, added = [], []
    for line in difflib.ndiff(before.splitlines(), after.splitlines()):
        if line.startswith("- "):
            removed.append(line[2:])
        elif line.startswith("+ "):
            added.append(line[2:])
    return removed, added


def _file(tmp_path: Path, text: str = LAB_STYLE, mode: int = 0o640) -> Path:
    p = tmp_path / "mesh.yaml"
    p.write_text(text)
    os.chmod(p, mode)
    return p


def test_add_takes_the_lowest_free_address_and_keeps_the_file_mode(tmp_path: Path) -> None:
    p = _file(tmp_path)
    out = add(p, NodeSpec("azure", endpoint="198.51.100.2:51820", subnets=("192.168.20.0/24",)))
    assert out[0] == "+ node azure: 10.0.0.2, endpoint 198.51.100.2:51820, subnets 192.168.20.0/24, " \
                     "ssh root@198.51.100.2"
    mesh, _ = load(p)
    assert [str(a) for a in mesh.node("azure").addresses] == ["10.0.0.2"]
    assert stat.S_IMODE(p.stat().st_mode) == 0o640
    assert [f for f in os.listdir(tmp_path) if f != "mesh.yaml"] == []
    assert _diff(LAB_STYLE, p.read_text())[0] == []


def test_add_with_address_and_ssh_options(tmp_path: Path) -> None:
    p = _file(tmp_path)
    add(p, NodeSpec("n9", addresses=("10.0.0.9",), ssh_host="192.0.2.9", ssh_user="admin", ssh_port=2200,
                                listen_port=51900))
    n = load(p)[0].node("n9")
    assert (str(n.addresses[0]), n.endpoint, n.ssh.host, n.ssh.user, n.ssh.port, n.listen_port) == (
        "10.0.0.9", None, "192.0.2.9", "admin", 2200, 51900)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (NodeSpec("aws", ssh_host="h"), "node 'aws' already exists in mesh.yaml"),
        (NodeSpec("x", addresses=("10.0.0.1",), ssh_host="h"),
         "nodes.x.address: 10.0.0.1 is already the address of aws"),
        (NodeSpec("x", addresses=("10.9.0.1",), ssh_host="h"), "outside the mesh network"),
        (NodeSpec("x"), "nodes.x.ssh.host: no ssh host"),
        (NodeSpec("x", endpoint="nohost", ssh_host="h"), "nodes.x.endpoint: missing port"),
        (NodeSpec("x", ssh_host="h", subnets=("192.168.10.0/24",)), "already routed to aws"),
        (NodeSpec("bad name!", ssh_host="h"), "invalid node name"),
    ],
)
def test_add_refuses_and_leaves_the_file_alone(tmp_path: Path, spec: NodeSpec, message: str) -> None:
    p = _file(tmp_path)
    with pytest.raises(EditError, match=message.replace(".", r"\.")) as e:
        add(p, spec)
    assert "\n" not in str(e.value)
    assert p.read_text() == LAB_STYLE


def test_remove_file(tmp_path: Path) -> None:
    p = _file(tmp_path)
    out = remove(p, "aliyun")
    assert out[0] == "- node aliyun: 10.0.0.4, ssh root@192.0.2.4"
    assert load(p)[0].node_names == ("aws", "gcp")
    with pytest.raises(EditError, match=r"no node 'aliyun' in .*mesh\.yaml \(nodes: aws, gcp\)"):
        remove(p, "aliyun")


# ------------------------------------------------------------------------------------------ CLI


def _app() -> object:
    import typer

    app = typer.Typer()
    app.add_typer(cli_keys.node_app, name="node")

    @app.command()
    def version() -> None:  # a second command, so `node` stays a sub-command
        pass

    return app


def test_cli_add_and_remove(tmp_path: Path) -> None:
    p = _file(tmp_path)
    runner = CliRunner()
    r = runner.invoke(_app(), ["node", "add", "azure", "--ssh-host", "192.0.2.2", "--subnet", "192.168.20.0/24",
                               "-f", str(p)])
    assert r.exit_code == 0, r.output
    assert "+ node azure: 10.0.0.2, subnets 192.168.20.0/24, ssh root@192.0.2.2" in r.output
    r = runner.invoke(_app(), ["node", "add", "b2", "--address", "10.0.0.200", "--ssh-host", "h"],
                      env={"WGMESH_FILE": str(p)})
    assert r.exit_code == 0, r.output
    r = runner.invoke(_app(), ["node", "remove", "aws", "--file", str(p)])
    assert r.exit_code == 0, r.output
    assert load(p)[0].node_names == ("aliyun", "gcp", "azure", "b2")
    assert "# Tokyo, behind NAT" in p.read_text() and "# Frankfurt" not in p.read_text()


def test_cli_errors_are_one_line(tmp_path: Path) -> None:
    p = _file(tmp_path)
    runner = CliRunner()
    r = runner.invoke(_app(), ["node", "remove", "nope", "-f", str(p)])
    assert r.exit_code == 1
    assert r.output.strip().splitlines() == [f"Error: no node 'nope' in {p} (nodes: aws, aliyun, gcp)"]
    r = runner.invoke(_app(), ["node", "add", "x", "-f", str(tmp_path / "missing.yaml")])
    assert r.exit_code == 1
    assert r.output.strip().splitlines()[-1].startswith("1 error;")
    assert "no such file" in r.output




def test_an_edit_of_a_linked_mesh_yaml_lands_where_the_link_points(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    real = _file(shared)
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "mesh.yaml").symlink_to("../shared/mesh.yaml")
    add(repo / "mesh.yaml", NodeSpec("azure", ssh_host="198.51.100.2"))
    assert (repo / "mesh.yaml").is_symlink()
    assert "azure" in load(real)[0].node_names
    assert stat.S_IMODE(real.stat().st_mode) == 0o640
    assert [p.name for p in shared.iterdir()] == ["mesh.yaml"]  # no temporary file left beside it


def test_edits_at_once_each_keep_the_others(tmp_path: Path) -> None:
    """Ten `node add` processes at once: each edit reads the file as the one before left it (the folder's lock),
    so all ten nodes are in it, with ten different addresses."""
    p = _file(tmp_path)
    before = set(load(p)[0].node_names)
    pids = []
    for i in range(10):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            code = 1
            try:
                add(p, NodeSpec(f"n{i}", ssh_host=f"198.51.100.{i + 10}"))
                code = 0
            finally:
                os._exit(code)
        pids.append(pid)
    assert all(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0 for pid in pids)
    mesh = load(p)[0]
    assert set(mesh.node_names) == before | {f"n{i}" for i in range(10)}
    assert len({str(a) for n in mesh.nodes for a in n.addresses}) == len(mesh.nodes)
