"""The console script `wgmesh`: the process around the command line (garbage collection, SIGTERM, closed
streams, how it ends). validate and render in their plain shapes run without typer (cli/quick.py); everything
else is app.py's typer app."""

from __future__ import annotations

import gc
import os
import signal
import sys
from typing import Any

from wgmesh.cli import quick


def run() -> None:
    """The console script. A command is a short-lived process that builds many objects and few cycles: the
    objects of the imports are set aside from garbage collection (`gc.freeze`), and a young collection starts
    after 20,000 new objects rather than 700 (CPython's default also makes a full collection, which walked
    everything imported, every 70,000: ~8% of a `render --all` of 1,000 nodes). Collections still run; memory
    stays bounded."""
    gc.set_threshold(20_000, 10, 10)
    signal.signal(signal.SIGTERM, _on_sigterm)
    for name in ("stdout", "stderr"):  # started with the stream closed (`wgmesh validate >&-`): Python has None
        if getattr(sys, name) is None:
            setattr(sys, name, open(os.devnull, "w"))  # noqa: SIM115 (for the rest of the process)
    plain = quick.parse(sys.argv[1:], os.environ)
    if plain is not None:
        _exit(quick.run(*plain))
    from wgmesh.cli import app

    gc.freeze()
    _exit(app.main())


def _exit(code: int) -> None:
    """End the process with `code`. A command that used no SSH and left no thread running ends without the
    interpreter's teardown (freeing every module and object one by one: 15 ms of a `render --all` of 1,000 nodes),
    once its output is flushed: its files are closed and mesh.yaml's writes are synced by then. Anything else
    (paramiko joins its transports' threads at exit, a thread still running, output that cannot be flushed) ends
    the ordinary way."""
    transport = sys.modules.get("wgmesh.remote.transport")
    abandoned = transport is not None and transport.abandoned()  # Ctrl-C left connections and reads in flight
    if abandoned:  # (fan_out): ends without waiting for them, and without their proxies
        _end_proxies()
    threading = sys.modules.get("threading")
    if not abandoned and ("paramiko" in sys.modules or (threading is not None and threading.active_count() > 1)):
        sys.exit(code)
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        if not abandoned:
            sys.exit(code)
    os._exit(code)


def _end_proxies() -> None:
    proxies = sys.modules.get("wgmesh.remote.proxycommand")
    if proxies is not None:
        proxies.end_all()


def _on_sigterm(signum: int, frame: Any) -> None:
    """SIGTERM ends wgmesh as before (status 143), and the ssh.proxy_command processes with it."""
    _end_proxies()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)
