"""``fetch`` of a PEP 751 lock written by uv against the PyTorch-style index on 127.0.0.1, and
the round trip through ``export`` and ``import``: the files are uv's choice, no index is read,
every byte is checked against the lock, a lock that does not fit the target is refused before
anything is fetched."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from tests.support.lockclients import pip_install_lock, uv_compile, uv_install_lock
from tests.support.torchindex import WIN_CU118_PY39, TorchIndex
from wheelcache.bundle.export import export_bundle
from wheelcache.bundle.importer import import_bundle
from wheelcache.bundle.select import select_wheels
from wheelcache.core.target import Target, make_target
from wheelcache.errors import CacheError, HashMismatchError, LockFileError
from wheelcache.jobs.fetch import FetchRequest, FetchResult, fetch
from wheelcache.net.client import http_session
from wheelcache.reqfiles import read_lock_file
from wheelcache.store.cache import Cache

WIN39 = make_target(python="39", platform="win_amd64", variant="cu118")
UV_WIN39 = ("--python-platform", "x86_64-pc-windows-msvc", "--python-version", "3.9")
TRIO = "torch==2.4.0\ntorchvision\ntorchaudio\n"


def uv_indexes(ti: TorchIndex, variant: str = "cu118") -> tuple[str, ...]:
    """The deps origin as the index, the variant tree as the extra one (uv asks it first)."""
    return ("--index-url", ti.deps_index_url, "--extra-index-url", ti.variant_url(variant))


def fetch_lock(
    ti: TorchIndex,
    cache: Path,
    lock: Path,
    target: Target = WIN39,
    *,
    offline: bool = False,
    dry_run: bool = False,
) -> FetchResult:
    request = FetchRequest(
        target=target,
        requirements=(),
        torch_index=ti.torch_index_url,
        lock=lock,
        offline=offline,
        dry_run=dry_run,
    )
    with http_session(None, offline=offline) as http:
        return fetch(request, Cache(cache), http=http)


def lock_wheels(lock: Path) -> dict[str, str]:
    """filename → sha256 of every wheel a lock lists."""
    return {
        w.filename: w.hashes["sha256"]
        for p in read_lock_file(lock).packages
        for w in p.wheels or ()
    }


def requests(ti: TorchIndex, part: str) -> list[str]:
    return [r.path for s in ti.servers for r in s.requests if part in r.path]


def nothing_stored(cache: Path) -> bool:
    c = Cache(cache)
    return not c.catalog.all() and not list(Path(c.layout.wheels).glob("*.whl"))


@pytest.fixture
def uv_win_lock(torch_index: TorchIndex, tmp_path: Path) -> Path:
    lock = uv_compile(TRIO, tmp_path / "pylock.toml", tmp_path, *UV_WIN39, *uv_indexes(torch_index))
    torch_index.clear()
    return lock


def test_a_uv_lock_fetches_exactly_uvs_choice(
    torch_index: TorchIndex, tmp_path: Path, uv_win_lock: Path
) -> None:
    uv_choice = lock_wheels(uv_win_lock)
    plan = fetch_lock(torch_index, tmp_path / "cache", uv_win_lock, dry_run=True)
    assert plan.dry_run and {f.filename for f in plan.files} == set(uv_choice)
    assert {f.source for f in plan.files} == {"planned"} and plan.lock_file is None
    assert sum(len(s.requests) for s in torch_index.servers) == 0
    result = fetch_lock(torch_index, tmp_path / "cache", uv_win_lock)
    assert {f.filename: f.sha256 for f in result.files} == uv_choice
    assert set(uv_choice) == WIN_CU118_PY39
    assert requests(torch_index, "/simple/") == [] and requests(torch_index, "/whl/cu118/") != []
    assert requests(torch_index, ".metadata") == []  # no resolution, no metadata
    # The lock wheelcache writes holds the same files, now with their paths beside it.
    assert result.lock_file is not None
    assert lock_wheels(result.lock_file) == uv_choice
    # Again, offline: everything is in the cache.
    torch_index.clear()
    again = fetch_lock(torch_index, tmp_path / "cache", uv_win_lock, offline=True)
    assert {f.filename for f in again.files} == set(uv_choice)
    assert sum(len(s.requests) for s in torch_index.servers) == 0


def test_a_universal_lock_gives_the_target_its_wheels(
    torch_index: TorchIndex, tmp_path: Path, uv_win_lock: Path
) -> None:
    universal = uv_compile(
        TRIO,
        tmp_path / "pylock.universal.toml",
        tmp_path,
        "--universal",
        "--python-version",
        "3.9",
        *uv_indexes(torch_index),
    )
    result = fetch_lock(torch_index, tmp_path / "cache", universal)
    assert {f.filename for f in result.files} == set(lock_wheels(uv_win_lock))
    # A bundle of it for that target carries the target's wheels, not the other platforms'.
    cache = Cache(tmp_path / "cache")
    bundle = tmp_path / "bundle"
    export_bundle(cache, bundle, select_wheels(cache, lock=universal, target=WIN39))
    carried = {p.name for p in (bundle / "wheels").glob("*.whl")}
    assert carried == set(lock_wheels(uv_win_lock))
    assert lock_wheels(bundle / "pylock.cu118-cp39-win_amd64.toml") == lock_wheels(uv_win_lock)


def test_a_lock_that_does_not_cover_the_target_fetches_nothing(
    torch_index: TorchIndex, tmp_path: Path, uv_win_lock: Path
) -> None:
    linux = make_target(python="39", platform="linux_x86_64", variant="cu118")
    with pytest.raises(LockFileError) as info:
        fetch_lock(torch_index, tmp_path / "cache", uv_win_lock, linux)
    msg = str(info.value)
    assert msg.startswith(f"{uv_win_lock}: the lock does not cover cp39-linux_x86_64 (cu118)")
    for name in ("markupsafe 2.1.5", "numpy 2.0.2", "torch 2.4.0+cu118", "torchaudio"):
        assert name in msg
    assert "sympy" not in msg and "\n" not in msg
    assert sum(len(s.requests) for s in torch_index.servers) == 0
    assert nothing_stored(tmp_path / "cache")


def test_a_lock_for_another_python_fetches_nothing(
    torch_index: TorchIndex, tmp_path: Path, uv_win_lock: Path
) -> None:
    py38 = make_target(python="38", platform="win_amd64", variant="cu118")
    with pytest.raises(LockFileError, match=r"the lock requires Python >=3.9 but the target"):
        fetch_lock(torch_index, tmp_path / "cache", uv_win_lock, py38)
    assert sum(len(s.requests) for s in torch_index.servers) == 0
    assert nothing_stored(tmp_path / "cache")


def test_bytes_that_do_not_match_the_lock_are_not_kept(
    torch_index: TorchIndex, tmp_path: Path, uv_win_lock: Path
) -> None:
    fsspec = "fsspec-2024.6.1-py3-none-any.whl"
    real = torch_index.sha256(fsspec)
    lock = tmp_path / "pylock.bad.toml"
    lock.write_text(uv_win_lock.read_text().replace(real, "0" * 64), encoding="utf-8")
    with pytest.raises(HashMismatchError, match=f"hash mismatch for {fsspec}"):
        fetch_lock(torch_index, tmp_path / "cache", lock)
    assert Cache(tmp_path / "cache").catalog.by_filename(fsspec) == []


def test_a_lock_beside_its_wheels_needs_no_network(
    torch_index: TorchIndex, tmp_path: Path, uv_win_lock: Path
) -> None:
    """A lock whose ``path`` entries are there (a bundle, a fetch's wheel folder) is taken
    from the files beside it, checked, even offline and into an empty cache."""
    first = fetch_lock(torch_index, tmp_path / "a", uv_win_lock)
    assert first.lock_file is not None
    torch_index.clear()
    second = fetch_lock(torch_index, tmp_path / "b", first.lock_file, offline=True)
    assert {f.filename for f in second.files} == {f.filename for f in first.files}
    assert {f.source for f in second.files} == {"cache"}  # taken in, not downloaded
    assert len(Cache(tmp_path / "b").catalog.all()) == len(first.files)
    assert sum(len(s.requests) for s in torch_index.servers) == 0
    # A file beside the lock that is not what the lock says is refused and not kept.
    folder = tmp_path / "stick"
    folder.mkdir()
    shutil.copy(first.lock_file, folder / first.lock_file.name)
    for f in first.files:
        shutil.copy(f.path, folder / f.filename)  # type: ignore[arg-type]
    (folder / "sympy-1.13.1-py3-none-any.whl").write_bytes(b"not the wheel")
    with pytest.raises(HashMismatchError, match="hash mismatch for sympy-1.13.1"):
        fetch_lock(torch_index, tmp_path / "c", folder / first.lock_file.name, offline=True)
    assert Cache(tmp_path / "c").catalog.by_filename("sympy-1.13.1-py3-none-any.whl") == []
    # A symlink beside the lock is not a file beside it (it could name any file on the disk).
    (folder / "sympy-1.13.1-py3-none-any.whl").unlink()
    (folder / "sympy-1.13.1-py3-none-any.whl").symlink_to(Path(first.files[0].path).resolve())
    with pytest.raises(CacheError, match="neither in the cache nor beside the lock"):
        fetch_lock(torch_index, tmp_path / "d", folder / first.lock_file.name, offline=True)


def test_round_trip_uv_then_export_then_import(torch_index: TorchIndex, tmp_path: Path) -> None:
    """uv locks for this machine; wheelcache fetches the lock, exports a bundle that carries
    its own lock; pip and uv install from the bundle's lock offline; another cache imports
    the bundle and fetches the same lock with no network."""
    py = f"{sys.version_info[0]}.{sys.version_info[1]}"
    host = make_target(python=py, platform="linux_x86_64", variant="cpu")
    uv_lock = uv_compile(
        "sympy\nfsspec\n",
        tmp_path / "pylock.toml",
        tmp_path,
        "--python-platform",
        "x86_64-unknown-linux-gnu",
        "--python-version",
        py,
        "--index-url",
        torch_index.deps_index_url,
    )
    fetched = fetch_lock(torch_index, tmp_path / "online", uv_lock, host)
    assert {f.filename for f in fetched.files} == set(lock_wheels(uv_lock))
    online = Cache(tmp_path / "online")
    bundle = tmp_path / "bundle"
    export_bundle(online, bundle, select_wheels(online, lock=uv_lock, target=host))
    bundle_lock = bundle / f"pylock.cpu-cp{py.replace('.', '')}-linux_x86_64.toml"
    want = {"sympy-1.13.1", "mpmath-1.3.0", "fsspec-2024.6.1"}
    assert pip_install_lock(bundle_lock, tmp_path) == want
    assert uv_install_lock(bundle_lock, tmp_path) == want
    imported = import_bundle(Cache(tmp_path / "offline"), bundle)
    assert imported.ok and len(imported.imported) == 3
    torch_index.clear()
    again = fetch_lock(torch_index, tmp_path / "offline", uv_lock, host, offline=True)
    assert {f.sha256 for f in again.files} == {f.sha256 for f in fetched.files}
    assert sum(len(s.requests) for s in torch_index.servers) == 0
