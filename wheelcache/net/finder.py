"""Candidates and metadata from real indexes (the edge half of resolution).

:class:`WheelMetadata` reads a wheel's core metadata, cheapest first: the cache; a wheel
already in the cache; the PEP 658 ``.metadata`` file; the METADATA member read from the remote
zip with HTTP range requests; and, only when the server ignores ranges, the whole wheel, which
then stays in the cache.  :class:`IndexFinder` judges a project's files for a target (the
pages come from :class:`~wheelcache.net.indexes.Indexes`) and prefetches what resolution
will ask for next.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import logging
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path

from blake3 import blake3
from packaging.specifiers import SpecifierSet
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import Version

from wheelcache.core.evaluator import (
    Candidate,
    Evaluation,
    best_per_version,
    describe_availability,
    evaluate_file,
)
from wheelcache.core.models import (
    Blake3,
    CoreMetadata,
    DistFile,
    ProjectPage,
    Sha256,
    parse_core_metadata,
)
from wheelcache.core.target import Target
from wheelcache.core.variants import build_variant, describe_builds, is_torch_family
from wheelcache.core.zipmeta import (
    MAX_METADATA,
    TAIL_SIZE,
    ZipFormatError,
    ZipLimitError,
    find_metadata_entry,
    locate_central_directory,
    read_local_entry,
)
from wheelcache.errors import (
    DownloadError,
    HashMismatchError,
    MetadataError,
    ResponseTooLargeError,
    WheelcacheError,
)
from wheelcache.net.client import Http
from wheelcache.net.download import Downloader, DownloadJob
from wheelcache.net.indexes import Indexes
from wheelcache.store.cache import Cache, CachedWheel
from wheelcache.store.metadata import read_wheel_metadata

__all__ = ["IndexFinder", "WheelMetadata"]

log = logging.getLogger(__name__)

#: Versions of one project kept as candidates (the newest); botocore, with a release nearly
#: every day since 2012, has about 2,000.
MAX_VERSIONS = 10_000

_TORCH = canonicalize_name("torch")
_WHOLE_LIMIT = 8 << 30
_IDENTITY = {"Accept-Encoding": "identity"}  # the bytes of the file, not a compressed form


class WheelMetadata:
    """The provider's ``MetadataSource``: a wheel's core metadata, cached on disk.

    With ``http=None`` (``--offline``) only the cache answers.  *downloader* is needed only
    for servers that ignore ranges (without one, such a wheel's metadata is an error).
    """

    def __init__(self, cache: Cache, http: Http | None, downloader: Downloader | None) -> None:
        self.cache = cache
        self.http = http
        self.downloader = downloader
        self._lock = threading.Lock()
        self._md_locks: dict[str, threading.Lock] = {}
        #: The largest .metadata file or METADATA member read (``--max-metadata-size``).
        self.limit = http.settings.max_metadata if http is not None else MAX_METADATA
        #: Sizes learnt on the way (range reads tell the total), for ``--dry-run``.
        self.sizes: dict[str, int] = {}
        #: Whether any metadata could not be read in this run: the resolution may then have
        #: passed over a candidate it would take another time, so it is not remembered.
        self.failed = False

    def get_metadata(self, candidate: Candidate) -> CoreMetadata:
        """Parse the candidate's METADATA; a damaged stored copy is fetched once more."""
        try:
            return self._get_metadata(candidate)
        except BaseException:
            self.failed = True
            raise

    def _get_metadata(self, candidate: Candidate) -> CoreMetadata:
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
        return md

    def _store_metadata(self, f: DistFile, data: bytes) -> bytes:
        # Not fsynced (it sits on the resolver's path): a copy torn by a power loss does not
        # parse and is fetched again (get_metadata).
        self.cache.write_atomic(Path(self.cache.layout.metadata(f.url)), data, durable=False)
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
            return self._store_metadata(
                f, self._from_wheel(cached.path, f.filename, candidate.name)
            )
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
        except ZipLimitError as exc:  # a lie or a bomb: a whole download would be one too
            raise MetadataError(f.filename, f"{exc}; refused") from exc
        except (ZipFormatError, DownloadError) as exc:
            self._stop_if_cancelled(f, exc)
            log.warning("%s: range read failed (%s); downloading the whole wheel", f.filename, exc)
            data = None
        if data is None:
            self._stop_if_cancelled(f, None)
            data = self._whole(candidate)
        return self._store_metadata(f, data)

    def _stop_if_cancelled(self, f: DistFile, exc: Exception | None) -> None:
        """A cancelled run (Ctrl-C, an error elsewhere) reads no more and says nothing: its
        failures are not the server's (a cancelled range read is no missing range support)."""
        if self.http is not None and self.http.cancelled.is_set():
            raise MetadataError(f.filename, "cancelled") from exc

    def _pep658(self, f: DistFile) -> bytes | None:
        assert self.http is not None
        try:
            r = self.http.get(f.metadata_url, limit=self.limit, what="the .metadata file is")
        except ResponseTooLargeError as exc:
            raise MetadataError(f.filename, f"{exc.reason}; refused") from exc
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
        entry = find_metadata_entry(cd_bytes, f.filename.split("-", 1)[0], self.limit)
        start, end = entry.read_span
        end = min(end, total - 1)
        if start >= tail_start:
            span = tail.data[start - tail_start : end - tail_start + 1]
        else:
            got = self.http.get_range(f.url, start, end)
            if got is None:
                return None
            span = got.data
        return read_local_entry(entry, span, self.limit)

    def _whole(self, candidate: Candidate) -> bytes:
        """The METADATA of a wheel whose server ignores ranges: the whole wheel is read, and
        stays in the cache, so the run that installs it transfers nothing again.

        Through the downloader (resumable, several connections); a failed or cancelled read
        leaves no partial.  A dry run has no downloader: one plain request into a temp file,
        never ``partial-v1/`` (:meth:`_read_whole_once`).
        """
        f = candidate.file
        log.warning(
            "%s: the server does not support ranges; reading it whole for its metadata (it "
            "stays in the cache)",
            f.filename,
        )
        if self.downloader is None:
            wheel = self._read_whole_once(candidate)
        else:
            job = DownloadJob(
                f.url, f.filename, candidate.name, str(candidate.version), f.sha256, f.size
            )
            try:
                wheel = self.downloader.fetch(job)
            except BaseException:
                self.downloader.discard(job)
                raise
        return self._from_wheel(wheel.path, f.filename, candidate.name)

    def _from_wheel(self, path: Path, filename: str, project: str) -> bytes:
        """The wheel's own METADATA (not a vendored project's), read with every size bounded
        (:func:`~wheelcache.store.metadata.read_wheel_metadata`)."""
        try:
            return read_wheel_metadata(path, project, self.limit)
        except ZipLimitError as exc:
            raise MetadataError(filename, f"{exc}; refused") from exc
        except (OSError, ValueError) as exc:
            raise MetadataError(filename, f"cannot read the wheel: {exc}") from exc

    def _read_whole_once(self, candidate: Candidate) -> CachedWheel:
        """One GET into a temp file of the cache, both digests while the bytes arrive; stored
        when the sha256 is the index's, dropped on any failure (bounded by the index's size,
        else 8 GiB)."""
        assert self.http is not None
        f = candidate.file
        tmp = self.cache.temp_path(".whl")
        sha, b3, size = hashlib.sha256(), blake3(), 0
        limit = f.size or _WHOLE_LIMIT
        try:
            with open(tmp, "wb") as fh, self.http.stream(f.url, _IDENTITY) as r:
                if r.status != 200:
                    raise MetadataError(f.filename, f"HTTP {r.status} for the whole wheel")
                for chunk in r.chunks:
                    if self.http.cancelled.is_set():
                        raise MetadataError(f.filename, "cancelled")
                    fh.write(chunk)
                    sha.update(chunk)
                    b3.update(chunk)
                    size += len(chunk)
                    if size > limit:
                        raise MetadataError(f.filename, f"longer than {limit} bytes")
                fh.flush()
                os.fsync(fh.fileno())
            if f.sha256 is not None and sha.hexdigest() != f.sha256:
                raise HashMismatchError(f.url, f.filename, f.sha256, sha.hexdigest())
            return self.cache.ingest(
                tmp,
                sha256=Sha256(sha.hexdigest()),
                blake3=Blake3(b3.hexdigest()),
                size=size,
                filename=f.filename,
                project=candidate.name,
                version=str(candidate.version),
                url=f.url,
                hash_origin="index" if f.sha256 else "computed",
            )
        except DownloadError as exc:
            tmp.unlink(missing_ok=True)
            raise MetadataError(f.filename, exc.reason) from exc
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise


class IndexFinder:
    """Implements both ``CandidateSource`` and ``MetadataSource`` for the provider.

    Resolution asks for one project at a time; on a link with a long round trip the pages and
    metadata it will want next are fetched ahead, in parallel (*prefetch* threads).
    """

    def __init__(
        self,
        target: Target,
        indexes: Indexes,
        metadata: WheelMetadata,
        *,
        prefetch: int = 8,
        prefetch_metadata: bool = True,
        allow_prereleases: bool = False,
    ) -> None:
        self.target = target
        self.indexes = indexes
        self.metadata = metadata
        self._cands: dict[NormalizedName, list[Candidate]] = {}
        self._judging = threading.Lock()  # one page parsed and judged at a time
        #: torch release → which build a plain index has of it for the target (see
        #: :meth:`_builds_of_the_variant`); empty for a per-variant index.
        self.builds: dict[Version, str] = {}
        self._lock = threading.Lock()
        self._warmed: set[tuple[NormalizedName, str]] = set()
        self._warmed_metadata: set[str] = set()
        self._roots: dict[NormalizedName, SpecifierSet] = {}
        self._project_locks: dict[NormalizedName, threading.Lock] = {}
        self._prefetch_metadata = prefetch_metadata
        self.allow_prereleases = allow_prereleases
        #: Called with each project's name once its candidates are known (in the thread that
        #: judged its page): early transfers start from it.
        self.on_listed: Callable[[NormalizedName], None] | None = None
        self._pool = (
            concurrent.futures.ThreadPoolExecutor(prefetch, thread_name_prefix="wheelcache-pre")
            if metadata.http is not None and prefetch > 0
            else None
        )

    def close(self, *, wait: bool = True) -> None:
        """Stop prefetching: queued work is dropped; running requests finish, or with
        ``wait=False`` (an interrupted run) are left to fail on the cancelled client."""
        if self._pool is not None:
            self._pool.shutdown(wait=wait, cancel_futures=True)

    # -- prefetching ------------------------------------------------------------------------
    def prefetch(
        self, wanted: Iterable[NormalizedName | tuple[NormalizedName, SpecifierSet]]
    ) -> None:
        """Load these projects' pages, and the metadata of the candidate the resolver will
        most likely take (the newest one a given specifier allows), in the background."""
        if self._pool is None:
            return
        for item in wanted:
            name, spec = (item, SpecifierSet()) if isinstance(item, str) else item
            with self._lock:
                if (name, str(spec)) in self._warmed:
                    continue
                self._warmed.add((name, str(spec)))
            try:
                self._pool.submit(self._warm, name, spec)
            except RuntimeError:  # shut down
                return

    def require(self, roots: Mapping[NormalizedName, SpecifierSet]) -> None:
        """The user's requirements: every resolution satisfies them, so what is fetched
        ahead for a project is narrowed by them too (a companion's ``torch==2.5.1`` does not
        fetch torch 2.5.1's metadata when torch is pinned to 2.4.0), then prefetch them."""
        self._roots = dict(roots)
        self.prefetch(self._roots.items())

    def _warm(self, name: NormalizedName, spec: SpecifierSet) -> None:
        try:
            cands = self.find_candidates(name)
            spec = spec & self._roots.get(name, SpecifierSet())
            likely = likely_choice(cands, spec, self.allow_prereleases)
            if likely is not None and self._prefetch_metadata:
                self._warm_metadata(likely)
        except WheelcacheError as exc:  # the resolver meets it again if it matters
            log.debug("prefetch of %s: %s", name, exc)

    def _warm_metadata(self, candidate: Candidate) -> None:
        with self._lock:
            if candidate.file.url in self._warmed_metadata:
                return
            self._warmed_metadata.add(candidate.file.url)
        self._metadata_and_dependencies(candidate)

    def _prefetch_dependencies(self, md: CoreMetadata) -> None:
        env = {**self.target.marker_environment, "extra": ""}
        self.prefetch(
            (canonicalize_name(r.name), r.specifier)
            for r in md.requires_dist
            if r.marker is None or r.marker.evaluate(env)
        )

    def _prefetch_next(self, candidate: Candidate) -> None:
        """The resolver asked for a torch-family wheel's metadata: the next older candidate
        is the one a backtrack over the companions' pins asks for next — unless the user's
        own requirement rules it out (``--torch 2.4.0``: no torch 2.3.1, whose metadata
        may cost three range reads of a multi-GB wheel)."""
        if self._pool is None or not self._prefetch_metadata or not is_torch_family(candidate.name):
            return
        with self._lock:
            cands = self._cands.get(candidate.name, [])
        root = self._roots.get(candidate.name, SpecifierSet())  # never one the user excluded
        older = [
            c
            for c in cands
            if c.version < candidate.version
            and not c.file.yanked
            and root.contains(c.version, prereleases=True)
        ]
        if older:
            try:
                self._pool.submit(self._warm_next, older[0])
            except RuntimeError:  # shut down
                pass

    def _warm_next(self, candidate: Candidate) -> None:
        try:
            self._warm_metadata(candidate)
        except WheelcacheError as exc:
            log.debug("prefetch of %s: %s", candidate.file.filename, exc)

    def page(self, name: NormalizedName) -> ProjectPage | None:
        return self.indexes.page(name)

    # -- CandidateSource ------------------------------------------------------------------
    def find_candidates(self, name: NormalizedName) -> list[Candidate]:
        with self._lock:
            if name in self._cands:
                return self._cands[name]
            project_lock = self._project_locks.setdefault(name, threading.Lock())
        with project_lock:  # a prefetch and the resolver: one parse and one judging, not two
            with self._lock:
                if name in self._cands:
                    return self._cands[name]
            return self._judge(name)

    def _judge(self, name: NormalizedName) -> list[Candidate]:
        """Parse and judge *name*'s page.  Pages are parsed and judged one at a time (it is
        all under the GIL anyway), so prefetch threads never hold several big pages and their
        judgings at once; the page bytes are fetched first, in parallel
        (:meth:`Indexes.fetch`).  At most :data:`MAX_VERSIONS` versions are kept, the newest,
        with a warning: a page listing more is not a real project."""
        self.indexes.fetch(name)
        with self._judging:
            page = self.page(name)
            cands = self._evaluate(name, page) if page is not None else []
        if page is not None and name == _TORCH and self.indexes.variant_for(name) is None:
            cands = self._builds_of_the_variant(cands)
        with self._lock:
            self._cands[name] = cands
        if self.on_listed is not None:
            self.on_listed(name)
        return cands

    def _evaluate(self, name: NormalizedName, page: ProjectPage) -> list[Candidate]:
        variant = self.indexes.variant_for(name)
        cands = best_per_version(
            self._logged(evaluate_file(f, name, self.target, variant=variant) for f in page.files)
        )
        if len(cands) > MAX_VERSIONS:
            log.warning(
                "%s lists %d versions for this target; only the newest %d are considered",
                page.url,
                len(cands),
                MAX_VERSIONS,
            )
            cands = cands[:MAX_VERSIONS]
        return cands

    @staticmethod
    def _logged(evaluations: Iterable[Evaluation]) -> Iterator[Evaluation]:
        """Each evaluation, the refused ones named at debug level (one at a time: a page of
        20,000 files for other platforms has as many reasons)."""
        debug = log.isEnabledFor(logging.DEBUG)
        for ev in evaluations:
            if debug and not ev.ok:
                log.debug("skip %s: %s", ev.file.filename, ev.reason)
            yield ev

    def all_candidates(self, name: NormalizedName) -> list[Candidate]:
        """Every file of *name* that fits the target, best first: a ``--hash`` pin may name a
        file that is not the best of its version (``pip-compile`` pins every file)."""
        page = self.page(name)
        if page is None:
            return []
        variant = self.indexes.variant_for(name)
        evaluations = (evaluate_file(f, name, self.target, variant=variant) for f in page.files)
        cands = [ev.candidate for ev in evaluations if ev.candidate is not None]
        return sorted(cands, key=lambda c: c.sort_key, reverse=True)

    def _builds_of_the_variant(self, cands: list[Candidate]) -> list[Candidate]:
        """On a plain torch index (no ``{variant}``: the package index, a mirror of it) each
        release has one build per platform, without ``+cu124``: keep the builds that are the
        variant asked for, judged from each wheel's own metadata (:func:`build_variant`), and
        remember what the others are, for :meth:`explain`."""
        envs = self.target.marker_environments

        def variant(c: Candidate) -> str | None:
            try:
                requires = self.metadata.get_metadata(c).requires_dist
            except WheelcacheError as exc:  # offline and never read, or a broken wheel
                log.debug("cannot tell which build %s is: %s", c.file.filename, exc)
                return None
            return build_variant(c.version, requires, envs)

        with concurrent.futures.ThreadPoolExecutor(8, thread_name_prefix="wheelcache-var") as pool:
            variants = list(pool.map(variant, cands))
        self.builds = {c.version: v for c, v in zip(cands, variants, strict=True) if v}
        want = self.target.variant
        return [c for c, v in zip(cands, variants, strict=True) if v == want]

    def explain(self, name: NormalizedName, specifier: SpecifierSet | None = None) -> str:
        page = self.page(name)
        if page is None:
            return f"{name} is not on {self.indexes.where(name)}"
        variant = self.indexes.variant_for(name)
        builds = {
            v: b
            for v, b in self.builds.items()
            if specifier is None or specifier.contains(v, prereleases=True)
        }
        if name == _TORCH and variant is None and builds:
            return (
                f"torch{specifier or ''} on {self.indexes.where(name)} (a plain index: each "
                f"build's variant read from its wheel) has no {self.target.variant} build for "
                f"{self.target.abi}-{self.target.platform}; it carries {describe_builds(builds)}"
            )
        return describe_availability(name, page.files, self.target, specifier, variant=variant)

    # -- MetadataSource -------------------------------------------------------------------
    def get_metadata(self, candidate: Candidate) -> CoreMetadata:
        self._prefetch_next(candidate)  # only for the resolver's own asks: no chains
        return self._metadata_and_dependencies(candidate)

    def _metadata_and_dependencies(self, candidate: Candidate) -> CoreMetadata:
        md = self.metadata.get_metadata(candidate)
        if self._prefetch_metadata:  # --no-deps: no dependency's page is ever read
            self._prefetch_dependencies(md)
        return md


def likely_choice(
    cands: Sequence[Candidate], spec: SpecifierSet, allow_prereleases: bool
) -> Candidate | None:
    """The candidate resolution takes first for *spec*: the newest it allows, skipping yanked
    files and pre-releases as the provider does (when anything else is left).

    Prefetching the newest file regardless (a yanked 3.16.2, an ``rc``, the version a pin
    rules out) costs a request the resolver never uses and leaves the one it wants unfetched.
    """
    pre = allow_prereleases or bool(spec.prereleases)
    allowed = [c for c in cands if spec.contains(c.version, prereleases=True)]
    kept = [c for c in allowed if not c.file.yanked]
    final = [c for c in kept if pre or not c.version.is_prerelease]
    best = final or kept
    return best[0] if best else None
