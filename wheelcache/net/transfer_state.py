"""Saving a transfer's state: the segment list often, and with the data fsynced now and then.

A killed process resumes each segment where it stood; a rebooted machine where the disk surely
has it (the segment list as of the last fsync, kept with the boot it belongs to).
"""

from __future__ import annotations

import functools
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path

from wheelcache.core.partial import PartialState, Segment
from wheelcache.store.cache import fsync_file

__all__ = ["Checkpoints", "boot_marker"]

log = logging.getLogger(__name__)


@functools.cache  # one boot per process: read once, not once per file (nine system calls)
def boot_marker() -> str:
    """Which boot of this machine we are in: Linux's boot id, elsewhere the boot time.

    The time form (``t<seconds>``) shifts with clock corrections and sleep, so
    :func:`~wheelcache.core.partial.same_boot` allows for
    that; a false "another boot" only costs the bytes of the
    last two seconds before the fsync.
    """
    if sys.platform.startswith("linux"):
        try:
            with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as fh:
                return fh.read().strip()
        except OSError:
            pass
    return f"t{int(time.time() - time.monotonic())}"


class Checkpoints:
    """Snapshots of one transfer's state, handed to *save* (``save(state, durable=…)``).

    Workers write unbuffered, so every byte a segment counts is in the OS: a killed process
    loses nothing it counted.  Only a power loss between two syncs can leave counted bytes
    unwritten, and the sha256 check at the end catches that.
    """

    def __init__(self, part: Path, save: Callable[..., None], synced: list[Segment] | None) -> None:
        self.part = part
        self._save = save
        self.synced = synced
        self.boot = boot_marker()

    def snapshot(self, st: PartialState) -> PartialState:
        """A copy of *st* to save (the caller holds the transfer's lock)."""
        current = [Segment(s.start, s.pos, s.end) for s in st.segments]
        return PartialState(
            st.url,
            st.filename,
            st.sha256,
            st.size,
            st.etag,
            st.last_modified,
            current,
            self.synced,
            self.boot,
        )

    def save(self, snapshot: PartialState, *, sync: bool) -> None:
        """Save *snapshot*; with *sync*, fsync the data first (skipped when that fails)."""
        if sync:
            try:
                fsync_file(self.part)
            except OSError as exc:
                log.debug("fsync of %s failed: %s", self.part, exc)
                return
            # Everything in this snapshot is now on the disk: after a reboot, resume from it.
            self.synced = snapshot.synced = snapshot.segments
        self._save(snapshot, durable=sync)
