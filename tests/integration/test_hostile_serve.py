"""``serve`` keeps serving whatever clients send and whatever the cache holds (issue 11).

Crafted clients on real sockets: a Range of 5000 digits, 530 idle connections from one address
while another address asks for a page, a request line trickled a byte at a time, SIGTERM while
clients hammer it; and a cache holding a wheel whose METADATA inflates to 1 GiB.
"""

from __future__ import annotations

import http.client
import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import wheelcache.serve.server
from tests.integration._serve_wheels import Served, add_wheel, build_demo_cache, serve
from tests.support.hostile import MIB, metadata_bomb, start_wheelcache
from wheelcache.store.cache import Cache

DEMO_WHEEL = "/wheels/torch-2.4.0%2Bcu118-py3-none-any.whl"


@pytest.fixture(scope="module")
def demo_cache(tmp_path_factory: pytest.TempPathFactory) -> Cache:
    root = tmp_path_factory.mktemp("hostile-serve")
    return build_demo_cache(root / "cache", root / "build")


@pytest.fixture
def served(demo_cache: Cache) -> Iterator[Served]:
    with serve(demo_cache) as s:
        yield s


def _get(port: int, path: str, headers: dict[str, str] | None = None, source: str = "127.0.0.1"):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10, source_address=(source, 0))
    try:
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


@pytest.mark.parametrize(
    "value",
    [
        "bytes=" + "9" * 5000 + "-",
        "bytes=0-" + "9" * 5000,
        "bytes=-" + "9" * 5000,
        "bytes=" + "1" * 4301 + "-" + "2" * 4301,
    ],
)
def test_a_huge_range_is_never_a_500(served: Served, value: str) -> None:
    status, _ = _get(served.server.port, DEMO_WHEEL, {"Range": value})
    assert status in (200, 206, 416)
    assert _get(served.server.port, "/simple/")[0] == 200  # and it still serves


def test_one_client_with_530_idle_connections_cannot_starve_another(served: Served) -> None:
    port = served.server.port
    idle = []
    try:
        for _ in range(530):
            sock = socket.socket()
            sock.settimeout(10)
            sock.connect(("127.0.0.1", port))
            idle.append(sock)
        time.sleep(0.5)  # let the server take them all
        started = time.monotonic()
        status, body = _get(port, "/simple/", source="127.0.0.2")
        assert status == 200 and b"torch" in body
        assert time.monotonic() - started < 5
    finally:
        for sock in idle:
            sock.close()


def test_a_request_line_trickled_a_byte_at_a_time_is_cut_off(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(wheelcache.serve.server._Handler, "head_deadline", 1.0)
    with socket.create_connection(("127.0.0.1", served.server.port), timeout=0.3) as sock:
        started = time.monotonic()
        answer = b""
        for byte in b"GET /simple/ HTTP/1.1" * 20:  # never a line end
            try:
                sock.sendall(bytes([byte]))
                answer += sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:  # reset after the 408
                break
            if answer or time.monotonic() - started > 8:
                break
        held = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:100]
    assert held < 3


def _hammer(port: int, stop: threading.Event, errors: list[BaseException], close: bool) -> None:
    """A client asking request after request: on one kept-alive connection, or (*close*) on
    a new connection each time, which keeps the server's accept loop starting threads."""
    headers = {"Connection": "close"} if close else {}
    while not stop.is_set():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            while not stop.is_set():
                for path in ("/simple/", "/simple/torch/", DEMO_WHEEL):
                    conn.request("GET", path, headers=headers)
                    conn.getresponse().read()
                    if close:
                        conn.close()
        except (OSError, http.client.HTTPException):
            time.sleep(0.05)  # the server went away (as it should): try again until told
        except BaseException as exc:  # pragma: no cover - a bug in the test itself
            errors.append(exc)
            return
        finally:
            conn.close()


@pytest.mark.parametrize("attempt", range(10))
def test_sigterm_under_load_always_stops_serve(
    demo_cache: Cache, tmp_path: Path, attempt: int
) -> None:
    proc = start_wheelcache(
        "serve", "--port", "0", "--cache-dir", str(demo_cache.root), cwd=tmp_path
    )
    port = None
    deadline = time.monotonic() + 30
    while port is None and time.monotonic() < deadline:
        m = re.search(r"at http://127\.0\.0\.1:(\d+)/simple/", proc.output()[0])
        port = int(m.group(1)) if m else None
        time.sleep(0.05)
    assert port is not None, proc.output()
    stop, errors = threading.Event(), []
    clients = [
        threading.Thread(target=_hammer, args=(port, stop, errors, n > 1)) for n in range(16)
    ]
    for t in clients:
        t.start()
    try:
        time.sleep(1.0)
        proc.signal()
        run = proc.finish(timeout=15)
    finally:
        stop.set()
        for t in clients:
            t.join(10)
    assert not errors
    assert run.returncode == 0 and run.seconds < 15, run.stderr[-2000:]
    assert run.lines[-1] == "stopped" and "Traceback" not in run.stderr


def test_serve_over_a_cache_holding_a_metadata_bomb_stays_small(tmp_path: Path) -> None:
    cache = Cache(tmp_path / "cache")
    bomb = metadata_bomb(tmp_path / "build")  # 1 MiB on disk, 1 GiB of METADATA
    add_wheel(cache, bomb, "bomb", "1.0")
    proc = start_wheelcache("serve", "--port", "0", "--cache-dir", str(cache.root), cwd=tmp_path)
    port = None
    deadline = time.monotonic() + 60
    while port is None and time.monotonic() < deadline and proc.proc.poll() is None:
        m = re.search(r"at http://127\.0\.0\.1:(\d+)/simple/", proc.output()[0])
        port = int(m.group(1)) if m else None
        time.sleep(0.1)
    try:
        assert port is not None, proc.output()
        status, page = _get(port, "/simple/bomb/")
        assert status == 200 and bomb.name.encode() in page
        status, body = _get(port, f"/wheels/{bomb.name}")
        assert status == 200 and body == bomb.read_bytes()
        assert _get(port, f"/wheels/{bomb.name}.metadata")[0] == 404  # not published
    finally:
        proc.signal()
        run = proc.finish(timeout=30)
    assert run.peak_mib < 150, f"peak RSS {run.peak_mib:.0f} MiB"
    assert "METADATA" in run.stderr and "more than" in run.stderr  # said once, as a warning
    assert "Traceback" not in run.stderr
    assert bomb.stat().st_size < 2 * MIB
