"""Planning a transfer: which segment a connection takes next, which source serves it.

These functions work on a transfer's segment list and sources only (no I/O, no threads);
:class:`~wheelcache.net.transfer.Transfer` calls them while holding its lock.  The rules:
an idle connection *steals* from a segment that would take long the share that makes both
finish together, so a slow connection or a slow mirror never keeps the last megabytes to
itself; sources at least half as fast as the best take turns.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from wheelcache.core.partial import ALIGN, PartialState, Segment, plan

__all__ = [
    "Source",
    "TransferSettings",
    "contiguous_prefix",
    "fast_sources",
    "plan_rest",
    "steal",
    "victim_keeps",
]


@dataclass(frozen=True, slots=True)
class TransferSettings:
    connections: int = 8  # per file
    split_size: int = 16 * 1024 * 1024  # files at least this big are split
    min_segment: int = 256 * 1024  # never split a segment into pieces smaller than this
    stall_seconds: float = 10.0  # a connection with no progress for this long is replaced
    #: Of a file of unknown size, the first request asks for this much: small files come in
    #: one request, and a big one is planned into segments after the first answer.  No more
    #: than the share of each other connection of a file just at ``split_size``, so that the
    #: first connection does not finish last.
    probe_size: int = 2 * 1024 * 1024
    #: The segment list is saved this often (a killed process loses at most this much time
    #: of transfer) and the data fsynced every ``fsync_seconds`` (a power loss can cost more,
    #: but the final sha256 check catches it and the file is fetched again).
    save_seconds: float = 0.05
    fsync_seconds: float = 2.0
    #: A transfer saves no state before it has run this long (a state file it would delete a
    #: moment later costs more than the file): a crash before then fetches it again from byte
    #: 0.  A failed or cancelled transfer saves its state whatever its age.
    state_after: float = 1.0
    #: An idle connection takes half of another's segment only when that one would need
    #: longer than this to finish: stealing from a fast connection wastes its in-flight bytes.
    steal_seconds: float = 2.0
    #: An idle connection looks this often for a slow one to help; a segment that ends, or
    #: the transfer stopping, wakes it at once.
    idle_seconds: float = 0.25
    #: Hash the prefix while downloading (True) or in one pass after the last byte (False);
    #: scripts/bench_download.py measures both.
    hash_during: bool = True


@dataclass
class Source:
    """One URL the bytes can come from (the index's, a CDN fallback, a mirror)."""

    url: str
    etag: str | None = None
    last_modified: str | None = None
    alive: bool = True
    standby: bool = False  # a fallback, used only once every other source has failed
    got: int = 0
    seconds: float = 0.0
    dropped_because: str | None = None

    def rate(self, segments: Sequence[Segment], now: float) -> float | None:
        """Bytes per second per connection, counting requests still running."""
        got, seconds = self.got, self.seconds
        for s in segments:
            if s.active and s.src is self and s.t0:
                got += s.pos - s.p0
                seconds += now - s.t0
        if seconds < 0.5 and got < 256 * 1024:
            return None  # too little to judge yet
        return got / max(seconds, 1e-3)


def fast_sources(
    sources: Sequence[Source], segments: Sequence[Segment], now: float
) -> list[Source]:
    """The healthy sources at least half as fast as the best (all of them while unjudged)."""
    alive = [src for src in sources if src.alive]
    rates = [(src, src.rate(segments, now)) for src in alive]
    best = max((r for _, r in rates if r is not None), default=None)
    return [src for src, r in rates if best is None or r is None or r >= best / 2]


def victim_keeps(
    victim: Segment, segments: Sequence[Segment], sources: Sequence[Source], now: float
) -> int:
    """How much of its segment a victim keeps: the share that makes both finish together.

    Equal speeds split in half; a victim on a source ten times slower than the best keeps
    a tenth, so a slow mirror gives most of its work away.
    """
    elapsed = now - victim.t0
    victim_rate = (victim.pos - victim.p0) / elapsed if elapsed > 0 else 0.0
    rates = [src.rate(segments, now) for src in sources if src.alive]
    thief_rate = max([*(r for r in rates if r is not None), victim_rate])
    if victim_rate <= 0 or thief_rate <= 0:
        share = 0.5 if victim_rate > 0 else 0.0
    else:
        share = victim_rate / (victim_rate + thief_rate)
    return max(ALIGN, int(victim.left * share))


def steal(
    segments: list[Segment], sources: Sequence[Source], settings: TransferSettings, now: float
) -> Segment | None:
    """Split the slowest long-running segment and return the new, active tail (or None).

    The new segment is added to *segments* (kept sorted by start).
    """
    busy = sorted(
        (
            s
            for s in segments
            if s.active and s.left >= 2 * ALIGN and s.seconds_left(now) > settings.steal_seconds
        ),
        key=lambda s: s.seconds_left(now),
        reverse=True,
    )
    for victim in busy:
        assert victim.end is not None
        keep = victim_keeps(victim, segments, sources, now)
        if victim.left < 2 * settings.min_segment and 2 * keep >= victim.left:
            continue  # similar speeds: a small segment is not worth a new request
        mid = victim.pos + keep
        mid -= mid % ALIGN
        if victim.pos < mid < victim.end:
            break
    else:
        return None
    new = Segment(mid, mid, victim.end, active=True)
    victim.end = mid
    segments.append(new)
    segments.sort(key=lambda s: s.start)
    return new


def plan_rest(st: PartialState, seg: Segment, settings: TransferSettings) -> int:
    """After the first 206: split what lies beyond the probe into bounded segments.

    Returns how many more workers to start.
    """
    size = st.size
    if size is None or settings.connections == 1:
        return 0
    queued = [s for s in st.segments if not s.complete and not s.active]
    if queued:  # planned up front (size was known): start a worker for each
        return min(len(queued), settings.connections - 1)
    if size < settings.split_size or seg.end is None or seg.end >= size:
        if seg.end is None or seg.end > size:
            seg.end = size
        return 0
    rest = plan(seg.end, size, settings.connections - 1)
    st.segments.extend(rest)
    st.segments.sort(key=lambda s: s.start)
    return len(rest)


def contiguous_prefix(segments: Sequence[Segment]) -> int:
    """How many bytes from 0 are all present.

    >>> contiguous_prefix([Segment(0, 10, 10), Segment(10, 15, 20), Segment(20, 30, 30)])
    15
    """
    p = 0
    for s in segments:
        if s.start > p:
            break
        p = s.pos
        if not s.complete:
            break
    return p
