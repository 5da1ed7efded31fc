"""The content-addressed cache on disk: atomic ingest, wheel view, page store, locks.

Nothing becomes visible before it is complete and verified: files are written under
``tmp-v1/`` (same filesystem), fsynced, checked, then moved into place with ``os.replace``.
Locks are OS file locks (``fcntl.flock`` / ``msvcrt.locking``), which the OS drops when a
process dies, so a crash never leaves a lock behind.

A cache this process cannot write (a read-only mount, a DVD, a colleague's cache) is opened
read-only: nothing is created, the catalog is read without a write lock, and every writing step
raises one :class:`CacheError` that names the cache and why it is read-only.  Reading needs no
lock there: whoever may write it replaces files atomically.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import secrets
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from wheelcache.core.layout import CACHEDIR_TAG, CacheLayout
from wheelcache.core.models import Blake3, Sha256
from wheelcache.errors import CacheError
from wheelcache.store.catalog import Catalog, CatalogRow, check_row

__all__ = [
    "RESERVE_SIZE",
    "Cache",
    "CachedWheel",
    "FileLock",
    "describe_os_error",
    "fsync_dir",
    "fsync_file",
    "link_or_copy",
]

log = logging.getLogger(__name__)

#: Bytes held in ``reserve-v1`` so that the catalog (whose WAL and shared-memory files must
#: grow even to read) keeps working after the disk filled up.
RESERVE_SIZE = 1 << 20


def _unwritable_reason(root: Path, catalog: Path) -> str | None:
    """Why this process cannot write the existing cache at *root*, or None when it can (or
    when *root* does not exist yet: creating it says why it cannot)."""
    if not root.is_dir():
        return None
    ids = os.access in os.supports_effective_ids  # the effective user decides, as for open()
    paths = [root, catalog] if catalog.exists() else [root]
    if all(os.access(p, os.W_OK, effective_ids=ids) for p in paths):
        return None
    if sys.platform != "win32":
        with contextlib.suppress(OSError):
            if os.statvfs(root).f_flag & os.ST_RDONLY:
                return _READ_ONLY_FS
    return _NOT_OURS


_READ_ONLY_FS = "it is on a read-only filesystem"
_NOT_OURS = "this user may not write to it"
_FIXES = {_READ_ONLY_FS: "remount it read-write", _NOT_OURS: "run as the user who owns it"}


def describe_os_error(exc: OSError, where: Path | str, fix: str | None = None) -> str:
    """One actionable line for a disk error; *fix* says what to do in the terms of the folder
    it is (``choose another --dest folder``); by default the cache's (``--cache-dir``)."""
    if exc.errno == errno.ENOSPC:
        return f"disk full while writing to {where}; {fix or _CACHE_FIXES[0]}"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"cannot write to {where} ({exc.strerror}); {fix or _CACHE_FIXES[1]}"
    return f"{where}: {exc.strerror or exc}"


_CACHE_FIXES = (
    "free some space or use --cache-dir elsewhere",
    "use --cache-dir with a writable folder",
)


@dataclass(frozen=True, slots=True)
class CachedWheel:
    """A verified wheel in the cache."""

    filename: str
    path: Path  # wheels-v1/<filename>, readable with its real name
    blob: Path
    sha256: Sha256
    blake3: Blake3
    size: int
    project: str
    version: str
    url: str
    hash_origin: str


