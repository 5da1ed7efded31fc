"""The cache's small writes: whole or absent, and no more file operations than they need.

A cold fetch writes two page files per project and stores every wheel; each file operation
is a system call that gives up the GIL, and on a busy run getting it back is what costs.
The operations are watched with an audit hook (``open``, ``os.mkdir``, ``os.rename``,
``os.link``, ``os.remove`` are audited by CPython), on a real cache on disk.
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from blake3 import blake3

from wheelcache.core.models import Blake3, Sha256
from wheelcache.errors import CacheError
from wheelcache.net.transfer_state import boot_marker
from wheelcache.store.cache import Cache, CachedWheel, link_or_copy

_WATCHED = {"open", "os.mkdir", "os.rename", "os.link", "os.remove"}
Watched = list[tuple[str, str]]  # (event, path)
_seen: Watched | None = None


def _audit(event: str, args: tuple[object, ...]) -> None:
    """Record (event, path): the destination of a rename or a link; not an ``open`` of a
    descriptor already open (no system call)."""
    if _seen is None or event not in _WATCHED:
        return
    path = args[1] if event in ("os.rename", "os.link") else args[0]
    if isinstance(path, (str, bytes, os.PathLike)):
        _seen.append((event, os.fsdecode(path)))


sys.addaudithook(_audit)  # a hook cannot be removed: it records only inside ``watch``


@pytest.fixture
def watch() -> Iterator[Watched]:
    global _seen
    _seen = []
    try:
        yield _seen
    finally:
        _seen = None


def _partial(cache: Cache, data: bytes) -> Path:
    part = Path(cache.layout.partial) / "x.part"
    part.write_bytes(data)
    return part


def _ingest(
    cache: Cache, part: Path, data: bytes, filename: str = "demo-1.0-py3-none-any.whl"
) -> CachedWheel:
    return cache.ingest(
        part,
        sha256=Sha256(hashlib.sha256(data).hexdigest()),
        blake3=Blake3(blake3(data).hexdigest()),
        size=len(data),
        filename=filename,
        project="demo",
        version="1.0",
        url=f"http://origin.invalid/files/{filename}",
        hash_origin="index",
    )


def test_a_small_file_is_one_new_file_and_one_rename(tmp_path: Path, watch: Watched) -> None:
    cache = Cache(tmp_path / "c")
    page = Path(cache.layout.pages) / "p.html"
    cache.write_atomic(page, b"<html>1</html>", durable=False)
    watch.clear()
    cache.write_atomic(page, b"<html>2</html>", durable=False)
    assert [e for e, _ in watch] == ["open", "os.rename"], watch  # no reopening, no mkdir
    assert page.read_bytes() == b"<html>2</html>"
    assert list(Path(cache.layout.tmp).iterdir()) == []


def test_a_small_file_makes_its_missing_folder(tmp_path: Path) -> None:
    cache = Cache(tmp_path / "c")
    page = Path(cache.layout.pages) / "new" / "deeper" / "p.json"
    cache.write_atomic(page, b"{}")
    assert page.read_bytes() == b"{}"
    assert list(Path(cache.layout.tmp).iterdir()) == []


def test_a_small_file_that_cannot_be_placed_leaves_no_temp_file(tmp_path: Path) -> None:
    cache = Cache(tmp_path / "c")
    taken = Path(cache.layout.pages) / "a-folder"
    (taken / "inside").mkdir(parents=True)
    with pytest.raises(CacheError):
        cache.write_atomic(taken, b"x")  # a folder with files cannot be replaced by a file
    assert list(Path(cache.layout.tmp).iterdir()) == []
    assert (taken / "inside").is_dir()


def test_a_stored_wheel_moves_and_links_once(tmp_path: Path, watch: Watched) -> None:
    cache = Cache(tmp_path / "c")
    data = b"PK" + os.urandom(5000)
    part = _partial(cache, data)
    watch.clear()
    wheel = _ingest(cache, part, data)
    files = [(e, Path(p).parent.name) for e, p in watch if "catalog" not in p]
    renamed = ["blobs-v1" in Path(p).parts for e, p in watch if e == "os.rename"]
    # The partial moves into its bucket (made on the way), the view is one hard link: no
    # temp file, no second rename.
    assert ("os.link", "wheels-v1") in files
    assert not [p for _, p in watch if "tmp-v1" in p], files
    assert "os.remove" not in [e for e, _ in files], files
    assert renamed == [True, True], files  # into the blob store, refused once: no bucket yet
    assert wheel.path.read_bytes() == data
    assert os.path.samefile(wheel.path, wheel.blob)


def test_a_dangling_link_where_the_view_goes_is_replaced_not_followed(tmp_path: Path) -> None:
    cache = Cache(tmp_path / "c")
    outside = tmp_path / "outside" / "planted.whl"
    outside.parent.mkdir()
    name = "demo-1.0-py3-none-any.whl"
    (Path(cache.layout.wheels) / name).symlink_to(outside)
    data = b"PK" + os.urandom(3000)
    wheel = _ingest(cache, _partial(cache, data), data, name)
    assert not wheel.path.is_symlink()
    assert wheel.path.read_bytes() == data
    assert not outside.exists()


def test_where_hard_links_fail_the_view_is_a_whole_copy(
    tmp_path: Path, unlinkable_dir: Path
) -> None:
    """Straight to its name when nothing is there, else through a temp name; where no hard
    link can be made (another filesystem, a FAT stick) both ways end in a copy, and the
    temp name is not left behind."""
    src = tmp_path / "blob"
    src.write_bytes(b"PK" + os.urandom(4000))
    dest, tmp = unlinkable_dir / "demo-1.0-py3-none-any.whl", unlinkable_dir / "view.tmp"
    assert link_or_copy(src, dest, tmp) == dest  # nothing there yet
    assert dest.read_bytes() == src.read_bytes() and not os.path.samefile(src, dest)
    dest.write_bytes(b"an older, shorter file")
    assert link_or_copy(src, dest, tmp) == dest  # replaced through the temp name
    assert dest.read_bytes() == src.read_bytes()
    assert sorted(p.name for p in unlinkable_dir.iterdir()) == [dest.name]


def test_a_lock_remakes_its_folder(tmp_path: Path) -> None:
    cache = Cache(tmp_path / "c")
    os.rmdir(cache.layout.locks)  # emptied by hand while nothing ran
    lock = cache.lock("a" * 64)
    assert lock.acquire(timeout=0)
    lock.release()
    assert Path(cache.layout.lock("a" * 64)).is_file()


def test_the_boot_is_read_once_per_process(watch: Watched) -> None:
    boot_marker()
    watch.clear()
    first = boot_marker()
    assert boot_marker() == first
    assert watch == []
