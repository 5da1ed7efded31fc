"""Tests of the test support code: wheels, the faulty HTTP server and the torch universe."""

from __future__ import annotations

import base64
import csv
import email.parser
import hashlib
import io
import json
import os
import socket
import subprocess
import sys
import tarfile
import time
import zipfile
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

import httpx
import pytest
from packaging.requirements import Requirement
from packaging.utils import parse_wheel_filename

from .httpserver import JSON_TYPE, FileServer, choose_representation, parse_range
from .torchindex import (
    BIG_PAYLOAD,
    FAMILY,
    FILES,
    MEDIUM_PAYLOAD,
    TorchIndex,
    Universe,
    build_universe,
    newest_complete_release,
    serve_universe,
)
from .wheels import (
    build_sdist,
    build_wheel,
    expand_tag,
    metadata_bytes,
    read_wheel_metadata,
    wheel_filename,
)

# ---------------------------------------------------------------------------- wheels


def _record_ok(zf: zipfile.ZipFile) -> None:
    record_name = next(n for n in zf.namelist() if n.endswith(".dist-info/RECORD"))
    rows = list(csv.reader(io.StringIO(zf.read(record_name).decode())))
    assert {r[0] for r in rows} == set(zf.namelist())
    for path, digest, size in rows:
        if path == record_name:
            assert digest == size == ""
            continue
        data = zf.read(path)
        want = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        assert digest == f"sha256={want}" and int(size) == len(data), path


def test_wheel_is_valid_and_complete(tmp_path: Path) -> None:
    reqs = ["numpy", 'opt-einsum>=3.3; extra == "opt-einsum"']
    whl = build_wheel(
        tmp_path,
        "Typing.Extensions",
        "2.4.0+cu118",
        "cp39-cp39-manylinux2014_x86_64.manylinux_2_17_x86_64",
        build="1",
        requires_dist=reqs,
        requires_python=">=3.8.0",
        provides_extra=["opt-einsum", "unused"],
    )
    assert whl.name == (
        "typing_extensions-2.4.0+cu118-1-cp39-cp39-manylinux2014_x86_64.manylinux_2_17_x86_64.whl"
    )
    name, version, build, tags = parse_wheel_filename(whl.name)
    assert (name, str(version), build) == ("typing-extensions", "2.4.0+cu118", (1, ""))
    assert len(tags) == 2
    with zipfile.ZipFile(whl) as zf:
        assert zf.testzip() is None
        names = zf.namelist()
        assert names[0] == "typing_extensions/__init__.py"
        assert names[-1] == "typing_extensions-2.4.0+cu118.dist-info/RECORD"
        _record_ok(zf)
        wheel = zf.read("typing_extensions-2.4.0+cu118.dist-info/WHEEL").decode()
        assert "Root-Is-Purelib: false" in wheel and "Build: 1" in wheel
        assert [ln for ln in wheel.splitlines() if ln.startswith("Tag:")] == [
            "Tag: cp39-cp39-manylinux2014_x86_64",
            "Tag: cp39-cp39-manylinux_2_17_x86_64",
        ]
        assert all(i.date_time == (1980, 1, 1, 0, 0, 0) for i in zf.infolist())
    meta = email.parser.BytesParser().parsebytes(read_wheel_metadata(whl))
    assert meta["Metadata-Version"] == "2.1" and meta["Name"] == "Typing.Extensions"
    assert meta["Version"] == "2.4.0+cu118" and meta["Requires-Python"] == ">=3.8.0"
    assert meta.get_all("Requires-Dist") == reqs
    assert meta.get_all("Provides-Extra") == ["opt-einsum", "unused"]


def test_filenames_and_tags() -> None:
    assert (
        wheel_filename("MarkupSafe", "2.1.5", "cp39-cp39-win_amd64", legacy_case=True)
        == "MarkupSafe-2.1.5-cp39-cp39-win_amd64.whl"
    )
    assert (
        wheel_filename("nvidia-cuda-nvrtc-cu11", "11.8.89", "py3-none-manylinux1_x86_64")
        == "nvidia_cuda_nvrtc_cu11-11.8.89-py3-none-manylinux1_x86_64.whl"
    )
    assert expand_tag("py2.py3-none-any") == ["py2-none-any", "py3-none-any"]


