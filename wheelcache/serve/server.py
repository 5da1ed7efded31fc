"""``wheelcache serve``: the cache as a PEP 503/691 simple index on the LAN.

URL space (nothing else exists; there is no directory listing)::

    /simple/                       root page (HTML or PEP 691 JSON, by Accept)
    /simple/<project>/             project page (any spelling that normalizes to the project)
    /wheels/<filename>             the wheel, from its content-addressed blob
    /wheels/<filename>.metadata    its METADATA (PEP 658/714)

Why the standard library (``socketserver`` threads, ``socket.sendfile`` for bodies): a thread
per connection means a stalled client holds only its own thread (dropped after
:data:`TIMEOUT`), and ``sendfile`` keeps wheel bodies in the kernel, so a slow client costs no
buffer of ours.  Index pages are rendered once per catalog change and kept as bytes.  The
request parsing of ``http.server`` was replaced by the few rules in :mod:`wheelcache.serve.request`
after profiling showed its ``email``-based header parsing as half of a page request's cost.

Measured with ``scripts/bench_serve.py`` (1 GiB wheel, 200 projects, 2 cores, loopback; other
jobs on the machine make it noisy, ±30 %): this server 0.9-1.2x nginx on big-file throughput
with 1, 8 and 32 clients, index p99 13-16 ms at 6.4-7.8k requests/s over 32 connections, peak
RSS 38 MiB.  uvicorn+starlette (``FileResponse`` streams 64 KiB chunks through the event loop):
0.2-0.3x nginx on big files, 1.4-1.8k requests/s, p99 34-39 ms.  waitress: 1.3-1.6x nginx on
big files on loopback (a user-space copy of 1 MiB blocks; our own read/sendall loop did the
same with one client, but equalled sendfile at 32 clients and needs a buffer per connection),
3.5-3.7k requests/s, p99 17.5-19.6 ms, 94 MiB RSS.  Best index latency, nginx-level throughput,
no new dependency: the standard library it is.

Security: read-only (GET and HEAD; anything else is 405); the target is split into segments
that are percent-decoded one at a time (``..``, ``%2e%2e``, ``%2f``, ``\\`` and NUL are 400);
file names are only looked up in the published snapshot, never joined onto a directory, so no
absolute path or symlink in ``wheels-v1`` can be reached; request line, header count and size
are bounded (414, 431); a request body is never read (the connection is closed instead).

The port may face a LAN, so no client can hold the server: the whole request head, request
line included, must arrive within :attr:`_Handler.head_deadline` (a head trickled a byte at a
time gets 408; the deadline is checked before every read, not between lines); one client
address may hold at most ``max_per_client`` connections (others get 503 at once, so one host
cannot take every slot); a malformed or absurd ``Range`` is ignored or answered 416, never
500; and stopping (Ctrl-C, SIGTERM) never waits for connections that clients keep open.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import socket
import socketserver
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from packaging.utils import NormalizedName, canonicalize_name

from wheelcache import __version__
from wheelcache.core.render import (
    render_project_html,
    render_project_json,
    render_root_html,
    render_root_json,
)
from wheelcache.errors import WheelcacheError
from wheelcache.serve.publish import CacheView, Snapshot
from wheelcache.serve.request import (
    HTTPProblem,
    etag_matches,
    http_date,
    parse_header_lines,
    parse_http_date,
    parse_range,
    parse_request_line,
    reason,
    representation,
    split_target,
)

__all__ = ["FILES_PREFIX", "TIMEOUT", "AccessRecord", "IndexServer"]

log = logging.getLogger(__name__)
#: The access log: one line per request (see ``_log_access``).
access = logging.getLogger("wheelcache.serve.access")

FILES_PREFIX = "/wheels/"
TIMEOUT = 60.0  # seconds a connection may sit idle or stalled before it is dropped
MAX_PER_CLIENT = 64  # connections one client address may hold (uv opens up to 50)
MAX_REQUEST_LINE = 8192
MAX_HEADERS = 100
MAX_HEADER_BYTES = 64 * 1024
SERVER = f"wheelcache/{__version__}"
USE_RECORD_INTERVAL = 3600.0  # seconds between two "used" records of one served wheel
_LANDING = (
    b"<!DOCTYPE html>\n<html><head><title>wheelcache</title></head><body>\n"
    b"<p>A Python package index served by wheelcache: "
    b'<a href="/simple/">/simple/</a></p>\n</body></html>\n'
)


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
    """Rendered pages for the newest snapshot generation (rendered once, served many times)."""

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
            if rep == "json":
                body = render_root_json(snap.projects)
            else:
                body = render_root_html(snap.projects, projects_base="/simple/")
        else:
            entries = [f.entry for f in snap.projects[project]]
            render = render_project_json if rep == "json" else render_project_html
            body = render(project, entries, files_base=FILES_PREFIX)
        # One ETag per representation: the same HTML bytes under two content types differ.
        return _Page(body, f'"{hashlib.sha256(body).hexdigest()[:32]}-{rep}"')


def _client_name(agent: str) -> str:
    """The client's first product token: ``pip/24.0`` of pip's long JSON user agent.

    >>> _client_name('pip/24.0 {"ci":null,"cpu":"x86_64"}'), _client_name("-")
    ('pip/24.0', '-')
    """
    return agent.split(None, 1)[0][:60] if agent.strip() else "-"


def _printable(text: str) -> str:
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)[:300]


class _Handler(socketserver.StreamRequestHandler):
    """One connection: requests in a keep-alive loop, each answered and logged in turn."""

    server: IndexServer
    timeout = TIMEOUT
    #: Seconds for a whole request head, request line included, from the moment its first
    #: byte is awaited (a new connection) or arrived (a kept-alive one): a head trickled a
    #: byte at a time (slowloris) must not hold a thread for TIMEOUT per byte.
    head_deadline = 30.0
    wbufsize = 64 * 1024  # headers and a page body leave in one send
    disable_nagle_algorithm = True  # a small response must not wait for a delayed ACK

    def setup(self) -> None:
        super().setup()
        self._first_deadline: float | None = time.monotonic() + self.head_deadline
        # rbufsize -1: a buffered reader, whose peek() does at most one receive.
        self._reader = cast(io.BufferedReader, self.rfile)

    def handle(self) -> None:
        try:
            while self._one_request():
                pass
        except (ConnectionError, TimeoutError) as exc:  # the client went away or stalled
            log.debug("%s: connection ended: %s", self.client_address[0], exc)

    # -- reading the head under a deadline -------------------------------------------------
    def _await_request(self) -> float | None:
        """Wait for the next request's first byte; the deadline for its whole head, or None
        when the client closed the connection.

        A new connection's first head is due ``head_deadline`` after the connection came; a
        kept-alive connection may sit idle for ``timeout``, then its head is due
        ``head_deadline`` after its first byte.
        """
        first, self._first_deadline = self._first_deadline, None
        wait = self.timeout if first is None else first - time.monotonic()
        self.connection.settimeout(max(wait, 0.001))
        if not self._reader.peek(1):  # raises TimeoutError when nothing came in time
            return None
        self._wait = max(wait, 0.001)
        return first if first is not None else time.monotonic() + self.head_deadline

    def _readline(self, limit: int, deadline: float) -> bytes:
        """A line of at most *limit* bytes (``limit + 1`` means too long), read so that the
        deadline is checked before every receive: one byte at a time cannot outlast it."""
        buf = bytearray()
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise HTTPProblem(408, "request head took too long")
            if left < self._wait - 0.5:  # at most 0.5 s late, and one syscall a second at most
                self._wait = left
                self.connection.settimeout(left)
            try:
                chunk = self._reader.peek(1)
            except TimeoutError:
                raise HTTPProblem(408, "request head took too long") from None
            if not chunk:
                return bytes(buf)
            room = limit + 1 - len(buf)
            newline = chunk.find(b"\n", 0, room)
            take = newline + 1 if newline >= 0 else min(len(chunk), room)
            buf += self._reader.read(take)  # from the buffer peek filled: never blocks
            if newline >= 0 or len(buf) > limit:
                return bytes(buf)

    # -- one request -------------------------------------------------------------------------
    def _one_request(self) -> bool:
        deadline = self._await_request()
        if deadline is None:
            return False
        self._method, self._target, self._agent = "-", "-", "-"
        self._status, self._sent, self._head = 0, 0, False
        self._keep_alive = False
        self._started = time.perf_counter()
        self.server.request_started()
        try:
            try:
                line = self._readline(MAX_REQUEST_LINE, deadline)
                if line in (b"\r\n", b"\n"):  # RFC 9112 2.2: one empty line before a request
                    line = self._readline(MAX_REQUEST_LINE, deadline)
                if not line:
                    return False
                headers = self._parse(line, deadline)
                self.connection.settimeout(self.timeout)
                self._dispatch(headers)
            except HTTPProblem as exc:
                if self._status:  # headers already went out: nothing to add, just close
                    self._keep_alive = False
                else:
                    self._error(exc.status, exc.message)
            except (ConnectionError, TimeoutError):
                self._keep_alive = False
                raise
            except Exception as exc:  # never a traceback to the client; one line in our log
                log.error(
                    "internal error answering %s: %r",
                    _printable(self._target),
                    exc,
                    exc_info=log.isEnabledFor(logging.DEBUG),
                )
                if not self._status:
                    self._error(500)
                self._keep_alive = False
            self.wfile.flush()
        finally:
            if self._status:
                self._log_access()
            self.server.request_done()
        return self._keep_alive

    def _parse(self, line: bytes, deadline: float) -> dict[str, str]:
        if len(line) > MAX_REQUEST_LINE:
            raise HTTPProblem(414)
        if not line.endswith(b"\n"):
            raise HTTPProblem(400, "request line not terminated")
        method, target, version = parse_request_line(line)
        self._method, self._target = method, target
        lines: list[bytes] = []
        total = 0
        while True:
            raw = self._readline(MAX_HEADER_BYTES - total, deadline)
            if raw in (b"\r\n", b"\n"):
                break
            total += len(raw)
            if not raw.endswith(b"\n"):
                raise HTTPProblem(431 if total > MAX_HEADER_BYTES else 400, "headers cut short")
            lines.append(raw)
            if len(lines) > MAX_HEADERS or total > MAX_HEADER_BYTES:
                raise HTTPProblem(431)
        headers = parse_header_lines(lines)
        self._agent = headers.get("user-agent", "-")
        tokens = {t.strip().lower() for t in headers.get("connection", "").split(",")}
        has_body = headers.get("content-length", "0").strip() not in ("", "0") or (
            "transfer-encoding" in headers
        )
        # A body we never read would be taken for the next request: close instead.
        self._keep_alive = version >= (1, 1) and "close" not in tokens and not has_body
        if method not in ("GET", "HEAD"):
            raise HTTPProblem(405)
        self._head = method == "HEAD"
        return headers

    def _dispatch(self, h: dict[str, str]) -> None:
        segs = split_target(self._target)
        snap = self.server.view.snapshot()
        if segs == [""]:
            self._send_bytes(h, _LANDING, "text/html; charset=utf-8", None)
        elif segs in (["simple"], ["simple", ""]):
            self._send_page(h, snap, None)
        elif len(segs) in (2, 3) and segs[0] == "simple" and segs[1] and segs[2:] in ([], [""]):
            self._send_page(h, snap, canonicalize_name(segs[1]))
        elif len(segs) == 2 and segs[0] == "wheels" and segs[1]:
            self._send_wheel_or_metadata(h, snap, segs[1])
        else:
            raise HTTPProblem(404)

    # -- responses ---------------------------------------------------------------------------
    def _start(self, status: int, headers: list[tuple[str, str]]) -> None:
        self._status = status
        lines = [
            f"HTTP/1.1 {status} {reason(status)}",
            f"Server: {SERVER}",
            f"Date: {self.server.date()}",
        ]
        lines += [f"{k}: {v}" for k, v in headers]
        if not self._keep_alive:
            lines.append("Connection: close")
        self.wfile.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))

    def _body(self, data: bytes) -> None:
        if not self._head:
            self.wfile.write(data)
            self._sent += len(data)

    def _error(self, status: int, message: str = "") -> None:
        body = f"{status} {reason(status)}{': ' + message if message else ''}\n".encode()
        headers = [
            ("Content-Type", "text/plain; charset=utf-8"),
            ("Content-Length", str(len(body))),
        ]
        if status == 405:
            headers.append(("Allow", "GET, HEAD"))
        if status == 416:
            headers.append(("Content-Range", message))
        if status not in (404, 406, 416):
            self._keep_alive = False  # after a protocol error the stream cannot be trusted
        self._start(status, headers)
        self._body(body)

    def _send_page(self, h: dict[str, str], snap: Snapshot, project: NormalizedName | None) -> None:
        rep, content_type = representation(h.get("accept"))
        page = self.server.pages.get(snap, project, rep)
        if page is None:
            raise HTTPProblem(404)
        self._send_bytes(h, page.body, content_type, page.etag, vary=True)

    def _send_bytes(
        self, h: dict[str, str], body: bytes, ctype: str, etag: str | None, vary: bool = False
    ) -> None:
        inm = h.get("if-none-match")
        # Pages change whenever a fetch adds a file: revalidate (cheaply, by ETag) every time.
        headers = [("Cache-Control", "no-cache")]
        headers += [("Vary", "Accept")] if vary else []
        headers += [("ETag", etag)] if etag else []
        if etag and inm and etag_matches(inm, etag):
            self._start(304, headers)
            return
        self._start(200, [*headers, ("Content-Type", ctype), ("Content-Length", str(len(body)))])
        self._body(body)

    def _send_wheel_or_metadata(self, h: dict[str, str], snap: Snapshot, name: str) -> None:
        published = snap.files.get(name)
        if published is not None:
            self._send_file(
                h,
                published.path,
                None,
                published.entry.sha256,
                published.mtime,
                "application/octet-stream",
            )
            if not self._head:
                self.server.note_use(published.entry.sha256)
            return
        wheel = snap.files.get(name[: -len(".metadata")]) if name.endswith(".metadata") else None
        md = wheel.metadata if wheel is not None else None
        if wheel is None or md is None:
            raise HTTPProblem(404)
        self._send_file(h, md.path, md.data, md.sha256, wheel.mtime, "text/plain; charset=utf-8")

    def _send_file(
        self,
        h: dict[str, str],
        path: Path | None,
        data: bytes | None,
        digest: str,
        mtime: float,
        ctype: str,
    ) -> None:
        try:
            fh = open(path, "rb") if path is not None else None  # noqa: SIM115
        except FileNotFoundError:  # removed by gc/rm since the snapshot was taken
            raise HTTPProblem(404) from None
        try:
            size = os.fstat(fh.fileno()).st_size if fh is not None else len(data or b"")
            etag = f'"{digest}"'
            headers = [
                ("ETag", etag),
                ("Last-Modified", http_date(mtime)),
                ("Accept-Ranges", "bytes"),
                ("Cache-Control", "no-cache"),
            ]
            status = _file_status(h, etag, mtime, size)
            if status == 304:
                self._start(304, headers)
                return
            if status == 416:
                raise HTTPProblem(416, f"bytes */{size}")
            start, end = (0, size - 1) if isinstance(status, int) else status
            headers += [("Content-Type", ctype), ("Content-Length", str(end - start + 1))]
            if not isinstance(status, int):
                headers.append(("Content-Range", f"bytes {start}-{end}/{size}"))
            self._start(200 if isinstance(status, int) else 206, headers)
            if self._head or end < start:
                return
            if fh is None:
                self._body((data or b"")[start : end + 1])
                return
            count = end - start + 1
            self.wfile.flush()  # the headers go first; then the kernel sends the body
            sent = self.connection.sendfile(fh, offset=start, count=count)
            self._sent += sent
            if sent != count:
                raise ConnectionError(f"sent {sent} of {count} bytes")
        finally:
            if fh is not None:
                fh.close()

    def _log_access(self) -> None:
        record = AccessRecord(
            client=self.client_address[0],
            method=_printable(self._method),
            path=_printable(self._target),
            status=self._status,
            sent=self._sent,
            seconds=time.perf_counter() - self._started,
            user_agent=_printable(self._agent),
        )
        # One short line per request on its own logger: wheels served and failures at INFO
        # (shown by default), pages, .metadata, HEAD and 304 at DEBUG (``serve -v``).
        wheel = record.method == "GET" and record.status in (200, 206) and ".whl" in record.path
        access.log(
            logging.INFO if wheel or record.status >= 400 else logging.DEBUG,
            '%s "%s %s" %d %d %.1fms %s',
            record.client,
            record.method,
            record.path,
            record.status,
            record.sent,
            record.seconds * 1000,
            _client_name(record.user_agent),
        )
        if self.server.on_request is not None:
            self.server.on_request(record)


def _file_status(h: dict[str, str], etag: str, mtime: float, size: int) -> int | tuple[int, int]:
    """200, 304, 416, or the ``(start, end)`` of a satisfiable single range (RFC 9110 13.2.2)."""
    inm = h.get("if-none-match")
    if inm is not None:
        if etag_matches(inm, etag):
            return 304
    else:
        ims = h.get("if-modified-since")
        since = parse_http_date(ims) if ims else None
        if since is not None and int(mtime) <= since:
            return 304
    header = h.get("range")
    if header is None:
        return 200
    if_range = h.get("if-range")
    if if_range is not None:
        if if_range.strip().startswith(("W/", '"')):
            if if_range.strip() != etag:  # If-Range needs a strong match
                return 200
        elif parse_http_date(if_range) != float(int(mtime)):
            return 200
    span = parse_range(header, size)
    if span is None:
        return 200
    return 416 if span is False else span


class IndexServer(socketserver.ThreadingTCPServer):
    """A threaded HTTP/1.1 server over a :class:`CacheView`; ``serve_forever`` runs it."""

    daemon_threads = True
    #: The connection handler; ``serve --pull`` passes its own (wheelcache.serve.pull_server).
    handler_class: type[socketserver.StreamRequestHandler] = _Handler
    # Stopping must not wait for connections: a client keeping one alive would hold the
    # process after SIGTERM (answers in flight get a moment through wait_idle instead).
    block_on_close = False
    # On Windows SO_REUSEADDR lets a second server take a port that is in use.
    allow_reuse_address = sys.platform != "win32"
    request_queue_size = 128

    def __init__(
        self,
        address: tuple[str, int],
        view: CacheView,
        *,
        on_request: Callable[[AccessRecord], None] | None = None,
        max_connections: int = 512,
        max_per_client: int = MAX_PER_CLIENT,
    ) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.view = view
        self.pages = _Pages()
        self.on_request = on_request
        self._slots = threading.BoundedSemaphore(max_connections)
        self._max_per_client = max(1, max_per_client)
        self._clients: dict[str, int] = {}  # client address -> open connections
        self._clients_lock = threading.Lock()
        self._warned: dict[str, float] = {}
        self._used: dict[str, float] = {}  # sha256 -> when it was last recorded as used
        self._used_lock = threading.Lock()
        self._busy = 0
        self._idle = threading.Condition()
        self._date = (0, "")
        super().__init__(address, self.handler_class)

    def note_use(self, sha256: str) -> None:
        """Record a served wheel as used, so ``gc --max-size`` keeps what the LAN installs.

        At most once an hour per wheel: a catalog write per download would cost more than it
        tells.
        """
        now = time.time()
        with self._used_lock:
            if now - self._used.get(sha256, 0.0) < USE_RECORD_INTERVAL:
                return
            self._used[sha256] = now
        try:
            self.view.cache.catalog.touch([sha256], now)
        except WheelcacheError as exc:  # a busy or read-only catalog must not fail a download
            log.debug("cannot record use of %s: %s", sha256, exc)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    @property
    def url(self) -> str:
        host = str(self.server_address[0])
        return f"http://{f'[{host}]' if ':' in host else host}:{self.port}"

    def date(self) -> str:
        """The Date header, formatted once per second."""
        now = int(time.time())
        if self._date[0] != now:
            self._date = (now, http_date(now))
        return self._date[1]

    def request_started(self) -> None:
        with self._idle:
            self._busy += 1

    def request_done(self) -> None:
        with self._idle:
            self._busy -= 1
            self._idle.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no request is in flight (idle keep-alive connections do not count)."""
        with self._idle:
            return self._idle.wait_for(lambda: self._busy == 0, timeout)

    def _refuse(self, request: Any) -> None:
        """503 at once and close: overloaded, or this client holds its share already."""
        try:
            request.sendall(
                b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\n"
                b"Content-Length: 0\r\nConnection: close\r\n\r\n"
            )
        except OSError:
            pass
        self.shutdown_request(request)

    def _client_joins(self, host: str) -> bool:
        with self._clients_lock:
            count = self._clients.get(host, 0)
            if count >= self._max_per_client:
                now = time.monotonic()
                warn = now - self._warned.get(host, -3600.0) > 60
                if warn:
                    self._warned[host] = now
            else:
                self._clients[host] = count + 1
                return True
        if warn:
            log.warning(
                "%s holds %d connections; refusing more from it (503) so that other clients "
                "are served",
                host,
                count,
            )
        return False

    def _client_leaves(self, host: str) -> None:
        with self._clients_lock:
            left = self._clients.get(host, 1) - 1
            if left > 0:
                self._clients[host] = left
            else:
                self._clients.pop(host, None)

    def process_request(self, request: Any, client_address: Any) -> None:
        host = str(client_address[0])
        if not self._client_joins(host):
            self._refuse(request)
            return
        if not self._slots.acquire(blocking=False):  # overloaded: say so at once, keep going
            self._client_leaves(host)
            self._refuse(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            self._client_leaves(host)
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()
            self._client_leaves(str(client_address[0]))

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("connection from %s ended: %r", client_address[0], sys.exc_info()[1])
