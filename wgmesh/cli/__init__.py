"""The command line: typer only. `main(argv) -> int` is in app.py."""
