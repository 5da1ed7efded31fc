"""``wheelcache serve`` on 127.0.0.1: pip, uv, raw HTTP, traversal attempts, live updates."""

from __future__ import annotations

import doctest
import hashlib
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

import wheelcache.cli.serve
import wheelcache.serve.publish
import wheelcache.serve.request
import wheelcache.serve.server
from tests.integration._serve_wheels import (
    DEMO,
    Served,
    add_wheel,
    build_demo_cache,
    pip_install,
    serve,
    uv_install,
)
from tests.support.torchindex import TorchIndex
from tests.support.wheels import build_wheel, read_wheel_metadata
from wheelcache.cli.main import main
from wheelcache.core.simple import JSON_CONTENT_TYPE, parse_project_page
from wheelcache.serve.publish import Selection, read_selection_file
from wheelcache.store.cache import Cache

PEP691_ACCEPT = "application/vnd.pypi.simple.v1+json"
TORCH = "torch-2.4.0+cu118-py3-none-any.whl"
TORCH_URL = "/wheels/torch-2.4.0%2Bcu118-py3-none-any.whl"


@pytest.fixture(scope="module")
def demo_cache(tmp_path_factory: pytest.TempPathFactory) -> Cache:
    root = tmp_path_factory.mktemp("serve")
    return build_demo_cache(root / "cache", root / "build")


@pytest.fixture(scope="module")
def served(demo_cache: Cache) -> Iterator[Served]:
    with serve(demo_cache) as s:
        yield s


