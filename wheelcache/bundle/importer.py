"""The other side of a bundle: ``wheelcache verify BUNDLE`` and ``wheelcache import BUNDLE``.

``verify`` runs the checks of the bundle's own ``verify.py``
(:mod:`wheelcache.bundle.verify_script`) and also compares blake3.
``import`` checks each wheel's size only (a stat), then copies it
into a temp file inside the cache while hashing it, compares size, sha256 and blake3 with the
manifest, and only then ingests it (under the same per-sha256 lock the downloader holds), so a
damaged file is refused and named while the good ones still arrive, and each wheel is read
once (a USB stick reads slowly).  Where the hashes came from (``index``, ``mirror`` or
``computed``) is carried over as the exporting cache recorded it, and so are the targets it
recorded for each wheel, so ``ls --target`` and ``export`` of pins work on the offline side.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from blake3 import blake3
from packaging.utils import InvalidWheelFilename, parse_wheel_filename

from wheelcache.bundle import verify_script as bundle_verify
from wheelcache.bundle.export import write_hashed
from wheelcache.bundle.verify_script import ManifestError, Problem, Report
from wheelcache.core.layout import safe_filename
from wheelcache.core.models import Blake3, Sha256
from wheelcache.errors import BundleError, CacheError
from wheelcache.store.cache import Cache, describe_os_error

__all__ = ["ImportResult", "import_bundle", "verify_bundle"]

_ORIGINS = frozenset({"index", "mirror", "computed"})  # as fetch records them


def _blake3_factory() -> Any:
    return blake3()


def verify_bundle(path: Path) -> Report:
    """Check a bundle like its ``verify.py`` does, plus each file's blake3."""
    try:
        return bundle_verify.check_bundle(str(path), blake3=_blake3_factory)
    except ManifestError as exc:
        raise BundleError(str(exc)) from exc


@dataclass(frozen=True)
class ImportResult:
    """What :func:`import_bundle` did; ``refused`` wheels were not imported."""

    imported: tuple[str, ...]
    present: tuple[str, ...]
    refused: tuple[Problem, ...]
    problems: tuple[Problem, ...] = ()  # other files of the bundle (reported, not fatal)
    absent: tuple[str, ...] = ()  # a delta bundle's left-out wheels this cache lacks too
    requirements: Path | None = None

    @property
    def ok(self) -> bool:
        return not self.refused


def _import_wheel(
    cache: Cache, src: Path, entry: bundle_verify.Entry, item: dict[str, Any]
) -> tuple[str, Problem | None]:
    filename = entry.path.split("/", 1)[1]
    try:
        safe_filename(filename)
        name, version, _, _ = parse_wheel_filename(filename)
    except (ValueError, InvalidWheelFilename):
        return "refused", Problem("corrupt", entry.path, "not a wheel file name")
    targets = [t for t in item.get("targets") or [] if isinstance(t, str)]
    row = cache.catalog.by_sha256(entry.sha256)
    if row is not None and cache.blob_path(row.blake3).is_file():
        for t in targets:
            cache.catalog.add_target(Sha256(entry.sha256), t)
        # Nothing to import, but a damaged copy on the stick is still worth naming.
        return "present", bundle_verify.check_entry(str(src), entry, _blake3_factory)
    problem = bundle_verify.check_size(str(src), entry)  # a stat; the copy below hashes
    if problem is not None:
        return "refused", problem
    lock = cache.lock(entry.sha256)  # the key the downloader holds for these bytes
    if not lock.acquire(timeout=120):
        return "refused", Problem("busy", entry.path, "another process holds its lock")
    tmp = cache.temp_path(".whl")
    try:
        sha, b3, size = write_hashed(tmp, source=src / "wheels" / filename)
        if size != entry.size:
            kind = "truncated" if size < entry.size else "corrupt"
            return "refused", Problem(kind, entry.path, f"{size} of {entry.size} bytes")
        if sha != entry.sha256 or (entry.blake3 and b3 != entry.blake3):
            return "refused", Problem(
                "corrupt", entry.path, f"sha256 {sha}, expected {entry.sha256}"
            )
        origin = item.get("hash_origin")
        cache.ingest(
            tmp,
            sha256=Sha256(sha),
            blake3=Blake3(b3),
            size=size,
            filename=filename,
            project=str(item.get("project") or name),
            version=str(item.get("version") or version),
            url=str(item.get("url") or f"bundle:{filename}"),
            hash_origin=origin if origin in _ORIGINS else "computed",
        )
        for t in targets:
            cache.catalog.add_target(Sha256(sha), t)
        return "imported", None
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        lock.release()


def import_bundle(cache: Cache, src: Path) -> ImportResult:
    """Verify the bundle at *src* and ingest its good wheels into *cache*; name bad ones."""
    cache.require_writable("wheelcache import")
    src = src.absolute()
    try:
        manifest = bundle_verify.load_manifest(str(src))
        entries = bundle_verify.manifest_entries(manifest)
    except ManifestError as exc:
        raise BundleError(str(exc)) from exc
    items = {str(i.get("path")): i for i in manifest["files"] if isinstance(i, dict)}
    done: dict[str, list[str]] = {"imported": [], "present": []}
    refused: list[Problem] = []
    problems: list[Problem] = []
    try:
        for entry in entries:
            if entry.path.startswith("wheels/") and entry.path.endswith(".whl"):
                outcome, problem = _import_wheel(cache, src, entry, items[entry.path])
                if outcome == "refused" and problem is not None:
                    refused.append(problem)
                else:
                    done[outcome].append(entry.path.split("/", 1)[1])
                    if problem is not None:
                        problems.append(problem)
            else:
                problem = bundle_verify.check_entry(str(src), entry, _blake3_factory)
                if problem is not None:
                    problems.append(problem)
    except OSError as exc:
        raise BundleError(describe_os_error(exc, getattr(exc, "filename", None) or src)) from exc
    except CacheError as exc:
        raise BundleError(f"import into {cache.root} failed: {exc}") from exc
    listed = {e.path.lower() for e in entries}
    for rel in bundle_verify.list_files(str(src)):
        if rel.lower() not in listed:
            problems.append(Problem("extra", rel, "not listed in the manifest"))
    delta = manifest.get("delta") or {}
    absent = [
        str(w.get("filename"))
        for w in delta.get("left_out") or []
        if isinstance(w, dict) and cache.catalog.by_sha256(str(w.get("sha256"))) is None
    ]
    reqs = src / "requirements.txt"
    return ImportResult(
        tuple(done["imported"]),
        tuple(done["present"]),
        tuple(refused),
        tuple(problems),
        tuple(absent),
        reqs if reqs.is_file() else None,
    )
