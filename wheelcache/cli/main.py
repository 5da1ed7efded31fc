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

The group is lazy: commands are registered by name with the module that defines them, and a
module is imported only when its command runs, so ``wheelcache --version`` and ``--help``
import click and nothing of ours beyond this module, and ``fetch`` never loads the server or
the bundle code (issue 14: start-up under 80 ms).
"""

from __future__ import annotations

import importlib
import os
import re
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any

import click
from click.core import ParameterSource

from wheelcache import __version__
from wheelcache.errors import ConfigError, WheelcacheError

__all__ = ["COMMANDS", "main", "run"]

#: Command name → (module whose ``register(group)`` adds it, its ``short_help`` as ``--help``
#: lists it).  A test checks both against the loaded commands.
COMMANDS: dict[str, tuple[str, str]] = {
    "config": ("wheelcache.cli.config", "Show every setting and where it comes from."),
    "detect": ("wheelcache.cli.offline", "Show this machine as a target, and its fetch flags."),
    "export": ("wheelcache.cli.bundle", "Write a self-checking bundle for an offline host."),
    "fetch": ("wheelcache.cli.fetch", "Resolve and download wheels for a target."),
    "gc": ("wheelcache.cli.cache", "Remove stale partials and least recently used wheels."),
    "import": ("wheelcache.cli.bundle", "Add a bundle's wheels to this machine's cache."),
    "index": ("wheelcache.cli.serve", "Write a static index of the cache for a web server."),
    "info": ("wheelcache.cli.cache", "Where the cache is, its size and what it holds."),
    "ls": ("wheelcache.cli.cache", "List the cached wheels and their targets."),
    "matrix": ("wheelcache.cli.matrix", "Which torch/torchvision/torchaudio sets exist."),
    "probe": ("wheelcache.cli.offline", "Describe this machine as a target file."),
    "rm": ("wheelcache.cli.cache", "Remove wheels from the cache."),
    "serve": ("wheelcache.cli.serve", "Serve the cache as a package index for pip and uv."),
    "verify": ("wheelcache.cli.bundle", "Check a bundle or the cache, file by file."),
}


INTERRUPTED = "wheelcache: interrupted; partial downloads are kept and resume on the next run"
_HELP = ("-h", "--help")
_WANTS_HELP = "wheelcache.wants_help"


def silence_log() -> None:
    """Nothing more from the library's log once the final line is out: the logger and the
    handlers that child loggers (``wheelcache.serve.access`` …) propagate to are shut."""
    logging = sys.modules.get("logging")  # not imported: nothing has logged (--version)
    if logging is not None:
        root = logging.getLogger("wheelcache")
        root.disabled = True
        for handler in root.handlers:
            handler.setLevel(logging.CRITICAL + 1)


def _last_line(text: str) -> None:
    """Print the run's final line; threads still winding down stay silent after it."""
    silence_log()
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
        from wheelcache.config import config_file_path

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
                stand_in = click.Command(name, short_help=COMMANDS[name][1])
                rows.append((name, stand_in.get_short_help_str(limit)))
        with formatter.section("Commands"):
            formatter.write_dl(rows)


class _Group(_LazyGroup):
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
        silence_log()
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
    import logging

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
    half a configuration — except for ``--help``, which says it once as a warning.  Only a
    config file that exists makes every command module load (its keys are checked against all
    of them); without one, a run imports just its own command.
    """
    from wheelcache.cli.options import config_keys
    from wheelcache.config import config_default_map, config_file_path, read_config_file

    path = config_file_path()
    try:
        data = read_config_file(path)
        if not data:
            return {}
        group = ctx.command
        if isinstance(group, click.Group):
            for name in group.list_commands(ctx):
                group.get_command(ctx, name)
        return config_default_map(data, path, config_keys(main))
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


def run() -> None:
    """The console script (``wheelcache``, ``python -m wheelcache``): :data:`main`, then an
    exit that skips the interpreter's teardown when nothing is left to finish.

    Tearing down the ~350 modules a fetch loads takes 40–50 ms after the work is done — a
    tenth of a warm second run.  When this is the only thread left, every file the command
    wrote is closed (they are written in ``with`` blocks) and the streams are flushed here,
    so leaving at once (``os._exit``) loses nothing.  Anything else — a thread still
    finishing, a stream that cannot be flushed, an exit code that is a message — takes the
    ordinary exit.  In-process callers (tests, click's runner) call :data:`main`, not this.
    """
    try:
        main(prog_name="wheelcache")
        code: str | int | None = 0
    except SystemExit as exc:
        code = exc.code
    if not isinstance(code, int) or threading.active_count() > 1:
        sys.exit(code)
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):  # a closed pipe: Python's own exit says it as it always does
        sys.exit(code)
    logging = sys.modules.get("logging")
    if logging is not None:
        logging.shutdown()  # flushes and closes the handlers, as the ordinary exit would
    os._exit(code)
