"""One upstream transfer, many readers: ``serve --pull`` streams a file while it arrives.

The first request for a file that is not in the cache starts one transfer through the normal
:class:`~wheelcache.net.download.Downloader` (segmented, resumable, verified, into
``partial-v1/``); every request for the same file while it runs reads from that transfer.  The
downloader's state checkpoints (every 50 ms) say which byte ranges of the partial file are
written, and a reader sends what is there and waits for the rest.

Why it is built this way:

* **Bytes before verification, but never the last one.**  A reader may send every byte but the
  file's last before the sha256 has been checked; the last byte goes out only once the file is
  verified and stored.  A file whose hash does not match is never stored, and its readers'
  connections are cut one byte short, so the client (pip, uv) fails on a short body instead of
  installing wrong bytes.  A range that ends before the last byte is answered from unverified
  bytes: a client asking for a piece cannot check it against the file's hash anyway.
* **A restart is a new generation.**  When the transfer starts the file again (a server that
  changed the file, an earlier run's partial that did not verify, a source that served wrong
  bytes), the part file is rewritten: readers that have sent nothing continue with the new
  bytes; readers that have sent some are cut, because they may hold bytes of the old file.
* **Clients never own a transfer.**  It runs in its own thread; a client that goes away only
  stops its own reading, so one impatient machine cannot cancel what forty-nine others wait
  for.  A server stopped (Ctrl-C, or killed) keeps the partial and resumes it on the next
  request after restart, like ``fetch`` does.
* **Readers copy, they do not hold the part file open**: each chunk is read with the file opened
  and closed under a shared lock that the final rename takes exclusively, so the rename into the
  blob store works on Windows too (an open file cannot be renamed there).  A reader needs one
  chunk of memory; once the file is stored, the rest goes out by ``sendfile`` from its blob.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from wheelcache.core.layout import url_key
from wheelcache.core.partial import PartialState
from wheelcache.errors import DownloadError, WheelcacheError
from wheelcache.net.client import Http
from wheelcache.net.download import Downloader, DownloadJob
from wheelcache.net.transfer import HostLimiter, TransferSettings
from wheelcache.store.cache import Cache, CachedWheel

__all__ = ["CHUNK", "SharedTransfer", "SharedTransfers", "TransferFailed"]

log = logging.getLogger(__name__)

CHUNK = 256 * 1024  # bytes a reader copies at a time (its whole buffer)


class TransferFailed(WheelcacheError):
    """The transfer a reader follows failed or started over after the reader sent bytes."""


class _ReadWriteLock:
    """Many readers or one writer; a waiting writer keeps new readers out (no starvation)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writer = False
        self._waiting = 0

    @contextmanager
    def shared(self) -> Iterator[None]:
        with self._cond:
            self._cond.wait_for(lambda: not self._writer and not self._waiting)
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                self._cond.notify_all()

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._cond:
            self._waiting += 1
            self._cond.wait_for(lambda: not self._writer and self._readers == 0)
            self._waiting -= 1
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()


def _present(state: PartialState) -> list[tuple[int, int]]:
    """The written byte ranges ``[start, end)`` of a state, merged where they touch."""
    out: list[tuple[int, int]] = []
    for s in sorted(state.segments, key=lambda s: s.start):
        if s.pos <= s.start:
            continue
        if out and s.start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], s.pos))
        else:
            out.append((s.start, s.pos))
    return out


@dataclass(frozen=True, slots=True)
class Chunk:
    """Bytes a reader may send now, and the generation of the part file they came from."""

    data: bytes
    generation: int


