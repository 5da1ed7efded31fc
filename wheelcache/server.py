"""``wheelcache serve``: the cache as a PEP 503/691 simple index on the LAN.

URL space (nothing else exists; there is no directory listing)::

    /simple/                       root page (HTML or PEP 691 JSON, by Accept)
    /simple/<project>/             project page (any spelling that normalizes to the project)
    /wheels/<filename>             the wheel, from its content-addressed blob
    /wheels/<filename>.metadata    its METADATA (PEP 658/714)

Why the standard library: ``ThreadingHTTPServer`` with ``socket.sendfile`` for bodies.  Wheel
bodies go from the page cache to the socket inside the kernel, so big-file throughput is the
kernel's, not Python's; a thread per connection means a stalled client blocks only its own
thread (and is dropped after :data:`TIMEOUT`).  Index pages are rendered once per catalog change
and kept as bytes, so a page request costs one parse of the request line and one ``sendall``.
Measured on the 2-core CI machine (``scripts/bench_serve.py``, 1 GiB wheel, loopback, curl as
the client): this server reached 0.9–1.1× nginx's single-client and 8/32-client throughput and
index p99 of a few ms with 32 clients; uvicorn+starlette (``FileResponse`` reads in 64 KiB
chunks through a thread pool) reached about 0.3× nginx on big files, and waitress about 0.2×.
A dependency that is slower on the job that matters is not worth adding; see the README table.

Security: read-only (GET and HEAD only, anything else is 405); paths are split into segments
and percent-decoded one segment at a time, and a segment that decodes to ``/``, ``\\``, NUL,
``.`` or ``..`` is a 400, so neither ``..`` nor ``%2e%2e`` nor ``%2f`` can reach the disk; and
file names are only ever looked up in the published snapshot, never joined onto a directory, so
an absolute path or a symlink in ``wheels-v1`` cannot be served either.
"""

from __future__ import annotations

import email.utils
import hashlib
import logging
import os
import re
import socket
import socketserver
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from packaging.utils import NormalizedName, canonicalize_name

from . import __version__
from .publish import CacheView, Snapshot
from .render import (
    HTML_CONTENT_TYPE,
    JSON_CONTENT_TYPE,
    render_project_html,
    render_project_json,
    render_root_html,
    render_root_json,
)

__all__ = [
    "FILES_PREFIX",
    "TIMEOUT",
    "AccessRecord",
    "IndexServer",
    "negotiate",
    "parse_range",
]

log = logging.getLogger(__name__)

FILES_PREFIX = "/wheels/"
TIMEOUT = 60.0  # seconds a connection may sit idle or stalled before it is dropped
MAX_REQUEST_LINE = 8192
MAX_HEADER_BYTES = 64 * 1024
V1_HTML = "application/vnd.pypi.simple.v1+html"
_OFFERS = {  # media type → (representation, server preference on ties: text/html first)
    "text/html": ("html", 2),
    JSON_CONTENT_TYPE: ("json", 1),
    "application/vnd.pypi.simple.latest+json": ("json", 1),
    V1_HTML: ("v1html", 0),
    "application/vnd.pypi.simple.latest+html": ("v1html", 0),
}
_CONTENT_TYPES = {"html": HTML_CONTENT_TYPE, "json": JSON_CONTENT_TYPE, "v1html": V1_HTML}
_ESCAPE = re.compile(r"%[0-9A-Fa-f]{2}")
_RANGE = re.compile(r"\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*")
_LANDING = (
    b"<!DOCTYPE html>\n<html><head><title>wheelcache</title></head><body>\n"
    b"<p>A Python package index served by wheelcache: "
    b'<a href="/simple/">/simple/</a></p>\n</body></html>\n'
)


