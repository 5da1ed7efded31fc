"""The whole ``fetch`` job: requirements + target → resolved, verified wheels in the cache.

:func:`fetch` wires the edges (the command's one HTTP client, page store, downloader, cache)
to the pure core (evaluator, provider) and returns a :class:`FetchResult` that the CLI
renders.  It reads top to bottom: resolve (:func:`_resolve`), then either a plan
(``--dry-run``) or the downloads (:func:`_download`), then the outputs
(:func:`_write_outputs`): the hash-pinned requirements file and the PEP 751 lock of the target.

What to resolve comes from the command line and from requirement files (``-r``/``-c``, read by
:mod:`wheelcache.reqfiles` into ``FetchRequest.files``): their index options apply as pip
applies them, their ``--hash`` pins, constraints and direct wheel URLs through
:class:`~wheelcache.core.pins.PinnedSource`.  A PEP 751 lock (``FetchRequest.lock``) is not
resolved at all: :func:`_fetch_lock` takes exactly its wheels for the target.
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from packaging.specifiers import SpecifierSet
from packaging.utils import NormalizedName, canonicalize_name

from wheelcache import __version__
from wheelcache.core.evaluator import Candidate
from wheelcache.core.lockfile import LockedWheel, lock_filename
from wheelcache.core.lockwrite import pylock_text
from wheelcache.core.models import Sha256
from wheelcache.core.pins import (
    DEFAULT_REQUIREMENTS,
    RequirementPlan,
    pinned_source,
    plan_fetch,
    unpinned,
)
from wheelcache.core.progress import Reporter
from wheelcache.core.requirements import CandidateSource, Req, Resolution
from wheelcache.core.requirements_file import RequirementSet
from wheelcache.core.resolved import ResolvedRecord, request_key
from wheelcache.core.target import Target
from wheelcache.core.variants import (
    DEFAULT_TORCH_INDEX,
    Mirror,
    cdn_fallback,
    is_torch_family,
    torch_index_for,
)
from wheelcache.errors import (
    CacheError,
    IndexPageError,
    ResolutionError,
    TargetError,
    WheelcacheError,
)
from wheelcache.jobs.remembered import recall, remember
from wheelcache.net.client import Http, HttpSettings
from wheelcache.net.pages import PageStore
from wheelcache.net.transfer_plan import TransferSettings
from wheelcache.store.cache import Cache, CachedWheel, describe_os_error, link_or_copy

if TYPE_CHECKING:  # the resolver, the finder and the downloader are imported when first
    # used: a recalled resolution (jobs.remembered) loads none of them
    from wheelcache.net.download import Downloader, DownloadJob
    from wheelcache.net.early import EarlyTransfers
    from wheelcache.net.finder import IndexFinder

__all__ = ["DEFAULT_REQUIREMENTS", "FetchRequest", "FetchResult", "FetchedFile", "fetch"]

log = logging.getLogger(__name__)

_DEST_FIX = "choose another --dest folder"


@dataclass(frozen=True)
class FetchRequest:
    """Everything ``wheelcache fetch`` was asked to do."""

    target: Target
    requirements: tuple[str, ...] = DEFAULT_REQUIREMENTS
    torch_version: str | None = None
    torch_index: str = DEFAULT_TORCH_INDEX
    index_urls: tuple[str, ...] = ()
    mirrors: tuple[Mirror, ...] = ()
    allow_prereleases: bool = False
    no_deps: bool = False
    offline: bool = False
    dry_run: bool = False
    dest: Path | None = None
    jobs: int = 4
    http: HttpSettings = field(default_factory=HttpSettings)
    transfer: TransferSettings = field(default_factory=TransferSettings)
    #: What ``-r``/``-c`` requirement files said (read by :mod:`wheelcache.reqfiles`).
    files: RequirementSet | None = None
    #: A PEP 751 lock: exactly its wheels for the target, no resolution (``-r pylock.toml``).
    lock: Path | None = None


@dataclass(frozen=True, slots=True)
class FetchedFile:
    filename: str
    project: str
    version: str
    path: Path | None  # None only in a dry run
    sha256: str | None
    blake3: str | None
    size: int | None
    url: str
    source: str  # "cache" | "network" | "planned"
    required_by: tuple[str, ...] = ()
    upload_time: str | None = None  # as the index gave it

    def to_dict(self) -> dict[str, Any]:
        return {
            "filename": self.filename,
            "project": self.project,
            "version": self.version,
            "path": str(self.path) if self.path else None,
            "sha256": self.sha256,
            "blake3": self.blake3,
            "size": self.size,
            "url": self.url,
            "source": self.source,
            "required_by": list(self.required_by),
            "upload_time": self.upload_time,
        }

    def locked(self) -> LockedWheel:
        """This file in the PEP 751 lock written beside it (``path`` is its own name)."""
        return LockedWheel(
            project=canonicalize_name(self.project),
            version=self.version,
            filename=self.filename,
            sha256=Sha256(self.sha256 or ""),
            url=self.url if urlsplit(self.url).scheme in ("http", "https") else None,
            path=self.filename,
            size=self.size,
            upload_time=self.upload_time,
        )


@dataclass(frozen=True)
class FetchResult:
    target: Target
    requested: tuple[str, ...]  # pinned top-level requirements: "torch==2.4.0+cu118"
    files: tuple[FetchedFile, ...]
    wheels_dir: Path
    requirements_file: Path | None
    dry_run: bool
    downloaded_bytes: int
    lock_file: Path | None = None
    #: Index options the requirement files set, as ``r.txt:2: --index-url URL``.
    index_options: tuple[str, ...] = ()

    @property
    def install_lock_commands(self) -> list[list[str]]:
        """pip (26.1 or newer) and uv installing from the lock, offline."""
        if self.lock_file is None:
            return []
        lock = str(self.lock_file)
        return [
            ["pip", "install", "--no-index", "-r", lock],
            ["uv", "pip", "install", "--offline", "-r", lock],
        ]

    @property
    def install_files_command(self) -> list[str]:
        return ["pip", "install", "--no-index", *(str(f.path) for f in self.files if f.path)]

    @property
    def install_find_links_command(self) -> list[str]:
        return [
            "pip",
            "install",
            "--no-index",
            "--find-links",
            str(self.wheels_dir),
            *self.requested,
        ]

    @property
    def install_requirements_command(self) -> list[str]:
        return [
            "pip",
            "install",
            "--no-index",
            "--find-links",
            str(self.wheels_dir),
            "--require-hashes",
            "-r",
            str(self.requirements_file),
        ]

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target.to_dict(),
            "requested": list(self.requested),
            "files": [f.to_dict() for f in self.files],
            "wheels_dir": str(self.wheels_dir),
            "requirements_file": str(self.requirements_file) if self.requirements_file else None,
            "lock_file": str(self.lock_file) if self.lock_file else None,
            "index_options": list(self.index_options),
            "dry_run": self.dry_run,
            "downloaded_bytes": self.downloaded_bytes,
            "total_size": sum(f.size or 0 for f in self.files),
            "install": {
                "files": self.install_files_command,
                "find_links": self.install_find_links_command,
                "requirements": (
                    self.install_requirements_command if self.requirements_file else None
                ),
                "lock": self.install_lock_commands or None,
            },
        }


def _requested_pins(reqs: Sequence[Req], resolution: Resolution) -> tuple[str, ...]:
    chosen = resolution.by_name()
    names: list[str] = []
    for r in reqs:
        if r.name not in names:
            names.append(r.name)
    return tuple(f"{n}=={chosen[canonicalize_name(n)].version}" for n in names if n in chosen)


def _requirements_text(files: Sequence[FetchedFile]) -> str:
    lines = [
        "# written by wheelcache; install with:",
        "#   pip install --no-index --find-links . --require-hashes -r <this file>",
    ]
    for f in sorted(files, key=lambda f: f.project):
        lines.append(f"{f.project}=={f.version} \\\n    --hash=sha256:{f.sha256}")
    return "\n".join(lines) + "\n"


def _place(wheel: CachedWheel, dest: Path) -> Path:
    """Put a copy (hard link where possible) of *wheel* in *dest* under its real name."""
    tmp = dest / f".{wheel.filename}.{os.getpid()}.tmp"
    return link_or_copy(wheel.blob, dest / wheel.filename, tmp, fix=_DEST_FIX)


def _job(c: Candidate, finder: IndexFinder) -> DownloadJob:
    """One download; its sources in order: mirrors (the bytes), the index's URL, and, only
    once those failed, for a torch-family file linked on a CDN the same path on the index's
    own host."""
    from wheelcache.net.download import DownloadJob

    f = c.file
    indexes = finder.indexes
    fallback = cdn_fallback(f.url, indexes.sources.torch_index) if is_torch_family(c.name) else None
    urls = list(dict.fromkeys([*indexes.mirror_urls(c.name, f), f.url]))
    return DownloadJob(
        url=urls[0],
        filename=f.filename,
        project=c.name,
        version=str(c.version),
        sha256=f.sha256,
        size=f.size or finder.metadata.sizes.get(f.url),
        mirrors=tuple(urls[1:]),
        fallbacks=(fallback,) if fallback else (),
        hash_origin="mirror" if c.name in indexes.mirror_hashed else "index",
    )


def fetch(
    request: FetchRequest,
    cache: Cache,
    *,
    http: Http | None,
    reporter: Reporter | None = None,
    pages: PageStore | None = None,
) -> FetchResult:
    """Resolve and download everything *request* asks for; see the module docstring.

    *http* is the command's one client (None offline; ``request.offline`` also means no
    network); the caller owns it and closes it.  *pages* lets a caller that already read
    index pages (``--cuda auto``) share its page store.  On failure *http* is cancelled, so
    prefetch threads sleeping in a retry wake up at once.
    """
    if request.offline:
        http = None
    else:  # pages and wheels are stored as they arrive
        cache.require_writable("wheelcache fetch", "add --offline to use what it holds")
    target_text = request.target.describe()
    downloader = None
    early: EarlyTransfers | None = None
    try:
        if request.lock is not None:
            downloader = _downloader(request, cache, http, reporter)
            return _fetch_lock(request, request.lock, cache, downloader)
        plan = plan_fetch(
            request.requirements, request.torch_version, request.files, request.target
        )
        for text in plan.left_out:
            log.warning("leaving out %s: its marker does not hold on %s", text, target_text)
        pages = pages or PageStore(cache, http)
        key = None if request.dry_run else _request_key(request)
        threads = max(2 * request.jobs, 8)
        recalled = recall(cache, pages, key, request.target, threads) if key else None
        if recalled is not None:
            return _from_record(request, cache, plan, *recalled)
        downloader = _downloader(request, cache, http, reporter)
        finder = _finder(request, cache, http, downloader, pages)
        source = pinned_source(plan.pins, finder, finder.all_candidates, request.target)
        if downloader is not None:
            early = _early(downloader, finder, plan)
        resolution = _resolve(request, plan.roots, finder, source, early)
        _warn_unpinned(request.files, plan, resolution)
        requested = _requested_pins(plan.roots, resolution)
        if request.dry_run:
            if http is not None:
                _learn_sizes(http, finder, resolution.candidates, request.jobs)
            return _plan(request, cache, requested, resolution, finder.metadata.sizes)
        wheels = _download(resolution, cache, finder, early)
        result = _write_outputs(request, cache, resolution, requested, wheels, downloader)
        if key is not None and not finder.metadata.failed:
            remember(cache, pages, key, resolution, wheels, _said(resolution))
        return result
    except BaseException:
        if http is not None:
            http.cancel()
        if downloader is not None:
            # Started transfers save their partials and stop; a whole-wheel metadata read in
            # another thread stops too.
            downloader.cancel.set()
        raise
    finally:
        if early is not None:
            early.close()  # a page judged late starts nothing now
        if downloader is not None:
            downloader.close()


def _warn_unpinned(
    files: RequirementSet | None, plan: RequirementPlan, resolution: Resolution
) -> None:
    """pip's hash-checking mode needs every file pinned; say which ones the files did not."""
    loose = unpinned(plan, resolution) if files is not None and files.hash_checking else []
    if loose:
        log.warning(
            "the requirement files pin hashes, but %d project(s) were resolved without a pin: "
            "%s (the requirements file wheelcache writes pins every one)",
            len(loose),
            ", ".join(loose),
        )


