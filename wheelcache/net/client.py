"""The one HTTP client: retries, range reads and streamed bodies, behind our own values.

It returns :class:`Response` and :class:`Stream`, never a transport object; the transport is
:mod:`wheelcache.net.http11` (``http.client`` with a keep-alive pool, proxies from the
environment and redirects), whose :func:`~wheelcache.net.http11.translated` is the one place
where socket, TLS and ``http.client`` errors become
:class:`~wheelcache.errors.ConnectionFault`; everything else raised here is a
:class:`~wheelcache.errors.WheelcacheError` too.  Retries are a bounded loop of ours with
exponential backoff, jitter and ``Retry-After``.  Pages are asked for compressed (gzip or
deflate) and inflated here, the page limit applying to the inflated bytes; file bodies are
asked for as they are (``Accept-Encoding: identity``) so that offsets match the file.

What a server sends is bounded here: a small body (a page, a ``.metadata`` file) is refused as
soon as its ``Content-Length`` or the bytes read pass the limit the caller gives; a range read
never reads past the bytes asked for; the time spent waiting because servers said
``Retry-After`` is bounded for the whole run (:attr:`HttpSettings.max_retry_wait`) and a longer
wait is refused at once, saying what the server asked; a redirect from https to plain http is
refused (the bytes would then travel unprotected).
"""

from __future__ import annotations

import logging
import os
import random
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, TypeVar
from urllib.parse import urlsplit

from wheelcache import __version__
from wheelcache.errors import (
    ConnectionFault,
    DownloadError,
    IndexUnreachableError,
    ResponseTooLargeError,
    WheelcacheError,
)

__all__ = [
    "RETRY_STATUS",
    "Http",
    "HttpSettings",
    "RangeResult",
    "Response",
    "Stream",
    "content_range",
    "http_session",
    "retry_delay",
]

if TYPE_CHECKING:  # imported when the first Http is made: --offline and --help never pay
    import ssl  # for the transport (about 35 ms) or a TLS trust store (about 30 ms)

    from wheelcache.net.http11 import Exchange, Pool

log = logging.getLogger(__name__)

RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class HttpSettings:
    connect_timeout: float = 10.0
    read_timeout: float = 30.0
    retries: int = 5
    backoff: float = 0.5
    backoff_max: float = 20.0
    max_connections: int = 32
    #: The largest index page read (the biggest real ones are a few MiB).
    max_page: int = 16 << 20
    #: The largest ``.metadata`` file or METADATA member read or inflated.
    max_metadata: int = 16 << 20
    #: Seconds a whole run may spend waiting because servers said ``Retry-After``.
    max_retry_wait: float = 300.0


def retry_delay(attempt: int, retry_after: str | None, settings: HttpSettings) -> float:
    """Seconds to wait before retry number *attempt* (1-based): ``Retry-After`` or backoff.

    >>> retry_delay(1, "3", HttpSettings())
    3.0
    >>> 0.25 <= retry_delay(1, None, HttpSettings()) <= 0.75
    True
    """
    if retry_after:
        try:
            return min(float(retry_after), 120.0)
        except ValueError:
            from email.utils import parsedate_to_datetime  # rare: loaded when needed

            try:
                when = float(parsedate_to_datetime(retry_after).timestamp())
                return max(0.0, min(when - time.time(), 120.0))
            except (TypeError, ValueError):
                pass
    base: float = min(settings.backoff * 2.0 ** (attempt - 1), settings.backoff_max)
    return base * (0.5 + random.random())  # full jitter around the base


@dataclass(frozen=True, slots=True)
class Response:
    """A whole, small answer (a page, a ``.metadata`` file).

    ``headers`` has lower-case names; ``url`` is the final one, after redirects.
    """

    url: str
    status: int
    headers: Mapping[str, str]
    content: bytes = b""
    #: A body spooled to this file instead of ``content`` (see :meth:`Http.get`).
    path: Path | None = None


