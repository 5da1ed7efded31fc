"""The sqlite catalog: sha256 ↔ blake3, filename, project, version, size, origin.

One short-lived connection per operation (WAL mode, busy timeout) keeps it safe across threads
and processes.  The catalog is an index over the blobs, never the only copy of a fact about
bytes: it can be rebuilt by scanning the blobs.  sqlite errors become :class:`CacheError`.

A read-only catalog (a read-only mount, another user's cache) is opened with ``mode=ro``, which
sees a running writer's WAL through its shared-memory file; where there is none and none may
be created (nobody has the catalog open), with ``immutable=1``, which is then true.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from wheelcache.core.models import Blake3, Sha256
from wheelcache.errors import CacheError

__all__ = ["Catalog", "CatalogRow"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS wheels (
    sha256      TEXT PRIMARY KEY,
    blake3      TEXT NOT NULL,
    filename    TEXT NOT NULL,
    project     TEXT NOT NULL,
    version     TEXT NOT NULL,
    size        INTEGER NOT NULL,
    url         TEXT NOT NULL,
    hash_origin TEXT NOT NULL,     -- 'index' (checked) or 'computed' (index gave none)
    fetched_at  REAL NOT NULL,
    used_at     REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS wheels_filename ON wheels(filename);
CREATE INDEX IF NOT EXISTS wheels_blake3 ON wheels(blake3);
CREATE TABLE IF NOT EXISTS wheel_targets (
    sha256 TEXT NOT NULL,
    target TEXT NOT NULL,
    PRIMARY KEY (sha256, target)
);
"""


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


class Catalog:
    """Rows about the blobs in one cache."""

    def __init__(self, path: Path, *, read_only: bool = False) -> None:
        self.path = path
        self.read_only = read_only
        self._local = threading.local()
        if read_only:
            if not path.is_file():
                raise CacheError(f"the catalog {path} is missing and the cache is read-only")
            return
        # Two processes may create the catalog at the same moment; switching to WAL takes an
        # exclusive lock that sqlite's busy timeout does not always wait for, so retry.
        for attempt in range(50):
            try:
                with self._connect() as db:
                    db.execute("PRAGMA journal_mode=WAL")
                    db.executescript(_SCHEMA)
                break
            except CacheError as exc:
                if "locked" not in str(exc) or attempt == 49:
                    raise
                time.sleep(0.1)

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
                raise CacheError(f"cannot open the catalog {self.path}: {exc}") from exc
            self._local.db = db
        try:
            yield db
        except sqlite3.Error as exc:
            self._local.db = None
            db.close()
            raise CacheError(f"catalog {self.path}: {exc}") from exc
        except BaseException:
            if db.in_transaction:  # never leave a transaction open on a kept connection
                db.execute("ROLLBACK")
            raise

    def add(self, row: CatalogRow) -> None:
        with self._connect() as db:
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

    def add_target(self, sha256: Sha256, target: str) -> None:
        self.add_targets([sha256], target)

    def add_targets(self, sha256s: list[Sha256], target: str) -> None:
        """Record that these wheels served *target*, and that they were used now (one
        transaction for a whole closure)."""
        now = time.time()
        with self._connect() as db:
            db.execute("BEGIN")
            db.executemany(
                "INSERT OR IGNORE INTO wheel_targets VALUES (?, ?)", [(s, target) for s in sha256s]
            )
            db.executemany(
                "UPDATE wheels SET used_at=? WHERE sha256=?", [(now, s) for s in sha256s]
            )
            db.execute("COMMIT")

    def _rows(self, where: str, args: tuple[object, ...]) -> list[CatalogRow]:
        with self._connect() as db:
            cur = db.execute(f"SELECT * FROM wheels {where}", args)
            return [CatalogRow(*r) for r in cur.fetchall()]

    def by_sha256(self, sha256: str) -> CatalogRow | None:
        rows = self._rows("WHERE sha256=?", (sha256,))
        return rows[0] if rows else None

    def by_filename(self, filename: str) -> list[CatalogRow]:
        return self._rows("WHERE filename=? ORDER BY fetched_at DESC", (filename,))

    def all(self) -> list[CatalogRow]:
        return self._rows("ORDER BY filename", ())

    # -- added for cache care and bundles (ls, rm, gc, verify, export, import) ---------------
    def by_blake3(self, blake3: str) -> list[CatalogRow]:
        """Rows whose bytes are the blob *blake3* (one, unless two sha256 rows share it)."""
        return self._rows("WHERE blake3=?", (blake3,))

    def targets(self) -> dict[str, list[str]]:
        """sha256 → the target descriptions (``cp39-win_amd64 (cu118)``) it was fetched for."""
        with self._connect() as db:
            cur = db.execute("SELECT sha256, target FROM wheel_targets ORDER BY sha256, target")
            out: dict[str, list[str]] = {}
            for sha256, target in cur.fetchall():
                out.setdefault(sha256, []).append(target)
            return out

    def remove(self, sha256: str) -> bool:
        """Delete a row and its target rows in one transaction; True if a row was there.

        Callers delete the row *before* the blob, so no reader ever finds a row whose blob
        is gone (a reader that already holds the row may still find the blob missing).
        """
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                cur = db.execute("DELETE FROM wheels WHERE sha256=?", (sha256,))
                db.execute("DELETE FROM wheel_targets WHERE sha256=?", (sha256,))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            return cur.rowcount > 0

    def touch(self, sha256s: list[str], when: float | None = None) -> None:
        """Mark wheels as used now (LRU for ``gc``); exporting a wheel is a use."""
        if self.read_only:
            return  # a use record is worth nothing next to reading a read-only cache at all
        now = time.time() if when is None else when
        with self._connect() as db:
            rows = [(now, s) for s in sha256s]
            db.executemany("UPDATE wheels SET used_at=? WHERE sha256=?", rows)
