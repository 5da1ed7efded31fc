"""Options and parameter types shared by the commands (click lives only in the cli modules)."""

from __future__ import annotations

import os
import shlex
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from click.core import ParameterSource

from wheelcache.config import default_cache_dir
from wheelcache.core.cuda import AUTO
from wheelcache.core.layout import CacheLayout
from wheelcache.core.units import parse_age, parse_size
from wheelcache.core.variants import parse_cuda, parse_variant
from wheelcache.errors import CacheError
from wheelcache.store.cache import Cache

__all__ = [
    "AGE",
    "REQUIREMENT_FILE",
    "SIZE",
    "existing_cache",
    "writable_cache",
    "Parsed",
    "cache_dir_option",
    "command_line",
    "requirement_option",
    "variant_choice",
]

F = TypeVar("F", bound=Callable[..., Any])


def command_line(args: list[str]) -> str:
    """A command as the user's shell wants it quoted (cmd.exe rules on Windows)."""
    if os.name == "nt":
        return subprocess.list2cmdline(args)
    return shlex.join(args)


def variant_choice(cuda: str | None, cpu: bool, variant: str | None) -> str | None:
    """``--cuda``/``--cpu``/``--variant``: at most one of them, parsed; :data:`AUTO` for
    ``--cuda auto``; None when none was given (the command decides the default)."""
    given = [x for x in (cuda and "--cuda", cpu and "--cpu", variant and "--variant") if x]
    if len(given) > 1:
        raise click.UsageError(f"{' and '.join(given)} both choose the variant; give one")
    if cuda:
        return AUTO if cuda.strip().lower() == AUTO else parse_cuda(cuda)
    if variant:
        return parse_variant(variant)
    return "cpu" if cpu else None


def cache_dir_option(func: F) -> F:
    """``--cache-dir`` (also ``WHEELCACHE_CACHE_DIR``), the same on every command."""
    return click.option(
        "--cache-dir",
        type=click.Path(file_okay=False, path_type=Path),
        envvar="WHEELCACHE_CACHE_DIR",
        help="Cache location (default: platformdirs).",
    )(func)


#: A requirements file or a PEP 751 lock named on the command line: a missing one is a usage
#: error (exit 2), as any other bad argument.
REQUIREMENT_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)
_LEGACY_KEY = "wheelcache.legacy_requirement_files"


def _legacy_alias(old: str) -> Callable[[click.Context, click.Parameter, Any], None]:
    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> None:
        if value:
            click.echo(
                f"wheelcache: warning: {old} is deprecated; use -r/--requirement FILE", err=True
            )
            ctx.meta[_LEGACY_KEY] = tuple(value)

    return callback


def _with_legacy(ctx: click.Context, param: click.Parameter, value: Any) -> tuple[Path, ...]:
    return (*value, *ctx.meta.get(_LEGACY_KEY, ()))


def requirement_option(help: str, *, old: str | None = None) -> Callable[[F], F]:
    """``-r/--requirement FILE`` (repeatable): the same spelling and meaning in ``fetch``,
    ``export``, ``serve`` and ``index``.  *old* is the command's former spelling, kept as a
    hidden alias that prints one deprecation line; its files join ``requirement_files``."""

    def decorate(func: F) -> F:
        func = click.option(
            "-r",
            "--requirement",
            "requirement_files",
            multiple=True,
            metavar="FILE",
            type=REQUIREMENT_FILE,
            callback=_with_legacy,
            help=help,
        )(func)
        if old is not None:  # eager: its callback runs before -r's, which adds its files
            func = click.option(
                old,
                "legacy_requirement_files",
                multiple=True,
                hidden=True,
                type=REQUIREMENT_FILE,
                expose_value=False,
                is_eager=True,
                callback=_legacy_alias(old),
            )(func)
        return func

    return decorate


class Parsed(click.ParamType):  # type: ignore[type-arg]
    """A click type from a parser that raises ``ValueError`` (sizes, ages)."""

    def __init__(self, name: str, parse: Callable[[str], Any]) -> None:
        self.name = name
        self._parse = parse

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        try:
            return self._parse(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


SIZE = Parsed("size", parse_size)
AGE = Parsed("age", parse_age)


def writable_cache(cache_dir: Path | None) -> Cache:
    """The cache to write into (created when missing), at its resolved path."""
    return Cache((cache_dir or default_cache_dir()).resolve())


def existing_cache(cache_dir: Path | None) -> Cache:
    """The cache a command reads: a ``--cache-dir`` (or ``WHEELCACHE_CACHE_DIR``) that is not
    one is refused, not created; the default location and the config file's ``cache-dir`` are
    where the cache lives, so an empty one there is the normal start."""
    ctx = click.get_current_context(silent=True)
    source = ctx.get_parameter_source("cache_dir") if ctx is not None else None
    if cache_dir is None or source not in (
        ParameterSource.COMMANDLINE,
        ParameterSource.ENVIRONMENT,
    ):
        return writable_cache(cache_dir)
    root = cache_dir.resolve()
    if not Path(CacheLayout(root).catalog).is_file():
        what = (
            "does not exist"
            if not root.exists()
            else "is not a wheelcache cache (it has no catalog-v1.sqlite)"
        )
        raise CacheError(f"{root} {what}; check --cache-dir (or WHEELCACHE_CACHE_DIR)")
    return Cache(root)
