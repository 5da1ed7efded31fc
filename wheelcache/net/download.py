"""Downloads into the cache: several files at once, each resumable and verified.

A file's bytes go to ``partial-v1/<key>.part`` with its state in ``<key>.json`` (see
:mod:`wheelcache.net.transfer` for the transfer itself).  The key is the expected sha256 when the
index gave one, so a later run from another URL (a mirror) for the same file continues the same
partial.  A per-key file lock makes a second process wait for the first instead of downloading
the same file again.  Nothing becomes visible in the cache before its size and sha256 checked.
"""

from __future__ import annotations

import concurrent.futures
import json
import logging
import os
import threading
from dataclasses import dataclass, replace
from pathlib import Path

from wheelcache.core.layout import url_key
from wheelcache.core.models import Blake3, Sha256
from wheelcache.core.partial import PartialState
from wheelcache.core.progress import NullReporter, Reporter
from wheelcache.errors import CacheError, DownloadError, HashMismatchError, IncompleteDownloadError
from wheelcache.net.client import Http
from wheelcache.net.transfer import HostLimiter, Restart, StopFlag, Transfer, TransferSettings
from wheelcache.net.transfer_state import boot_marker
from wheelcache.store.cache import Cache, CachedWheel, describe_os_error, fsync_file

__all__ = ["DownloadJob", "Downloader", "TransferSettings"]

log = logging.getLogger(__name__)

STATE_PAD = 8 * 1024  # bytes reserved per state file (room for a few hundred segments)


@dataclass(frozen=True, slots=True)
class DownloadJob:
    url: str
    filename: str
    project: str
    version: str
    sha256: Sha256 | None = None
    size: int | None = None
    #: Other URLs with the same bytes (a CDN's main host, mirrors); segments are spread over
    #: all of them and a failing or slow one is dropped for this file.
    mirrors: tuple[str, ...] = ()
    #: URLs tried only once every other source has failed (a CDN file's path on the index's
    #: own host).
    fallbacks: tuple[str, ...] = ()
    hash_origin: str = "index"  # where ``sha256`` came from: "index" or "mirror"


