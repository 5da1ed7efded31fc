"""Find a wheel's METADATA inside a remote zip from a few byte ranges.

A wheel is a zip whose central directory sits at the end.  With the last few KiB we find the
end-of-central-directory record (ZIP64 too), with the central directory we find the
``*.dist-info/METADATA`` entry, and with one more range we read and inflate it.  This module only
does the byte arithmetic; the client does the range requests (and
:func:`wheelcache.store.metadata.read_wheel_metadata` the same reads on a local file).

The zip comes from outside, so every size it states is bounded before anything is read or
inflated: a central directory larger than :data:`MAX_CENTRAL_DIRECTORY`, a METADATA member that
claims (or turns out when inflated) to be larger than :data:`MAX_METADATA` is refused, and
inflation stops one byte past the limit whatever the headers say.
"""

from __future__ import annotations

import re
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "MAX_CENTRAL_DIRECTORY",
    "MAX_METADATA",
    "TAIL_SIZE",
    "CentralDirectory",
    "MetadataEntry",
    "ZipFormatError",
    "ZipLimitError",
    "find_metadata_entry",
    "metadata_member",
    "locate_central_directory",
    "read_local_entry",
]

#: Bytes read from the end first: the EOCD (22 bytes + comment ≤ 64 KiB) and, for most small
#: wheels, the whole central directory.
TAIL_SIZE = 64 * 1024
#: The largest METADATA member read (generous: real ones are a few KiB to a few hundred).
MAX_METADATA = 16 * 1024 * 1024
#: The largest central directory read (a 2.5 GB torch wheel has about 2 MiB of it).
MAX_CENTRAL_DIRECTORY = 64 * 1024 * 1024

_EOCD_SIG = b"PK\x05\x06"
_ZIP64_LOCATOR_SIG = b"PK\x06\x07"
_ZIP64_EOCD_SIG = b"PK\x06\x06"
_CDH_SIG = b"PK\x01\x02"
_LFH_SIG = b"PK\x03\x04"


class ZipFormatError(ValueError):
    """The bytes are not a zip we can read."""


class ZipLimitError(ZipFormatError):
    """The zip states, or holds, more than the limit (a lie or a bomb: no other way helps)."""


@dataclass(frozen=True, slots=True)
class CentralDirectory:
    offset: int
    size: int


@dataclass(frozen=True, slots=True)
class MetadataEntry:
    name: str
    header_offset: int
    compressed_size: int
    uncompressed_size: int
    method: int
    crc32: int | None = None

    @property
    def read_span(self) -> tuple[int, int]:
        """A range that surely holds the local header and the data (inclusive end).

        The local header's extra field can differ from the central one; 1 KiB of slack
        covers it (real wheels have none).
        """
        start = self.header_offset
        return start, start + 30 + len(self.name.encode()) + 1024 + self.compressed_size - 1


def locate_central_directory(
    tail: bytes, file_size: int, limit: int = MAX_CENTRAL_DIRECTORY
) -> CentralDirectory:
    """Find the central directory from the last bytes of a zip of *file_size* bytes; refuse
    one of more than *limit* bytes."""
    pos = tail.rfind(_EOCD_SIG)
    if pos < 0 or len(tail) - pos < 22:
        raise ZipFormatError("no end-of-central-directory record (not a zip file?)")
    tail_start = file_size - len(tail)
    (_, _, _, _, entries, cd_size, cd_offset, _) = struct.unpack("<4sHHHHIIH", tail[pos : pos + 22])
    if cd_offset == 0xFFFFFFFF or cd_size == 0xFFFFFFFF or entries == 0xFFFF:
        loc = pos - 20
        if loc < 0 or tail[loc : loc + 4] != _ZIP64_LOCATOR_SIG:
            raise ZipFormatError("ZIP64 locator missing")
        (_, _, eocd64_offset, _) = struct.unpack("<4sIQI", tail[loc : loc + 20])
        rel = eocd64_offset - tail_start
        if rel < 0 or tail[rel : rel + 4] != _ZIP64_EOCD_SIG:
            raise ZipFormatError("ZIP64 end record not in the tail read")
        fields = struct.unpack("<4sQHHIIQQQQ", tail[rel : rel + 56])
        cd_size, cd_offset = fields[8], fields[9]
    if cd_offset + cd_size > file_size:
        raise ZipFormatError("central directory points past the end of the file")
    if cd_size > limit:
        raise ZipLimitError(f"central directory of {cd_size} bytes (more than {limit})")
    return CentralDirectory(cd_offset, cd_size)