@dataclass(frozen=True, slots=True)
class Stream:
    """A streamed answer: the body comes from ``chunks`` as it arrives, raw (no decoding, so
    offsets match the file); connection failures while reading come out as
    :class:`~wheelcache.errors.ConnectionFault`."""

    url: str
    status: int
    headers: Mapping[str, str]
    chunks: Iterator[bytes]


class RetryableStatus(Exception):
    def __init__(self, status: int, headers: Mapping[str, str]) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        self.retry_after = headers.get("retry-after")


@dataclass(frozen=True, slots=True)
class RangeResult:
    data: bytes
    total: int


def _decoded(
    chunks: Iterator[bytes], encoding: str, cap: int, url: str, what: str
) -> Iterator[bytes]:
    """*chunks* inflated (gzip or deflate), never more than *cap* + 1 bytes in all: a bomb
    is refused by the page limit after that much, not inflated whole first.  The compressed
    bytes are bounded by *cap* too (empty deflate blocks inflate to nothing, forever), and
    what follows the end of the stream is not kept."""
    import zlib

    name = encoding.strip().lower()
    if name in ("", "identity"):
        yield from chunks
        return
    if name not in ("gzip", "x-gzip", "deflate"):
        raise DownloadError(  # not asked for: a server bug, or a proxy's
            url, f"the server sent Content-Encoding {encoding[:40]!r}, which wheelcache cannot read"
        )
    inflate = zlib.decompressobj(16 + zlib.MAX_WBITS if "gzip" in name else zlib.MAX_WBITS)
    made = raw = 0
    first = True
    try:
        for chunk in chunks:
            raw += len(chunk)
            if raw > cap:
                raise ResponseTooLargeError(url, cap, what)
            data = b"" if inflate.eof else chunk
            while data and made <= cap and not inflate.eof:
                try:
                    out = inflate.decompress(data, cap - made + 1)  # 0 would mean "no bound"
                except zlib.error:
                    if not (first and name == "deflate"):
                        raise
                    inflate = zlib.decompressobj(-zlib.MAX_WBITS)  # raw deflate, as some send
                    out = inflate.decompress(data, cap - made + 1)
                first = False
                made += len(out)
                if out:
                    yield out
                elif data == inflate.unconsumed_tail:
                    break
                data = inflate.unconsumed_tail
            if made > cap:
                return
    except zlib.error as exc:
        raise DownloadError(url, f"the {name} body does not inflate ({exc})") from exc


SPOOL_OVER = 1 << 20  # bytes of a small body kept in memory before it goes to a file


def _read_body(
    chunks: Iterator[bytes], cap: int, spool: Path | None
) -> tuple[bytes | None, Path | None]:
    """Read at most *cap* bytes: ``(body, None)``, ``(b"", file)`` when spooled past
    :data:`SPOOL_OVER`, or ``(None, None)`` when the body passed *cap* (nothing is kept)."""
    body = bytearray()
    out: BinaryIO | None = None
    path: Path | None = None
    size = 0
    try:
        for chunk in chunks:
            size += len(chunk)
            if size > cap:
                return None, None
            if out is not None:
                out.write(chunk)
                continue
            body += chunk
            if spool is not None and len(body) > SPOOL_OVER:
                fd, name = tempfile.mkstemp(dir=spool, suffix=".page")
                out, path = os.fdopen(fd, "wb"), Path(name)
                out.write(body)
                body = bytearray()
        if out is not None:
            out.flush()
            os.fsync(out.fileno())
        done = path
        path = None  # kept: the caller moves it
        return bytes(body), done
    finally:
        if out is not None:
            out.close()
        if path is not None:
            path.unlink(missing_ok=True)


def _retry_after_seconds(value: str) -> float | None:
    """What a ``Retry-After`` asks for, in seconds from now (None when it is not readable).

    >>> _retry_after_seconds("100000"), _retry_after_seconds("soon")
    (100000.0, None)
    """
    try:
        return max(0.0, float(value))
    except ValueError:
        from email.utils import parsedate_to_datetime  # rare: loaded when needed

        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError, IndexError, OverflowError):
            return None


