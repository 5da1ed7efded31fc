"""``fetch`` against servers that send what they like (issue 11): bounded bodies, bounded loops.

Every server here is a real socket on 127.0.0.1 (:class:`RawServer` writes its answers by
hand): endless pages, a 2 GiB page, a 1 GiB ``.metadata``, a METADATA that inflates to 1 GiB,
an endless answer to a range read, an endless body where the index gave a size, lengths that
lie, a server that ignores Range and drops, ``Retry-After: 100000``, a redirect loop.  Each
test runs the real CLI in a subprocess and asserts its peak RSS (< 150 MB), its time, how
many requests it made, what is left in the cache and the one line the user gets.
"""

from __future__ import annotations

import hashlib
import json
import socket
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest
from packaging.utils import NormalizedName

from tests.support.hostile import (
    MIB,
    CraftedIndex,
    RawRequest,
    RawServer,
    Run,
    metadata_bomb,
    run_wheelcache,
    self_signed,
    send_forever,
    send_head,
    sha256_of,
)
from tests.support.httpserver import JSON_TYPE, FileServer
from tests.support.wheels import build_wheel
from wheelcache.core.models import Sha256
from wheelcache.errors import DownloadError
from wheelcache.net.client import Http, HttpSettings
from wheelcache.net.download import Downloader, DownloadJob
from wheelcache.net.indexes import Indexes, Sources
from wheelcache.net.pages import PageStore
from wheelcache.store.cache import Cache

LEGIT = "legit-1.0-py3-none-any.whl"
PEAK_MIB = 150