def _downloader(
    request: FetchRequest, cache: Cache, http: Http | None, reporter: Reporter | None
) -> Downloader | None:
    """The run's downloader; none offline, and none in a dry run, which stores no wheel, not
    even for metadata (see ``WheelMetadata._whole``)."""
    if http is None or request.dry_run:
        return None
    from wheelcache.net.download import Downloader

    return Downloader(http, cache, reporter, jobs=request.jobs, settings=request.transfer)


def _early(downloader: Downloader, finder: IndexFinder, plan: RequirementPlan) -> EarlyTransfers:
    """Each wheel's transfer starts as soon as the resolver pins it (torch's family together)."""
    from wheelcache.net.early import EarlyTransfers

    return EarlyTransfers(
        downloader,
        lambda c: _job(c, finder),
        hold_together=(r.name for r in plan.roots if is_torch_family(r.name)),
    )


def _finder(
    request: FetchRequest,
    cache: Cache,
    http: Http | None,
    downloader: Downloader | None,
    pages: PageStore | None,
) -> IndexFinder:
    """Candidates and metadata for the request's target, from the indexes it names."""
    from wheelcache.net.finder import IndexFinder, WheelMetadata
    from wheelcache.net.indexes import Indexes, Sources, with_file_options

    metadata = WheelMetadata(cache, http, downloader)
    target = request.target
    torch_url, per_variant = torch_index_for(request.torch_index, target.variant)
    index_urls = tuple(u.rstrip("/") for u in request.index_urls)
    sources = Sources(torch_url, per_variant, index_urls, request.mirrors)
    if request.files is not None:
        sources = with_file_options(sources, request.files)
    indexes = Indexes(sources, pages or PageStore(metadata.cache, metadata.http), target.variant)
    return IndexFinder(
        target,
        indexes,
        metadata,
        # Pages and metadata are small and wait on round trips, not bandwidth: more of them
        # in flight than files being downloaded.
        prefetch=max(2 * request.jobs, 8),
        prefetch_metadata=not request.no_deps,
        allow_prereleases=request.allow_prereleases or bool(request.files and request.files.pre),
    )


