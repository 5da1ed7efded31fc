"""Looking after the cache: ``ls``, ``verify``, ``rm``, ``gc`` and ``info``.

Every function here may run while another process fetches into the same cache or serves it, so
each deletion follows the same rules as the downloader:

* The per-key lock (``cache.lock(sha256)``, the key the downloader and ``import`` hold while
  they write and ingest a file) is taken before a blob or a partial download is removed; a
  partial whose lock is held belongs to a running download and is never touched.
* A wheel goes in this order: catalog row, then the ``wheels-v1`` view, then the blob.  A reader
  therefore never finds a row whose blob was deleted (one that already read the row may find
  the blob gone, as with any deleted file).
* A blob without a row is only removed when it is older than :data:`RECENT_SECONDS` and after
  its sha256 is computed and its lock is held, so a concurrent ingest of the same bytes (which
  holds that lock, and whose blob is fresh) cannot lose its blob.  A download without an index
  hash is locked by its URL key instead; for it the age rule alone protects.
* Wheels used or fetched in the last :data:`RECENT_SECONDS` are never evicted by size: a
  running ``fetch`` found or stored them and is about to hand them out.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from blake3 import blake3 as _blake3
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import canonicalize_name

from .cache import Cache, describe_os_error
from .catalog import CatalogRow
from .errors import CacheError
from .publish import METADATA_BUCKET
from .units import parse_age, parse_size

__all__ = [
    "QUARANTINE",
    "RECENT_SECONDS",
    "CacheInfo",
    "CacheProblem",
    "GcResult",
    "RemoveResult",
    "VerifyResult",
    "WheelInfo",
    "cache_info",
    "collect_garbage",
    "file_digests",
    "list_wheels",
    "match_spec",
    "parse_age",
    "parse_size",
    "remove_wheels",
    "verify_cache",
]

log = logging.getLogger(__name__)

QUARANTINE = "quarantine-v1"
RECENT_SECONDS = 15 * 60.0
PARTIAL_MAX_AGE = 30 * 86400.0  # partials kept a month unless --older-than says otherwise
TMP_MAX_AGE = 86400.0  # temp files of crashed processes
_CHUNK = 1 << 20
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def file_digests(path: Path) -> tuple[str, str, int]:
    """(sha256, blake3, size) of *path* in one read (the cache's two digests)."""
    sha = hashlib.sha256()
    b3 = _blake3(max_threads=_blake3.AUTO)
    size = 0
    with open(path, "rb") as fh:
        while buf := fh.read(_CHUNK):
            sha.update(buf)
            b3.update(buf)
            size += len(buf)
    return sha.hexdigest(), str(b3.hexdigest()), size


# -- ls -------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class WheelInfo:
    """One cached wheel as ``ls`` shows it."""

    row: CatalogRow
    targets: tuple[str, ...]
    present: bool  # the blob exists with the recorded size

    def to_dict(self) -> dict[str, Any]:
        r = self.row
        return {
            "filename": r.filename,
            "project": r.project,
            "version": r.version,
            "size": r.size,
            "sha256": r.sha256,
            "blake3": r.blake3,
            "url": r.url,
            "hash_origin": r.hash_origin,
            "fetched_at": _iso(r.fetched_at),
            "used_at": _iso(r.used_at),
            "targets": list(self.targets),
            "present": self.present,
        }


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def list_wheels(
    cache: Cache, *, project: str | None = None, target: str | None = None
) -> list[WheelInfo]:
    """The cached wheels, by filename; filtered by project name and a target substring."""
    targets = cache.catalog.targets()
    name = canonicalize_name(project) if project else None
    needle = target.lower() if target else None
    out: list[WheelInfo] = []
    for row in cache.catalog.all():
        served = tuple(targets.get(row.sha256, ()))
        if name is not None and canonicalize_name(row.project) != name:
            continue
        if needle is not None and not any(needle in t.lower() for t in served):
            continue
        try:
            present = cache.blob_path(row.blake3).stat().st_size == row.size
        except (OSError, ValueError):
            present = False
        out.append(WheelInfo(row, served, present))
    return out


# -- shared deletion helpers ----------------------------------------------------------------
@contextlib.contextmanager
def _locked(cache: Cache, key: str, timeout: float) -> Iterator[bool]:
    """Hold ``cache.lock(key)`` if it can be had within *timeout*; yields whether it was."""
    lock = cache.lock(key)
    got = lock.acquire(timeout=timeout)
    try:
        yield got
    finally:
        if got:
            lock.release()


def _unlink(path: Path) -> bool:
    try:
        path.unlink()
        return True
    except FileNotFoundError:
        return False
    except OSError as exc:  # Windows: a file another process has open cannot be deleted
        log.warning("cannot remove %s: %s", path, exc.strerror or exc)
        return False


def _drop_view(cache: Cache, row: CatalogRow) -> None:
    """Remove ``wheels-v1/<filename>`` of a deleted row, or re-point it to another row with
    the same filename (a rebuilt file from another source), newest first."""
    try:
        view = Path(cache.layout.wheel(row.filename))
    except ValueError:
        return
    for other in cache.catalog.by_filename(row.filename):
        if other.sha256 != row.sha256 and cache.blob_path(other.blake3).exists():
            with contextlib.suppress(CacheError):
                cache.place_view(other)
                return
    _unlink(view)


def _delete_wheel(cache: Cache, row: CatalogRow) -> None:
    """Row, then view, then blob (if no other row uses it) and its metadata file."""
    blob = cache.blob_path(row.blake3)
    cache.catalog.remove(row.sha256)
    _drop_view(cache, row)
    if not cache.catalog.by_blake3(row.blake3):
        _unlink(blob)
    _unlink(cache.root / METADATA_BUCKET / f"{row.sha256}.metadata")


# -- verify ---------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class CacheProblem:
    """One finding: kind is corrupt, truncated, missing, extra or repaired."""

    kind: str
    filename: str
    detail: str

    @property
    def is_error(self) -> bool:
        return self.kind in ("corrupt", "truncated", "missing")


@dataclass(frozen=True)
class VerifyResult:
    checked: int
    size: int
    problems: tuple[CacheProblem, ...]

    @property
    def ok(self) -> bool:
        return not any(p.is_error for p in self.problems)


def _quarantine(cache: Cache, row: CatalogRow, blob: Path) -> Path | None:
    """Move a bad blob aside (kept for inspection) after removing its row and view; None
    when it cannot be moved (Windows: another process has it open)."""
    qdir = cache.root / QUARANTINE
    dest = qdir / f"{row.filename}.{row.blake3[:16]}.{int(time.time())}"
    cache.catalog.remove(row.sha256)
    _drop_view(cache, row)
    _unlink(cache.root / METADATA_BUCKET / f"{row.sha256}.metadata")
    try:
        qdir.mkdir(parents=True, exist_ok=True)
        os.replace(blob, dest)
    except OSError as exc:
        log.warning("cannot move %s aside: %s", blob, exc.strerror or exc)
        return None
    return dest


def _judge(blob: Path, row: CatalogRow) -> tuple[str, str] | None:
    """(kind, why) when the blob is not what *row* says, else None."""
    try:
        size = blob.stat().st_size
        if size != row.size:
            return ("truncated" if size < row.size else "corrupt"), f"{size} of {row.size} bytes"
        sha, b3, _ = file_digests(blob)
    except FileNotFoundError:  # also when a concurrent rm removed it while we read
        return "missing", f"blob {blob.name} is gone"
    if b3 != row.blake3:
        return "corrupt", f"its blake3 is {b3}, not its name"
    if sha != row.sha256:
        return "corrupt", f"sha256 {sha}, the catalog says {row.sha256}"
    return None


def _check_row(cache: Cache, row: CatalogRow) -> list[CacheProblem]:
    blob = cache.blob_path(row.blake3)
    verdict = _judge(blob, row)
    if verdict is None:
        return _check_view(cache, row, blob)
    kind, why = verdict
    with _locked(cache, row.sha256, 30) as got:
        if not got:
            return [CacheProblem(kind, row.filename, f"{why}; in use by another process, "
                                 "left in place")]  # fmt: skip
        now = cache.catalog.by_sha256(row.sha256)
        if now is None or now.blake3 != row.blake3 or _judge(blob, row) != verdict:
            return []  # another process changed it meanwhile (removed, or fetched it again)
        if kind == "missing":
            cache.catalog.remove(row.sha256)
            _drop_view(cache, row)
            return [CacheProblem(kind, row.filename, f"{why}; removed its catalog row "
                                 "(fetch it again)")]  # fmt: skip
        dest = _quarantine(cache, row, blob)
    if dest is None:
        return [CacheProblem(kind, row.filename, f"{why}; removed from the catalog, but the "
                             "blob is in use and stays until gc removes it")]  # fmt: skip
    rel = dest.relative_to(cache.root).as_posix()
    return [CacheProblem(kind, row.filename, f"{why}; moved to {rel} (fetch it again)")]


def _check_view(cache: Cache, row: CatalogRow, blob: Path) -> list[CacheProblem]:
    view = Path(cache.layout.wheel(row.filename))
    try:
        if os.path.samefile(view, blob):
            return []
        sha, _, size = file_digests(view)  # a copy (no hard links here): check it too
        if sha == row.sha256 and size == row.size:
            return []
        why = "differs from its blob"
    except FileNotFoundError:
        why = "was missing"
    current = cache.catalog.by_filename(row.filename)
    if not current or current[0].sha256 != row.sha256 or not blob.exists():
        return []  # removed meanwhile, or the view belongs to a newer file of that name
    cache.place_view(row)
    return [CacheProblem("repaired", row.filename, f"wheels-v1/{row.filename} {why}; remade")]


def verify_cache(cache: Cache) -> VerifyResult:
    """Re-hash every blob (blake3 = its name, sha256 = the catalog); quarantine bad ones."""
    problems: list[CacheProblem] = []
    rows = cache.catalog.all()
    for row in rows:
        try:
            cache.blob_path(row.blake3)
        except ValueError:
            cache.catalog.remove(row.sha256)
            problems.append(CacheProblem("corrupt", row.filename, "bad blake3 in the catalog; "
                                         "removed the row"))  # fmt: skip
            continue
        problems += _check_row(cache, row)
    known = {r.blake3 for r in cache.catalog.all()}
    for blob in _blobs(cache):
        if blob.name not in known:
            problems.append(CacheProblem("extra", blob.name, "blob with no catalog row "
                                         "(wheelcache gc removes it)"))  # fmt: skip
    return VerifyResult(len(rows), sum(r.size for r in rows), tuple(problems))


def _blobs(cache: Cache) -> list[Path]:
    root = Path(cache.layout.blobs)
    return sorted(p for p in root.glob("*/*/*") if p.is_file() and _HEX64.match(p.name))


# -- rm -------------------------------------------------------------------------------------
def match_spec(rows: list[CatalogRow], spec: str) -> list[CatalogRow]:
    """Rows a ``rm`` SPEC names: a filename, a project name, or ``name==version``.

    ``torch==2.4.0`` also matches ``2.4.0+cu118`` (PEP 440: a pin without a local version
    ignores local versions).
    """
    text = spec.strip()
    if text.endswith(".whl"):
        return [r for r in rows if r.filename == text]
    name, _, rest = text.partition("==")
    if rest:
        try:
            spec_set = SpecifierSet(f"=={rest.strip()}")
        except InvalidSpecifier as exc:
            raise CacheError(f"{spec!r} is not a filename, a name or name==version") from exc
    project = canonicalize_name(name.strip())
    return [
        r
        for r in rows
        if canonicalize_name(r.project) == project
        and (not rest or spec_set.contains(r.version, prereleases=True))
    ]


@dataclass(frozen=True)
class RemoveResult:
    removed: tuple[CatalogRow, ...]
    busy: tuple[CatalogRow, ...]  # locked by another process; left alone

    @property
    def size(self) -> int:
        return sum(r.size for r in self.removed)


def remove_wheels(
    cache: Cache, spec: str, *, dry_run: bool = False, wait: float = 10.0
) -> RemoveResult:
    """Remove the wheels *spec* names: row, view, then blob, each under its lock (waiting up
    to *wait* seconds for a process that holds it, then leaving that wheel alone)."""
    rows = match_spec(cache.catalog.all(), spec)
    if not rows:
        raise CacheError(f"nothing in the cache {cache.root} matches {spec!r} (see wheelcache ls)")
    if dry_run:
        return RemoveResult(tuple(rows), ())
    removed, busy = [], []
    for row in rows:
        with _locked(cache, row.sha256, wait) as got:
            if got:
                _delete_wheel(cache, row)
                removed.append(row)
            else:
                busy.append(row)
    return RemoveResult(tuple(removed), tuple(busy))


# -- gc -------------------------------------------------------------------------------------
@dataclass
class GcResult:
    partials: list[str] = field(default_factory=list)
    partials_busy: list[str] = field(default_factory=list)
    temp_files: int = 0
    orphans: list[str] = field(default_factory=list)
    metadata: int = 0
    views: int = 0
    evicted: list[CatalogRow] = field(default_factory=list)
    kept_recent: int = 0
    freed: int = 0
    size_after: int = 0


def _partial_keys(cache: Cache) -> dict[str, list[Path]]:
    keys: dict[str, list[Path]] = {}
    for p in Path(cache.layout.partial).iterdir():
        if p.suffix in (".part", ".json") and p.is_file():
            keys.setdefault(p.stem, []).append(p)
    return keys


def _gc_partials(cache: Cache, res: GcResult, max_age: float, now: float, dry: bool) -> None:
    for key, paths in sorted(_partial_keys(cache).items()):
        with contextlib.suppress(FileNotFoundError):
            newest = max(p.stat().st_mtime for p in paths)
            if now - newest < max_age:
                continue
            size = sum(p.stat().st_size for p in paths if p.suffix == ".part")
            with _locked(cache, key, 0) as got:
                if not got:  # a running download holds it: its partial is alive
                    res.partials_busy.append(key)
                    continue
                if not dry:
                    for p in paths:
                        _unlink(p)
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
                res.freed += _tree(p)[1]
                if not dry:
                    shutil.rmtree(p, ignore_errors=True)
            elif dry or _unlink(p):
                res.freed += st.st_size


def _gc_orphans(cache: Cache, res: GcResult, now: float, dry: bool) -> None:
    """Blobs, views and metadata files no catalog row refers to."""
    known = {r.blake3 for r in cache.catalog.all()}
    for blob in _blobs(cache):
        try:
            if blob.name in known or now - blob.stat().st_mtime < RECENT_SECONDS:
                continue  # a fresh blob may be an ingest whose row is being written
            sha, _b3, size = file_digests(blob)
        except OSError:
            continue
        # The downloader and import hold lock(sha256) while they ingest these very bytes.
        with _locked(cache, sha, 0) as got:
            if not got or cache.catalog.by_blake3(blob.name):
                continue
            if not dry:
                _unlink(blob)
        res.orphans.append(blob.name)
        res.freed += size
    rows = cache.catalog.all()
    names = {r.filename for r in rows}
    for view in Path(cache.layout.wheels).glob("*.whl"):
        with contextlib.suppress(OSError):
            st = view.stat()
            if view.name not in names and now - st.st_mtime > RECENT_SECONDS:
                if dry or _unlink(view):
                    res.views += 1
                    res.freed += st.st_size if st.st_nlink == 1 else 0
    sha_known = {r.sha256 for r in rows}
    mdir = cache.root / METADATA_BUCKET
    if mdir.is_dir():
        for md in mdir.glob("*.metadata"):
            if md.stem not in sha_known and (dry or _unlink(md)):
                res.metadata += 1


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
    now = time.time() if now is None else now
    res = GcResult()
    try:
        _gc_partials(cache, res, PARTIAL_MAX_AGE if older_than is None else older_than, now,
                     dry_run)  # fmt: skip
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
            with _locked(cache, row.sha256, 0) as got:
                if not got:
                    continue
                if not dry_run:
                    _delete_wheel(cache, row)
            res.evicted.append(row)
            res.freed += row.size
            total -= row.size
        res.size_after = total
    except OSError as exc:
        raise CacheError(describe_os_error(exc, cache.root)) from exc
    return res


# -- info -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class CacheInfo:
    root: Path
    wheels: int
    wheels_size: int
    blobs: int
    blobs_size: int
    partials: int
    partials_size: int
    pages: int
    pages_size: int
    quarantined: int
    total_size: int
    free: int | None

    def to_dict(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in self.__dict__.items()}


def _tree(path: Path, pattern: str = "*") -> tuple[int, int]:
    count = size = 0
    if path.is_dir():
        for p in path.rglob(pattern):
            with contextlib.suppress(OSError):
                if p.is_file():
                    count += 1
                    size += p.stat().st_size
    return count, size


def cache_info(cache: Cache) -> CacheInfo:
    """Where the cache is, how big, and how many wheels, blobs, partials and pages it holds."""
    rows = cache.catalog.all()
    blobs = _blobs(cache)
    blobs_size = sum(p.stat().st_size for p in blobs if p.exists())
    partials, partials_size = _tree(Path(cache.layout.partial), "*.part")
    pages, pages_size = _tree(Path(cache.layout.pages), "*.body")
    quarantined, _ = _tree(cache.root / QUARANTINE)
    _, total = _tree(cache.root)
    wheels_dir = Path(cache.layout.wheels)
    # Views are hard links to the blobs; count their bytes once.
    for view in wheels_dir.glob("*.whl"):
        with contextlib.suppress(OSError):
            st = view.stat()
            if st.st_nlink > 1:
                total -= st.st_size
    try:
        free: int | None = shutil.disk_usage(cache.root).free
    except OSError:
        free = None
    return CacheInfo(
        cache.root, len(rows), sum(r.size for r in rows), len(blobs), blobs_size, partials,
        partials_size, pages, pages_size, quarantined, total, free,
    )  # fmt: skip
