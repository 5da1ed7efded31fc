"""The standard-library transport under Http (issue 14): keep-alive, compression, redirects,
the connection bound and close(), against real servers on 127.0.0.1."""

from __future__ import annotations

import gzip
import socket
import threading
import time
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.support.hostile import RawRequest, RawServer, self_signed, send_forever, send_head
from wheelcache.errors import (
    ConnectionFault,
    DownloadError,
    IndexUnreachableError,
    ResponseTooLargeError,
)
from wheelcache.net.client import Http, HttpSettings
from wheelcache.net.http11 import _bypassed, environment_proxies

MIB = 1 << 20


def _answer(body: bytes, **headers: str) -> Callable[[RawRequest, socket.socket], None]:
    def route(_req: RawRequest, conn: socket.socket) -> None:
        send_head(conn, "200 OK", {"Content-Length": str(len(body)), **headers})
        conn.sendall(body)

    return route


class _KeepAlive:
    """Answers every request of a connection with *answer(path)* (raw bytes, or parts sent
    a tenth of a second apart), keeping the connection open, as a keep-alive server does.

    With *once*, each connection is closed right after its first answer (whatever that
    answer said), as by a server whose idle timeout has passed by the next request.
    """

    def __init__(
        self, answer: Callable[[bytes], bytes | list[bytes]], *, once: bool = False
    ) -> None:
        self.answer = answer
        self.once = once
        self.connections = 0
        self.closed = threading.Event()  # a connection was closed after its answer
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        self.connections += 1
        buf = b""
        with conn:
            while True:
                while b"\r\n\r\n" not in buf:
                    try:
                        data = conn.recv(65536)
                    except OSError:
                        return
                    if not data:
                        return
                    buf += data
                head, buf = buf.split(b"\r\n\r\n", 1)
                answer = self.answer(head.split(b" ")[1])
                try:
                    for i, part in enumerate([answer] if isinstance(answer, bytes) else answer):
                        time.sleep(0.1 if i else 0)
                        conn.sendall(part)
                except OSError:
                    return
                if self.once:
                    conn.close()
                    self.closed.set()
                    return

    def close(self) -> None:
        self.sock.close()