class SharedTransfer:
    """One file's upstream transfer and what its readers may read of it so far."""

    def __init__(self, job: DownloadJob, part: Path) -> None:
        self.job = job
        self.part = part
        self.size: int | None = job.size
        self.wheel: CachedWheel | None = None
        self.error: WheelcacheError | None = None
        self.finished_at: float | None = None
        self._cond = threading.Condition()
        self._ranges: list[tuple[int, int]] = []
        self._generation = 0
        self.files = _ReadWriteLock()

    # -- fed by the downloader ---------------------------------------------------------------
    def starting(self, state: PartialState) -> None:
        """A transfer (first, resumed or started over) begins from *state*."""
        with self._cond:
            if not state.done:
                self._generation += 1  # the part file is about to be rewritten from byte 0
            self._ranges = _present(state)
            self.size = state.size if state.size is not None else self.size
            self._cond.notify_all()

    def progressed(self, state: PartialState) -> None:
        """A checkpoint: these ranges are written (every byte counted has reached the OS)."""
        with self._cond:
            self._ranges = _present(state)
            if state.size is not None:
                self.size = state.size
            self._cond.notify_all()

    def sized(self, total: int | None) -> None:
        if total is None:
            return
        with self._cond:
            self.size = total
            self._cond.notify_all()

    def settle(self, wheel: CachedWheel | None, error: WheelcacheError | None) -> None:
        with self._cond:
            self.wheel, self.error = wheel, error
            if wheel is not None:
                self.size = wheel.size
            self.finished_at = time.monotonic()
            self._cond.notify_all()

    # -- read by clients ----------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.finished_at is None

    def wait_size(self, timeout: float) -> int | CachedWheel:
        """The file's size once the transfer knows it, or the stored wheel if it is done.

        Raises :class:`TransferFailed` when the transfer failed or nothing was learnt within
        *timeout* seconds.
        """
        with self._cond:
            ok = self._cond.wait_for(
                lambda: self.size is not None or self.finished_at is not None, timeout
            )
            if self.wheel is not None:
                return self.wheel
            if self.error is not None:
                raise TransferFailed(str(self.error))
            if not ok or self.size is None:
                raise TransferFailed(f"{self.job.filename}: no answer from upstream in time")
            return self.size

    def generation(self) -> int:
        with self._cond:
            return self._generation

    def read(self, pos: int, limit: int, generation: int, timeout: float) -> Chunk | CachedWheel:
        """Up to *limit* bytes at *pos* once they have arrived, or the stored wheel.

        *generation* is the one the reader's earlier bytes came from (-1 before its first
        byte).  Raises :class:`TransferFailed` when the transfer failed, started over under a
        reader that already sent bytes, or brought nothing new for *timeout* seconds.
        """
        deadline = time.monotonic() + timeout
        while True:
            with self._cond:
                end = self._wait_for(pos, generation, deadline)
                if isinstance(end, CachedWheel):
                    return end
                gen = self._generation
            data = self._read_part(pos, min(limit, end - pos))
            with self._cond:
                if gen == self._generation and data:
                    return Chunk(data, gen)
            # The file was started over or moved into the blob store while we read: look again.

    def _wait_for(self, pos: int, generation: int, deadline: float) -> int | CachedWheel:
        """(Caller holds the condition.)  The end of the bytes readable at *pos*."""
        while True:
            if self.wheel is not None:
                return self.wheel
            if self.error is not None:
                raise TransferFailed(str(self.error))
            if generation >= 0 and generation != self._generation:
                raise TransferFailed(
                    f"{self.job.filename}: the transfer started over; this answer is cut short"
                )
            end = next((e for s, e in self._ranges if s <= pos < e), pos)
            if self.size is not None:
                end = min(end, self.size - 1)  # the last byte waits for the sha256 check
            if end > pos:
                return end
            left = deadline - time.monotonic()
            if left <= 0:
                raise TransferFailed(f"{self.job.filename}: upstream sent nothing new in time")
            self._cond.wait(min(left, 1.0))

    def _read_part(self, pos: int, count: int) -> bytes:
        with self.files.shared():
            try:
                with open(self.part, "rb", buffering=0) as fh:
                    fh.seek(pos)
                    return fh.read(count)
            except FileNotFoundError:  # being moved into the blob store, or started over
                return b""


class _Feed:
    """The reporter of one transfer (sizes, restarts) — the rest arrives by checkpoints."""

    def __init__(self, shared: SharedTransfer) -> None:
        self._shared = shared

    def file_started(self, filename: str, total: int | None, initial: int) -> None:
        self._shared.sized(total)

    def file_advanced(self, filename: str, nbytes: int) -> None:
        pass

    def file_restarted(self, filename: str) -> None:
        pass  # the next transfer's start says so (see _PullDownloader._transfer)

    def file_finished(self, filename: str) -> None:
        pass