def _resolve(
    request: FetchRequest,
    reqs: Sequence[Req],
    finder: IndexFinder,
    source: CandidateSource,
    early: EarlyTransfers | None,
) -> Resolution:
    """Run the resolver with prefetching, starting each pinned wheel's transfer at once
    (*early*); warn about yanked files taken by an exact pin."""
    from wheelcache.core.provider import resolve
    from wheelcache.net.finder import likely_choice

    wanted: dict[NormalizedName, SpecifierSet] = {}
    for r in reqs:  # "torch" and --torch's "torch==2.4.0" prefetch one torch, the pinned one
        wanted[r.name] = wanted.get(r.name, SpecifierSet()) & r.specifier
    if early is not None:  # before the first page is judged
        pre = finder.allow_prereleases
        early.expect(
            wanted,
            source.find_candidates,
            likely=(lambda cands, spec: likely_choice(cands, spec, pre))
            if request.no_deps
            else None,
        )
        finder.on_listed = early.listed
    finder.require(wanted)
    try:
        resolution = resolve(
            reqs,
            request.target,
            source,
            finder,
            allow_prereleases=request.allow_prereleases
            or bool(request.files and request.files.pre),
            no_deps=request.no_deps,
            on_pin=early.on_pin if early is not None else None,
        )
    except BaseException as exc:
        try:
            if isinstance(exc, ResolutionError):
                for line in exc.details:  # every requirement chain behind the summary, for -v
                    log.info("%s", line)
                # Before the client is cancelled: a root's page may still be on its way (a
                # prefetch), and a cancelled client would refuse it.
                _no_project_at_all(reqs, finder)
        finally:
            if finder.metadata.http is not None:
                finder.metadata.http.cancel()  # wake prefetch threads sleeping in a retry
            finder.close(wait=False)
        raise
    finder.close()
    _say(*_said(resolution))
    return resolution


