"""Finding METADATA from byte ranges of a zip, on real zip files built here."""

from __future__ import annotations

import io
import os
import zipfile

import pytest

from wheelcache.core.zipmeta import (
    ZipFormatError,
    find_metadata_entry,
    locate_central_directory,
    read_local_entry,
)

METADATA = b"Metadata-Version: 2.1\nName: torch\nVersion: 2.4.0\nRequires-Dist: sympy\n"


def _wheel(payload: int, members: int = 3, method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=method) as zf:
        zf.writestr(zipfile.ZipInfo("torch/_payload.bin"), os.urandom(payload))
        for i in range(members):
            zf.writestr(f"torch/m{i}.py", f"x = {i}\n" * 10)
        zf.writestr("torch-2.4.0.dist-info/METADATA", METADATA)
        zf.writestr("torch-2.4.0.dist-info/WHEEL", "Wheel-Version: 1.0\n")
    return buf.getvalue()


def _read_like_a_client(data: bytes, tail_size: int) -> bytes:
    total = len(data)
    tail = data[-tail_size:]
    cd = locate_central_directory(tail, total)
    entry = find_metadata_entry(data[cd.offset : cd.offset + cd.size], "torch")
    start, end = entry.read_span
    return read_local_entry(entry, data[start : min(end, total - 1) + 1])


@pytest.mark.parametrize("method", [zipfile.ZIP_DEFLATED, zipfile.ZIP_STORED])
@pytest.mark.parametrize("tail_size", [64 * 1024, 200])
def test_metadata_from_ranges(method: int, tail_size: int) -> None:
    data = _wheel(300_000, members=50, method=method)
    assert _read_like_a_client(data, tail_size) == METADATA


def test_zip64_archive() -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True) as zf:
        with zf.open("torch/big.bin", "w", force_zip64=True) as fh:
            fh.write(b"0" * 1000)
        zf.writestr("torch-2.4.0.dist-info/METADATA", METADATA)
    # Force a ZIP64 end record by rewriting the EOCD offset fields is overkill; zipfile writes
    # ZIP64 extras for force_zip64 entries, which find_metadata_entry must walk past.
    assert _read_like_a_client(buf.getvalue(), 64 * 1024) == METADATA


def test_not_a_zip() -> None:
    with pytest.raises(ZipFormatError, match="end-of-central-directory"):
        locate_central_directory(b"<html>not a wheel</html>", 24)


def test_no_metadata_member() -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("a.py", "x")
    data = buf.getvalue()
    cd = locate_central_directory(data, len(data))
    with pytest.raises(ZipFormatError, match="no \\*.dist-info/METADATA"):
        find_metadata_entry(data[cd.offset : cd.offset + cd.size])
