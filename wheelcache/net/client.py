"""The one HTTP client: retries, range reads and streamed bodies, behind our own values.

This is the only module that sees ``httpx``: it returns :class:`Response` and :class:`Stream`
(never an ``httpx.Response``), and :func:`_translated` is the one place where httpx errors
become :class:`~wheelcache.errors.ConnectionFault`; everything else it raises is a
:class:`~wheelcache.errors.WheelcacheError` too.  Retries are a bounded loop of ours with
exponential backoff, jitter and ``Retry-After`` (a custom transport would switch off httpx's
proxy settings).
"""

from __future__ import annotations

import logging
import random
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import TypeVar
from urllib.parse import urlsplit

import httpx

from wheelcache import __version__
from wheelcache.errors import (
    ConnectionFault,
    DownloadError,
    IndexUnreachableError,
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

log = logging.getLogger(__name__)

RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
#: Errors that no retry can mend: a URL without http(s), a malformed request.
NOT_RETRYABLE = (httpx.UnsupportedProtocol, httpx.LocalProtocolError)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class HttpSettings:
    connect_timeout: float = 10.0
    read_timeout: float = 30.0
    retries: int = 5
    backoff: float = 0.5
    backoff_max: float = 20.0
    max_connections: int = 32


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


def _headers(r: httpx.Response) -> dict[str, str]:
    return {k.lower(): v for k, v in r.headers.items()}


@contextmanager
def _translated(url: str) -> Iterator[None]:
    """The one place where httpx errors become ours (see :class:`ConnectionFault`)."""
    try:
        yield
    except httpx.ConnectTimeout as exc:  # no answer at all: the host is unreachable
        fault = ConnectionFault(
            url, "timed out connecting", retryable=True, timed_out=True, unreachable=True
        )
        raise fault from exc
    except httpx.TimeoutException as exc:
        raise ConnectionFault(url, _describe(exc), retryable=True, timed_out=True) from exc
    except NOT_RETRYABLE as exc:  # a bad URL does not get better by waiting
        raise ConnectionFault(url, _describe(exc), retryable=False) from exc
    except httpx.ConnectError as exc:
        why = _unreachable(exc)
        fault = ConnectionFault(url, why or _describe(exc), retryable=True, unreachable=bool(why))
        raise fault from exc
    except httpx.TransportError as exc:
        raise ConnectionFault(url, _describe(exc), retryable=True) from exc
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        raise ConnectionFault(url, _describe(exc), retryable=False) from exc


def _unreachable(exc: BaseException) -> str | None:
    """Why a connection could not be made at all — the name does not resolve, nothing listens,
    TLS fails — or None for a fault that waiting may mend.  httpx keeps the socket error as
    the cause of its own."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, socket.gaierror):
            return "name not resolved"
        if isinstance(seen, ConnectionRefusedError):
            return "connection refused"
        if isinstance(seen, ssl.SSLError):
            return f"TLS failure ({getattr(seen, 'reason', None) or seen})"
        seen = seen.__cause__ or seen.__context__
    return None


def _describe(exc: BaseException) -> str:
    """One short phrase for an httpx error, for the log line and the final error."""
    if isinstance(exc, httpx.TimeoutException):
        return f"timed out ({type(exc).__name__})"
    if isinstance(exc, httpx.ConnectError):
        return f"cannot connect ({exc})"
    if isinstance(exc, httpx.RemoteProtocolError):
        return "connection dropped"
    if isinstance(exc, httpx.ReadError):
        return "connection reset"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _raw_chunks(r: httpx.Response, url: str) -> Iterator[bytes]:
    with _translated(url):
        yield from r.iter_raw()


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


class Http:
    """Wraps the one ``httpx.Client``; safe to share between threads."""

    def __init__(self, settings: HttpSettings | None = None) -> None:
        self.settings = settings or HttpSettings()
        s = self.settings
        self.client = httpx.Client(
            timeout=httpx.Timeout(s.read_timeout, connect=s.connect_timeout, pool=None),
            limits=httpx.Limits(
                max_connections=s.max_connections, max_keepalive_connections=s.max_connections
            ),
            headers={"User-Agent": f"wheelcache/{__version__} httpx/{httpx.__version__}"},
            follow_redirects=True,
            trust_env=True,
        )
        self.cancelled = threading.Event()
        #: Hosts that could not be reached at all in this run, and why: every later request
        #: to them fails at once instead of trying again (one answer per host, not per page).
        self._unreachable: dict[str, str] = {}
        self._unreachable_lock = threading.Lock()

    def cancel(self) -> None:
        """Stop every retry wait at once and refuse new requests (Ctrl-C, a failed run)."""
        self.cancelled.set()

    def close(self) -> None:
        self.client.close()

    def with_retries(
        self, url: str, fn: Callable[[], T], *, on_fail: Callable[[str], WheelcacheError]
    ) -> T:
        """Run *fn*, retrying transient faults (a reset, a stall, 5xx, 429) with backoff.

        A host that cannot be reached at all (its name does not resolve, nothing listens, TLS
        fails, no answer to connect) is no transient fault: it fails at once, and so does
        every later request to that host in this run.
        """
        host = urlsplit(url).netloc
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
                with _translated(url):
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
            if self.cancelled.is_set():  # the run is over: no retry, and nothing to say
                raise on_fail("cancelled") from cause
            delay = retry_delay(attempt, retry_after, self.settings)
            log.warning("%s: %s; retrying in %.1fs", url, reason, delay)
            if self.cancelled.wait(delay):
                raise on_fail("cancelled") from cause

    def get(self, url: str, headers: dict[str, str] | None = None) -> Response:
        """GET a small body (page, .metadata) with retries; 4xx are returned, not raised."""

        def once() -> Response:
            r = self.client.get(url, headers=headers)
            got = Response(str(r.url), r.status_code, _headers(r), r.content)
            if got.status in RETRY_STATUS:
                raise RetryableStatus(got.status, got.headers)
            return got

        return self.with_retries(url, once, on_fail=lambda why: IndexUnreachableError(url, why))

    def content_length(self, url: str) -> int | None:
        """Size of a file by HEAD (None when the server does not say)."""

        def once() -> int | None:
            r = self.client.head(url, headers={"Accept-Encoding": "identity"})
            if r.status_code in RETRY_STATUS:
                raise RetryableStatus(r.status_code, _headers(r))
            if r.status_code != 200:
                return None
            value = r.headers.get("Content-Length")
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
        timeout = (
            httpx.Timeout(read_timeout, connect=self.settings.connect_timeout, pool=None)
            if read_timeout is not None
            else httpx.USE_CLIENT_DEFAULT
        )
        with (
            _translated(url),
            self.client.stream("GET", url, headers=headers, timeout=timeout) as r,
        ):
            yield Stream(str(r.url), r.status_code, _headers(r), _raw_chunks(r, url))

    def get_range(self, url: str, start: int | None, end: int | None) -> RangeResult | None:
        """Read bytes ``start..end`` (inclusive; ``start=None`` means the last *end* bytes).

        Returns None when the server does not honour ranges (it answered 200): the caller then
        falls back to a whole download, and the body is not read here.
        """
        spec = f"bytes=-{end}" if start is None else f"bytes={start}-{end}"
        headers = {"Range": spec, "Accept-Encoding": "identity"}

        def once() -> RangeResult | None:
            with self.client.stream("GET", url, headers=headers) as r:
                if r.status_code in RETRY_STATUS:
                    raise RetryableStatus(r.status_code, _headers(r))
                if r.status_code == 200:
                    return None
                if r.status_code != 206:
                    raise DownloadError(url, f"HTTP {r.status_code} for a range request")
                parsed = content_range(r.headers.get("Content-Range", ""))
                data = r.read()
                if parsed is None or parsed[1] is None:
                    raise DownloadError(url, "206 without a usable Content-Range")
                return RangeResult(data, parsed[1])

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
