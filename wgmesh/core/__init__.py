"""The pure core: no I/O; imports only core (never paramiko, rich, ruamel or typer)."""
