"""``wheelcache fetch``: resolve and download wheels for a target.  Thin: the options become
a :class:`~wheelcache.jobs.fetch.FetchRequest`, one Http is built for the command, and
:func:`~wheelcache.jobs.fetch.fetch` does the job; this module renders the result.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import click

from wheelcache.cli.options import (
    CUDA_OR_AUTO,
    PLATFORM,
    PYTHON,
    REQUIREMENT_FILE,
    SIZE,
    VARIANT,
    cache_dir_option,
    check_url,
    command_line,
    mirror_option,
    requirement_option,
    upstream_options,
    variant_choice,
)
from wheelcache.cli.progress import TqdmReporter
from wheelcache.config import (
    default_cache_dir,
    host_platform,
    host_python,
    pip_index_urls,
)
from wheelcache.core.cuda import AUTO, gpu_warning
from wheelcache.core.pins import named_variant
from wheelcache.core.requirements_file import RequirementSet
from wheelcache.core.target import Target, make_target
from wheelcache.core.units import human_size
from wheelcache.core.variants import KNOWN_VARIANTS
from wheelcache.errors import TargetError, WheelcacheError
from wheelcache.jobs.fetch import (
    FetchRequest,
    FetchResult,
    fetch,
    torch_available,
)
from wheelcache.net.client import HttpSettings, http_session
from wheelcache.net.pages import PageStore
from wheelcache.net.transfer_plan import TransferSettings
from wheelcache.reqfiles import is_lock_file, read_lock_file, read_requirement_files
from wheelcache.store.cache import Cache

if TYPE_CHECKING:  # read only with --target or --cuda auto
    from wheelcache.host.targetfile import TargetDescription

__all__ = ["register"]

log = logging.getLogger("wheelcache")


@click.command("fetch", short_help="Resolve and download wheels for a target.")
@click.argument("requirements", nargs=-1)
@requirement_option(
    "Requirements from FILE in pip's format (-r/-c inside, markers, --hash, index options); "
    "a PEP 751 lock (pylock.toml, pylock.NAME.toml): exactly its wheels, no resolution. "
    "Repeatable.",
)
@click.option(
    "-c",
    "--constraint",
    "constraint_files",
    multiple=True,
    metavar="FILE",
    type=REQUIREMENT_FILE,
    help="Constraints from FILE in pip's format: versions allowed, nothing added. Repeatable.",
)
@click.option(
    "--cuda",
    type=CUDA_OR_AUTO,
    metavar="VER",
    help="CUDA variant: 118, 11.8 or cu118; 'auto' picks the newest the target's driver runs.",
)
@click.option("--cpu", is_flag=True, help="The CPU-only variant.")
@click.option(
    "--variant",
    type=VARIANT,
    metavar="NAME",
    help="Any PyTorch variant: cu118, cpu, rocm6.1, xpu …",
)
@click.option(
    "--py",
    "python",
    type=PYTHON,
    metavar="VER",
    help="Target Python: 39, 3.9, 3.9.13 or cp39; 3.9 means 3.9.0, as in pip and uv "
    "(default: this interpreter).",
)
@click.option(
    "--platform",
    "platform_tag",
    type=PLATFORM,
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
@upstream_options
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
@click.option(
    "--max-retry-wait",
    type=click.FloatRange(0, 86400),
    default=300.0,
    show_default=True,
    help="Seconds the whole run may wait because servers said Retry-After; a server asking "
    "for more is given up on at once.",
)
@click.option(
    "--max-page-size",
    type=SIZE,
    default="16M",
    show_default=True,
    help="The largest index page read; a bigger one is refused.",
)
@click.option(
    "--max-metadata-size",
    type=SIZE,
    default="16M",
    show_default=True,
    help="The largest .metadata file or METADATA member read (or inflated).",
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
    requirement_files: tuple[Path, ...],
    constraint_files: tuple[Path, ...],
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
    max_retry_wait: float,
    max_page_size: int,
    max_metadata_size: int,
    offline: bool,
    dry_run: bool,
    dest: Path | None,
    cache_dir: Path | None,
    as_json: bool,
) -> None:
    """Resolve and download wheels for a target (default: torch torchvision torchaudio).

    Every fetch also writes a hash-pinned requirements file and a PEP 751 lock of what it
    fetched (pylock.VARIANT-ABI-PLATFORM.toml) beside the wheels.
    """
    lock, files = _inputs(requirements, requirement_files, constraint_files, torch_version)
    choice = variant_choice(cuda, cpu, variant) or _variant_from(lock, files, torch_index)
    desc, make, auto = _target_choice(target_file, python, platform_tag, glibc, choice)
    request = FetchRequest(
        target=make(None),
        requirements=requirements,
        torch_version=torch_version,
        torch_index=torch_index,
        index_urls=_index_urls(torch_index, index_url, extra_index_url, offline),
        mirrors=tuple(mirror_option(m) for m in mirrors),
        allow_prereleases=pre,
        no_deps=no_deps,
        offline=offline,
        dry_run=dry_run,
        dest=dest,
        jobs=jobs,
        http=HttpSettings(
            retries=retries,
            max_page=max_page_size,
            max_metadata=max_metadata_size,
            max_retry_wait=max_retry_wait,
        ),
        transfer=TransferSettings(
            connections=connections, split_size=split_size, stall_seconds=stall
        ),
        files=files,
        lock=lock,
    )
    cache = Cache(cache_dir or default_cache_dir())
    http = ctx.with_resource(http_session(request.http, offline=offline))  # one per command
    pages = PageStore(cache, http)
    if auto:
        request = _auto_variant(request, pages, desc, make)
    with _progress(show=not as_json and not dry_run and sys.stderr.isatty()) as reporter:
        result = fetch(request, cache, http=http, reporter=reporter, pages=pages)
    _warn_about_gpus(desc, result)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
    else:
        _render(result)


def _inputs(
    requirements: tuple[str, ...],
    requirement_files: tuple[Path, ...],
    constraint_files: tuple[Path, ...],
    torch_version: str | None,
) -> tuple[Path | None, RequirementSet | None]:
    """``-r``/``-c``: a lock (alone: it says exactly what to fetch), or requirement files read
    as pip reads them (``${NAME}`` from this process's environment)."""
    locks = [p for p in requirement_files if is_lock_file(p)]
    if locks:
        others = len(requirement_files) > 1 or requirements or constraint_files or torch_version
        if others:
            raise click.UsageError(
                f"{locks[0]} is a lock: it says exactly what to fetch; give it alone (no other "
                "-r or -c, no REQUIREMENTs, no --torch)"
            )
        return locks[0], None
    if not requirement_files and not constraint_files:
        return None, None
    inputs = read_requirement_files(requirement_files, constraint_files, environ=os.environ)
    return None, inputs.requirements


def _variant_from(lock: Path | None, files: RequirementSet | None, torch_index: str) -> str | None:
    """The PyTorch variant the input names when no option chose one: a lock's torch build
    (``+cu118``), or a requirements file's pin or PyTorch index URL."""
    from wheelcache.core.lockfile import lock_variant

    named = (
        lock_variant(read_lock_file(lock))
        if lock is not None
        else named_variant(files, torch_index)
        if files is not None
        else None
    )
    if named is not None:
        log.info("%s names the %s build of PyTorch; fetching it", named[1], named[0])
        return named[0]
    return None


def _target_choice(
    target_file: Path | None,
    python: str | None,
    platform_tag: str | None,
    glibc: str | None,
    choice: str | None,
) -> tuple[TargetDescription | None, Callable[[str | None], Target], bool]:
    """The target file (if any), a maker of the target for a variant (``None``: the variant
    the options chose), and whether ``--cuda auto`` leaves the variant to be decided."""
    if target_file is not None and (python or platform_tag or glibc):
        raise click.UsageError(
            "--target already gives the Python and platform; drop --py, --platform and --glibc"
        )
    desc = None
    if target_file is not None:
        from wheelcache.host.targetfile import read_target_description

        desc = read_target_description(target_file)
    auto = choice == AUTO
    chosen = "cpu" if choice is None or auto else choice

    def make(variant_name: str | None) -> Target:
        variant_name = variant_name or chosen
        if desc is not None:
            return desc.to_target(variant_name)
        host_plat, host_glibc = host_platform()
        return make_target(
            python=python or host_python(),
            platform=platform_tag or host_plat,
            variant=variant_name,
            glibc=glibc or (host_glibc if platform_tag is None else None),
        )

    return desc, make, auto


def _index_urls(
    torch_index: str, index_url: str | None, extra: tuple[str, ...], offline: bool
) -> tuple[str, ...]:
    """Where everything but the torch family comes from: the options, else pip's config."""
    for url in (torch_index, index_url, *extra):
        check_url(url)
    if index_url:
        return (index_url, *extra)
    if offline and not extra:
        return tuple(_quiet_pip_indexes())
    return (*pip_index_urls()[0], *extra)


@contextlib.contextmanager
def _progress(show: bool) -> Iterator[TqdmReporter | None]:
    """Bars on a terminal (log lines printed above them), nothing otherwise."""
    if not show:
        yield None
        return
    from tqdm.contrib.logging import logging_redirect_tqdm

    reporter = TqdmReporter()
    try:
        with logging_redirect_tqdm(loggers=[log]):
            yield reporter
    finally:
        reporter.close()


def _warn_about_gpus(desc: TargetDescription | None, result: FetchResult) -> None:
    if desc is not None and desc.gpus:
        torch = next((f.version for f in result.files if f.project == "torch"), None)
        warning = gpu_warning(desc.gpus, torch, result.target.variant)
        if warning:
            log.warning("%s", warning)


def _auto_variant(
    request: FetchRequest,
    pages: PageStore,
    desc: TargetDescription | None,
    make: Callable[[str | None], Target],
) -> FetchRequest:
    """``--cuda auto``: the newest CUDA variant the driver runs *and* the index publishes."""
    if desc is None:
        from wheelcache.host import probe_script
        from wheelcache.host.targetfile import parse_target_description

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


def _quiet_pip_indexes() -> list[str]:
    try:
        return pip_index_urls()[0]
    except WheelcacheError:
        return []


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
    if result.index_options:
        out("\nIndex options from the requirement files:")
        for line in result.index_options:
            out(f"  {line}")
    if result.requirements_file is not None:
        out(f"\nHash-pinned requirements: {result.requirements_file}")
    if result.lock_file is not None:
        out(f"PEP 751 lock:             {result.lock_file}")
    out("\nInstall on the target with either:")
    out("  " + command_line(result.install_files_command))
    out("  " + command_line(result.install_find_links_command))
    out("or from the lock, with pip 26.1 or newer, or uv:")
    for cmd in result.install_lock_commands:
        out("  " + command_line(cmd))


def register(group: click.Group) -> None:
    group.add_command(fetch_command)
