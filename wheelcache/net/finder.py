"""Candidate and metadata sources backed by real indexes (the edge half of resolution).

Routing: torch, torchvision and torchaudio come from the PyTorch index; every other project
from the first of ``index_urls`` that has a page for it.  One project never mixes files from
two indexes (that is how dependency confusion happens).

Metadata, cheapest first: the cache; a wheel already in the cache; the PEP 658 ``.metadata``
file; the METADATA member read from the remote zip with HTTP range requests; and, only when the
server ignores ranges, the whole wheel, which then stays in the cache.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import logging
import threading
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from packaging.specifiers import SpecifierSet
from packaging.utils import NormalizedName, canonicalize_name

from wheelcache.core.evaluator import (
    Candidate,
    best_per_version,
    describe_availability,
    evaluate_file,
)
from wheelcache.core.models import CoreMetadata, DistFile, ProjectPage, parse_core_metadata
from wheelcache.core.simple import PageParseError, parse_flat_page, parse_project_page
from wheelcache.core.target import Target
from wheelcache.core.variants import KNOWN_VARIANTS, is_torch_family
from wheelcache.core.zipmeta import (
    TAIL_SIZE,
    ZipFormatError,
    find_metadata_entry,
    locate_central_directory,
    read_local_entry,
)
from wheelcache.errors import (
    DownloadError,
    IndexPageError,
    IndexUnreachableError,
    MetadataError,
    TargetError,
    WheelcacheError,
)
from wheelcache.net.client import Http
from wheelcache.net.download import Downloader, DownloadJob
from wheelcache.net.pages import PageStore
from wheelcache.store.cache import Cache

__all__ = ["IndexFinder", "Mirror", "Sources"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Mirror:
    """A PyTorch wheel mirror: a PEP 503 tree per variant, or a flat listing per variant.

    ``url`` may contain ``{variant}``.  Files are matched by filename; their hashes still
    come from the official index whenever it can be reached.
    """

    url: str
    layout: str = "pep503"  # or "flat"

    def base(self, variant: str) -> str:
        return self.url.replace("{variant}", variant).rstrip("/")

    @classmethod
    def parse(cls, text: str) -> Mirror:
        """``URL`` (PEP 503 tree) or ``flat+URL`` (a directory listing of wheels)."""
        if text.startswith("flat+"):
            return cls(text[len("flat+") :], "flat")
        return cls(text.removeprefix("pep503+"), "pep503")


@dataclass(frozen=True, slots=True)
class Sources:
    """Where projects come from."""

    torch_index: str  # URL of the PyTorch index for this variant (no trailing slash)
    per_variant: bool  # True when it is a per-variant tree (local versions are filtered)
    index_urls: tuple[str, ...]  # everything else, first match wins
    mirrors: tuple[Mirror, ...] = ()  # PyTorch wheel mirrors (torch family only)


def _project_url(index: str, name: str) -> str:
    return f"{index.rstrip('/')}/{name}/"


class IndexFinder:
    """Implements both ``CandidateSource`` and ``MetadataSource`` for the provider."""

    def __init__(
        self,
        target: Target,
        sources: Sources,
        pages: PageStore,
        cache: Cache,
        http: Http | None,
        downloader: Downloader | None,
        *,
        prefetch: int = 8,
        prefetch_metadata: bool = True,
    ) -> None:
        self.target = target
        self.sources = sources
        self.pages = pages
        self.cache = cache
        self.http = http
        self.downloader = downloader
        self._pages: dict[NormalizedName, ProjectPage | None] = {}
        self._cands: dict[NormalizedName, list[Candidate]] = {}
        self._lock = threading.Lock()
        self._md_locks: dict[str, threading.Lock] = {}
        self._warmed: set[NormalizedName] = set()
        self._prefetch_metadata = prefetch_metadata
        # resolvelib asks for one project at a time; on a link with a long round trip the
        # pages and metadata it will want next are fetched ahead, in parallel.
        self._pool = (
            concurrent.futures.ThreadPoolExecutor(prefetch, thread_name_prefix="wheelcache-pre")
            if http is not None and prefetch > 0
            else None
        )
        #: Sizes learnt on the way (range reads tell the total), for ``--dry-run``.
        self.sizes: dict[str, int] = {}
        #: Projects listed from a mirror because the official index was unreachable.
        self.mirror_hashed: set[NormalizedName] = set()
        self._mirror_warned: set[str] = set()

    def close(self, *, wait: bool = True) -> None:
        """Stop prefetching: queued work is dropped; running requests finish, or with
        ``wait=False`` (an interrupted run) are left to fail on the cancelled client."""
        if self._pool is not None:
            self._pool.shutdown(wait=wait, cancel_futures=True)

    # -- prefetching ------------------------------------------------------------------------
    def prefetch(self, names: Iterable[NormalizedName]) -> None:
        """Load these projects' pages, and the newest candidate's metadata, in the background."""
        if self._pool is None:
            return
        for name in names:
            with self._lock:
                if name in self._warmed:
                    continue
                self._warmed.add(name)
            try:
                self._pool.submit(self._warm, name)
            except RuntimeError:  # shut down
                return

    def _warm(self, name: NormalizedName) -> None:
        try:
            cands = self.find_candidates(name)
            if cands and self._prefetch_metadata:
                self.get_metadata(cands[0])
        except WheelcacheError as exc:  # the resolver meets it again if it matters
            log.debug("prefetch of %s: %s", name, exc)

    def _prefetch_dependencies(self, md: CoreMetadata) -> None:
        env = {**self.target.marker_environment, "extra": ""}
        self.prefetch(
            canonicalize_name(r.name)
            for r in md.requires_dist
            if r.marker is None or r.marker.evaluate(env)
        )

    # -- pages ----------------------------------------------------------------------------
    def _get_page(self, url: str, name: NormalizedName) -> ProjectPage | None:
        resp = self.pages.get(url)
        for attempt in (1, 2):
            if resp.status == 404:
                return None
            try:
                return parse_project_page(
                    resp.body, content_type=resp.content_type, base_url=resp.url, project=name
                )
            except PageParseError as exc:
                if attempt == 2 or not resp.from_cache or self.http is None:
                    raise IndexPageError(url, f"cannot parse the page: {exc}") from exc
                # The stored copy is damaged (a bad answer once): ask again, unconditionally.
                log.warning("cached page %s is unreadable (%s); fetching it again", url, exc)
                resp = self.pages.get(url, fresh=True)
        raise AssertionError("unreachable")

    def page(self, name: NormalizedName) -> ProjectPage | None:
        with self._lock:
            if name in self._pages:
                return self._pages[name]
        if is_torch_family(name):
            url = _project_url(self.sources.torch_index, name)
            try:
                page = self._get_page(url, name)
            except IndexUnreachableError as exc:
                page = self._page_from_mirrors(name, exc)
            if page is None and self.sources.per_variant:
                self._check_variant_exists()
        else:
            page = None
            for index in self.sources.index_urls:
                page = self._get_page(_project_url(index, name), name)
                if page is not None:
                    break
        with self._lock:
            self._pages[name] = page
        return page

    # -- mirrors --------------------------------------------------------------------------
    def _mirror_files(self, mirror: Mirror, name: NormalizedName) -> dict[str, DistFile]:
        """The mirror's files of project *name*, by filename ({} when it cannot be read)."""
        base = mirror.base(self.target.variant)
        try:
            if mirror.layout == "flat":
                resp = self.pages.get(base + "/", accept="text/html")
                files = parse_flat_page(resp.body, base_url=resp.url) if resp.status == 200 else ()
            else:
                page = self._get_page(_project_url(base, name), name)
                files = page.files if page else ()
        except (IndexPageError, PageParseError) as exc:
            with self._lock:
                warned = base in self._mirror_warned
                self._mirror_warned.add(base)
            if not warned:
                log.warning("mirror %s cannot be read (%s); not using it", base, exc)
            return {}
        prefix = name.replace("-", "_") + "-"
        return {f.filename: f for f in files if f.filename.lower().startswith(prefix)}

    def mirror_urls(self, candidate: Candidate) -> tuple[str, ...]:
        """URLs of the same file on the configured mirrors (matched by filename)."""
        if not is_torch_family(candidate.name):
            return ()
        urls = []
        for mirror in self.sources.mirrors:
            f = self._mirror_files(mirror, candidate.name).get(candidate.file.filename)
            if f is not None and f.url != candidate.file.url:
                urls.append(f.url)
        return tuple(urls)

    def _page_from_mirrors(
        self, name: NormalizedName, exc: IndexUnreachableError
    ) -> ProjectPage | None:
        """The official index is down: list the project from the first mirror that has it."""
        for mirror in self.sources.mirrors:
            files = self._mirror_files(mirror, name)
            if files:
                hashed = any(f.sha256 for f in files.values())
                log.warning(
                    "%s; using mirror %s for %s: the hashes are the mirror's%s, not the "
                    "official index's",
                    exc,
                    mirror.base(self.target.variant),
                    name,
                    "" if hashed else " (it gives none: each file's computed hash is recorded)",
                )
                with self._lock:
                    self.mirror_hashed.add(name)
                listed = tuple(sorted(files.values(), key=lambda f: f.filename))
                return ProjectPage(name, mirror.base(self.target.variant), listed)
        raise exc

    def _check_variant_exists(self) -> None:
        root = self.sources.torch_index + "/"
        if self.pages.get(root).status == 404:
            raise TargetError(
                f"the PyTorch index has no variant {self.target.variant!r} ({root} not found); "
                f"known: {', '.join(KNOWN_VARIANTS)}"
            )

    # -- CandidateSource ------------------------------------------------------------------
    def find_candidates(self, name: NormalizedName) -> list[Candidate]:
        with self._lock:
            if name in self._cands:
                return self._cands[name]
        page = self.page(name)
        cands: list[Candidate] = []
        if page is not None:
            variant = (
                self.target.variant if is_torch_family(name) and self.sources.per_variant else None
            )
            evaluations = [evaluate_file(f, name, self.target, variant=variant) for f in page.files]
            for ev in evaluations:
                if not ev.ok:
                    log.debug("skip %s: %s", ev.file.filename, ev.reason)
            cands = best_per_version(evaluations)
        with self._lock:
            self._cands[name] = cands
        return cands

    def explain(self, name: NormalizedName, specifier: SpecifierSet | None = None) -> str:
        page = self.page(name)
        if page is None:
            where = (
                self.sources.torch_index
                if is_torch_family(name)
                else ", ".join(self.sources.index_urls) or "no index configured"
            )
            return f"{name} is not on {where}"
        variant = (
            self.target.variant if is_torch_family(name) and self.sources.per_variant else None
        )
        return describe_availability(name, page.files, self.target, specifier, variant=variant)

    # -- MetadataSource -------------------------------------------------------------------
    def get_metadata(self, candidate: Candidate) -> CoreMetadata:
        f = candidate.file
        with self._lock:
            lock = self._md_locks.setdefault(f.url, threading.Lock())
        with lock:  # a prefetch and the resolver may want the same file
            raw = self._metadata_bytes(candidate)
            try:
                md = parse_core_metadata(raw, source=f.filename)
            except ValueError as exc:
                stored = Path(self.cache.layout.metadata(f.url))
                if self.http is None or not stored.exists():
                    raise MetadataError(f.filename, str(exc)) from exc
                log.warning("cached metadata of %s is unreadable; fetching it again", f.filename)
                stored.unlink()
                try:
                    md = parse_core_metadata(self._metadata_bytes(candidate), source=f.filename)
                except ValueError as again:
                    raise MetadataError(f.filename, str(again)) from again
        self._prefetch_dependencies(md)
        return md

    def _store_metadata(self, f: DistFile, data: bytes) -> bytes:
        self.cache.write_atomic(Path(self.cache.layout.metadata(f.url)), data)
        return data

    def _metadata_bytes(self, candidate: Candidate) -> bytes:
        f = candidate.file
        path = Path(self.cache.layout.metadata(f.url))
        try:
            return path.read_bytes()
        except FileNotFoundError:
            pass
        cached = self.cache.find(f.filename, f.sha256)
        if cached is not None:
            return self._store_metadata(f, _metadata_from_wheel(cached.path, f.filename))
        if self.http is None:
            raise MetadataError(
                f.filename, "not in the cache; run once without --offline to fetch it"
            )
        if f.core_metadata:
            data = self._pep658(f)
            if data is not None:
                return self._store_metadata(f, data)
        try:
            data = self._ranged(f)
        except (ZipFormatError, DownloadError) as exc:
            log.warning("%s: range read failed (%s); downloading the whole wheel", f.filename, exc)
            data = None
        if data is None:
            data = self._whole(candidate)
        return self._store_metadata(f, data)

    def _pep658(self, f: DistFile) -> bytes | None:
        assert self.http is not None
        r = self.http.get(f.metadata_url)
        if r.status != 200:
            log.debug("%s: no .metadata (HTTP %d) despite the page", f.filename, r.status)
            return None
        data = r.content
        if f.core_metadata_sha256 is not None:
            got = hashlib.sha256(data).hexdigest()
            if got != f.core_metadata_sha256:
                raise MetadataError(
                    f.filename,
                    f".metadata sha256 is {got}, the index says {f.core_metadata_sha256}",
                )
        return data

    def _ranged(self, f: DistFile) -> bytes | None:
        assert self.http is not None
        tail = self.http.get_range(f.url, None, TAIL_SIZE)
        if tail is None:
            return None
        total = tail.total
        self.sizes[f.url] = total
        cd = locate_central_directory(tail.data, total)
        tail_start = total - len(tail.data)
        if cd.offset >= tail_start:
            cd_bytes = tail.data[cd.offset - tail_start : cd.offset - tail_start + cd.size]
        else:
            got = self.http.get_range(f.url, cd.offset, cd.offset + cd.size - 1)
            if got is None:
                return None
            cd_bytes = got.data
        entry = find_metadata_entry(cd_bytes, f.filename.split("-", 1)[0])
        start, end = entry.read_span
        end = min(end, total - 1)
        if start >= tail_start:
            span = tail.data[start - tail_start : end - tail_start + 1]
        else:
            got = self.http.get_range(f.url, start, end)
            if got is None:
                return None
            span = got.data
        return read_local_entry(entry, span)

    def _whole(self, candidate: Candidate) -> bytes:
        if self.downloader is None:
            raise MetadataError(candidate.file.filename, "no way to read it without a download")
        f = candidate.file
        log.warning(
            "%s: the server does not support ranges; downloading it whole to read "
            "its metadata (it stays in the cache)",
            f.filename,
        )
        wheel = self.downloader.fetch(
            DownloadJob(f.url, f.filename, candidate.name, str(candidate.version), f.sha256, f.size)
        )
        return _metadata_from_wheel(wheel.path, f.filename)


def _metadata_from_wheel(path: Path, filename: str) -> bytes:
    try:
        with zipfile.ZipFile(path) as zf:
            names = [
                n for n in zf.namelist() if n.count("/") == 1 and n.endswith(".dist-info/METADATA")
            ]
            if not names:
                raise MetadataError(filename, "the wheel has no .dist-info/METADATA")
            return zf.read(names[0])
    except (OSError, zipfile.BadZipFile) as exc:
        raise MetadataError(filename, f"cannot read the wheel: {exc}") from exc
