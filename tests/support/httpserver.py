"""A real HTTP/1.1 file server on 127.0.0.1 with switchable faults, for download tests.

Download and resume code is only trustworthy if it has met real sockets that reset, stall,
lie about lengths and ignore ranges. ``FileServer`` serves bytes or files (streamed, with
ETag/Last-Modified, conditional requests and single byte ranges), PEP 691 content
negotiation, a request log, and per-path faults (see :meth:`FileServer.fault`).
"""

from __future__ import annotations

import array
import email.utils
import hashlib
import mimetypes
import socket
import struct
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import EllipsisType, TracebackType
from typing import Any
from urllib.parse import quote, unquote, urlsplit

__all__ = ["HTML_V1_TYPE", "JSON_TYPE", "Fault", "FileServer", "RequestRecord"]

JSON_TYPE = "application/vnd.pypi.simple.v1+json"
HTML_V1_TYPE = "application/vnd.pypi.simple.v1+html"
CHUNK = 64 * 1024
_ACCEPT_KINDS = {  # media type -> (kind, content type served, server preference)
    JSON_TYPE: ("json", JSON_TYPE, 3),
    "application/vnd.pypi.simple.latest+json": ("json", JSON_TYPE, 3),
    HTML_V1_TYPE: ("html", HTML_V1_TYPE, 2),
    "application/vnd.pypi.simple.latest+html": ("html", HTML_V1_TYPE, 2),
    "text/html": ("html", "text/html", 1),
    "text/*": ("html", "text/html", 0),
    "*/*": ("html", "text/html", 0),
}


@dataclass
class RequestRecord:
    """One request as the server saw it; ``headers`` keys are lower-case."""

    method: str
    path: str  # URL-decoded path, no query
    raw_path: str  # request target as sent
    headers: dict[str, str]
    range: str | None
    status: int = 0
    fault: Fault | None = None
    body_bytes: int = 0  # body bytes actually written (updated while streaming)
    at: float = field(default_factory=time.monotonic)  # when the request arrived


@dataclass
class Fault:
    """A misbehaviour applied to the next ``times`` matching requests (``None`` = forever).

    Status/redirect/etag/no-range faults apply to any GET or HEAD; ``ignore_range`` and
    ``wrong_content_range`` only to requests carrying ``Range``; body faults (drop, stall,
    corrupt, short/long, throttle) only to GET. A request uses up at most one fault.
    """

    times: int | None = 1
    drop_after: int | None = None  # send N body bytes, then reset the connection
    reset: bool = True  # drop_after: RST (True) or a plain FIN/EOF (False)
    ignore_range: bool = False
    no_ranges: bool = False
    wrong_content_range: bool = False
    change_etag: bool = False
    stall_after: int | None = None
    stall_seconds: float = 5.0
    status: int | None = None
    retry_after: str | None = None
    corrupt: bool = False
    short_body: bool = False
    long_body: bool = False
    throttle_bps: int | None = None
    redirect_to: str | None = None
    used: int = 0

    def applies(self, method: str, has_range: bool) -> bool:
        if self.status or self.redirect_to or self.change_etag or self.no_ranges:
            return True
        if (self.ignore_range or self.wrong_content_range) and has_range:
            return True
        body = (
            self.drop_after is not None
            or self.stall_after is not None
            or self.corrupt
            or self.short_body
            or self.long_body
            or self.throttle_bps
        )
        return bool(body) and method == "GET"


@dataclass
class _Route:
    body: bytes | Path | None = None
    content_type: str = "application/octet-stream"
    headers: dict[str, str] = field(default_factory=dict)
    last_modified: float | None = None  # None: file mtime
    negotiated: dict[str, bytes] | None = None  # kind -> body
    redirect: tuple[int, str] | None = None


