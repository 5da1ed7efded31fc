"""``serve --pull`` over HTTP: routing, rewritten pages, one shared streamed transfer, faults."""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import socket
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.integration._pull import BIG, fetch_path, get, pulled, upstream_bytes
from tests.support.httpserver import FileServer
from tests.support.torchindex import TorchIndex, torch_root_page
from wheelcache.core.simple import JSON_CONTENT_TYPE, parse_project_page
from wheelcache.core.variants import Mirror
from wheelcache.net.client import HttpSettings
from wheelcache.serve.publish import Selection, read_selection_file
from wheelcache.serve.pull_server import PullSettings

JSON_ACCEPT = JSON_CONTENT_TYPE
MiB = 1024 * 1024


def _parse(body: bytes, ctype: str, base: str, project: str) -> dict[str, object]:
    page = parse_project_page(body, content_type=ctype, base_url=base, project=project)
    return {f.filename: f for f in page.files}


# -- pages -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("variant", "project", "origin_page"),
    [
        ("cu118", "torch", "index"),
        ("cu118", "torchvision", "index"),
        ("cu118", "filelock", "deps"),  # yanked, relative links, sdists
        ("cu118", "markupsafe", "deps"),  # no PEP 658 metadata
        (None, "numpy", "deps"),
    ],
)
@pytest.mark.parametrize("accept", [None, JSON_ACCEPT])
def test_pages_are_rewritten_to_the_lan_server_keeping_every_attribute(
    torch_index: TorchIndex,
    tmp_path: Path,
    variant: str | None,
    project: str,
    origin_page: str,
    accept: str | None,
) -> None:
    ti = torch_index
    if origin_page == "index":
        upstream_url = f"{ti.variant_url(variant or '')}/{project}/"
    else:
        upstream_url = f"{ti.deps_index_url}/{project}/"
    up = ti.index if origin_page == "index" else ti.deps
    with pulled(tmp_path / "cache", ti) as p:
        path = f"/whl/{variant}/{project}/" if variant else f"/simple/{project}/"
        status, headers, body = get(p.port, path, {"Accept": accept} if accept else None)
        assert status == 200
        assert headers["Vary"] == "Accept"
        assert headers["Content-Type"] == (
            JSON_CONTENT_TYPE if accept else "text/html; charset=utf-8"
        )
        ours = _parse(body, headers["Content-Type"], p.url + path, project)
    conn = http.client.HTTPConnection("127.0.0.1", urlsplit(up.url).port)
    conn.request("GET", urlsplit(upstream_url).path)
    resp = conn.getresponse()
    theirs = _parse(resp.read(), resp.getheader("Content-Type"), upstream_url, project)
    conn.close()
    assert sorted(ours) == sorted(theirs) and ours
    for name, f in ours.items():
        t = theirs[name]
        assert f.url == p.url + fetch_path(variant, name)  # type: ignore[attr-defined]
        for attr in ("sha256", "requires_python", "yanked", "yanked_reason", "core_metadata"):
            assert getattr(f, attr) == getattr(t, attr), (name, attr)
        assert f.core_metadata_sha256 == t.core_metadata_sha256  # type: ignore[attr-defined]
    for host in (ti.index.url, ti.cdn.url, ti.deps.url):
        assert host.encode() not in body  # absolute CDN links included


def test_variant_pages_route_by_the_variant_root(torch_index: TorchIndex, tmp_path: Path) -> None:
    """What the variant root lists comes from the PyTorch index; the rest from the deps index;
    /simple/ is the deps index alone."""
    ti = torch_index
    cu121_root = torch_root_page("cu121")
    triton_page = b'<a href="/whl/cu121/triton-9.9.9-py3-none-any.whl#sha256=' + b"a" * 64
    triton_page += b'">triton-9.9.9-py3-none-any.whl</a>\n'
    ti.index.add(
        "/whl/cu121/", cu121_root.replace(b"</body>", b'<a href="triton/">triton</a></body>')
    )
    ti.index.add("/whl/cu121/triton/", triton_page, content_type="text/html")
    try:
        with pulled(tmp_path / "cache", ti) as p:
            _, _, body = get(p.port, "/whl/cu121/triton/")
            assert b"triton-9.9.9" in body and b"triton-3.0.0" not in body
            _, _, body = get(p.port, "/whl/cu118/triton/")
            assert b"triton-3.0.0" in body and b"triton-9.9.9" not in body
            assert get(p.port, "/simple/torch/")[0] == 404  # not on the deps index
            _, _, body = get(p.port, "/simple/triton/")
            assert b"triton-3.0.0" in body
            status, _, body = get(p.port, "/whl/cu118/", {"Accept": JSON_ACCEPT})
            names = {x["name"] for x in json.loads(body)["projects"]}
            assert status == 200 and {"torch", "torchvision", "torchaudio"} <= names
            assert get(p.port, "/whl/cu118/no-such-project/")[0] == 404
            assert get(p.port, "/whl/not-a-variant/torch/")[0] == 404
            assert get(p.port, "/whl/CU118/torch/")[0] == 404
    finally:
        ti.index.add("/whl/cu121/", cu121_root)
        ti.index.remove("/whl/cu121/triton/")