class FileLock:
    """An exclusive, portable, crash-safe lock on a file (one per key)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self, timeout: float | None = None, poll: float = 0.1) -> bool:
        # The folder is made again if it went (a cache emptied by hand).
        fd = _in_folder(self.path, lambda: os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644))
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                if sys.platform == "win32":
                    import msvcrt

                    msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
                else:
                    import fcntl

                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                self._fd = fd
                return True
            except OSError:
                if deadline is not None and time.monotonic() >= deadline:
                    os.close(fd)
                    return False
                time.sleep(poll)

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            if sys.platform == "win32":
                import msvcrt

                os.lseek(self._fd, 0, os.SEEK_SET)
                msvcrt.locking(self._fd, msvcrt.LK_UNLCK, 1)
            else:
                import fcntl

                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> FileLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class _NoLock(FileLock):
    """The lock of a read-only cache: nothing can be written there by this process, and
    whoever writes it replaces files atomically, so readers need no lock (nor a lock file,
    which could not be created)."""

    def acquire(self, timeout: float | None = None, poll: float = 0.1) -> bool:
        return True

    def release(self) -> None:
        pass


_T = TypeVar("_T")


def _in_folder(path: Path, make: Callable[[], _T]) -> _T:
    """``make()``, which creates *path*; when *path*'s folder is missing, the folder is made
    and ``make()`` runs once more.  Folders exist on almost every call, so asking first
    (``mkdir`` and a ``stat``) would cost two system calls each time for nothing."""
    try:
        return make()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        return make()


def _size(path: Path) -> int | None:
    """*path*'s size, None when nothing is there (one ``stat``, not ``exists()`` and a second)."""
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return None


def _replace(src: Path, dest: Path) -> None:
    """``os.replace``, retried briefly on Windows, where a reader holding *dest* open (a
    virus scanner, ``serve``, another process) makes it fail for a moment."""
    for attempt in range(20):
        try:
            os.replace(src, dest)
            return
        except PermissionError:
            if sys.platform != "win32" or attempt == 19:
                raise
            time.sleep(0.05)


def link_or_copy(
    src: Path, dest: Path, tmp: Path, *, force: bool = False, fix: str | None = None
) -> Path:
    """Make *dest* a hard link to *src*, else a copy (built at *tmp*, then moved into place).

    A *dest* already there with *src*'s size is kept as it is (unless *force*): where hard
    links are impossible (FAT/exFAT sticks, some network shares) it is a copy, and copying
    2.5 GB again on every lookup, or replacing a file pip or ``serve`` holds open, must not
    happen.  *tmp* must be on *dest*'s filesystem and unique to this process.  *fix* is the
    hint of a disk error (see :func:`describe_os_error`).
    """
    try:
        if not force:
            have = _size(dest)
            if have is None:
                with contextlib.suppress(OSError):  # raced by another process, or no links
                    os.link(src, dest)  # nothing there: the link appears whole, at once
                    return dest
            elif have == src.stat().st_size:
                return dest
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)
        _replace(tmp, dest)
    except OSError as exc:
        raise CacheError(describe_os_error(exc, dest, fix)) from exc
    return dest


