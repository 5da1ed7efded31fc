"""Remembered resolutions (see :mod:`wheelcache.core.resolved`): recalled when every page
they were made from is unchanged and every wheel is still in the cache, written after a
fetch that read all its pages.

A recall costs one conditional request per page, in parallel (``--offline``: none), and no
resolver: a second identical ``fetch`` of a PyTorch closure does little more than ask the
index whether anything changed.  Anything that does not hold sends the run down the ordinary
path, which reads the same pages from the same page store (no page is asked for twice).
"""

from __future__ import annotations

import concurrent.futures
import logging
from collections.abc import Sequence
from pathlib import Path

from packaging.version import Version

from wheelcache.core.evaluator import Candidate
from wheelcache.core.models import DistFile, Sha256
from wheelcache.core.requirements import Resolution
from wheelcache.core.resolved import (
    MAX_RECORD,
    ChosenFile,
    PageSeen,
    ResolvedRecord,
    decode_record,
    encode_record,
    fits,
)
from wheelcache.core.target import Target
from wheelcache.errors import CacheError, WheelcacheError
from wheelcache.net.pages import PageStore
from wheelcache.store.cache import Cache, CachedWheel

__all__ = ["Recalled", "recall", "remember"]

log = logging.getLogger(__name__)

Recalled = tuple[ResolvedRecord, Resolution, list[CachedWheel]]


def recall(
    cache: Cache, pages: PageStore, key: str, target: Target, threads: int
) -> Recalled | None:
    """The remembered resolution of request *key* for *target*, its wheels in the cache,
    when it still holds; None otherwise (no record, a changed page, a wheel gone)."""
    path = Path(cache.layout.resolved(key))
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_RECORD + 1)
    except OSError:
        return None
    record = decode_record(data, key)
    if record is None or not fits(record, target.tags):
        log.debug("%s: not a usable resolution record; resolving", path)
        return None
    if not _unchanged(pages, record.pages, threads):
        return None
    wheels = []
    for f in record.files:
        wheel = cache.find(f.filename, f.sha256)
        if wheel is None:
            log.debug("%s is no longer in the cache; resolving", f.filename)
            return None
        wheels.append(wheel)
    log.info("the index pages are unchanged: the same %d wheels as last time", len(wheels))
    return record, _resolution(record.files), wheels


def _unchanged(pages: PageStore, seen: Sequence[PageSeen], threads: int) -> bool:
    """Whether every page reads back as the same bytes (asked for in parallel)."""

    def same(p: PageSeen) -> bool:
        try:
            got = pages.get(p.url, p.accept)
        except WheelcacheError:
            return False  # the ordinary path meets the same failure and says what it is
        now = PageSeen(p.url, p.accept, got.status, Sha256(got.sha256), got.url, got.content_type)
        if now != p:
            log.debug("page %s changed; resolving", p.url)
            return False
        return True

    pool = concurrent.futures.ThreadPoolExecutor(
        max(1, min(len(seen), threads)), thread_name_prefix="wheelcache-recall"
    )
    try:
        futures = [pool.submit(same, p) for p in seen]
        for done in concurrent.futures.as_completed(futures):
            if not done.result():
                return False  # one changed page decides: the rest are not waited for
        return True
    except BaseException:  # Ctrl-C: retry waits in the pool's threads end at once
        if pages.http is not None:
            pages.http.cancel()
        raise
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def _resolution(files: Sequence[ChosenFile]) -> Resolution:
    cands = tuple(
        Candidate(
            f.project,
            Version(f.version),
            DistFile(f.filename, f.url, f.sha256, size=f.size, upload_time=f.upload_time),
            0,
        )
        for f in files
    )
    return Resolution(cands, {f.project: f.required_by for f in files if f.required_by})


def remember(
    cache: Cache,
    pages: PageStore,
    key: str,
    resolution: Resolution,
    wheels: Sequence[CachedWheel],
    said: tuple[tuple[str, ...], tuple[str, ...]],
) -> None:
    """Record what request *key* resolved to, unless a page failed in this run (then it was
    not made from pages a later run can compare) or the cache takes no writes."""
    seen = pages.seen()
    if seen is None or not seen or cache.read_only:
        return
    files = tuple(
        ChosenFile(
            project=c.name,
            version=str(c.version),
            filename=c.file.filename,
            url=c.file.url,
            sha256=w.sha256,
            size=w.size,
            upload_time=c.file.upload_time,
            required_by=tuple(resolution.required_by.get(c.name, ())),
        )
        for c, w in zip(resolution.candidates, wheels, strict=True)
    )
    record = ResolvedRecord(key, seen, files, *said)
    data = encode_record(record)
    if decode_record(data, key) != record:  # a value a record may not hold (a long URL …)
        log.debug("resolution not recorded: it would not read back as written")
        return
    path = Path(cache.layout.resolved(key))
    try:  # a copy of what can be worked out again: no fsync (a torn one does not decode)
        cache.write_atomic(path, data, durable=False)
    except CacheError as exc:
        log.debug("resolution not recorded: %s", exc)
