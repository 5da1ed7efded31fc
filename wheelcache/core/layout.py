"""Where things live in the cache: pure path arithmetic, no disk access.

```
<cache>/CACHEDIR.TAG, .gitignore
<cache>/blobs-v1/ab/cd/<blake3>      immutable, written only by os.replace after verification
<cache>/partial-v1/<key>.part/.json  resumable downloads
<cache>/wheels-v1/<filename>         real filenames (hard links, else copies)
<cache>/pages-v1/…                   index pages and .metadata files, and the resolutions
                                     made from them (``resolved/<request key>.json``)
<cache>/tmp-v1/                      temp files (same filesystem, so renames are atomic)
<cache>/catalog-v1.sqlite            sha256 ↔ blake3, filename, project, version, origin
<cache>/reserve-v1                   1 MiB kept free for the catalog (released on a full disk)
```

A format change bumps a suffix; nothing is rewritten in place.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import PurePath

from wheelcache.core.checks import safe_filename
from wheelcache.core.models import Blake3

__all__ = [
    "CACHEDIR_TAG",
    "METADATA_BUCKET",
    "QUARANTINE_BUCKET",
    "CacheLayout",
    "safe_filename",
    "url_key",
]

#: Every bucket of a cache root, versioned as uv's are: a new format gets a new name.
BLOBS_BUCKET = "blobs-v1"
PARTIAL_BUCKET = "partial-v1"
WHEELS_BUCKET = "wheels-v1"
PAGES_BUCKET = "pages-v1"
TMP_BUCKET = "tmp-v1"
LOCKS_BUCKET = "locks-v1"
#: METADATA extracted from cached wheels for serving (PEP 658), ``<sha256>.metadata``.
METADATA_BUCKET = "metadata-v1"
#: Wheels ``verify --repair`` found corrupt, kept for a look.
QUARANTINE_BUCKET = "quarantine-v1"
CATALOG_FILE = "catalog-v1.sqlite"
#: Space held for the catalog, released when the disk is full (see ``store.catalog``).
RESERVE_FILE = "reserve-v1"
_KEY = re.compile(r"[0-9a-f]{64}")

CACHEDIR_TAG = (
    "Signature: 8a477f597d28d172789f06886806bc55\n"
    "# This file is a cache directory tag created by wheelcache.\n"
    "# For information about cache directory tags see https://bford.info/cachedir/\n"
)


def url_key(url: str) -> str:
    """A stable file-name key for a URL (sha256 of it, hex).

    >>> url_key("https://h.invalid/a")[:12]
    '88dfaf316682'
    """
    return hashlib.sha256(url.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class CacheLayout:
    """Paths inside one cache root (works with any ``PurePath`` flavour)."""

    root: PurePath

    @property
    def blobs(self) -> PurePath:
        return self.root / BLOBS_BUCKET

    @property
    def partial(self) -> PurePath:
        return self.root / PARTIAL_BUCKET

    @property
    def wheels(self) -> PurePath:
        return self.root / WHEELS_BUCKET

    @property
    def pages(self) -> PurePath:
        return self.root / PAGES_BUCKET

    @property
    def tmp(self) -> PurePath:
        return self.root / TMP_BUCKET

    @property
    def locks(self) -> PurePath:
        return self.root / LOCKS_BUCKET

    @property
    def catalog(self) -> PurePath:
        return self.root / CATALOG_FILE

    @property
    def served_metadata(self) -> PurePath:
        return self.root / METADATA_BUCKET

    @property
    def quarantine(self) -> PurePath:
        return self.root / QUARANTINE_BUCKET

    @property
    def reserve(self) -> PurePath:
        """Space held for the catalog: a full disk releases it (see ``store.catalog``)."""
        return self.root / RESERVE_FILE

    def blob(self, digest: Blake3) -> PurePath:
        """``blobs-v1/ab/cd/<blake3>``: two fan-out levels keep directories small."""
        if not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise ValueError(f"not a blake3 hex digest: {digest!r}")
        return self.blobs / digest[:2] / digest[2:4] / digest

    def wheel(self, filename: str) -> PurePath:
        return self.wheels / safe_filename(filename)

    def partial_files(self, key: str) -> tuple[PurePath, PurePath]:
        """(data, state) of a resumable download named by *key* (a sha256 or URL key)."""
        _check_key(key)
        return self.partial / f"{key}.part", self.partial / f"{key}.json"

    def page(self, url: str) -> tuple[PurePath, PurePath]:
        """(body, headers) of a cached index page."""
        k = url_key(url)
        return self.pages / "simple" / k[:2] / f"{k}.body", self.pages / "simple" / k[:2] / (
            f"{k}.json"
        )

    @property
    def resolutions(self) -> PurePath:
        """Remembered resolutions (see ``core.resolved``): kept with the pages, since each is
        only good while they are."""
        return self.pages / "resolved"

    def resolved(self, key: str) -> PurePath:
        """What the request with *key* resolved to, and from which pages."""
        _check_key(key)
        return self.resolutions / f"{key}.json"

    def metadata(self, url: str) -> PurePath:
        """A wheel's METADATA, keyed by the wheel's URL (immutable once fetched)."""
        k = url_key(url)
        return self.pages / "metadata" / k[:2] / f"{k}.metadata"

    def lock(self, key: str) -> PurePath:
        """The lock file of *key* (a sha256 or URL key: 64 lower-case hex digits)."""
        _check_key(key)
        return self.locks / f"{key}.lock"


def _check_key(key: str) -> None:
    """Keys name files: only a hex digest may become one (never a value an index wrote).

    >>> _check_key("../../outside/config")
    Traceback (most recent call last):
    ...
    ValueError: not a key (64 lower-case hex digits): '../../outside/config'
    """
    if not isinstance(key, str) or not _KEY.fullmatch(key):
        raise ValueError(f"not a key (64 lower-case hex digits): {key!r}")