def _said(resolution: Resolution) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """What the user hears about a resolution: warnings (a missing extra, a companion
    matched by deduction, a yanked file taken because it was pinned exactly) and notes (why
    each companion goes with the chosen torch, for -v)."""
    yanked = tuple(
        f"{c.file.filename} is yanked ({c.file.yanked_reason or 'no reason given'}); taken "
        "because it was pinned exactly"
        for c in resolution.candidates
        if c.file.yanked
    )
    return (*resolution.warnings, *yanked), resolution.notes


def _say(warnings: Sequence[str], notes: Sequence[str]) -> None:
    for line in warnings:
        log.warning("%s", line)
    for line in notes:
        log.info("%s", line)


def _request_key(request: FetchRequest) -> str:
    """Everything the choice of wheels depends on besides the pages it reads (see
    :mod:`wheelcache.core.resolved`): not ``--dest``, ``--offline`` or the transfer settings."""
    return request_key(
        {
            "wheelcache": __version__,
            "target": request.target,
            "requirements": request.requirements,
            "torch": request.torch_version,
            "torch_index": request.torch_index,
            "index_urls": request.index_urls,
            "mirrors": request.mirrors,
            "pre": request.allow_prereleases,
            "no_deps": request.no_deps,
            "files": request.files,
        }
    )