def _zip64_values(extra: bytes, comp: int, uncomp: int, offset: int) -> tuple[int, int, int]:
    i = 0
    while i + 4 <= len(extra):
        hid, hlen = struct.unpack("<HH", extra[i : i + 4])
        data = extra[i + 4 : i + 4 + hlen]
        if hid == 0x0001:
            vals = list(struct.unpack(f"<{len(data) // 8}Q", data[: len(data) // 8 * 8]))
            if uncomp == 0xFFFFFFFF and vals:
                uncomp = vals.pop(0)
            if comp == 0xFFFFFFFF and vals:
                comp = vals.pop(0)
            if offset == 0xFFFFFFFF and vals:
                offset = vals.pop(0)
        i += 4 + hlen
    return comp, uncomp, offset


def metadata_member(names: Sequence[str], project: str | None = None) -> str | None:
    """The ``<dist>.dist-info/METADATA`` member among *names*: the project's own when a wheel
    vendors another dist-info, else the first; None when there is none.

    >>> metadata_member(["vendored-1.0.dist-info/METADATA", "torch-2.4.0.dist-info/METADATA"],
    ...                 "torch")
    'torch-2.4.0.dist-info/METADATA'
    """
    found = [n for n in names if n.count("/") == 1 and n.endswith(".dist-info/METADATA")]
    if project is not None:
        want = _norm(project)
        for name in found:
            dist = name.split("/", 1)[0].removesuffix(".dist-info").rsplit("-", 1)[0]
            if _norm(dist) == want:
                return name
    return found[0] if found else None


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def find_metadata_entry(
    central_directory: bytes, project_prefix: str | None = None, limit: int = MAX_METADATA
) -> MetadataEntry:
    """Find ``<name>-<version>.dist-info/METADATA`` in the central directory bytes.

    *project_prefix* (``torch-2.4.0``'s ``torch``) picks the right dist-info if a wheel
    vendors another one.  An entry that says it is larger than *limit* is refused before a
    byte of it is read.
    """
    i = 0
    found: list[MetadataEntry] = []
    cd = central_directory
    while i + 46 <= len(cd) and cd[i : i + 4] == _CDH_SIG:
        (_, _, _, _, method, _, _, crc, comp, uncomp, nlen, xlen, clen, _, _, _, off) = (
            struct.unpack("<4sHHHHHHIIIHHHHHII", cd[i : i + 46])
        )
        name = cd[i + 46 : i + 46 + nlen].decode("utf-8", errors="replace")
        extra = cd[i + 46 + nlen : i + 46 + nlen + xlen]
        parts = name.split("/")
        if len(parts) == 2 and parts[0].endswith(".dist-info") and parts[1] == "METADATA":
            comp, uncomp, off = _zip64_values(extra, comp, uncomp, off)
            found.append(MetadataEntry(name, off, comp, uncomp, method, crc))
        i += 46 + nlen + xlen + clen
    chosen = metadata_member([e.name for e in found], project_prefix)
    if chosen is None:
        raise ZipFormatError("no *.dist-info/METADATA in the central directory")
    entry = next(e for e in found if e.name == chosen)
    if max(entry.compressed_size, entry.uncompressed_size) > limit:
        raise ZipLimitError(
            f"METADATA of {max(entry.compressed_size, entry.uncompressed_size)} bytes "
            f"(more than {limit})"
        )
    return entry


def read_local_entry(entry: MetadataEntry, span: bytes, limit: int = MAX_METADATA) -> bytes:
    """Inflate the entry's data from bytes starting at its local header; never more than
    *limit* bytes of output, whatever the headers say."""
    if span[:4] != _LFH_SIG:
        raise ZipFormatError("local file header not where the central directory says")
    nlen, xlen = struct.unpack("<HH", span[26:30])
    start = 30 + nlen + xlen
    data = span[start : start + entry.compressed_size]
    if len(data) != entry.compressed_size:
        raise ZipFormatError("entry data cut short")
    if entry.method == 0:
        out = data
    elif entry.method == 8:
        try:
            inflater = zlib.decompressobj(-15)
            out = inflater.decompress(data, limit + 1)
        except zlib.error as exc:
            raise ZipFormatError(f"cannot inflate METADATA: {exc}") from exc
    else:
        raise ZipFormatError(f"unsupported compression method {entry.method}")
    if len(out) > limit:
        raise ZipLimitError(f"METADATA inflates to more than {limit} bytes")
    if len(out) != entry.uncompressed_size:
        raise ZipFormatError("METADATA size differs from the central directory")
    if entry.crc32 is not None and zlib.crc32(out) != entry.crc32:
        raise ZipFormatError("METADATA does not match its CRC-32")
    return out