class Downloader:
    """Downloads :class:`DownloadJob` s into a :class:`Cache`."""

    def __init__(
        self,
        http: Http,
        cache: Cache,
        reporter: Reporter | None = None,
        *,
        jobs: int = 4,
        settings: TransferSettings | None = None,
        per_host: int = 16,
    ) -> None:
        self.http = http
        self.cache = cache
        self.reporter: Reporter = reporter or NullReporter()
        self.jobs = max(1, jobs)
        self.settings = settings or TransferSettings()
        self.limiter = HostLimiter(max(per_host, 1))
        self.cancel = threading.Event()
        self.downloaded_bytes = 0
        self.transferred: set[str] = set()  # filenames this process downloaded
        self._count_lock = threading.Lock()
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._started: dict[str, concurrent.futures.Future[CachedWheel]] = {}
        self._abandoned: dict[str, threading.Event] = {}
        self._this_file = threading.local()

    def _count(self, n: int) -> None:
        with self._count_lock:
            self.downloaded_bytes += n

    # -- public ---------------------------------------------------------------------------
    def start(self, job: DownloadJob) -> concurrent.futures.Future[CachedWheel]:
        """Begin downloading *job* in the background (``self.jobs`` files at once) and return
        its future; starting a file again returns the same future (or restarts one that was
        abandoned).  Resolution calls this as it settles on each wheel."""
        with self._count_lock:
            started = self._started.get(job.filename)
            if started is not None and not self._abandoned[job.filename].is_set():
                return started
            if self._pool is None:
                self._pool = concurrent.futures.ThreadPoolExecutor(
                    self.jobs, thread_name_prefix="wheelcache"
                )
            stop = self._abandoned[job.filename] = threading.Event()
            future = self._pool.submit(self.fetch, job, stop)
            self._started[job.filename] = future
            return future

    def abandon(self, filename: str) -> None:
        """Stop a started download that is no longer wanted (a backtrack replaced it); its
        partial stays, so a later run that wants it resumes."""
        with self._count_lock:
            stop = self._abandoned.get(filename)
        if stop is not None:
            stop.set()

    def wait(self, futures: list[concurrent.futures.Future[CachedWheel]]) -> list[CachedWheel]:
        """The wheels of *futures*, in order; the first error is raised after every other
        download has stopped and saved its partial."""
        errors: list[BaseException] = []
        try:
            for fut in concurrent.futures.as_completed(futures):
                exc = fut.exception()
                if exc is not None:
                    errors.append(exc)
                    self.cancel.set()  # the run fails anyway: stop the others, keep partials
        except BaseException:
            self.cancel.set()  # Ctrl-C: transfers save their state and stop
            self.close()
            raise
        if errors:
            self.close()
            real = [e for e in errors if "cancelled" not in str(e)]
            raise (real or errors)[0]
        return [fut.result() for fut in futures]

    def close(self) -> None:
        """Wait for every started download to end (abandoned ones stop at once)."""
        with self._count_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=self.cancel.is_set())

    def fetch_many(self, jobs: list[DownloadJob]) -> list[CachedWheel]:
        """Download all *jobs* (``self.jobs`` files at once); the first error is raised after
        the others have stopped and saved their partials."""
        try:
            return self.wait([self.start(job) for job in jobs])
        finally:
            self.close()

    def fetch(self, job: DownloadJob, stop: threading.Event | None = None) -> CachedWheel:
        """Return the cached wheel for *job*, downloading it if needed; *stop* (set by
        :meth:`abandon`) ends the transfer early, keeping its partial."""
        stopping = _AnyOf(self.cancel, stop) if stop is not None else self.cancel
        found = self.cache.find(job.filename, job.sha256)
        if found is not None:
            return found
        key = job.sha256 or url_key(job.url)
        lock = self.cache.lock(key)
        if not lock.acquire(timeout=0):
            log.warning("%s: another wheelcache process is downloading it; waiting", job.filename)
            while not lock.acquire(timeout=1.0):
                if stopping.is_set():
                    raise CacheError(f"{job.filename}: cancelled while waiting for another process")
        try:
            found = self.cache.find(job.filename, job.sha256)
            if found is not None:  # the other process finished it
                return found
            # What this thread's transfers poll (a thread-local, so subclasses' _transfer
            # keeps its signature).
            self._this_file.stop = stopping
            return self._download(job, key)
        finally:
            self._this_file.stop = None
            lock.release()

    def discard(self, job: DownloadJob) -> None:
        """Remove what a failed or cancelled download of *job* left in ``partial-v1/`` (for a
        metadata read: a run that did not get that far has no use for its bytes); a partial
        another process or thread is writing is left alone."""
        key = job.sha256 or url_key(job.url)
        lock = self.cache.lock(key)
        if not lock.acquire(timeout=0):
            return
        try:
            _discard(*self._paths(key))
        finally:
            lock.release()

    # -- one file -------------------------------------------------------------------------
    def _paths(self, key: str) -> tuple[Path, Path]:
        part, state = self.cache.layout.partial_files(key)
        return Path(part), Path(state)

    def _fresh(self, job: DownloadJob) -> PartialState:
        return PartialState(job.url, job.filename, job.sha256, job.size)

    def _load_state(self, job: DownloadJob, part: Path, state_path: Path) -> PartialState:
        raw = self.cache.read_json(state_path)
        if raw is None or not part.exists():
            return self._fresh(job)
        try:
            st = PartialState.from_json(raw, boot_marker())
        except (KeyError, TypeError, ValueError):
            log.warning("%s: unreadable partial state; starting over", job.filename)
            return self._fresh(job)
        if st.filename != job.filename or (job.size and st.size and st.size != job.size):
            log.warning("%s: the partial download does not match; starting over", job.filename)
            return self._fresh(job)
        if st.url != job.url:
            # Same sha256 from another URL (a mirror): keep the bytes, but the validators
            # belong to the other server.
            st.url, st.etag, st.last_modified = job.url, None, None
        if st.done:
            log.warning(
                "resuming %s at %d of %s bytes", job.filename, st.done, st.size or "unknown"
            )
        return st

    def _save_state(self, st: PartialState, state_path: Path, *, durable: bool = True) -> None:
        """Save atomically; on a full disk, rewrite the padded state file in place.

        The padding reserves the blocks, so a disk that filled up during the download can
        still record how far it got (a consistent partial is worth keeping).
        """
        data = json.dumps(st.to_json()).encode()
        data += b" " * max(0, STATE_PAD - len(data))
        try:
            self.cache.write_atomic(state_path, data, durable=durable)
        except CacheError as exc:
            try:
                with open(state_path, "r+b") as fh:
                    fh.write(data)
                    fh.truncate()
                    fh.flush()
                    os.fsync(fh.fileno())
            except OSError:
                raise exc from None
            log.warning("%s: disk full; saved the download state in place", st.filename)

    def _transfer(
        self,
        st: PartialState,
        part: Path,
        state_path: Path,
        mirrors: tuple[str, ...],
        fallbacks: tuple[str, ...] = (),
    ) -> tuple[str, str, int]:
        return Transfer(
            self.http,
            st,
            part,
            settings=self.settings,
            limiter=self.limiter,
            reporter=self.reporter,
            cancel=getattr(self._this_file, "stop", None) or self.cancel,
            save=lambda snapshot, durable: self._save_state(snapshot, state_path, durable=durable),
            count=self._count,
            mirrors=mirrors,
            fallbacks=fallbacks,
        ).run()

    def _download(self, job: DownloadJob, key: str) -> CachedWheel:
        part, state_path = self._paths(key)
        st = self._load_state(job, part, state_path)
        resumed = st.done > 0
        try:
            try:
                sha, b3, size = self._transfer(st, part, state_path, job.mirrors, job.fallbacks)
                if resumed and job.sha256 is not None and sha != job.sha256:
                    # Bytes an earlier run counted did not survive (a power loss between two
                    # syncs): fetch the file again rather than fail on our own partial.
                    raise Restart("the partial from an earlier run did not verify")
            except Restart as why:
                log.warning("%s: %s; starting over from byte 0", job.filename, why)
                _discard(part, state_path)
                self.reporter.file_restarted(job.filename)
                try:
                    sha, b3, size = self._transfer(
                        self._fresh(job), part, state_path, job.mirrors, job.fallbacks
                    )
                except Restart as again:
                    _discard(part, state_path)
                    raise IncompleteDownloadError(
                        job.url, f"{again} (again after starting over)"
                    ) from again
            if job.sha256 is not None and sha != job.sha256 and (job.mirrors or job.fallbacks):
                sha, b3, size = self._one_source_at_a_time(job, part, state_path, sha)
        except DownloadError:
            if _nothing_kept(part):  # a 404, a bad URL: no byte to resume, leave no partial
                _discard(part, state_path)
            raise
        finally:
            self.reporter.file_finished(job.filename)
        return self._finish(job, part, state_path, Sha256(sha), Blake3(b3), size)

    def _one_source_at_a_time(
        self, job: DownloadJob, part: Path, state_path: Path, got: str
    ) -> tuple[str, str, int]:
        """Some source served wrong bytes: try each alone, and keep the first that verifies."""
        log.warning(
            "%s: the bytes do not match the index's sha256 (got %s); fetching it "
            "from each source alone",
            job.filename,
            got,
        )
        for url in (job.url, *job.mirrors, *job.fallbacks):
            _discard(part, state_path)
            alone = replace(self._fresh(job), url=url)
            try:
                result = self._transfer(alone, part, state_path, ())
            except (Restart, DownloadError) as exc:
                log.warning("%s: %s failed: %s", job.filename, url, exc)
                continue
            if result[0] == job.sha256:
                return result
            log.warning(
                "%s: %s serves bytes with sha256 %s, not the index's %s; rejected",
                job.filename,
                url,
                result[0],
                job.sha256,
            )
        _discard(part, state_path)
        assert job.sha256 is not None
        raise HashMismatchError(job.url, job.filename, job.sha256, got)

    def _finish(
        self, job: DownloadJob, part: Path, state_path: Path, sha: Sha256, b3: Blake3, size: int
    ) -> CachedWheel:
        on_disk = part.stat().st_size
        if on_disk != size or (job.size is not None and size != job.size):
            _discard(part, state_path)
            raise IncompleteDownloadError(
                job.url, f"got {on_disk} bytes, expected {job.size or size}"
            )
        if job.sha256 is not None and sha != job.sha256:
            _discard(part, state_path)
            raise HashMismatchError(job.url, job.filename, job.sha256, sha)
        if job.sha256 is None:
            log.warning(
                "%s: the index gives no sha256; recorded the computed one %s", job.filename, sha
            )
        try:
            # The transfer synced its data only now and then: the whole file reaches the disk
            # before the blob store and the catalog vouch for it.
            fsync_file(part)
        except OSError as exc:
            raise CacheError(describe_os_error(exc, part)) from exc
        _discard(state_path)
        with self._count_lock:
            self.transferred.add(job.filename)
        # Straight from the partial into the blob store (this thread holds the file's lock):
        # no temp file in between, which cost a file creation and a rename per wheel.
        return self.cache.ingest(
            part,
            sha256=sha,
            blake3=b3,
            size=size,
            filename=job.filename,
            project=job.project,
            version=job.version,
            url=job.url,
            hash_origin=job.hash_origin if job.sha256 else "computed",
        )


class _AnyOf:
    """Set when either flag is: the run's cancel or this file's abandon."""

    def __init__(self, *flags: StopFlag) -> None:
        self.flags = flags

    def is_set(self) -> bool:
        return any(f.is_set() for f in self.flags)


def _nothing_kept(part: Path) -> bool:
    try:
        return part.stat().st_size == 0
    except FileNotFoundError:
        return True


def _discard(*paths: Path) -> None:
    for p in paths:
        try:
            p.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("cannot remove %s: %s", p, exc)
