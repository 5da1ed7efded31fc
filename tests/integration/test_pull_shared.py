"""The one-transfer-many-readers rules, driven directly: a real part file, real threads."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from wheelcache.core.models import Blake3, Sha256
from wheelcache.core.partial import PartialState, Segment
from wheelcache.errors import HashMismatchError
from wheelcache.net.download import DownloadJob
from wheelcache.serve.shared_transfer import Chunk, SharedTransfer, TransferFailed
from wheelcache.store.cache import CachedWheel

DATA = bytes(range(200)) * 5  # 1000 bytes
SHA = Sha256("a" * 64)


def _shared(tmp_path: Path) -> SharedTransfer:
    part = tmp_path / "x.part"
    part.write_bytes(DATA)
    job = DownloadJob(
        "http://up.invalid/x-1.0-py3-none-any.whl", "x-1.0-py3-none-any.whl", "x", "1.0", SHA
    )
    return SharedTransfer(job, part)


def _state(*segments: tuple[int, int, int]) -> PartialState:
    return PartialState(
        "http://up.invalid/x",
        "x-1.0-py3-none-any.whl",
        SHA,
        len(DATA),
        segments=[Segment(*s) for s in segments],
    )


def _wheel(tmp_path: Path) -> CachedWheel:
    blob = tmp_path / "blob"
    blob.write_bytes(DATA)
    return CachedWheel(
        "x-1.0-py3-none-any.whl",
        blob,
        blob,
        SHA,
        Blake3("b" * 64),
        len(DATA),
        "x",
        "1.0",
        "u",
        "index",
    )


def test_readers_get_what_arrived_and_the_last_byte_only_after_verification(
    tmp_path: Path,
) -> None:
    shared = _shared(tmp_path)
    shared.starting(_state((0, 0, 500), (500, 500, 1000)))
    shared.progressed(_state((0, 300, 500), (500, 700, 1000)))
    got = shared.read(0, 10_000, -1, timeout=1)
    assert isinstance(got, Chunk) and got.data == DATA[:300]  # up to the first hole
    got = shared.read(550, 10_000, got.generation, timeout=1)
    assert isinstance(got, Chunk) and got.data == DATA[550:700]
    shared.progressed(_state((0, 500, 500), (500, 1000, 1000)))  # every byte is there …
    got = shared.read(300, 10_000, got.generation, timeout=1)
    assert isinstance(got, Chunk) and got.data == DATA[300:999]  # … but the last one waits
    with pytest.raises(TransferFailed, match="nothing new"):
        shared.read(999, 1, got.generation, timeout=0.3)
    wheel = _wheel(tmp_path)
    threading.Timer(0.2, shared.settle, (wheel, None)).start()
    t0 = time.monotonic()
    assert shared.read(999, 1, got.generation, timeout=5) == wheel  # the rest from the blob
    assert time.monotonic() - t0 >= 0.15


def test_a_failed_transfer_cuts_every_reader(tmp_path: Path) -> None:
    shared = _shared(tmp_path)
    shared.starting(_state((0, 0, 1000)))
    shared.progressed(_state((0, 600, 1000)))
    got = shared.read(0, 100, -1, timeout=1)
    assert isinstance(got, Chunk)
    error = HashMismatchError("http://up.invalid/x", "x-1.0-py3-none-any.whl", SHA, "c" * 64)
    threading.Timer(0.1, shared.settle, (None, error)).start()
    with pytest.raises(TransferFailed, match="hash mismatch"):
        shared.read(600, 100, got.generation, timeout=5)  # was waiting for more bytes
    with pytest.raises(TransferFailed, match="hash mismatch"):
        shared.wait_size(1)


def test_a_restart_cuts_readers_that_sent_bytes_and_keeps_the_others(tmp_path: Path) -> None:
    shared = _shared(tmp_path)
    shared.starting(_state((0, 0, 1000)))
    shared.progressed(_state((0, 400, 1000)))
    sent = shared.read(0, 100, -1, timeout=1)
    assert isinstance(sent, Chunk)
    shared.starting(_state((0, 0, 1000)))  # the file starts over from byte 0
    with pytest.raises(TransferFailed, match="started over"):
        shared.read(100, 100, sent.generation, timeout=1)
    shared.progressed(_state((0, 50, 1000)))
    fresh = shared.read(0, 100, -1, timeout=1)  # a reader with nothing sent carries on
    assert isinstance(fresh, Chunk) and fresh.data == DATA[:50]
    assert fresh.generation != sent.generation


def test_a_resumed_partial_is_readable_at_once(tmp_path: Path) -> None:
    shared = _shared(tmp_path)
    assert shared.generation() == 0
    shared.starting(_state((0, 800, 1000)))  # an earlier run's bytes: same generation
    got = shared.read(0, 10_000, -1, timeout=1)
    assert isinstance(got, Chunk) and got.data == DATA[:800]
    assert shared.wait_size(1) == len(DATA)
