"""The typer app: one short function per command, each parsing options and calling the library."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from typer.core import TyperGroup

from wgmesh import __version__
from wgmesh.cli import fastparams, quick
from wgmesh.cli import keys as cli_keys
from wgmesh.cli import observe as cli_observe
from wgmesh.cli import pipeline as cli_pipeline
from wgmesh.cli.environment import environment, mesh_file
from wgmesh.cli.options import (
    MAX_WAIT,
    AcceptNew,
    CommandTimeout,
    FileOpt,
    Json,
    NoColor,
    Parallelism,
    Target,
    Timeout,
    exit_with,
)

if TYPE_CHECKING:
    from wgmesh.commands.common import ExitStatus  # at run time: __getattr__ below
    from wgmesh.views.env import Environment

# A fast start: this module and the cli modules it registers import typer and their option declarations only;
# each command imports its command module (and through it meshfile, remote, views, rich, paramiko) when it runs.
# tests/cli/test_startup.py keeps it so.
fastparams.install()  # option values converted without pydantic where the result is certain

# Help and usage errors are drawn by rich on a terminal; piped or under NO_COLOR they are click's plain text
# (rich's import and layout cost more than the rest of `wgmesh --help`).
HELP_MARKUP = "rich" if sys.stdout is not None and sys.stdout.isatty() and not os.environ.get("NO_COLOR") else None

app = typer.Typer(
    no_args_is_help=True,
    add_completion=True,
    help="Declarative WireGuard full meshes: validate, plan and apply over SSH, public keys only.",
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
    rich_markup_mode=HELP_MARKUP,  # type: ignore[arg-type]
)

LAB_HELP = (
    "Local test hosts (network namespaces with sshd and WireGuard keys, a machine behind each subnet) and a "
    "mesh repo for them."
)  # wgmesh.lab.cli's own (tests/cli/test_startup.py keeps them equal)


class _LazyLab(TyperGroup):
    """`wgmesh lab`: its commands (wgmesh.lab, a package of its own that the rest of wgmesh never imports) are
    built when `lab` is run or its help is asked for, not at every start."""

    def _load(self) -> None:
        if self.commands:
            return
        import typer.main

        from wgmesh.lab.cli import app as lab_app

        for name, cmd in typer.main.get_group(lab_app).commands.items():
            if hasattr(cmd, "rich_markup_mode"):
                cmd.rich_markup_mode = self.rich_markup_mode
            self.add_command(cmd, name)

    def list_commands(self, ctx: typer.Context) -> list[str]:  # type: ignore[override]
        self._load()
        return super().list_commands(ctx)

    def get_command(self, ctx: typer.Context, cmd_name: str) -> Any:  # type: ignore[override]
        self._load()
        return super().get_command(ctx, cmd_name)


lab_app = typer.Typer(cls=_LazyLab, no_args_is_help=True, add_completion=False, help=LAB_HELP)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"wgmesh {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """Declarative WireGuard full meshes: validate, plan and apply over SSH, public keys only."""


@app.command()
def validate(ctx: typer.Context, file: Path | None = FileOpt, json_out: bool = Json, no_color: bool = NoColor) -> None:
    """Check mesh.yaml: every error with its line, the field and the fix. Exit 1 on any error."""
    exit_with(quick.validate(lambda off: environment(ctx, off), file, json_out, no_color))


@app.command()
def render(
    ctx: typer.Context,
    node: str = typer.Argument(None, help="The node whose config to print."),
    all_nodes: bool = typer.Option(False, "--all", help="Write every node's config (with --out)."),
    out: Path = typer.Option(None, "--out", "-o", help="Folder for --all: writes OUT/NODE.conf."),
    file: Path | None = FileOpt,
    json_out: bool = typer.Option(False, "--json", help='JSON on stdout: {"node": ..., "config": ...}.'),
) -> None:
    """Print the wg-quick config a node will run (no private key: it is loaded from the node's key file)."""
    exit_with(quick.render(lambda off: environment(ctx, off), node, all_nodes, out, file, json_out))


@app.command()
def init(
    ctx: typer.Context,
    directory: Path = typer.Argument(Path("."), help="Folder for the new mesh repo."),
    force: bool = typer.Option(False, "--force", help="Overwrite existing files."),
    json_out: bool = Json,
) -> None:
    """Scaffold a mesh repo: commented mesh.yaml, empty known_hosts, .gitignore, CI workflow."""
    from wgmesh.commands.common import guard
    from wgmesh.commands.local import init as run

    env = environment(ctx, True)
    exit_with(guard(lambda: run(directory, force, env, json_out), env))


@app.command()
def plan(
    ctx: typer.Context,
    file: Path | None = FileOpt,
    detailed_exitcode: bool = typer.Option(
        False, "--detailed-exitcode", help="Exit 0 when nothing changes, 2 when something would, 1 on error."
    ),
    json_out: bool = Json,
    out: Path = typer.Option(None, "--out", help="Save the plan to apply exactly it later: wgmesh apply FILE."),
    target: list[str] = Target,
    parallelism: int = Parallelism,
    timeout: float = Timeout,
    command_timeout: float | None = CommandTimeout,
    accept_new_host_keys: bool = AcceptNew,
    no_color: bool = NoColor,
) -> None:
    """Read every node over SSH and show what apply would change."""
    from wgmesh.commands.common import ConnectOptions, guard
    from wgmesh.commands.converge import PlanOptions, run_plan

    env = environment(ctx, no_color or json_out)
    opts = PlanOptions(
        file=mesh_file(file, env),
        connect=ConnectOptions(parallelism, timeout, accept_new_host_keys, tuple(target), command_timeout),
        json=json_out,
        detailed_exitcode=detailed_exitcode,
        out=out,
    )
    exit_with(guard(lambda: run_plan(opts, env), env))


@app.command()
def apply(
    ctx: typer.Context,
    saved_plan: Path = typer.Argument(None, help="A plan saved with `wgmesh plan --out FILE`."),
    file: Path | None = FileOpt,
    auto_approve: bool = typer.Option(False, "--auto-approve", help="Do not ask for approval (CI)."),
    json_out: bool = Json,
    target: list[str] = Target,
    parallelism: int = Parallelism,
    timeout: float = Timeout,
    command_timeout: float | None = CommandTimeout,
    lock_timeout: int = typer.Option(60, "--lock-timeout", min=0, max=MAX_WAIT,
                                     help="Seconds to wait for another apply."),
    confirm_timeout: int = typer.Option(
        60, "--confirm-timeout", min=5, max=MAX_WAIT,
        help="Seconds a changed node waits for wgmesh to reach it again over a new SSH connection; without "
             "that confirmation it restores its previous config by itself (so an apply cannot lock you out).",
    ),
    accept_new_host_keys: bool = AcceptNew,
    no_color: bool = NoColor,
) -> None:
    """Converge every node: write IF.conf, wg syncconf, reconcile addresses and routes, verify."""
    from wgmesh.commands.common import ConnectOptions, guard
    from wgmesh.commands.converge import ApplyOptions, run_apply

    env = environment(ctx, no_color or json_out)
    opts = ApplyOptions(
        file=mesh_file(file, env),
        connect=ConnectOptions(parallelism, timeout, accept_new_host_keys, tuple(target), command_timeout),
        json=json_out,
        auto_approve=auto_approve,
        lock_timeout=lock_timeout,
        saved_plan=saved_plan,
        confirm_timeout=confirm_timeout,
    )
    exit_with(guard(lambda: run_apply(opts, env), env))


app.command()(cli_observe.check)
app.command()(cli_observe.status)
app.add_typer(lab_app, name="lab")
app.add_typer(cli_keys.node_app, name="node")
app.command()(cli_keys.enroll)
app.command()(cli_keys.rotate)
app.command("import")(cli_keys.import_)
app.command()(cli_pipeline.graph)
app.command("plan-key")(cli_pipeline.plan_key)


def main(argv: list[str] | None = None, env: Environment | None = None) -> int:
    """Run wgmesh with `argv` (default: sys.argv[1:]) and return its exit status. `env` (default: the process's
    streams and environment variables) is what every command reads and writes."""
    args = sys.argv[1:] if argv is None else argv
    try:
        code = _for(args)(args=args, prog_name="wgmesh", obj=env, standalone_mode=False)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except Exception as e:
        if not _from_command_line(e):
            raise
        return _usage_error(e, env.stderr if env is not None else sys.stderr)
    return code if isinstance(code, int) else 0


def _from_command_line(e: Exception) -> bool:
    """An error of the command line itself (click's ClickException and Abort, which typer raises when it does not
    handle them itself): an unknown option or command, a value that does not convert, a missing argument."""
    return type(e).__name__ == "Abort" or all(hasattr(e, a) for a in ("exit_code", "format_message", "show"))


def _usage_error(e: Exception, err: Any) -> int:
    """One line, exit 1, as every other error (exit 2 is `--detailed-exitcode`'s "changes": a typo in a CI job's
    options must not read as a plan to review). A command or group run without what it needs shows its help."""
    if type(e).__name__ == "Abort":
        print("Aborted.", file=err)
        return 1
    if type(e).__name__ == "NoArgsIsHelpError":
        print(e.format_message(), file=err)  # type: ignore[attr-defined]
        return 1
    ctx = getattr(e, "ctx", None)
    hint = f" (see `{ctx.command_path} --help`)" if ctx is not None and getattr(ctx, "command_path", None) else ""
    message = " ".join(str(e.format_message()).split())  # type: ignore[attr-defined]
    print(f"Error: {message}{hint}", file=err)
    return 1


def _for(args: list[str]) -> typer.Typer:
    """The app that runs `args`: when they name one of the plain commands, a copy of the app that holds only it,
    so typer builds the options of one command rather than of all of them (~5 ms of every start); the whole app
    for anything else (help, completion, the lab and node groups, a misspelt command)."""
    if not args or args[0].startswith("-") or any(k.endswith("_COMPLETE") for k in os.environ):
        return app
    import copy

    import typer.main

    named = [c for c in app.registered_commands
             if c.callback is not None and (c.name or typer.main.get_command_name(c.callback.__name__)) == args[0]]
    if len(named) != 1:
        return app
    one = copy.copy(app)  # the same settings, callback (--version) and context settings
    one.registered_commands = named
    one.registered_groups = []
    return one


def run() -> None:
    """The console script as installs made before cli/entry.py call it (`wgmesh.cli.app:run`, until the next
    `pip install`): the same process, typer imported first."""
    from wgmesh.cli.entry import run as entry_run

    entry_run()


def __getattr__(name: str) -> Any:
    """`ExitStatus`, imported on first use (it lives in commands.common, which a fast start does not load)."""
    if name == "ExitStatus":
        from wgmesh.commands.common import ExitStatus

        return ExitStatus
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["ExitStatus", "app", "main", "run"]