def test_wheel_deterministic_with_payload(tmp_path: Path) -> None:
    a = build_wheel(
        tmp_path / "a",
        "torch",
        "2.4.0+cu118",
        "cp39-cp39-win_amd64",
        requires_dist=["filelock"],
        payload_size=300_000,
    )
    b = build_wheel(
        tmp_path / "b",
        "torch",
        "2.4.0+cu118",
        "cp39-cp39-win_amd64",
        requires_dist=["filelock"],
        payload_size=300_000,
    )
    assert a.read_bytes() == b.read_bytes()
    assert a.stat().st_size > 300_000
    with zipfile.ZipFile(a) as zf:
        infos = zf.infolist()
        payload = next(i for i in infos if i.filename.endswith("_payload.bin"))
        assert payload.compress_type == zipfile.ZIP_STORED and payload.file_size == 300_000
        assert infos.index(payload) < min(
            i for i, x in enumerate(infos) if ".dist-info/" in x.filename
        )
        _record_ok(zf)
    c = build_wheel(tmp_path / "c", "torch", "2.4.1", payload_size=1000)
    d = build_wheel(tmp_path / "d", "torch", "2.4.2", payload_size=1000)
    assert zipfile.ZipFile(c).read("torch/_payload.bin") != zipfile.ZipFile(d).read(
        "torch/_payload.bin"
    )


def test_metadata_bytes_match_wheel(tmp_path: Path) -> None:
    kw = dict(
        requires_dist=["a>=1", 'b; extra == "x"'], requires_python=">=3.9", provides_extra=["x"]
    )
    whl = build_wheel(tmp_path, "demo", "1.0", **kw)  # type: ignore[arg-type]
    assert read_wheel_metadata(whl) == metadata_bytes("demo", "1.0", **kw)  # type: ignore[arg-type]


def test_sdist(tmp_path: Path) -> None:
    a = build_sdist(tmp_path / "a", "MarkupSafe", "2.1.5", legacy_case=True)
    b = build_sdist(tmp_path / "b", "MarkupSafe", "2.1.5", legacy_case=True)
    assert a.name == "MarkupSafe-2.1.5.tar.gz" and a.read_bytes() == b.read_bytes()
    with tarfile.open(a) as tf:
        assert "MarkupSafe-2.1.5/PKG-INFO" in tf.getnames()
    assert build_sdist(tmp_path, "opt-einsum", "3.3.0").name == "opt_einsum-3.3.0.tar.gz"


def test_pip_installs_wheel(tmp_path: Path) -> None:
    whl = build_wheel(tmp_path, "demo-pkg", "1.2.3", requires_dist=["nothing-here>=1"])
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env["PIP_CONFIG_FILE"] = os.devnull
    target = tmp_path / "target"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--no-index",
            "--disable-pip-version-check",
            "--target",
            str(target),
            str(whl),
        ],
        check=True,
        env=env,
        capture_output=True,
    )
    assert (target / "demo_pkg" / "__init__.py").read_text().endswith('"1.2.3"\n')
    assert (target / "demo_pkg-1.2.3.dist-info" / "METADATA").exists()


# ---------------------------------------------------------------------------- http server


@pytest.fixture
def srv(tmp_path: Path) -> Iterator[FileServer]:
    big = tmp_path / "big.bin"
    big.write_bytes(bytes(range(256)) * 8192)  # 2 MiB
    with FileServer() as s:
        s.add("/f/small.txt", b"0123456789" * 10, content_type="text/plain")
        s.add("/whl/torch-2.4.0+cu118.whl", big)
        s.add("/dir/", b"<html>dir</html>")
        s.add_negotiated("/simple/x/", b"<html>x</html>", b'{"name": "x"}')
        yield s


def raw(
    srv: FileServer, path: str, headers: str = "", method: str = "GET", timeout: float = 10
) -> tuple[int, dict[str, str], bytes, str]:
    """One request on a fresh socket; returns (status, headers, body bytes, 'eof'|'reset')."""
    port = int(srv.url.rsplit(":", 1)[1])
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.sendall(
        f"{method} {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n{headers}\r\n".encode()
    )
    data, end = b"", "eof"
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        end = "reset"
    finally:
        sock.close()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    hdrs = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    return int(lines[0].split()[1]), hdrs, body, end


BIG = bytes(range(256)) * 8192


