"""The commands that only read and write local files: validate, render, init."""

from __future__ import annotations

from pathlib import Path

from wgmesh import config
from wgmesh.commands.common import ExitStatus, Failure
from wgmesh.views.env import Environment


def validate(file: Path, env: Environment) -> ExitStatus:
    mesh, warnings = config.load(file)
    for w in warnings:
        env.stderr.write(f"{w}\n")
    enrolled = sum(1 for n in mesh.nodes if n.public_key)
    env.stdout.write(
        f"{file}: valid. Mesh {mesh.name!r}: {len(mesh.nodes)} node(s), {enrolled} enrolled, "
        f"interface {mesh.interface}"
        + (f", {len(warnings)} warning(s)" if warnings else "")
        + ".\n"
    )
    return ExitStatus.OK


def render(file: Path, node: str | None, all_nodes: bool, out: Path | None, env: Environment) -> ExitStatus:
    from wgmesh.core import render as r

    mesh, warnings = config.load(file)
    for w in warnings:
        env.stderr.write(f"{w}\n")
    if all_nodes:
        if node is not None:
            raise Failure("give either a NODE or --all, not both")
        if out is None:
            raise Failure("--all needs --out DIR: one file per node, DIR/NODE.conf")
        out.mkdir(parents=True, exist_ok=True)
        count = 0
        for name, text in r.render_all(mesh):
            (out / f"{name}.conf").write_text(text)
            count += 1
        env.stdout.write(f"Wrote {count} config(s) to {out}/\n")
        return ExitStatus.OK
    if node is None:
        raise Failure(f"name a node to render ({', '.join(mesh.node_names)}), or use --all --out DIR")
    if node not in mesh.node_names:
        raise Failure(f"no node {node!r} in {file} (nodes: {', '.join(mesh.node_names)})")
    text = r.render_node(mesh, node)
    if out is not None:
        out.write_text(text)
        env.stdout.write(f"Wrote {out}\n")
    else:
        env.stdout.write(text)
    return ExitStatus.OK


def init(directory: Path, force: bool, env: Environment) -> ExitStatus:
    from wgmesh import scaffold

    try:
        written = scaffold.init_repo(directory, force=force)
    except FileExistsError as e:
        raise Failure(f"{e.filename or e} already exists; use --force to overwrite") from None
    for p in written:
        env.stdout.write(f"created {p}\n")
    env.stdout.write(f"Next: add your nodes to {directory / 'mesh.yaml'}, then `wgmesh validate`.\n")
    return ExitStatus.OK
