"""Commands of the serve family (``serve``, ``index``); registered by :mod:`wheelcache.cli.main`.

Thin, as every command: parse options, build a :class:`~wheelcache.serve.publish.CacheView`, call
the server or the exporter, print what the user types next.
"""

from __future__ import annotations

import logging
import signal
import socket
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import click
from packaging.version import Version

from wheelcache.cli.options import (
    cache_dir_option,
    check_url,
    command_line,
    existing_cache,
    mirror_option,
    requirement_option,
    upstream_options,
)
from wheelcache.config import default_cache_dir, pip_index_urls
from wheelcache.core.variants import Mirror, is_torch_family
from wheelcache.errors import WheelcacheError
from wheelcache.reqfiles import is_lock_file
from wheelcache.serve.publish import (
    CacheView,
    Pin,
    PublishedFile,
    Selection,
    read_selection_file,
)
from wheelcache.serve.pull import Upstreams
from wheelcache.serve.pull_server import PullSettings, make_pull_server
from wheelcache.serve.server import IndexServer
from wheelcache.serve.static_index import SNIPPET_NAME, write_static_index
from wheelcache.store.cache import Cache

__all__ = ["install_lines", "register"]

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])
_WILDCARD_HOSTS = ("", "0.0.0.0", "::")
_LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")


def _common_options(func: F) -> F:
    func = click.option(
        "--project",
        "projects",
        metavar="NAME",
        multiple=True,
        help="Publish only this project (repeatable).",
    )(func)
    func = requirement_option(
        "Publish only what FILE names: a requirements file (e.g. one `fetch` wrote) or a "
        "PEP 751 lock (its wheels, by sha256). Repeatable.",
        old="--requirements",
    )(func)
    return cache_dir_option(func)


def _view(cache_dir: Path | None, files: tuple[Path, ...], projects: tuple[str, ...]) -> CacheView:
    pins: tuple[Pin, ...] = ()
    for f in files:
        pins += read_selection_file(f)
    # A --cache-dir that is no cache (a typo) is refused: serving an empty one helps nobody.
    view = CacheView(existing_cache(cache_dir), Selection.of(projects, pins))
    view.check_selection()
    return view


def _torch_variants(files: Iterable[PublishedFile]) -> set[str]:
    """The local versions (``cu121``, ``cpu`` …) of the torch-family wheels published."""
    out = set()
    for f in files:
        if is_torch_family(f.entry.project):
            local = Version(f.entry.version).local
            out.add(local or "plain")
    return out


def install_lines(
    url_host: str,
    port: int,
    requirement_files: tuple[Path, ...],
    projects: tuple[str, ...],
    path: str = "/simple/",
) -> list[str]:
    """The ``pip`` and ``uv`` command lines a client on the LAN types, for *url_host*.

    pip refuses plain-HTTP indexes on hosts other than localhost unless told to trust them.

    >>> install_lines("127.0.0.1", 8000, (), ("torch",))[0]
    'pip install --index-url http://127.0.0.1:8000/simple/ torch'
    >>> install_lines("gpu-box", 8000, (), ())[0]
    'pip install --index-url http://gpu-box:8000/simple/ --trusted-host gpu-box PACKAGE'
    """
    host = f"[{url_host}]" if ":" in url_host else url_host
    index = f"http://{host}:{port}{path}"
    trusted = [] if url_host in _LOOPBACK_HOSTS else ["--trusted-host", url_host]
    what: list[str] = []
    for f in requirement_files:
        # A lock's URLs point at where the wheels came from, not at this index: name its pins.
        what += [p.text for p in read_selection_file(f)] if is_lock_file(f) else ["-r", str(f)]
    what = what or list(projects) or ["PACKAGE"]
    pip = ["pip", "install", "--index-url", index, *trusted, *what]
    uv = ["uv", "pip", "install", "--index-url", index, *what]
    return [command_line(pip), command_line(uv)]


