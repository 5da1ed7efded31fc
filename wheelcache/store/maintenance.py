"""Looking after the cache: ``ls``, ``verify``, ``rm`` and ``info``, and the deletion helpers
that ``gc`` (:mod:`wheelcache.store.gc`) shares with them.

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

``verify`` also checks the METADATA files ``serve`` and ``index`` extracted from the wheels
(``metadata-v1/<sha256>.metadata``): pip checks them against the hash on the page and then
trusts their dependency lists, so a damaged one is rewritten from its wheel (atomically, as
the publisher writes it) and named.
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from blake3 import blake3 as _blake3
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import canonicalize_name

from wheelcache.core.checks import safe_filename
from wheelcache.core.layout import METADATA_BUCKET, WHEELS_BUCKET
from wheelcache.core.units import parse_age, parse_size
from wheelcache.errors import CacheError
from wheelcache.store.cache import Cache
from wheelcache.store.catalog import CatalogRow, check_row
from wheelcache.store.metadata import read_wheel_metadata

__all__ = [
    "RECENT_SECONDS",
    "CacheInfo",
    "CacheProblem",
    "RemoveResult",
    "VerifyResult",
    "WheelInfo",
    "blob_files",
    "cache_info",
    "delete_wheel",
    "file_digests",
    "list_wheels",
    "locked",
    "match_spec",
    "parse_age",
    "parse_size",
    "remove_file",
    "remove_wheels",
    "tree_size",
    "verify_cache",
]

log = logging.getLogger(__name__)

RECENT_SECONDS = 15 * 60.0
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


def _printable(text: str) -> str:
    shown = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)
    return shown if len(shown) <= 120 else shown[:117] + "..."


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
def locked(cache: Cache, key: str, timeout: float) -> Iterator[bool]:
    """Hold ``cache.lock(key)`` if it can be had within *timeout*; yields whether it was."""
    lock = cache.lock(key)
    got = lock.acquire(timeout=timeout)
    try:
        yield got
    finally:
        if got:
            lock.release()


def remove_file(path: Path) -> bool:
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
    remove_file(view)


def delete_wheel(cache: Cache, row: CatalogRow) -> None:
    """Row, then view, then blob and metadata file (if no other row uses them)."""
    blob = cache.blob_path(row.blake3)
    cache.catalog.remove(row.sha256, row.filename)
    _drop_view(cache, row)
    if not cache.catalog.by_blake3(row.blake3):
        remove_file(blob)
    if cache.catalog.by_sha256(row.sha256) is None:
        remove_file(Path(cache.layout.served_metadata) / f"{row.sha256}.metadata")


# -- verify ---------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class CacheProblem:
    """One finding: kind is corrupt, truncated, missing, extra, repaired, or view (a
    ``wheels-v1`` name that is missing or wrong and could not be remade)."""

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
    qdir = Path(cache.layout.quarantine)
    try:  # the name is for people; a name an older wheelcache stored unchecked is not used
        name = safe_filename(row.filename)
    except ValueError:
        name = "unnamed"
    dest = qdir / f"{name}.{row.blake3[:16]}.{int(time.time())}"
    cache.catalog.remove(row.sha256, row.filename)
    _drop_view(cache, row)
    remove_file(Path(cache.layout.served_metadata) / f"{row.sha256}.metadata")
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
    if cache.read_only:
        return [CacheProblem(kind, row.filename, f"{why}; left in place (the cache is read-only)")]
    with locked(cache, row.sha256, 30) as got:
        if not got:
            return [
                CacheProblem(kind, row.filename, f"{why}; in use by another process, left in place")
            ]
        now = cache.catalog.get(row.sha256, row.filename)
        if now is None or now.blake3 != row.blake3 or _judge(blob, row) != verdict:
            return []  # another process changed it meanwhile (removed, or fetched it again)
        if kind == "missing":
            cache.catalog.remove(row.sha256, row.filename)
            _drop_view(cache, row)
            return [
                CacheProblem(kind, row.filename, f"{why}; removed its catalog row (fetch it again)")
            ]
        dest = _quarantine(cache, row, blob)
    if dest is None:
        return [
            CacheProblem(
                kind,
                row.filename,
                f"{why}; removed from the catalog, but the "
                "blob is in use and stays until gc removes it",
            )
        ]
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
    if cache.read_only:  # the blob is sound: a missing name is no lost wheel
        detail = f"wheels-v1/{row.filename} {why}; not remade (the cache is read-only)"
        return [CacheProblem("view", row.filename, detail)]
    cache.place_view(row)
    return [CacheProblem("repaired", row.filename, f"{WHEELS_BUCKET}/{row.filename} {why}; remade")]


def verify_cache(cache: Cache) -> VerifyResult:
    """Re-hash every blob (blake3 = its name, sha256 = the catalog); quarantine bad ones
    (in a read-only cache: name them and leave everything as it is)."""
    problems: list[CacheProblem] = []
    rows = cache.catalog.all()
    for row in rows:
        try:
            check_row(row)
        except ValueError as exc:  # an older wheelcache stored what an index said, unchecked
            if cache.read_only:
                problems.append(CacheProblem("corrupt", _printable(row.filename), str(exc)))
                continue
            cache.catalog.remove(row.sha256, row.filename)
            problems.append(
                CacheProblem(
                    "corrupt",
                    _printable(row.filename),
                    f"the catalog row is unsafe ({exc}); removed the row (fetch it again)",
                )
            )
            continue
        problems += _check_row(cache, row)
    now = cache.catalog.all()
    known = {r.blake3 for r in now}
    for blob in blob_files(cache):
        if blob.name not in known:
            problems.append(
                CacheProblem(
                    "extra", blob.name, "blob with no catalog row (wheelcache gc removes it)"
                )
            )
    problems += _check_metadata_files(cache, {r.sha256: r for r in now})
    return VerifyResult(len(rows), sum(r.size for r in rows), tuple(problems))


def _check_metadata_files(cache: Cache, rows: dict[str, CatalogRow]) -> list[CacheProblem]:
    """Each extracted ``metadata-v1/<sha256>.metadata`` against the METADATA in its wheel."""
    mdir = Path(cache.layout.served_metadata)
    if not mdir.is_dir():
        return []
    out = []
    for md in sorted(mdir.glob("*.metadata")):
        rel = f"{METADATA_BUCKET}/{md.name}"
        row = rows.get(md.stem)
        if row is None:
            if _HEX64.match(md.stem):
                out.append(
                    CacheProblem(
                        "extra",
                        rel,
                        "METADATA of a wheel that is not in the catalog (wheelcache gc removes it)",
                    )
                )
            continue
        try:
            want = read_wheel_metadata(cache.blob_path(row.blake3), row.project)
            have = md.read_bytes()
        except (OSError, ValueError):
            continue  # the wheel was removed meanwhile, or is damaged (named above)
        if have == want:
            continue
        if cache.read_only:
            detail = f"{rel} differs from the METADATA in the wheel; left (the cache is read-only)"
            out.append(CacheProblem("corrupt", row.filename, detail))
            continue
        try:
            cache.write_atomic(md, want)
            what = "rewrote it from the wheel"
        except CacheError as exc:
            remove_file(md)  # serve and index extract it again when it is missing
            what = f"removed it (cannot rewrite it: {exc})"
        out.append(
            CacheProblem(
                "repaired",
                row.filename,
                f"{rel} differed from the METADATA in the wheel; {what} (restart a running serve)",
            )
        )
    return out


def blob_files(cache: Cache) -> list[Path]:
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
    cache.require_writable("wheelcache rm")
    removed, busy = [], []
    for row in rows:
        with locked(cache, row.sha256, wait) as got:
            if got:
                delete_wheel(cache, row)
                removed.append(row)
            else:
                busy.append(row)
    return RemoveResult(tuple(removed), tuple(busy))


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


def tree_size(path: Path, pattern: str = "*") -> tuple[int, int]:
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
    blobs = blob_files(cache)
    blobs_size = sum(p.stat().st_size for p in blobs if p.exists())
    partials, partials_size = tree_size(Path(cache.layout.partial), "*.part")
    pages, pages_size = tree_size(Path(cache.layout.pages), "*.body")
    quarantined, _ = tree_size(Path(cache.layout.quarantine))
    _, total = tree_size(cache.root)
    with contextlib.suppress(OSError):  # space held for the catalog, not cache content
        total -= Path(cache.layout.reserve).stat().st_size
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
        cache.root,
        len(rows),
        sum(r.size for r in rows),
        len(blobs),
        blobs_size,
        partials,
        partials_size,
        pages,
        pages_size,
        quarantined,
        total,
        free,
    )
