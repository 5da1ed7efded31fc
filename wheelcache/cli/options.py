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
    "SIZE",
    "existing_cache",
    "writable_cache",
    "Parsed",
    "cache_dir_option",
    "command_line",
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
