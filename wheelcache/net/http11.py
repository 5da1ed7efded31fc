"""HTTP/1.1 on ``http.client``: a keep-alive pool, proxies, redirects and translated errors.

The transport under :class:`~wheelcache.net.client.Http` (issue 14: httpx cost 65-100 ms of
imports and about 0.5 ms of CPU per request, and read bodies 64 KiB per ``recv``).  It does
what the client needs and nothing more: GET and HEAD, one pool of at most ``max_connections``
connections shared by every origin, a reused idle connection that the server had closed tried
again once on a new one (GET and HEAD are idempotent), proxies from the usual environment
variables (``HTTP_PROXY``, ``HTTPS_PROXY``, ``ALL_PROXY``, ``NO_PROXY``, lower case too),
at most :data:`MAX_REDIRECTS` redirects and never from https to plain http.

:func:`translated` is the one place where socket, TLS and ``http.client`` errors become
:class:`~wheelcache.errors.ConnectionFault`; it wraps only network calls, so a full disk while
a body is spooled is never taken for a dropped connection.
"""

from __future__ import annotations

import base64
import http.client
import os
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import BinaryIO
from urllib.parse import quote, unquote, urljoin, urlsplit

from wheelcache.errors import ConnectionFault

__all__ = [
    "MAX_REDIRECTS",
    "Exchange",
    "Pool",
    "environment_proxies",
    "translated",
    "without_credentials",
]

MAX_REDIRECTS = 20
REDIRECTS = frozenset({301, 302, 303, 307, 308})
PIECE = 1 << 20  # one read of a body: whatever the socket holds, up to 1 MiB
_COALESCE = 0.02  # seconds of a fast body read as one piece (see Exchange.pieces)
_COALESCE_FROM = 1 << 16  # below this many bytes in that time, a piece is one recv
_SAFE = "/%:@!$&'()*+,;=?~[]-._"  # kept as they are in a request target; the rest is quoted
_STALE = (ConnectionResetError, ConnectionAbortedError, BrokenPipeError, ssl.SSLEOFError)
_MAX_LINE = 65536  # bytes of a header line, and header lines in a block: http.client's bounds
_MAX_LINES = 100
_MAX_INTERIM = 16  # informational (1xx) answers skipped before the real one


class _Unexpected(http.client.HTTPException):
    """What a server sent that no answer to our request may hold; its text is the error."""

    def __init__(self, why: str, *, retryable: bool = True) -> None:
        super().__init__(why)
        self.retryable = retryable


@contextmanager
def translated(url: str, *, connecting: bool = False) -> Iterator[None]:
    """Network errors raised inside become :class:`ConnectionFault` (see its attributes)."""
    try:
        yield
    except ConnectionFault:
        raise
    except TimeoutError as exc:  # socket.timeout is TimeoutError from 3.10 on
        if connecting:  # no answer at all: the host is unreachable
            raise ConnectionFault(
                url, "timed out connecting", retryable=True, timed_out=True, unreachable=True
            ) from exc
        raise ConnectionFault(
            url, "timed out (ReadTimeout)", retryable=True, timed_out=True
        ) from exc
    except socket.gaierror as exc:
        raise ConnectionFault(url, "name not resolved", retryable=True, unreachable=True) from exc
    except ConnectionRefusedError as exc:
        raise ConnectionFault(url, "connection refused", retryable=True, unreachable=True) from exc
    except _Unexpected as exc:
        raise ConnectionFault(url, str(exc), retryable=exc.retryable) from exc
    except ssl.SSLError as exc:
        if connecting:
            said = getattr(exc, "verify_message", None) or getattr(exc, "reason", None) or exc
            why = f"TLS failure ({said})"
            raise ConnectionFault(url, why, retryable=True, unreachable=True) from exc
        raise ConnectionFault(url, "connection reset", retryable=True) from exc
    except (http.client.IncompleteRead, http.client.BadStatusLine) as exc:  # RemoteDisconnected
        raise ConnectionFault(url, "connection dropped", retryable=True) from exc
    except http.client.HTTPException as exc:  # a line too long, too many headers …
        raise ConnectionFault(
            url, f"connection dropped ({type(exc).__name__})", retryable=True
        ) from exc
    except OSError as exc:
        if connecting:
            raise ConnectionFault(url, f"cannot connect ({exc})", retryable=True) from exc
        if isinstance(exc, ConnectionError):
            raise ConnectionFault(url, "connection reset", retryable=True) from exc
        raise ConnectionFault(url, f"connection failed ({exc})", retryable=True) from exc
    except ValueError as exc:  # a URL or header http.client will not send: waiting cannot help
        raise ConnectionFault(url, f"cannot send the request ({exc})", retryable=False) from exc


