"""The wheels a PEP 751 lock names for a target: from beside the lock, the cache, or its URL.

No index and no resolution: the lock says which file, where it came from and its sha256
(:func:`wheelcache.core.lockfile.select_locked` chose them for the target).  Each wheel is
taken, in this order, from the cache (by its sha256); from its ``path`` beside the lock (a
bundle's ``wheels/``, the folder a ``fetch`` wrote the lock into), copied into the cache and
hashed there; or downloaded from its ``url`` like any index file (resumable, verified while the
bytes arrive).  A file whose sha256 differs from the lock's is never made visible.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from packaging.version import Version

from wheelcache.core.evaluator import Candidate
from wheelcache.core.lockfile import LockSelection, select_locked
from wheelcache.core.models import Blake3, DistFile, Sha256
from wheelcache.core.target import Target
from wheelcache.errors import CacheError, HashMismatchError, LockFileError
from wheelcache.net.download import Downloader, DownloadJob
from wheelcache.reqfiles import read_lock_file
from wheelcache.store.cache import Cache, CachedWheel, describe_os_error
from wheelcache.store.maintenance import file_digests

__all__ = ["LockedFile", "fetch_locked", "lock_candidates", "locked_files"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LockedFile:
    """One wheel of the lock as a resolution candidate, and its file beside the lock if any."""

    candidate: Candidate
    local: Path | None = None


def locked_files(selection: LockSelection, lock_path: Path) -> list[LockedFile]:
    """The selection's wheels as candidates; refuses a wheel the lock gives no way to get."""
    out = []
    for w in selection.wheels:
        local = None
        if w.path is not None:
            beside = lock_path.parent.joinpath(*PurePosixPath(w.path.replace("\\", "/")).parts)
            # A symlink could name any file on this disk: only plain files beside the lock.
            local = beside if beside.is_file() and not beside.is_symlink() else None
        if w.url is None and local is None:
            raise LockFileError(
                str(lock_path),
                f"{w.filename} is not at {w.path} beside the lock and the lock gives no url",
            )
        file = DistFile(w.filename, w.url or "", w.sha256, size=w.size, upload_time=w.upload_time)
        out.append(LockedFile(Candidate(w.project, Version(w.version), file, 0), local))
    return out


def lock_candidates(lock_path: Path, target: Target) -> list[LockedFile]:
    """Read the lock and choose its wheels for *target* (refused before any transfer when it
    does not fit: see :func:`~wheelcache.core.lockfile.select_locked`)."""
    selection = select_locked(read_lock_file(lock_path), target, source=str(lock_path))
    if selection.skipped:
        shown = ", ".join(selection.skipped)
        log.info("%s: not for %s (their markers): %s", lock_path, target.describe(), shown)
    return locked_files(selection, lock_path)


def _take_local(cache: Cache, lf: LockedFile) -> CachedWheel:
    """Copy the file beside the lock into the cache, checked against the lock's sha256."""
    assert lf.local is not None
    f, c = lf.candidate.file, lf.candidate
    assert f.sha256 is not None
    lock = cache.lock(f.sha256)  # the key the downloader holds for these bytes
    if not lock.acquire(timeout=600):
        raise CacheError(f"another process holds the lock of {f.filename}; try again")
    tmp = cache.temp_path(".whl")
    try:
        shutil.copyfile(lf.local, tmp)
        sha, b3, size = file_digests(tmp)
        if sha != f.sha256:
            raise HashMismatchError(str(lf.local), f.filename, f.sha256, sha)
        return cache.ingest(
            tmp,
            sha256=Sha256(sha),
            blake3=Blake3(b3),
            size=size,
            filename=f.filename,
            project=c.name,
            version=str(c.version),
            url=f.url or lf.local.as_uri(),
            hash_origin="index",
        )
    except OSError as exc:
        raise CacheError(describe_os_error(exc, lf.local)) from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        lock.release()


def fetch_locked(
    files: Sequence[LockedFile], cache: Cache, downloader: Downloader | None
) -> list[CachedWheel]:
    """Every locked wheel in the cache, in the order of *files* (see the module docstring).

    Without a downloader (``--offline``) only the cache and the files beside the lock count.
    """
    got: dict[int, CachedWheel] = {}
    jobs: list[tuple[int, DownloadJob]] = []
    missing: list[str] = []
    for i, lf in enumerate(files):
        f, c = lf.candidate.file, lf.candidate
        cached = cache.find(f.filename, f.sha256)
        if cached is not None:
            got[i] = cached
        elif lf.local is not None:
            got[i] = _take_local(cache, lf)
        elif downloader is None:
            missing.append(f.filename)
        else:
            job = DownloadJob(f.url, f.filename, c.name, str(c.version), f.sha256, f.size)
            jobs.append((i, job))
    if missing:
        raise CacheError(
            f"--offline: {len(missing)} locked wheel(s) are neither in the cache nor beside "
            f"the lock ({', '.join(missing[:3])}{' …' if len(missing) > 3 else ''}); "
            "run once without --offline"
        )
    if jobs:
        assert downloader is not None
        # Biggest first: the long downloads start at once and small ones fill the gaps.
        jobs.sort(key=lambda j: -(j[1].size or 0))
        done = downloader.fetch_many([job for _, job in jobs])
        got.update({i: w for (i, _), w in zip(jobs, done, strict=True)})
    return [got[i] for i in range(len(files))]