def _from_record(
    request: FetchRequest,
    cache: Cache,
    plan: RequirementPlan,
    record: ResolvedRecord,
    resolution: Resolution,
    wheels: list[CachedWheel],
) -> FetchResult:
    """The outputs of a recalled resolution (:mod:`wheelcache.jobs.remembered`): what it said
    is said again, then the same files as a resolution would have written."""
    _say(record.warnings, record.notes)
    _warn_unpinned(request.files, plan, resolution)
    requested = _requested_pins(plan.roots, resolution)
    return _write_outputs(request, cache, resolution, requested, wheels, None)


def _no_project_at_all(reqs: Sequence[Req], finder: IndexFinder) -> None:
    """An index that has none of the projects asked for (a 404 or a page without files for
    each) is most likely no package index at all: say that, not what cannot be resolved."""
    empty: dict[str, list[str]] = {}
    junk = False  # a page that lists no file at all: no package index answers like that
    for name in dict.fromkeys(r.name for r in reqs):
        try:
            page = finder.page(name)
        except WheelcacheError:
            return
        if page is not None and page.files:
            return
        junk = junk or page is not None
        empty.setdefault(finder.indexes.where(name), []).append(name)
    where, names = next(iter(empty.items()))
    if len(names) == 1 and not junk:
        return  # one project an index does not have: the resolver's line says so
    option = "--torch-index" if is_torch_family(names[0]) else "--index-url"
    raise ResolutionError(
        f"{where} has none of {', '.join(names)} (no page, or a page without files): is it a "
        f"package index? Check {option}"
    )


def _download(
    resolution: Resolution, cache: Cache, finder: IndexFinder, early: EarlyTransfers | None
) -> list[CachedWheel]:
    """The resolved wheels in the cache, downloading what is missing (offline: none); most
    transfers started while the resolver was still working."""
    if early is None:
        found = [cache.find(c.file.filename, c.file.sha256) for c in resolution.candidates]
        missing = [
            c.file.filename for c, w in zip(resolution.candidates, found, strict=True) if w is None
        ]
        if missing:
            raise CacheError(
                f"--offline: {len(missing)} wheel(s) are not in the cache "
                f"({', '.join(missing[:3])}{' …' if len(missing) > 3 else ''}); "
                "run once without --offline"
            )
        return [w for w in found if w is not None]
    # The lock's validator (packaging.pylock, about 15 ms of imports) loads while the
    # transfers run: this thread would only wait for them, and the lock is written after.
    import packaging.pylock  # noqa: F401

    return early.finish(resolution, finder.metadata.sizes)


def _write_outputs(
    request: FetchRequest,
    cache: Cache,
    resolution: Resolution,
    requested: tuple[str, ...],
    wheels: Sequence[CachedWheel],
    downloader: Downloader | None,
) -> FetchResult:
    """Record the target, place the wheels (``--dest``) and write the requirements file.

    A read-only cache (``--offline`` only) records nothing and gets no requirements file; a
    ``--dest`` folder gets one as always.
    """
    target, dest = request.target, request.dest
    if dest is not None:
        try:
            dest.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CacheError(describe_os_error(exc, dest, _DEST_FIX)) from exc
    if not cache.read_only:
        cache.catalog.add_targets([w.sha256 for w in wheels], target.describe())
    transferred = downloader.transferred if downloader is not None else set()
    files = [
        FetchedFile(
            w.filename,
            c.name,
            str(c.version),
            _place(w, dest) if dest is not None else w.path,
            w.sha256,
            w.blake3,
            w.size,
            c.file.url,
            "network" if c.file.filename in transferred else "cache",
            resolution.required_by.get(c.name, ()),
            c.file.upload_time,
        )
        for c, w in zip(resolution.candidates, wheels, strict=True)
    ]
    wheels_dir = dest if dest is not None else Path(cache.layout.wheels)
    req_name = (
        "requirements.txt"
        if dest is not None
        else f"requirements-{target.variant}-{target.abi}-{target.platform}.txt"
    )
    req_file: Path | None = wheels_dir / req_name
    lock_file: Path | None = wheels_dir / lock_filename(target)
    texts = {
        req_name: _requirements_text(files).encode(),
        lock_filename(target): pylock_text([f.locked() for f in files], target).encode(),
    }
    if dest is not None:
        for name, data in texts.items():
            _write_file(dest / name, data)
    elif cache.read_only:
        log.warning(
            "the cache is read-only: no requirements file or lock (--dest DIR writes them there)"
        )
        req_file = lock_file = None
    else:
        for name, data in texts.items():
            cache.write_atomic(wheels_dir / name, data)
    downloaded = downloader.downloaded_bytes if downloader is not None else 0
    return FetchResult(
        target,
        requested,
        tuple(files),
        wheels_dir,
        req_file,
        False,
        downloaded,
        lock_file,
        request.files.reported() if request.files else (),
    )