class _Abort(Exception):
    """Stop handling this connection now (after a deliberate drop)."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    owner: FileServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError, _Abort, OSError)):
            return  # clients hanging up early is normal in these tests
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "wheelcache-testserver/1.0"
    sys_version = ""
    timeout = 60
    disable_nagle_algorithm = True  # headers and body go out in separate writes
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stay quiet
        pass

    def handle(self) -> None:
        owner = self.server.owner
        owner._track(self.connection, True)
        try:
            super().handle()
        except (ConnectionError, TimeoutError, _Abort, OSError):
            self.close_connection = True
        finally:
            owner._track(self.connection, False)

    def do_GET(self) -> None:
        self.server.owner._serve(self)

    def do_HEAD(self) -> None:
        self.server.owner._serve(self)


def _http_date(ts: float) -> str:
    return email.utils.formatdate(int(ts), usegmt=True)


def _parse_date(value: str) -> float | None:
    try:
        return email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError):
        return None


def parse_range(value: str, size: int) -> tuple[int, int] | str | None:
    """One ``bytes=`` range -> (start, end) inclusive; "unsatisfiable"; None to ignore it."""
    value = value.strip()
    if not value.lower().startswith("bytes=") or "," in value:
        return None
    first, sep, last = value[6:].strip().partition("-")
    first, last = first.strip(), last.strip()
    if not sep or not (first.isdigit() or first == "") or not (last.isdigit() or last == ""):
        return None
    if first == "":
        if last == "":
            return None
        n = int(last)
        return "unsatisfiable" if n == 0 or size == 0 else (max(0, size - n), size - 1)
    start = int(first)
    if last != "" and int(last) < start:
        return None
    if start >= size:
        return "unsatisfiable"
    return (start, size - 1 if last == "" else min(int(last), size - 1))


def choose_representation(accept: str | None) -> tuple[str, str] | None:
    """PEP 691 negotiation: (kind, content type) or None (406). No header -> HTML."""
    if not accept:
        return ("html", "text/html")
    best: tuple[float, int, str, str] | None = None
    for part in accept.split(","):
        bits = [b.strip() for b in part.split(";")]
        q = 1.0
        for param in bits[1:]:
            key, _, val = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(val)
                except ValueError:
                    q = 0.0
        entry = _ACCEPT_KINDS.get(bits[0].lower())
        if entry is None or q <= 0:
            continue
        cand = (q, entry[2], entry[0], entry[1])
        if best is None or cand[:2] > best[:2]:
            best = cand
    return None if best is None else (best[2], best[3])


def _unsent_bytes(sock: socket.socket) -> int:
    try:
        import fcntl
        import termios

        buf = array.array("i", [0])
        fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, buf, True)
        return buf[0]
    except (ImportError, OSError, AttributeError):
        return 0


class FileServer:
    """HTTP/1.1 server on 127.0.0.1:0 in a background thread; use as a context manager."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._host, self._port = host, port
        self._lock = threading.RLock()
        self._routes: dict[str, _Route] = {}
        self._faults: dict[str, list[Fault]] = {}
        self._log: list[RequestRecord] = []
        self._hashes: dict[tuple[str, int, int], str] = {}
        self._conns: set[socket.socket] = set()
        self._etag_changes = 0
        self._stop = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.url = ""

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> FileServer:
        server = _Server((self._host, self._port), _Handler)
        server.owner = self
        self._server = server
        self.url = f"http://{self._host}:{server.server_address[1]}"
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"FileServer{self.url}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._stop.set()
        self._server.shutdown()
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._server.server_close()
        self._server = None

    def __enter__(self) -> FileServer:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _track(self, conn: socket.socket, add: bool) -> None:
        with self._lock:
            (self._conns.add if add else self._conns.discard)(conn)

    # -- routes ----------------------------------------------------------------------------
    def add(
        self,
        path: str,
        body: bytes | Path,
        content_type: str | None = None,
        headers: Mapping[str, str] | None = None,
        last_modified: float | None = None,
    ) -> str:
        """Serve ``body`` (bytes, or a file streamed from disk) at ``path``; returns its URL."""
        if content_type is None:
            content_type = self._guess_type(path)
        if last_modified is None and isinstance(body, bytes):
            last_modified = float(int(time.time()))
        with self._lock:
            self._routes[self._key(path)] = _Route(
                body=body,
                content_type=content_type,
                headers=dict(headers or {}),
                last_modified=last_modified,
            )
        return self.url_for(path)

    def add_negotiated(
        self, path: str, html: bytes, json: bytes, headers: Mapping[str, str] | None = None
    ) -> str:
        """Serve a PEP 691 page: JSON or HTML chosen by ``Accept`` (no header -> HTML)."""
        with self._lock:
            self._routes[self._key(path)] = _Route(
                headers=dict(headers or {}),
                last_modified=float(int(time.time())),
                negotiated={"html": html, "json": json},
            )
        return self.url_for(path)

    def add_redirect(self, path: str, location: str, status: int = 301) -> None:
        """Answer ``path`` with a redirect (e.g. non-normalized project names)."""
        with self._lock:
            self._routes[self._key(path)] = _Route(redirect=(status, location))

    def remove(self, path: str) -> None:
        with self._lock:
            self._routes.pop(self._key(path), None)

    def url_for(self, path: str) -> str:
        """Absolute URL for a (decoded) path, percent-encoding ``+`` and friends."""
        return self.url + quote(path)

    @staticmethod
    def _key(path: str) -> str:
        if path.startswith(("http://", "https://")):
            path = urlsplit(path).path
        return unquote(path)

    @staticmethod
    def _guess_type(path: str) -> str:
        if path.endswith((".whl", ".metadata", ".tar.gz", ".zip")):
            return "application/octet-stream"
        if path.endswith("/") or path.endswith(".html"):
            return "text/html"
        return mimetypes.guess_type(path)[0] or "application/octet-stream"

    # -- faults ----------------------------------------------------------------------------
    def fault(self, path: str, *, times: int | None | EllipsisType = ..., **kw: Any) -> Fault:
        """Add a fault for ``path`` (decoded path or full URL). ``times`` defaults to 1,
        or to ``None`` (always) for ``no_ranges``. Faults for one path apply in order."""
        valid = {f.name for f in fields(Fault)} - {"times", "used"}
        unknown = set(kw) - valid
        if unknown:
            raise TypeError(f"unknown fault option(s): {sorted(unknown)}")
        if times is ...:
            times = None if kw.get("no_ranges") else 1
        flt = Fault(times=times, **kw)
        with self._lock:
            self._faults.setdefault(self._key(path), []).append(flt)
        return flt

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def _take_fault(self, path: str, method: str, has_range: bool) -> Fault | None:
        with self._lock:
            for flt in self._faults.get(path, []):
                if flt.times is not None and flt.used >= flt.times:
                    continue
                if flt.applies(method, has_range):
                    flt.used += 1
                    return flt
        return None

    # -- request log -----------------------------------------------------------------------
    @property
    def requests(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._log)

    def count(self, path_substring: str = "", method: str | None = None) -> int:
        """Requests whose decoded path contains ``path_substring`` (and method, if given)."""
        return sum(
            1
            for r in self.requests
            if path_substring in r.path and (method is None or r.method == method)
        )

    def clear_log(self) -> None:
        with self._lock:
            self._log.clear()

    # -- serving ---------------------------------------------------------------------------
    def _entity_tag(self, body: bytes | Path) -> tuple[int, str]:
        if isinstance(body, bytes):
            return len(body), hashlib.sha256(body).hexdigest()[:32]
        st = body.stat()
        key = (str(body), st.st_size, st.st_mtime_ns)
        with self._lock:
            digest = self._hashes.get(key)
        if digest is None:
            h = hashlib.sha256()
            with body.open("rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
            digest = h.hexdigest()[:32]
            with self._lock:
                self._hashes[key] = digest
        return st.st_size, digest

    def _start(
        self, h: _Handler, rec: RequestRecord, status: int, headers: Mapping[str, str]
    ) -> None:
        rec.status = status
        with self._lock:
            self._log.append(rec)  # logged before the body, so clients never race the log
        h.send_response(status)
        for k, v in headers.items():
            h.send_header(k, v)
        h.end_headers()

    def _simple(
        self,
        h: _Handler,
        rec: RequestRecord,
        status: int,
        body: bytes = b"",
        headers: Mapping[str, str] | None = None,
    ) -> None:
        hdrs = {"Content-Type": "text/plain; charset=utf-8", "Content-Length": str(len(body))}
        hdrs.update(headers or {})
        self._start(h, rec, status, hdrs)
        if h.command != "HEAD" and body:
            h.wfile.write(body)

    def _serve(self, h: _Handler) -> None:
        split = urlsplit(h.path)
        path = unquote(split.path)
        hdrs = {k.lower(): v for k, v in h.headers.items()}
        rec = RequestRecord(h.command, path, h.path, hdrs, hdrs.get("range"))
        try:
            self._respond(h, rec, split.path, split.query)
        except _Abort:
            h.close_connection = True
        except (ConnectionError, TimeoutError):
            h.close_connection = True

    def _respond(self, h: _Handler, rec: RequestRecord, raw: str, query: str) -> None:
        path, hdrs = rec.path, rec.headers
        with self._lock:
            route = self._routes.get(path)
            slash_route = None if path.endswith("/") else self._routes.get(path + "/")
        if route is None:
            if slash_route is not None:
                loc = raw + "/" + (f"?{query}" if query else "")
                return self._simple(h, rec, 301, b"Moved\n", {"Location": loc})
            return self._simple(h, rec, 404, b"Not Found\n")
        if route.redirect:
            return self._simple(h, rec, route.redirect[0], b"", {"Location": route.redirect[1]})
        flt = self._take_fault(path, h.command, rec.range is not None)
        rec.fault = flt
        if flt and flt.status:
            extra = {"Retry-After": flt.retry_after} if flt.retry_after is not None else {}
            return self._simple(h, rec, flt.status, f"Error {flt.status}\n".encode(), extra)
        if flt and flt.redirect_to:
            return self._simple(h, rec, 302, b"", {"Location": flt.redirect_to})

        headers: dict[str, str] = {}
        if route.negotiated is not None:
            choice = choose_representation(hdrs.get("accept"))
            if choice is None:
                return self._simple(h, rec, 406, b"Not Acceptable\n", {"Vary": "Accept"})
            body: bytes | Path = route.negotiated[choice[0]]
            headers["Content-Type"] = choice[1]
            headers["Vary"] = "Accept"
        else:
            assert route.body is not None
            body = route.body
            headers["Content-Type"] = route.content_type
        try:
            size, digest = self._entity_tag(body)
            if route.last_modified is not None:
                lm = route.last_modified
            else:
                assert isinstance(body, Path), "add() dates every bytes body"
                lm = body.stat().st_mtime
        except FileNotFoundError:
            return self._simple(h, rec, 404, b"Not Found\n")
        etag = f'"{digest}"'
        if flt and flt.change_etag:
            with self._lock:
                self._etag_changes += 1
                etag = f'"{digest}-changed{self._etag_changes}"'
        no_ranges = bool(flt and flt.no_ranges)
        headers["ETag"] = etag
        headers["Last-Modified"] = _http_date(lm)
        if not no_ranges:
            headers["Accept-Ranges"] = "bytes"
        headers.update(route.headers)

        if self._not_modified(hdrs, etag, lm):
            keep = ("ETag", "Last-Modified", "Vary")
            return self._start(h, rec, 304, {k: v for k, v in headers.items() if k in keep})

        start, end, status = 0, size - 1, 200
        rng = rec.range
        if (
            rng is not None
            and not no_ranges
            and not (flt and flt.ignore_range)
            and self._if_range_ok(hdrs.get("if-range"), etag, lm)
        ):
            parsed = parse_range(rng, size)
            if parsed == "unsatisfiable":
                return self._simple(
                    h, rec, 416, b"Range Not Satisfiable\n", {"Content-Range": f"bytes */{size}"}
                )
            if isinstance(parsed, tuple):
                start, end = parsed
                status = 206
                cr_start = start
                if flt and flt.wrong_content_range:
                    cr_start = start - 16 if start >= 16 else start + 16
                cr_end = cr_start + (end - start)
                headers["Content-Range"] = f"bytes {cr_start}-{cr_end}/{size}"
        length = end - start + 1
        headers["Content-Length"] = str(length)
        self._start(h, rec, status, headers)
        if h.command == "HEAD" or length == 0:
            return
        self._send_body(h, rec, body, start, length, flt)

    @staticmethod
    def _not_modified(hdrs: Mapping[str, str], etag: str, lm: float) -> bool:
        inm = hdrs.get("if-none-match")
        if inm is not None:
            tags = [t.strip().removeprefix("W/") for t in inm.split(",")]
            return "*" in tags or etag in tags
        ims = hdrs.get("if-modified-since")
        if ims is not None:
            when = _parse_date(ims)
            return when is not None and int(lm) <= int(when)
        return False

    @staticmethod
    def _if_range_ok(value: str | None, etag: str, lm: float) -> bool:
        if value is None:
            return True
        value = value.strip()
        if value.startswith(("W/", '"')):
            return value == etag  # strong comparison; weak tags never match
        when = _parse_date(value)
        return when is not None and int(when) == int(lm)

    def _chunks(self, body: bytes | Path, start: int, length: int) -> Iterator[bytes]:
        if isinstance(body, bytes):
            for off in range(start, start + length, CHUNK):
                yield body[off : min(off + CHUNK, start + length)]
            return
        with body.open("rb") as fh:
            fh.seek(start)
            left = length
            while left > 0:
                data = fh.read(min(CHUNK, left))
                if not data:
                    return
                left -= len(data)
                yield data

    def _sleep(self, seconds: float) -> None:
        if self._stop.wait(seconds):
            raise _Abort()

    def _send_body(
        self,
        h: _Handler,
        rec: RequestRecord,
        body: bytes | Path,
        start: int,
        length: int,
        flt: Fault | None,
    ) -> None:
        flt = flt or Fault(times=0)
        to_send = length
        if flt.short_body:
            to_send = length - max(1, min(length // 2, 1024))
        limit = to_send if flt.drop_after is None else min(to_send, flt.drop_after)
        stall_at = flt.stall_after
        corrupt_at = length // 2 if flt.corrupt else -1  # offset within this response body
        bps = flt.throttle_bps
        slice_size = CHUNK if not bps else max(1, min(CHUNK, bps // 20))
        t0 = time.monotonic()
        sent = 0
        for chunk in self._chunks(body, start, limit):
            if 0 <= corrupt_at - sent < len(chunk):
                i = corrupt_at - sent
                chunk = chunk[:i] + bytes([chunk[i] ^ 0xFF]) + chunk[i + 1 :]
            pos = 0
            while pos < len(chunk):
                n = min(slice_size, len(chunk) - pos)
                if stall_at is not None and sent < stall_at:
                    n = min(n, stall_at - sent)
                h.wfile.write(chunk[pos : pos + n])
                pos += n
                sent += n
                rec.body_bytes = sent
                if stall_at is not None and sent == stall_at:
                    stall_at = None
                    self._sleep(flt.stall_seconds)
                if bps:
                    ahead = sent / bps - (time.monotonic() - t0)
                    if ahead > 0:
                        self._sleep(ahead)
        if flt.drop_after is not None and flt.drop_after < length:
            self._close(h, reset=flt.reset)
        if flt.long_body:
            extra = b"\0<extra bytes beyond Content-Length>\0"
            h.wfile.write(extra)
            rec.body_bytes = sent + len(extra)
        if flt.short_body or flt.long_body:
            self._close(h, reset=False)

    def _close(self, h: _Handler, reset: bool) -> None:
        """End the connection mid-response, after the kernel has delivered what we sent."""
        sock = h.connection
        deadline = time.monotonic() + 3.0
        while _unsent_bytes(sock) and time.monotonic() < deadline and not self._stop.is_set():
            time.sleep(0.005)
        try:
            if reset:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.close()
            else:
                sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        h.close_connection = True
        raise _Abort()
