"""The ``metadata-v1`` bucket: each cached wheel's own METADATA, extracted once.

``serve`` and ``index`` publish it as the PEP 658 ``.metadata`` file; ``verify`` checks it and
``gc`` drops it with its wheel.  Which ``*.dist-info/METADATA`` member is the wheel's own is
:func:`wheelcache.core.zipmeta.metadata_member`'s rule.

The bytes of a cached wheel passed a hash check, but a hash says nothing about what the zip
claims: a 1 MiB wheel can hold a METADATA member that inflates to 1 GiB, or a central directory
that lies about sizes.  So :func:`read_wheel_metadata` reads the file exactly as a remote wheel
is read with range requests (:mod:`wheelcache.core.zipmeta`): the tail, the central directory
(bounded), the member's local header and data (bounded), inflated to at most the limit and
checked against its CRC.  Memory stays within those bounds whatever the cache holds.
"""

from __future__ import annotations

import email.parser
import hashlib
import logging
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from packaging.specifiers import InvalidSpecifier, SpecifierSet

from wheelcache.core.models import Sha256
from wheelcache.core.zipmeta import (
    MAX_METADATA,
    TAIL_SIZE,
    find_metadata_entry,
    locate_central_directory,
    metadata_member,
    read_local_entry,
)
from wheelcache.errors import CacheError
from wheelcache.store.cache import Cache
from wheelcache.store.catalog import CatalogRow

__all__ = [
    "MAX_METADATA",
    "MetadataInfo",
    "MetadataStore",
    "dist_info_metadata",
    "read_wheel_metadata",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class MetadataInfo:
    """A wheel's METADATA: its own sha256, Requires-Python, and where its bytes are."""

    sha256: Sha256
    requires_python: str | None
    path: Path | None  # the file in metadata-v1, or None when the cache is read-only
    data: bytes | None = None  # kept in memory only when it could not be written


def dist_info_metadata(zf: zipfile.ZipFile, project: str) -> str:
    """The project's own ``*.dist-info/METADATA`` member of a wheel (see zipmeta)."""
    name = metadata_member(zf.namelist(), project)
    if name is None:
        raise ValueError("no *.dist-info/METADATA in the wheel")
    return name


def _read_at(fh: BinaryIO, offset: int, size: int) -> bytes:
    fh.seek(offset)
    return fh.read(size)


def read_wheel_metadata(path: Path, project: str, limit: int = MAX_METADATA) -> bytes:
    """The ``*.dist-info/METADATA`` of *project* inside the wheel at *path*, bounded.

    Raises ``ValueError`` (:class:`~wheelcache.core.zipmeta.ZipFormatError`) for a file that
    is not a readable wheel or whose METADATA exceeds *limit*; ``OSError`` when it cannot be
    read.
    """
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        tail_size = min(TAIL_SIZE, size)
        tail = _read_at(fh, size - tail_size, tail_size)
        cd = locate_central_directory(tail, size)
        tail_start = size - tail_size
        if cd.offset >= tail_start:
            cd_bytes = tail[cd.offset - tail_start : cd.offset - tail_start + cd.size]
        else:
            cd_bytes = _read_at(fh, cd.offset, cd.size)
        entry = find_metadata_entry(cd_bytes, project, limit)
        start, end = entry.read_span
        span = _read_at(fh, start, min(end, size - 1) - start + 1)
    return read_local_entry(entry, span, limit)


def _requires_python(data: bytes, filename: str) -> str | None:
    # compat32, the parser's default: naming it would import email.policy and its header
    # registry (about 5 ms of every fetch's start, as this module is on the finder's path).
    msg = email.parser.BytesParser().parsebytes(data, headersonly=True)
    raw = msg.get("Requires-Python")
    if not raw:
        return None
    value = str(raw).strip()
    try:
        SpecifierSet(value)
    except InvalidSpecifier:
        log.warning("%s: ignoring invalid Requires-Python %r", filename, value)
        return None
    return value


class MetadataStore:
    """Extract each wheel's METADATA once; remember results (and failures) in memory."""

    def __init__(self, cache: Cache) -> None:
        self._cache = cache
        self._dir = Path(cache.layout.served_metadata)
        self._known: dict[str, MetadataInfo | None] = {}

    def get(self, row: CatalogRow, blob: Path) -> MetadataInfo | None:
        """The METADATA of *row*'s wheel, or ``None`` if the wheel has none we can read."""
        if row.sha256 not in self._known:
            try:
                self._known[row.sha256] = self._load(row, blob)
            except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
                log.warning("no .metadata for %s: %s", row.filename, exc)
                self._known[row.sha256] = None
        return self._known[row.sha256]

    def _load(self, row: CatalogRow, blob: Path) -> MetadataInfo:
        path = self._dir / f"{row.sha256}.metadata"
        stored: Path | None = path
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            data = read_wheel_metadata(blob, row.project)
            if self._cache.read_only:  # served from memory, as the cache is meant to be
                return self._info(data, row.filename, None)
            try:
                self._cache.write_atomic(path, data)
            except CacheError as exc:  # a read-only cache still serves, from memory
                log.warning("keeping METADATA of %s in memory only: %s", row.filename, exc)
                stored = None
        return self._info(data, row.filename, stored)

    @staticmethod
    def _info(data: bytes, filename: str, stored: Path | None) -> MetadataInfo:
        digest = Sha256(hashlib.sha256(data).hexdigest())
        rp = _requires_python(data, filename)
        return MetadataInfo(digest, rp, stored, None if stored else data)