def _fetch_lock(
    request: FetchRequest, lock_path: Path, cache: Cache, downloader: Downloader | None
) -> FetchResult:
    """Exactly the lock's wheels for the target: no index, no resolution (see
    :mod:`wheelcache.net.locked`); a lock that does not fit is refused before any transfer."""
    from wheelcache.net.locked import fetch_locked, lock_candidates

    files = lock_candidates(lock_path, request.target)
    resolution = Resolution(tuple(lf.candidate for lf in files), {})
    requested = tuple(f"{c.name}=={c.version}" for c in resolution.candidates)
    if request.dry_run:
        return _plan(request, cache, requested, resolution, {})
    wheels = fetch_locked(files, cache, downloader)
    return _write_outputs(request, cache, resolution, requested, wheels, downloader)


def _plan(
    request: FetchRequest,
    cache: Cache,
    requested: tuple[str, ...],
    resolution: Resolution,
    sizes: Mapping[str, int],
) -> FetchResult:
    """``--dry-run``: what would be fetched, and what the cache has already."""
    plan = tuple(_planned(c, cache, sizes, resolution) for c in resolution.candidates)
    index = request.files.reported() if request.files else ()
    wheels_dir = Path(cache.layout.wheels)
    return FetchResult(request.target, requested, plan, wheels_dir, None, True, 0, None, index)


def _write_file(path: Path, data: bytes) -> None:
    """Write a small file into ``--dest`` atomically (a temp file beside it, then a rename)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise CacheError(describe_os_error(exc, path, _DEST_FIX)) from exc


def _learn_sizes(http: Http, finder: IndexFinder, cands: Sequence[Candidate], jobs: int) -> None:
    """HEAD the files whose size no page told us, in parallel (for the dry-run total)."""
    sizes = finder.metadata.sizes
    unknown = [c.file.url for c in cands if not c.file.size and c.file.url not in sizes]
    if not unknown:
        return
    with concurrent.futures.ThreadPoolExecutor(max(1, jobs)) as pool:
        for url, size in zip(unknown, pool.map(http.content_length, unknown), strict=True):
            if size is not None:
                sizes[url] = size


def torch_available(request: FetchRequest, pages: PageStore) -> bool:
    """Whether the PyTorch index has a torch wheel (matching ``--torch``) for the target.

    Used by ``--cuda auto`` to skip variants the index does not publish for this target; one
    page request per variant, through the command's one page store (*pages*: its client is
    None offline).
    """
    from wheelcache.net.finder import IndexFinder, WheelMetadata
    from wheelcache.net.indexes import Indexes, Sources

    target = request.target
    torch_url, per_variant = torch_index_for(request.torch_index, target.variant)
    indexes = Indexes(Sources(torch_url, per_variant, ()), pages, target.variant)
    metadata = WheelMetadata(pages.cache, pages.http, None)
    finder = IndexFinder(target, indexes, metadata, prefetch=0)
    try:
        cands = finder.find_candidates(canonicalize_name("torch"))
    except (TargetError, IndexPageError):
        return False
    pin = SpecifierSet(f"=={request.torch_version}") if request.torch_version else SpecifierSet()
    return any(pin.contains(c.version, prereleases=True) for c in cands)


def _planned(c: Candidate, cache: Cache, sizes: Mapping[str, int], res: Resolution) -> FetchedFile:
    cached = cache.find(c.file.filename, c.file.sha256)
    f = c.file
    return FetchedFile(
        filename=f.filename,
        project=c.name,
        version=str(c.version),
        path=cached.path if cached else None,
        sha256=cached.sha256 if cached else f.sha256,
        blake3=cached.blake3 if cached else None,
        size=cached.size if cached else (f.size or sizes.get(f.url)),
        url=f.url,
        source="cache" if cached else "planned",
        required_by=res.required_by.get(c.name, ()),
        upload_time=f.upload_time,
    )
