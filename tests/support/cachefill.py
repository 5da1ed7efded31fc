"""Put a built wheel into a wheelcache cache the way ``fetch`` does (for tests)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from blake3 import blake3

from wheelcache.core.models import Blake3, Sha256
from wheelcache.store.cache import Cache, CachedWheel

__all__ = ["add_wheel"]


def add_wheel(cache: Cache, wheel: Path, project: str, version: str) -> CachedWheel:
    """Ingest *wheel*: a temp file inside the cache, both digests, then ``Cache.ingest``."""
    data = wheel.read_bytes()
    tmp = cache.temp_path()
    tmp.write_bytes(data)
    return cache.ingest(
        tmp,
        sha256=Sha256(hashlib.sha256(data).hexdigest()),
        blake3=Blake3(blake3(data).hexdigest()),
        size=len(data),
        filename=wheel.name,
        project=project,
        version=version,
        url=f"http://origin.invalid/files/{wheel.name}",
        hash_origin="index",
    )
