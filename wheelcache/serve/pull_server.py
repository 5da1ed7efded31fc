"""The HTTP face of ``serve --pull``: the pull-through URL space on top of :class:`IndexServer`.

Everything else — request parsing and limits, keep-alive, ``sendfile`` of stored files, Range
and conditional requests, the access log — is :mod:`wheelcache.serve.server`'s; this handler
only routes (see :mod:`wheelcache.serve.pull` for the URL space) and adds one kind of answer: a
file streamed while its one upstream transfer runs.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from typing import Any

from packaging.utils import NormalizedName, canonicalize_name

from wheelcache.core.models import DistFile
from wheelcache.core.variants import parse_variant
from wheelcache.errors import TargetError, WheelcacheError
from wheelcache.net.client import Http, HttpSettings
from wheelcache.net.transfer import TransferSettings
from wheelcache.serve.publish import CacheView, Selection
from wheelcache.serve.pull import PullService, Scope, Upstreams
from wheelcache.serve.request import HTTPProblem, representation, split_target
from wheelcache.serve.server import IndexServer, _file_status, _Handler
from wheelcache.serve.shared_transfer import CHUNK, SharedTransfer, SharedTransfers, TransferFailed
from wheelcache.serve.upstream import UpstreamPages
from wheelcache.store.cache import Cache, CachedWheel

__all__ = ["PullServer", "PullSettings", "make_pull_server"]

log = logging.getLogger(__name__)

#: Seconds a client waits for the first answer of a transfer, and for each next piece.
FIRST_BYTE_WAIT = 60.0
NEXT_BYTES_WAIT = 120.0
_LANDING = (
    b"<!DOCTYPE html>\n<html><head><title>wheelcache</title></head><body>\n"
    b"<p>A pull-through cache of Python package indexes, served by wheelcache: "
    b"<code>/whl/&lt;variant&gt;/</code> for one PyTorch variant and everything it needs, "
    b'<a href="/simple/">/simple/</a> for the dependency index.</p>\n</body></html>\n'
)


@dataclass(frozen=True, slots=True)
class PullSettings:
    """How the server talks to its upstreams."""

    page_ttl: float = 600.0  # freshness of a page whose upstream gives no max-age
    retry_after: float = 30.0  # an unreachable upstream is asked again after this long
    transfer: TransferSettings = TransferSettings()
    file_http: HttpSettings = HttpSettings(max_connections=64)
    #: Pages and .metadata: a client is waiting (pip gives up after 15 s), so few retries.
    page_http: HttpSettings = HttpSettings(connect_timeout=5.0, read_timeout=10.0, retries=1)
    per_host: int = 16
    max_transfers: int = 32
    #: Connections at once: clients of a pull-through server hold theirs while a file streams,
    #: and uv opens up to 50 per machine (measured: 32 uv clients overran 512).
    max_connections: int = 4096


class PullHandler(_Handler):
    """One connection to the pull-through server."""

    server: PullServer

    def _dispatch(self, h: dict[str, str]) -> None:
        segs = split_target(self._target)
        if segs == [""]:
            self._send_bytes(h, _LANDING, "text/html; charset=utf-8", None)
            return
        scope, rest = _scope(segs)
        if scope is None:
            raise HTTPProblem(404)
        try:
            if rest in ([], [""]):
                self._send_root(h, scope)
            elif len(rest) in (1, 2) and rest[0] and rest[1:] in ([], [""]):
                self._send_project(h, scope, canonicalize_name(rest[0]))
            elif len(rest) == 2 and rest[0] and rest[1]:
                self._send_pulled(h, scope, canonicalize_name(rest[0]), rest[1])
            else:
                raise HTTPProblem(404)
        except WheelcacheError as exc:  # an upstream that cannot answer and nothing cached
            raise HTTPProblem(502, str(exc)) from exc

    def _send_root(self, h: dict[str, str], scope: Scope) -> None:
        rep, content_type = representation(h.get("accept"))
        body = self.server.pull.root_page(scope, "json" if rep == "json" else "html")
        self._send_bytes(h, body, content_type, None, vary=True)

    def _send_project(self, h: dict[str, str], scope: Scope, name: NormalizedName) -> None:
        rep, content_type = representation(h.get("accept"))
        page = self.server.pull.project_page(scope, name, "json" if rep == "json" else "html")
        if page is None:
            raise HTTPProblem(404)
        self._send_bytes(h, page.body, content_type, page.etag, vary=True)

    # -- files -------------------------------------------------------------------------------
    def _send_pulled(
        self, h: dict[str, str], scope: Scope, name: NormalizedName, filename: str
    ) -> None:
        pull = self.server.pull
        wanted = filename.removesuffix(".metadata")
        found = pull.find_file(scope, name, wanted)
        if found is None:
            raise HTTPProblem(404)
        listing, f = found
        if filename != wanted:
            data = pull.metadata(f)
            if data is None:
                raise HTTPProblem(404 if not f.core_metadata else 502, "no .metadata available")
            digest = hashlib.sha256(data).hexdigest()
            self._send_file(h, None, data, digest, 0.0, "text/plain; charset=utf-8")
            return
        wheel = pull.cached(f)
        if wheel is None:
            shared = self.server.transfers.get(pull.job(scope, listing, f))
            self._send_stream(h, shared, f)
            return
        self._send_stored(h, wheel)

    def _send_stored(self, h: dict[str, str], wheel: CachedWheel) -> None:
        try:
            mtime = os.stat(wheel.blob).st_mtime
        except OSError:
            raise HTTPProblem(404) from None
        self._send_file(h, wheel.blob, None, wheel.sha256, mtime, "application/octet-stream")
        if not self._head:
            self.server.note_use(wheel.sha256)

    def _send_stream(self, h: dict[str, str], shared: SharedTransfer, f: DistFile) -> None:
        """Answer from a running transfer: headers once the size is known, then each piece as
        it arrives; the last byte only after the file verified."""
        try:
            known = shared.wait_size(FIRST_BYTE_WAIT)
        except TransferFailed as exc:
            raise HTTPProblem(502, str(exc)) from exc
        if isinstance(known, CachedWheel):
            self._send_stored(h, known)
            return
        size = known
        etag = f'"{f.sha256}"' if f.sha256 else None
        # No Last-Modified yet, and without a sha256 no validator at all: conditions that
        # need one are ignored (RFC 9110 13.1: a server may answer as if they were absent).
        skip = {"if-modified-since"} if etag else {"if-modified-since", "if-none-match", "if-range"}
        status = _file_status({k: v for k, v in h.items() if k not in skip}, etag or "", 0.0, size)
        headers = [("Accept-Ranges", "bytes"), ("Cache-Control", "no-cache")]
        headers += [("ETag", etag)] if etag else []
        if status == 304:
            self._start(304, headers)
            return
        if status == 416:
            raise HTTPProblem(416, f"bytes */{size}")
        start, end = (0, size - 1) if isinstance(status, int) else status
        headers += [("Content-Type", "application/octet-stream")]
        headers += [("Content-Length", str(end - start + 1))]
        if not isinstance(status, int):
            headers.append(("Content-Range", f"bytes {start}-{end}/{size}"))
        self._start(200 if isinstance(status, int) else 206, headers)
        if self._head or end < start:
            return
        self.wfile.flush()
        self._stream_body(shared, start, end)

    def _stream_body(self, shared: SharedTransfer, start: int, end: int) -> None:
        pos, generation = start, -1
        while pos <= end:
            try:
                got = shared.read(pos, min(CHUNK, end + 1 - pos), generation, NEXT_BYTES_WAIT)
            except TransferFailed as exc:
                log.warning(
                    "%s: cut the answer to %s at byte %d: %s",
                    shared.job.filename,
                    self.client_address[0],
                    pos,
                    exc,
                )
                raise HTTPProblem(502, str(exc)) from exc
            if isinstance(got, CachedWheel):  # stored meanwhile: the rest from its blob
                with open(got.blob, "rb") as fh:
                    count = end + 1 - pos
                    sent = self.connection.sendfile(fh, offset=pos, count=count)
                self._sent += sent
                if sent != count:
                    raise ConnectionError(f"sent {sent} of {count} bytes")
                return
            self.connection.sendall(got.data)
            self._sent += len(got.data)
            pos += len(got.data)
            generation = got.generation


def _scope(segs: list[str]) -> tuple[Scope | None, list[str]]:
    """``["whl", "cu118", …]`` → (Scope("cu118"), rest); ``["simple", …]`` → (Scope(), rest)."""
    if segs[0] == "simple":
        return Scope(), segs[1:]
    if segs[0] == "whl" and len(segs) >= 2 and segs[1]:
        try:
            variant = parse_variant(segs[1])
        except TargetError:
            return None, []
        return (Scope(variant), segs[2:]) if variant == segs[1] else (None, [])
    return None, []


class PullServer(IndexServer):
    """An :class:`IndexServer` whose URL space is the pull-through one."""

    handler_class = PullHandler

    def __init__(
        self,
        address: tuple[str, int],
        view: CacheView,
        pull: PullService,
        transfers: SharedTransfers,
        **kw: Any,
    ) -> None:
        self.pull = pull
        self.transfers = transfers
        super().__init__(address, view, **kw)

    def server_close(self) -> None:
        self.transfers.close()
        self.pull.http.close()
        super().server_close()


def make_pull_server(
    address: tuple[str, int],
    cache: Cache,
    upstreams: Upstreams,
    selection: Selection | None = None,
    settings: PullSettings | None = None,
    **kw: Any,
) -> PullServer:
    """Wire a pull-through server: two HTTP clients (pages, files), the page cache, the
    shared transfers and the routing service."""
    s = settings or PullSettings()
    selection = selection or Selection()
    page_http, file_http = Http(s.page_http), Http(s.file_http)
    pages = UpstreamPages(cache, page_http, default_ttl=s.page_ttl, retry_after=s.retry_after)
    pull = PullService(cache, page_http, pages, upstreams, selection)
    transfers = SharedTransfers(
        cache, file_http, s.transfer, per_host=s.per_host, max_running=s.max_transfers
    )
    kw.setdefault("max_connections", s.max_connections)
    try:
        return PullServer(address, CacheView(cache, selection), pull, transfers, **kw)
    except BaseException:
        page_http.close()
        file_http.close()
        raise
