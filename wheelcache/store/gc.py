"""``wheelcache gc``: stale partials and temp files, unreferenced blobs, then old or least
recently used wheels, then the remembered resolutions that named them.

It runs while other processes fetch into the same cache or serve it, and follows the rules in
:mod:`wheelcache.store.maintenance` (whose helpers it uses): a partial whose lock is held
belongs to a running download and stays; a blob without a catalog row goes only when it is
older than :data:`~wheelcache.store.maintenance.RECENT_SECONDS` and its lock is free; a wheel
used or fetched in the last :data:`~wheelcache.store.maintenance.RECENT_SECONDS` is never
evicted by size (a running ``fetch`` is about to hand it out).
Serving a wheel does not count as using it for the LRU order.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from wheelcache.core.resolved import MAX_RECORD, decode_record
from wheelcache.errors import CacheError
from wheelcache.store.cache import Cache, describe_os_error
from wheelcache.store.catalog import CatalogRow
from wheelcache.store.maintenance import (
    RECENT_SECONDS,
    blob_files,
    delete_wheel,
    file_digests,
    locked,
    remove_file,
    tree_size,
)

__all__ = ["PARTIAL_MAX_AGE", "TMP_MAX_AGE", "GcResult", "collect_garbage"]

PARTIAL_MAX_AGE = 30 * 86400.0  # partials kept a month unless --older-than says otherwise
TMP_MAX_AGE = 86400.0  # temp files of crashed processes
_KEY = re.compile(r"[0-9a-f]{64}")  # partial-v1/<key>.*: anything else is not ours to judge


@dataclass
class GcResult:
    """What :func:`collect_garbage` removed (or, with ``dry_run``, would remove)."""

    partials: list[str] = field(default_factory=list)
    partials_busy: list[str] = field(default_factory=list)
    temp_files: int = 0
    orphans: list[str] = field(default_factory=list)
    metadata: int = 0
    views: int = 0
    evicted: list[CatalogRow] = field(default_factory=list)
    kept_recent: int = 0
    #: Remembered resolutions (``pages-v1/resolved/``) that could no longer be used: a wheel
    #: they name is gone, or they do not read back.
    records: int = 0
    freed: int = 0
    size_after: int = 0


def _partial_keys(cache: Cache) -> dict[str, list[Path]]:
    keys: dict[str, list[Path]] = {}
    for p in Path(cache.layout.partial).iterdir():
        if p.suffix in (".part", ".json") and _KEY.fullmatch(p.stem) and p.is_file():
            keys.setdefault(p.stem, []).append(p)
    return keys


def _empty(paths: list[Path]) -> bool:
    """A partial with no byte downloaded: nothing to resume, whatever its age."""
    parts = [p for p in paths if p.suffix == ".part"]
    return not parts or all(p.stat().st_size == 0 for p in parts)


def _gc_partials(cache: Cache, res: GcResult, max_age: float, now: float, dry: bool) -> None:
    for key, paths in sorted(_partial_keys(cache).items()):
        with contextlib.suppress(FileNotFoundError):
            newest = max(p.stat().st_mtime for p in paths)
            if now - newest < max_age and not _empty(paths):
                continue
            size = sum(p.stat().st_size for p in paths if p.suffix == ".part")
            with locked(cache, key, 0) as got:
                if not got:  # a running download holds it: its partial is alive
                    res.partials_busy.append(key)
                    continue
                if not dry:
                    for p in paths:
                        remove_file(p)
            res.partials.append(key)
            res.freed += size


def _gc_temp(cache: Cache, res: GcResult, now: float, dry: bool) -> None:
    """Temp files and folders that crashed processes left in ``tmp-v1/``."""
    for p in Path(cache.layout.tmp).iterdir():
        with contextlib.suppress(OSError):
            st = p.stat()
            if now - st.st_mtime <= TMP_MAX_AGE:
                continue
            res.temp_files += 1
            if p.is_dir():
                res.freed += tree_size(p)[1]
                if not dry:
                    shutil.rmtree(p, ignore_errors=True)
            elif dry or remove_file(p):
                res.freed += st.st_size


def _gc_orphans(cache: Cache, res: GcResult, now: float, dry: bool) -> None:
    """Blobs, views and metadata files no catalog row refers to."""
    known = {r.blake3 for r in cache.catalog.all()}
    for blob in blob_files(cache):
        try:
            if blob.name in known or now - blob.stat().st_mtime < RECENT_SECONDS:
                continue  # a fresh blob may be an ingest whose row is being written
            sha, _b3, size = file_digests(blob)
        except OSError:
            continue
        # The downloader and import hold lock(sha256) while they ingest these very bytes.
        with locked(cache, sha, 0) as got:
            if not got or cache.catalog.by_blake3(blob.name):
                continue
            if not dry:
                remove_file(blob)
        res.orphans.append(blob.name)
        res.freed += size
    rows = cache.catalog.all()
    names = {r.filename for r in rows}
    for view in Path(cache.layout.wheels).glob("*.whl"):
        with contextlib.suppress(OSError):
            st = view.stat()
            if view.name not in names and now - st.st_mtime > RECENT_SECONDS:
                if dry or remove_file(view):
                    res.views += 1
                    res.freed += st.st_size if st.st_nlink == 1 else 0
    sha_known = {r.sha256 for r in rows}
    mdir = Path(cache.layout.served_metadata)
    if mdir.is_dir():
        for md in mdir.glob("*.metadata"):
            if md.stem not in sha_known and (dry or remove_file(md)):
                res.metadata += 1


def _gc_records(cache: Cache, res: GcResult, dry: bool) -> None:
    """Remembered resolutions that can never be recalled again: one naming a wheel the
    catalog no longer has (a recall would resolve anyway), or one that does not read back."""
    folder = Path(cache.layout.resolutions)
    if not folder.is_dir():
        return
    held = {(r.sha256, r.filename) for r in cache.catalog.all()}
    for path in folder.iterdir():
        if not (path.suffix == ".json" and _KEY.fullmatch(path.stem) and path.is_file()):
            continue  # not ours to judge
        with contextlib.suppress(OSError):
            with open(path, "rb") as fh:
                record = decode_record(fh.read(MAX_RECORD + 1), path.stem)
            if record is not None and all((f.sha256, f.filename) in held for f in record.files):
                continue
            size = path.stat().st_size
            if dry or remove_file(path):
                res.records += 1
                res.freed += size


def collect_garbage(
    cache: Cache,
    *,
    max_size: int | None = None,
    older_than: float | None = None,
    dry_run: bool = False,
    now: float | None = None,
) -> GcResult:
    """Remove stale partials and temp files, unreferenced blobs, then wheels unused for
    *older_than* seconds, then the least recently used wheels until the blobs fit *max_size*.
    """
    if not dry_run:
        cache.require_writable("wheelcache gc")
    now = time.time() if now is None else now
    res = GcResult()
    try:
        _gc_partials(
            cache, res, PARTIAL_MAX_AGE if older_than is None else older_than, now, dry_run
        )
        _gc_temp(cache, res, now, dry_run)
        _gc_orphans(cache, res, now, dry_run)
        rows = sorted(cache.catalog.all(), key=lambda r: (r.used_at, r.filename))
        total = sum(r.size for r in rows)
        for row in rows:
            too_old = older_than is not None and now - row.used_at > older_than
            too_big = max_size is not None and total > max_size
            if not (too_old or too_big):
                continue
            if now - max(row.used_at, row.fetched_at) < RECENT_SECONDS:
                res.kept_recent += 1
                continue
            with locked(cache, row.sha256, 0) as got:
                if not got:
                    continue
                if not dry_run:
                    delete_wheel(cache, row)
            res.evicted.append(row)
            res.freed += row.size
            total -= row.size
        res.size_after = total
        _gc_records(cache, res, dry_run)
    except OSError as exc:
        raise CacheError(describe_os_error(exc, cache.root)) from exc
    return res
