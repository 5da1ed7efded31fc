"""The downloader against a server that misbehaves on purpose, one fault per test."""

from __future__ import annotations

import hashlib
import http.server
import json
import logging
import random
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import pytest
from blake3 import blake3

from tests.support.httpserver import FileServer
from wheelcache.core.models import Sha256
from wheelcache.errors import CacheError, DownloadError, HashMismatchError, IndexUnreachableError
from wheelcache.net.client import Http, HttpSettings
from wheelcache.net.download import Downloader, DownloadJob
from wheelcache.net.transfer import TransferSettings
from wheelcache.net.transfer_state import boot_marker
from wheelcache.store.cache import Cache

SIZE = 6 * 1024 * 1024 + 12345
NAME = "big-1.0-py3-none-any.whl"
PATH = f"/files/{NAME}"
FAST = HttpSettings(retries=3, backoff=0.05, backoff_max=0.2)
SEGMENTED = TransferSettings(
    connections=4, split_size=1 << 20, min_segment=256 << 10, stall_seconds=1.0
)
#: One connection asking for the whole file at once, to script faults request by request.
SINGLE = TransferSettings(connections=1, split_size=1 << 30, probe_size=1 << 30)
WHOLE = f"bytes=0-{(1 << 30) - 1}"


@pytest.fixture(scope="module")
def payload(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("payload") / NAME
    path.write_bytes(random.Random(7).randbytes(SIZE))
    return path


@pytest.fixture(scope="module")
def _server(payload: Path) -> Iterator[FileServer]:
    with FileServer() as srv:
        srv.add(PATH, payload)
        yield srv


@pytest.fixture
def server(_server: FileServer) -> Iterator[FileServer]:
    _server.clear_faults()
    _server.clear_log()
    yield _server
    _server.clear_faults()


def _sha(path: Path) -> Sha256:
    return Sha256(hashlib.sha256(path.read_bytes()).hexdigest())


def _job(server: FileServer, payload: Path, *, sha: str | None = None) -> DownloadJob:
    return DownloadJob(server.url + PATH, NAME, "big", "1.0", Sha256(sha or _sha(payload)))


def _download(
    server: FileServer,
    payload: Path,
    cache_dir: Path,
    settings: TransferSettings = SEGMENTED,
    http: HttpSettings = FAST,
    sha: str | None = None,
) -> tuple[Downloader, Path]:
    client = Http(http)
    try:
        dl = Downloader(client, Cache(cache_dir), settings=settings)
        wheel = dl.fetch(_job(server, payload, sha=sha))
    finally:
        client.close()
    assert wheel.path.read_bytes() == payload.read_bytes()
    assert wheel.blake3 == blake3(payload.read_bytes()).hexdigest()
    return dl, wheel.path


def _gets(server: FileServer) -> list[str | None]:
    return [r.range for r in server.requests if r.method == "GET" and r.path == PATH]


def _body_bytes(server: FileServer) -> int:
    return sum(r.body_bytes for r in server.requests if r.path == PATH)


def test_large_file_is_split_across_connections(
    server: FileServer, payload: Path, tmp_path: Path
) -> None:
    dl, _ = _download(server, payload, tmp_path)
    ranges = _gets(server)
    assert ranges[0] == f"bytes=0-{SEGMENTED.probe_size - 1}"  # a bounded probe first
    assert len(ranges) >= SEGMENTED.connections
    starts = {int(r.split("=")[1].split("-")[0]) for r in ranges if r}
    assert len(starts) >= SEGMENTED.connections
    # Thieves cut the first connection short: at most a few chunks are fetched twice.
    assert SIZE <= _body_bytes(server) <= SIZE * 1.02
    assert dl.downloaded_bytes == SIZE


def test_idle_connections_leave_when_the_last_segment_ends(
    server: FileServer, payload: Path, tmp_path: Path
) -> None:
    """Connections with nothing left to take wait for a slow one to help; when the last
    segment ends they leave at once, not at their next look (here a minute away)."""
    settings = replace(SEGMENTED, idle_seconds=60.0)
    done = threading.Event()

    def run() -> None:
        _download(server, payload, tmp_path, settings)
        done.set()

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    assert done.wait(30), "idle connections waited for their next look"
    assert len({r.range for r in server.requests if r.path == PATH}) >= settings.connections


def test_file_below_split_size_uses_one_connection(
    server: FileServer, payload: Path, tmp_path: Path
) -> None:
    settings = TransferSettings(connections=4, split_size=1 << 30)
    _download(server, payload, tmp_path, settings)
    probe = settings.probe_size
    assert _gets(server) == [f"bytes=0-{probe - 1}", f"bytes={probe}-{SIZE - 1}"]


def test_connection_reset_mid_body_resumes(
    server: FileServer, payload: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server.fault(PATH, drop_after=1_000_000, times=2)
    _download(server, payload, tmp_path)
    assert "connection reset" in caplog.text or "connection dropped" in caplog.text
    assert _body_bytes(server) <= SIZE * 1.02


def test_200_instead_of_206_starts_over_once_and_says_so(
    server: FileServer, payload: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server.fault(PATH, drop_after=SIZE // 3)
    server.fault(PATH, ignore_range=True)
    _download(server, payload, tmp_path, SINGLE)
    assert "sent the whole file instead of the range" in caplog.text
    assert "starting over from byte 0" in caplog.text
    assert _gets(server) == [WHOLE, f"bytes={SIZE // 3}-{SIZE - 1}", WHOLE]


def test_ignoring_ranges_twice_is_an_error(
    server: FileServer, payload: Path, tmp_path: Path
) -> None:
    server.fault(PATH, drop_after=SIZE // 3)
    server.fault(PATH, ignore_range=True)
    server.fault(PATH, drop_after=SIZE // 3)
    server.fault(PATH, ignore_range=True)
    with pytest.raises(DownloadError, match="again after starting over"):
        _download(server, payload, tmp_path, SINGLE)
    assert list((tmp_path / "blobs-v1").rglob("*.*")) == []


def test_wrong_content_range_start_restarts(
    server: FileServer, payload: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server.fault(PATH, wrong_content_range=True)
    _download(server, payload, tmp_path)
    assert "Content-Range starts at" in caplog.text


def test_etag_change_between_requests_restarts(
    server: FileServer, payload: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server.fault(PATH, drop_after=SIZE // 2)
    server.fault(PATH, change_etag=True)
    _download(server, payload, tmp_path, SINGLE)
    # Either the If-Range made the server send 200, or the new ETag on a 206 was noticed.
    assert "starting over from byte 0" in caplog.text


def test_stalled_connection_is_replaced_within_seconds(
    server: FileServer, payload: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server.fault(PATH, stall_after=100_000, stall_seconds=30)
    _download(server, payload, tmp_path)
    assert "stalled" in caplog.text


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_is_honoured(
    server: FileServer,
    payload: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    status: int,
) -> None:
    server.fault(PATH, status=status, retry_after="1")
    _download(server, payload, tmp_path)
    assert f"HTTP {status} at byte 0; retrying in 1.0s" in caplog.text


def test_server_errors_then_success(server: FileServer, payload: Path, tmp_path: Path) -> None:
    server.fault(PATH, status=500, times=2)
    _download(server, payload, tmp_path)


def test_persistent_server_error_is_one_clear_error(
    server: FileServer, payload: Path, tmp_path: Path
) -> None:
    server.fault(PATH, status=502, times=None)
    with pytest.raises(DownloadError) as info:
        _download(server, payload, tmp_path)
    assert str(info.value).startswith(f"download of {server.url}{PATH} failed: HTTP 502")
    assert "gave up after 4 attempts" in str(info.value)


def test_redirect_to_another_host(payload: Path, tmp_path: Path) -> None:
    with FileServer() as origin, FileServer() as mirror:
        mirror.add(PATH, payload)
        origin.add(PATH, b"not this")
        origin.fault(PATH, redirect_to=mirror.url + PATH, times=None)
        _download(origin, payload, tmp_path)
        assert origin.count(PATH) >= 1 and mirror.count(PATH) >= SEGMENTED.connections


@pytest.mark.parametrize("fault", ["short_body", "long_body"])
def test_body_shorter_or_longer_than_content_length(
    server: FileServer, payload: Path, tmp_path: Path, fault: str
) -> None:
    server.fault(PATH, **{fault: True})
    _download(server, payload, tmp_path)


def test_wrong_hash_names_both_digests_and_stores_nothing(
    server: FileServer, payload: Path, tmp_path: Path
) -> None:
    server.fault(PATH, corrupt=True, times=None)
    with pytest.raises(HashMismatchError) as info:
        _download(server, payload, tmp_path)
    err = info.value
    assert err.expected == _sha(payload) and err.actual != err.expected
    assert err.expected in str(err) and err.actual in str(err)
    assert [p for p in (tmp_path / "blobs-v1").rglob("*") if p.is_file()] == []
    assert list((tmp_path / "partial-v1").iterdir()) == []
    assert list((tmp_path / "wheels-v1").iterdir()) == []


def test_two_processes_one_file(server: FileServer, payload: Path, tmp_path: Path) -> None:
    """Two processes at once: one downloads, the other waits and finds it in the cache."""
    # Slow enough (about 4 s) that the second process surely starts while the first works.
    server.fault(PATH, throttle_bps=SIZE // 8, times=None)
    code = (
        "import sys; from wheelcache.store.cache import Cache;"
        " from wheelcache.net.client import Http;"
        "from wheelcache.net.download import Downloader, DownloadJob;"
        "from wheelcache.net.transfer import TransferSettings;"
        f"dl = Downloader(Http(), Cache(__import__('pathlib').Path({str(tmp_path)!r})),"
        "  settings=TransferSettings(connections=2, split_size=1 << 20));"
        f"w = dl.fetch(DownloadJob({server.url + PATH!r}, {NAME!r}, 'big', '1.0',"
        f" {_sha(payload)!r})); print(w.blake3, dl.downloaded_bytes)"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    digests = {o[0].split()[0] for o in outs}
    assert digests == {blake3(payload.read_bytes()).hexdigest()}
    transferred = sorted(int(o[0].split()[1]) for o in outs)
    assert transferred[0] == 0 and transferred[1] == SIZE
    assert any("another wheelcache process is downloading it" in o[1] for o in outs)
    assert _body_bytes(server) < SIZE * 1.5  # not downloaded twice


@contextmanager
def _tmpfs(mnt: Path, options: str) -> Iterator[Path]:
    """A real tmpfs mounted for the test (CI runs as root, as here)."""
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


@pytest.fixture
def tiny_fs(tmp_path: Path) -> Iterator[Path]:
    """A 3 MiB filesystem: a real full disk."""
    with _tmpfs(tmp_path / "tiny", "size=3m") as mnt:
        yield mnt


def test_disk_full_is_clear_keeps_partial_and_resumes_after_space_is_freed(
    server: FileServer, payload: Path, tiny_fs: Path
) -> None:
    cache_dir = tiny_fs / "cache"
    # A disk fills up during a long download: at 1 MiB/s the room left (3 MiB less the
    # cache's 1 MiB reserve) is gone after about 2 s, a few state checkpoints after the first
    # (a transfer younger than ``state_after`` saves none: one that fails that young is
    # fetched again from byte 0).
    server.fault(PATH, throttle_bps=1 << 20)
    with pytest.raises(CacheError, match="disk full while writing to .*; free some space"):
        _download(server, payload, cache_dir, SINGLE)
    assert [p for p in (cache_dir / "blobs-v1").rglob("*") if p.is_file()] == []
    states = list((cache_dir / "partial-v1").glob("*.json"))
    assert len(states) == 1  # the consistent part is kept for a later resume
    subprocess.run(["mount", "-o", "remount,size=20m", str(tiny_fs)], check=True)
    server.clear_log()
    _download(server, payload, cache_dir, SINGLE)
    first = _gets(server)[0]
    assert first is not None and not first.startswith("bytes=0-")  # resumed, not restarted
    assert _body_bytes(server) < SIZE


def test_cancel_keeps_a_resumable_partial(
    server: FileServer, payload: Path, tmp_path: Path
) -> None:
    server.fault(PATH, throttle_bps=SIZE // 4, times=None)
    client = Http(FAST)
    dl = Downloader(client, Cache(tmp_path), settings=SEGMENTED)
    threading.Timer(1.0, dl.cancel.set).start()
    with pytest.raises(DownloadError, match="cancelled"):
        dl.fetch(_job(server, payload))
    client.close()
    states = list((tmp_path / "partial-v1").glob("*.json"))
    assert len(states) == 1
    server.clear_faults()
    server.clear_log()
    _download(server, payload, tmp_path)
    assert _body_bytes(server) < SIZE  # only the rest was fetched


@pytest.fixture(autouse=True)
def _warnings_visible(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="wheelcache")


def test_content_range_total_differing_from_the_index_size_fails_clearly(
    server: FileServer, payload: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    job = replace(_job(server, payload), size=SIZE + 10)  # the index says another size
    client = Http(FAST)
    try:
        with pytest.raises(DownloadError) as info:
            Downloader(client, Cache(tmp_path), settings=SEGMENTED).fetch(job)
    finally:
        client.close()
    assert f"Content-Range says {SIZE} bytes, expected {SIZE + 10}" in str(info.value)
    assert [p for p in (tmp_path / "blobs-v1").rglob("*") if p.is_file()] == []


@pytest.fixture
def read_only_fs(tmp_path: Path) -> Iterator[Path]:
    """A read-only filesystem (root ignores file modes, so chmod would prove nothing)."""
    with _tmpfs(tmp_path / "ro", "size=1m,ro") as mnt:
        yield mnt


def test_unwritable_cache_is_one_clear_error(read_only_fs: Path) -> None:
    with pytest.raises(CacheError) as info:
        Cache(read_only_fs / "cache")
    assert "cannot write to" in str(info.value) and "--cache-dir" in str(info.value)


class _Quirky(http.server.BaseHTTPRequestHandler):
    """Serves PAYLOAD with a weak ETag, or with ``Content-Range: …/*`` (total unknown)."""

    payload = b""
    mode = "weak"

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass

    def do_GET(self) -> None:
        data, rng, if_range = self.payload, self.headers.get("Range"), self.headers.get("If-Range")
        weak_if_range = bool(if_range and if_range.startswith("W/"))  # never matches (RFC 9110)
        if rng and not weak_if_range:
            first, _, last = rng.split("=")[1].partition("-")
            a, b = int(first), min(int(last), len(data) - 1) if last else len(data) - 1
            body = data[a : b + 1]
            self.send_response(206)
            total = "*" if self.mode == "star" else str(len(data))
            self.send_header("Content-Range", f"bytes {a}-{b}/{total}")
        else:
            body = data
            self.send_response(200)
        if self.mode == "weak":
            self.send_header("ETag", 'W/"v1"')
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.mark.parametrize("mode", ["weak", "star"])
def test_weak_etag_and_unknown_total_still_download_whole_files(
    payload: Path, tmp_path: Path, mode: str
) -> None:
    data = payload.read_bytes()[: 3 * 1024 * 1024]
    handler = type("H", (_Quirky,), {"payload": data, "mode": mode})
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    client = Http(FAST)
    try:
        url = f"http://127.0.0.1:{srv.server_address[1]}/{NAME}"
        # No index hash: only the size logic stands between a truncated file and the cache.
        wheel = Downloader(client, Cache(tmp_path), settings=SEGMENTED).fetch(
            DownloadJob(url, NAME, "big", "1.0")
        )
        assert wheel.path.read_bytes() == data
    finally:
        client.close()
        srv.shutdown()
        srv.server_close()


def test_server_ignoring_ranges_for_a_file_of_known_size(
    server: FileServer, payload: Path, tmp_path: Path
) -> None:
    """Segments are planned up front from the index's size; a 200 then becomes one stream."""
    server.fault(PATH, no_ranges=True)
    client = Http(FAST)
    try:
        job = replace(_job(server, payload), size=SIZE)
        wheel = Downloader(client, Cache(tmp_path), settings=SEGMENTED).fetch(job)
    finally:
        client.close()
    assert wheel.path.read_bytes() == payload.read_bytes()
    assert _body_bytes(server) < 2 * SIZE


def _write_partial(cache_dir: Path, payload: Path, state: dict[str, object], upto: int) -> None:
    cache = Cache(cache_dir)
    part, state_path = (Path(p) for p in cache.layout.partial_files(_sha(payload)))
    part.write_bytes(payload.read_bytes()[:upto])
    base = {
        "url": "x",
        "filename": NAME,
        "sha256": _sha(payload),
        "etag": None,
        "last_modified": None,
        "synced": None,
        "boot": boot_marker(),
    }
    state_path.write_text(json.dumps({**base, **state}))


def test_resume_of_a_partial_saved_before_the_size_was_known(
    server: FileServer, payload: Path, tmp_path: Path
) -> None:
    _write_partial(tmp_path, payload, {"size": None, "segments": [[0, 500_000, None]]}, 500_000)
    _download(server, payload, tmp_path)
    assert _gets(server)[0].startswith("bytes=500000-")  # type: ignore[union-attr]


def test_partial_shorter_than_its_state_starts_over(
    server: FileServer, payload: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _write_partial(tmp_path, payload, {"size": SIZE, "segments": [[0, 2_000_000, SIZE]]}, 1000)
    _download(server, payload, tmp_path)
    assert "starting over from byte 0" in caplog.text


def test_after_a_reboot_only_the_synced_segments_are_trusted(
    server: FileServer, payload: Path, tmp_path: Path
) -> None:
    """Bytes counted after the last fsync may be zeros after a power loss: not used."""
    size = SIZE
    good = payload.read_bytes()[:1_000_000]
    _write_partial(
        tmp_path,
        payload,
        {
            "size": size,
            "boot": "another-boot",
            "segments": [[0, 3_000_000, size]],
            "synced": [[0, 1_000_000, size]],
        },
        0,
    )
    part = next((tmp_path / "partial-v1").glob("*.part"))
    part.write_bytes(good + b"\0" * 2_000_000)  # what a power loss can leave behind
    _download(server, payload, tmp_path, TransferSettings(connections=1, split_size=1 << 30))
    assert _gets(server)[0] == f"bytes=1000000-{size - 1}"


def test_cancel_ends_a_retry_wait_at_once() -> None:
    with FileServer() as srv:
        srv.add("/page/", b"x")
        srv.fault("/page/", status=503, retry_after="60", times=None)
        http = Http(HttpSettings(retries=3))
        threading.Timer(0.5, http.cancel).start()
        with pytest.raises(IndexUnreachableError, match="cancelled"):
            http.get(srv.url + "/page/")
        http.close()
        assert len(srv.requests) == 1  # no second attempt after the 60 s wait was cut short
