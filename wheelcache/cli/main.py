"""The ``wheelcache`` command line (click).  Thin: parse, build values, call, render.

A :class:`~wheelcache.errors.WheelcacheError` becomes one line on stderr and exit code 1
(traceback only with ``-v``); usage errors are click's own (exit 2).

The group is lazy: commands are registered by name with the module that defines them, and a
module is imported only when its command runs, so ``wheelcache --version`` and ``--help``
import click and nothing of ours beyond this module, and ``fetch`` never loads the server or
the bundle code (issue 14: start-up under 80 ms).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import Any

import click

from wheelcache import __version__
from wheelcache.errors import WheelcacheError

__all__ = ["COMMANDS", "main"]

#: Command name → (module whose ``register(group)`` adds it, the first sentence of its help as
#: ``--help`` lists it).  A test checks both against the loaded commands.
COMMANDS: dict[str, tuple[str, str]] = {
    "config": ("wheelcache.cli.config", "Show the settings and where they come from."),
    "detect": (
        "wheelcache.cli.offline",
        "Show this machine as a target and the `wheelcache fetch` flags it implies.",
    ),
    "export": (
        "wheelcache.cli.bundle",
        "Write a self-checking bundle of cached wheels to DEST (a folder, e.g. a USB stick).",
    ),
    "fetch": (
        "wheelcache.cli.fetch",
        "Resolve and download wheels for a target (default: torch torchvision torchaudio).",
    ),
    "gc": (
        "wheelcache.cli.cache",
        "Remove stale partial downloads, unreferenced blobs, then least recently used wheels; "
        "safe while fetch or serve run.",
    ),
    "import": (
        "wheelcache.cli.bundle",
        "Verify the bundle SRC and add its wheels to this machine's cache.",
    ),
    "index": (
        "wheelcache.cli.serve",
        "Write a static simple index of the cache (pages, wheels, nginx snippet) to OUTDIR.",
    ),
    "info": (
        "wheelcache.cli.cache",
        "Where the cache is, its size, and how many wheels, blobs, partials and pages.",
    ),
    "ls": (
        "wheelcache.cli.cache",
        "List the cached wheels and the targets they were fetched for.",
    ),
    "matrix": (
        "wheelcache.cli.matrix",
        "Which torch/torchvision/torchaudio sets exist (versions × Pythons × platforms).",
    ),
    "probe": (
        "wheelcache.cli.offline",
        "Describe this machine as a target file for `wheelcache fetch --target`.",
    ),
    "rm": (
        "wheelcache.cli.cache",
        "Remove wheels: SPEC is a filename, a project name, or name==version.",
    ),
    "serve": (
        "wheelcache.cli.serve",
        "Serve the cache as a simple index (PEP 503 HTML + PEP 691 JSON) for pip and uv.",
    ),
    "verify": (
        "wheelcache.cli.bundle",
        "Check a bundle (PATH) or the cache (no PATH): every missing, extra, truncated or "
        "corrupt file is named; corrupt cache blobs are moved to quarantine-v1/.",
    ),
}


class _LazyGroup(click.Group):
    """Commands from :data:`COMMANDS`, each module imported the first time one of its
    commands is looked up; ``--help`` lists them from the registry without importing any."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            register: Callable[[click.Group], None] = importlib.import_module(
                COMMANDS[cmd_name][0]
            ).register
            register(self)
        return self.commands.get(cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        names = self.list_commands(ctx)
        if not names:
            return
        limit = formatter.width - 6 - max(len(n) for n in names)
        rows = []
        for name in names:
            loaded = self.commands.get(name)
            if loaded is not None:
                if loaded.hidden:
                    continue
                rows.append((name, loaded.get_short_help_str(limit)))
            else:
                # Shortened by click's own rule, as the loaded command would be.
                stand_in = click.Command(name, help=COMMANDS[name][1])
                rows.append((name, stand_in.get_short_help_str(limit)))
        with formatter.section("Commands"):
            formatter.write_dl(rows)


class _Group(_LazyGroup):
    """Turns our errors into one line and exit 1; -v shows the traceback too."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except WheelcacheError as exc:
            if (ctx.obj or {}).get("verbose"):
                import traceback

                traceback.print_exc()
            click.echo(f"wheelcache: error: {exc}", err=True)
            ctx.exit(1)
        except KeyboardInterrupt:
            click.echo(
                "wheelcache: interrupted; partial downloads are kept and resume on the next run",
                err=True,
            )
            ctx.exit(1)


def _terminate_like_interrupt() -> None:
    """SIGTERM (a shutdown, a service manager) stops like Ctrl-C: partials are saved."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, handler)


def _setup_logging(verbose: int) -> None:
    import logging  # here, not at the top: --version and --help do not log

    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("wheelcache: %(levelname)s: %(message)s"))
    root = logging.getLogger("wheelcache")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


def _default_map() -> dict[str, Any]:
    """The config file as click's default_map: top-level keys for every command."""
    from wheelcache.config import config_file_path, load_config_file

    try:
        data = load_config_file(config_file_path())
    except WheelcacheError as exc:
        click.echo(f"wheelcache: warning: {exc}", err=True)
        return {}
    common = data.pop("*", {})
    return {name: {**common, **data.get(name, {})} for name in COMMANDS}


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="More output (-vv for debug); tracebacks.")
@click.version_option(__version__, prog_name="wheelcache")
@click.pass_context
def main(ctx: click.Context, verbose: int) -> None:
    """Fetch PyTorch wheels and their whole dependency closure for a target machine, keep them
    in a verified cache, and hand them over for offline installs."""
    ctx.obj = {"verbose": verbose}
    ctx.default_map = _default_map()
    _setup_logging(verbose)
    _terminate_like_interrupt()