@click.command("serve", short_help="Serve the cache as a package index for pip and uv.")
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    envvar="WHEELCACHE_HOST",
    help="Address to listen on; 0.0.0.0 for the whole LAN.",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8000,
    show_default=True,
    envvar="WHEELCACHE_PORT",
    help="TCP port; 0 picks a free one.",
)
@click.option(
    "--pull",
    is_flag=True,
    help="Pull-through cache: what is not cached is fetched from the upstream indexes once "
    "and streamed to every client asking (/whl/<variant>/ and /simple/).",
)
@upstream_options
@click.option(
    "--page-ttl",
    type=click.FloatRange(0, 86400),
    default=600.0,
    show_default=True,
    help="With --pull: seconds an upstream page stays fresh when upstream gives no max-age.",
)
@_common_options
@click.pass_context
def serve_command(
    ctx: click.Context,
    host: str,
    port: int,
    pull: bool,
    torch_index: str,
    index_url: str | None,
    extra_index_url: tuple[str, ...],
    mirrors: tuple[str, ...],
    page_ttl: float,
    cache_dir: Path | None,
    requirement_files: tuple[Path, ...],
    projects: tuple[str, ...],
) -> None:
    """Serve the cache as a simple index (PEP 503 HTML + PEP 691 JSON) for pip and uv."""
    if pull:
        _serve_pull(
            host,
            port,
            Upstreams(torch_index, _index_urls(index_url, extra_index_url), _mirrors(mirrors)),
            PullSettings(page_ttl=page_ttl),
            cache_dir,
            requirement_files,
            projects,
        )
        return
    for name in ("torch_index", "index_url", "extra_index_url", "mirrors", "page_ttl"):
        if ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE:
            raise click.UsageError(f"--{name.replace('_', '-')} only applies with --pull")
    view = _view(cache_dir, requirement_files, projects)
    try:
        server = IndexServer((host, port), view)
    except OSError as exc:
        raise WheelcacheError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    _show_access_log()
    snap = view.snapshot()
    mixed = _torch_variants(snap.files.values())
    if len(mixed) > 1:
        log.warning(
            "this selection holds torch builds of several variants (%s): pip may mix them; "
            "serve one with -r FILE (a requirements-*.txt or pylock.*.toml that fetch wrote)",
            ", ".join(sorted(mixed)),
        )
    url_host = socket.gethostname() if host in _WILDCARD_HOSTS else host
    click.echo(
        f"Serving {len(snap.files)} wheels of {len(snap.projects)} projects from "
        f"{view.cache.root} at {server.url}/simple/ (Ctrl-C stops)"
    )
    click.echo("Install with:")
    for line in install_lines(url_host, server.port, requirement_files, projects):
        click.echo(f"  {line}")
    _run(server)


def _show_access_log() -> None:
    """The access log: wheels served and failures by default, every request with -v, none
    with -q (the rest of the library's INFO needs -v, as everywhere); the pull-through
    transfers' lines unless -q."""
    verbosity = (click.get_current_context().find_root().obj or {}).get("verbose", 0)
    levels = {-1: logging.WARNING, 0: logging.INFO, 1: logging.DEBUG}
    logging.getLogger("wheelcache.serve.access").setLevel(levels[max(-1, min(verbosity, 1))])
    shared = logging.getLogger("wheelcache.serve.shared_transfer")
    if verbosity >= 0 and shared.getEffectiveLevel() > logging.INFO:
        shared.setLevel(logging.INFO)


def _run(server: IndexServer) -> None:
    try:
        _serve_until_signalled(server)
        server.server_close()  # no new connections; kept-alive ones are not waited for
        # Let answers in flight finish (and log) for a moment; big downloads are resumable.
        server.wait_idle(timeout=3)
        # "stopped" is the last line: answers still draining after the wait log nothing more.
        from wheelcache.cli.main import silence_log

        silence_log()
        click.echo("stopped", err=True)
    finally:
        server.server_close()


def _index_urls(index_url: str | None, extra: tuple[str, ...]) -> tuple[str, ...]:
    for url in (index_url, *extra):
        check_url(url)
    if index_url:
        return (index_url, *extra)
    return (*pip_index_urls()[0], *extra)


