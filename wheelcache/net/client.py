"""The one HTTP client: retries, range reads, and index pages cached with revalidation.

This is the only module that sees ``httpx``; everything it raises is a
:class:`~wheelcache.errors.WheelcacheError`.  Retries are a bounded loop of ours with
exponential backoff, jitter and ``Retry-After`` (a custom transport would switch off httpx's
proxy settings).
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import TypeVar

import httpx

from wheelcache import __version__
from wheelcache.errors import DownloadError, IndexPageError, IndexUnreachableError, WheelcacheError
from wheelcache.store.cache import Cache

__all__ = [
    "ACCEPT_SIMPLE",
    "Http",
    "HttpSettings",
    "PageResponse",
    "PageStore",
    "RangeResult",
    "retry_delay",
]

log = logging.getLogger(__name__)

ACCEPT_SIMPLE = (
    "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;q=0.2, "
    "text/html;q=0.01"
)
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


class RetryableStatus(Exception):
    def __init__(self, response: httpx.Response) -> None:
        super().__init__(f"HTTP {response.status_code}")
        self.status = response.status_code
        self.retry_after = response.headers.get("Retry-After")


@dataclass(frozen=True, slots=True)
class RangeResult:
    data: bytes
    total: int


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

    def cancel(self) -> None:
        """Stop every retry wait at once and refuse new requests (Ctrl-C, a failed run)."""
        self.cancelled.set()

    def close(self) -> None:
        self.client.close()

    def with_retries(
        self, url: str, fn: Callable[[], T], *, on_fail: Callable[[str], WheelcacheError]
    ) -> T:
        """Run *fn*, retrying transport errors and retryable statuses with backoff."""
        attempt = 0
        while True:
            attempt += 1
            if self.cancelled.is_set():
                raise on_fail("cancelled")
            try:
                return fn()
            except NOT_RETRYABLE as exc:  # a bad URL does not get better by waiting
                raise on_fail(_describe(exc)) from exc
            except (httpx.TransportError, RetryableStatus) as exc:
                reason = _describe(exc)
                if attempt > self.settings.retries:
                    raise on_fail(f"{reason} (gave up after {attempt} attempts)") from exc
                retry_after = exc.retry_after if isinstance(exc, RetryableStatus) else None
                delay = retry_delay(attempt, retry_after, self.settings)
                log.warning("%s: %s; retrying in %.1fs", url, reason, delay)
                if self.cancelled.wait(delay):
                    raise on_fail("cancelled") from exc
            except (httpx.HTTPError, httpx.InvalidURL) as exc:
                raise on_fail(_describe(exc)) from exc

    def get(self, url: str, headers: dict[str, str] | None = None) -> httpx.Response:
        """GET a small body (page, .metadata) with retries; 4xx are returned, not raised."""

        def once() -> httpx.Response:
            r = self.client.get(url, headers=headers)
            if r.status_code in RETRY_STATUS:
                raise RetryableStatus(r)
            return r

        return self.with_retries(url, once, on_fail=lambda why: IndexUnreachableError(url, why))

    def content_length(self, url: str) -> int | None:
        """Size of a file by HEAD (None when the server does not say)."""

        def once() -> int | None:
            r = self.client.head(url, headers={"Accept-Encoding": "identity"})
            if r.status_code in RETRY_STATUS:
                raise RetryableStatus(r)
            if r.status_code != 200:
                return None
            value = r.headers.get("Content-Length")
            return int(value) if value and value.isdigit() else None

        return self.with_retries(url, once, on_fail=lambda why: DownloadError(url, why))

    @contextmanager
    def stream(
        self, url: str, headers: dict[str, str], *, read_timeout: float | None = None
    ) -> Iterator[httpx.Response]:
        """One streamed GET, no retries (the downloader owns its retry loop).

        *read_timeout* bounds the wait for each piece of the body: a stalled connection is
        given up within seconds, not after the page timeout.
        """
        timeout = (
            httpx.Timeout(read_timeout, connect=self.settings.connect_timeout, pool=None)
            if read_timeout is not None
            else httpx.USE_CLIENT_DEFAULT
        )
        with self.client.stream("GET", url, headers=headers, timeout=timeout) as r:
            yield r

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
                    raise RetryableStatus(r)
                if r.status_code == 200:
                    return None
                if r.status_code != 206:
                    raise DownloadError(url, f"HTTP {r.status_code} for a range request")
                total = _content_range_total(r.headers.get("Content-Range", ""))
                data = r.read()
                if total is None:
                    raise DownloadError(url, "206 without a usable Content-Range")
                return RangeResult(data, total)

        return self.with_retries(url, once, on_fail=lambda why: DownloadError(url, why))


def _content_range_total(value: str) -> int | None:
    """``bytes 0-9/100`` → 100."""
    try:
        return int(value.rsplit("/", 1)[1])
    except (IndexError, ValueError):
        return None


def _describe(exc: BaseException) -> str:
    if isinstance(exc, RetryableStatus):
        return str(exc)
    if isinstance(exc, httpx.TimeoutException):
        return f"timed out ({type(exc).__name__})"
    if isinstance(exc, httpx.ConnectError):
        return f"cannot connect ({exc})"
    if isinstance(exc, httpx.HTTPError):
        return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return str(exc)


@dataclass(frozen=True, slots=True)
class PageResponse:
    url: str
    status: int  # 200 or 404
    body: bytes
    content_type: str
    from_cache: bool = False  # the stored copy (offline, or revalidated with a 304)


class PageStore:
    """Index pages fetched once per run, cached on disk and revalidated with ETag/Last-Modified.

    With ``http=None`` (``--offline``) it answers from the disk cache only and never touches
    the network.
    """

    def __init__(self, cache: Cache, http: Http | None) -> None:
        self.cache = cache
        self.http = http
        self._memo: dict[str, PageResponse] = {}
        self._lock = threading.Lock()
        self._url_locks: dict[str, threading.Lock] = {}

    def _url_lock(self, url: str) -> threading.Lock:
        with self._lock:
            return self._url_locks.setdefault(url, threading.Lock())

    def get(self, url: str, accept: str = ACCEPT_SIMPLE, *, fresh: bool = False) -> PageResponse:
        """GET a page (404 is an answer, not an error); other failures raise.

        *fresh* ignores the stored copy (it turned out to be unreadable) and asks the index
        without conditional headers.
        """
        with self._url_lock(url):
            if url in self._memo and not fresh:
                return self._memo[url]
            page = self._fetch(url, accept, fresh)
            self._memo[url] = page
            return page

    def _fetch(self, url: str, accept: str, fresh: bool = False) -> PageResponse:
        body_path, meta_path = (Path(p) for p in self.cache.layout.page(url))
        meta = self.cache.read_json(meta_path)
        cached: PageResponse | None = None
        if meta is not None:
            try:
                cached = PageResponse(
                    url=str(meta["url"]),
                    status=int(meta["status"]),
                    body=body_path.read_bytes() if meta["status"] == 200 else b"",
                    content_type=str(meta.get("content_type", "")),
                    from_cache=True,
                )
            except (OSError, KeyError, ValueError):
                cached = None
        if self.http is None:
            if cached is None:
                raise IndexPageError(
                    url, "not in the cache; run once without --offline to fetch it"
                )
            return cached
        headers = {"Accept": accept}
        if cached is not None and meta is not None and cached.status == 200 and not fresh:
            if meta.get("etag"):
                headers["If-None-Match"] = str(meta["etag"])
            if meta.get("last_modified"):
                headers["If-Modified-Since"] = str(meta["last_modified"])
        r = self.http.get(url, headers)
        if r.status_code == 304 and cached is not None:
            log.debug("page %s not modified", url)
            return cached
        if r.status_code in (404, 410):
            page = PageResponse(str(r.url), 404, b"", "")
        elif r.status_code == 200:
            page = PageResponse(str(r.url), 200, r.content, r.headers.get("Content-Type", ""))
        else:
            raise IndexPageError(url, f"HTTP {r.status_code}")
        new_meta = {
            "url": page.url,
            "status": page.status,
            "content_type": page.content_type,
            "etag": r.headers.get("ETag"),
            "last_modified": r.headers.get("Last-Modified"),
            "fetched_at": time.time(),
        }
        if page.status == 200:
            self.cache.write_atomic(body_path, page.body)
        self.cache.write_atomic(meta_path, json.dumps(new_meta).encode())
        return page
