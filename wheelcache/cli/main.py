"""The ``wheelcache`` command line (click).  Thin: parse, build values, call, render.

Every way a run can end prints at most one line on stderr, and it is the last line:

* a :class:`~wheelcache.errors.WheelcacheError`: ``wheelcache: error: …``, exit 1 (the
  traceback too with ``-v``);
* a usage error — a flag conflict, or a bad value (``--cuda 999``), from the command line, the
  config file or a ``WHEELCACHE_*`` variable, which the line names: exit 2;
* Ctrl-C (or SIGTERM): ``wheelcache: interrupted; …``, exit 130.

After that line the library's log is silenced: work still winding down in other threads (a
cancelled metadata read, a download saving its state) has nothing left to say.  ``-v`` and
``-q`` are accepted anywhere on the line, as pip and uv accept them.
"""

from __future__ import annotations

import logging
import re
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any

import click
from click.core import ParameterSource

from wheelcache import __version__
from wheelcache.cli.options import config_keys
from wheelcache.config import config_default_map, config_file_path, read_config_file
from wheelcache.errors import ConfigError, WheelcacheError

__all__ = ["main"]

log = logging.getLogger("wheelcache")

INTERRUPTED = "wheelcache: interrupted; partial downloads are kept and resume on the next run"
_HELP = ("-h", "--help")
_WANTS_HELP = "wheelcache.wants_help"


def _silence() -> None:
    """Nothing more from the library's log once the final line is out."""
    logging.getLogger("wheelcache").disabled = True


def _last_line(text: str) -> None:
    """Print the run's final line; threads still winding down stay silent after it."""
    _silence()
    click.echo(text, err=True)


def _take_verbosity(args: Sequence[str]) -> tuple[list[str], int]:
    """``-v``/``-vv``/``--verbose`` and ``-q``/``--quiet`` anywhere (not after ``--``): their
    net count, and the other arguments.

    >>> _take_verbosity(["fetch", "-vv", "torch", "-q", "--", "-v"])
    (['fetch', 'torch', '--', '-v'], 1)
    """
    rest: list[str] = []
    level = 0
    for i, arg in enumerate(args):
        if arg == "--":
            rest += args[i:]
            break
        if arg == "--verbose" or re.fullmatch(r"-v+", arg):
            level += 1 if arg == "--verbose" else len(arg) - 1
        elif arg == "--quiet" or re.fullmatch(r"-q+", arg):
            level -= 1 if arg == "--quiet" else len(arg) - 1
        else:
            rest.append(arg)
    return rest, level


def _origin(exc: click.BadParameter) -> str:
    """Where a bad value came from, when it was not typed on the command line."""
    ctx, param = exc.ctx, exc.param
    if ctx is None or param is None or param.name is None:
        return ""
    source = ctx.get_parameter_source(param.name)
    if source is ParameterSource.DEFAULT_MAP:
        key = next((o[2:] for o in param.opts if o.startswith("--")), param.name)
        return f" (key {key!r} in the config file {config_file_path()})"
    if source is ParameterSource.ENVIRONMENT:
        envvar = param.resolve_envvar_value(ctx) and param.envvar
        name = envvar if isinstance(envvar, str) else "the environment"
        return f" (from {name})"
    return ""


def _usage_line(exc: click.UsageError) -> str:
    """A usage error as one line: what was wrong, where it came from, and where help is."""
    if isinstance(exc, click.BadParameter):
        hint = exc.param.get_error_hint(exc.ctx) if exc.param and exc.ctx else "a value"
        text = f"invalid value for {hint}{_origin(exc)}: {exc.message}"
    else:
        text = exc.format_message()
    path = exc.ctx.command_path if exc.ctx is not None else "wheelcache"
    return f"wheelcache: error: {text} (see {path} --help)"


class _Group(click.Group):
    """Turns every ending into one last line and its exit code (see the module docstring)."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        rest, level = _take_verbosity(sys.argv[1:] if args is None else args)
        argv = ["-v"] * max(level, 0) + ["-q"] * max(-level, 0) + rest
        if not standalone_mode:
            return super().main(argv, prog_name, complete_var, False, **extra)
        try:
            code = super().main(argv, "wheelcache", complete_var, False, **extra)
        except click.UsageError as exc:
            _last_line(_usage_line(exc))
            code = 2
        except click.ClickException as exc:
            exc.show()
            code = exc.exit_code
        except click.Abort:  # Ctrl-C while the arguments were read
            _last_line(INTERRUPTED)
            code = 130
        _silence()
        sys.exit(code if isinstance(code, int) else 0)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta[_WANTS_HELP] = any(a in _HELP for a in args)
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ConfigError as exc:  # a config file is part of the command line
            _last_line(f"wheelcache: error: {exc}")
            ctx.exit(2)
        except WheelcacheError as exc:
            if (ctx.obj or {}).get("verbose", 0) > 0:
                import traceback

                traceback.print_exc()
            _last_line(f"wheelcache: error: {exc}")
            ctx.exit(1)
        except KeyboardInterrupt:
            _last_line(INTERRUPTED)
            ctx.exit(130)


def _terminate_like_interrupt() -> None:
    """SIGTERM (a shutdown, a service manager) stops like Ctrl-C: partials are saved."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, handler)


def _setup_logging(verbosity: int) -> None:
    """``-q``: errors only; default: warnings; ``-v``: info; ``-vv``: debug."""
    levels = {-1: logging.ERROR, 0: logging.WARNING, 1: logging.INFO}
    level = logging.DEBUG if verbosity >= 2 else levels.get(verbosity, logging.CRITICAL)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("wheelcache: %(levelname)s: %(message)s"))
    root = logging.getLogger("wheelcache")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
    root.disabled = False


def _default_map(ctx: click.Context) -> dict[str, Any]:
    """The config file as click's default_map (keys checked against the commands' options).

    A broken file or an unknown key is a usage error (exit 2) — a command must not run with
    half a configuration — except for ``--help``, which says it once as a warning.
    """
    path = config_file_path()
    try:
        return config_default_map(read_config_file(path), path, config_keys(main))
    except ConfigError as exc:
        if not ctx.meta.get(_WANTS_HELP):
            raise
        click.echo(f"wheelcache: warning: {exc}", err=True)
        return {}


@click.group(cls=_Group, context_settings={"help_option_names": list(_HELP)})
@click.option("-v", "--verbose", count=True, help="More output (-vv for debug); anywhere.")
@click.option("-q", "--quiet", count=True, help="Less output: errors only; anywhere.")
@click.version_option(__version__, "-V", "--version", prog_name="wheelcache")
@click.pass_context
def main(ctx: click.Context, verbose: int, quiet: int) -> None:
    """Fetch PyTorch wheels and their whole dependency closure for a target machine, keep them
    in a verified cache, and hand them over for offline installs."""
    ctx.obj = {"verbose": verbose - quiet}
    _setup_logging(verbose - quiet)
    ctx.default_map = _default_map(ctx)
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
