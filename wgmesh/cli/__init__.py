"""The command line: the `wgmesh` script (entry.py), its typer app (app.py: `main(argv) -> int`), and validate and
render without typer in their plain shapes (quick.py)."""