def test_get_head_and_headers(srv: FileServer) -> None:
    r = httpx.get(srv.url + "/whl/torch-2.4.0%2Bcu118.whl")
    assert r.status_code == 200 and r.content == BIG
    assert r.headers["accept-ranges"] == "bytes" and r.headers["content-length"] == str(len(BIG))
    assert r.headers["etag"].startswith('"') and "last-modified" in r.headers
    h = httpx.head(srv.url + "/whl/torch-2.4.0+cu118.whl")
    assert h.status_code == 200 and h.content == b""
    assert h.headers["content-length"] == str(len(BIG)) and h.headers["etag"] == r.headers["etag"]
    assert httpx.get(srv.url + "/nope").status_code == 404
    redirect = httpx.get(srv.url + "/dir?q=1")
    assert redirect.status_code == 301 and redirect.headers["location"] == "/dir/?q=1"
    assert httpx.get(srv.url + "/dir", follow_redirects=True).content == b"<html>dir</html>"
    assert srv.url_for("/whl/torch-2.4.0+cu118.whl").endswith("torch-2.4.0%2Bcu118.whl")


def test_keep_alive(srv: FileServer) -> None:
    with httpx.Client() as client:
        for _ in range(3):
            assert client.get(srv.url + "/f/small.txt").status_code == 200
    assert srv.count("small.txt") == 3


@pytest.mark.parametrize(
    "rng,status,span",
    [
        ("bytes=0-9", 206, (0, 10)),
        ("bytes=100-", 206, (100, None)),
        ("bytes=-5", 206, (-5, None)),
        ("bytes=10-99999999", 206, (10, None)),
        ("bytes=0-1,5-6", 200, (0, None)),
        ("bytes=9-1", 200, (0, None)),
        ("items=0-1", 200, (0, None)),
        (f"bytes={len(BIG)}-", 416, None),
        ("bytes=-0", 416, None),
    ],
)
def test_ranges(
    srv: FileServer, rng: str, status: int, span: tuple[int, int | None] | None
) -> None:
    r = httpx.get(srv.url + "/whl/torch-2.4.0+cu118.whl", headers={"Range": rng})
    assert r.status_code == status
    if span is not None:
        body = BIG[span[0] : span[1]]
        assert r.content == body and int(r.headers["content-length"]) == len(body)
        if status == 206:
            start = span[0] % len(BIG)
            assert r.headers["content-range"] == f"bytes {start}-{start + len(body) - 1}/{len(BIG)}"
    else:
        assert r.headers["content-range"] == f"bytes */{len(BIG)}"


def test_parse_range_edges() -> None:
    assert parse_range("bytes=0-0", 1) == (0, 0)
    assert parse_range("bytes=-10", 3) == (0, 2)
    assert parse_range("bytes=0-", 0) == "unsatisfiable"
    assert parse_range("bytes=a-b", 10) is None


def test_conditionals(srv: FileServer) -> None:
    url = srv.url + "/whl/torch-2.4.0+cu118.whl"
    first = httpx.get(url)
    etag, lm = first.headers["etag"], first.headers["last-modified"]
    assert httpx.get(url, headers={"If-None-Match": etag}).status_code == 304
    assert httpx.get(url, headers={"If-None-Match": f'W/{etag}, "x"'}).status_code == 304
    assert httpx.get(url, headers={"If-None-Match": '"other"'}).status_code == 200
    not_mod = httpx.get(url, headers={"If-Modified-Since": lm})
    assert not_mod.status_code == 304 and not_mod.headers["etag"] == etag
    old = "Mon, 01 Jan 2001 00:00:00 GMT"
    assert httpx.get(url, headers={"If-Modified-Since": old}).status_code == 200
    rng = {"Range": "bytes=10-19"}
    assert httpx.get(url, headers={**rng, "If-Range": etag}).status_code == 206
    assert httpx.get(url, headers={**rng, "If-Range": lm}).status_code == 206
    for bad in ('"other"', f"W/{etag}", old):
        r = httpx.get(url, headers={**rng, "If-Range": bad})
        assert r.status_code == 200 and r.content == BIG


