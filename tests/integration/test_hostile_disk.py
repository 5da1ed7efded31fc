"""A full disk is survivable (issue 11): after ENOSPC the cache still answers and gc frees it.

A real tmpfs is filled by a real ``wheelcache fetch`` of a file bigger than the disk.  Before
this was fixed, sqlite's WAL needed a byte of disk even to read, and ``ls``, ``info``,
``verify`` and ``gc`` all failed with "disk I/O error" until a file was deleted by hand.
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cachefill import add_wheel
from tests.support.hostile import MIB, CraftedIndex, run_wheelcache
from tests.support.httpserver import FileServer
from tests.support.wheels import build_wheel
from wheelcache.store.cache import Cache


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 6 MiB filesystem (CI runs as root and mounts it for real)."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_after_the_disk_filled_up_the_cache_answers_and_gc_frees_space(
    small_disk: Path, tmp_path: Path
) -> None:
    cache = Cache(small_disk / "cache")
    long_ago = time.time() - 200 * 86400
    for name in ("old", "older"):
        wheel = build_wheel(tmp_path / "build", name, "1.0", payload_size=MIB)
        row = cache.catalog.by_sha256(add_wheel(cache, wheel, name, "1.0").sha256)
        assert row is not None
        cache.catalog.add(dataclasses.replace(row, fetched_at=long_ago, used_at=long_ago))
    big = build_wheel(tmp_path / "build", "big", "1.0", payload_size=8 * MIB).read_bytes()
    with FileServer() as srv:
        index = CraftedIndex(srv)
        index.json_page("big", [index.entry("big-1.0-py3-none-any.whl", big)])
        run = run_wheelcache(
            "fetch", "big", "--no-deps", "--index-url", index.url, "--cache-dir",
            str(cache.root), "--torch-index", index.url + "/{variant}", cwd=tmp_path,
        )  # fmt: skip
    assert run.returncode == 1 and "disk full" in run.lines[-1], run.stderr
    assert shutil.disk_usage(small_disk).free < 64 * 1024  # really full

    for args in (["ls"], ["info"], ["verify"]):
        after = run_wheelcache(*args, "--cache-dir", str(cache.root), cwd=tmp_path)
        assert after.returncode == 0, (args, after.stderr)
        assert "disk I/O error" not in after.stderr and "Traceback" not in after.stderr
    listed = run_wheelcache("ls", "--cache-dir", str(cache.root), cwd=tmp_path)
    assert "old-1.0-py3-none-any.whl" in listed.stdout

    gc = run_wheelcache("gc", "--max-size", "0", "--cache-dir", str(cache.root), cwd=tmp_path)
    assert gc.returncode == 0, gc.stderr
    assert shutil.disk_usage(small_disk).free > 2 * MIB  # the two old wheels are gone
    listed = run_wheelcache("ls", "--cache-dir", str(cache.root), cwd=tmp_path)
    assert listed.returncode == 0 and "old-1.0" not in listed.stdout


def test_with_no_reserve_left_reads_still_work_and_writes_say_the_disk_is_full(
    small_disk: Path, tmp_path: Path
) -> None:
    cache = Cache(small_disk / "cache")
    add_wheel(cache, build_wheel(tmp_path / "build", "demo", "1.0"), "demo", "1.0")
    Path(cache.layout.reserve).unlink()  # released earlier, and the disk filled up again
    with open(small_disk / "filler", "wb") as fh:
        try:
            while True:
                fh.write(bytes(64 * 1024))
        except OSError:
            pass
    for args in (["ls"], ["info"], ["verify"]):
        run = run_wheelcache(*args, "--cache-dir", str(cache.root), cwd=tmp_path)
        assert run.returncode == 0 and "disk I/O error" not in run.stderr, (args, run.stderr)
    run = run_wheelcache("rm", "demo", "--cache-dir", str(cache.root), cwd=tmp_path)
    assert run.returncode == 1 and len(run.lines) == 1
    assert "the disk is full" in run.lines[0] and "free some space" in run.lines[0]
