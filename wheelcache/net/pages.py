"""Index pages, fetched once per run, cached on disk and revalidated with ETag/Last-Modified.

The page store sits on top of the one :class:`~wheelcache.net.client.Http`; with no client
(``--offline``) it answers from the disk cache only.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from wheelcache.errors import IndexPageError
from wheelcache.net.client import Http
from wheelcache.store.cache import Cache

__all__ = ["ACCEPT_SIMPLE", "PageResponse", "PageStore"]

log = logging.getLogger(__name__)

ACCEPT_SIMPLE = (
    "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;q=0.2, "
    "text/html;q=0.01"
)


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
        #: Pages that failed in this run: asked again (a prefetch, then the resolver), they
        #: fail with the same error at once, so a page costs one retry loop, not one per caller.
        self._failed: dict[str, IndexPageError] = {}
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
            if url in self._failed and not fresh:
                raise self._failed[url]
            try:
                page = self._fetch(url, accept, fresh)
            except IndexPageError as exc:
                self._failed[url] = exc
                raise
            self._memo[url] = page
            return page

    def has_stored(self, url: str) -> bool:
        """Whether the disk cache holds this page (so ``--offline`` could use it)."""
        return Path(self.cache.layout.page(url)[1]).is_file()

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
            if cached is not None and not _intact(cached.body, meta):
                cached = None  # torn by a power loss (the copy is not fsynced): fetch again
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
        if r.status == 304 and cached is not None:
            log.debug("page %s not modified", url)
            return cached
        if r.status in (404, 410):
            page = PageResponse(r.url, 404, b"", "")
        elif r.status == 200:
            page = PageResponse(r.url, 200, r.content, r.headers.get("content-type", ""))
        else:
            raise IndexPageError(url, f"HTTP {r.status}")
        new_meta = {
            "url": page.url,
            "status": page.status,
            "content_type": page.content_type,
            "etag": r.headers.get("etag"),
            "last_modified": r.headers.get("last-modified"),
            "fetched_at": time.time(),
            "sha256": hashlib.sha256(page.body).hexdigest(),
        }
        # A copy of what the index serves, so no fsync on the resolver's path (two per page
        # were most of a cold run's disk waits): a copy torn by a power loss fails the sha256
        # above and is fetched again.  Writes stay atomic for readers and killed processes.
        if page.status == 200:
            self.cache.write_atomic(body_path, page.body, durable=False)
        self.cache.write_atomic(meta_path, json.dumps(new_meta).encode(), durable=False)
        return page


def _intact(body: bytes, meta: dict[str, object]) -> bool:
    """Whether a stored body is the one its meta file describes (metas written before the
    digest was recorded are taken as they are)."""
    want = meta.get("sha256")
    return want is None or hashlib.sha256(body).hexdigest() == want
