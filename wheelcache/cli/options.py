"""Options and parameter types shared by the commands (click lives only in the cli modules)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import click
from click.core import ParameterSource

from wheelcache.config import config_file_path, default_cache_dir, read_config_file
from wheelcache.core.cuda import AUTO
from wheelcache.core.layout import CacheLayout
from wheelcache.core.target import parse_platform, parse_python
from wheelcache.core.units import parse_age, parse_size
from wheelcache.core.variants import DEFAULT_TORCH_INDEX, Mirror, parse_cuda, parse_variant
from wheelcache.errors import CacheError
from wheelcache.store.cache import Cache

__all__ = [
    "AGE",
    "REQUIREMENT_FILE",
    "CUDA",
    "CUDA_OR_AUTO",
    "PLATFORM",
    "PYTHON",
    "SIZE",
    "VARIANT",
    "Parsed",
    "cache_dir_option",
    "check_url",
    "command_line",
    "existing_cache",
    "mirror_option",
    "requirement_option",
    "upstream_options",
    "writable_cache",
    "config_keys",
    "variant_choice",
]

F = TypeVar("F", bound=Callable[..., Any])


def command_line(args: list[str]) -> str:
    """A command as the user's shell wants it quoted (cmd.exe rules on Windows)."""
    if os.name == "nt":
        import subprocess

        return subprocess.list2cmdline(args)
    import shlex

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


def upstream_options(func: F) -> F:
    """``--torch-index``, ``--index-url``, ``--extra-index-url``, ``--mirror``: where wheels
    come from, the same for ``fetch`` and ``serve --pull``."""
    func = click.option(
        "--mirror",
        "mirrors",
        multiple=True,
        metavar="NAME|URL",
        help="A PyTorch wheel mirror: a PEP 503 tree URL (may hold {variant}), flat+URL for a "
        "directory listing, or a NAME from [mirrors.NAME] in the config file. Bytes come from "
        "the mirror, hashes from the official index.",
    )(func)
    func = click.option(
        "--extra-index-url",
        metavar="URL",
        multiple=True,
        help="More indexes, tried in order after --index-url.",
    )(func)
    func = click.option(
        "--index-url",
        metavar="URL",
        envvar="WHEELCACHE_INDEX_URL",
        help="Index for everything else (default: pip's configuration).",
    )(func)
    return click.option(
        "--torch-index",
        metavar="URL",
        default=DEFAULT_TORCH_INDEX,
        show_default=True,
        envvar="WHEELCACHE_TORCH_INDEX",
        help='PyTorch index; "{variant}" in it is replaced.',
    )(func)


def check_url(url: str | None) -> None:
    """Refuse what is not an http(s) URL before any request (a usage error, exit 2)."""
    if url is None:
        return
    parts = urlsplit(url.replace("{variant}", "cpu"))
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise click.UsageError(f"{url!r} is not an http:// or https:// URL")
    try:
        _ = parts.port  # raises for a port out of range or not a number
    except ValueError as exc:
        raise click.UsageError(f"{url!r}: {exc}") from exc


def mirror_option(value: str) -> Mirror:
    """A ``--mirror`` value: a URL, or the name of a ``[mirrors.NAME]`` table in the config."""
    if "://" in value:
        mirror = Mirror.parse(value)
        check_url(mirror.url)
        return mirror
    mirrors = read_config_file(config_file_path()).get("mirrors", {})
    table = mirrors.get(value) if isinstance(mirrors, dict) else None
    if not isinstance(table, dict) or "url" not in table:
        raise click.UsageError(
            f"unknown mirror {value!r}: give a URL, or define it in {config_file_path()} as "
            f'[mirrors.{value}] with url = "https://…/{{variant}}" and layout = "pep503" or "flat"'
        )
    check_url(str(table["url"]))
    layout = str(table.get("layout", "pep503"))
    if layout not in ("pep503", "flat"):
        raise click.UsageError(f"mirror {value!r}: layout must be pep503 or flat, not {layout!r}")
    return Mirror(str(table["url"]), layout)


class Parsed(click.ParamType):  # type: ignore[type-arg]
    """A click type from a parser that raises ``ValueError`` (sizes, ages, variants, targets).

    A bad value is then a usage error (exit 2) found while the options are read, wherever the
    value came from (the command line, the config file, the environment).
    """

    def __init__(self, name: str, parse: Callable[[str], Any]) -> None:
        self.name = name
        self._parse = parse

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        try:
            return self._parse(str(value))
        except ValueError as exc:
            text = str(exc)
            for opt in param.opts if param is not None else ():
                text = text.removeprefix(f"{opt} ")  # the error line names the option itself
            self.fail(text, param, ctx)


def _cuda_or_auto(value: str) -> str:
    return AUTO if value.strip().lower() == AUTO else parse_cuda(value)


def _checked(parse: Callable[[str], object]) -> Callable[[str], str]:
    """Validate with *parse* but keep the text (the target is built from it later)."""

    def check(value: str) -> str:
        parse(value)
        return value.strip()

    return check


SIZE = Parsed("size", parse_size)
AGE = Parsed("age", parse_age)
CUDA = Parsed("cuda", parse_cuda)
CUDA_OR_AUTO = Parsed("cuda", _cuda_or_auto)
VARIANT = Parsed("variant", parse_variant)
PYTHON = Parsed("python", _checked(parse_python))
PLATFORM = Parsed("platform", _checked(parse_platform))


def config_keys(group: click.Group) -> dict[str, dict[str, str]]:
    """Each command's config keys — its long option names — and the parameter each sets."""
    out: dict[str, dict[str, str]] = {}
    for name, cmd in group.commands.items():
        keys: dict[str, str] = {}
        for param in cmd.params:
            if isinstance(param, click.Option) and param.name and param.name != "help":
                for opt in param.opts:
                    if opt.startswith("--"):
                        keys[opt[2:]] = param.name
        out[name] = keys
    return out


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