@pytest.mark.parametrize(
    "accept,kind",
    [
        (None, "text/html"),
        ("text/html", "text/html"),
        ("*/*", "text/html"),
        (JSON_TYPE, JSON_TYPE),
        (f"{JSON_TYPE}, application/vnd.pypi.simple.v1+html; q=0.1, text/html; q=0.01", JSON_TYPE),
        (f"{JSON_TYPE}; q=0.2, text/html", "text/html"),
        ("application/vnd.pypi.simple.v1+html", "application/vnd.pypi.simple.v1+html"),
        ("application/vnd.pypi.simple.latest+json", JSON_TYPE),
        ("application/json", None),
        (f"{JSON_TYPE};q=0", None),
    ],
)
def test_negotiation(srv: FileServer, accept: str | None, kind: str | None) -> None:
    assert choose_representation(accept) == (
        None if kind is None else ("json" if kind == JSON_TYPE else "html", kind)
    )
    r = httpx.get(srv.url + "/simple/x/", headers={"Accept": accept} if accept else {})
    if kind is None:
        assert r.status_code == 406
        return
    assert r.headers["content-type"] == kind and r.headers["vary"] == "Accept"
    assert r.content == (b'{"name": "x"}' if kind == JSON_TYPE else b"<html>x</html>")


def test_request_log(srv: FileServer) -> None:
    httpx.get(srv.url + "/whl/torch-2.4.0%2Bcu118.whl", headers={"Range": "bytes=0-0"})
    httpx.head(srv.url + "/f/small.txt")
    recs = srv.requests
    assert [(r.method, r.path, r.status) for r in recs] == [
        ("GET", "/whl/torch-2.4.0+cu118.whl", 206),
        ("HEAD", "/f/small.txt", 200),
    ]
    assert recs[0].range == "bytes=0-0" and recs[0].headers["range"] == "bytes=0-0"
    assert recs[0].raw_path.endswith("%2Bcu118.whl") and recs[0].body_bytes == 1
    assert srv.count("torch") == 1 and srv.count("", method="HEAD") == 1
    srv.clear_log()
    assert srv.requests == [] and srv.count() == 0


WHL = "/whl/torch-2.4.0+cu118.whl"


def test_fault_drop_after(srv: FileServer) -> None:
    srv.fault(WHL, drop_after=1000)
    status, hdrs, body, end = raw(srv, WHL)
    assert (status, int(hdrs["content-length"]), body, end) == (200, len(BIG), BIG[:1000], "reset")
    srv.fault(WHL, drop_after=300_000, reset=False)
    status, _, body, end = raw(srv, WHL, "Range: bytes=100-\r\n")
    assert (status, body, end) == (206, BIG[100:300_100], "eof")
    with pytest.raises(httpx.TransportError):  # faults used up: next one is clean
        srv.fault(WHL, drop_after=10)
        httpx.get(srv.url + WHL)
    assert httpx.get(srv.url + WHL).content == BIG
    assert [r.status for r in srv.requests] == [200, 206, 200, 200]


def test_fault_times_and_head(srv: FileServer) -> None:
    srv.fault(WHL, status=503, retry_after="1", times=2)
    for _ in range(2):
        r = httpx.head(srv.url + WHL)
        assert r.status_code == 503 and r.headers["retry-after"] == "1"
    assert httpx.get(srv.url + WHL).status_code == 200
    srv.fault(WHL, corrupt=True)
    assert httpx.head(srv.url + WHL).status_code == 200  # HEAD does not use up body faults
    assert httpx.get(srv.url + WHL).content != BIG
    assert httpx.get(srv.url + WHL).content == BIG
    srv.fault(WHL, status=429, times=None)
    assert all(httpx.get(srv.url + WHL).status_code == 429 for _ in range(3))
    srv.clear_faults()
    assert httpx.get(srv.url + WHL).status_code == 200
    with pytest.raises(TypeError):
        srv.fault(WHL, explode=True)


def test_fault_range_handling(srv: FileServer) -> None:
    rng = {"Range": "bytes=100-199"}
    srv.fault(WHL, ignore_range=True)
    assert httpx.get(srv.url + WHL).status_code == 200  # no Range: fault not used up
    r = httpx.get(srv.url + WHL, headers=rng)
    assert r.status_code == 200 and r.content == BIG
    assert httpx.get(srv.url + WHL, headers=rng).status_code == 206
    srv.fault(WHL, wrong_content_range=True)
    r = httpx.get(srv.url + WHL, headers=rng)
    assert r.status_code == 206 and r.content == BIG[100:200]
    assert r.headers["content-range"] != f"bytes 100-199/{len(BIG)}"
    srv.fault(WHL, no_ranges=True)  # always
    for _ in range(2):
        r = httpx.get(srv.url + WHL, headers=rng)
        assert r.status_code == 200 and "accept-ranges" not in r.headers and r.content == BIG