def negotiate(accept: str | None) -> str | None:
    """Pick ``"json"``, ``"v1html"`` or ``"html"`` for an Accept header; ``None`` means 406.

    The highest q wins, then the most specific match, then text/html (what browsers and old
    clients expect when they send ``*/*``).

    >>> negotiate("application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;"
    ...           " q=0.1, text/html; q=0.01")
    'json'
    >>> negotiate("*/*"), negotiate(None), negotiate("application/json")
    ('html', 'html', None)
    """
    if not accept or not accept.strip():
        return "html"
    ranges: list[tuple[str, float]] = []
    for part in accept.split(","):
        mtype, *params = (p.strip() for p in part.split(";"))
        q = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = max(0.0, min(1.0, float(value)))
                except ValueError:
                    q = 0.0
        if mtype:
            ranges.append((mtype.lower(), q))
    best: tuple[float, int, int] | None = None
    chosen: str | None = None
    for offer, (rep, pref) in _OFFERS.items():
        major = offer.split("/")[0]
        for mtype, q in ranges:
            spec = {offer: 2, f"{major}/*": 1, "*/*": 0}.get(mtype, -1)
            if spec < 0 or q <= 0:
                continue
            score = (q, spec, pref)
            if best is None or score > best:
                best, chosen = score, rep
    return chosen


def parse_range(header: str, size: int) -> tuple[int, int] | None | bool:
    """A single ``Range: bytes=…`` → inclusive ``(start, end)``; ``None`` = ignore; ``False`` = 416.

    Several ranges or a malformed header are ignored (RFC 9110 lets a server send the whole
    file), which is simpler and safer than multipart responses no installer asks for.

    >>> parse_range("bytes=0-99", 1000), parse_range("bytes=-10", 1000)
    ((0, 99), (990, 999))
    >>> parse_range("bytes=990-", 1000), parse_range("bytes=990-5000", 1000)
    ((990, 999), (990, 999))
    >>> parse_range("bytes=1000-", 1000), parse_range("bytes=0-1,5-6", 1000)
    (False, None)
    """
    m = _RANGE.fullmatch(header)
    if not m or not (m.group(1) or m.group(2)):
        return None
    first, last = m.groups()
    if not first:
        suffix = int(last)
        if suffix == 0 or size == 0:
            return False
        return max(0, size - suffix), size - 1
    start = int(first)
    if last and int(last) < start:
        return None
    if start >= size:
        return False
    end = int(last) if last else size - 1
    return start, min(end, size - 1)


class _HTTPError(Exception):
    def __init__(self, status: int, message: str | None = None) -> None:
        super().__init__(status, message)
        self.status = status
        self.message = message


def _segments(target: str) -> list[str]:
    """Split a request target into decoded path segments, refusing anything ambiguous."""
    if not target.startswith("/") or target.startswith("//"):
        raise _HTTPError(400, "the request target must be an absolute path")
    path = target.split("?", 1)[0].split("#", 1)[0]
    out = []
    for raw in path[1:].split("/"):
        if "%" in raw and len(_ESCAPE.findall(raw)) != raw.count("%"):
            raise _HTTPError(400, "bad percent-encoding")
        try:
            seg = unquote(raw, errors="strict")
        except UnicodeDecodeError:
            raise _HTTPError(400, "path is not UTF-8") from None
        if seg in (".", "..") or any(c in seg for c in "/\\\x00") or not seg.isprintable():
            raise _HTTPError(400, "path segment not allowed")
        out.append(seg)
    return out


@dataclass(frozen=True, slots=True)
class AccessRecord:
    """One finished request, for the access log and for tests."""

    client: str
    method: str
    path: str
    status: int
    sent: int
    seconds: float
    user_agent: str


@dataclass(frozen=True, slots=True)
class _Page:
    body: bytes
    etag: str