def fsync_file(path: Path) -> None:
    """Make *path*'s bytes durable before a name vouches for them (a power loss after the
    rename must not leave a torn file under the new name).

    Opened for writing: Windows flushes (``_commit``) only a handle that may write.
    """
    fd = os.open(path, os.O_RDWR | getattr(os, "O_BINARY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    """Make a rename in *path* durable (a no-op where directories cannot be synced)."""
    if sys.platform == "win32":
        return  # directories cannot be opened for fsync on Windows; NTFS journals renames
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class Cache:
    """One cache directory.  Creating it makes the buckets and the ``CACHEDIR.TAG``; one this
    process cannot write is opened read-only (``read_only_reason`` says why)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.layout = CacheLayout(root)
        self.read_only_reason = _unwritable_reason(root, Path(self.layout.catalog))
        self._reserve = Path(self.layout.reserve)
        if self.read_only_reason is None:
            self._create()
            self._hold_reserve()
        self.catalog = Catalog(
            Path(self.layout.catalog),
            read_only=self.read_only,
            on_disk_full=None if self.read_only else self._release_reserve,
        )

    @property
    def read_only(self) -> bool:
        return self.read_only_reason is not None

    def require_writable(self, what: str, alternative: str = "") -> None:
        """Raise one :class:`CacheError` when *what* (a command, or a step) would have to
        write to a read-only cache; *alternative* is another way to the user's goal."""
        reason = self.read_only_reason
        if reason is not None:
            fix = _FIXES.get(reason, "use a writable cache")
            raise CacheError(
                f"{what} needs to write to the cache {self.root}, which is read-only "
                f"({reason}); {fix}{f', or {alternative}' if alternative else ''}"
            )

    def _create(self) -> None:
        root = self.root
        try:
            for d in (
                self.layout.blobs,
                self.layout.partial,
                self.layout.wheels,
                self.layout.pages,
                self.layout.tmp,
                self.layout.locks,
            ):
                Path(d).mkdir(parents=True, exist_ok=True)
            tag = root / "CACHEDIR.TAG"
            if not tag.exists():
                tag.write_text(CACHEDIR_TAG, encoding="ascii")
            ignore = root / ".gitignore"
            if not ignore.exists():
                ignore.write_text("*\n", encoding="ascii")
        except OSError as exc:
            if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC):
                raise CacheError(describe_os_error(exc, root)) from exc
            raise CacheError(  # a file where a folder should be, a missing drive …
                f"cannot create the cache at {root} ({exc.strerror or exc}); "
                "check --cache-dir (or WHEELCACHE_CACHE_DIR)"
            ) from exc

    def _hold_reserve(self) -> None:
        """Put the reserve in place when it is missing and there is room (best effort)."""
        if self._reserve.exists():
            return
        try:
            tmp = self.temp_path(".reserve")
            try:
                with open(tmp, "wb") as fh:
                    fh.write(bytes(RESERVE_SIZE))
                os.replace(tmp, self._reserve)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    tmp.unlink()
        except OSError as exc:
            log.debug("no reserve in %s: %s", self.root, exc)

    def _release_reserve(self) -> bool:
        """The disk is full: give the reserve's space to the catalog (True if there was one)."""
        try:
            self._reserve.unlink()
        except OSError:
            return False
        log.warning(
            "the disk of the cache %s is full: released its 1 MiB reserve so that the catalog "
            "keeps working; free some space (wheelcache gc --max-size SIZE, or elsewhere)",
            self.root,
        )
        return True

    # -- small atomic files ----------------------------------------------------------------
    def temp_path(self, suffix: str = ".tmp") -> Path:
        """A fresh, unique temp file in the cache (each process gets its own).

        Its mode follows the umask, as every file the user makes: ``mkstemp``'s 0600 would
        make requirements files, pages and imported wheels private in a shared cache.
        """
        fd, path = self._temp_fd(suffix)
        os.close(fd)
        return path

    def _temp_fd(self, suffix: str) -> tuple[int, Path]:
        """:meth:`temp_path`, open for writing (binary on Windows too)."""
        self.require_writable("writing a temporary file")
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
        while True:
            path = Path(self.layout.tmp) / f"tmp{os.getpid()}-{secrets.token_hex(6)}{suffix}"
            try:
                return os.open(path, flags, 0o666), path
            except FileExistsError:
                continue
            except OSError as exc:
                raise CacheError(describe_os_error(exc, path.parent)) from exc

    def write_atomic(self, path: Path, data: bytes, *, durable: bool = True) -> None:
        """Write *data* to *path* so that readers see the old file or the new one, whole.

        *durable* fsyncs the data first (survives a power loss); without it the write is
        still atomic for every reader and for a crashed process.  The temp file is written
        through the descriptor that created it, and *path*'s folder is made only when the
        rename finds it missing (:func:`_in_folder`): a page costs two files, each once per
        fetch, so every system call here counts (see scripts/bench_download.py).
        """
        self.require_writable(f"writing {path.name}")
        fd, tmp = self._temp_fd(".tmp")
        try:
            try:
                with open(fd, "wb") as fh:
                    fh.write(data)
                    if durable:
                        fh.flush()
                        os.fsync(fh.fileno())
                _in_folder(path, lambda: _replace(tmp, path))
            except BaseException:
                with contextlib.suppress(OSError):
                    tmp.unlink()
                raise
        except OSError as exc:
            raise CacheError(describe_os_error(exc, path)) from exc

    def read_json(self, path: Path) -> dict[str, Any] | None:
        try:
            data = json.loads(path.read_bytes())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def lock(self, key: str) -> FileLock:
        lock_type = _NoLock if self.read_only else FileLock
        return lock_type(Path(self.layout.lock(key)))

    # -- wheels ----------------------------------------------------------------------------
    def _view(self, blob: Path, filename: str, *, force: bool = False) -> Path:
        """Place ``wheels-v1/<filename>`` for a blob: a hard link, else a copy (in a read-only
        cache, where no view can be made, the blob itself: the same bytes)."""
        dest = Path(self.layout.wheel(filename))
        if self.read_only:
            try:
                same = dest.stat().st_size == blob.stat().st_size
            except OSError:
                same = False
            return dest if same and not force else blob
        tmp = Path(self.layout.tmp) / f"view-{os.getpid()}-{time.monotonic_ns()}"
        return link_or_copy(blob, dest, tmp, force=force)

    def _wheel(self, row: CatalogRow) -> CachedWheel | None:
        blob = Path(self.layout.blob(row.blake3))
        try:
            if blob.stat().st_size != row.size:
                log.warning("cached blob %s has the wrong size; ignoring it", blob)
                return None
        except FileNotFoundError:
            return None
        return CachedWheel(
            filename=row.filename,
            path=self._view(blob, row.filename),
            blob=blob,
            sha256=row.sha256,
            blake3=row.blake3,
            size=row.size,
            project=row.project,
            version=row.version,
            url=row.url,
            hash_origin=row.hash_origin,
        )

    def find(self, filename: str, sha256: str | None = None) -> CachedWheel | None:
        """The cached wheel *filename* (with this sha256, when known), if present.

        Never another file with the same bytes: a request gets back the name it asked for.
        """
        if sha256:
            row = self.catalog.get(sha256, filename)
            return self._wheel(row) if row else None
        for row in self.catalog.by_filename(filename):
            found = self._wheel(row)
            if found:
                return found
        return None

    def ingest(
        self,
        tmp: Path,
        *,
        sha256: Sha256,
        blake3: Blake3,
        size: int,
        filename: str,
        project: str,
        version: str,
        url: str,
        hash_origin: str,
    ) -> CachedWheel:
        """Move a verified, fsynced file (a temp file, a finished partial) into the blob store
        and record it."""
        self.require_writable(f"storing {filename}")
        now = time.time()
        row = CatalogRow(
            sha256, blake3, filename, project, version, size, url, hash_origin, now, now
        )
        try:
            check_row(row)  # before the blob moves: a refused row leaves nothing behind
        except ValueError as exc:
            raise CacheError(f"refusing to store {filename!r:.120}: {exc}") from None
        blob = Path(self.layout.blob(blake3))
        try:
            if _size(blob) == size:
                tmp.unlink()  # same content already stored (content addressing)
            else:
                _in_folder(blob, lambda: os.replace(tmp, blob))  # buckets: made on first use
                fsync_dir(blob.parent)
        except OSError as exc:
            raise CacheError(describe_os_error(exc, blob)) from exc
        self.catalog.add(row)
        log.info("stored %s (%d bytes, blake3 %s)", filename, size, blake3[:16])
        wheel = self._wheel(row)
        if wheel is None:
            raise CacheError(f"{blob} vanished right after it was stored")
        return wheel

    # -- added for cache care and bundles ------------------------------------------------------
    def place_view(self, row: CatalogRow) -> Path:
        """Remake ``wheels-v1/<filename>`` from *row*'s blob, whatever is there now (a view
        found damaged by ``verify``)."""
        self.require_writable(f"remaking wheels-v1/{row.filename}")
        return self._view(Path(self.layout.blob(row.blake3)), row.filename, force=True)

    def blob_path(self, blake3: str) -> Path:
        """Where the blob named *blake3* lives (whether or not it exists)."""
        return Path(self.layout.blob(Blake3(blake3)))