def test_fault_change_etag(srv: FileServer) -> None:
    etag = httpx.head(srv.url + WHL).headers["etag"]
    srv.fault(WHL, change_etag=True)
    r = httpx.get(srv.url + WHL, headers={"Range": "bytes=5-", "If-Range": etag})
    assert r.status_code == 200 and r.headers["etag"] != etag and r.content == BIG
    r = httpx.get(srv.url + WHL, headers={"Range": "bytes=5-", "If-Range": etag})
    assert r.status_code == 206 and r.headers["etag"] == etag


def test_fault_corrupt_short_long(srv: FileServer) -> None:
    srv.fault(WHL, corrupt=True)
    body = httpx.get(srv.url + WHL).content
    assert len(body) == len(BIG) and sum(a != b for a, b in zip(body, BIG, strict=True)) == 1
    srv.fault(WHL, short_body=True)
    status, hdrs, body, _ = raw(srv, WHL)
    assert int(hdrs["content-length"]) == len(BIG) and len(body) < len(BIG)
    srv.fault(WHL, short_body=True)
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.get(srv.url + WHL)
    srv.fault("/f/small.txt", long_body=True)
    _, hdrs, body, _ = raw(srv, "/f/small.txt")
    assert int(hdrs["content-length"]) == 100 and len(body) > 100
    assert body[:100] == b"0123456789" * 10


def test_fault_stall_throttle_redirect(srv: FileServer) -> None:
    srv.fault(WHL, stall_after=1000, stall_seconds=3)
    with pytest.raises(httpx.ReadTimeout):
        httpx.get(srv.url + WHL, timeout=httpx.Timeout(5, read=0.3))
    srv.fault(WHL, stall_after=1000, stall_seconds=0.3)
    t0 = time.monotonic()
    assert httpx.get(srv.url + WHL).content == BIG and time.monotonic() - t0 >= 0.3
    srv.fault("/f/small.txt", throttle_bps=250)
    t0 = time.monotonic()
    assert httpx.get(srv.url + "/f/small.txt").content == b"0123456789" * 10
    assert time.monotonic() - t0 >= 0.3
    with FileServer() as other:
        other.add("/elsewhere", b"moved")
        srv.fault(WHL, redirect_to=other.url + "/elsewhere")
        r = httpx.get(srv.url + WHL)
        assert r.status_code == 302 and r.headers["location"] == other.url + "/elsewhere"
        srv.fault(WHL, redirect_to=other.url + "/elsewhere")
        assert httpx.get(srv.url + WHL, follow_redirects=True).content == b"moved"


