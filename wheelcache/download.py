"""Parallel, resumable downloads into the cache, hashed while the bytes arrive.

One file is one streamed GET into ``partial-v1/<key>.part``; its state (URL, size, validators,
bytes done) sits next to it in ``<key>.json`` and is saved (after an fsync of the data) every few
MiB, on every error and on Ctrl-C, so a dropped connection, a killed process or a reboot costs at
most the last unsaved chunk.  A resume sends ``Range`` + ``If-Range``; a 200 to a range request
means the server ignored it or the file changed, and the download starts over, once, with a
warning.  sha256 (checked against the index) and blake3 (the cache address) are computed in the
same pass as the writes; only a resume in a new process re-reads the prefix already on disk.

The key is the expected sha256 when the index gave one, so a later run from another URL (a
mirror) for the same file continues the same partial.
"""

from __future__ import annotations

import concurrent.futures
import errno
import hashlib
import json
import logging
import os
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx
from blake3 import blake3

from .cache import Cache, CachedWheel, describe_os_error
from .client import RETRY_STATUS, Http, retry_delay
from .errors import (
    CacheError,
    DownloadError,
    HashMismatchError,
    IncompleteDownloadError,
)
from .layout import url_key
from .models import Blake3, Sha256
from .progress import NullReporter, Reporter

__all__ = ["DownloadJob", "Downloader"]

log = logging.getLogger(__name__)

CHUNK = 256 * 1024
#: The partial's state is saved (after an fsync of the data) every SAVE_EVERY bytes or
#: SAVE_SECONDS, whichever comes first: a kill -9 loses at most that much.
SAVE_EVERY = 8 * 1024 * 1024
SAVE_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class DownloadJob:
    url: str
    filename: str
    project: str
    version: str
    sha256: Sha256 | None = None
    size: int | None = None


@dataclass
class _State:
    url: str
    filename: str
    sha256: str | None
    size: int | None
    etag: str | None
    last_modified: str | None
    done: int


class _Restart(Exception):
    """The partial is unusable; start again from byte 0."""


class _Hashes:
    def __init__(self) -> None:
        self.sha256 = hashlib.sha256()
        self.blake3 = blake3()
        self.upto = 0

    def update(self, data: bytes | memoryview) -> None:
        self.sha256.update(data)
        self.blake3.update(data)
        self.upto += len(data)


