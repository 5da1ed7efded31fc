"""Cache care on real caches: ls, verify, rm, gc and info, also while a fetch is running."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from blake3 import blake3
from click.testing import CliRunner, Result

from tests.support.cachefill import add_wheel
from tests.support.fetchcli import fetch_json
from tests.support.torchindex import TorchIndex
from tests.support.wheels import build_wheel
from wheelcache.cli.main import main
from wheelcache.store.cache import Cache, CachedWheel
from wheelcache.store.gc import collect_garbage
from wheelcache.store.maintenance import RECENT_SECONDS, remove_wheels

DAY = 86400.0
TARGET = "cp39-win_amd64 (cu118)"


def make_cache(root: Path) -> tuple[Cache, dict[str, CachedWheel]]:
    """Four wheels of ~100 KB, used 40, 30, 20 and 10 days ago (a is the oldest)."""
    cache = Cache(root / "cache")
    wheels: dict[str, CachedWheel] = {}
    for i, (name, version) in enumerate([("a", "1.0"), ("b", "1.0"), ("b", "2.0"), ("c", "1.0")]):
        w = add_wheel(
            cache, build_wheel(root / "build", name, version, payload_size=100_000), name, version
        )
        if name == "a":
            cache.catalog.add_target(w.sha256, TARGET)  # (this also marks it used now)
        when = time.time() - (40 - 10 * i) * DAY
        row = cache.catalog.by_sha256(w.sha256)
        assert row is not None
        cache.catalog.add(dataclasses.replace(row, fetched_at=when, used_at=when))
        wheels[f"{name}-{version}"] = w
    return cache, wheels


def cli(cache: Cache, *args: str) -> Result:
    return CliRunner().invoke(main, [*args, "--cache-dir", str(cache.root)])


def names(cache: Cache) -> list[str]:
    return [r.filename for r in cache.catalog.all()]


def test_ls_lists_with_targets_and_filters(tmp_path: Path) -> None:
    cache, wheels = make_cache(tmp_path)
    data = json.loads(cli(cache, "ls", "--json").stdout)
    assert data["format"] == "wheelcache-inventory"
    first = data["wheels"][0]
    assert first["filename"] == "a-1.0-py3-none-any.whl"
    assert first["targets"] == [TARGET] and first["present"] is True
    assert first["url"] == "http://origin.invalid/files/a-1.0-py3-none-any.whl"
    assert first["sha256"] == wheels["a-1.0"].sha256 and first["size"] == wheels["a-1.0"].size
    assert first["fetched_at"].endswith("Z") and set(first) >= {"project", "version", "used_at"}
    only_b = json.loads(cli(cache, "ls", "--json", "--project", "B").stdout)["wheels"]
    assert [w["version"] for w in only_b] == ["1.0", "2.0"]
    by_target = json.loads(cli(cache, "ls", "--json", "--target", "cu118").stdout)["wheels"]
    assert [w["filename"] for w in by_target] == ["a-1.0-py3-none-any.whl"]
    human = cli(cache, "ls", "-l")
    assert human.exit_code == 0
    assert "a-1.0-py3-none-any.whl" in human.stdout and TARGET in human.stdout
    assert "from http://origin.invalid/files/a-1.0-py3-none-any.whl" in human.stdout
    assert "4 wheels" in human.stderr


def test_verify_quarantines_bad_blobs_and_names_every_problem(tmp_path: Path) -> None:
    cache, wheels = make_cache(tmp_path)
    assert cli(cache, "verify").exit_code == 0
    flipped, short, gone = wheels["a-1.0"], wheels["b-1.0"], wheels["b-2.0"]
    with open(flipped.blob, "r+b") as fh:  # one byte changed in place
        fh.seek(50_000)
        byte = fh.read(1)
        fh.seek(50_000)
        fh.write(bytes([byte[0] ^ 1]))
    with open(short.blob, "r+b") as fh:
        fh.truncate(1000)
    gone.blob.unlink()
    stray = cache.blob_path("f" * 64)
    stray.parent.mkdir(parents=True, exist_ok=True)
    stray.write_bytes(b"nobody's")

    res = cli(cache, "verify")
    assert res.exit_code == 1
    out = res.stdout
    assert "CORRUPT   a-1.0-py3-none-any.whl: its blake3 is" in out
    assert f"TRUNCATED b-1.0-py3-none-any.whl: 1000 of {short.size} bytes" in out
    assert "MISSING   b-2.0-py3-none-any.whl: blob" in out and "removed its catalog row" in out
    assert f"EXTRA     {'f' * 64}" in out
    assert "moved to quarantine-v1/a-1.0-py3-none-any.whl." in out
    quarantined = sorted(p.name for p in (cache.root / "quarantine-v1").iterdir())
    assert [q.split(".whl")[0] for q in quarantined] == ["a-1.0-py3-none-any", "b-1.0-py3-none-any"]
    # No row points to a missing blob, and no view shows a bad one.
    assert names(cache) == ["c-1.0-py3-none-any.whl"]
    assert sorted(p.name for p in (cache.root / "wheels-v1").glob("*.whl")) == names(cache)
    again = cli(cache, "verify")
    assert again.exit_code == 0 and "EXTRA" in again.stdout  # an orphan is a note, not a fault
    # A view that lost its hard link is remade.
    wheels["c-1.0"].path.unlink()
    res = cli(cache, "verify")
    assert res.exit_code == 0 and "REPAIRED  c-1.0-py3-none-any.whl" in res.stdout
    assert os.path.samefile(wheels["c-1.0"].path, wheels["c-1.0"].blob)


def test_rm_by_filename_name_and_pin(tmp_path: Path) -> None:
    cache, wheels = make_cache(tmp_path)
    res = cli(cache, "rm", "--dry-run", "b")
    assert res.exit_code == 0 and res.stdout.count("would remove") == 2
    assert len(names(cache)) == 4
    res = cli(cache, "rm", "b==2.0")
    assert res.stdout.startswith("removed b-2.0-py3-none-any.whl (") and res.stdout.count("\n") == 1
    assert not wheels["b-2.0"].blob.exists() and not wheels["b-2.0"].path.exists()
    assert cli(cache, "rm", "a-1.0-py3-none-any.whl").exit_code == 0
    assert not wheels["a-1.0"].blob.exists() and cache.catalog.targets() == {}
    assert names(cache) == ["b-1.0-py3-none-any.whl", "c-1.0-py3-none-any.whl"]
    res = cli(cache, "rm", "numpy")
    assert res.exit_code == 1 and "matches 'numpy' (see wheelcache ls)" in res.stderr
    # A wheel whose lock another process holds is left alone.
    held = cache.lock(wheels["c-1.0"].sha256)
    assert held.acquire(timeout=0)
    try:
        result = remove_wheels(cache, "c", wait=0.2)
    finally:
        held.release()
    assert result.removed == () and [r.filename for r in result.busy] == ["c-1.0-py3-none-any.whl"]
    assert wheels["c-1.0"].blob.exists()
    assert cli(cache, "verify").exit_code == 0


def _partial(cache: Cache, key: str, age: float, size: int = 5000) -> Path:
    part = cache.root / "partial-v1" / f"{key}.part"
    part.write_bytes(b"x" * size)
    (cache.root / "partial-v1" / f"{key}.json").write_text("{}")
    for p in (part, part.with_suffix(".json")):
        os.utime(p, (time.time() - age, time.time() - age))
    return part


def test_gc_partials_orphans_then_least_recently_used(tmp_path: Path) -> None:
    cache, wheels = make_cache(tmp_path)
    stale = _partial(cache, "1" * 64, 60 * DAY)
    fresh = _partial(cache, "2" * 64, 1 * DAY)
    busy = _partial(cache, "3" * 64, 60 * DAY)
    orphan = cache.blob_path(blake3(b"orphan").hexdigest())
    orphan.parent.mkdir(parents=True, exist_ok=True)
    orphan.write_bytes(b"orphan")
    os.utime(orphan, (time.time() - DAY, time.time() - DAY))
    young_orphan = cache.blob_path(blake3(b"young").hexdigest())
    young_orphan.parent.mkdir(parents=True, exist_ok=True)
    young_orphan.write_bytes(b"young")  # maybe an ingest whose row is being written: kept
    size = wheels["a-1.0"].size
    crashed = cache.root / "tmp-v1" / "bundle-pages-x"  # left by a killed process
    (crashed / "tree").mkdir(parents=True)
    (crashed / "tree" / "index.html").write_bytes(b"<html>")
    os.utime(crashed, (time.time() - 2 * DAY, time.time() - 2 * DAY))

    lock = cache.lock("3" * 64)  # a running download holds its partial's lock
    assert lock.acquire(timeout=0)
    try:
        dry = cli(cache, "gc", "--max-size", str(2 * size + 10), "--dry-run")
        assert dry.exit_code == 0 and dry.stdout.startswith("Would remove 1 stale partial")
        assert stale.exists() and orphan.exists() and len(names(cache)) == 4
        res = cli(cache, "gc", "--max-size", str(2 * size + 10))
    finally:
        lock.release()
    assert res.exit_code == 0, res.stderr
    assert "Removed 1 stale partial download(s), 1 unreferenced blob(s), 2 wheel(s)" in res.stdout
    assert "Kept 1 partial download(s) a running fetch holds" in res.stdout
    assert not stale.exists() and not stale.with_suffix(".json").exists()
    assert fresh.exists() and busy.exists() and busy.with_suffix(".json").exists()
    assert not orphan.exists() and young_orphan.exists() and not crashed.exists()
    assert "1 leftover file(s)" in res.stdout
    # The two least recently used went: a (40 days) and b 1.0 (30 days).
    assert names(cache) == ["b-2.0-py3-none-any.whl", "c-1.0-py3-none-any.whl"]
    assert not wheels["a-1.0"].blob.exists() and not wheels["a-1.0"].path.exists()
    assert cli(cache, "verify").exit_code == 0


def test_gc_older_than_and_recent_wheels_are_kept(tmp_path: Path) -> None:
    cache, wheels = make_cache(tmp_path)
    res = collect_garbage(cache, older_than=25 * DAY)
    assert [r.filename for r in res.evicted] == ["a-1.0-py3-none-any.whl", "b-1.0-py3-none-any.whl"]
    fresh = add_wheel(cache, build_wheel(tmp_path / "b2", "d", "1.0"), "d", "1.0")
    res = collect_garbage(cache, max_size=0)
    assert res.kept_recent == 1 and names(cache) == ["d-1.0-py3-none-any.whl"]
    assert fresh.blob.exists()
    later = collect_garbage(cache, max_size=0, now=time.time() + RECENT_SECONDS + 1)
    assert [r.filename for r in later.evicted] == ["d-1.0-py3-none-any.whl"]
    assert names(cache) == [] and not fresh.blob.exists()


def test_info_shows_location_size_and_counts(tmp_path: Path) -> None:
    cache, wheels = make_cache(tmp_path)
    _partial(cache, "1" * 64, 0, size=7000)
    (cache.root / "pages-v1" / "simple" / "ab").mkdir(parents=True)
    (cache.root / "pages-v1" / "simple" / "ab" / "x.body").write_bytes(b"<html>")
    data = json.loads(cli(cache, "info", "--json").stdout)
    total = sum(w.size for w in wheels.values())
    assert data["root"] == str(cache.root)
    assert (data["wheels"], data["wheels_size"], data["blobs"], data["blobs_size"]) == (
        4,
        total,
        4,
        total,
    )
    assert (data["partials"], data["partials_size"], data["pages"]) == (1, 7000, 1)
    assert total + 7000 < data["total_size"] < 2 * total  # hard-linked views count once
    human = cli(cache, "info").stdout
    assert f"Location:   {cache.root}" in human and "Wheels:     4 (" in human


# -- while a fetch runs -----------------------------------------------------------------------
FN = "torch-2.4.0+cu118-cp39-cp39-win_amd64.whl"


def test_gc_and_rm_while_a_fetch_downloads(torch_index: TorchIndex, tmp_path: Path) -> None:
    cache_dir = tmp_path / "c"
    cache = Cache(cache_dir)
    old = add_wheel(cache, build_wheel(tmp_path / "b", "old", "1.0"), "old", "1.0")
    row = cache.catalog.by_sha256(old.sha256)
    assert row is not None
    cache.catalog.add(
        dataclasses.replace(
            row, used_at=time.time() - 100 * DAY, fetched_at=time.time() - 100 * DAY
        )
    )
    size = torch_index.file_path(FN).stat().st_size
    torch_index.cdn.fault(torch_index.url(FN), throttle_bps=size // 6, times=None)  # ~6 s
    cmd = [
        sys.executable,
        "-m",
        "wheelcache",
        "fetch",
        "--cuda",
        "118",
        "--py",
        "39",
        "--platform",
        "win_amd64",
        "--torch",
        "2.4.0",
        "--no-deps",
        "torch",
        "--torch-index",
        torch_index.torch_index_url,
        "--index-url",
        torch_index.deps_index_url,
        "--cache-dir",
        str(cache_dir),
        "--json",
        "--connections",
        "1",
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("WHEELCACHE_")}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        part = cache_dir / "partial-v1" / f"{torch_index.sha256(FN)}.part"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (part.exists() and part.stat().st_size):
            time.sleep(0.05)
        assert part.exists(), "the download never started"
        # The partial is "older" than 0 seconds, and everything is over a 0-byte limit.
        res = cli(cache, "gc", "--older-than", "0s", "--max-size", "0")
        assert res.exit_code == 0, res.stderr
        assert "Kept 1 partial download(s) a running fetch holds" in res.stdout
        assert part.exists() and proc.poll() is None
        assert names(cache) == []  # the old, unrelated wheel went
        assert cli(cache, "rm", "torch").exit_code == 1  # not in the cache yet: nothing to do
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    (f,) = json.loads(out)["files"]
    assert f["sha256"] == torch_index.sha256(FN)
    assert hashlib.sha256(Path(f["path"]).read_bytes()).hexdigest() == f["sha256"]
    # Right after the fetch, a gc that wants everything gone still keeps the fresh wheel.
    res = cli(cache, "gc", "--max-size", "0")
    assert "Kept 1 wheel(s) used in the last 15 minutes" in res.stdout
    assert names(cache) == [FN]
    assert cli(cache, "verify").exit_code == 0


@pytest.mark.parametrize("spec", ["torch", FN, "torch==2.4.0"])
def test_rm_after_fetch_leaves_a_consistent_cache(
    torch_index: TorchIndex, tmp_path: Path, spec: str
) -> None:
    cache_dir = tmp_path / "c"
    res = CliRunner().invoke(
        main,
        [
            "fetch",
            "--cuda",
            "118",
            "--py",
            "39",
            "--platform",
            "win_amd64",
            "--torch",
            "2.4.0",
            "--torch-index",
            torch_index.torch_index_url,
            "--index-url",
            torch_index.deps_index_url,
            "--cache-dir",
            str(cache_dir),
            "--json",
        ],
    )
    assert res.exit_code == 0, res.stderr
    cache = Cache(cache_dir)
    before = len(names(cache))
    assert cli(cache, "rm", spec).exit_code == 0
    assert FN not in names(cache) and len(names(cache)) == before - 1
    assert not (cache_dir / "wheels-v1" / FN).exists()
    assert len(list((cache_dir / "blobs-v1").glob("*/*/*"))) == before - 1
    assert cli(cache, "verify").exit_code == 0


def test_verify_really_remakes_a_damaged_view(torch_index: TorchIndex, tmp_path: Path) -> None:
    code, out, err = fetch_json(torch_index, tmp_path / "c", "filelock")
    assert code == 0, err
    view = Path(json.loads(out)["files"][0]["path"])
    good = view.read_bytes()
    view.unlink()
    view.write_bytes(b"\0" * len(good))  # same size, garbage: what a bad copy leaves
    result = CliRunner().invoke(main, ["verify", "--cache-dir", str(tmp_path / "c")])
    assert view.read_bytes() == good, result.stdout + result.stderr


def test_serving_a_wheel_counts_as_use_for_gc(torch_index: TorchIndex, tmp_path: Path) -> None:
    import httpx

    from wheelcache.serve.publish import CacheView
    from wheelcache.serve.server import IndexServer
    from wheelcache.store.cache import Cache

    code, out, err = fetch_json(torch_index, tmp_path / "c", "filelock")
    assert code == 0, err
    cache = Cache(tmp_path / "c")
    (row,) = cache.catalog.all()
    cache.catalog.touch([row.sha256], 0.0)  # long unused
    server = IndexServer(("127.0.0.1", 0), CacheView(cache))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1})
    thread.start()
    try:
        head = httpx.head(f"{server.url}/wheels/{row.filename}")
        assert head.status_code == 200
        assert cache.catalog.by_sha256(row.sha256).used_at == 0.0  # type: ignore[union-attr]
        got = httpx.get(f"{server.url}/wheels/{row.filename}")
        assert got.status_code == 200 and len(got.content) == row.size
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    assert cache.catalog.by_sha256(row.sha256).used_at > 0  # type: ignore[union-attr]