@dataclass(frozen=True, slots=True)
class _Target:
    """A URL taken apart: where to connect (maybe a proxy) and what to ask for."""

    url: str  # without its fragment
    scheme: str
    host: str
    port: int
    path: str  # origin-form: /path?query
    auth: str | None  # an Authorization header from the URL's user:password


def _target(url: str) -> _Target:
    try:
        parts = urlsplit(url)
        port = parts.port
        host = parts.hostname
    except ValueError as exc:
        raise ConnectionFault(url, f"malformed URL ({exc})", retryable=False) from exc
    if parts.scheme not in ("http", "https"):
        raise ConnectionFault(url, f"unsupported URL scheme {parts.scheme!r}", retryable=False)
    if not host:
        raise ConnectionFault(url, "malformed URL (no host)", retryable=False)
    path = quote(parts.path or "/", safe=_SAFE) + (
        "?" + quote(parts.query, safe=_SAFE) if parts.query else ""
    )
    auth = None
    if parts.username is not None:
        pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        auth = "Basic " + base64.b64encode(pair.encode()).decode()
    port = port or (443 if parts.scheme == "https" else 80)
    return _Target(url.split("#", 1)[0], parts.scheme, host.lower(), port, path, auth)


def environment_proxies(environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """``{"http": url, "https": url, "all": url, "no": list}`` as urllib reads them, without
    importing urllib.request (about 40 ms): a lower-case variable wins over its upper case,
    even set empty (``https_proxy=`` turns off an ``HTTPS_PROXY`` for this command)."""
    found: dict[str, str] = {}
    for lower_pass in (False, True):
        for name, value in environ.items():
            key = name.lower()
            if not key.endswith("_proxy") or (name == key) != lower_pass:
                continue
            if value.strip():
                found[key[: -len("_proxy")]] = value.strip()
            elif lower_pass:
                found.pop(key[: -len("_proxy")], None)
    return found


def _bypassed(host: str, port: int, no_proxy: str) -> bool:
    """NO_PROXY: ``*``, or a host, a domain (``example.com`` or ``.example.com``, matching
    its sub-domains), with or without ``:port``."""
    for entry in (e.strip().lower() for e in no_proxy.split(",")):
        if not entry:
            continue
        if entry == "*":
            return True
        name, _, only_port = entry.rpartition(":") if entry.count(":") == 1 else (entry, "", "")
        if only_port and only_port != str(port):
            continue
        name = name.strip("[]").lstrip(".")
        if name and (host == name or host.endswith("." + name)):
            return True
    return False


def _skip_lines(fp: BinaryIO, what: str) -> None:
    """Read a header block (or a trailer) up to its blank line: at most 100 lines of 64 KiB."""
    for _ in range(_MAX_LINES + 1):
        line = fp.readline(_MAX_LINE + 1)
        if len(line) > _MAX_LINE:
            raise _Unexpected(f"a {what} line longer than 64 KiB")
        if line in (b"\r\n", b"\n", b""):
            return
    raise _Unexpected(f"more than {_MAX_LINES} {what} lines")


class _Response(http.client.HTTPResponse):
    """``http.client``'s answer with what it leaves open bounded.

    Python 3.10-3.12 skip only ``100 Continue`` (and as many as a server sends) and take any
    other informational answer (``103 Early Hints``) for the answer itself, with no body, so
    the real one would be read as the answer to the next request on the connection.  Here
    every 1xx but 101 is skipped, at most 16; trailers of a chunked body are bounded too.
    """

    def _read_status(self) -> tuple[str, int, str]:
        for _ in range(_MAX_INTERIM + 1):
            version, status, reason = super()._read_status()  # type: ignore[misc]
            if not 100 <= status < 200:
                return version, status, reason
            if status == 101:
                raise _Unexpected("the server switched protocols (101) unasked", retryable=False)
            _skip_lines(self.fp, "header")
        raise _Unexpected(f"more than {_MAX_INTERIM} informational answers before the answer")

    def _read_and_discard_trailer(self) -> None:
        _skip_lines(self.fp, "trailer")


def _create_connection(
    address: tuple[str, int], timeout: float | None = None, source: tuple[str, int] | None = None
) -> socket.socket:
    """``socket.create_connection`` with an ASCII host name given as bytes: the resolver
    encodes a ``str`` host with the ``idna`` codec, whose import (with ``unicodedata`` and
    ``stringprep``, about 5 ms) would otherwise hold up a plain-http run's first connection
    (TLS encodes the name with it anyway).  An ASCII name whose labels the codec would take
    is its own encoding; any other still goes through the codec, which refuses it as before."""
    host, port = address
    labels = host.rstrip(".").split(".")
    plain = host.isascii() and all(0 < len(label) < 64 for label in labels)
    name: str | bytes = host.encode("ascii") if plain else host
    return socket.create_connection((name, port), timeout, source)  # type: ignore[arg-type]


class _HTTP(http.client.HTTPConnection):
    response_class = _Response
    auto_open = 0  # never reconnect behind the pool's back (after close(), say)

    def __init__(self, host: str, port: int, *, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._create_connection = _create_connection


class _HTTPS(http.client.HTTPSConnection):
    response_class = _Response
    auto_open = 0


class _Tunnelled(_HTTPS):
    """https to ``host`` through a plain-http proxy's ``CONNECT``, whose answer is read with
    the bounds of any other (``http.client``'s own tunnel reads header lines without end
    before Python 3.12)."""

    def __init__(
        self,
        host: str,
        port: int,
        proxy: tuple[str, int, str | None],
        *,
        timeout: float,
        context: ssl.SSLContext,
    ) -> None:
        super().__init__(host, port, timeout=timeout, context=context)
        self.proxy = proxy
        self.tls = context

    def connect(self) -> None:
        phost, pport, pauth = self.proxy
        where = f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"
        head = f"CONNECT {where} HTTP/1.1\r\nHost: {where}\r\n"
        if pauth:
            head += f"Proxy-Authorization: {pauth}\r\n"
        sock = socket.create_connection((phost, pport), self.timeout)
        try:
            sock.sendall(head.encode("latin-1") + b"\r\n")
            with sock.makefile("rb") as fp:  # the proxy says no more until TLS begins
                line = fp.readline(_MAX_LINE + 1)
                parts = line.decode("latin-1").split(None, 2)
                if len(line) > _MAX_LINE or len(parts) < 2 or not parts[0].startswith("HTTP/"):
                    raise _Unexpected(f"the proxy {phost}:{pport} gave no HTTP answer to CONNECT")
                if parts[1] != "200":
                    said = " ".join(parts[1:]).strip()[:80]
                    raise _Unexpected(
                        f"the proxy {phost}:{pport} refused the tunnel ({said})", retryable=False
                    )
                _skip_lines(fp, "header")
            self.sock = self.tls.wrap_socket(sock, server_hostname=self.host)
        except BaseException:
            sock.close()
            raise


def _reusable(c: Conn) -> bool:
    """An idle connection with something to read was closed by its server, or holds bytes no
    answer framed (a body on a 204, more than a Content-Length said): not to be reused."""
    sock = c.conn.sock
    return sock is not None and not _has_bytes(sock)


def _has_bytes(sock: socket.socket, wait: float = 0.0) -> bool:
    """Whether *sock* has something to read now or within *wait* seconds: decrypted bytes a
    TLS socket holds, or what ``select`` sees (a socket it cannot watch counts as having
    something, which the next read will say)."""
    if isinstance(sock, ssl.SSLSocket) and sock.pending():
        return True
    try:
        readable, _, _ = select.select([sock], [], [], max(0.0, wait))
    except (OSError, ValueError):
        return True
    return bool(readable)


def without_credentials(url: str) -> str:
    """*url* with no ``user:password@`` (what a message may show of a proxy).

    >>> without_credentials("http://me:s3cret@proxy.invalid:3128/")
    'http://proxy.invalid:3128/'
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    host, slash, path = rest.partition("/")
    return f"{scheme}{sep}{host.rpartition('@')[2]}{slash}{path}"


def _proxy_target(proxy: str, variable: str, url: str) -> _Target:
    """The proxy a variable names, or one line that names the variable (never its password)."""
    shown = without_credentials(proxy)
    try:
        p = _target(proxy if "://" in proxy else "http://" + proxy)
    except ConnectionFault as exc:
        why = exc.reason.replace(proxy, shown)
        raise ConnectionFault(
            url, f"the proxy in {variable} ({shown}) cannot be used: {why}", retryable=False
        ) from None
    if p.scheme != "http":
        raise ConnectionFault(
            url,
            f"the proxy in {variable} ({shown}) is {p.scheme}://; wheelcache speaks to proxies "
            "in plain http (CONNECT tunnels keep https end to end)",
            retryable=False,
        )
    return p


class Conn:
    """One connection of the pool and what it is for."""

    __slots__ = ("conn", "key", "reused", "sock")

    def __init__(self, key: tuple[object, ...], conn: http.client.HTTPConnection) -> None:
        self.key = key
        self.conn = conn
        self.reused = False
        #: Kept here too: http.client lets go of it when an answer says it will close the
        #: connection, though that answer's body is still read from it.
        self.sock: socket.socket | None = None

    def abort(self) -> None:
        """Wake a thread blocked reading this connection (close() alone does not) and close."""
        sock = self.sock
        if sock is not None:
            try:
                socket.socket.shutdown(sock, socket.SHUT_RDWR)
            except OSError:
                pass
        self.conn.close()


class Pool:
    """Keep-alive connections, at most *size* open in all, safe to share between threads.

    A connection goes back to the pool only after its answer was read to the end and the
    server did not say it will close it; a thread that needs one when all are taken waits, or
    closes an idle one kept for another origin.
    """

    def __init__(
        self,
        size: int,
        connect_timeout: float,
        tls: Callable[[], ssl.SSLContext],
    ) -> None:
        self.size = max(1, size)
        self.connect_timeout = connect_timeout
        self._tls_factory = tls
        self._tls: ssl.SSLContext | None = None
        self._proxies = environment_proxies()
        self._idle: list[Conn] = []  # most recently used last
        self._open: set[Conn] = set()
        self._ready = threading.Condition()
        self._closed = False

    def _context(self) -> ssl.SSLContext:
        with self._ready:
            if self._tls is None:
                self._tls = self._tls_factory()
            return self._tls

    def route(self, t: _Target) -> tuple[tuple[object, ...], str, dict[str, str]]:
        """The pool key, the request target and the headers a proxy needs for *t*."""
        which = t.scheme if self._proxies.get(t.scheme) else "all"
        proxy = self._proxies.get(which)
        if not proxy or _bypassed(t.host, t.port, self._proxies.get("no", "")):
            return (t.scheme, t.host, t.port, None), t.path, {}
        p = _proxy_target(proxy, f"{which.upper()}_PROXY", t.url)
        extra = {"Proxy-Authorization": p.auth} if p.auth else {}
        if t.scheme == "http":  # absolute-form through the proxy; one pool for all its origins
            absolute = f"http://{t.host if ':' not in t.host else f'[{t.host}]'}:{t.port}{t.path}"
            return ("proxy", p.host, p.port, None), absolute, extra
        return ("https", t.host, t.port, (p.host, p.port, p.auth)), t.path, {}

    def acquire(self, url: str, key: tuple[object, ...], *, fresh: bool = False) -> Conn:
        """An idle connection for *key*, or a new one (connected here), within the bound."""
        with self._ready:
            while True:
                if self._closed:
                    raise ConnectionFault(url, "the client is closed", retryable=False)
                for i in range(len(self._idle) - 1, -1, -1):
                    if not fresh and self._idle[i].key == key:
                        c = self._idle.pop(i)
                        if not _reusable(c):
                            self._open.discard(c)
                            c.conn.close()
                            continue
                        c.reused = True
                        return c
                if len(self._open) >= self.size and self._idle:
                    old = self._idle.pop(0)  # kept for another origin: make room
                    self._open.discard(old)
                    old.conn.close()
                if len(self._open) < self.size:
                    c = Conn(key, self._new(key))
                    self._open.add(c)
                    break
                self._ready.wait()
        try:
            with translated(url, connecting=True):
                c.conn.connect()
            c.sock = c.conn.sock
            if self._closed:  # close() came while this one was connecting
                raise ConnectionFault(url, "the client is closed", retryable=False)
            return c
        except BaseException:
            self.discard(c)
            raise

    def _new(self, key: tuple[object, ...]) -> http.client.HTTPConnection:
        scheme, host, port, via = key
        assert isinstance(host, str) and isinstance(port, int)
        if scheme != "https":
            return _HTTP(host, port, timeout=self.connect_timeout)
        if via is None:
            return _HTTPS(host, port, timeout=self.connect_timeout, context=self._context())
        assert isinstance(via, tuple)
        phost, pport, pauth = via
        return _Tunnelled(
            host,
            port,
            (phost, pport, pauth),
            timeout=self.connect_timeout,
            context=self._context(),
        )

    def release(self, c: Conn) -> None:
        """Back to the pool, to be reused (its answer was read to the end)."""
        with self._ready:
            if self._closed or c.conn.sock is None or c not in self._open:
                self._open.discard(c)
                c.conn.close()
            else:
                self._idle.append(c)
            self._ready.notify()

    def discard(self, c: Conn) -> None:
        """Closed, not reused (its answer was not read to the end, or it failed)."""
        with self._ready:
            self._open.discard(c)
            if c in self._idle:
                self._idle.remove(c)
            self._ready.notify()
        c.conn.close()

    def close(self) -> None:
        """Close every connection; a read blocked on one in use ends at once."""
        with self._ready:
            self._closed = True
            live = list(self._open)
            self._open.clear()
            self._idle.clear()
            self._ready.notify_all()
        for c in live:
            c.abort()


class Exchange:
    """One request and its answer, with the body still to read; :meth:`finish` frees the
    connection (back to the pool when the body was read to the end)."""

    def __init__(self, pool: Pool, c: Conn, url: str, resp: http.client.HTTPResponse) -> None:
        self.pool = pool
        self.c: Conn | None = c
        self.url = url
        self.resp = resp
        self.status = resp.status
        headers: dict[str, str] = {}
        for name, value in resp.getheaders():
            key = name.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        self.headers: Mapping[str, str] = headers
        self.done = False

    def pieces(self, size: int = PIECE) -> Iterator[bytes]:
        """The raw body as it arrives, at most *size* bytes a piece; a short body is a fault.

        A piece is one ``recv`` while the body comes slowly.  Once it has come fast for
        :data:`_COALESCE` seconds, a piece gathers what the body's rate so far brings in that
        time: each piece costs its reader a write and two hash updates, and each of those gives
        up the GIL and waits to get it back from the run's other threads (a 33 MiB wheel came
        in ~170 pieces of one ``recv`` on loopback, and took 2.4 times as long beside a
        resolution as alone).  A piece gathers only bytes that arrive before its deadline (it
        never waits in a ``recv`` past it), so a body that slows down, or a server that
        trickles on purpose, keeps progress, stall checks and a kill's loss (a piece not yet
        written) as they were.
        """
        resp = self.resp
        want = 0  # bytes a piece gathers; below _COALESCE_FROM, one recv
        failed: Exception | None = None  # raised once the bytes that came before it are out
        started, total = time.monotonic(), 0
        while not self.done:
            with translated(self.url):
                if failed is not None:
                    raise failed
                data = resp.read1(size)
                if not data:
                    if resp.length:  # http.client says nothing when a length was not met
                        raise http.client.IncompleteRead(b"", resp.length)
                    self.done = True
                    return
                if len(data) < want:
                    data, failed = self._gather(data, want, time.monotonic() + _COALESCE)
            # The body's rate so far, not the last read's: one recv that empties a full
            # socket buffer looks fast on any link, and a throttled link's bursts would make
            # pieces that a kill loses whole.  Nothing gathers before there is a rate to go by.
            total += len(data)
            elapsed = time.monotonic() - started
            want = min(size, int(total / elapsed * _COALESCE)) if elapsed >= _COALESCE else 0
            if want < _COALESCE_FROM:
                want = 0
            yield data

    def _gather(self, first: bytes, want: int, deadline: float) -> tuple[bytes, Exception | None]:
        """*first* and what more arrives before *deadline*, one ``recv`` at a time, up to
        *want* bytes or the end of the body; a failure on the way comes back beside the bytes
        before it, which are written before it is raised (a resume starts after them)."""
        parts, got = [first], len(first)
        sock = self.c.sock if self.c is not None else None  # kept if the answer closes it
        try:
            while got < want and sock is not None:
                if not _has_bytes(sock, deadline - time.monotonic()):
                    break  # nothing more in time: what came goes out now
                more = self.resp.read1(want - got)
                if not more:
                    break  # the end (or a short body: the next read says which)
                parts.append(more)
                got += len(more)
        except Exception as exc:
            return b"".join(parts), exc
        return b"".join(parts), None

    def drain(self, most: int = 1 << 16) -> None:
        """Read a small leftover body (a redirect's) so that the connection can be reused."""
        read = 0
        for piece in self.pieces(most):
            read += len(piece)
            if read > most:
                break

    def finish(self) -> None:
        c, self.c = self.c, None
        if c is None:
            return
        self.resp.close()
        if self.done and not self.resp.will_close:
            self.pool.release(c)
        else:
            self.pool.discard(c)


def _send(pool: Pool, t: _Target, method: str, headers: dict[str, str], timeout: float) -> Exchange:
    key, path, extra = pool.route(t)
    fresh = False
    while True:
        c = pool.acquire(t.url, key, fresh=fresh)
        try:
            conn = c.conn
            if conn.sock is None:  # closed by Pool.close() in another thread
                raise ConnectionFault(t.url, "the client is closed", retryable=False)
            conn.sock.settimeout(timeout)
            try:
                conn.request(method, path, headers={**headers, **extra})
                resp = conn.getresponse()
            except _STALE:
                if not c.reused or fresh:  # a new connection that fails has failed
                    raise
                pool.discard(c)  # the server closed it while idle: once more on a new one
                fresh = True
                continue
            return Exchange(pool, c, t.url, resp)
        except BaseException as exc:
            pool.discard(c)
            with translated(t.url):
                raise exc


def _keeps_authorization(old: _Target, new: _Target) -> bool:
    """Whether a redirect from *old* to *new* keeps the request's credentials: the same
    origin, or the same host moving from plain http to https on the default ports (an
    index that sends its http address to its https one), as httpx and browsers do.

    >>> _keeps_authorization(_target("http://i.invalid/s/"), _target("https://i.invalid/s/"))
    True
    >>> _keeps_authorization(_target("https://i.invalid/"), _target("https://cdn.invalid/"))
    False
    >>> _keeps_authorization(_target("https://i.invalid/"), _target("http://i.invalid/"))
    False
    """
    if (new.scheme, new.host, new.port) == (old.scheme, old.host, old.port):
        return True
    upgrade = (old.scheme, old.port, new.scheme, new.port) == ("http", 80, "https", 443)
    return upgrade and new.host == old.host


def open_exchange(
    pool: Pool, url: str, method: str, headers: dict[str, str], timeout: float
) -> Exchange:
    """Send *method* for *url*, following redirects (at most :data:`MAX_REDIRECTS`, never
    from https to http); the answer's body is the caller's to read and :meth:`finish`."""
    t = _target(url)
    if t.auth and not any(k.lower() == "authorization" for k in headers):
        headers = {**headers, "Authorization": t.auth}
    for _hop in range(MAX_REDIRECTS + 1):
        ex = _send(pool, t, method, headers, timeout)
        location = ex.headers.get("location")
        if ex.status not in REDIRECTS or not location:
            return ex
        try:
            nxt = _target(urljoin(t.url, location))
            if t.scheme == "https" and nxt.scheme == "http":
                raise ConnectionFault(
                    t.url,
                    f"redirected from https to plain http ({nxt.url}); refused",
                    retryable=False,
                )
            ex.drain()
        finally:
            ex.finish()
        if not _keeps_authorization(t, nxt):
            headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
            if nxt.auth:
                headers["Authorization"] = nxt.auth
        t = nxt
    raise ConnectionFault(url, f"more than {MAX_REDIRECTS} redirects", retryable=False)