def content_range(value: str) -> tuple[int, int | None] | None:
    """``bytes 100-199/1000`` → ``(100, 1000)``; ``*`` as the total → None; unusable → None.

    >>> content_range("bytes 100-199/1000"), content_range("bytes 0-9/*"), content_range("x")
    ((100, 1000), (0, None), None)
    """
    try:
        _unit, rest = value.split(" ", 1)
        span, total = rest.split("/", 1)
        start = int(span.split("-", 1)[0])
        return start, (None if total.strip() == "*" else int(total))
    except ValueError:
        return None


def _lazy_trust() -> ssl.SSLContext:
    """A client TLS context whose trust store is read when the first TLS connection is made.

    The trust is what httpx used: ``SSL_CERT_FILE``, else ``SSL_CERT_DIR``, else certifi's bundle.
    Reading it costs about 30 ms; a run that only talks plain http (a LAN mirror, ``serve``)
    never pays it, and a run that does pays it once, before its first handshake.
    """
    import ssl

    class UnreadableTrust(ssl.SSLError):
        def __str__(self) -> str:  # the message, not the tuple of args an SSLError shows
            return str(self.args[0])

    class LazyTrust(ssl.SSLContext):
        _lock = threading.Lock()
        _loaded = False

        def _load(self) -> None:
            with self._lock:
                if self._loaded:
                    return
                if os.environ.get("SSL_CERT_FILE"):
                    where = {"cafile": os.environ["SSL_CERT_FILE"]}
                elif os.environ.get("SSL_CERT_DIR"):
                    where = {"capath": os.environ["SSL_CERT_DIR"]}
                else:
                    import certifi

                    where = {"cafile": certifi.where()}
                try:
                    self.load_verify_locations(**where)
                except OSError as exc:  # an SSLError too: the handshake is refused, saying why
                    name = "SSL_CERT_DIR" if "capath" in where else "SSL_CERT_FILE"
                    path = next(iter(where.values()))
                    raise UnreadableTrust(
                        f"cannot read the trust store {path} ({exc.strerror or exc}); check {name}"
                    ) from exc
                type(self)._loaded = True

        def wrap_socket(self, *args: Any, **kwargs: Any) -> ssl.SSLSocket:
            self._load()
            return super().wrap_socket(*args, **kwargs)

        def wrap_bio(self, *args: Any, **kwargs: Any) -> ssl.SSLObject:
            self._load()
            return super().wrap_bio(*args, **kwargs)

    ctx = LazyTrust(ssl.PROTOCOL_TLS_CLIENT)  # verifies certificates and host names
    if sys.version_info >= (3, 13):  # what ssl.create_default_context adds
        ctx.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN | ssl.VERIFY_X509_STRICT  # there
    keylog = os.environ.get("SSLKEYLOGFILE")
    if keylog:
        ctx.keylog_filename = keylog
    return ctx


