"""The pure helpers of cache care: sizes, ages, and which rows a ``rm`` SPEC names."""

from __future__ import annotations

import pytest

from wheelcache.core.models import Blake3, Sha256
from wheelcache.errors import CacheError
from wheelcache.store.catalog import CatalogRow
from wheelcache.store.maintenance import match_spec, parse_age, parse_size


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("20G", 20 * 2**30),
        ("20g", 20 * 2**30),
        ("1.5T", int(1.5 * 2**40)),
        ("500M", 500 * 2**20),
        ("512KiB", 512 * 1024),
        ("100", 100),
        ("0", 0),
        ("20GB", 20 * 2**30),
    ],
)
def test_parse_size(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "G", "-1G", "20X", "lots"])
def test_parse_size_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="is not a size"):
        parse_size(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90d", 90 * 86400.0),
        ("12h", 43200.0),
        ("30m", 1800.0),
        ("45s", 45.0),
        ("2w", 1209600.0),
        ("0s", 0.0),
        ("1.5d", 1.5 * 86400),
    ],
)
def test_parse_age(text: str, expected: float) -> None:
    assert parse_age(text) == expected


@pytest.mark.parametrize("text", ["90", "d", "ninety days", "-1d"])
def test_parse_age_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="is not an age"):
        parse_age(text)


def _row(project: str, version: str, filename: str) -> CatalogRow:
    sha = Sha256(filename.ljust(64, "0")[:64])
    return CatalogRow(sha, Blake3("b" * 64), filename, project, version, 1, "u", "index", 0, 0)


ROWS = [
    _row("torch", "2.4.0+cu118", "torch-2.4.0+cu118-cp39-cp39-win_amd64.whl"),
    _row("torch", "2.4.0+cu121", "torch-2.4.0+cu121-cp39-cp39-win_amd64.whl"),
    _row("torch", "2.3.1+cu118", "torch-2.3.1+cu118-cp39-cp39-win_amd64.whl"),
    _row("typing_extensions", "4.12.2", "typing_extensions-4.12.2-py3-none-any.whl"),
]


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("torch-2.3.1+cu118-cp39-cp39-win_amd64.whl", [2]),
        ("torch", [0, 1, 2]),
        ("Torch", [0, 1, 2]),
        ("torch==2.4.0", [0, 1]),  # PEP 440: no local version in the pin matches any local
        ("torch==2.4.0+cu121", [1]),
        ("typing-extensions", [3]),
        ("typing_extensions==4.12.2", [3]),
        ("numpy", []),
        ("torch==9", []),
    ],
)
def test_match_spec(spec: str, expected: list[int]) -> None:
    assert match_spec(ROWS, spec) == [ROWS[i] for i in expected]


def test_match_spec_rejects_nonsense() -> None:
    with pytest.raises(CacheError, match="not a filename, a name or name==version"):
        match_spec(ROWS, "torch==>>1")
