"""One file's transfer: byte-range segments over several connections, resumable, hashed.

A transfer of a file of unknown size starts with one connection asking for the first 2 MiB; if
the server answers 206 and the file is above the split size, the rest is planned into bounded
segments for more connections (a known size is planned at once).  An idle connection *steals*
from a segment that would take long: the share that makes both finish together, so a slow
connection or a slow mirror never keeps the last megabytes to itself.  A server that answers
200 gets one plain stream.

Every segment is ``[start, pos, end)``; the list is saved every 50 ms and, with the list as of
the last fsync of the data, every 2 s, so a killed process resumes each segment where it stood
and a rebooted machine where the disk surely has it.  A transfer younger than
``state_after`` (1 s) saves no state: a crash then costs at most that much transfer, and the
many small files that finish sooner never write a state file (a partial without one is simply
fetched again from byte 0).

The thread that calls :meth:`Transfer.run` is the first connection, and while it is the only
one it hashes each chunk as it writes it: a small file costs no thread and no second read of
its bytes.  Once a second connection starts, a hasher thread follows the contiguous prefix and
feeds sha256 and blake3 from the page cache while the network is still busy, so the digests are
ready moments after the last byte (measured against hashing after the last byte in
``scripts/bench_download.py``).

Faults handled here, each as a retry of that segment on a new connection (with backoff and
``Retry-After``) or, when the partial cannot be trusted, a :class:`Restart` of the whole file:
dropped connections, stalls (no progress for ``stall_seconds``), short bodies, 429/5xx, 200
instead of 206, a ``Content-Range`` with the wrong start or total, and a changed ETag.

Nothing a server sends unbinds the size: a body is never written past the size the index gave
or, without one, past what ``Content-Range``/``Content-Length`` said (a 200 without a length
keeps the index's size); a server that ignores Range cannot resume, so a dropped connection
there restarts the file at once (the downloader does that once, then gives up) instead of
asking again for a range it will not honour.

This module does the connection work (requests, bodies, hashing, workers);
:mod:`~wheelcache.net.transfer_plan` decides which segment and source come next, and
:mod:`~wheelcache.net.transfer_state` saves the state.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from blake3 import blake3

from wheelcache.core.partial import PartialState, Segment, plan
from wheelcache.core.progress import Reporter
from wheelcache.errors import CacheError, ConnectionFault, DownloadError, WheelcacheError
from wheelcache.net.client import RETRY_STATUS, Http, Stream, content_range
from wheelcache.net.transfer_plan import (
    Source,
    TransferSettings,
    contiguous_prefix,
    fast_sources,
    plan_rest,
    steal,
)
from wheelcache.net.transfer_state import Checkpoints
from wheelcache.store.cache import describe_os_error

__all__ = ["HostLimiter", "Restart", "StopFlag", "Transfer", "TransferSettings"]

log = logging.getLogger(__name__)

READ_BLOCK = 1024 * 1024
#: Bytes a request must bring before the next failure counts as a new first one.
PROGRESS = 64 * 1024


class Restart(Exception):
    """The partial cannot be trusted; the caller starts the file again from byte 0."""


class _Abandon(Exception):
    """This connection's segment no longer exists (another took the whole body)."""


class _DropSource(Exception):
    """This source misbehaves for this file; others may still serve it."""


