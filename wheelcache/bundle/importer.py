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

What the stick says is checked before it is believed: a wheel's project and version come from
its filename (a manifest could call any wheel "torch", or put a pip option in a version),
only plain files are read (a link to a file of this machine or a FIFO is refused, see
:func:`~wheelcache.bundle.verify_script.open_regular`) and never past the manifest's size, the
requirements files must agree with the manifest, and with ``--expect`` the manifest must be the
one whose fingerprint the exporter printed.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from blake3 import blake3
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename

from wheelcache.bundle import verify_script as bundle_verify
from wheelcache.bundle.export import write_hashed
from wheelcache.bundle.verify_script import ManifestError, Problem, Report, UnsafeFile
from wheelcache.core.checks import is_sha256, safe_filename, safe_text
from wheelcache.core.models import Blake3, Sha256
from wheelcache.errors import BundleError, CacheError
from wheelcache.store.cache import Cache, describe_os_error
from wheelcache.store.catalog import HASH_ORIGINS

__all__ = ["ImportResult", "import_bundle", "verify_bundle"]

_DESCRIPTION = re.compile(r"\S+-\S+ \(\S+\)")  # Target.describe(): cp39-win_amd64 (cu118)


def _blake3_factory() -> Any:
    return blake3()


def verify_bundle(path: Path, expect: str | None = None) -> Report:
    """Check a bundle like its ``verify.py`` does, plus each file's blake3; with *expect*,
    refuse a bundle whose fingerprint differs."""
    try:
        return bundle_verify.check_bundle(str(path), blake3=_blake3_factory, expect=expect)
    except ManifestError as exc:
        raise BundleError(str(exc)) from exc
    except ValueError as exc:  # a malformed --expect
        raise BundleError(str(exc)) from exc


def _safe_name(value: object) -> bool:
    try:
        safe_filename(str(value))
    except ValueError:
        return False
    return True


def _targets(item: dict[str, Any]) -> list[str]:
    """The manifest's target descriptions of a wheel that look like ``Target.describe()``."""
    found = item.get("targets")
    return [
        t
        for t in (found if isinstance(found, list) else [])
        if isinstance(t, str) and len(t) < 200 and t.isprintable() and _DESCRIPTION.fullmatch(t)
    ]


def _origin_url(item: dict[str, Any], filename: str) -> str:
    """Where the exporting cache got the wheel (shown by ``ls -l``), if it is a sane URL."""
    url = item.get("url")
    try:
        if isinstance(url, str) and url.startswith(("https://", "http://", "bundle:")):
            return safe_text(url, what="url", limit=2000)
    except ValueError:
        pass
    return f"bundle:{filename}"


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
    targets = _targets(item)
    row = cache.catalog.get(entry.sha256, filename)
    if row is not None and cache.blob_path(row.blake3).is_file():
        for t in targets:
            cache.catalog.add_target(Sha256(entry.sha256), t)
        # Nothing to import, but a damaged copy on the stick is still worth naming.
        return "present", bundle_verify.check_entry(str(src), entry, _blake3_factory)
    problem = bundle_verify.check_size(str(src), entry)  # an lstat; the copy below hashes
    if problem is not None:
        return "refused", problem
    lock = cache.lock(entry.sha256)  # the key the downloader holds for these bytes
    if not lock.acquire(timeout=120):
        return "refused", Problem("busy", entry.path, "another process holds its lock")
    tmp = cache.temp_path(".whl")
    try:
        try:
            with bundle_verify.open_regular(str(src), entry.path) as fh:
                sha, b3, size = write_hashed(tmp, stream=fh, limit=entry.size)
        except UnsafeFile as exc:
            return "refused", Problem("unsafe", entry.path, str(exc))
        if size != entry.size:
            kind = "truncated" if size < entry.size else "corrupt"
            return "refused", Problem(
                kind, entry.path, f"{size} bytes, the manifest says {entry.size}"
            )
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
            project=canonicalize_name(name),  # the filename's, never the manifest's word
            version=str(version),
            url=_origin_url(item, filename),
            hash_origin=origin if origin in HASH_ORIGINS else "computed",
        )
        for t in targets:
            cache.catalog.add_target(Sha256(sha), t)
        return "imported", None
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        lock.release()


def import_bundle(cache: Cache, src: Path, expect: str | None = None) -> ImportResult:
    """Verify the bundle at *src* and ingest its good wheels into *cache*; name bad ones.

    Refused as a whole (:class:`BundleError`, nothing imported): a manifest whose fingerprint
    is not *expect*, and requirements files that disagree with the manifest.
    """
    cache.require_writable("wheelcache import")
    src = src.absolute()
    try:
        manifest, fingerprint = bundle_verify.read_manifest(str(src))
        if expect is not None:
            bundle_verify.check_expected(fingerprint, expect, str(src))
        entries = bundle_verify.manifest_entries(manifest)
    except ManifestError as exc:
        raise BundleError(str(exc)) from exc
    except ValueError as exc:  # a malformed --expect
        raise BundleError(str(exc)) from exc
    disagree = bundle_verify.check_requirements(str(src), manifest, entries)
    if disagree:
        first = disagree[0]
        more = f" (and {len(disagree) - 1} more)" if len(disagree) > 1 else ""
        raise BundleError(
            f"{src}: {first.path} and {bundle_verify.MANIFEST} disagree: {first.detail}{more}; "
            "the bundle was changed after it was exported: nothing imported"
        )
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
    files, unsafe = bundle_verify.scan(str(src))
    problems += [p for p in unsafe if p.path.lower() not in listed]
    for rel in files:
        if rel.lower() not in listed:
            problems.append(Problem("extra", rel, "not listed in the manifest"))
    return _result(cache, src, manifest, done, refused, problems)


def _result(
    cache: Cache,
    src: Path,
    manifest: dict[str, Any],
    done: dict[str, list[str]],
    refused: list[Problem],
    problems: list[Problem],
) -> ImportResult:
    delta = manifest.get("delta")
    left_out = delta.get("left_out") if isinstance(delta, dict) else None
    absent = [
        str(w["filename"])
        for w in (left_out if isinstance(left_out, list) else [])
        if isinstance(w, dict)
        and is_sha256(w.get("sha256"))
        and _safe_name(w.get("filename"))
        and cache.catalog.by_sha256(str(w["sha256"]).lower()) is None
    ]
    reqs = src / "requirements.txt"
    try:
        plain = stat.S_ISREG(os.lstat(reqs).st_mode)
    except OSError:
        plain = False
    return ImportResult(
        tuple(done["imported"]),
        tuple(done["present"]),
        tuple(refused),
        tuple(problems),
        tuple(absent),
        reqs if plain else None,
    )