class Downloader:
    """Downloads :class:`DownloadJob` s into a :class:`Cache`."""

    def __init__(
        self,
        http: Http,
        cache: Cache,
        reporter: Reporter | None = None,
        *,
        jobs: int = 4,
    ) -> None:
        self.http = http
        self.cache = cache
        self.reporter: Reporter = reporter or NullReporter()
        self.jobs = max(1, jobs)
        self.cancel = threading.Event()
        self.downloaded_bytes = 0
        self._count_lock = threading.Lock()
        self._announced: set[str] = set()

    # -- public ---------------------------------------------------------------------------
    def fetch_many(self, jobs: list[DownloadJob]) -> list[CachedWheel]:
        """Download all *jobs* (``self.jobs`` at once); the first error is raised after the
        others have stopped and saved their partials."""
        if not jobs:
            return []
        results: dict[int, CachedWheel] = {}
        errors: list[BaseException] = []
        pool = concurrent.futures.ThreadPoolExecutor(self.jobs, thread_name_prefix="wheelcache")
        try:
            futures = {pool.submit(self.fetch, job): i for i, job in enumerate(jobs)}
            for fut in concurrent.futures.as_completed(futures):
                try:
                    results[futures[fut]] = fut.result()
                except BaseException as exc:  # collected and re-raised below
                    errors.append(exc)
        except BaseException:
            self.cancel.set()  # Ctrl-C: workers save their state and stop
            raise
        finally:
            pool.shutdown(wait=True)
        if errors:
            raise errors[0]
        return [results[i] for i in range(len(jobs))]

    def fetch(self, job: DownloadJob) -> CachedWheel:
        """Return the cached wheel for *job*, downloading it if needed."""
        found = self.cache.find(job.filename, job.sha256)
        if found is not None:
            return found
        key = job.sha256 or url_key(job.url)
        lock = self.cache.lock(key)
        if not lock.acquire(timeout=0):
            log.warning("%s: another wheelcache process is downloading it; waiting", job.filename)
            lock.acquire()
        try:
            found = self.cache.find(job.filename, job.sha256)
            if found is not None:  # the other process finished it
                return found
            return self._download(job, key)
        finally:
            lock.release()

    # -- one file -------------------------------------------------------------------------
    def _paths(self, key: str) -> tuple[Path, Path]:
        part, state = self.cache.layout.partial_files(key)
        return Path(part), Path(state)

    def _load_state(self, job: DownloadJob, part: Path, state_path: Path) -> _State:
        fresh = _State(job.url, job.filename, job.sha256, job.size, None, None, 0)
        raw = self.cache.read_json(state_path)
        if raw is None or not part.exists():
            return fresh
        try:
            st = _State(**raw)
        except TypeError:
            return fresh
        if st.filename != job.filename or (job.size and st.size and st.size != job.size):
            log.warning("%s: partial download does not match; starting over", job.filename)
            return fresh
        on_disk = part.stat().st_size
        st.done = min(st.done, on_disk)
        if st.url != job.url:
            # Same sha256 from another URL (a mirror): keep the bytes, but the validators
            # belong to the other server.
            st.url, st.etag, st.last_modified = job.url, None, None
        return st

    def _save_state(self, st: _State, state_path: Path) -> None:
        self.cache.write_atomic(state_path, json.dumps(asdict(st)).encode())

    def _download(self, job: DownloadJob, key: str) -> CachedWheel:
        part, state_path = self._paths(key)
        st = self._load_state(job, part, state_path)
        hashes = _Hashes()
        restarted = False
        attempt = 0
        if st.done:
            log.warning(
                "resuming %s at byte %d of %s", job.filename, st.done, st.size or "unknown"
            )
        try:
            while True:
                if self.cancel.is_set():
                    raise DownloadError(job.url, "cancelled")
                attempt += 1
                try:
                    self._one_request(job, st, part, state_path, hashes)
                    break
                except _Restart as why:
                    if restarted:
                        raise DownloadError(job.url, f"{why} (again after a restart)") from None
                    log.warning("%s: %s; starting over from byte 0", job.filename, why)
                    restarted = True
                    st = _State(job.url, job.filename, job.sha256, job.size, None, None, 0)
                    hashes = _Hashes()
                    self.reporter.file_restarted(job.filename)
                    attempt -= 1
                except _Retryable as exc:
                    self._save_state(st, state_path)
                    if attempt > self.http.settings.retries:
                        raise DownloadError(
                            job.url,
                            f"{exc.reason} (gave up after {attempt} attempts; "
                            f"{st.done} bytes kept, run again to resume)",
                        ) from exc
                    delay = retry_delay(attempt, exc.retry_after, self.http.settings)
                    log.warning(
                        "%s: %s at byte %d; resuming in %.1fs",
                        job.filename,
                        exc.reason,
                        st.done,
                        delay,
                    )
                    if self.cancel.wait(delay):
                        raise DownloadError(job.url, "cancelled") from exc
            return self._finish(job, st, part, state_path, hashes)
        finally:
            with self._count_lock:
                self._announced.discard(job.filename)
            self.reporter.file_finished(job.filename)

    def _announce(self, filename: str, st: _State) -> None:
        """Start the progress bar once, when the first response told us the size."""
        with self._count_lock:
            if filename in self._announced:
                return
            self._announced.add(filename)
        self.reporter.file_started(filename, st.size, st.done)

    def _one_request(
        self,
        job: DownloadJob,
        st: _State,
        part: Path,
        state_path: Path,
        hashes: _Hashes,
    ) -> None:
        headers = {"Accept-Encoding": "identity"}
        if st.done:
            headers["Range"] = f"bytes={st.done}-"
            validator = st.etag or st.last_modified
            if validator:
                headers["If-Range"] = validator
        try:
            with self.http.stream(job.url, headers) as r:
                status = r.status_code
                if status in RETRY_STATUS:
                    raise _Retryable(f"HTTP {status}", r.headers.get("Retry-After"))
                if status == 416 and st.done and st.size == st.done:
                    return  # we already have every byte
                if status not in (200, 206):
                    raise DownloadError(job.url, f"HTTP {status}")
                etag = r.headers.get("ETag")
                if status == 200:
                    if st.done:
                        raise _Restart(
                            "the server sent the whole file instead of the rest "
                            "(it ignores Range or the file changed)"
                        )
                    length = _int(r.headers.get("Content-Length"))
                    total = length
                else:
                    start, total = _content_range(r.headers.get("Content-Range", ""))
                    if start != st.done:
                        raise _Restart(f"Content-Range starts at {start}, asked for {st.done}")
                    if st.etag and etag and etag != st.etag:
                        raise _Restart("the ETag changed between requests")
                if job.size is not None and total is not None and total != job.size:
                    raise DownloadError(
                        job.url, f"server says {total} bytes, the index says {job.size}"
                    )
                st.size = total if total is not None else st.size
                st.etag = etag or st.etag
                st.last_modified = r.headers.get("Last-Modified") or st.last_modified
                self._announce(job.filename, st)
                self._stream_body(job, r, st, part, state_path, hashes)
        except httpx.TransportError as exc:
            raise _Retryable(_transport_reason(exc), None) from exc

    def _stream_body(
        self,
        job: DownloadJob,
        r: httpx.Response,
        st: _State,
        part: Path,
        state_path: Path,
        hashes: _Hashes,
    ) -> None:
        try:
            mode = "r+b" if part.exists() else "wb"
            with open(part, mode) as fh:
                fh.truncate(st.done)
                fh.seek(st.done)
                if hashes.upto != st.done:
                    self._rehash_prefix(part, st.done, hashes)
                unsaved = 0
                saved_at = time.monotonic()
                try:
                    # No chunk size: every piece is written as it arrives, so a reset
                    # connection loses nothing that reached us.
                    for chunk in r.iter_raw():
                        if self.cancel.is_set():
                            raise DownloadError(job.url, "cancelled")
                        fh.write(chunk)
                        hashes.update(chunk)
                        st.done += len(chunk)
                        unsaved += len(chunk)
                        self.reporter.file_advanced(job.filename, len(chunk))
                        with self._count_lock:
                            self.downloaded_bytes += len(chunk)
                        if st.size is not None and st.done > st.size:
                            raise _Restart(f"body longer than the announced {st.size} bytes")
                        if unsaved >= SAVE_EVERY or (
                            unsaved and time.monotonic() - saved_at >= SAVE_SECONDS
                        ):
                            fh.flush()
                            os.fsync(fh.fileno())
                            self._save_state(st, state_path)
                            unsaved, saved_at = 0, time.monotonic()
                finally:
                    fh.flush()
                    os.fsync(fh.fileno())
                    self._save_state(st, state_path)
        except OSError as exc:
            raise CacheError(describe_os_error(exc, part)) from exc
        if st.size is not None and st.done < st.size:
            raise _Retryable(f"connection closed at byte {st.done} of {st.size}", None)

    def _rehash_prefix(self, part: Path, upto: int, hashes: _Hashes) -> None:
        """Hash the bytes a previous process left (the only second read of any data)."""
        hashes.__init__()  # type: ignore[misc]
        with open(part, "rb") as fh:
            while hashes.upto < upto:
                block = fh.read(min(4 * CHUNK, upto - hashes.upto))
                if not block:
                    raise _Restart("the partial file is shorter than its state says")
                hashes.update(block)

    def _finish(
        self, job: DownloadJob, st: _State, part: Path, state_path: Path, hashes: _Hashes
    ) -> CachedWheel:
        size = part.stat().st_size
        if hashes.upto != size:
            self._rehash_prefix(part, size, hashes)
        if st.size is not None and size != st.size:
            raise IncompleteDownloadError(job.url, f"got {size} bytes, expected {st.size}")
        sha = Sha256(hashes.sha256.hexdigest())
        if job.sha256 is not None and sha != job.sha256:
            _discard(part, state_path)
            raise HashMismatchError(job.url, job.filename, job.sha256, sha)
        if job.sha256 is None:
            log.warning(
                "%s: the index gives no sha256; recorded the computed one %s",
                job.filename,
                sha,
            )
        tmp = self.cache.temp_path(".whl")
        try:
            os.replace(part, tmp)
        except OSError as exc:
            raise CacheError(describe_os_error(exc, part)) from exc
        _discard(state_path)
        return self.cache.ingest(
            tmp,
            sha256=sha,
            blake3=Blake3(hashes.blake3.hexdigest()),
            size=size,
            filename=job.filename,
            project=job.project,
            version=job.version,
            url=job.url,
            hash_origin="index" if job.sha256 else "computed",
        )


class _Retryable(Exception):
    def __init__(self, reason: str, retry_after: str | None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


def _discard(*paths: Path) -> None:
    for p in paths:
        try:
            p.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            if exc.errno != errno.ENOENT:
                log.warning("cannot remove %s: %s", p, exc)


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _content_range(value: str) -> tuple[int, int | None]:
    """``bytes 100-199/1000`` → ``(100, 1000)``; raises _Restart when unusable."""
    try:
        unit, rest = value.split(" ", 1)
        span, total = rest.split("/", 1)
        start = int(span.split("-", 1)[0])
        return start, (None if total.strip() == "*" else int(total))
    except ValueError:
        raise _Restart(f"unusable Content-Range {value!r}") from None


def _transport_reason(exc: httpx.TransportError) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    if isinstance(exc, httpx.RemoteProtocolError):
        return "connection dropped"
    if isinstance(exc, httpx.ConnectError):
        return f"cannot connect ({exc})"
    return f"{type(exc).__name__}: {exc}"