def test_pages_are_cached_and_revalidated(torch_index: TorchIndex, tmp_path: Path) -> None:
    ti = torch_index
    with pulled(tmp_path / "fresh", ti) as p:
        for _ in range(3):
            assert get(p.port, "/whl/cu118/torch/")[0] == 200
        assert ti.index.count("/whl/cu118/torch/") == 1  # fresh for the default TTL
    ti.clear()
    with pulled(tmp_path / "fresh", ti, settings=PullSettings(page_ttl=0)) as p:
        assert get(p.port, "/whl/cu118/torch/")[0] == 200
        assert get(p.port, "/whl/cu118/torch/")[0] == 200
    asks = [r for r in ti.index.requests if r.path == "/whl/cu118/torch/"]
    assert len(asks) == 2
    assert all(r.headers.get("if-none-match") for r in asks)  # stored by the first server
    assert [r.status for r in asks] == [304, 304]


def test_upstream_max_age_is_honoured(torch_index: TorchIndex, tmp_path: Path) -> None:
    ti = torch_index
    page = b'<a href="/files/x-1.0-py3-none-any.whl">x-1.0-py3-none-any.whl</a>'
    ti.deps.add(
        "/simple/x/", page, content_type="text/html", headers={"Cache-Control": "max-age=0"}
    )
    try:
        with pulled(tmp_path / "cache", ti) as p:
            assert get(p.port, "/simple/x/")[0] == 200
            assert get(p.port, "/simple/x/")[0] == 200
        assert ti.deps.count("/simple/x/") == 2
    finally:
        ti.deps.remove("/simple/x/")


# -- files -------------------------------------------------------------------------------------
def _read_first_byte_then_rest(port: int, path: str, out: dict[str, object]) -> None:
    t0 = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request("GET", path)
    resp = conn.getresponse()
    first = resp.read(1)
    out["first"] = time.monotonic() - t0
    out["body"] = first + resp.read()
    out["done"] = time.monotonic() - t0
    out["status"] = resp.status
    conn.close()