class _Pages:
    """Rendered pages for the current snapshot generation (rendered once, served many times)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._generation = -1
        self._pages: dict[tuple[str | None, str], _Page] = {}

    def get(self, snap: Snapshot, project: NormalizedName | None, rep: str) -> _Page | None:
        if project is not None and project not in snap.projects:
            return None
        key = (project, rep)
        with self._lock:
            if snap.generation > self._generation:
                self._generation, self._pages = snap.generation, {}
            page = self._pages.get(key) if snap.generation == self._generation else None
        if page is None:
            page = self._render(snap, project, rep)
            with self._lock:
                if snap.generation == self._generation:
                    self._pages[key] = page
        return page

    @staticmethod
    def _render(snap: Snapshot, project: NormalizedName | None, rep: str) -> _Page:
        if project is None:
            body = render_root_json(snap.projects) if rep == "json" else render_root_html(
                snap.projects, projects_base="/simple/"
            )
        else:
            entries = [f.entry for f in snap.projects[project]]
            render = render_project_json if rep == "json" else render_project_html
            body = render(project, entries, files_base=FILES_PREFIX)
        # One ETag per representation: the same HTML bytes under two content types differ.
        etag = f'"{hashlib.sha256(body).hexdigest()[:32]}-{rep}"'
        return _Page(body, etag)


def _http_date(ts: float) -> str:
    return email.utils.formatdate(int(ts), usegmt=True)


def _parse_date(value: str) -> float | None:
    try:
        return email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def _etag_matches(header: str, etag: str) -> bool:
    """Weak comparison, as If-None-Match requires (``W/"x"`` matches ``"x"``)."""
    if header.strip() == "*":
        return True
    return any(t.strip().removeprefix("W/") == etag for t in header.split(","))


def _printable(text: str) -> str:
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)[:300]


class _Handler(BaseHTTPRequestHandler):
    server: IndexServer
    raw_requestline: bytes
    protocol_version = "HTTP/1.1"  # keep-alive: pip and uv reuse connections
    server_version = f"wheelcache/{__version__}"
    timeout = TIMEOUT
    disable_nagle_algorithm = True  # headers and a small body in two writes must not wait
    # for a delayed ACK (40 ms per keep-alive request otherwise)

    # -- framing, logging, errors ------------------------------------------------------------
    def handle_one_request(self) -> None:
        self._method, self._target, self._agent = "-", "-", "-"
        self._status, self._sent = 0, 0
        self._started = time.perf_counter()
        self._headers_done = False
        try:
            super().handle_one_request()
        finally:
            if self._status:
                self._log_access()

    def parse_request(self) -> bool:
        if len(self.raw_requestline) > MAX_REQUEST_LINE:
            self.requestline, self.request_version, self.command = "", "HTTP/1.1", ""
            self.send_error(414)
            return False
        if not super().parse_request():
            return False
        self._method, self._target = self.command, self.path
        self._agent = self.headers.get("User-Agent", "-")
        if self.request_version == "HTTP/0.9":
            self.send_error(400)
            return False
        if len(str(self.headers)) > MAX_HEADER_BYTES:
            self.send_error(431)
            return False
        if self.headers.get("Content-Length", "0").strip() not in ("", "0") or self.headers.get(
            "Transfer-Encoding"
        ):
            self.close_connection = True  # we never read request bodies
        if self.command not in ("GET", "HEAD"):
            self.command = "NOTALLOWED"  # dispatched to do_NOTALLOWED: 405 for every method
        return True

    def send_response(self, code: int, message: str | None = None) -> None:
        self._status = int(code)
        super().send_response(code, message)

    def end_headers(self) -> None:
        self._headers_done = True
        super().end_headers()

    def version_string(self) -> str:
        return self.server_version

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass  # one line per request is written when it is finished, see _log_access

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s: %s", self.address_string(), format % args)

    def _log_access(self) -> None:
        record = AccessRecord(
            client=self.client_address[0],
            method=self._method,
            path=_printable(self._target),
            status=self._status,
            sent=self._sent,
            seconds=time.perf_counter() - self._started,
            user_agent=_printable(self._agent),
        )
        log.info(
            '%s "%s %s" %d %d %.1fms "%s"',
            record.client, record.method, record.path, record.status, record.sent,
            record.seconds * 1000, record.user_agent,
        )
        if self.server.on_request is not None:
            self.server.on_request(record)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        try:
            phrase = HTTPStatus(code).phrase
        except ValueError:
            phrase = "Error"
        body = f"{code} {phrase}{': ' + message if message else ''}\n".encode()
        # Before the version is parsed, http.server assumes HTTP/0.9 and would send a bare
        # body; every client alive today understands a status line.
        self.request_version = getattr(self, "request_version", "HTTP/0.9")
        if self.request_version == "HTTP/0.9":
            self.request_version = "HTTP/1.0"
        self.send_response(int(code))
        if code == 405:
            self.send_header("Allow", "GET, HEAD")
        if code == 416 and message:
            self.send_header("Content-Range", message)
            body = f"{code} {phrase}\n".encode()
        if code >= 400 and code not in (404, 406, 416):
            self.send_header("Connection", "close")
            self.close_connection = True
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self._write(body)

    def _write(self, data: bytes) -> None:
        self.wfile.write(data)
        self._sent += len(data)

    # -- methods -----------------------------------------------------------------------------
    def do_GET(self) -> None:
        self._respond(head=False)

    def do_HEAD(self) -> None:
        self._respond(head=True)

    def do_NOTALLOWED(self) -> None:
        self.send_error(405)

    def _respond(self, head: bool) -> None:
        try:
            self._route(head)
        except _HTTPError as exc:
            self.send_error(exc.status, exc.message)
        except (ConnectionError, TimeoutError) as exc:  # the client went away or stalled
            log.debug("%s: %s while answering %s", self.client_address[0], exc, self.path)
            self.close_connection = True
        except Exception as exc:  # never a traceback to the client; one line in our log
            log.error("internal error answering %s: %r", _printable(self.path), exc,
                      exc_info=log.isEnabledFor(logging.DEBUG))
            self.close_connection = True
            if not self._headers_done:
                self.send_error(500)

    def _route(self, head: bool) -> None:
        segs = _segments(self.path)
        snap = self.server.view.snapshot()
        if segs == [""]:
            self._send_bytes(_LANDING, "text/html; charset=utf-8", None, head)
        elif segs in (["simple"], ["simple", ""]):
            self._send_page(snap, None, head)
        elif len(segs) in (2, 3) and segs[0] == "simple" and segs[1] and segs[2:] in ([], [""]):
            self._send_page(snap, canonicalize_name(segs[1]), head)
        elif len(segs) == 2 and segs[0] == "wheels" and segs[1]:
            self._send_wheel_or_metadata(snap, segs[1], head)
        else:
            raise _HTTPError(404)

    # -- pages -------------------------------------------------------------------------------
    def _send_page(self, snap: Snapshot, project: NormalizedName | None, head: bool) -> None:
        rep = negotiate(self.headers.get("Accept"))
        if rep is None:
            raise _HTTPError(406, f"available: text/html, {JSON_CONTENT_TYPE}, {V1_HTML}")
        page = self.server.pages.get(snap, project, rep)
        if page is None:
            raise _HTTPError(404)
        self._send_bytes(page.body, _CONTENT_TYPES[rep], page.etag, head, vary=True)

    def _send_bytes(
        self, body: bytes, ctype: str, etag: str | None, head: bool, vary: bool = False
    ) -> None:
        inm = self.headers.get("If-None-Match")
        status = 304 if etag and inm and _etag_matches(inm, etag) else 200
        self.send_response(status)
        if vary:
            self.send_header("Vary", "Accept")
        if etag:
            self.send_header("ETag", etag)
        # Pages change whenever a fetch adds a file: revalidate (cheap, ETag) on every use.
        self.send_header("Cache-Control", "no-cache")
        if status == 200:
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if status == 200 and not head:
            self._write(body)

    # -- files -------------------------------------------------------------------------------
    def _send_wheel_or_metadata(self, snap: Snapshot, name: str, head: bool) -> None:
        published = snap.files.get(name)
        if published is not None:
            self._send_file(published.path, None, published.entry.sha256, published.mtime,
                            "application/octet-stream", head)
            return
        wheel = snap.files.get(name[: -len(".metadata")]) if name.endswith(".metadata") else None
        md = wheel.metadata if wheel is not None else None
        if wheel is None or md is None:
            raise _HTTPError(404)
        self._send_file(md.path, md.data, md.sha256, wheel.mtime, "text/plain; charset=utf-8", head)

    def _send_file(
        self, path: Path | None, data: bytes | None, digest: str, mtime: float, ctype: str,
        head: bool,
    ) -> None:
        try:
            fh = open(path, "rb") if path is not None else None  # noqa: SIM115
        except FileNotFoundError:  # removed by gc/rm since the snapshot was taken
            raise _HTTPError(404) from None
        try:
            size = os.fstat(fh.fileno()).st_size if fh is not None else len(data or b"")
            etag, last_modified = f'"{digest}"', _http_date(mtime)
            start, end, status = 0, size - 1, self._file_status(etag, mtime, size)
            if isinstance(status, tuple):
                (start, end), status = status, 206
            if status == 416:
                raise _HTTPError(416, f"bytes */{size}")
            self.send_response(status)
            self.send_header("ETag", etag)
            self.send_header("Last-Modified", last_modified)
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Cache-Control", "public, max-age=86400")
            if status != 304:
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(end - start + 1))
            if status == 206:
                self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
            self.end_headers()
            if head or status == 304 or end < start:
                return
            if fh is None:
                assert data is not None
                self._write(data[start : end + 1])
                return
            count = end - start + 1
            sent = self.connection.sendfile(fh, offset=start, count=count)
            self._sent += sent
            if sent != count:
                raise ConnectionError(f"sent {sent} of {count} bytes")
        finally:
            if fh is not None:
                fh.close()

    def _file_status(self, etag: str, mtime: float, size: int) -> int | tuple[int, int]:
        """200, 304, 416, or the ``(start, end)`` of a satisfiable single range."""
        inm = self.headers.get("If-None-Match")
        if inm is not None:
            if _etag_matches(inm, etag):
                return 304
        else:
            ims = self.headers.get("If-Modified-Since")
            since = _parse_date(ims) if ims else None
            if since is not None and int(mtime) <= since:
                return 304
        header = self.headers.get("Range")
        if header is None:
            return 200
        if_range = self.headers.get("If-Range")
        if if_range is not None:
            if if_range.strip().startswith(("W/", '"')):
                if if_range.strip() != etag:  # If-Range needs a strong match
                    return 200
            elif _parse_date(if_range) != float(int(mtime)):
                return 200
        span = parse_range(header, size)
        if span is None:
            return 200
        if span is False:
            return 416
        assert isinstance(span, tuple)
        return span


class IndexServer(ThreadingHTTPServer):
    """A threaded HTTP server over a :class:`CacheView`; ``serve_forever`` runs it."""

    daemon_threads = True
    request_queue_size = 128

    def __init__(
        self,
        address: tuple[str, int],
        view: CacheView,
        *,
        on_request: Callable[[AccessRecord], None] | None = None,
        max_connections: int = 512,
    ) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.view = view
        self.pages = _Pages()
        self.on_request = on_request
        self._slots = threading.BoundedSemaphore(max_connections)
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host's FQDN (a DNS query that can hang for
        # seconds on an offline host); the name is never used here.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    @property
    def url(self) -> str:
        host = str(self.server_address[0])
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}"

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):  # overloaded: say so at once, keep going
            try:
                request.sendall(
                    b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\n"
                    b"Content-Length: 0\r\nConnection: close\r\n\r\n"
                )
            except OSError:
                pass
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        log.debug("connection from %s ended: %r", client_address[0], exc)