class Http:
    """The one HTTP client of a command; safe to share between threads."""

    def __init__(self, settings: HttpSettings | None = None) -> None:
        from wheelcache.net.http11 import Pool

        self.settings = settings or HttpSettings()
        s = self.settings
        self.pool: Pool = Pool(s.max_connections, s.connect_timeout, _lazy_trust)
        self.headers = {"User-Agent": f"wheelcache/{__version__}", "Accept": "*/*"}
        self.cancelled = threading.Event()
        #: Hosts that could not be reached at all in this run, and why: every later request
        #: to them fails at once instead of trying again (one answer per host, not per page).
        self._unreachable: dict[str, str] = {}
        self._unreachable_lock = threading.Lock()
        self._waited = 0.0  # seconds waited on Retry-After so far (all threads)
        self._waited_lock = threading.Lock()

    @contextmanager
    def _exchange(
        self,
        url: str,
        headers: Mapping[str, str] | None,
        *,
        method: str = "GET",
        encoding: str = "identity",
        timeout: float | None = None,
    ) -> Iterator[Exchange]:
        """One request (redirects followed), its connection freed when the block ends."""
        from wheelcache.net.http11 import open_exchange

        sent = {**self.headers, "Accept-Encoding": encoding}
        for name, value in (headers or {}).items():  # the caller's win, whatever their case
            for known in [k for k in sent if k.lower() == name.lower()]:
                del sent[known]
            sent[name] = value
        read = timeout if timeout is not None else self.settings.read_timeout
        exchange = open_exchange(self.pool, url, method, sent, read)
        try:
            yield exchange
        finally:
            exchange.finish()

    def cancel(self) -> None:
        """Stop every retry wait at once and refuse new requests (Ctrl-C, a failed run)."""
        self.cancelled.set()

    def close(self) -> None:
        """Close every connection; a read blocked on one ends at once."""
        self.pool.close()

    def retry_wait(self, attempt: int, retry_after: str | None) -> tuple[float, str | None]:
        """Seconds to wait before retry *attempt*, or ``(0, why)`` when a server's
        ``Retry-After`` asks for more than the run's budget has left (then give up)."""
        delay = retry_delay(attempt, retry_after, self.settings)
        if not retry_after:
            return delay, None
        asked = _retry_after_seconds(retry_after)
        with self._waited_lock:
            left = self.settings.max_retry_wait - self._waited
            if asked is None or asked <= left:
                self._waited += delay
                return delay, None
        waited = f"after waiting {self._waited:.0f} s already, " if self._waited else ""
        return 0.0, (
            f"the server asks to retry after {retry_after.strip()[:40]} (Retry-After), "
            f"{waited}more than the {self.settings.max_retry_wait:g} s wheelcache waits in all "
            "(--max-retry-wait); try again later"
        )

    def with_retries(
        self, url: str, fn: Callable[[], T], *, on_fail: Callable[[str], WheelcacheError]
    ) -> T:
        """Run *fn*, retrying transient faults (a reset, a stall, 5xx, 429) with backoff.

        A host that cannot be reached at all (its name does not resolve, nothing listens, TLS
        fails, no answer to connect) is no transient fault: it fails at once, and so does
        every later request to that host in this run.
        """
        try:
            host = urlsplit(url).netloc
        except ValueError as exc:  # "[::1" and friends: no request can be made of it
            raise on_fail(f"malformed URL ({exc})") from exc
        attempt = 0
        while True:
            attempt += 1
            if self.cancelled.is_set():
                raise on_fail("cancelled")
            with self._unreachable_lock:
                known = self._unreachable.get(host)
            if known is not None:
                raise on_fail(known)
            retry_after: str | None = None
            cause: Exception
            try:
                return fn()
            except ConnectionFault as exc:
                if exc.unreachable:
                    with self._unreachable_lock:
                        self._unreachable.setdefault(host, exc.reason)
                if not exc.retryable or exc.unreachable:
                    raise on_fail(exc.reason) from exc
                reason, cause = exc.reason, exc
            except RetryableStatus as exc:
                reason, cause, retry_after = str(exc), exc, exc.retry_after
            if self.cancelled.is_set():  # the run is over (its client closed under us): no
                raise on_fail("cancelled") from cause  # retry, and no warning after its error
            if attempt > self.settings.retries:
                tries = f"{attempt} attempt{'s' if attempt > 1 else ''}"
                raise on_fail(f"{reason} (gave up after {tries})") from cause
            delay, refused = self.retry_wait(attempt, retry_after)
            if refused is not None:
                raise on_fail(f"{reason}: {refused}") from cause
            log.warning("%s: %s; retrying in %.1fs", url, reason, delay)
            if self.cancelled.wait(delay):
                raise on_fail("cancelled") from cause

    def get(
        self,
        url: str,
        headers: dict[str, str] | None = None,
        *,
        limit: int | None = None,
        what: str = "the answer is",
        spool: Path | None = None,
    ) -> Response:
        """GET a small body (page, .metadata) with retries; 4xx are returned, not raised.

        A body over *limit* bytes raises :class:`ResponseTooLargeError` (*what* names it in the
        message) as soon as its length or its bytes say so; it is not asked for again.  With
        *spool* (a folder), a body over 1 MiB goes to a new file there (``Response.path``,
        the caller's to move or remove) instead of memory: many threads reading big pages
        at once must not each hold one.
        """
        cap = limit if limit is not None else self.settings.max_page

        def once() -> Response:
            with self._exchange(url, headers, encoding="gzip, deflate") as r:
                if r.status in RETRY_STATUS:
                    raise RetryableStatus(r.status, r.headers)
                coding = r.headers.get("content-encoding", "")
                length = r.headers.get("content-length", "")
                if length.isdigit() and int(length) > cap and coding in ("", "identity"):
                    raise ResponseTooLargeError(url, cap, what)
                chunks = _decoded(r.pieces(), coding, cap, url, what)
                body, path = _read_body(chunks, cap, spool)
                if body is None:
                    raise ResponseTooLargeError(url, cap, what)
                return Response(r.url, r.status, r.headers, body, path)

        return self.with_retries(url, once, on_fail=lambda why: IndexUnreachableError(url, why))

    def content_length(self, url: str) -> int | None:
        """Size of a file by HEAD (None when the server does not say)."""

        def once() -> int | None:
            with self._exchange(url, None, method="HEAD") as r:
                for _ in r.pieces():  # nothing: a HEAD has no body, but is read to its end
                    pass
                if r.status in RETRY_STATUS:
                    raise RetryableStatus(r.status, r.headers)
                if r.status != 200:
                    return None
                value = r.headers.get("content-length")
                return int(value) if value and value.isdigit() else None

        return self.with_retries(url, once, on_fail=lambda why: DownloadError(url, why))

    @contextmanager
    def stream(
        self, url: str, headers: dict[str, str], *, read_timeout: float | None = None
    ) -> Iterator[Stream]:
        """One streamed GET, no retries (the downloader owns its retry loop).

        *read_timeout* bounds the wait for each piece of the body: a stalled connection is
        given up within seconds, not after the page timeout.  Connection failures raise
        :class:`~wheelcache.errors.ConnectionFault`.
        """
        with self._exchange(url, headers, timeout=read_timeout) as r:
            yield Stream(r.url, r.status, r.headers, r.pieces())

    def get_range(self, url: str, start: int | None, end: int | None) -> RangeResult | None:
        """Read bytes ``start..end`` (inclusive; ``start=None`` means the last *end* bytes).

        Returns None when the server does not honour ranges (it answered 200): the caller then
        falls back to a whole download, and the body is not read here.
        """
        spec = f"bytes=-{end}" if start is None else f"bytes={start}-{end}"
        headers = {"Range": spec, "Accept-Encoding": "identity"}
        assert end is not None
        asked = end if start is None else end - start + 1

        def once() -> RangeResult | None:
            with self._exchange(url, headers) as r:
                if r.status in RETRY_STATUS:
                    raise RetryableStatus(r.status, r.headers)
                if r.status == 200:
                    return None
                if r.status != 206:
                    raise DownloadError(url, f"HTTP {r.status} for a range request")
                parsed = content_range(r.headers.get("content-range", ""))
                first, total = parsed if parsed is not None else (0, None)
                if total is None:
                    raise DownloadError(url, "206 without a usable Content-Range")
                want = min(asked, total) if start is None else min(asked, total - first)
                if first != (max(0, total - asked) if start is None else start) or want < 0:
                    raise DownloadError(url, f"206 for another range than {spec}")
                data = bytearray()
                for chunk in r.pieces(max(want, 1)):  # never past the bytes asked for
                    data += chunk
                    if len(data) > want:
                        raise DownloadError(url, f"sent more than the {want} bytes asked for")
                if len(data) != want:
                    raise DownloadError(url, f"sent {len(data)} of the {want} bytes asked for")
                return RangeResult(bytes(data), total)

        return self.with_retries(url, once, on_fail=lambda why: DownloadError(url, why))


@contextmanager
def http_session(settings: HttpSettings | None, *, offline: bool) -> Iterator[Http | None]:
    """The one :class:`Http` of a command (None with *offline*), closed when it ends.

    An error (or Ctrl-C) cancels it first, so retry waits in other threads end at once.
    """
    if offline:
        yield None
        return
    http = Http(settings)
    try:
        yield http
    except BaseException:
        http.cancel()
        raise
    finally:
        http.close()