def test_many_clients_share_one_streamed_transfer(torch_index: TorchIndex, tmp_path: Path) -> None:
    """Sixteen clients ask for a 4 MiB file upstream sends at 1 MiB/s: one upstream transfer,
    every client gets its first bytes long before the file is complete, all get it right."""
    ti = torch_index
    ti.cdn.fault(ti.url(BIG), throttle_bps=MiB, times=None)
    with pulled(tmp_path / "cache", ti) as p:
        results: list[dict[str, object]] = [{} for _ in range(16)]
        threads = [
            threading.Thread(
                target=_read_first_byte_then_rest, args=(p.port, fetch_path("cu118", BIG), r)
            )
            for r in results
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert p.server.transfers.started == 1
    size = ti.built(BIG).size
    for r in results:
        assert r["status"] == 200
        assert hashlib.sha256(r["body"]).hexdigest() == ti.sha256(BIG)  # type: ignore[arg-type]
        assert r["first"] < r["done"] / 2  # type: ignore[operator]
    assert upstream_bytes(ti.cdn, BIG) <= 1.05 * size
    assert p.cache.find(BIG, ti.sha256(BIG)) is not None


def test_a_client_is_streamed_a_file_that_arrives_within_a_second(
    torch_index: TorchIndex, tmp_path: Path
) -> None:
    """A fetch saves no transfer state in its first second (a crash then costs little); a
    pull server's readers learn what arrived from those saves, so its transfers save from
    the start: a client of a file upstream sends in about half a second still gets its
    first bytes long before the last."""
    ti = torch_index
    ti.cdn.fault(ti.url(BIG), throttle_bps=8 * MiB, times=None)
    with pulled(tmp_path / "cache", ti) as p:
        out: dict[str, object] = {}
        _read_first_byte_then_rest(p.port, fetch_path("cu118", BIG), out)
    assert out["status"] == 200
    assert hashlib.sha256(out["body"]).hexdigest() == ti.sha256(BIG)  # type: ignore[arg-type]
    assert out["first"] < out["done"] / 2  # type: ignore[operator]


def test_ranges_during_a_transfer_and_the_last_byte_after_verification(
    torch_index: TorchIndex, tmp_path: Path
) -> None:
    ti = torch_index
    ti.cdn.fault(ti.url(BIG), throttle_bps=MiB, times=None)
    data = ti.file_path(BIG).read_bytes()
    size = len(data)
    path = fetch_path("cu118", BIG)
    with pulled(tmp_path / "cache", ti) as p:
        status, headers, body = get(p.port, path, {"Range": "bytes=100-199"})
        assert (status, body) == (206, data[100:200])
        assert headers["Content-Range"] == f"bytes 100-199/{size}"
        assert headers["ETag"] == f'"{ti.sha256(BIG)}"'
        assert p.cache.find(BIG, ti.sha256(BIG)) is None  # answered from what had arrived
        status, _, body = get(p.port, path, {"Range": "bytes=-10"})
        assert (status, body) == (206, data[-10:])  # waited for the file to verify
        assert p.cache.find(BIG, ti.sha256(BIG)) is not None
        status, _, body = get(p.port, path, {"Range": f"bytes={size}-"})
        assert status == 416
        status, headers, body = get(p.port, path, method="HEAD")
        assert status == 200 and headers["Content-Length"] == str(size) and body == b""
    assert upstream_bytes(ti.cdn, BIG) <= 1.05 * size


def _raw_get(port: int, path: str) -> tuple[bytes, bool]:
    """A GET whose body is read until the server closes: (bytes, closed early)."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        chunks = []
        while True:
            try:
                chunk = sock.recv(1 << 16)
            except ConnectionResetError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    raw = b"".join(chunks)
    head, _, body = raw.partition(b"\r\n\r\n")
    length = int(
        next(
            line.split(b":")[1]
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length")
        )
    )
    return body, len(body) < length


def test_a_corrupt_upstream_file_is_refused_not_cached_and_clients_are_cut(
    torch_index: TorchIndex, tmp_path: Path
) -> None:
    ti = torch_index
    ti.cdn.fault(ti.url(BIG), corrupt=True, throttle_bps=4 * MiB, times=None)
    size = ti.built(BIG).size
    with pulled(tmp_path / "cache", ti) as p:
        results: list[tuple[bytes, bool]] = []
        threads = [
            threading.Thread(
                target=lambda: results.append(_raw_get(p.port, fetch_path("cu118", BIG)))
            )
            for _ in range(3)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert len(results) == 3
        for body, cut in results:
            assert cut and len(body) < size  # never the whole (wrong) file
        # The clients were cut when the transfer started over from a single source; it then
        # failed again, and a request moments later is refused at once.
        deadline = time.monotonic() + 60
        while p.server.transfers.get_running(ti.sha256(BIG)) and time.monotonic() < deadline:
            time.sleep(0.1)
        status, _, body = get(p.port, fetch_path("cu118", BIG))
        assert status == 502 and b"mismatch" in body
        assert p.server.transfers.started == 1
        assert p.cache.find(BIG) is None
        assert not list((tmp_path / "cache" / "partial-v1").glob("*.part"))


def test_a_client_that_leaves_does_not_cancel_the_transfer(
    torch_index: TorchIndex, tmp_path: Path
) -> None:
    ti = torch_index
    ti.cdn.fault(ti.url(BIG), throttle_bps=2 * MiB, times=None)
    with pulled(tmp_path / "cache", ti) as p:
        with socket.create_connection(("127.0.0.1", p.port), timeout=30) as sock:
            sock.sendall(f"GET {fetch_path('cu118', BIG)} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            assert sock.recv(1 << 16)
        deadline = time.monotonic() + 30
        while p.cache.find(BIG, ti.sha256(BIG)) is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert p.cache.find(BIG, ti.sha256(BIG)) is not None
        status, _, body = get(p.port, fetch_path("cu118", BIG))
        assert status == 200 and hashlib.sha256(body).hexdigest() == ti.sha256(BIG)
    assert upstream_bytes(ti.cdn, BIG) <= 1.05 * ti.built(BIG).size


def test_metadata_from_upstream_then_from_the_cached_wheel(
    torch_index: TorchIndex, tmp_path: Path
) -> None:
    ti = torch_index
    built = ti.built(BIG)
    md_path = fetch_path("cu118", BIG) + ".metadata"
    with pulled(tmp_path / "cache", ti) as p:
        status, _, body = get(p.port, md_path)
        assert status == 200 and hashlib.sha256(body).hexdigest() == built.metadata_sha256
        assert ti.cdn.count(BIG + ".metadata") == 1
        # No .metadata upstream, none announced: the page says so and the file is a 404.
        no_md = "MarkupSafe-2.1.5-cp39-cp39-win_amd64.whl"
        assert get(p.port, fetch_path("cu118", no_md) + ".metadata")[0] == 404
    # A fresh cache holding the wheel, upstream's .metadata gone: extracted from the wheel.
    with pulled(tmp_path / "other", ti) as p:
        assert get(p.port, fetch_path("cu118", BIG))[0] == 200
        ti.cdn.fault(ti.url(BIG) + ".metadata", status=500, times=None)
        status, _, body = get(p.port, md_path)
        assert status == 200 and hashlib.sha256(body).hexdigest() == built.metadata_sha256
        assert ti.cdn.count(BIG + ".metadata") == 1  # from the first server only


def test_files_not_on_a_configured_page_are_never_fetched(
    torch_index: TorchIndex, tmp_path: Path
) -> None:
    ti = torch_index
    with pulled(tmp_path / "cache", ti) as p:
        before = sum(len(s.requests) for s in ti.servers)
        for path in (
            "/whl/cu118/torch/torch-9.9.9-py3-none-any.whl",
            "/whl/cu118/torch/" + "http%3A//127.0.0.1/evil.whl",
            "/simple/numpy/" + "..%2f..%2fetc%2fpasswd",
            "/whl/cu118/torch/torch-2.4.0%2Bcu118-cp39-cp39-win_amd64.whl/x",
            "/wheels/" + BIG,
        ):
            assert get(p.port, path)[0] in (400, 404), path
        fetched = [r.path for s in ti.servers for r in s.requests[before:]]
        assert not [x for x in fetched if x.endswith(".whl")]
        assert p.server.transfers.started == 0


def test_selection_limits_what_is_listed_and_pulled(
    torch_index: TorchIndex, tmp_path: Path
) -> None:
    ti = torch_index
    req = tmp_path / "requirements.txt"
    req.write_text(f"torch==2.4.0+cu118 --hash=sha256:{ti.sha256(BIG)}\nfilelock==3.16.1\n")
    pins = read_selection_file(req)
    with pulled(tmp_path / "cache", ti, Selection.of(("numpy",), pins)) as p:
        status, _, body = get(p.port, "/whl/cu118/torch/")
        assert status == 200 and body.count(b"<a ") == 1 and BIG.encode() in body
        _, _, body = get(p.port, "/whl/cu118/filelock/")
        assert b"filelock-3.16.1" in body and b"filelock-3.15.4" not in body
        assert get(p.port, "/whl/cu118/numpy/")[0] == 200
        assert get(p.port, "/whl/cu118/torchvision/")[0] == 404
        other = "torch-2.4.0+cu118-cp310-cp310-win_amd64.whl"
        assert get(p.port, fetch_path("cu118", other))[0] == 404
        assert get(p.port, fetch_path("cu118", "six-1.0-py3-none-any.whl"))[0] == 404
        assert p.server.transfers.started == 0


def test_upstream_down_serves_what_is_cached_and_says_so_once(
    torch_index: TorchIndex, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ti = torch_index
    wheel = "fsspec-2024.6.1-py3-none-any.whl"
    with FileServer() as deps:
        deps.add("/simple/fsspec/", _fsspec_page(ti, deps.url), content_type="text/html")
        deps.add(f"/files/{wheel}", ti.file_path(wheel))
        settings = PullSettings(page_ttl=0, retry_after=0.0)
        with pulled(
            tmp_path / "cache", ti, settings=settings, index_urls=(f"{deps.url}/simple",)
        ) as p:
            assert get(p.port, "/simple/fsspec/")[0] == 200
            assert get(p.port, fetch_path(None, wheel))[0] == 200
            deps.stop()
            caplog.set_level(logging.WARNING, logger="wheelcache")
            for _ in range(3):
                status, _, body = get(p.port, "/simple/fsspec/")
                assert status == 200 and wheel.encode() in body
                status, _, body = get(p.port, fetch_path(None, wheel))
                assert status == 200 and hashlib.sha256(body).hexdigest() == ti.sha256(wheel)
                assert get(p.port, fetch_path(None, wheel) + ".metadata")[0] == 200
            status, _, body = get(p.port, "/simple/numpy/")  # never cached
            assert status == 502 and b"cannot reach" in body
    said = [r for r in caplog.records if "unreachable" in r.getMessage()]
    assert len(said) == 1, [r.getMessage() for r in said]


def _fsspec_page(ti: TorchIndex, base: str) -> bytes:
    wheel = "fsspec-2024.6.1-py3-none-any.whl"
    md = ti.built(wheel).metadata_sha256
    return (
        f'<a href="{base}/files/{wheel}#sha256={ti.sha256(wheel)}" '
        f'data-core-metadata="sha256={md}">{wheel}</a>'
    ).encode()


# -- mirrors -------------------------------------------------------------------------------------
def _mirror(ti: TorchIndex, srv: FileServer, files: tuple[str, ...]) -> None:
    """A PEP 503 mirror of the torch family for cu118, without hashes (as mirrors often are)."""
    for fn in files:
        srv.add(f"/mirror/cu118/files/{fn}", ti.file_path(fn))
    for project in {fn.split("-")[0] for fn in files}:
        links = "".join(
            f'<a href="../files/{fn.replace("+", "%2B")}">{fn}</a>'
            for fn in files
            if fn.startswith(project + "-")
        )
        srv.add(f"/mirror/cu118/{project}/", f"<html>{links}</html>".encode(), "text/html")


def test_mirrors_carry_the_bytes_with_the_official_hashes(
    torch_index: TorchIndex, tmp_path: Path
) -> None:
    ti = torch_index
    ti.cdn.fault(ti.url(BIG), status=503, times=None)  # the CDN is failing today
    with FileServer() as mirror:
        _mirror(ti, mirror, (BIG,))
        upstreams_mirror = (Mirror(mirror.url + "/mirror/{variant}"),)
        with pulled(tmp_path / "cache", ti, mirrors=upstreams_mirror) as p:
            status, _, body = get(p.port, fetch_path("cu118", BIG))
            assert status == 200 and hashlib.sha256(body).hexdigest() == ti.sha256(BIG)
        assert mirror.count(BIG) >= 1 and upstream_bytes(ti.cdn, BIG) == 0
    row = p.cache.catalog.by_sha256(ti.sha256(BIG))
    assert row is not None and row.hash_origin == "index"


def test_official_index_down_lists_from_the_mirror(
    torch_index: TorchIndex, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ti = torch_index
    with FileServer() as dead:
        dead_url = dead.url  # nothing listens there after this block
    with FileServer() as mirror:
        _mirror(ti, mirror, (BIG,))
        upstreams_mirror = (Mirror(mirror.url + "/mirror/{variant}"),)
        with pulled(
            tmp_path / "cache",
            ti,
            mirrors=upstreams_mirror,
            torch_index=dead_url + "/whl/{variant}",
            settings=PullSettings(page_http=HttpSettings(retries=0, connect_timeout=2)),
        ) as p:
            status, _, body = get(p.port, "/whl/cu118/torch/")
            assert status == 200 and BIG.encode() in body and b"sha256=" not in body
            status, _, body = get(p.port, fetch_path("cu118", BIG))
            assert status == 200 and hashlib.sha256(body).hexdigest() == ti.sha256(BIG)
    row = p.cache.catalog.by_sha256(ti.sha256(BIG))
    assert row is not None and row.hash_origin == "computed"  # the mirror gives no hashes
    said = [r for r in caplog.records if "the hashes are the mirror's" in r.getMessage()]
    assert len(said) == 1
