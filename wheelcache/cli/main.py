"""The ``wheelcache`` command line (click).  Thin: parse, build values, call, render.

A :class:`~wheelcache.errors.WheelcacheError` becomes one line on stderr and exit code 1
(traceback only with ``-v``); usage errors are click's own (exit 2).
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click

from wheelcache import __version__
from wheelcache.cli.options import SIZE, cache_dir_option, command_line, variant_choice
from wheelcache.config import (
    config_file_path,
    default_cache_dir,
    host_platform,
    host_python,
    load_config_file,
    pip_index_urls,
)
from wheelcache.core.cuda import AUTO, gpu_warning
from wheelcache.core.target import Target, make_target
from wheelcache.core.units import human_size
from wheelcache.core.variants import DEFAULT_TORCH_INDEX, KNOWN_VARIANTS
from wheelcache.errors import TargetError, WheelcacheError
from wheelcache.fetch import DEFAULT_REQUIREMENTS, FetchRequest, FetchResult, fetch, torch_available
from wheelcache.host.targetfile import (
    TargetDescription,
    parse_target_description,
    read_target_description,
)
from wheelcache.net.client import HttpSettings, http_session
from wheelcache.net.indexes import Mirror
from wheelcache.net.pages import PageStore
from wheelcache.net.transfer import TransferSettings
from wheelcache.store.cache import Cache

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


def _human_size(n: int | None) -> str:
    return "?" if n is None else human_size(n)


def _render(result: FetchResult) -> None:
    out = click.echo
    files = result.files
    total = sum(f.size or 0 for f in files)
    out(f"Target: {result.target.describe()}")
    if result.dry_run:
        unknown = sum(1 for f in files if f.size is None)
        note = f" ({unknown} of unknown size)" if unknown else ""
        planned = [f for f in files if f.source == "planned"]
        out(
            f"Would fetch {len(planned)} of {len(files)} wheels, about {_human_size(total)}"
            f"{note}; nothing was downloaded (--dry-run)."
        )
    else:
        fresh = [f for f in files if f.source == "network"]
        out(
            f"{len(files)} wheels, {_human_size(total)}: {len(fresh)} downloaded "
            f"({_human_size(result.downloaded_bytes)} transferred), "
            f"{len(files) - len(fresh)} already in the cache."
        )
    width = max((len(f.filename) for f in files), default=0)
    for f in files:
        out(f"  {f.filename:<{width}}  {_human_size(f.size):>9}  {f.source}")
    if result.dry_run:
        return
    out(f"\nHash-pinned requirements: {result.requirements_file}")
    out("\nInstall on the target with either:")
    out("  " + command_line(result.install_files_command))
    out("  " + command_line(result.install_find_links_command))


class _TqdmReporter:
    """Per-file bars plus a total, only when stderr is a terminal (tqdm lives here only)."""

    def __init__(self) -> None:
        from tqdm import tqdm

        self._tqdm = tqdm
        self._bars: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._total = tqdm(total=0, unit="B", unit_scale=True, desc="total", position=0)

    def file_started(self, filename: str, total: int | None, initial: int) -> None:
        with self._lock:
            old = self._bars.get(filename)
            if old is not None:  # started over: the same bar, from zero
                self._total.total = (self._total.total or 0) - (old.total or 0) + (total or 0)
                old.reset(total=total)
                old.update(initial)
                self._total.update(initial)
                return
            bar = self._tqdm(
                total=total,
                initial=initial,
                unit="B",
                unit_scale=True,
                leave=False,
                desc=filename[:40],
                position=len(self._bars) + 1,
            )
            self._bars[filename] = bar
            self._total.total = (self._total.total or 0) + (total or 0)
            self._total.update(initial)

    def file_advanced(self, filename: str, nbytes: int) -> None:
        with self._lock:
            bar = self._bars.get(filename)
            if bar is not None:
                bar.update(nbytes)
            self._total.update(nbytes)

    def file_restarted(self, filename: str) -> None:
        with self._lock:
            bar = self._bars.get(filename)
            if bar is not None:
                self._total.update(-bar.n)
                bar.reset()

    def file_finished(self, filename: str) -> None:
        with self._lock:
            bar = self._bars.pop(filename, None)
            if bar is not None:
                bar.close()

    def close(self) -> None:
        self._total.close()


@main.command("fetch")
@click.argument("requirements", nargs=-1)
@click.option(
    "--cuda",
    metavar="VER",
    help="CUDA variant: 118, 11.8 or cu118; 'auto' picks the newest the target's driver runs.",
)
@click.option("--cpu", is_flag=True, help="The CPU-only variant.")
@click.option("--variant", metavar="NAME", help="Any PyTorch variant: cu118, cpu, rocm6.1, xpu …")
@click.option(
    "--py",
    "python",
    metavar="VER",
    help="Target Python: 39, 3.9 or cp39 (default: this interpreter).",
)
@click.option(
    "--platform",
    "platform_tag",
    metavar="TAG",
    help="Target platform: win_amd64, linux_x86_64, manylinux_2_28_x86_64, "
    "linux_aarch64, macosx_11_0_arm64 … (default: this machine).",
)
@click.option("--glibc", metavar="X.Y", help="glibc of a Linux target (default 2.28).")
@click.option(
    "--target",
    "target_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="A target description from 'wheelcache probe' on the target host (exact tags and "
    "markers).",
)
@click.option("--torch", "torch_version", metavar="VERSION", help="Pin torch; companions follow.")
@click.option(
    "--torch-index",
    metavar="URL",
    default=DEFAULT_TORCH_INDEX,
    show_default=True,
    envvar="WHEELCACHE_TORCH_INDEX",
    help='PyTorch index; "{variant}" in it is replaced.',
)
@click.option(
    "--index-url",
    metavar="URL",
    envvar="WHEELCACHE_INDEX_URL",
    help="Index for everything else (default: pip's configuration).",
)
@click.option(
    "--extra-index-url",
    metavar="URL",
    multiple=True,
    help="More indexes, tried in order after --index-url.",
)
@click.option(
    "--mirror",
    "mirrors",
    multiple=True,
    metavar="NAME|URL",
    help="A PyTorch wheel mirror: a PEP 503 tree URL (may hold {variant}), flat+URL for a "
    "directory listing, or a NAME from [mirrors.NAME] in the config file. Bytes come from "
    "the mirror, hashes from the official index.",
)
@click.option("--pre", is_flag=True, help="Allow pre-releases.")
@click.option("--no-deps", is_flag=True, help="Only the requested projects.")
@click.option(
    "--jobs",
    type=click.IntRange(1, 64),
    default=4,
    show_default=True,
    envvar="WHEELCACHE_JOBS",
    help="Files downloaded at once.",
)
@click.option(
    "--connections",
    type=click.IntRange(1, 32),
    default=8,
    show_default=True,
    envvar="WHEELCACHE_CONNECTIONS",
    help="Connections per large file (byte ranges), for links that are slow per connection.",
)
@click.option(
    "--split-size",
    type=SIZE,
    default="16M",
    show_default=True,
    help="Files at least this big are split across connections.",
)
@click.option(
    "--stall",
    type=click.FloatRange(0.5, 600),
    default=10.0,
    show_default=True,
    help="Seconds without data after which a connection is replaced.",
)
@click.option(
    "--retries",
    type=click.IntRange(0, 100),
    default=5,
    show_default=True,
    envvar="WHEELCACHE_RETRIES",
    help="Retries per request (backoff with jitter; downloads resume).",
)
@click.option("--offline", is_flag=True, help="Resolve from the cache alone; no network at all.")
@click.option("--dry-run", is_flag=True, help="Show what would be fetched; fetch nothing.")
@click.option(
    "--dest",
    type=click.Path(file_okay=False, path_type=Path),
    help="Also place the wheels (and requirements.txt) in DIR.",
)
@cache_dir_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object on stdout, nothing else.")
@click.pass_context
def fetch_command(
    ctx: click.Context,
    requirements: tuple[str, ...],
    cuda: str | None,
    cpu: bool,
    variant: str | None,
    python: str | None,
    platform_tag: str | None,
    glibc: str | None,
    target_file: Path | None,
    torch_version: str | None,
    torch_index: str,
    index_url: str | None,
    extra_index_url: tuple[str, ...],
    mirrors: tuple[str, ...],
    pre: bool,
    no_deps: bool,
    jobs: int,
    connections: int,
    split_size: int,
    stall: float,
    retries: int,
    offline: bool,
    dry_run: bool,
    dest: Path | None,
    cache_dir: Path | None,
    as_json: bool,
) -> None:
    """Resolve and download wheels for a target (default: torch torchvision torchaudio)."""
    if target_file is not None and (python or platform_tag or glibc):
        raise click.UsageError(
            "--target already gives the Python and platform; drop --py, --platform and --glibc"
        )
    desc = read_target_description(target_file) if target_file else None
    choice = variant_choice(cuda, cpu, variant)
    auto = choice == AUTO
    chosen_variant = "cpu" if choice is None or auto else choice

    def make(variant_name: str) -> Target:
        if desc is not None:
            return desc.to_target(variant_name)
        host_plat, host_glibc = host_platform()
        return make_target(
            python=python or host_python(),
            platform=platform_tag or host_plat,
            variant=variant_name,
            glibc=glibc or (host_glibc if platform_tag is None else None),
        )

    target = make(chosen_variant)
    for url in (torch_index, index_url, *extra_index_url):
        _check_url(url)
    if index_url:
        indexes = (index_url, *extra_index_url)
    elif offline and not extra_index_url:
        indexes = tuple(_quiet_pip_indexes())
    else:
        indexes = (*pip_index_urls()[0], *extra_index_url)
    request = FetchRequest(
        target=target,
        requirements=requirements or DEFAULT_REQUIREMENTS,
        torch_version=torch_version,
        torch_index=torch_index,
        index_urls=indexes,
        mirrors=tuple(_mirror(m) for m in mirrors),
        allow_prereleases=pre,
        no_deps=no_deps,
        offline=offline,
        dry_run=dry_run,
        dest=dest,
        jobs=jobs,
        http=HttpSettings(retries=retries),
        transfer=TransferSettings(
            connections=connections, split_size=split_size, stall_seconds=stall
        ),
    )
    cache = Cache(cache_dir or default_cache_dir())
    http = ctx.with_resource(http_session(request.http, offline=offline))  # one per command
    pages = PageStore(cache, http)
    if auto:
        request = _auto_variant(request, pages, desc, make)
    show_bars = not as_json and sys.stderr.isatty() and not dry_run
    reporter = _TqdmReporter() if show_bars else None
    try:
        if reporter is not None:
            from tqdm.contrib.logging import logging_redirect_tqdm

            with logging_redirect_tqdm(loggers=[log]):
                result = fetch(request, cache, http=http, reporter=reporter, pages=pages)
        else:
            result = fetch(request, cache, http=http, pages=pages)
    finally:
        if reporter is not None:
            reporter.close()
    if desc is not None and desc.gpus:
        torch = next((f.version for f in result.files if f.project == "torch"), None)
        warning = gpu_warning(desc.gpus, torch, result.target.variant)
        if warning:
            log.warning("%s", warning)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
    else:
        _render(result)


def _auto_variant(
    request: FetchRequest,
    pages: PageStore,
    desc: TargetDescription | None,
    make: Callable[[str], Target],
) -> FetchRequest:
    """``--cuda auto``: the newest CUDA variant the driver runs *and* the index publishes."""
    if desc is None:
        from wheelcache.host import probe_script

        desc = parse_target_description(probe_script.probe(), "this machine")
    available = [v for v in KNOWN_VARIANTS if v.startswith("cu")]
    while True:
        variant, reason = desc.choose_cuda_variant(available)
        candidate = replace(request, target=make(variant))
        if torch_available(candidate, pages):
            log.warning("--cuda auto: %s", reason)
            return candidate
        log.info("--cuda auto: the index has no torch for %s; trying an older one", variant)
        available.remove(variant)
        if not available:
            raise TargetError(
                f"--cuda auto: no CUDA variant on {request.torch_index} has torch "
                f"for {candidate.target.describe()}"
            )


def _check_url(url: str | None) -> None:
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


def _mirror(value: str) -> Mirror:
    """A ``--mirror`` value: a URL, or the name of a ``[mirrors.NAME]`` table in the config."""
    if "://" in value:
        mirror = Mirror.parse(value)
        _check_url(mirror.url)
        return mirror
    table = load_config_file(config_file_path()).get("mirrors", {}).get(value)
    if not isinstance(table, dict) or "url" not in table:
        raise click.UsageError(
            f"unknown mirror {value!r}: give a URL, or define it in {config_file_path()} as "
            f'[mirrors.{value}] with url = "https://…/{{variant}}" and layout = "pep503" or "flat"'
        )
    _check_url(str(table["url"]))
    layout = str(table.get("layout", "pep503"))
    if layout not in ("pep503", "flat"):
        raise click.UsageError(f"mirror {value!r}: layout must be pep503 or flat, not {layout!r}")
    return Mirror(str(table["url"]), layout)


def _quiet_pip_indexes() -> list[str]:
    try:
        return pip_index_urls()[0]
    except WheelcacheError:
        return []


def _register_commands() -> None:
    """Commands that live in their own modules (serving, offline hosts) join the group here."""
    from wheelcache.cli import cache as cli_cache
    from wheelcache.cli import config as cli_config
    from wheelcache.cli import matrix as cli_matrix
    from wheelcache.cli import offline as cli_offline
    from wheelcache.cli import serve as cli_serve

    cli_config.register(main)
    cli_matrix.register(main)
    cli_serve.register(main)
    cli_offline.register(main)
    cli_cache.register(main)


_register_commands()
