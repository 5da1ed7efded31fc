"""What a cache publishes: the selected wheels, their ``.metadata`` files, as index entries.

``wheelcache serve`` and ``wheelcache index`` both start from a :class:`CacheView`: it reads the
catalog, applies a :class:`Selection` (``--project``, ``--requirement``), checks each blob and
extracts each wheel's ``*.dist-info/METADATA`` once (kept in ``<cache>/metadata-v1/<sha256>
.metadata``, named by the *wheel's* sha256, written atomically), and hands out immutable
:class:`Snapshot` objects.

Why it works this way:

* Files are served from the blob, not from ``wheels-v1/<filename>``: the blob is named by its
  content, so the bytes always match the sha256 on the page even if a later fetch replaced the
  readable view with a different file of the same name (a mirror's rebuild).
* A running ``fetch`` changes the catalog.  Stat calls on the sqlite file, its WAL and the
  ``wheels-v1`` directory (``ingest`` renames into it) cost microseconds, so every request can
  ask "did anything change?" and only then re-read the catalog; one thread reloads while the
  others keep answering from the previous snapshot.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from packaging.specifiers import SpecifierSet
from packaging.utils import NormalizedName, canonicalize_name

from wheelcache.core.render import IndexEntry
from wheelcache.errors import CacheError
from wheelcache.reqfiles import is_lock_file, read_lock_file, read_requirement_files
from wheelcache.store.cache import Cache
from wheelcache.store.catalog import CatalogRow
from wheelcache.store.metadata import MetadataInfo, MetadataStore

__all__ = [
    "CacheView",
    "Pin",
    "PublishedFile",
    "Selection",
    "Snapshot",
    "read_selection_file",
]

log = logging.getLogger(__name__)

_RELOAD_EVERY = 10.0  # seconds; a safety net in case a change left every stat result equal


# -- selections ----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Pin:
    """One requirement line: a project, a version specifier and optional sha256 hashes."""

    name: NormalizedName
    specifier: SpecifierSet
    hashes: frozenset[str]
    text: str

    def matches(self, row: CatalogRow) -> bool:
        if canonicalize_name(row.project) != self.name:
            return False
        if self.hashes:
            return row.sha256 in self.hashes
        return self.specifier.contains(row.version, prereleases=True)


def _requirement_pins(path: Path) -> tuple[Pin, ...]:
    """Requirement lines → pins.  Markers are not judged (the serving host is not the
    target); index options change nothing here; ``-r`` is followed."""
    rs = read_requirement_files([path]).requirements
    pins = []
    for line in rs.requirements:
        spec = line.requirement.specifier
        pins.append(Pin(line.name, spec, frozenset(line.hashes), f"{line.name}{spec}"))
    return tuple(pins)


def _lock_pins(path: Path) -> tuple[Pin, ...]:
    """Every wheel of a PEP 751 lock, by its sha256 (a lock may cover several targets: the
    wheels of each are published)."""
    lock = read_lock_file(path)
    pins = []
    for package in lock.packages:
        spec = SpecifierSet(f"=={package.version}") if package.version else SpecifierSet()
        hashes = frozenset(
            str(w.hashes["sha256"]).lower() for w in package.wheels or () if "sha256" in w.hashes
        )
        pins.append(Pin(package.name, spec, hashes, f"{package.name}{spec}"))
    return tuple(pins)


def read_selection_file(path: Path) -> tuple[Pin, ...]:
    """The pins of a requirements file or of a PEP 751 lock (``-r FILE`` of serve, index and
    export): what it names is selected, by hash where it gives one."""
    return _lock_pins(path) if is_lock_file(path) else _requirement_pins(path)


@dataclass(frozen=True, slots=True)
class Selection:
    """Which cached wheels to publish: everything, or named projects and/or pinned lines."""

    projects: frozenset[NormalizedName] = frozenset()
    pins: tuple[Pin, ...] = ()

    @classmethod
    def of(cls, projects: tuple[str, ...] = (), pins: tuple[Pin, ...] = ()) -> Selection:
        return cls(frozenset(canonicalize_name(p) for p in projects), pins)

    @property
    def everything(self) -> bool:
        return not self.projects and not self.pins

    def matches(self, row: CatalogRow) -> bool:
        if self.everything:
            return True
        return canonicalize_name(row.project) in self.projects or any(
            p.matches(row) for p in self.pins
        )

    def unmatched(self, rows: list[CatalogRow]) -> list[str]:
        """The ``--project`` names and requirement lines that select nothing in *rows*."""
        names = {canonicalize_name(r.project) for r in rows}
        missing: list[str] = [p for p in sorted(self.projects) if p not in names]
        missing += [p.text for p in self.pins if not any(p.matches(r) for r in rows)]
        return missing


# -- snapshots -----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class PublishedFile:
    """A selected wheel: its index entry, its blob and its metadata."""

    entry: IndexEntry
    path: Path
    mtime: float
    fetched_at: float
    metadata: MetadataInfo | None


@dataclass(frozen=True, slots=True)
class Snapshot:
    """An immutable view of what is published at one moment; ``generation`` counts reloads."""

    generation: int
    files: Mapping[str, PublishedFile] = field(default_factory=dict)
    projects: Mapping[NormalizedName, tuple[PublishedFile, ...]] = field(default_factory=dict)


def _inside(path: Path, root: str) -> bool:
    real = os.path.realpath(path)
    return real == root or real.startswith(root + os.sep)


class CacheView:
    """The published part of one cache, re-read when the catalog changes (thread-safe)."""

    def __init__(self, cache: Cache, selection: Selection | None = None) -> None:
        self.cache = cache
        self.selection = selection or Selection()
        self._metadata = MetadataStore(cache)
        self._root = os.path.realpath(cache.root)
        catalog = str(cache.layout.catalog)
        self._watched = (catalog, f"{catalog}-wal", str(cache.layout.wheels))
        self._lock = threading.Lock()
        self._skipped: set[str] = set()
        self._key: tuple[object, ...] | None = None
        self._loaded_at = 0.0
        self._snapshot = Snapshot(0)
        self.snapshot()

    def check_selection(self) -> None:
        """Raise :class:`CacheError` if a selected project or pin has nothing in the cache."""
        missing = self.selection.unmatched(self.cache.catalog.all())
        if missing:
            raise CacheError(
                f"not in the cache {self.cache.root}: {', '.join(missing)} "
                "(run wheelcache fetch first, or check the names)"
            )

    def _change_key(self) -> tuple[object, ...]:
        key: list[object] = []
        for p in self._watched:  # plain strings: this runs on every request
            try:
                st = os.stat(p)
                key.append((st.st_ino, st.st_size, st.st_mtime_ns))
            except OSError:
                key.append(None)
        return tuple(key)

    def snapshot(self) -> Snapshot:
        """The current snapshot; re-reads the catalog first if it changed since the last one."""
        key = self._change_key()
        fresh = time.monotonic() - self._loaded_at < _RELOAD_EVERY
        if key == self._key and fresh:
            return self._snapshot
        # One thread reloads; the others keep serving the previous snapshot meanwhile.
        blocking = self._snapshot.generation == 0
        if not self._lock.acquire(blocking=blocking):
            return self._snapshot
        try:
            if key != self._key or not fresh:
                self._snapshot = self._load(self._snapshot.generation + 1)
                self._key = key
                self._loaded_at = time.monotonic()
            return self._snapshot
        finally:
            self._lock.release()

    def _load(self, generation: int) -> Snapshot:
        newest: dict[str, CatalogRow] = {}
        for row in self.cache.catalog.all():
            if not self.selection.matches(row):
                continue
            old = newest.get(row.filename)
            if old is None or row.fetched_at > old.fetched_at:
                newest[row.filename] = row
        files: dict[str, PublishedFile] = {}
        projects: dict[NormalizedName, list[PublishedFile]] = {}
        for filename in sorted(newest):
            published = self._publish(newest[filename])
            if published is not None:
                files[filename] = published
                projects.setdefault(published.entry.project, []).append(published)
        log.debug("snapshot %d: %d files of %d projects", generation, len(files), len(projects))
        return Snapshot(generation, files, {k: tuple(v) for k, v in sorted(projects.items())})

    def _skip(self, row: CatalogRow, why: str) -> None:
        if row.sha256 not in self._skipped:  # once, not at every reload during a fetch
            self._skipped.add(row.sha256)
            log.warning(
                "not publishing %s: %s (wheelcache verify checks the cache)", row.filename, why
            )

    def _publish(self, row: CatalogRow) -> PublishedFile | None:
        try:
            blob = Path(self.cache.layout.blob(row.blake3))
            self.cache.layout.wheel(row.filename)  # raises ValueError on an unsafe name
            st = blob.stat()
        except (OSError, ValueError) as exc:
            self._skip(row, str(exc))
            return None
        if st.st_size != row.size or not _inside(blob, self._root):
            self._skip(row, "its blob has the wrong size or lies outside the cache")
            return None
        md = self._metadata.get(row, blob)
        entry = IndexEntry(
            filename=row.filename,
            project=canonicalize_name(row.project),
            version=row.version,
            sha256=row.sha256,
            size=row.size,
            requires_python=md.requires_python if md else None,
            metadata_sha256=md.sha256 if md else None,
        )
        return PublishedFile(entry, blob, st.st_mtime, row.fetched_at, md)