class _Retry(Exception):
    def __init__(self, reason: str, retry_after: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class HostLimiter:
    """Caps the connections to one host across all files of a run."""

    def __init__(self, per_host: int) -> None:
        self.per_host = per_host
        self._sems: dict[str, threading.BoundedSemaphore] = {}
        self._lock = threading.Lock()

    @contextmanager
    def slot(self, url: str) -> Iterator[None]:
        host = urlsplit(url).netloc
        with self._lock:
            sem = self._sems.setdefault(host, threading.BoundedSemaphore(self.per_host))
        with sem:
            yield


class StopFlag(Protocol):
    """What a transfer polls to know it should stop: the run's cancel event, or one that
    also says the resolver no longer wants this file (see ``Downloader.abandon``)."""

    def is_set(self) -> bool: ...


class Transfer:
    """Runs one file's segments to completion; returns ``(sha256, blake3, size)``."""

    def __init__(
        self,
        http: Http,
        state: PartialState,
        part: Path,
        *,
        settings: TransferSettings,
        limiter: HostLimiter,
        reporter: Reporter,
        cancel: StopFlag,
        save: Any,  # Callable[[PartialState], None]
        count: Any,  # Callable[[int], None]: bytes received, for the run's total
        mirrors: Sequence[str] = (),
        fallbacks: Sequence[str] = (),
    ) -> None:
        self.http = http
        self.st = state
        # Sources: the state's URL first (its validators were saved with it), then the
        # others; segments are spread over the healthy ones and a failing one is dropped.
        # Fallbacks (a CDN file's path on the index's own host) wait until all have failed.
        self.sources = [Source(state.url, state.etag, state.last_modified)] + [
            Source(u) for u in dict.fromkeys(mirrors) if u != state.url
        ]
        self.sources += [
            Source(u, alive=False, standby=True)
            for u in dict.fromkeys(fallbacks)
            if all(u != src.url for src in self.sources)
        ]
        self._checkpoints = Checkpoints(part, save, state.synced)
        self._turn = 0
        self.part = part
        self.settings = settings
        self.limiter = limiter
        self.reporter = reporter
        self.cancel = cancel
        self._count = count
        self._lock = threading.Lock()
        self._progress = threading.Condition(self._lock)
        #: Notified when a segment ends or the transfer stops: what an idle worker waits for.
        self._settled = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._workers: list[threading.Thread] = []
        self._ranges: bool | None = True if state.done else None
        self._announced = False
        # The digests: fed inline by the only connection, or by the hasher thread once it
        # runs (``_hash_lock`` guards the hand-over; afterwards the hasher alone feeds them).
        self._hashed = 0
        self._sha = hashlib.sha256()
        # blake3's threads pay off on the hasher's 1 MiB blocks of a big file; on the 64 KiB
        # chunks hashed inline they cost twice the CPU for less speed (measured).
        big = state.size is not None and state.size >= settings.split_size
        self._b3 = blake3(max_threads=blake3.AUTO) if big else blake3()
        self._hash_lock = threading.Lock()
        self._hasher: threading.Thread | None = None
        # The supervisor's duties (state saves, noticing a cancel) are done by whichever
        # thread passes by when they are due: every connection between its reads, and the
        # thread that called run() once it waits for the others.
        self._tick_lock = threading.Lock()
        self._born = self._next_save = self._synced = 0.0
        if not self.st.segments:
            if self.st.size is not None and self.st.size >= settings.split_size:
                self.st.segments = plan(0, self.st.size, settings.connections)
                self._ranges = None  # still unproven: the first answer decides
            else:
                self.st.segments = [Segment(0, 0, self.st.size)]

    # -- driver ---------------------------------------------------------------------------
    def run(self) -> tuple[str, str, int]:
        if not self.st.done:
            self.part.write_bytes(b"")  # stale bytes of an unknown earlier attempt must go
        self._born = self._synced = time.monotonic()
        self._next_save = self._born + self.settings.save_seconds
        n = 1
        if self._ranges:  # resuming: ranges are known to work
            resumable = sum(1 for s in self.st.segments if not s.complete)
            big = (self.st.size or 0) >= self.settings.split_size
            n = self.settings.connections if big else max(1, resumable)
        if self.st.done:
            self._start_hasher()  # the bytes kept on disk are hashed while the rest arrives
        if (self.st.size or 0) >= self.settings.split_size:
            # Reserve the state file while there is room: a disk that fills up later can
            # still record how far a big download got (see Downloader._save_state).
            self._checkpoint(sync=True)
        try:
            self._spawn(n - 1)
            self._worker()  # this thread is the first connection (a small file's only one)
            self._supervise()  # the other connections, if any
        finally:
            self._halt()
            for t in list(self._workers):
                t.join()
            if self._error is not None or self._unfinished():
                self._checkpoint(sync=True)  # keep what we have for the next run
            with self._progress:
                self._progress.notify_all()
            if self._hasher is not None:
                self._hasher.join()
        if self._error is not None:
            raise self._error
        size = self.st.size if self.st.size is not None else self.st.segments[-1].pos
        self._hash_rest(size)
        if self._hashed != size:
            raise Restart(f"the partial is inconsistent (hashed {self._hashed} of {size} bytes)")
        return self._sha.hexdigest(), self._b3.hexdigest(), size

    def _supervise(self) -> None:
        """Wait for the other connections, saving the state and watching for a cancel."""
        while True:
            with self._lock:
                alive = [t for t in self._workers if t.is_alive()]
            if not alive:
                return
            alive[0].join(self.settings.save_seconds)
            if not alive[0].is_alive() and len(alive) == 1:
                continue  # the last worker ended: no state to save for a finished file
            self._tick()

    def _tick(self) -> None:
        """The supervisor's duties, when they are due and no other thread is doing them: save
        the state every ``save_seconds`` once the transfer is ``state_after`` old, fsync the
        data every ``fsync_seconds``, and stop on a cancel."""
        now = time.monotonic()
        if now < self._next_save or not self._tick_lock.acquire(blocking=False):
            return
        try:
            if now < self._next_save:
                return  # another thread did it a moment ago
            self._next_save = now + self.settings.save_seconds
            if self.cancel.is_set():
                self._fail(DownloadError(self.st.url, "cancelled"))
                return
            if now - self._born < self.settings.state_after:
                return
            sync = now - self._synced >= self.settings.fsync_seconds
            self._checkpoint(sync=sync)
            self._synced = time.monotonic() if sync else self._synced
        finally:
            self._tick_lock.release()

    def _pause(self, seconds: float) -> bool:
        """Wait *seconds* unless the transfer stops (True then), keeping up the ticks."""
        deadline = time.monotonic() + seconds
        while not self._stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self._stop.wait(min(left, self.settings.save_seconds))
            self._tick()
        return True

    def _checkpoint(self, *, sync: bool) -> None:
        """Save the segment list; with *sync*, fsync the data first (see Checkpoints)."""
        with self._lock:
            snapshot = self._checkpoints.snapshot(self.st)
        try:
            self._checkpoints.save(snapshot, sync=sync)
        except WheelcacheError as exc:  # disk full while saving state: keep going, report once
            self._fail(exc)

    def _unfinished(self) -> bool:
        with self._lock:
            return not all(s.complete for s in self.st.segments)

    def _fail(self, exc: BaseException) -> None:
        with self._lock:
            if self._error is None:
                self._error = exc
        self._halt()

    def _halt(self) -> None:
        self._stop.set()
        with self._settled:
            self._settled.notify_all()

    def _spawn(self, n: int) -> None:
        if n > 0:
            self._start_hasher()  # the chunks no longer arrive in order
        with self._lock:
            for _ in range(n):
                t = threading.Thread(target=self._worker, name="wheelcache-seg", daemon=True)
                self._workers.append(t)
                t.start()

    # -- segment scheduling -----------------------------------------------------------------
    def _next_segment(self) -> Segment | None:
        """A queued segment, else the tail of a slow one (see transfer_plan.steal)."""
        with self._lock:
            for s in self.st.segments:
                if not s.active and not s.complete:
                    s.active = True
                    return s
            if not self._ranges or self.st.size is None:
                return None
            return steal(self.st.segments, self.sources, self.settings, time.monotonic())

    def _may_steal_later(self) -> bool:
        """Whether a connection may still turn slow enough to help (call with the lock)."""
        return bool(self._ranges) and any(
            s.active and s.left >= 2 * self.settings.min_segment for s in self.st.segments
        )

    def _worker(self) -> None:
        try:
            while not self._stop.is_set():
                seg = self._next_segment()
                if seg is None:
                    if self._idle(self.settings.idle_seconds):  # one may still turn slow
                        self._tick()
                        continue
                    return
                try:
                    self._run_segment(seg)
                finally:
                    with self._settled:
                        seg.active = False
                        self._settled.notify_all()
        except BaseException as exc:  # any failure stops the whole transfer
            self._fail(exc)

    def _idle(self, seconds: float) -> bool:
        """While another connection may still turn slow enough to help: wait until a segment
        ends, the transfer stops, or *seconds* pass (the time a slow connection takes to show
        itself), then True; False when there is nothing left to wait for.

        Not a plain sleep: when the last segment ends, the idle workers leave at once instead
        of a quarter second later (which was most of a 32 MiB file's time on a fast link).
        The check and the wait are under one lock, so an ending cannot slip between them.
        """
        with self._settled:
            if self._stop.is_set() or not self._may_steal_later():
                return False
            self._settled.wait(seconds)
            return True

    def _pick_source(self) -> Source | None:
        """A healthy source, turn by turn among those at least half as fast as the best."""
        with self._lock:
            fast = fast_sources(self.sources, self.st.segments, time.monotonic())
            if not fast:
                return None
            pick = fast[self._turn % len(fast)]  # the first source (a mirror) goes first
            self._turn += 1
            return pick

    def _drop(self, src: Source, why: str) -> bool:
        """Drop *src* for this file if another source is left (waking a fallback when none
        is); False when it was the last."""
        with self._lock:
            if not src.alive:
                return True  # another worker already dropped it
            others = [o for o in self.sources if o.alive and o is not src]
            if not others:
                others = [o for o in self.sources if o.standby]
                for o in others:
                    o.alive, o.standby = True, False
            if not others:
                return False
            src.alive, src.dropped_because = False, why
        log.warning(
            "%s: dropping %s for this file (%s); trying %s",
            self.st.filename,
            src.url,
            why,
            ", ".join(o.url for o in others),
        )
        return True

    def _earlier_failures(self) -> str:
        with self._lock:
            gone = [f"{s.url}: {s.dropped_because}" for s in self.sources if s.dropped_because]
        return f" (earlier: {'; '.join(gone)})" if gone else ""

    def _run_segment(self, seg: Segment) -> None:
        failures = 0
        src = self._pick_source()
        while src is not None and not seg.complete and not self._stop.is_set():
            before = seg.pos
            try:
                ended = self._request(seg, src)
                if seg.end is None and ended:  # a body of unknown size ended: that is the end
                    with self._lock:
                        seg.end = seg.pos
                        self.st.size = seg.pos
                    return
            except _Abandon:
                return
            except (_DropSource, Restart, DownloadError) as exc:
                if isinstance(exc, Restart) and src is self.sources[0]:
                    raise
                if not self._drop(src, getattr(exc, "reason", str(exc))):
                    if isinstance(exc, DownloadError) and not isinstance(exc, Restart):
                        raise DownloadError(exc.url, exc.reason + self._earlier_failures()) from exc
                    raise
                failures, src = 0, self._pick_source()
                continue
            except _Retry as exc:
                with self._lock:
                    no_ranges = self._ranges is False
                if no_ranges:  # it ignores Range: a retry cannot resume, only start over
                    raise Restart(
                        f"{exc.reason} at byte {seg.pos}, and the server ignores Range "
                        "(it cannot resume)"
                    ) from exc
                # A retry that brought a few bytes is still a failure: a server that sends a
                # trickle and hangs up must not be asked again without end.
                failures = 0 if seg.pos - before >= PROGRESS else failures + 1
                if failures > self.http.settings.retries:
                    if self._drop(src, exc.reason):
                        failures, src = 0, self._pick_source()
                        continue
                    raise DownloadError(
                        src.url,
                        f"{exc.reason} (gave up after {failures} attempt"
                        f"{'s' if failures > 1 else ''} without progress; "
                        f"{self.st.done} bytes kept, run again to resume)"
                        + self._earlier_failures(),
                    ) from exc
                delay, refused = self.http.retry_wait(max(1, failures), exc.retry_after)
                if refused is not None:
                    raise DownloadError(src.url, f"{exc.reason}: {refused}") from exc
                log.warning(
                    "%s: %s at byte %d; retrying in %.1fs",
                    self.st.filename,
                    exc.reason,
                    seg.pos,
                    delay,
                )
                if self._pause(delay):
                    return

    # -- one request ----------------------------------------------------------------------
    def _headers(self, seg: Segment, src: Source) -> tuple[dict[str, str], int]:
        """Request headers and the end (exclusive) of the range asked for.

        Of unknown size, ask for ``probe_size`` first: a big file is then planned into bounded
        segments instead of cutting one open-ended request short (its in-flight bytes would
        be wasted).
        """
        asked = seg.end if seg.end is not None else seg.pos + self.settings.probe_size
        headers = {"Accept-Encoding": "identity", "Range": f"bytes={seg.pos}-{asked - 1}"}
        # If-Range needs a strong validator (RFC 9110 13.1.5): a weak ETag would make a
        # conforming server answer 200.  The sha256 check guards the bytes either way.
        strong = src.etag if src.etag and not src.etag.startswith("W/") else None
        validator = strong or src.last_modified
        if validator:
            headers["If-Range"] = validator
        return headers, asked

    def _request(self, seg: Segment, src: Source) -> bool:
        """One request for *seg*; True when its body ended the file (whole-file 200, a short
        206 of unknown total, or 416 at the end)."""
        start = time.monotonic()
        with self._lock:
            seg.t0, seg.p0, seg.src = start, seg.pos, src
        headers, asked = self._headers(seg, src)
        try:
            with (
                self.limiter.slot(src.url),
                self.http.stream(src.url, headers, read_timeout=self.settings.stall_seconds) as r,
            ):
                whole = self._check_response(seg, r, asked, src)
                if whole is None:
                    return True  # 416: nothing more to read
                if whole:
                    asked = seg.end if seg.end is not None else 1 << 62
                try:
                    short = self._receive(seg, r, asked)
                    return whole or short
                finally:
                    with self._lock:
                        src.got += seg.pos - seg.p0
                        src.seconds += time.monotonic() - start
                        seg.src = None
        except ConnectionFault as exc:
            if exc.timed_out:
                raise _Retry("stalled (no data)") from exc
            if not exc.retryable:
                raise DownloadError(src.url, exc.reason) from exc
            raise _Retry(exc.reason) from exc

    def _check_response(self, seg: Segment, r: Stream, asked: int, src: Source) -> bool | None:
        """Validate the answer: True for the whole file (200), False for the range asked,
        None for 416 at the end of the file."""
        status = r.status
        if status in RETRY_STATUS:
            raise _Retry(f"HTTP {status}", r.headers.get("retry-after"))
        etag = r.headers.get("etag")
        if status == 200:
            with self._lock:
                if seg not in self.st.segments:
                    raise _Abandon  # another connection already took the whole body
                if self.st.done or self._ranges is not None:
                    raise Restart(
                        "the server sent the whole file instead of the range asked "
                        "for (it ignores Range, or the file changed)"
                    )
                # Nothing downloaded yet and ranges unproven: take this body as the file,
                # never longer than the size the index gave (a 200 does not unbind it).
                length = r.headers.get("content-length", "")
                total = int(length) if length.isdigit() else None
                known = self.st.size
                if known is not None and total is not None and total != known:
                    raise DownloadError(
                        src.url, f"Content-Length says {total} bytes, the index says {known}"
                    )
                self._ranges = False
                seg.start = seg.pos = 0
                seg.end = known if known is not None else total
                self.st.segments = [seg]
                self.st.size = seg.end
                self._accept_validators(etag, r, src)
            self._announce()
            return True
        if status == 416 and (seg.end is None or seg.pos >= seg.end):
            return None
        if status != 206:
            raise DownloadError(src.url, f"HTTP {status}")
        value = r.headers.get("content-range", "")
        parsed = content_range(value)
        if parsed is None:
            raise Restart(f"unusable Content-Range {value!r}")
        start, total = parsed
        if start != seg.pos:
            raise Restart(f"Content-Range starts at {start}, asked for {seg.pos}")
        with self._lock:
            if src.etag and etag and etag != src.etag:
                raise Restart("the ETag changed between requests (the file changed)")
            if total is not None and self.st.size is not None and total != self.st.size:
                raise Restart(f"Content-Range says {total} bytes, expected {self.st.size}")
            newly_sized = self.st.size is None and total is not None
            self._accept_size(total, seg, asked)
            self._accept_validators(etag, r, src)
            first = self._ranges is None
            self._ranges = True
            extra = plan_rest(self.st, seg, self.settings) if first or newly_sized else 0
        self._announce()
        if extra:
            self._spawn(extra)
        return False

    def _announce(self) -> None:
        """Start the progress bar once, as soon as a response told the size."""
        with self._lock:
            if self._announced:
                return
            self._announced = True
        self.reporter.file_started(self.st.filename, self.st.size, self.st.done)

    def _accept_size(self, total: int | None, seg: Segment, asked_end: int | None) -> None:
        """Learn the size.  An open segment of a file that will be split ends where its
        request ended (*asked_end*); otherwise it runs to the end of the file."""
        if total is None:
            return
        if self.st.size is None:
            self.st.size = total
        if seg.end is None:
            split = total >= self.settings.split_size and self.settings.connections > 1
            seg.end = min(total, asked_end) if split and asked_end is not None else total

    def _accept_validators(self, etag: str | None, r: Stream, src: Source) -> None:
        src.etag = etag or src.etag
        src.last_modified = r.headers.get("last-modified") or src.last_modified
        if src is self.sources[0]:  # the state file keeps the validators of its own URL
            self.st.etag, self.st.last_modified = src.etag, src.last_modified

    def _receive(self, seg: Segment, r: Stream, asked: int) -> bool:
        """Write the body at the segment's position; True when a body of unknown total
        ended before *asked* (that is the end of the file)."""
        stall = self.settings.stall_seconds
        window_start, window_bytes = time.monotonic(), 0
        # Unbuffered: a byte counted in seg.pos has reached the OS, so a checkpoint's fsync
        # covers it.
        with open(self.part, "r+b", buffering=0) as fh:
            fh.seek(seg.pos)
            for chunk in r.chunks:
                if self._stop.is_set():
                    return False
                with self._lock:
                    end = seg.end
                take = len(chunk) if end is None else min(len(chunk), end - seg.pos)
                if take <= 0:
                    return False  # a thief took the rest of this segment
                data = memoryview(chunk)
                try:
                    view = data[:take]
                    while view:  # a raw write may be partial
                        view = view[fh.write(view) or 0 :]
                except OSError as exc:
                    raise CacheError(describe_os_error(exc, self.part)) from exc
                with self._progress:
                    # A thief may have moved the end while this chunk was written; the bytes
                    # past it are the thief's to write again.
                    take = take if seg.end is None else max(0, min(take, seg.end - seg.pos))
                    at = seg.pos
                    seg.pos += take
                    self._progress.notify_all()
                self._hash_inline(at, data[:take])
                self._tick()
                self.reporter.file_advanced(self.st.filename, take)
                self._count(take)
                if take < len(chunk):
                    return False
                now = time.monotonic()
                window_bytes += take
                if now - window_start >= stall:
                    if window_bytes < 1024:
                        raise _Retry(f"stalled (under 1 KiB in {stall:.0f}s)")
                    window_start, window_bytes = now, 0
        if seg.end is None:
            return seg.pos < asked
        if seg.pos < min(asked, seg.end):
            raise _Retry(f"connection closed at byte {seg.pos}")
        return False

    # -- hashing ----------------------------------------------------------------------------
    def _start_hasher(self) -> None:
        """Hand the digests to a thread that reads the prefix back as it grows (once)."""
        if not self.settings.hash_during:
            return
        with self._hash_lock:
            if self._hasher is not None:
                return
            self._hasher = threading.Thread(
                target=self._hash_loop, name="wheelcache-hash", daemon=True
            )
        self._hasher.start()

    def _hash_inline(self, at: int, data: memoryview) -> None:
        """Hash bytes just written at *at* when they extend the hashed prefix and no hasher
        thread runs: with one connection, every chunk, straight from memory."""
        if not data or not self.settings.hash_during:
            return
        with self._hash_lock:
            if self._hasher is None and at == self._hashed:
                self._sha.update(data)
                self._b3.update(data)
                self._hashed += len(data)

    def _hash_rest(self, size: int) -> None:
        """After the last byte: hash what was not hashed on the way (all of it when
        ``hash_during`` is off)."""
        if self._hashed >= size:
            return
        try:
            with open(self.part, "rb", buffering=0) as fh:
                self._hash_from(fh, size)
        except OSError as exc:
            raise CacheError(describe_os_error(exc, self.part)) from exc

    def _hash_from(self, fh: Any, target: int) -> None:
        fh.seek(self._hashed)
        while self._hashed < target:
            block = fh.read(min(READ_BLOCK, target - self._hashed))
            if not block:
                raise Restart("the partial file is shorter than its state says")
            self._sha.update(block)
            self._b3.update(block)
            self._hashed += len(block)

    def _hash_loop(self) -> None:
        """Hash the contiguous prefix as it grows; the page cache serves the reads.

        Unbuffered: a buffered reader keeps read-ahead bytes across seeks, and bytes read
        ahead of the prefix may not have been written yet.
        """
        try:
            with open(self.part, "rb", buffering=0) as fh:
                while True:
                    with self._progress:
                        if self._error is not None:
                            return
                        target = contiguous_prefix(self.st.segments)
                        if target <= self._hashed:
                            if self._stop.is_set():
                                return
                            self._progress.wait(0.2)
                            continue
                    self._hash_from(fh, target)
        except BaseException as exc:
            self._fail(exc)