def _mirrors(values: tuple[str, ...]) -> tuple[Mirror, ...]:
    return tuple(mirror_option(m) for m in values)


def _serve_pull(
    host: str,
    port: int,
    upstreams: Upstreams,
    settings: PullSettings,
    cache_dir: Path | None,
    requirement_files: tuple[Path, ...],
    projects: tuple[str, ...],
) -> None:
    """``serve --pull``: a pull-through cache of the configured upstreams."""
    check_url(upstreams.torch_index)
    pins: tuple[Pin, ...] = ()
    for f in requirement_files:
        pins += read_selection_file(f)
    cache = Cache(cache_dir or default_cache_dir())
    try:
        server = make_pull_server(
            (host, port), cache, upstreams, Selection.of(projects, pins), settings
        )
    except OSError as exc:
        raise WheelcacheError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    _show_access_log()
    url_host = socket.gethostname() if host in _WILDCARD_HOSTS else host
    click.echo(
        f"Pulling through from {upstreams.torch_index} (PyTorch) and "
        f"{', '.join(upstreams.index_urls)} into {cache.root}, at {server.url}/whl/<variant>/ "
        f"and {server.url}/simple/ (Ctrl-C stops)"
    )
    click.echo("Install with (any variant the PyTorch index has: cpu, cu118, cu126 …):")
    what = projects or ("torch", "torchvision", "torchaudio")
    for line in install_lines(url_host, server.port, requirement_files, what, "/whl/cpu/"):
        click.echo(f"  {line}")
    _run(server)


def _serve_until_signalled(server: IndexServer) -> None:
    """Serve until Ctrl-C or SIGTERM, then return.

    The signal only sets an event; a thread waiting on it stops the server.  Raising
    KeyboardInterrupt from the handler, as other commands do, lands at any bytecode of the
    accept loop, which starts a thread per connection: under load it once left a lock or a
    connection slot half-taken and the process never stopped.
    """
    stop = threading.Event()

    def stopper() -> None:
        stop.wait()
        server.shutdown()  # serve_forever returns within its poll interval

    threading.Thread(target=stopper, name="wheelcache-stop", daemon=True).start()
    previous: dict[signal.Signals, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, lambda *_: stop.set())
    try:
        server.serve_forever(poll_interval=0.5)
    finally:
        stop.set()
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@click.command("index", short_help="Write a static index of the cache for a web server.")
@click.argument("outdir", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--base-url",
    metavar="URL",
    help="Where OUTDIR will be hosted; file links become absolute under it.",
)
@_common_options
def index_command(
    outdir: Path,
    base_url: str | None,
    cache_dir: Path | None,
    requirement_files: tuple[Path, ...],
    projects: tuple[str, ...],
) -> None:
    """Write a static simple index of the cache (pages, wheels, nginx snippet) to OUTDIR."""
    view = _view(cache_dir, requirement_files, projects)
    result = write_static_index(view.snapshot(), outdir, base_url=base_url)
    click.echo(
        f"Wrote {result.files} wheels of {result.projects} projects to {result.outdir} "
        f"({result.linked} hard links, {result.copied} copies, {result.removed} stale files "
        "removed)."
    )
    click.echo("Host it with nginx (PEP 691 JSON + HTML):")
    click.echo(f"  include {result.outdir / SNIPPET_NAME};   # in the http {{}} block")
    click.echo("or with any static web server (HTML pages), e.g.:")
    click.echo(
        "  "
        + command_line(["python", "-m", "http.server", "--directory", str(result.outdir), "8000"])
    )
    click.echo("and install with:")
    index = (base_url.rstrip("/") + "/simple/") if base_url else "http://HOST:8000/simple/"
    click.echo(f"  pip install --index-url {index} PACKAGE")


def register(group: click.Group) -> None:
    """Add ``serve`` and ``index`` to *group*."""
    group.add_command(serve_command)
    group.add_command(index_command)