def _ok(body: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


def test_a_reused_connection_the_server_closed_is_retried_on_a_new_one() -> None:
    """No retry of ours (``retries=0``) and no warning: the pool asks again, once."""
    server = _KeepAlive(lambda _path: _ok(b"ok"), once=True)
    http = Http(HttpSettings(retries=0))
    try:
        assert http.get(server.url + "/page").content == b"ok"
        assert server.closed.wait(5)
        time.sleep(0.1)  # the FIN has arrived: the pooled connection is stale
        assert http.get(server.url + "/page").content == b"ok"
        assert server.connections == 2
    finally:
        http.close()
        server.close()


@pytest.mark.parametrize(
    ("coding", "packed"),
    [
        ("gzip", gzip.compress(b"<html>page</html>" * 1000)),
        ("deflate", zlib.compress(b"<html>page</html>" * 1000)),
        ("deflate", zlib.compress(b"<html>page</html>" * 1000)[2:-4]),  # raw, as some send
    ],
)
def test_a_compressed_page_is_inflated(coding: str, packed: bytes) -> None:
    with RawServer() as server:
        server.routes["/p"] = _answer(packed, **{"Content-Encoding": coding})
        http = Http()
        try:
            r = http.get(server.url + "/p")
        finally:
            http.close()
    assert r.content == b"<html>page</html>" * 1000
    assert server.requests[0].headers["accept-encoding"] == "gzip, deflate"


def test_a_gzip_bomb_is_refused_by_the_page_limit_without_inflating_it() -> None:
    """256 MiB of zeros in 256 KiB of gzip against a 1 MiB limit: a few MiB of memory at
    most (inflating it whole first would take all 256)."""
    bomb = gzip.compress(bytes(256 * MIB), compresslevel=9)
    with RawServer() as server:
        server.routes["/bomb"] = _answer(bomb, **{"Content-Encoding": "gzip"})
        http = Http(HttpSettings(retries=0))
        tracemalloc.start()
        try:
            with pytest.raises(ResponseTooLargeError):
                http.get(server.url + "/bomb", limit=MIB)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
            http.close()
    assert peak < 16 * MIB, f"{peak >> 20} MiB"


def test_endless_empty_deflate_blocks_are_refused_by_the_page_limit() -> None:
    """Compressed bytes that inflate to nothing still count: the read stops at the limit."""

    def endless(_req: RawRequest, conn: socket.socket) -> None:
        send_head(conn, "200 OK", {"Content-Encoding": "gzip", "Transfer-Encoding": "chunked"})
        header = gzip.compress(b"")[:10]
        conn.sendall(f"{len(header):x}\r\n".encode() + header + b"\r\n")
        send_forever(conn, b"\x00\x00\x00\xff\xff" * 13107, chunked=True)

    with RawServer() as server:
        server.routes["/p"] = endless
        http = Http(HttpSettings(retries=0))
        started = time.monotonic()
        try:
            with pytest.raises(ResponseTooLargeError):
                http.get(server.url + "/p", limit=MIB)
        finally:
            http.close()
    assert time.monotonic() - started < 10


def test_an_unknown_content_encoding_is_refused_in_one_line() -> None:
    with RawServer() as server:
        server.routes["/p"] = _answer(b"\x00\x01garbage", **{"Content-Encoding": "br"})
        http = Http()
        try:
            with pytest.raises(DownloadError) as err:
                http.get(server.url + "/p")
        finally:
            http.close()
    assert "\n" not in str(err.value)
    assert "Content-Encoding 'br', which wheelcache cannot read" in str(err.value)


def test_twenty_redirects_are_followed_and_the_twenty_first_refused() -> None:
    with RawServer() as server:
        for i in range(21):
            server.routes[f"/r/{i}"] = lambda _r, c, i=i: send_head(  # type: ignore[misc]
                c, "302 Found", {"Location": f"/r/{i + 1}", "Content-Length": "0"}
            )
        server.routes["/r/21"] = _answer(b"end")
        http = Http()
        try:
            r = http.get(server.url + "/r/1")
            assert (r.content, r.url) == (b"end", server.url + "/r/21")
            with pytest.raises(IndexUnreachableError, match="more than 20 redirects"):
                http.get(server.url + "/r/0")
        finally:
            http.close()
    assert server.count("/r/0") == 1  # not retried: it will not get better
    assert server.count("/r/21") == 1


@pytest.mark.parametrize(
    ("url", "why"),
    [("http://[::1/x", "malformed URL"), ("ftp://host/x", "unsupported URL scheme 'ftp'")],
)
def test_a_bad_url_is_refused_in_one_line_without_retries(url: str, why: str) -> None:
    http = Http(HttpSettings(backoff=60))  # a retry would wait a minute
    try:
        with pytest.raises(IndexUnreachableError, match=why):
            http.get(url)
    finally:
        http.close()


class _Slow(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    open_now = 0
    peak = 0
    lock = threading.Lock()

    def setup(self) -> None:
        super().setup()
        with self.lock:
            type(self).open_now += 1
            type(self).peak = max(type(self).peak, type(self).open_now)

    def finish(self) -> None:
        super().finish()
        with self.lock:
            type(self).open_now -= 1

    def do_GET(self) -> None:
        time.sleep(0.03)
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@pytest.fixture
def slow_server() -> Iterator[str]:
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Slow)
    srv.daemon_threads = True
    _Slow.open_now = _Slow.peak = 0
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/x"
    srv.shutdown()
    srv.server_close()


def test_no_more_connections_than_the_bound(slow_server: str) -> None:
    http = Http(HttpSettings(max_connections=2))
    results: list[bytes] = []

    def work() -> None:
        for _ in range(4):
            results.append(http.get(slow_server).content)

    threads = [threading.Thread(target=work) for _ in range(6)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    finally:
        http.close()
    assert results == [b"ok"] * 24
    assert _Slow.peak == 2  # reached, never passed


def test_close_ends_a_read_blocked_in_another_thread() -> None:
    """Ctrl-C closes the client: a download stalled mid-body must not wait out its timeout."""

    def stall(_req: RawRequest, conn: socket.socket) -> None:
        send_head(conn, "200 OK", {"Content-Length": str(MIB)})
        conn.sendall(b"x" * 1000)
        time.sleep(20)

    with RawServer() as server:
        server.routes["/stall"] = stall
        http = Http()
        caught: list[BaseException] = []

        def read() -> None:
            try:
                with http.stream(server.url + "/stall", {}, read_timeout=30) as s:
                    for _ in s.chunks:
                        pass
            except ConnectionFault as exc:
                caught.append(exc)

        reader = threading.Thread(target=read)
        reader.start()
        time.sleep(0.5)
        started = time.monotonic()
        http.close()
        reader.join(10)
        assert not reader.is_alive() and time.monotonic() - started < 5
    assert len(caught) == 1


def test_a_fast_body_comes_in_few_pieces_and_whole() -> None:
    """Each piece costs a download a write and two hash updates, each a wait for the GIL in a
    busy run: a body that comes fast is read in pieces of many ``recv`` (issue 14).  Sent in
    256 blocks about 2 ms apart, it came in about one piece a block before."""
    block = bytes(range(256)) * 128  # 32 KiB
    blocks = 256

    def paced(_req: RawRequest, conn: socket.socket) -> None:
        send_head(conn, "200 OK", {"Content-Length": str(len(block) * blocks)})
        start = time.monotonic()
        for i in range(blocks):  # on a schedule: a late block does not slow the rest
            conn.sendall(block)
            time.sleep(max(0.0, start + (i + 1) * 0.002 - time.monotonic()))

    with RawServer() as server:
        server.routes["/paced"] = paced
        http = Http()
        try:
            with http.stream(server.url + "/paced", {}) as s:
                pieces = list(s.chunks)
        finally:
            http.close()
    assert b"".join(pieces) == block * blocks
    assert len(pieces) < blocks // 4


def test_a_body_that_slows_to_a_trickle_still_comes_piece_by_piece() -> None:
    """A fast start makes pieces gather, but only bytes that arrive before a piece's deadline:
    drops that trickle in after it come out one by one as they arrive (progress and the stall
    check go on), not held for the next drop, nor in one piece when the trickle ends."""
    fast, drops = 2 * MIB, 10
    trickle_began: list[float] = []

    def fast_then_trickle(_req: RawRequest, conn: socket.socket) -> None:
        send_head(conn, "200 OK", {"Content-Length": str(fast + 10 * drops)})
        conn.sendall(b"x" * fast)
        trickle_began.append(time.monotonic())
        for _ in range(drops):
            time.sleep(0.1)
            conn.sendall(b"y" * 10)

    with RawServer() as server:
        server.routes["/trickle"] = fast_then_trickle
        http = Http()
        arrived: list[tuple[float, bytes]] = []
        try:
            with http.stream(server.url + "/trickle", {}) as s:
                arrived += [(time.monotonic(), piece) for piece in s.chunks]
        finally:
            http.close()
    assert b"".join(p for _, p in arrived) == b"x" * fast + b"y" * 10 * drops
    early = [p for t, p in arrived if b"y" in p and t < trickle_began[0] + 0.7]
    assert early, "the trickled bytes were held back until the trickle ended"
    # One piece a drop (two drops meet in one piece only if the reader stalls 0.1 s).
    assert len([p for _, p in arrived if b"y" in p]) >= drops - 2


@pytest.mark.parametrize(
    ("host", "no_proxy", "bypassed"),
    [
        ("pkgs.example.org", "example.org", True),
        ("example.org", ".example.org", True),
        ("badexample.org", "example.org", False),
        ("10.0.0.1", "localhost, 10.0.0.1", True),
        ("mirror.lan", "*", True),
        ("mirror.lan", "mirror.lan:8080", False),
        ("mirror.lan", "", False),
    ],
)
def test_no_proxy(host: str, no_proxy: str, bypassed: bool) -> None:
    assert _bypassed(host, 80, no_proxy) is bypassed


def test_proxy_variables_lower_case_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://upper:1")
    monkeypatch.setenv("https_proxy", "http://lower:2")
    monkeypatch.setenv("ALL_PROXY", "http://all:3")
    monkeypatch.setenv("NO_PROXY", "lan")
    assert environment_proxies() == {
        "https": "http://lower:2",
        "all": "http://all:3",
        "no": "lan",
    }


def test_an_empty_lower_case_proxy_variable_turns_the_upper_case_one_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """As urllib (pip) reads them: ``https_proxy=`` for one command, whatever HTTPS_PROXY says."""
    monkeypatch.setenv("HTTPS_PROXY", "http://upper:1")
    monkeypatch.setenv("https_proxy", "")
    monkeypatch.setenv("HTTP_PROXY", "http://kept:2")
    assert environment_proxies() == {"http": "http://kept:2"}


class _Tunnel(BaseHTTPRequestHandler):
    """A CONNECT proxy: bytes relayed both ways, untouched (TLS runs end to end)."""

    seen: list[str] = []

    def do_CONNECT(self) -> None:
        type(self).seen.append(self.path)
        host, port = self.path.rsplit(":", 1)
        upstream = socket.create_connection((host, int(port)), timeout=10)
        self.send_response(200, "Connection established")
        self.end_headers()
        self.wfile.flush()

        def pump(src: socket.socket, dst: socket.socket) -> None:
            try:
                while data := src.recv(65536):
                    dst.sendall(data)
            except OSError:
                pass
            finally:
                dst.close()

        threading.Thread(target=pump, args=(upstream, self.connection), daemon=True).start()
        pump(self.connection, upstream)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@pytest.mark.parametrize("no_proxy", ["", "127.0.0.1"])
def test_https_goes_through_a_connect_tunnel_unless_no_proxy_says_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_proxy: str
) -> None:
    cert, tls = self_signed(tmp_path)
    proxy = ThreadingHTTPServer(("127.0.0.1", 0), _Tunnel)
    proxy.daemon_threads = True
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    _Tunnel.seen = []
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    monkeypatch.setenv("https_proxy", f"http://127.0.0.1:{proxy.server_address[1]}")
    monkeypatch.setenv("NO_PROXY", no_proxy)
    try:
        with RawServer(tls) as server:
            server.routes["/p"] = _answer(b"secret")
            http = Http()
            try:
                assert http.get(server.url + "/p").content == b"secret"
            finally:
                http.close()
    finally:
        proxy.shutdown()
        proxy.server_close()
    assert _Tunnel.seen == ([] if no_proxy else [server.url.removeprefix("https://")])


def test_informational_answers_are_skipped_and_never_taken_for_the_answer() -> None:
    """``103 Early Hints`` before each answer: every page is its own (http.client of Python
    3.11 took the 103 for the answer and left the 200 for the next request on the
    connection, which then got the page of another URL)."""
    early = b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"
    server = _KeepAlive(lambda path: early + early + _ok(b"page for " + path))
    http = Http(HttpSettings(retries=0))
    try:
        for path in ("/a", "/b", "/c"):
            r = http.get(server.url + path)
            assert (r.status, r.content) == (200, b"page for " + path.encode())
    finally:
        http.close()
        server.close()


@pytest.mark.parametrize(
    ("answer", "why"),
    [
        (b"HTTP/1.1 100 Continue\r\n\r\n" * 100_000, "more than 16 informational answers"),
        (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n", "switched protocols"),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n"
            + b"X-Trailer: 1\r\n" * 100_000,
            "more than 100 trailer lines",
        ),
    ],
    ids=["endless-100-continue", "101", "endless-trailers"],
)
def test_what_http_client_leaves_unbounded_is_refused_in_one_line(answer: bytes, why: str) -> None:
    """Each answer kept http.client reading (its per-read timeout never fired: bytes kept
    coming) or poisoned the connection; now each is one error naming the URL."""
    server = _KeepAlive(lambda _path: answer)
    http = Http(HttpSettings(retries=0, read_timeout=5))
    started = time.monotonic()
    try:
        with pytest.raises(IndexUnreachableError, match=why) as caught:
            http.get(server.url + "/page")
    finally:
        http.close()
        server.close()
    assert server.url in str(caught.value)
    assert time.monotonic() - started < 5


def test_bytes_no_answer_framed_do_not_become_the_next_answer() -> None:
    """A 204 followed by more bytes: they sit on the connection; the next request must not
    read them as its answer (the connection is not reused)."""
    smuggled = b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nsmuggled"

    def answer(path: bytes) -> bytes | list[bytes]:
        if path == b"/empty":
            return [b"HTTP/1.1 204 No Content\r\n\r\n", smuggled]
        return _ok(b"page for " + path)

    server = _KeepAlive(answer)
    http = Http(HttpSettings(retries=0))
    try:
        assert http.get(server.url + "/empty").status == 204
        time.sleep(0.2)  # the smuggled bytes have arrived
        assert http.get(server.url + "/next").content == b"page for /next"
    finally:
        http.close()
        server.close()


def test_a_proxy_that_answers_connect_with_endless_headers_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def endless(conn: socket.socket) -> None:
        with conn:
            conn.recv(65536)
            try:
                conn.sendall(b"HTTP/1.1 200 Connection established\r\n")
                send_forever(conn, b"X-Pad: " + b"a" * 100 + b"\r\n")
            except OSError:
                pass

    proxy = socket.create_server(("127.0.0.1", 0))
    threading.Thread(target=lambda: endless(proxy.accept()[0]), daemon=True).start()
    monkeypatch.setenv("https_proxy", f"http://127.0.0.1:{proxy.getsockname()[1]}")
    http = Http(HttpSettings(retries=0, read_timeout=5, connect_timeout=5))
    started = time.monotonic()
    try:
        with pytest.raises(IndexUnreachableError, match="more than 100 header lines"):
            http.get("https://index.invalid/simple/x/")
    finally:
        http.close()
        proxy.close()
    assert time.monotonic() - started < 10


@pytest.mark.parametrize(
    "proxy",
    ["https://me:s3cret@proxy.invalid:3128", "socks5://me:s3cret@proxy.invalid:1080"],
)
def test_a_proxy_that_cannot_be_used_is_named_without_its_password(
    monkeypatch: pytest.MonkeyPatch, proxy: str
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", proxy)
    http = Http(HttpSettings(retries=0))
    try:
        with pytest.raises(IndexUnreachableError) as caught:
            http.get("https://index.invalid/simple/x/")
    finally:
        http.close()
    said = str(caught.value)
    assert "HTTPS_PROXY" in said and "proxy.invalid" in said
    assert "s3cret" not in said and "me:" not in said