def test_quiet_on_client_hangup_and_fast_stop(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    big = tmp_path / "big"
    big.write_bytes(b"x" * (8 * 1024 * 1024))
    s = FileServer().start()
    s.add("/big", big)
    s.add("/stall", b"y" * 100)
    port = int(s.url.rsplit(":", 1)[1])
    for _ in range(3):
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n")
        sock.recv(1000)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
        sock.close()
    s.fault("/stall", stall_after=10, stall_seconds=60)
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(b"GET /stall HTTP/1.1\r\nHost: t\r\n\r\n")
    sock.recv(1000)
    time.sleep(0.3)
    t0 = time.monotonic()
    s.stop()
    sock.close()
    assert time.monotonic() - t0 < 5
    assert "Traceback" not in capfd.readouterr().err


# ---------------------------------------------------------------------------- torch universe


class Links(HTMLParser):
    """Collect (href, attrs, text) of every <a> on a page."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[tuple[str, dict[str, str | None], str]] = []
        self._cur: dict[str, str | None] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self._cur = dict(attrs)

    def handle_data(self, data: str) -> None:
        if self._cur is not None:
            self.links.append((self._cur.get("href") or "", self._cur, data))
            self._cur = None


def links(page: str) -> list[tuple[str, dict[str, str | None], str]]:
    p = Links()
    p.feed(page)
    return p.links


@pytest.fixture(scope="module")
def universe(tmp_path_factory: pytest.TempPathFactory) -> Universe:
    return build_universe(tmp_path_factory.mktemp("universe"))


@pytest.fixture(scope="module")
def ti(universe: Universe) -> Iterator[TorchIndex]:
    with serve_universe(universe) as t:
        yield t


def test_universe_pads_chosen_wheels(universe: Universe, tmp_path: Path) -> None:
    """The benchmark's realistic sizes: the chosen wheel grows by its payload, stays a valid
    wheel with the same name and metadata, and nothing else changes."""
    name = "fsspec-2024.6.1-py3-none-any.whl"
    padded = build_universe(tmp_path, {name: 150_000})
    big, small = padded.files[name], universe.files[name]
    assert big.size >= small.size + 150_000
    assert big.sha256 == hashlib.sha256(big.path.read_bytes()).hexdigest() != small.sha256
    assert read_wheel_metadata(big.path) == read_wheel_metadata(small.path)
    assert {k: v.sha256 for k, v in padded.files.items() if k != name} == {
        k: v.sha256 for k, v in universe.files.items() if k != name
    }


def test_universe_deterministic_and_valid(universe: Universe, tmp_path: Path) -> None:
    t0 = time.monotonic()
    again = build_universe(tmp_path)
    assert time.monotonic() - t0 < 5
    assert {k: v.sha256 for k, v in again.files.items()} == {
        k: v.sha256 for k, v in universe.files.items()
    }
    assert len(universe.files) == len(FILES) > 400
    for b in universe.files.values():
        assert b.sha256 == hashlib.sha256(b.path.read_bytes()).hexdigest()
        if b.spec.tag is None:
            assert b.path.name.endswith(".tar.gz")
            continue
        name, version, _, _ = parse_wheel_filename(b.path.name)
        meta = read_wheel_metadata(b.path)
        parsed = email.parser.BytesParser().parsebytes(meta)
        assert str(version) == parsed["Version"] == b.spec.version
        assert name == b.spec.project_key
        for req in parsed.get_all("Requires-Dist") or []:
            Requirement(req)
        if b.metadata_sha256:
            side = b.path.with_name(b.path.name + ".metadata").read_bytes()
            assert side == meta and hashlib.sha256(side).hexdigest() == b.metadata_sha256
    big = universe.files["torch-2.4.0+cu118-cp39-cp39-win_amd64.whl"]
    assert big.size > BIG_PAYLOAD
    assert universe.files["torch-2.4.0+cu118-cp39-cp39-linux_x86_64.whl"].size > BIG_PAYLOAD
    assert (
        universe.files[
            "triton-3.0.0-1-cp39-cp39-manylinux2014_x86_64.manylinux_2_17_x86_64.whl"
        ].size
        > MEDIUM_PAYLOAD
    )


def test_torch_metadata_content(universe: Universe) -> None:
    def reqs(fn: str) -> list[str]:
        meta = read_wheel_metadata(universe.files[fn].path)
        return email.parser.BytesParser().parsebytes(meta).get_all("Requires-Dist") or []

    torch = reqs("torch-2.4.0+cu118-cp39-cp39-win_amd64.whl")
    assert torch[:6] == [
        "filelock",
        "typing-extensions>=4.8.0",
        "sympy",
        "networkx",
        "jinja2",
        "fsspec",
    ]
    linux = 'platform_system == "Linux" and platform_machine == "x86_64"'
    assert f"nvidia-cudnn-cu11==9.1.0.70; {linux}" in torch
    assert f'triton==3.0.0; {linux} and python_version < "3.13"' in torch
    assert 'optree>=0.11.0; extra == "optree"' in torch
    assert not any("nvidia" in r for r in reqs("torch-2.4.0+cpu-cp39-cp39-win_amd64.whl"))
    assert any("-cu12==" in r for r in reqs("torch-2.4.0+cu121-cp39-cp39-linux_x86_64.whl"))
    assert "torch==2.4.0+cu118" in reqs("torchvision-0.19.0+cu118-cp39-cp39-win_amd64.whl")
    assert "torch==2.4.0" in reqs("torchvision-0.19.0+cu118-cp39-cp39-linux_x86_64.whl")
    assert "torch==2.4.0" in reqs("torchvision-0.19.0+cpu-cp39-cp39-win_amd64.whl")
    assert reqs("torchaudio-2.4.0+cu121-cp311-cp311-win_amd64.whl") == ["torch==2.4.0"]


def test_release_table() -> None:
    assert newest_complete_release("cu118", "cp39", "win_amd64") == "2.4.0"
    assert newest_complete_release("cu118", "cp310", "win_amd64") == "2.5.1"
    assert newest_complete_release("cu118", "cp39", "linux_x86_64") == "2.5.1"
    assert newest_complete_release("cpu", "cp38", "macosx_11_0_arm64") == "2.4.0"
    names = {f.filename for f in FILES}
    assert "torch-2.5.1+cu118-cp39-cp39-win_amd64.whl" in names
    assert "torchvision-0.20.1+cu118-cp39-cp39-win_amd64.whl" in names
    assert "torchaudio-2.5.1+cu118-cp39-cp39-win_amd64.whl" not in names
    assert "torchaudio-2.5.1+cu118-cp310-cp310-win_amd64.whl" in names
    assert not any(n.startswith("torch-2.5.1") and "-cp38-" in n for n in names)
    assert "torch-2.4.0-cp39-none-macosx_11_0_arm64.whl" in names


def test_torch_pages(ti: TorchIndex) -> None:
    for variant in ("cu118", "cu121", "cpu"):
        root = httpx.get(ti.variant_url(variant) + "/").text
        assert [t for _, _, t in links(root)] == ["torch", "torchvision", "torchaudio"]
        r = httpx.get(ti.torch_index_url.format(variant=variant) + "/torch/")
        page = r.text
        assert page.startswith("<!DOCTYPE html>\n<html>\n  <body>\n    <h1>Links for torch</h1>\n")
        assert page.rstrip().endswith("-->") and "<!--TIMESTAMP " in page
        found = links(page)
        assert len(found) == len(ti.universe.on_page(variant, "torch"))
        others = {"cu118", "cu121", "cpu"} - {variant}
        for href, attrs, text in found:
            url = urlsplit(href)
            assert href.startswith(ti.cdn.url + "/whl/")
            assert unquote(url.path).rsplit("/", 1)[1] == text
            assert "+" not in href and not any(f"+{o}" in text for o in others)
            b = ti.built(text)
            assert (url.fragment == f"sha256={b.sha256}") == ("aarch64" not in text)
            if "aarch64" in text:
                assert url.path == f"/whl/{quote_plus(text)}" and url.fragment == ""
            if b.metadata_sha256:
                assert (
                    attrs["data-dist-info-metadata"]
                    == attrs["data-core-metadata"]
                    == f"sha256={b.metadata_sha256}"
                )
            else:
                assert "data-core-metadata" not in attrs
        texts = [t for _, _, t in found]
        assert f"torch-2.4.0+{variant}-cp39-cp39-win_amd64.whl" in texts
        assert "torch-2.4.0-cp39-cp39-manylinux2014_aarch64.whl" in texts
        assert ("torch-2.4.0-cp39-none-macosx_11_0_arm64.whl" in texts) == (variant == "cpu")
        assert any("data-core-metadata" in a for _, a, _ in found)
        assert any("data-core-metadata" not in a for _, a, _ in found)
        assert any("data-upload-time" in a for _, a, _ in found)


def quote_plus(name: str) -> str:
    return name.replace("+", "%2B")


def test_cdn_serves_linked_files(ti: TorchIndex) -> None:
    page = httpx.get(ti.variant_url("cu118") + "/torchvision/").text
    with httpx.Client() as client:
        for href, attrs, text in links(page)[::7]:
            r = client.get(href.split("#")[0])
            assert hashlib.sha256(r.content).hexdigest() == ti.sha256(text)
            m = client.get(href.split("#")[0] + ".metadata")
            if "data-core-metadata" in attrs:
                assert (
                    attrs["data-core-metadata"] == "sha256=" + hashlib.sha256(m.content).hexdigest()
                )
            else:
                assert m.status_code == 404
    big = "torch-2.4.0+cu118-cp39-cp39-linux_x86_64.whl"
    assert ti.url(big) == f"{ti.cdn.url}/whl/cu118/torch-2.4.0%2Bcu118-cp39-cp39-linux_x86_64.whl"
    r = httpx.get(ti.url(big), headers={"Range": "bytes=-100"})
    assert r.status_code == 206 and r.content == ti.file_path(big).read_bytes()[-100:]


def test_deps_index(ti: TorchIndex) -> None:
    root = httpx.get(ti.deps_index_url + "/", headers={"Accept": JSON_TYPE}).json()
    assert {"name": "MarkupSafe"} in root["projects"]
    with httpx.Client(follow_redirects=False) as client:
        for key in (
            "numpy",
            "markupsafe",
            "filelock",
            "typing-extensions",
            "triton",
            "networkx",
            "nvidia-cudnn-cu11",
        ):
            page_url = f"{ti.deps_index_url}/{key}/"
            doc = client.get(page_url, headers={"Accept": JSON_TYPE})
            assert doc.headers["content-type"] == JSON_TYPE
            data = json.loads(doc.content)
            assert data["meta"] == {"api-version": "1.1"} and data["name"] == key
            html_page = client.get(page_url).text
            assert len(links(html_page)) == len(data["files"]) > 0
            for f in data["files"]:
                assert set(f) >= {
                    "filename",
                    "url",
                    "hashes",
                    "requires-python",
                    "core-metadata",
                    "yanked",
                    "size",
                }
                r = client.get(urljoin(page_url, f["url"]))
                assert r.status_code == 200 and len(r.content) == f["size"]
                assert hashlib.sha256(r.content).hexdigest() == f["hashes"]["sha256"]
                if f["core-metadata"]:
                    assert f["filename"].endswith(".whl")
                    m = client.get(urljoin(page_url, f["url"]) + ".metadata")
                    assert hashlib.sha256(m.content).hexdigest() == f["core-metadata"]["sha256"]
            for href, _, text in links(html_page):
                assert urljoin(page_url, href).split("#")[0].endswith("/files/" + text)
    numpy = httpx.get(f"{ti.deps_index_url}/numpy/").text
    assert 'href="../../files/numpy-2.0.2-cp39-cp39-win_amd64.whl#sha256=' in numpy
    assert 'data-requires-python="&gt;=3.9"' in numpy and "numpy-2.0.2.tar.gz" in numpy
    jinja = httpx.get(f"{ti.deps_index_url}/jinja2/").text
    assert f'href="{ti.deps.url}/files/jinja2-3.1.4-py3-none-any.whl#sha256=' in jinja
    filelock = httpx.get(f"{ti.deps_index_url}/filelock/", headers={"Accept": JSON_TYPE}).json()
    yanked = {f["filename"]: f["yanked"] for f in filelock["files"]}
    assert yanked["filelock-3.16.2-py3-none-any.whl"] == "broken"
    assert yanked["filelock-3.16.1-py3-none-any.whl"] is False
    assert 'data-yanked="broken"' in httpx.get(f"{ti.deps_index_url}/filelock/").text
    nx = httpx.get(f"{ti.deps_index_url}/networkx/", headers={"Accept": JSON_TYPE}).json()
    assert "3.4rc1" in nx["versions"]
    mk = httpx.get(f"{ti.deps_index_url}/markupsafe/", headers={"Accept": JSON_TYPE}).json()
    assert all(f["core-metadata"] is False for f in mk["files"])
    assert any(f["filename"].startswith("MarkupSafe-2.1.5-cp39-cp39-win") for f in mk["files"])
    redirect = httpx.get(f"{ti.deps_index_url}/MarkupSafe/")
    assert redirect.status_code == 301 and redirect.headers["location"] == "/simple/markupsafe/"
    assert httpx.get(f"{ti.deps_index_url}/scipy/").status_code == 404


def test_flat_pages(ti: TorchIndex) -> None:
    url = ti.flat_url("cu121")
    page = httpx.get(url).text
    assert "&#43;" in page and "%2B" in page and "sha256" not in page
    found = [(h, t) for h, _, t in links(page) if t != "../"]
    assert len(found) == sum(len(ti.universe.on_page("cu121", p)) for p in FAMILY)
    assert any("+" in h for h, _ in found) and any("%2B" in h for h, _ in found)
    with httpx.Client() as client:
        for href, text in found[:40]:  # HTMLParser has already turned &#43; into +
            r = client.get(urljoin(url, href))
            assert r.status_code == 200, href
            assert hashlib.sha256(r.content).hexdigest() == ti.sha256(text)
    assert not any("+cu118" in t for _, t in found)
