"""Upstream index pages for ``serve --pull``: cached on disk, fresh for max-age, revalidated.

A LAN cache in front of a bad link asks upstream as little as it can, and keeps answering when
the link is gone:

* A page is stored in the same place and format ``fetch`` uses (``pages-v1/``, body plus a JSON
  record with ETag and Last-Modified), so pages one fetched serve the other.
* It is fresh for the upstream's ``s-maxage``/``max-age`` less its ``Age`` (``no-cache`` and
  ``no-store`` mean 0), or for *default_ttl* when upstream says nothing, never longer than
  *max_ttl*.  A stale page is revalidated with ``If-None-Match``/``If-Modified-Since``; a 304
  costs one round trip and no body.
* Concurrent requests for one page make one upstream request (a lock per URL stripe).
* Upstream unreachable: the stored copy is served, however old, and the log says so once per
  host; the host is not asked again for *retry_after* seconds, so fifty clients do not each wait
  for a timeout.  Without a stored copy the error goes to the caller (the client gets a 502).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from wheelcache.errors import (
    IndexPageError,
    IndexUnreachableError,
    ResponseTooLargeError,
    WheelcacheError,
)
from wheelcache.net.client import Http
from wheelcache.net.pages import ACCEPT_SIMPLE
from wheelcache.store.cache import Cache

__all__ = ["UpstreamPage", "UpstreamPages", "freshness"]

log = logging.getLogger(__name__)

_DIRECTIVE = re.compile(r"\s*([A-Za-z-]+)\s*(?:=\s*\"?(\d+)\"?)?\s*")
_MEMORY_PAGES = 512  # pages kept in memory (the rest are re-read from disk when asked)
_STRIPES = 64


def freshness(cache_control: str | None, age: str | None, default: float, cap: float) -> float:
    """Seconds a response stays fresh for a shared cache (RFC 9111 4.2.1).

    >>> freshness("public, max-age=600", None, 60, 86400), freshness("s-maxage=5, max-age=9",
    ...     "2", 60, 86400)
    (600.0, 3.0)
    >>> freshness("no-cache", None, 60, 86400), freshness(None, None, 60, 86400)
    (0.0, 60.0)
    """
    if not cache_control:
        return float(min(default, cap))
    values: dict[str, int | None] = {}
    for part in cache_control.split(","):
        m = _DIRECTIVE.fullmatch(part)
        if m:
            values[m.group(1).lower()] = int(m.group(2)) if m.group(2) else None
    if "no-cache" in values or "no-store" in values:
        return 0.0
    lifetime = values.get("s-maxage", values.get("max-age"))
    if lifetime is None:
        return float(min(default, cap))
    used = int(age) if age and age.strip().isdigit() else 0
    return float(max(0, min(lifetime - used, cap)))


@dataclass(frozen=True, slots=True)
class UpstreamPage:
    """A page as served from the cache: ``status`` 200 or 404, ``url`` the final URL (the base
    for its links), ``version`` an identity of the content, ``stale`` when upstream could not
    confirm it."""

    url: str
    status: int
    body: bytes
    content_type: str
    version: str
    stale: bool = False


@dataclass(slots=True)
class _Stored:
    page: UpstreamPage
    meta: dict[str, Any]
    fresh_until: float


class UpstreamPages:
    """Pages of the configured upstreams, as a shared HTTP cache keeps them (thread-safe)."""

    def __init__(
        self,
        cache: Cache,
        http: Http,
        *,
        default_ttl: float = 600.0,
        max_ttl: float = 86400.0,
        retry_after: float = 30.0,
    ) -> None:
        self.cache = cache
        self.http = http
        self.default_ttl = default_ttl
        self.max_ttl = max_ttl
        self.retry_after = retry_after
        self._memory: OrderedDict[str, _Stored] = OrderedDict()
        self._lock = threading.Lock()
        self._stripes = [threading.Lock() for _ in range(_STRIPES)]
        self._down: dict[str, float] = {}  # host -> when it last failed
        self.requests = 0  # upstream requests made (for tests and the benchmark)

    # -- public ----------------------------------------------------------------------------
    def get(self, url: str, *, revalidate: bool = False) -> UpstreamPage:
        """The page at *url*: stored if fresh, else asked upstream (conditionally).

        *revalidate* asks upstream even when the stored copy is fresh (a file the page should
        list was not on it).  Raises :class:`IndexPageError` when there is neither an answer
        nor a stored copy.
        """
        stored = self._remembered(url)
        if stored is not None and not revalidate and time.time() < stored.fresh_until:
            return stored.page
        stripe = self._stripes[int(hashlib.sha256(url.encode()).hexdigest()[:8], 16) % _STRIPES]
        asked_at = time.time()
        with stripe:
            stored = self._remembered(url)
            if stored is not None and float(stored.meta.get("fetched_at", 0)) >= asked_at:
                return stored.page  # another thread asked upstream while this one waited
            if stored is not None and not revalidate and time.time() < stored.fresh_until:
                return stored.page
            return self._ask(url, stored)

    def host_down(self, url: str) -> bool:
        """Whether *url*'s host failed within the last ``retry_after`` seconds."""
        host = urlsplit(url).netloc
        with self._lock:
            failed = self._down.get(host)
        return failed is not None and time.monotonic() - failed < self.retry_after

    # -- memory and disk -------------------------------------------------------------------
    def _remembered(self, url: str) -> _Stored | None:
        with self._lock:
            stored = self._memory.get(url)
            if stored is not None:
                self._memory.move_to_end(url)
                return stored
        stored = self._load(url)
        if stored is not None:
            self._remember(url, stored)
        return stored

    def _remember(self, url: str, stored: _Stored) -> None:
        with self._lock:
            self._memory[url] = stored
            self._memory.move_to_end(url)
            while len(self._memory) > _MEMORY_PAGES:
                self._memory.popitem(last=False)

    def _paths(self, url: str) -> tuple[Path, Path]:
        body, meta = self.cache.layout.page(url)
        return Path(body), Path(meta)

    def _load(self, url: str) -> _Stored | None:
        body_path, meta_path = self._paths(url)
        meta = self.cache.read_json(meta_path)
        if meta is None:
            return None
        try:
            status = int(meta["status"])
            body = body_path.read_bytes() if status == 200 else b""
            page = UpstreamPage(
                str(meta["url"]),
                status,
                body,
                str(meta.get("content_type", "")),
                _version(meta, body),
            )
            fetched = float(meta.get("fetched_at", 0))
        except (OSError, KeyError, TypeError, ValueError):
            return None
        return _Stored(page, meta, fetched + self._ttl(meta))

    def _ttl(self, meta: dict[str, Any]) -> float:
        """Freshness under today's settings (the upstream's own words are kept, not a TTL)."""
        ttl = freshness(meta.get("cache_control"), meta.get("age"), self.default_ttl, self.max_ttl)
        return min(ttl, 60.0) if meta.get("status") == 404 else ttl

    def _store(self, url: str, page: UpstreamPage, meta: dict[str, Any]) -> _Stored:
        body_path, meta_path = self._paths(url)
        try:
            if page.status == 200:
                self.cache.write_atomic(body_path, page.body, durable=False)
            self.cache.write_atomic(meta_path, json.dumps(meta).encode(), durable=False)
        except WheelcacheError as exc:  # a full or read-only disk: keep it in memory only
            log.warning("cannot store page %s: %s", url, exc)
        stored = _Stored(page, meta, float(meta["fetched_at"]) + self._ttl(meta))
        self._remember(url, stored)
        return stored

    # -- upstream ----------------------------------------------------------------------------
    def _ask(self, url: str, stored: _Stored | None) -> UpstreamPage:
        host = urlsplit(url).netloc
        if stored is not None and self.host_down(url):
            return _stale(stored)
        headers = {"Accept": ACCEPT_SIMPLE}
        if stored is not None and stored.page.status == 200:
            if stored.meta.get("etag"):
                headers["If-None-Match"] = str(stored.meta["etag"])
            if stored.meta.get("last_modified"):
                headers["If-Modified-Since"] = str(stored.meta["last_modified"])
        self.requests += 1
        try:
            r = self.http.get(url, headers)  # at most --max-page-size (HttpSettings.max_page)
        except ResponseTooLargeError as exc:
            raise IndexPageError(url, f"{exc.reason} (refused)") from exc
        except IndexUnreachableError as exc:
            self._went_down(host, exc)
            if stored is None:
                raise
            return _stale(stored)
        self._came_back(host)
        words = {"cache_control": r.headers.get("cache-control"), "age": r.headers.get("age")}
        if r.status == 304 and stored is not None:
            meta = {**stored.meta, **words, "fetched_at": time.time()}
            return self._store(url, stored.page, meta).page
        if r.status in (404, 410):
            status, body, ctype = 404, b"", ""  # fresh for at most a minute (see _ttl)
        elif r.status == 200:
            status, body, ctype = 200, r.content, r.headers.get("content-type", "")
        else:
            if stored is not None:
                log.warning("%s answered HTTP %d; serving the cached page", url, r.status)
                return _stale(stored)
            raise IndexPageError(url, f"HTTP {r.status}")
        meta = {
            "url": str(r.url),
            "status": status,
            "content_type": ctype,
            "etag": r.headers.get("etag"),
            "last_modified": r.headers.get("last-modified"),
            "fetched_at": time.time(),
            **words,
        }
        page = UpstreamPage(str(r.url), status, body, ctype, _version(meta, body))
        return self._store(url, page, meta).page

    def _went_down(self, host: str, exc: WheelcacheError) -> None:
        with self._lock:
            first = host not in self._down
            self._down[host] = time.monotonic()
        if first:
            log.warning(
                "upstream %s is unreachable (%s); serving what is cached, and asking it again "
                "every %.0fs",
                host,
                getattr(exc, "reason", exc),
                self.retry_after,
            )

    def _came_back(self, host: str) -> None:
        with self._lock:
            was_down = self._down.pop(host, None) is not None
        if was_down:
            log.warning("upstream %s answers again", host)


def _stale(stored: _Stored) -> UpstreamPage:
    p = stored.page
    return UpstreamPage(p.url, p.status, p.body, p.content_type, p.version, stale=True)


def _version(meta: dict[str, Any], body: bytes) -> str:
    """An identity of a page's content: its digest (the ETag may be missing or weak)."""
    return f"{meta.get('status')}:{hashlib.sha256(body).hexdigest()[:24]}"
