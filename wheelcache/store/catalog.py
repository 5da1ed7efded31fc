"""The sqlite catalog: sha256 ↔ blake3, filename, project, version, size, origin.

One short-lived connection per operation (WAL mode, busy timeout) keeps it safe across threads
and processes.  The catalog is an index over the blobs, never the only copy of a fact about
bytes: it can be rebuilt by scanning the blobs.  sqlite errors become :class:`CacheError`.

A read-only catalog (a read-only mount, another user's cache) is opened with ``mode=ro``, which
sees a running writer's WAL through its shared-memory file; where there is none and none may
be created (nobody has the catalog open), with ``immutable=1``, which is then true.

A row is one *file*: ``(sha256, filename)`` is the key.  Two projects may publish the same
bytes under two names; keyed by sha256 alone, the second would take the first one's row and a
request for one name would get the other file back.  Every row is checked before it is
written (:func:`check_row`): digests are hex, the filename passes the one safety rule, the
version is a version, so nothing an index or a bundle wrote unchecked is ever stored.

A full disk: in WAL mode even a read needs to create and grow ``-shm`` and ``-wal`` files, so
on a disk with no byte free every command would fail with "disk I/O error".  The cache keeps a
small reserve file; the first catalog operation that fails for want of space releases it (one
warning) and tries again, so ``ls``, ``verify``, ``info`` and ``gc`` keep working and ``gc`` can
free space.  Should even that fail, reads fall back to exclusive locking mode (no ``-shm``
file) and writes say plainly that the disk is full.
"""

from __future__ import annotations

import contextlib
import logging
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename
from packaging.version import InvalidVersion, Version

from wheelcache.core.checks import safe_filename, safe_text
from wheelcache.core.models import Blake3, Sha256
from wheelcache.errors import CacheError

__all__ = ["HASH_ORIGINS", "Catalog", "CatalogRow", "check_row", "is_row_sane"]

log = logging.getLogger(__name__)

T = TypeVar("T")
HASH_ORIGINS = frozenset({"index", "mirror", "computed"})
_HEX64 = re.compile(r"[0-9a-f]{64}")
_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?")
_DISK_FULL = ("disk i/o error", "database or disk is full")

_TABLE = """
CREATE TABLE IF NOT EXISTS {name} (
    sha256      TEXT NOT NULL,
    blake3      TEXT NOT NULL,
    filename    TEXT NOT NULL,
    project     TEXT NOT NULL,
    version     TEXT NOT NULL,
    size        INTEGER NOT NULL,
    url         TEXT NOT NULL,
    hash_origin TEXT NOT NULL,     -- 'index', 'mirror' (checked) or 'computed' (none given)
    fetched_at  REAL NOT NULL,
    used_at     REAL NOT NULL,
    PRIMARY KEY (sha256, filename)
);
"""
_SCHEMA = (
    _TABLE.format(name="wheels")
    + """
CREATE INDEX IF NOT EXISTS wheels_filename ON wheels(filename);
CREATE INDEX IF NOT EXISTS wheels_blake3 ON wheels(blake3);
CREATE TABLE IF NOT EXISTS wheel_targets (
    sha256 TEXT NOT NULL,
    target TEXT NOT NULL,
    PRIMARY KEY (sha256, target)
);
"""
)


@dataclass(frozen=True, slots=True)
class CatalogRow:
    sha256: Sha256
    blake3: Blake3
    filename: str
    project: str
    version: str
    size: int
    url: str
    hash_origin: str
    fetched_at: float
    used_at: float