@pytest.fixture(scope="module")
def legit(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return build_wheel(tmp_path_factory.mktemp("w"), "legit", "1.0").read_bytes()


@pytest.fixture(scope="module")
def bomb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """1 MiB on disk, a METADATA of 1 GiB."""
    return metadata_bomb(tmp_path_factory.mktemp("bomb"))


@pytest.fixture
def raw() -> Iterator[RawServer]:
    with RawServer() as srv:
        yield srv


def fetch(index_url: str, cache: Path, *args: str, cwd: Path, timeout: float = 120) -> Run:
    return run_wheelcache(
        "fetch", *args, "--index-url", index_url, "--torch-index", index_url + "/{variant}",
        "--cache-dir", str(cache), cwd=cwd, timeout=timeout,
    )  # fmt: skip


def static(body: bytes, ctype: str = "application/octet-stream"):  # type: ignore[no-untyped-def]
    def route(req: RawRequest, conn: socket.socket) -> None:
        send_head(conn, "200 OK", {"Content-Type": ctype, "Content-Length": str(len(body))})
        if req.method != "HEAD":
            conn.sendall(body)

    return route


def json_page(*files: dict[str, object]) -> bytes:
    return json.dumps({"meta": {"api-version": "1.1"}, "name": "legit", "files": files}).encode()


def entry(data: bytes, name: str = LEGIT, **extra: object) -> dict[str, object]:
    sha = hashlib.sha256(data).hexdigest()
    return {"filename": name, "url": f"/files/{name}", "hashes": {"sha256": sha}, **extra}


def leftovers(cache: Path) -> int:
    """Bytes left in the cache's partial and temp buckets."""
    return sum(
        p.stat().st_size
        for bucket in ("partial-v1", "tmp-v1")
        for p in (cache / bucket).rglob("*")
        if p.is_file()
    )


def assert_one_error_line(run: Run, *fragments: str) -> None:
    assert run.returncode == 1, run.stderr[-3000:]
    assert "Traceback" not in run.stderr
    errors = [line for line in run.lines if line.startswith("wheelcache: error:")]
    assert len(errors) == 1 and errors[0] == run.lines[-1], run.stderr[-3000:]
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


# -- bodies ------------------------------------------------------------------------------------
def test_an_endless_chunked_page_is_cut_at_the_limit(raw: RawServer, tmp_path: Path) -> None:
    def endless(req: RawRequest, conn: socket.socket) -> None:
        send_head(conn, "200 OK", {"Content-Type": "text/html", "Transfer-Encoding": "chunked"})
        send_forever(conn, b"<a>" * 20000, chunked=True)

    raw.routes["/simple/legit/"] = endless
    run = fetch(raw.url + "/simple", tmp_path / "c", "legit", "--no-deps", cwd=tmp_path)
    assert_one_error_line(run, raw.url + "/simple/legit/", "larger than 16 MiB")
    assert run.peak_mib < PEAK_MIB and run.seconds < 60
    assert raw.count("/simple/legit/") == 1  # a page over the limit is not asked for again


def test_a_2_gib_page_is_refused_by_its_length(raw: RawServer, tmp_path: Path) -> None:
    def huge(req: RawRequest, conn: socket.socket) -> None:
        send_head(conn, "200 OK", {"Content-Type": "text/html", "Content-Length": str(2 << 30)})
        send_forever(conn)

    raw.routes["/simple/legit/"] = huge
    cache = tmp_path / "c"
    run = fetch(raw.url + "/simple", cache, "legit", "--no-deps", cwd=tmp_path)
    assert_one_error_line(run, "larger than 16 MiB")
    assert run.peak_mib < PEAK_MIB and run.seconds < 30
    assert sum(p.stat().st_size for p in (cache / "pages-v1").rglob("*") if p.is_file()) == 0


def test_a_page_listing_too_many_files_is_refused_before_they_are_built(
    raw: RawServer, tmp_path: Path
) -> None:
    files = [{"filename": f"legit-0.{i}-py3-none-any.whl", "url": f"/f/{i}"} for i in range(60000)]
    raw.routes["/simple/legit/"] = static(json_page(*files), JSON_TYPE)  # 4 MiB
    run = fetch(raw.url + "/simple", tmp_path / "c", "legit", "--no-deps", cwd=tmp_path)
    assert_one_error_line(run, "lists more than 52428 files")
    assert run.peak_mib < PEAK_MIB


def _other_platforms(dep: str, count: int) -> list[dict[str, object]]:
    """*count* JSON entries of *dep* for an old Windows Python, as most of a big real page."""
    url = f"https://files.invalid/packages/ab/cd/{'e' * 60}/{dep}"
    return [
        {
            "filename": f"{dep}-1.{i}-cp27-cp27m-win32.whl",
            "url": f"{url}-1.{i}.whl",
            "hashes": {"sha256": "ab" * 32},
            "core-metadata": {"sha256": "cd" * 32},
            "requires-python": ">=3.8",
            "upload-time": "2024-01-01T00:00:00.000000Z",
        }
        for i in range(count)
    ]


def test_the_pages_a_run_holds_are_bounded_in_all(tmp_path: Path) -> None:
    """Six pages of 20,000 files (9 MiB each, each under every limit; most files for other
    platforms, as on a big real page): the run holds neither all the pages nor several
    parses at once, and still resolves."""
    deps = [f"dep{n}" for n in range(6)]
    with FileServer() as srv:
        index = CraftedIndex(srv)
        top = build_wheel(tmp_path / "w", "legit", "1.0", requires_dist=deps).read_bytes()
        index.json_page("legit", [index.entry(LEGIT, top)])
        for dep in deps:
            newest = build_wheel(tmp_path / "w", dep, "1.19999").read_bytes()
            name = f"{dep}-1.19999-py3-none-any.whl"
            index.json_page(dep, [*_other_platforms(dep, 19999), index.entry(name, newest)])
        run = fetch(index.url, tmp_path / "c", "legit", "--json", cwd=tmp_path, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert len(json.loads(run.stdout)["files"]) == 7
    assert run.peak_mib < PEAK_MIB


def test_a_big_page_is_parsed_in_the_room_of_the_one_held_before(tmp_path: Path) -> None:
    """Parsing a page of 20,000 files (8 MiB) holds its body and the files made of it, not
    also a tree of dicts (entries become files as the JSON is read), and the page held before
    is let go before, not after, the parse (measured with tracemalloc: the same every run)."""

    with FileServer() as srv:
        index = CraftedIndex(srv)
        for dep in ("a", "b"):
            index.json_page(dep, _other_platforms(dep, 20000))
        http = Http(HttpSettings(retries=1))
        try:
            pages = PageStore(Cache(tmp_path / "c"), http)
            indexes = Indexes(Sources(index.url, False, (index.url,)), pages, "cpu")
            indexes.fetch(NormalizedName("a"))
            indexes.fetch(NormalizedName("b"))
            tracemalloc.start()
            try:
                first = indexes.page(NormalizedName("a"))
                assert first is not None and len(first.files) == 20000
                del first
                held, _ = tracemalloc.get_traced_memory()
                tracemalloc.reset_peak()
                second = indexes.page(NormalizedName("b"))
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
        finally:
            http.close()
    assert second is not None and len(second.files) == 20000
    assert (peak - held) / MIB < 24  # 17.5 now; 40 with a dict tree and both pages held


def test_a_1_gib_metadata_file_is_refused(raw: RawServer, legit: bytes, tmp_path: Path) -> None:
    def huge(req: RawRequest, conn: socket.socket) -> None:
        send_head(conn, "200 OK", {"Content-Length": str(1 << 30)})
        send_forever(conn, b"Name: legit\n" * 5000)

    raw.routes["/simple/legit/"] = static(json_page(entry(legit, **{"core-metadata": True})))
    raw.routes["/files/" + LEGIT] = static(legit)
    raw.routes[f"/files/{LEGIT}.metadata"] = huge
    run = fetch(raw.url + "/simple", tmp_path / "c", "legit", cwd=tmp_path)
    assert_one_error_line(run, LEGIT, "larger than 16 MiB")
    assert run.peak_mib < PEAK_MIB and run.seconds < 30


@pytest.mark.parametrize("ranges", [True, False])
def test_metadata_that_inflates_to_1_gib_is_refused(
    bomb: Path, tmp_path: Path, ranges: bool
) -> None:
    with FileServer() as srv:
        index = CraftedIndex(srv)
        index.json_page("bomb", [index.entry(bomb.name, bomb.read_bytes())])
        if not ranges:  # the whole wheel is downloaded to read its METADATA
            srv.fault(f"/files/{bomb.name}", times=None, no_ranges=True)
        run = fetch(index.url, tmp_path / "c", "bomb", cwd=tmp_path)
    assert_one_error_line(run, bomb.name, "METADATA")
    assert run.peak_mib < PEAK_MIB and run.seconds < 60


def test_an_endless_answer_to_a_range_read_is_read_no_further_than_asked(
    raw: RawServer, legit: bytes, tmp_path: Path
) -> None:
    def endless_206(req: RawRequest, conn: socket.socket) -> None:
        send_head(conn, "206 Partial Content", {"Content-Range": "bytes 0-65535/1000000"})
        send_forever(conn)

    raw.routes["/simple/legit/"] = static(json_page(entry(legit)))
    raw.routes["/files/" + LEGIT] = endless_206
    run = fetch(raw.url + "/simple", tmp_path / "c", "legit", cwd=tmp_path)
    assert_one_error_line(run, LEGIT)
    assert run.peak_mib < PEAK_MIB and run.seconds < 60


def test_a_200_without_length_never_unbinds_the_size_the_index_gave(
    raw: RawServer, legit: bytes, tmp_path: Path
) -> None:
    def endless_200(req: RawRequest, conn: socket.socket) -> None:
        send_head(conn, "200 OK", {"Content-Type": "application/octet-stream"})  # no length
        send_forever(conn)

    raw.routes["/simple/legit/"] = static(json_page(entry(legit, size=len(legit))))
    raw.routes["/files/" + LEGIT] = endless_200
    cache = tmp_path / "c"
    run = fetch(raw.url + "/simple", cache, "legit", "--no-deps", cwd=tmp_path)
    assert_one_error_line(run, "hash mismatch for " + LEGIT)
    assert run.peak_mib < PEAK_MIB and run.seconds < 30
    assert leftovers(cache) == 0


# -- loops -------------------------------------------------------------------------------------
def test_a_lying_length_without_range_support_is_given_up_within_the_retries(
    raw: RawServer, legit: bytes, tmp_path: Path
) -> None:
    def liar(req: RawRequest, conn: socket.socket) -> None:  # always 200, then hangs up
        send_head(conn, "200 OK", {"Content-Length": str(10**9)})
        conn.sendall(legit[:1176])

    raw.routes["/simple/legit/"] = static(json_page(entry(legit)))
    raw.routes["/files/" + LEGIT] = liar
    run = fetch(
        raw.url + "/simple", tmp_path / "c", "legit", "--no-deps", "--retries", "1", cwd=tmp_path
    )
    assert_one_error_line(run, LEGIT)
    assert raw.count("/files/" + LEGIT) <= 6 and run.seconds < 60


@pytest.mark.parametrize("drops", [1, 1000])
def test_a_server_ignoring_range_that_drops_is_restarted_once_then_given_up(
    raw: RawServer, legit: bytes, tmp_path: Path, drops: int
) -> None:
    big = legit + bytes(3 * MIB)  # not a wheel any more, but the bytes the index names
    sent = {"n": 0}

    def honest_but_flaky(req: RawRequest, conn: socket.socket) -> None:
        send_head(conn, "200 OK", {"Content-Length": str(len(big))})  # never a 206
        sent["n"] += 1
        if sent["n"] <= drops:
            conn.sendall(big[: MIB // 2])  # and the connection drops
        else:
            conn.sendall(big)

    raw.routes["/simple/legit/"] = static(json_page(entry(big)))
    raw.routes["/files/" + LEGIT] = honest_but_flaky
    cache = tmp_path / "c"
    run = fetch(raw.url + "/simple", cache, "legit", "--no-deps", "--json", cwd=tmp_path)
    if drops == 1:
        assert run.returncode == 0, run.stderr[-3000:]
        assert "starting over" in run.stderr
    else:
        assert_one_error_line(run, LEGIT, "ignores Range")
    assert raw.count("/files/" + LEGIT) <= 3 and run.seconds < 60


def test_a_server_sending_a_trickle_per_connection_is_given_up_within_the_retries(
    tmp_path: Path,
) -> None:
    data = bytes(range(256)) * 4096  # 1 MiB
    name = "legit-1.0-py3-none-any.whl"
    with FileServer() as srv:
        index = CraftedIndex(srv)
        index.json_page("legit", [index.entry(name, data)])
        srv.fault(f"/files/{name}", times=None, drop_after=1176)  # ranges work; it hangs up
        run = fetch(index.url, tmp_path / "c", "legit", "--no-deps", "--retries", "2", cwd=tmp_path)
        asked = srv.count(f"/files/{name}", "GET")
    assert_one_error_line(run, "gave up after 3 attempts", "run again to resume")
    assert asked <= 4 and run.seconds < 60


def test_retry_after_100000_is_not_waited_for_and_is_said(raw: RawServer, tmp_path: Path) -> None:
    def busy(req: RawRequest, conn: socket.socket) -> None:
        send_head(conn, "503 Service Unavailable", {"Retry-After": "100000", "Content-Length": "0"})

    raw.routes["/simple/legit/"] = busy
    run = fetch(raw.url + "/simple", tmp_path / "c", "legit", cwd=tmp_path)
    assert_one_error_line(run, "Retry-After", "100000")
    assert run.seconds < 30
    assert raw.count("/simple/legit/") == 1  # not once by the prefetch and once more


def test_retry_after_waits_are_bounded_in_total(raw: RawServer, tmp_path: Path) -> None:
    def busy(req: RawRequest, conn: socket.socket) -> None:
        send_head(conn, "429 Too Many Requests", {"Retry-After": "4", "Content-Length": "0"})

    raw.routes["/simple/legit/"] = busy
    run = run_wheelcache(
        "fetch", "legit", "--retries", "100", "--max-retry-wait", "10", "--index-url",
        raw.url + "/simple", "--cache-dir", str(tmp_path / "c"), cwd=tmp_path, timeout=120,
    )  # fmt: skip
    assert_one_error_line(run, "Retry-After", "10 s")
    assert 8 <= run.seconds < 30 and raw.count("/simple/legit/") <= 4


def test_a_redirect_loop_during_a_download_is_one_line(
    raw: RawServer, legit: bytes, tmp_path: Path
) -> None:
    def loop(req: RawRequest, conn: socket.socket) -> None:
        send_head(conn, "302 Found", {"Location": "/files/" + LEGIT, "Content-Length": "0"})

    raw.routes["/simple/legit/"] = static(json_page(entry(legit)))
    raw.routes["/files/" + LEGIT] = loop
    cache = tmp_path / "c"
    run = fetch(raw.url + "/simple", cache, "legit", "--no-deps", cwd=tmp_path)
    assert_one_error_line(run, LEGIT, "redirect")
    assert leftovers(cache) == 0


def test_a_redirect_from_https_to_http_is_refused(
    raw: RawServer, legit: bytes, tmp_path: Path
) -> None:
    cert, tls = self_signed(tmp_path)
    raw.routes["/files/" + LEGIT] = static(legit)  # plain http: must never be asked
    with RawServer(tls) as secure:
        secure.routes["/simple/legit/"] = static(json_page(entry(legit)), JSON_TYPE)

        def downgrade(req: RawRequest, conn: socket.socket) -> None:
            location = raw.url + "/files/" + LEGIT
            send_head(conn, "302 Found", {"Location": location, "Content-Length": "0"})

        secure.routes["/files/" + LEGIT] = downgrade
        run = run_wheelcache(
            "fetch", "legit", "--no-deps", "--index-url", secure.url + "/simple",
            "--cache-dir", str(tmp_path / "c"), cwd=tmp_path, env={"SSL_CERT_FILE": str(cert)},
        )  # fmt: skip
    assert_one_error_line(run, "redirected from https to plain http", "refused")
    assert raw.count("/files/" + LEGIT) == 0


def test_a_url_that_is_not_http_leaves_no_partial(legit: bytes, tmp_path: Path) -> None:
    cache = Cache(tmp_path / "c")
    http = Http(HttpSettings(retries=1))
    try:
        job = DownloadJob(
            "ftp://127.0.0.1/" + LEGIT, LEGIT, "legit", "1.0", Sha256(sha256_of(legit))
        )
        with pytest.raises(DownloadError, match="ftp"):
            Downloader(http, cache).fetch(job)
    finally:
        http.close()
    assert list((cache.root / "partial-v1").iterdir()) == []


# -- what is left behind -----------------------------------------------------------------------
def test_a_permanent_failure_leaves_no_partial(
    raw: RawServer, legit: bytes, tmp_path: Path
) -> None:
    raw.routes["/simple/legit/"] = static(json_page(entry(legit)))  # the file itself is 404
    cache = tmp_path / "c"
    run = fetch(raw.url + "/simple", cache, "legit", "--no-deps", cwd=tmp_path)
    assert_one_error_line(run, "HTTP 404")
    assert list((cache / "partial-v1").iterdir()) == []


# -- what is said ------------------------------------------------------------------------------
def test_refused_files_on_a_page_are_said(legit: bytes, tmp_path: Path) -> None:
    other = build_wheel(tmp_path / "o", "legit", "1.0", payload_size=10).read_bytes()
    with FileServer() as srv:
        index = CraftedIndex(srv)
        first = index.entry(LEGIT, legit)
        second = dict(first, url="/files/other/" + LEGIT, hashes={"sha256": "ab" * 32})
        index.add_file("other/" + LEGIT, other)
        bad = dict(index.entry("legit-0.9-py3-none-any.whl", legit))
        bad["hashes"] = {"sha256": "../../outside/config"}
        index.json_page("legit", [first, second, bad])
        run = fetch(index.url, tmp_path / "c", "legit", "--no-deps", cwd=tmp_path)
    assert run.returncode == 1
    warned = " ".join(run.lines[:-1])
    assert f"{LEGIT}: listed 2 times with different sha256" in warned
    assert "legit-0.9-py3-none-any.whl: hashes.sha256 '../../outside/config'" in warned
    assert run.lines[-1].startswith("wheelcache: error:")
