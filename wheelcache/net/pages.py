"""Index pages, fetched once per run, cached on disk and revalidated with ETag/Last-Modified.

The page store sits on top of the one :class:`~wheelcache.net.client.Http`; with no client
(``--offline``) it answers from the disk cache only.  A page over the size limit
(``--max-page-size``) is refused before it is read to its end and never stored; a page over
1 MiB is written to the page cache while it arrives and left there (:attr:`PageResponse.path`),
so that prefetch threads reading big pages at once do not each hold one in memory.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

from wheelcache.core.models import Sha256
from wheelcache.core.resolved import PageSeen
from wheelcache.errors import CacheError, IndexPageError, ResponseTooLargeError
from wheelcache.net.client import SPOOL_OVER, Http, Response
from wheelcache.store.cache import Cache, describe_os_error

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
    body: bytes  # empty for a big page: see ``path``
    content_type: str
    from_cache: bool = False  # the stored copy (offline, or revalidated with a 304)
    #: A big page (over 1 MiB) stays on disk, in the page cache: :meth:`read` reads it.
    path: Path | None = None
    #: The body's sha256 (hex), which a remembered resolution compares.
    sha256: str = ""

    def read(self) -> bytes:
        """The body, from memory or from the page cache."""
        return self.body if self.path is None else self.path.read_bytes()


class PageStore:
    """Index pages fetched once per run, cached on disk and revalidated with ETag/Last-Modified.

    With ``http=None`` (``--offline``) it answers from the disk cache only and never touches
    the network.
    """

    def __init__(self, cache: Cache, http: Http | None) -> None:
        self.cache = cache
        self.http = http
        self._memo: dict[str, PageResponse] = {}
        self._accept: dict[str, str] = {}  # what each page was asked for as
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
            self._accept[url] = accept
            return page

    def seen(self) -> tuple[PageSeen, ...] | None:
        """Every page this run read, with its digest; None when a page failed (a resolution
        made then is not one to remember: see :mod:`wheelcache.core.resolved`)."""
        with self._lock:
            if self._failed:
                return None
            pages = dict(self._memo)
            accept = dict(self._accept)
        return tuple(
            PageSeen(
                url, accept[url], page.status, Sha256(page.sha256), page.url, page.content_type
            )
            for url, page in sorted(pages.items())
        )

    def has_stored(self, url: str) -> bool:
        """Whether the disk cache holds this page (so ``--offline`` could use it)."""
        return Path(self.cache.layout.page(url)[1]).is_file()

    def _stored(self, body_path: Path, meta: dict[str, object] | None) -> PageResponse | None:
        """The stored copy described by *meta*, if it is there and intact (a big body is left
        on disk: :meth:`PageResponse.read`)."""
        if meta is None:
            return None
        try:
            ok = int(str(meta["status"])) == 200
            big = ok and body_path.stat().st_size > SPOOL_OVER
            body = body_path.read_bytes() if ok and not big else b""
            digest = _file_sha256(body_path) if big else _sha256(body)
            cached = PageResponse(
                url=str(meta["url"]),
                status=int(str(meta["status"])),
                body=body,
                content_type=str(meta.get("content_type", "")),
                from_cache=True,
                path=body_path if big else None,
                sha256=digest,
            )
        except (OSError, KeyError, ValueError):
            return None
        # Metas written before the digest was recorded are taken as they are; a body that
        # does not match its meta was torn by a power loss (not fsynced): fetch it again.
        return cached if meta.get("sha256") in (None, digest) else None

    def _fetch(self, url: str, accept: str, fresh: bool = False) -> PageResponse:
        body_path, meta_path = (Path(p) for p in self.cache.layout.page(url))
        meta = self.cache.read_json(meta_path)
        cached = self._stored(body_path, meta)
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
        limit = self.http.settings.max_page
        try:
            r = self.http.get(
                url, headers, limit=limit, what="the page is", spool=Path(self.cache.layout.tmp)
            )
        except ResponseTooLargeError as exc:
            raise IndexPageError(
                url, f"{exc.reason} (refused; --max-page-size raises the limit)"
            ) from exc
        try:
            return self._answer(url, r, cached, body_path, meta_path)
        finally:
            if r.path is not None:
                r.path.unlink(missing_ok=True)  # not moved into the page cache

    def _answer(
        self,
        url: str,
        r: Response,
        cached: PageResponse | None,
        body_path: Path,
        meta_path: Path,
    ) -> PageResponse:
        if r.status == 304 and cached is not None:
            log.debug("page %s not modified", url)
            return cached
        if r.status in (404, 410):
            page = PageResponse(r.url, 404, b"", "", sha256=_sha256(b""))
        elif r.status == 200:
            digest = _file_sha256(r.path) if r.path is not None else _sha256(r.content)
            page = PageResponse(
                r.url, 200, r.content, r.headers.get("content-type", ""), sha256=digest
            )
        else:
            raise IndexPageError(url, f"HTTP {r.status}")
        spooled = page.status == 200 and r.path is not None
        new_meta = {
            "url": page.url,
            "status": page.status,
            "content_type": page.content_type,
            "etag": r.headers.get("etag"),
            "last_modified": r.headers.get("last-modified"),
            "fetched_at": time.time(),
            "sha256": page.sha256,
        }
        # A copy of what the index serves, so no fsync on the resolver's path (two per page
        # were most of a cold run's disk waits): a copy torn by a power loss fails the sha256
        # above and is fetched again.  Writes stay atomic for readers and killed processes.
        if spooled and r.path is not None:  # a big page: moved into place, not copied
            try:
                body_path.parent.mkdir(parents=True, exist_ok=True)
                os.replace(r.path, body_path)
            except OSError as exc:
                raise CacheError(describe_os_error(exc, body_path)) from exc
            page = replace(page, path=body_path)
        elif page.status == 200:
            self.cache.write_atomic(body_path, page.body, durable=False)
        self.cache.write_atomic(meta_path, json.dumps(new_meta).encode(), durable=False)
        return page


def _sha256(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def _file_sha256(path: Path) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            sha.update(block)
    return sha.hexdigest()