def check_row(row: CatalogRow) -> None:
    """Raise ``ValueError`` unless every field of *row* is what it claims to be.

    The filename is a safe wheel name whose project is *row*'s project; the version is a
    version; the URL one printable line.
    """
    if not (isinstance(row.sha256, str) and _HEX64.fullmatch(row.sha256)):
        raise ValueError(f"sha256 {row.sha256!r:.80} is not 64 lower-case hex digits")
    if not (isinstance(row.blake3, str) and _HEX64.fullmatch(row.blake3)):
        raise ValueError(f"blake3 {row.blake3!r:.80} is not 64 lower-case hex digits")
    safe_filename(row.filename)
    if not _NAME.fullmatch(row.project):
        raise ValueError(f"project {row.project!r:.80} is not a project name")
    try:
        Version(row.version)
    except InvalidVersion:
        raise ValueError(f"version {row.version!r:.80} is not a version") from None
    if row.filename.endswith(".whl"):
        try:
            name = parse_wheel_filename(row.filename)[0]
        except InvalidWheelFilename as exc:
            raise ValueError(str(exc)) from None
        if name != canonicalize_name(row.project):
            raise ValueError(f"{row.filename} is not a file of project {row.project}")
    safe_text(row.url, what="url", limit=8000)
    if row.hash_origin not in HASH_ORIGINS:
        raise ValueError(
            f"hash origin {row.hash_origin!r:.40} is not one of {sorted(HASH_ORIGINS)}"
        )
    if type(row.size) is not int or row.size < 0:
        raise ValueError(f"size {row.size!r} is not a byte count")


def _disk_full(exc: sqlite3.Error) -> bool:
    return any(s in str(exc).lower() for s in _DISK_FULL)


