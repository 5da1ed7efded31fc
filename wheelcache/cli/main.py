"""The ``wheelcache`` command line (click).  Thin: parse, build values, call, render.

A :class:`~wheelcache.errors.WheelcacheError` becomes one line on stderr and exit code 1
(traceback only with ``-v``); usage errors are click's own (exit 2).
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from typing import Any

import click

from wheelcache import __version__
from wheelcache.config import (
    config_file_path,
    load_config_file,
)
from wheelcache.errors import WheelcacheError

__all__ = ["main"]

log = logging.getLogger("wheelcache")


class _Group(click.Group):
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

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, handler)


def _setup_logging(verbose: int) -> None:
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("wheelcache: %(levelname)s: %(message)s"))
    root = logging.getLogger("wheelcache")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


def _default_map() -> dict[str, Any]:
    """The config file as click's default_map: top-level keys for every command."""
    try:
        data = load_config_file(config_file_path())
    except WheelcacheError as exc:
        click.echo(f"wheelcache: warning: {exc}", err=True)
        return {}
    common = data.pop("*", {})
    return {name: {**common, **data.get(name, {})} for name in main.commands}


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


def _register_commands() -> None:
    """Commands that live in their own modules (serving, offline hosts) join the group here."""
    from wheelcache.cli import bundle as cli_bundle
    from wheelcache.cli import cache as cli_cache
    from wheelcache.cli import config as cli_config
    from wheelcache.cli import fetch as cli_fetch
    from wheelcache.cli import matrix as cli_matrix
    from wheelcache.cli import offline as cli_offline
    from wheelcache.cli import serve as cli_serve

    cli_fetch.register(main)
    cli_config.register(main)
    cli_matrix.register(main)
    cli_serve.register(main)
    cli_offline.register(main)
    cli_bundle.register(main)
    cli_cache.register(main)


_register_commands()
