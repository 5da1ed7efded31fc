"""What one small file costs: one request, no thread of its own, no state file, and still a
wheel whose bytes are on the disk before the blob store names it (issue 14, goal 2)."""

from __future__ import annotations

import hashlib
import os
import random
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.httpserver import FileServer
from wheelcache.core.models import Sha256
from wheelcache.core.partial import PartialState
from wheelcache.net.client import Http
from wheelcache.net.download import Downloader, DownloadJob
from wheelcache.net.transfer import TransferSettings
from wheelcache.store.cache import Cache

NAME = "small-1.0-py3-none-any.whl"
PATH = f"/files/{NAME}"
#: Over the old 1 MiB probe, under the 2 MiB one: a typical small wheel of unknown size.
PAYLOAD = random.Random(14).randbytes(1_500_000)


@pytest.fixture
def server() -> Iterator[FileServer]:
    with FileServer() as srv:
        srv.add(PATH, PAYLOAD)
        yield srv


def _job(server: FileServer) -> DownloadJob:
    sha = Sha256(hashlib.sha256(PAYLOAD).hexdigest())
    return DownloadJob(server.url + PATH, NAME, "small", "1.0", sha)  # size unknown


class _Threads:
    """A reporter that notes which threads exist while the bytes arrive."""

    def __init__(self) -> None:
        self.receivers: set[str] = set()
        self.alive: set[str] = set()

    def file_started(self, filename: str, total: int | None, initial: int) -> None:
        pass

    def file_advanced(self, filename: str, nbytes: int) -> None:
        self.receivers.add(threading.current_thread().name)
        self.alive.update(t.name for t in threading.enumerate())

    def file_restarted(self, filename: str) -> None:
        pass

    def file_finished(self, filename: str) -> None:
        pass


class _SavesNoted(Downloader):
    """The downloader, counting the state saves it is asked for."""

    saves = 0

    def _save_state(self, st: PartialState, state_path: Path, *, durable: bool = True) -> None:
        self.saves += 1
        super()._save_state(st, state_path, durable=durable)


def _fetch(
    server: FileServer, dl_type: type[Downloader], tmp_path: Path, **kw: object
) -> Downloader:
    http = Http()
    try:
        dl = dl_type(http, Cache(tmp_path / "cache"), **kw)  # type: ignore[arg-type]
        wheel = dl.fetch(_job(server))
    finally:
        http.close()
    assert wheel.path.read_bytes() == PAYLOAD
    return dl


def test_a_small_file_of_unknown_size_comes_in_one_request(
    server: FileServer, tmp_path: Path
) -> None:
    _fetch(server, Downloader, tmp_path)
    ranges = [r.range for r in server.requests if r.path == PATH]
    assert ranges == [f"bytes=0-{TransferSettings().probe_size - 1}"]


def test_a_small_file_is_received_and_hashed_by_the_thread_that_fetches_it(
    server: FileServer, tmp_path: Path
) -> None:
    threads = _Threads()
    _fetch(server, Downloader, tmp_path, reporter=threads)
    assert threads.receivers == {threading.current_thread().name}
    assert not {"wheelcache-seg", "wheelcache-hash"} & threads.alive


def test_a_transfer_saves_its_state_only_once_it_is_state_after_old(
    server: FileServer, tmp_path: Path
) -> None:
    server.fault(PATH, throttle_bps=2_000_000)  # about 0.75 s, many save intervals long
    young = _fetch(
        server, _SavesNoted, tmp_path / "young", settings=TransferSettings(state_after=60.0)
    )
    assert young.saves == 0  # a crash now would simply fetch it again
    server.fault(PATH, throttle_bps=2_000_000)
    at_once = _fetch(
        server, _SavesNoted, tmp_path / "at-once", settings=TransferSettings(state_after=0.0)
    )
    assert at_once.saves > 0


def test_the_wheel_is_fsynced_before_the_blob_store_names_it(
    server: FileServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blobs = tmp_path / "cache" / "blobs-v1"
    synced: list[tuple[int, bool]] = []  # (inode, a blob existed already)
    real_fsync = os.fsync

    def noting_fsync(fd: int) -> None:
        synced.append((os.fstat(fd).st_ino, any(p.is_file() for p in blobs.rglob("*"))))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", noting_fsync)
    _fetch(server, Downloader, tmp_path)
    blob = next(p for p in blobs.rglob("*") if p.is_file())
    assert (blob.stat().st_ino, False) in synced