class Catalog:
    """Rows about the blobs in one cache.

    *on_disk_full* is called once when an operation fails for want of space (the cache
    releases its reserve); when it returns True the operation is tried again.
    """

    def __init__(
        self,
        path: Path,
        *,
        read_only: bool = False,
        on_disk_full: Callable[[], bool] | None = None,
    ) -> None:
        self.path = path
        self.read_only = read_only
        self._on_disk_full = on_disk_full
        self._local = threading.local()
        if read_only:
            if not path.is_file():
                raise CacheError(f"the catalog {path} is missing and the cache is read-only")
            return
        # Two processes may create the catalog at the same moment; switching to WAL takes an
        # exclusive lock that sqlite's busy timeout does not always wait for, so retry.
        for attempt in range(50):
            try:
                self._run(self._create, read=True)
                break
            except CacheError as exc:
                if "locked" not in str(exc) or attempt == 49:
                    raise
                time.sleep(0.1)

    @staticmethod
    def _create(db: sqlite3.Connection) -> None:
        if _current(db):  # nothing to write: a full disk must not stop a read-only command
            return
        if db.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
            db.execute("PRAGMA journal_mode=WAL")
        db.executescript(_SCHEMA)
        keys = [r[1] for r in db.execute("PRAGMA table_info(wheels)") if r[5]]
        if keys == ["sha256"]:
            _migrate_to_file_key(db)

    def _run(self, op: Callable[[sqlite3.Connection], T], *, read: bool = False) -> T:
        """Run *op* on this thread's connection; on a full disk release the reserve and try
        once more, and for a read fall back to exclusive locking mode (no ``-shm`` file)."""
        try:
            try:
                with self._connect() as db:
                    return op(db)
            except _SqliteFailure as exc:
                if not _disk_full(exc.cause) or self._on_disk_full is None:
                    raise
                if not self._on_disk_full():
                    raise
            with self._connect() as db:
                return op(db)
        except _SqliteFailure as exc:
            if read and _disk_full(exc.cause):
                return self._read_without_journal(op, exc.cause)
            if _disk_full(exc.cause):
                raise CacheError(
                    f"the catalog {self.path} cannot be written: the disk is full "
                    f"({exc.cause}); free some space (wheelcache gc --max-size SIZE, or elsewhere)"
                ) from exc.cause
            raise CacheError(f"catalog {self.path}: {exc.cause}") from exc.cause

    def _read_without_journal(
        self, op: Callable[[sqlite3.Connection], T], cause: sqlite3.Error
    ) -> T:
        """Last resort on a disk with no byte free: read in exclusive locking mode, which keeps
        the WAL index in memory instead of a ``-shm`` file (other processes wait a moment)."""
        try:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            try:
                db.execute("PRAGMA locking_mode=EXCLUSIVE")
                return op(db)
            finally:
                db.close()
        except sqlite3.Error as exc:
            raise CacheError(
                f"catalog {self.path}: {cause}; the disk is full: free some space"
            ) from exc

    def _open_read_only(self) -> sqlite3.Connection:
        uri = f"{self.path.resolve().as_uri()}?mode=ro"
        db = sqlite3.connect(uri, uri=True, timeout=30, isolation_level=None)
        try:
            db.execute("SELECT count(*) FROM sqlite_master").fetchone()
            return db
        except sqlite3.OperationalError:  # no -shm to share and none may be created
            db.close()
        return sqlite3.connect(f"{uri}&immutable=1", uri=True, isolation_level=None)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        """This thread's connection, opened on first use and kept for the next operation:
        opening one (file, WAL index, schema) cost more than most of our queries, and a
        fetch makes several per wheel.  A connection that failed is closed and not reused."""
        db = getattr(self._local, "db", None)
        if db is None:
            try:
                if self.read_only:
                    db = self._open_read_only()
                else:
                    db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
                    db.execute("PRAGMA synchronous=NORMAL")
            except sqlite3.Error as exc:
                raise _SqliteFailure(exc) from exc
            self._local.db = db
        try:
            yield db
        except sqlite3.Error as exc:
            self._local.db = None
            db.close()
            raise _SqliteFailure(exc) from exc
        except BaseException:
            if db.in_transaction:  # never leave a transaction open on a kept connection
                _rollback(db)
            raise

    def add(self, row: CatalogRow) -> None:
        """Record *row* (checked by :func:`check_row` first; a bad row is a CacheError)."""
        try:
            check_row(row)
        except ValueError as exc:
            raise CacheError(f"refusing to record {row.filename!r:.120}: {exc}") from None

        def op(db: sqlite3.Connection) -> None:
            db.execute(
                "INSERT OR REPLACE INTO wheels VALUES (?,?,?,?,?,?,?,?,?,?)",
                (
                    row.sha256,
                    row.blake3,
                    row.filename,
                    row.project,
                    row.version,
                    row.size,
                    row.url,
                    row.hash_origin,
                    row.fetched_at,
                    row.used_at,
                ),
            )

        self._run(op)

    def add_target(self, sha256: Sha256, target: str) -> None:
        self.add_targets([sha256], target)

    def add_targets(self, sha256s: list[Sha256], target: str) -> None:
        """Record that these wheels served *target*, and that they were used now (one
        transaction for a whole closure)."""
        now = time.time()

        def op(db: sqlite3.Connection) -> None:
            db.execute("BEGIN")
            db.executemany(
                "INSERT OR IGNORE INTO wheel_targets VALUES (?, ?)", [(s, target) for s in sha256s]
            )
            db.executemany(
                "UPDATE wheels SET used_at=? WHERE sha256=?", [(now, s) for s in sha256s]
            )
            db.execute("COMMIT")

        self._run(op)

    def _rows(self, where: str, args: tuple[object, ...]) -> list[CatalogRow]:
        def op(db: sqlite3.Connection) -> list[CatalogRow]:
            cur = db.execute(f"SELECT * FROM wheels {where}", args)
            return [CatalogRow(*r) for r in cur.fetchall()]

        return self._run(op, read=True)

    def get(self, sha256: str, filename: str) -> CatalogRow | None:
        """The row of the file *filename* with these bytes, if there is one."""
        rows = self._rows("WHERE sha256=? AND filename=?", (sha256, filename))
        return rows[0] if rows else None

    def by_sha256(self, sha256: str) -> CatalogRow | None:
        """A row with these bytes (the newest, when several files share them)."""
        rows = self._rows("WHERE sha256=? ORDER BY fetched_at DESC, filename", (sha256,))
        return rows[0] if rows else None

    def by_filename(self, filename: str) -> list[CatalogRow]:
        return self._rows("WHERE filename=? ORDER BY fetched_at DESC", (filename,))

    def all(self) -> list[CatalogRow]:
        return self._rows("ORDER BY filename, sha256", ())

    # -- added for cache care and bundles (ls, rm, gc, verify, export, import) ---------------
    def by_blake3(self, blake3: str) -> list[CatalogRow]:
        """Rows whose bytes are the blob *blake3* (one, unless two files share it)."""
        return self._rows("WHERE blake3=?", (blake3,))

    def targets(self) -> dict[str, list[str]]:
        """sha256 → the target descriptions (``cp39-win_amd64 (cu118)``) it was fetched for."""

        def op(db: sqlite3.Connection) -> dict[str, list[str]]:
            cur = db.execute("SELECT sha256, target FROM wheel_targets ORDER BY sha256, target")
            out: dict[str, list[str]] = {}
            for sha256, target in cur.fetchall():
                out.setdefault(sha256, []).append(target)
            return out

        return self._run(op, read=True)

    def remove(self, sha256: str, filename: str | None = None) -> bool:
        """Delete the row of *filename* with these bytes (every row with them when *filename*
        is None) and, once no row has the bytes, their target rows; one transaction.  True if
        a row was there.

        Callers delete the row *before* the blob, so no reader ever finds a row whose blob
        is gone (a reader that already holds the row may still find the blob missing).
        """

        def op(db: sqlite3.Connection) -> bool:
            db.execute("BEGIN IMMEDIATE")
            try:
                if filename is None:
                    cur = db.execute("DELETE FROM wheels WHERE sha256=?", (sha256,))
                else:
                    cur = db.execute(
                        "DELETE FROM wheels WHERE sha256=? AND filename=?", (sha256, filename)
                    )
                left = db.execute("SELECT 1 FROM wheels WHERE sha256=? LIMIT 1", (sha256,))
                if left.fetchone() is None:
                    db.execute("DELETE FROM wheel_targets WHERE sha256=?", (sha256,))
                db.execute("COMMIT")
            except BaseException:
                _rollback(db)
                raise
            return cur.rowcount > 0

        return self._run(op)

    def touch(self, sha256s: list[str], when: float | None = None) -> None:
        """Mark wheels as used now (LRU for ``gc``); exporting a wheel is a use."""
        if self.read_only:
            return  # a use record is worth nothing next to reading a read-only cache at all
        now = time.time() if when is None else when
        rows = [(now, s) for s in sha256s]

        def op(db: sqlite3.Connection) -> None:
            db.executemany("UPDATE wheels SET used_at=? WHERE sha256=?", rows)

        self._run(op)