def get(
    s: Served, path: str, headers: dict[str, str] | None = None, method: str = "GET"
) -> tuple[int, http.client.HTTPMessage, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", s.server.port, timeout=10)
    try:
        conn.request(method, path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.msg, resp.read()
    finally:
        conn.close()


def raw(port: int, data: bytes) -> bytes:
    """Send bytes as they are (no client-side normalization) and read until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


def status_of(response: bytes) -> int:
    m = re.match(rb"HTTP/1\.[01] (\d{3}) ", response)
    assert m, response[:200]
    return int(m.group(1))


def wheel_bytes(cache: Cache, filename: str) -> bytes:
    found = cache.find(filename)
    assert found is not None
    return found.path.read_bytes()


# -- pages ---------------------------------------------------------------------------------
def test_pages_in_both_formats_match_the_cache(served: Served, demo_cache: Cache) -> None:
    status, headers, body = get(served, "/simple/torch/")
    assert status == 200
    assert headers["Content-Type"] == "text/html; charset=utf-8"
    assert headers["Vary"] == "Accept"
    html_page = parse_project_page(
        body,
        content_type=headers["Content-Type"],
        base_url=f"{served.url}/simple/torch/",
        project="torch",
    )
    status, headers, body = get(served, "/simple/torch/", {"Accept": PEP691_ACCEPT})
    assert status == 200 and headers["Content-Type"] == JSON_CONTENT_TYPE
    assert headers["Vary"] == "Accept"
    json_page = parse_project_page(
        body,
        content_type=JSON_CONTENT_TYPE,
        base_url=f"{served.url}/simple/torch/",
        project="torch",
    )
    rows = {r.filename: r for r in demo_cache.catalog.all() if r.project == "torch"}
    for page in (html_page, json_page):
        assert [f.filename for f in page.files] == sorted(rows)
        for f in page.files:
            assert f.sha256 == rows[f.filename].sha256
            assert f.requires_python == ">=3.8.0"
            assert f.core_metadata and f.core_metadata_sha256
            assert f.url.startswith(f"{served.url}/wheels/")
    assert {f.size for f in json_page.files} == {r.size for r in rows.values()}


def test_json_only_client_gets_valid_pep691(served: Served) -> None:
    status, headers, body = get(served, "/simple/", {"Accept": PEP691_ACCEPT})
    assert status == 200 and headers["Content-Type"] == JSON_CONTENT_TYPE
    root = json.loads(body)
    assert root["meta"] == {"api-version": "1.1"}
    names = [p["name"] for p in root["projects"]]
    assert names == sorted({re.sub(r"[-_.]+", "-", n).lower() for n, *_ in DEMO})
    for name in names:
        status, headers, body = get(served, f"/simple/{name}/", {"Accept": PEP691_ACCEPT})
        assert status == 200 and headers["Content-Type"] == JSON_CONTENT_TYPE
        page = json.loads(body)
        assert page["meta"]["api-version"] == "1.1" and page["name"] == name
        assert page["versions"] and isinstance(page["versions"], list)
        for f in page["files"]:
            assert set(f) >= {"filename", "url", "hashes", "size", "core-metadata"}
            status, _, wheel = get(served, f["url"])
            assert status == 200 and hashlib.sha256(wheel).hexdigest() == f["hashes"]["sha256"]
            assert len(wheel) == f["size"]
            status, _, md = get(served, f["url"] + ".metadata")
            assert status == 200
            assert hashlib.sha256(md).hexdigest() == f["core-metadata"]["sha256"]


def test_metadata_file_is_the_wheels_own_and_kept_in_the_cache(
    served: Served, demo_cache: Cache
) -> None:
    status, _, md = get(served, TORCH_URL + ".metadata")
    assert status == 200
    cached = demo_cache.find(TORCH)
    assert cached is not None
    assert md == read_wheel_metadata(cached.path)
    assert (demo_cache.root / "metadata-v1" / f"{cached.sha256}.metadata").read_bytes() == md


@pytest.mark.parametrize(
    ("accept", "content_type"),
    [
        (None, "text/html; charset=utf-8"),
        ("*/*", "text/html; charset=utf-8"),
        ("text/html", "text/html; charset=utf-8"),
        ("application/vnd.pypi.simple.v1+html", "application/vnd.pypi.simple.v1+html"),
        ("application/vnd.pypi.simple.latest+json", JSON_CONTENT_TYPE),
        # what pip and uv send
        (
            f"{PEP691_ACCEPT}, application/vnd.pypi.simple.v1+html; q=0.1, text/html; q=0.01",
            JSON_CONTENT_TYPE,
        ),
        (f"{PEP691_ACCEPT};q=0, text/html", "text/html; charset=utf-8"),
        ("text/html;q=0.5, application/*;q=0.9", JSON_CONTENT_TYPE),
        ("application/json", None),
    ],
)
def test_accept_negotiation(served: Served, accept: str | None, content_type: str | None) -> None:
    status, headers, _ = get(served, "/simple/filelock/", {"Accept": accept} if accept else {})
    if content_type is None:
        assert status == 406
    else:
        assert (status, headers["Content-Type"]) == (200, content_type)


def test_any_spelling_of_a_project_name_is_served_without_redirect(served: Served) -> None:
    canonical = get(served, "/simple/typing-extensions/")[2]
    for path in (
        "/simple/Typing_Extensions/",
        "/simple/typing.extensions",
        "/simple/TYPING-extensions/",
    ):
        status, headers, body = get(served, path)
        assert (status, body) == (200, canonical) and "Location" not in headers
    assert get(served, "/simple/nope/")[0] == 404


def test_head_matches_get_without_a_body(served: Served) -> None:
    for path in ("/simple/", "/simple/torch/", TORCH_URL, TORCH_URL + ".metadata"):
        g_status, g_headers, g_body = get(served, path)
        h_status, h_headers, h_body = get(served, path, method="HEAD")
        assert (h_status, h_body) == (g_status, b"")
        assert h_headers["Content-Length"] == g_headers["Content-Length"] == str(len(g_body))
        assert h_headers["ETag"] == g_headers["ETag"]


# -- files: range and conditional requests --------------------------------------------------
def test_range_requests(served: Served, demo_cache: Cache) -> None:
    data = wheel_bytes(demo_cache, TORCH)
    size = len(data)
    cases = [
        ("bytes=0-99", 206, 0, 99),
        ("bytes=100-", 206, 100, size - 1),
        ("bytes=-50", 206, size - 50, size - 1),
        (f"bytes={size - 10}-{size + 1000}", 206, size - 10, size - 1),
        ("bytes=5-5", 206, 5, 5),
    ]
    for header, want, start, end in cases:
        status, headers, body = get(served, TORCH_URL, {"Range": header})
        assert status == want, header
        assert body == data[start : end + 1]
        assert headers["Content-Range"] == f"bytes {start}-{end}/{size}"
        assert headers["Content-Length"] == str(end - start + 1)
    for header in (f"bytes={size}-", f"bytes={size + 5}-{size + 9}", "bytes=-0"):
        status, headers, body = get(served, TORCH_URL, {"Range": header})
        assert status == 416, header
        assert headers["Content-Range"] == f"bytes */{size}"
    # several ranges or nonsense: the whole file (RFC 9110 lets a server ignore Range)
    for header in ("bytes=0-1,5-6", "bytes=9-3", "items=0-5", "bytes=abc"):
        status, headers, body = get(served, TORCH_URL, {"Range": header})
        assert (status, body) == (200, data), header
    assert get(served, TORCH_URL)[1]["Accept-Ranges"] == "bytes"


def test_if_range(served: Served, demo_cache: Cache) -> None:
    data = wheel_bytes(demo_cache, TORCH)
    _, headers, _ = get(served, TORCH_URL)
    etag, last_modified = headers["ETag"], headers["Last-Modified"]
    assert get(served, TORCH_URL, {"Range": "bytes=10-19", "If-Range": etag})[0] == 206
    assert get(served, TORCH_URL, {"Range": "bytes=10-19", "If-Range": last_modified})[0] == 206
    status, _, body = get(served, TORCH_URL, {"Range": "bytes=10-19", "If-Range": '"other"'})
    assert (status, body) == (200, data)
    old = "Mon, 01 Jan 2001 00:00:00 GMT"
    assert get(served, TORCH_URL, {"Range": "bytes=10-19", "If-Range": old})[0] == 200


def test_conditional_requests(served: Served) -> None:
    for path in (TORCH_URL, TORCH_URL + ".metadata"):
        status, headers, _ = get(served, path)
        etag, last_modified = headers["ETag"], headers["Last-Modified"]
        status, headers304, body = get(served, path, {"If-None-Match": etag})
        assert (status, body) == (304, b"")
        assert headers304["ETag"] == etag
        assert get(served, path, {"If-None-Match": f'"x", W/{etag}'})[0] == 304
        assert get(served, path, {"If-None-Match": '"other"'})[0] == 200
        assert get(served, path, {"If-Modified-Since": last_modified})[0] == 304
        assert get(served, path, {"If-Modified-Since": "Mon, 01 Jan 2001 00:00:00 GMT"})[0] == 200
        # If-None-Match wins over If-Modified-Since (RFC 9110 13.2.2)
        assert (
            get(served, path, {"If-None-Match": '"x"', "If-Modified-Since": last_modified})[0]
            == 200
        )
    for accept in ("text/html", PEP691_ACCEPT):
        _, headers, _ = get(served, "/simple/torch/", {"Accept": accept})
        status, h304, body = get(
            served, "/simple/torch/", {"Accept": accept, "If-None-Match": headers["ETag"]}
        )
        assert (status, body, h304["Vary"]) == (304, b"", "Accept")
    html_etag = get(served, "/simple/torch/")[1]["ETag"]
    json_etag = get(served, "/simple/torch/", {"Accept": PEP691_ACCEPT})[1]["ETag"]
    assert html_etag != json_etag
    assert (
        get(served, "/simple/torch/", {"Accept": PEP691_ACCEPT, "If-None-Match": html_etag})[0]
        == 200
    )


# -- security ------------------------------------------------------------------------------
TRAVERSALS = [
    "/wheels/../catalog-v1.sqlite",
    "/wheels/%2e%2e/catalog-v1.sqlite",
    "/wheels/%2E%2E/%2E%2E/etc/passwd",
    "/wheels/..%2fcatalog-v1.sqlite",
    "/wheels/..%2Fcatalog-v1.sqlite",
    "/wheels/%2fetc%2fpasswd",
    "/wheels/..%5ccatalog-v1.sqlite",
    "/wheels/..\\catalog-v1.sqlite",
    "/wheels/%252e%252e/catalog-v1.sqlite",
    "/wheels//etc/passwd",
    "//etc/passwd",
    "/../../../../etc/passwd",
    "/simple/../../../../etc/passwd",
    "/simple/%2e%2e/%2e%2e/etc/passwd",
    "/etc/passwd",
    "/catalog-v1.sqlite",
    "/wheels-v1/" + TORCH,
    "/blobs-v1/",
    "/metadata-v1/",
    "/wheels/",
    "/wheels",
    "/wheels/.",
    "/wheels/%00" + TORCH,
    "/wheels/" + TORCH + "%00",
    "/wheels/%ff%fe",
    "/wheels/%zz",
    "http://127.0.0.1/etc/passwd",
    "/wheels/requirements.txt",
]


@pytest.mark.parametrize("target", TRAVERSALS)
def test_traversal_and_listing_attempts_get_4xx(
    served: Served, demo_cache: Cache, target: str
) -> None:
    (demo_cache.root / "wheels-v1" / "requirements.txt").write_text("torch==2.4.0\n")
    response = raw(
        served.server.port,
        f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode("latin-1"),
    )
    assert 400 <= status_of(response) < 500, response[:300]
    assert b"root:" not in response and b"SQLite format" not in response
    assert b"Traceback" not in response and b"torch==2.4.0" not in response


def test_symlinks_in_the_cache_are_never_followed_out_of_it(tmp_path: Path) -> None:
    cache = Cache(tmp_path / "cache")
    wheel = build_wheel(tmp_path / "build", "evil", "1.0")
    cached = add_wheel(cache, wheel, "evil", "1.0")
    outside = tmp_path / "secret.bin"
    outside.write_bytes(b"S" * cached.size)  # same size, so only the location check can refuse
    cached.blob.unlink()
    cached.blob.symlink_to(outside)
    # A look-alike symlink in wheels-v1 that is not in the catalog at all.
    (cache.root / "wheels-v1" / "stray-1.0-py3-none-any.whl").symlink_to("/etc/passwd")
    with serve(cache) as s:
        for path in (
            f"/wheels/{wheel.name}",
            "/wheels/stray-1.0-py3-none-any.whl",
            "/simple/evil/",
            "/simple/stray/",
        ):
            status, _, body = get(s, path)
            assert status == 404, path
            assert b"SSSS" not in body and b"root:" not in body


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "FOO"])
def test_other_methods_are_405(served: Served, method: str) -> None:
    response = raw(
        served.server.port,
        f"{method} /simple/ HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello".encode(),
    )
    assert status_of(response) == 405
    assert b"\r\nAllow: GET, HEAD\r\n" in response
    assert b"Traceback" not in response


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GARBAGE\r\n\r\n", 400),
        (b"GET\r\n\r\n", 400),
        (b"GET / HTTP/1.1 extra\r\n\r\n", 400),
        (b"GET /simple/ HTTP/9.9\r\n\r\n", 505),
        (b"GET /simple/\r\n\r\n", 400),  # HTTP/0.9
        (b"GET /simple/" + b"a" * 9000 + b" HTTP/1.1\r\n\r\n", 414),
        (b"GET /simple/" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n", 414),
        (
            b"GET /simple/ HTTP/1.1\r\n"
            + b"".join(b"X-%d: y\r\n" % i for i in range(150))
            + b"\r\n",
            431,
        ),
        (b"GET /simple/ HTTP/1.1\r\nX-Big: " + b"y" * 70000 + b"\r\n\r\n", 431),
        (
            b"GET /simple/ HTTP/1.1\r\n"
            + b"X-Long: "
            + b"y" * 30000
            + b"\r\nX-Longer: "
            + b"y" * 40000
            + b"\r\n\r\n",
            431,
        ),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40 + b"\r\n\r\n", 400),
    ],
)
def test_malformed_and_oversized_requests_get_4xx_never_a_traceback(
    served: Served, request_bytes: bytes, status: int
) -> None:
    response = raw(served.server.port, request_bytes)
    assert b"Traceback" not in response
    assert status_of(response) == status
    # and the server still answers the next client
    assert get(served, "/simple/")[0] == 200


def test_no_redirects_and_nothing_but_the_index(served: Served) -> None:
    status, headers, body = get(served, "/")
    assert status == 200 and b"/simple/" in body and "Location" not in headers
    for path in ("/simple", "/simple/torch"):
        status, headers, _ = get(served, path)
        assert status == 200 and "Location" not in headers


# -- concurrency, stalls, live updates -----------------------------------------------------
def test_many_clients_at_once(served: Served) -> None:
    errors: list[str] = []
    paths = ["/simple/", "/simple/torch/", TORCH_URL + ".metadata", "/simple/jinja2/"]

    def client(n: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", served.server.port, timeout=30)
        try:
            for i in range(15):  # keep-alive: one connection, many requests
                conn.request(
                    "GET",
                    paths[(n + i) % len(paths)],
                    headers={"Accept": PEP691_ACCEPT} if i % 2 else {},
                )
                resp = conn.getresponse()
                resp.read()
                if resp.status != 200:
                    errors.append(f"{resp.status}")
        except OSError as exc:
            errors.append(repr(exc))
        finally:
            conn.close()

    threads = [threading.Thread(target=client, args=(n,)) for n in range(48)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors


def test_a_stalled_client_does_not_block_others(tmp_path: Path) -> None:
    cache = Cache(tmp_path / "cache")
    big = build_wheel(tmp_path / "build", "bigpkg", "1.0", payload_size=48 * 1024 * 1024)
    add_wheel(cache, big, "bigpkg", "1.0")
    url = f"/wheels/{big.name}"
    with serve(cache) as s:
        stalled = []
        for request in (f"GET {url} HTTP/1.1\r\nHost: x\r\n\r\n", "GET /simp"):
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect(("127.0.0.1", s.server.port))
            sock.sendall(request.encode())  # and then never read, never finish
            stalled.append(sock)
        try:
            time.sleep(0.3)
            started = time.monotonic()
            status, _, body = get(s, url)
            assert status == 200 and len(body) == big.stat().st_size
            assert get(s, "/simple/bigpkg/")[0] == 200
            assert time.monotonic() - started < 10
        finally:
            for sock in stalled:
                sock.close()


def test_a_trickling_request_head_is_cut_off(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(wheelcache.serve.server._Handler, "head_deadline", 0.3)
    with socket.create_connection(("127.0.0.1", served.server.port), timeout=10) as sock:
        sock.sendall(b"GET /simple/ HTTP/1.1\r\nX-1: a\r\n")
        time.sleep(0.5)
        sock.sendall(b"X-2: b\r\n")
        response = sock.recv(65536)
        assert status_of(response) == 408 and b"Connection: close" in response
        assert sock.recv(65536) == b""  # and the connection is closed


def test_wheels_added_by_a_running_fetch_appear_without_restart(tmp_path: Path) -> None:
    cache = Cache(tmp_path / "cache")
    add_wheel(cache, build_wheel(tmp_path / "b", "first", "1.0"), "first", "1.0")
    with serve(cache) as s:
        status, headers, body = get(s, "/simple/")
        assert b"first" in body and b"second" not in body
        etag = headers["ETag"]
        assert get(s, "/simple/second/")[0] == 404
        added = build_wheel(tmp_path / "b", "second", "2.0", requires_python=">=3.9")
        # ingest from another process, as a concurrent `wheelcache fetch` would
        code = (
            "import sys; from pathlib import Path; from wheelcache.store.cache import Cache;"
            "from tests.integration._serve_wheels import add_wheel;"
            "add_wheel(Cache(Path(sys.argv[1])), Path(sys.argv[2]), 'second', '2.0')"
        )
        subprocess.run(
            [sys.executable, "-c", code, str(cache.root), str(added)],
            check=True,
            cwd=Path(__file__).resolve().parents[2],
        )
        status, headers, body = get(s, "/simple/", {"If-None-Match": etag})
        assert status == 200 and b"second" in body
        status, _, body = get(s, "/simple/second/")
        assert status == 200 and b'data-requires-python="&gt;=3.9"' in body
        assert get(s, f"/wheels/{added.name}")[2] == added.read_bytes()
        assert get(s, f"/wheels/{added.name}.metadata")[0] == 200


def test_a_blob_removed_under_a_running_server_is_404_not_500(tmp_path: Path) -> None:
    cache = Cache(tmp_path / "cache")
    cached = add_wheel(cache, build_wheel(tmp_path / "b", "gone", "1.0"), "gone", "1.0")
    with serve(cache) as s:
        assert get(s, "/simple/gone/")[0] == 200
        cached.blob.unlink()
        status, _, body = get(s, f"/wheels/{cached.filename}")
        assert status == 404 and b"Traceback" not in body


def test_one_access_record_per_request(served: Served) -> None:
    before = len(served.records)
    get(served, "/simple/torch/", {"User-Agent": "probe/1"})
    get(served, "/simple/none/", {"User-Agent": "probe/1"})
    raw(served.server.port, b"PUT /x HTTP/1.1\r\nHost: x\r\n\r\n")
    assert served.server.wait_idle(5)
    new = sorted((r.method, r.path, r.status) for r in served.records[before:])
    assert new == [
        ("GET", "/simple/none/", 404),
        ("GET", "/simple/torch/", 200),
        ("PUT", "/x", 405),
    ]


# -- selections ----------------------------------------------------------------------------
def test_selection_by_project(demo_cache: Cache) -> None:
    with serve(demo_cache, Selection.of(("Torch", "filelock"))) as s:
        root = json.loads(get(s, "/simple/", {"Accept": PEP691_ACCEPT})[2])
        assert [p["name"] for p in root["projects"]] == ["filelock", "torch"]
        assert get(s, "/simple/jinja2/")[0] == 404
        assert get(s, "/wheels/jinja2-3.1.4-py3-none-any.whl")[0] == 404
        assert get(s, TORCH_URL)[0] == 200


def test_selection_by_requirements_file_with_hashes(demo_cache: Cache, tmp_path: Path) -> None:
    torch = demo_cache.find(TORCH)
    assert torch is not None
    text = (
        "# written by wheelcache\n"
        f"torch==2.4.0+cu118 \\\n    --hash=sha256:{torch.sha256}\n"
        "filelock==3.13.1 ; python_version >= '3.8'\n"
        "--index-url http://ignored.invalid/simple\n"
    )
    (tmp_path / "r.txt").write_text(text, encoding="utf-8")
    pins = read_selection_file(tmp_path / "r.txt")
    with serve(demo_cache, Selection(pins=pins)) as s:
        files = {
            f["filename"]
            for name in ("torch", "filelock")
            for f in json.loads(get(s, f"/simple/{name}/", {"Accept": PEP691_ACCEPT})[2])["files"]
        }
        assert files == {TORCH, "filelock-3.13.1-py3-none-any.whl"}
        assert get(s, "/simple/typing-extensions/")[0] == 404


def test_selection_by_a_pep751_lock(demo_cache: Cache, tmp_path: Path) -> None:
    """A lock selects its wheels by sha256 (every target's, as a lock may hold several)."""
    torch = demo_cache.find(TORCH)
    assert torch is not None
    lock = tmp_path / "pylock.toml"
    lock.write_text(
        'lock-version = "1.0"\ncreated-by = "test"\n\n'
        '[[packages]]\nname = "torch"\nversion = "2.4.0+cu118"\n'
        f'wheels = [{{ url = "https://x.invalid/{TORCH}",'
        f' hashes = {{ sha256 = "{torch.sha256}" }} }},'
        f' {{ url = "https://x.invalid/torch-2.4.0+cu118-cp39-cp39-win_amd64.whl",'
        f' hashes = {{ sha256 = "{"0" * 64}" }} }}]\n',
        encoding="utf-8",
    )
    with serve(demo_cache, Selection(pins=read_selection_file(lock))) as s:
        page = json.loads(get(s, "/simple/torch/", {"Accept": PEP691_ACCEPT})[2])
        assert [f["filename"] for f in page["files"]] == [TORCH]
        assert get(s, "/simple/filelock/")[0] == 404


def test_fetch_then_serve_its_requirements_file_then_pip_installs_the_closure(
    torch_index: TorchIndex, tmp_path: Path
) -> None:
    """The whole LAN story: fetch for this machine, serve only that closure, pip -r it."""
    py = f"{sys.version_info[0]}.{sys.version_info[1]}"
    cache_dir = tmp_path / "cache"
    common = [
        "--cpu",
        "--py",
        py,
        "--platform",
        "linux_x86_64",
        "--torch-index",
        torch_index.torch_index_url,
        "--index-url",
        torch_index.deps_index_url,
        "--cache-dir",
        str(cache_dir),
        "--json",
    ]
    runner = CliRunner()
    old = runner.invoke(main, ["fetch", "--torch", "2.3.1", "--no-deps", "torch", *common])
    assert old.exit_code == 0, old.stderr
    result = runner.invoke(main, ["fetch", "--torch", "2.4.0", *common])
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    requirements = Path(data["requirements_file"])
    wanted = {f["filename"] for f in data["files"]}
    cache = Cache(cache_dir)
    pins = wheelcache.serve.publish.read_selection_file(requirements)
    with serve(cache, Selection(pins=pins)) as s:
        torch_page = get(s, "/simple/torch/")[2].decode()
        assert "torch-2.4.0" in torch_page and "torch-2.3.1" not in torch_page
        target = tmp_path / "site"
        pip_install(s.index_url, target, tmp_path, "-r", str(requirements))
        wheel_requests = {
            p.rsplit("/", 1)[1].replace("%2B", "+")
            for p in s.paths()
            if p.startswith("/wheels/") and p.endswith(".whl")
        }
    installed = {p.name for p in target.glob("*.dist-info")}
    for name in ("torch-2.4.0+cpu", "torchvision-0.19.0+cpu", "torchaudio-2.4.0+cpu"):
        assert f"{name}.dist-info" in installed
    assert wheel_requests == wanted  # every file came from us, and only what was selected


# -- real clients --------------------------------------------------------------------------
def _installed(target: Path) -> set[str]:
    return {p.name.removesuffix(".dist-info") for p in target.glob("*.dist-info")}


WANT = {
    "torch-2.4.0+cu118",
    "torchvision-0.19.0+cu118",
    "torchaudio-2.4.0+cu118",
    "filelock-3.13.1",
    "typing_extensions-4.12.2",
}


def test_pip_installs_from_serve(served: Served, tmp_path: Path) -> None:
    before = len(served.records)
    pip_install(
        served.index_url,
        tmp_path / "site",
        tmp_path,
        "torch==2.4.0+cu118",
        "torchvision",
        "torchaudio",
    )
    assert _installed(tmp_path / "site") == WANT
    seen = [(r.path, r.status) for r in served.records[before:]]
    assert ("/simple/torch/", 200) in seen and (TORCH_URL, 200) in seen
    assert (TORCH_URL + ".metadata", 200) in seen  # pip used PEP 658
    assert all(r.user_agent.startswith("pip/") for r in served.records[before:])


def test_uv_installs_from_serve(served: Served, tmp_path: Path) -> None:
    before = len(served.records)
    uv_install(
        served.index_url,
        tmp_path / "site",
        tmp_path,
        "torch==2.4.0+cu118",
        "torchvision",
        "torchaudio",
    )
    assert _installed(tmp_path / "site") == WANT
    seen = [(r.path, r.status) for r in served.records[before:]]
    assert ("/simple/torch/", 200) in seen and (TORCH_URL, 200) in seen
    assert all(r.user_agent.startswith("uv/") for r in served.records[before:])


# -- the command ---------------------------------------------------------------------------
def _serve_command(demo_cache: Cache, *args: str) -> tuple[str, int, subprocess.Popen[str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WHEELCACHE_")}
    env["WHEELCACHE_CACHE_DIR"] = str(demo_cache.root)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from wheelcache.cli.main import main; main()",
            "serve",
            "--port",
            "0",
            "--project",
            "torch",
            *args,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    lines = [proc.stdout.readline() for _ in range(4)]
    m = re.search(
        r"^  pip install --index-url (http://127\.0\.0\.1:(\d+)/simple/) torch$", lines[2], re.M
    )
    assert m, lines
    assert lines[0].startswith("Serving 2 wheels of 1 projects from ")
    assert lines[3].startswith(f"  uv pip install --index-url {m.group(1)} torch")
    return m.group(1), int(m.group(2)), proc


def _get_page_and_wheel(port: int) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    agent = 'pip/24.0 {"ci":null,"cpu":"x86_64","implementation":{"name":"CPython"}}'
    for path in ("/simple/torch/", TORCH_URL):
        conn.request("GET", path, headers={"User-Agent": agent})
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 200
    conn.close()


def _stop(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    return err


def test_serve_command_port_0_prints_the_pip_line_and_logs_wheels_served(
    demo_cache: Cache, tmp_path: Path
) -> None:
    """The access log is one short line per wheel served by default (pages with -v); the
    client is its first product token, not pip's long JSON user agent (issue 10)."""
    _, port, proc = _serve_command(demo_cache)
    try:
        _get_page_and_wheel(port)
    finally:
        err = _stop(proc)
    assert re.search(
        rf'^wheelcache: INFO: 127\.0\.0\.1 "GET {re.escape(TORCH_URL)}" 200 \d+ [\d.]+ms '
        r"pip/24\.0$",
        err,
        re.M,
    ), err
    assert "/simple/torch/" not in err and "implementation" not in err
    _, port, proc = _serve_command(demo_cache, "-v")
    try:
        _get_page_and_wheel(port)
    finally:
        err = _stop(proc)
    assert re.search(r'127\.0\.0\.1 "GET /simple/torch/" 200 \d+ [\d.]+ms pip/24\.0$', err, re.M)


def test_serve_command_errors_are_one_line(demo_cache: Cache, tmp_path: Path) -> None:
    runner = CliRunner()
    args = ["serve", "--cache-dir", str(demo_cache.root)]
    result = runner.invoke(main, [*args, "--project", "nope"])
    assert result.exit_code == 1
    assert result.stderr.startswith("wheelcache: error: not in the cache")
    assert "nope" in result.stderr
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = runner.invoke(main, [*args, "--port", str(port)])
    assert result.exit_code == 1
    assert result.stderr.strip().count("\n") == 0
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    missing = tmp_path / "missing.txt"
    result = runner.invoke(main, [*args, "-r", str(missing)])
    assert result.exit_code == 2 and "missing.txt' does not exist" in result.stderr
    bad = tmp_path / "bad.txt"
    bad.write_text("torch @ https://x.invalid/t.whl\n")
    result = runner.invoke(main, [*args, "-r", str(bad)])
    assert result.exit_code == 1 and "bad.txt:1: https://x.invalid/t.whl is not a wheel" in (
        result.stderr
    )


@pytest.mark.parametrize(
    "module", [wheelcache.serve.request, wheelcache.serve.publish, wheelcache.cli.serve]
)
def test_doctests(module: object) -> None:
    assert doctest.testmod(module).failed == 0  # type: ignore[arg-type]


def test_serve_warns_when_torch_variants_are_mixed(torch_index: TorchIndex, tmp_path: Path) -> None:
    from wheelcache.cli.serve import _torch_variants
    from wheelcache.serve.publish import CacheView, Selection
    from wheelcache.store.cache import Cache

    cache = tmp_path / "c"
    for variant in ("cpu", "cu121"):
        result = CliRunner().invoke(
            main,
            [
                "fetch",
                f"--variant={variant}",
                "--py",
                "3.11",
                "--platform",
                "linux_x86_64",
                "--torch",
                "2.4.0",
                "--no-deps",
                "torch",
                "--torch-index",
                torch_index.torch_index_url,
                "--index-url",
                torch_index.deps_index_url,
                "--cache-dir",
                str(cache),
            ],
        )
        assert result.exit_code == 0, result.stderr
    view = CacheView(Cache(cache), Selection())
    assert _torch_variants(view.snapshot().files.values()) == {"cpu", "cu121"}
