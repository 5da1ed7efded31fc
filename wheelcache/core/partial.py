"""The saved state of a resumable download: its byte segments and validators.

Pure data and (de)serialisation; :mod:`wheelcache.net.transfer` runs the transfer and
:mod:`wheelcache.net.download` stores the state next to the partial file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["ALIGN", "PartialState", "Segment", "plan", "same_boot"]

ALIGN = 64 * 1024


@dataclass
class Segment:
    start: int
    pos: int
    end: int | None  # exclusive; None while the size is unknown
    active: bool = field(default=False, compare=False)
    t0: float = field(default=0.0, compare=False)  # when its current request began
    p0: int = field(default=0, compare=False)  # pos at that moment
    src: Any = field(default=None, compare=False)  # the _Source of its current request

    def seconds_left(self, now: float) -> float:
        """Expected time to finish at the current request's rate (inf when unknown)."""
        elapsed, got = now - self.t0, self.pos - self.p0
        if elapsed < 0.5 or got <= 0:
            return float("inf") if elapsed >= 0.5 else 0.0
        return self.left / (got / elapsed)

    @property
    def left(self) -> int:
        return 0 if self.end is None else self.end - self.pos

    @property
    def complete(self) -> bool:
        return self.end is not None and self.pos >= self.end


@dataclass
class PartialState:
    """What is saved next to a partial file (``partial-v1/<key>.json``)."""

    url: str
    filename: str
    sha256: str | None
    size: int | None
    etag: str | None = None
    last_modified: str | None = None
    segments: list[Segment] = field(default_factory=list)
    #: The segment list as it stood at the last fsync of the data, and the boot it was
    #: written in: after a reboot (or a power loss) only that list can be trusted.
    synced: list[Segment] | None = None
    boot: str | None = None

    @property
    def done(self) -> int:
        return sum(s.pos - s.start for s in self.segments)

    def to_json(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "filename": self.filename,
            "sha256": self.sha256,
            "size": self.size,
            "etag": self.etag,
            "last_modified": self.last_modified,
            "segments": _dump(self.segments),
            "synced": None if self.synced is None else _dump(self.synced),
            "boot": self.boot,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], current_boot: str) -> PartialState:
        """Read a saved state; after a reboot (*current_boot* differs from the one saved), the
        list as of the last fsync is used."""
        segs = _load(data["segments"])
        synced = None if data.get("synced") is None else _load(data["synced"])
        boot = data.get("boot")
        if not same_boot(boot, current_boot):
            # Bytes counted since the last fsync may never have reached the disk.
            segs = synced if synced is not None else []
        return cls(
            url=str(data["url"]),
            filename=str(data["filename"]),
            sha256=data.get("sha256"),
            size=data.get("size"),
            etag=data.get("etag"),
            last_modified=data.get("last_modified"),
            segments=segs,
            synced=synced,
            boot=boot,
        )


def _dump(segs: list[Segment]) -> list[list[int | None]]:
    return [[s.start, s.pos, s.end] for s in segs]


def _load(raw: Any) -> list[Segment]:
    segs = [Segment(int(a), int(b), None if c is None else int(c)) for a, b, c in raw]
    for s in segs:
        if not s.start <= s.pos <= (s.end if s.end is not None else s.pos):
            raise ValueError("inconsistent segment")
    return sorted(segs, key=lambda s: s.start)


def same_boot(a: str | None, b: str | None) -> bool:
    """True when both markers name the same boot.

    >>> same_boot("t1000", "t1060"), same_boot("t1000", "t5000"), same_boot(None, "x")
    (True, False, False)
    """
    if a is None or b is None:
        return False
    if a.startswith("t") and b.startswith("t"):
        try:
            return abs(int(a[1:]) - int(b[1:])) <= 120
        except ValueError:
            return False
    return a == b


def plan(start: int, end: int, n: int) -> list[Segment]:
    """Split ``[start, end)`` into *n* aligned segments.

    >>> [(s.start, s.end) for s in plan(0, 10 * ALIGN, 3)]
    [(0, 196608), (196608, 393216), (393216, 655360)]
    """
    step = max(ALIGN, (end - start) // max(n, 1) // ALIGN * ALIGN)
    cuts = list(range(start, end, step))[:n] + [end]
    return [Segment(a, a, b) for a, b in zip(cuts, cuts[1:], strict=False) if a < b]