class _PullDownloader(Downloader):
    """The downloader with its checkpoints, starts and final rename shared with readers."""

    def __init__(
        self, shared: SharedTransfer, http: Http, cache: Cache, settings: TransferSettings
    ) -> None:
        # Readers learn what arrived from the checkpoints: save them from the first moment,
        # not only once the transfer is old enough to be worth resuming (state_after).
        settings = replace(settings, state_after=0.0)
        super().__init__(http, cache, _Feed(shared), jobs=1, settings=settings)
        self._shared = shared

    def _save_state(self, st: PartialState, state_path: Path, *, durable: bool = True) -> None:
        self._shared.progressed(st)
        super()._save_state(st, state_path, durable=durable)

    def _transfer(
        self,
        st: PartialState,
        part: Path,
        state_path: Path,
        mirrors: tuple[str, ...],
        fallbacks: tuple[str, ...] = (),
    ) -> tuple[str, str, int]:
        self._shared.starting(st)
        return super()._transfer(st, part, state_path, mirrors, fallbacks)

    def _finish(self, *args: object, **kw: object) -> CachedWheel:
        with self._shared.files.exclusive():  # no reader has the part file open now
            return super()._finish(*args, **kw)  # type: ignore[arg-type]


class SharedTransfers:
    """The running transfers of one server, by file; starts each file's transfer once.

    A failed transfer is remembered for *failure_ttl* seconds, so clients retrying a corrupt
    upstream file get an error at once instead of a new download each.
    """

    def __init__(
        self,
        cache: Cache,
        http: Http,
        settings: TransferSettings | None = None,
        *,
        per_host: int = 16,
        max_running: int = 32,
        failure_ttl: float = 10.0,
        on_stored: Callable[[CachedWheel], None] | None = None,
    ) -> None:
        self.cache = cache
        self.http = http
        self.settings = settings or TransferSettings()
        self.limiter = HostLimiter(max(1, per_host))
        self.failure_ttl = failure_ttl
        self.on_stored = on_stored
        self.cancel = threading.Event()
        self.started = 0  # transfers started (for tests and the benchmark)
        self._running = threading.BoundedSemaphore(max(1, max_running))
        self._lock = threading.Lock()
        self._by_key: dict[str, SharedTransfer] = {}
        self._threads: list[threading.Thread] = []

    def get(self, job: DownloadJob) -> SharedTransfer:
        """The transfer of *job*'s file: the running (or recently failed) one, or a new one."""
        key = job.sha256 or url_key(job.url)
        with self._lock:
            current = self._by_key.get(key)
            if current is not None and (current.running or self._failed_recently(current)):
                return current
            part, _ = self.cache.layout.partial_files(key)
            shared = SharedTransfer(job, Path(part))
            self._by_key[key] = shared
            self.started += 1
            thread = threading.Thread(
                target=self._run, args=(key, shared), name="wheelcache-pull", daemon=True
            )
            self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()
        return shared

    def get_running(self, key: str) -> SharedTransfer | None:
        """The transfer of the file with this sha256 (or URL key) while it runs."""
        with self._lock:
            current = self._by_key.get(key)
        return current if current is not None and current.running else None

    def _failed_recently(self, shared: SharedTransfer) -> bool:
        done = shared.finished_at
        return (
            shared.error is not None
            and done is not None
            and time.monotonic() - done < self.failure_ttl
        )

    def _run(self, key: str, shared: SharedTransfer) -> None:
        wheel: CachedWheel | None = None
        error: WheelcacheError | None = None
        try:
            with self._running:
                downloader = _PullDownloader(shared, self.http, self.cache, self.settings)
                downloader.limiter = self.limiter  # per-host caps across all files
                downloader.cancel = self.cancel
                wheel = downloader.fetch(shared.job)
        except WheelcacheError as exc:
            error = exc
            log.warning("pull of %s failed: %s", shared.job.filename, exc)
        except Exception as exc:  # a bug must still release the readers
            error = DownloadError(shared.job.url, f"internal error: {exc!r}")
            log.error("pull of %s: internal error %r", shared.job.filename, exc)
        finally:
            shared.settle(wheel, error)
            with self._lock:
                if self._by_key.get(key) is shared and error is None:
                    del self._by_key[key]
        if wheel is not None:
            log.info("pulled %s (%d bytes)", wheel.filename, wheel.size)
            if self.on_stored is not None:
                self.on_stored(wheel)

    def close(self, timeout: float = 5.0) -> None:
        """Stop every transfer; each saves its partial for the next run (waits up to
        *timeout* seconds for them)."""
        self.cancel.set()
        self.http.cancel()
        deadline = time.monotonic() + timeout
        with self._lock:
            threads = list(self._threads)
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
        self.http.close()