class _SqliteFailure(Exception):
    """An sqlite error inside :meth:`Catalog._connect`, turned into a CacheError by
    :meth:`Catalog._run` (which first looks whether the disk is full)."""

    def __init__(self, cause: sqlite3.Error) -> None:
        super().__init__(str(cause))
        self.cause = cause


def _current(db: sqlite3.Connection) -> bool:
    """Whether the catalog is in WAL mode with today's tables (nothing to create)."""
    if db.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
        return False
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    keys = [r[1] for r in db.execute("PRAGMA table_info(wheels)") if r[5]]
    return {"wheels", "wheel_targets"} <= tables and keys == ["sha256", "filename"]


def _migrate_to_file_key(db: sqlite3.Connection) -> None:
    """A catalog keyed by sha256 alone (wheelcache before 0.x) → keyed by (sha256, filename).

    Done in place, in one transaction, the first time a newer wheelcache opens it; the columns
    are the same, so an older wheelcache still reads it.
    """
    db.execute("BEGIN IMMEDIATE")
    try:
        keys = [r[1] for r in db.execute("PRAGMA table_info(wheels)") if r[5]]
        if keys == ["sha256"]:  # another process may have migrated it meanwhile
            db.execute(_TABLE.format(name="wheels_by_file"))
            db.execute("INSERT INTO wheels_by_file SELECT * FROM wheels")
            db.execute("DROP TABLE wheels")
            db.execute("ALTER TABLE wheels_by_file RENAME TO wheels")
            db.execute("CREATE INDEX IF NOT EXISTS wheels_filename ON wheels(filename)")
            db.execute("CREATE INDEX IF NOT EXISTS wheels_blake3 ON wheels(blake3)")
        db.execute("COMMIT")
    except BaseException:
        _rollback(db)
        raise
    log.info("catalog now keyed by (sha256, filename)")


def is_row_sane(row: CatalogRow) -> bool:
    """Whether *row* passes :func:`check_row` (rows an older wheelcache wrote may not)."""
    try:
        check_row(row)
    except ValueError:
        return False
    return True


def _rollback(db: sqlite3.Connection) -> None:
    """Roll back what is open; sqlite may have rolled back itself already (a full disk, an
    I/O error), and saying so must not hide the error that brought us here."""
    with contextlib.suppress(sqlite3.Error):
        if db.in_transaction:
            db.execute("ROLLBACK")
