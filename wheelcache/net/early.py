"""Transfers that start while the resolver is still working (used by the ``fetch`` job).

The resolver pins torch first and it is the big file: waiting for the whole closure to be
resolved before the first byte moves wastes the time resolution takes.  :class:`EarlyTransfers`
is the resolver's ``on_pin`` hook: each wheel's download starts as soon as it is pinned, and
the downloads run beside the rest of the resolution.

The resolver reads the pages of all root requirements before it pins the first one.  A root
whose wheel is already decided by its own page starts as soon as that page has been judged
(:meth:`EarlyTransfers.expect`, called back by the finder): one pinned exactly
(``--torch 2.4.0``) that the page lists once, and, with ``--no-deps`` (nothing but the root's
own specifier then decides), the newest wheel it allows — forty small wheels no longer wait
for the fortieth page before the first byte moves.

Two rules keep a speculative start cheap on a slow link:

* torch-family wheels wait until every requested family project is pinned, because the
  companions are checked against torch's pins and a torch without a matching torchaudio for
  the target (several GB) is dropped by a backtrack moments later;
* a wheel the resolver replaces, or that is not in the final resolution, is abandoned: its
  transfer stops and its partial stays in the cache for a run that wants it.

Verification is unchanged: every file is checked against the index's sha256 before it is
visible, and partial state is saved as for any download.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence

from packaging.specifiers import SpecifierSet
from packaging.utils import NormalizedName

from wheelcache.core.evaluator import Candidate
from wheelcache.core.provider import Resolution
from wheelcache.errors import WheelcacheError
from wheelcache.net.download import Downloader, DownloadJob
from wheelcache.store.cache import CachedWheel

__all__ = ["EarlyTransfers"]

log = logging.getLogger(__name__)

#: Picks the wheel a root's page decides (or None), from its candidates and specifier.
Chooser = Callable[[Sequence[Candidate], SpecifierSet], "Candidate | None"]


class EarlyTransfers:
    """Starts downloads from the resolver's pins; :meth:`finish` waits for the final set."""

    def __init__(
        self,
        downloader: Downloader,
        make_job: Callable[[Candidate], DownloadJob],
        *,
        hold_together: Iterable[NormalizedName] = (),
    ) -> None:
        self.downloader = downloader
        self.make_job = make_job
        #: Projects whose transfers start only once all of them are pinned.
        self.hold_together = frozenset(hold_together)
        self._pinned: dict[NormalizedName, Candidate] = {}
        self._started: dict[str, concurrent.futures.Future[CachedWheel]] = {}
        self._lock = threading.RLock()
        self._closed = False
        #: Roots that may start when their page is judged: their specifier, and how to choose
        #: (None: an exact pin, taken when the page lists it once).
        self._expected: dict[NormalizedName, tuple[SpecifierSet, Chooser | None]] = {}
        self._find_candidates: Callable[[NormalizedName], Sequence[Candidate]] | None = None

    def expect(
        self,
        wanted: Mapping[NormalizedName, SpecifierSet],
        find_candidates: Callable[[NormalizedName], Sequence[Candidate]],
        *,
        likely: Chooser | None = None,
    ) -> None:
        """Which roots may start before the resolver pins them, once :meth:`listed` says
        their page is in: each one pinned exactly (``==2.4.0``, no wildcard), and with
        *likely* (``--no-deps``) every root outside the torch family, with the candidate
        *likely* picks.  *find_candidates* is the resolver's own view (hash pins applied)."""
        with self._lock:
            for name, spec in wanted.items():
                exact = any(s.operator in ("==", "===") and "*" not in s.version for s in spec)
                if exact or (likely is not None and name not in self.hold_together):
                    self._expected[name] = (spec, None if exact else likely)
            self._find_candidates = find_candidates

    def listed(self, name: NormalizedName) -> None:
        """The finder has judged *name*'s page: start its wheel if :meth:`expect` named it
        and the page decides it."""
        with self._lock:
            expected = self._expected.pop(name, None)
            find = self._find_candidates
        if expected is None or find is None:
            return
        spec, likely = expected
        try:
            found = [c for c in find(name) if spec.contains(c.version, True)]
            if likely is not None:
                choice = likely(found, spec)
            else:
                choice = found[0] if len(found) == 1 and not found[0].file.yanked else None
            if choice is not None:
                with self._lock:
                    self._pinned.setdefault(name, choice)
                    self._start(choice)
        except WheelcacheError:
            return  # the resolver meets the same error and reports it
        except Exception as exc:  # the run ended under us (its client closed, its pool shut
            log.debug("early start of %s: %s", name, exc)  # down): nothing to start or say

    def on_pin(self, candidate: Candidate) -> None:
        """The resolver settled on *candidate* (it may still change its mind)."""
        with self._lock:
            previous = self._pinned.get(candidate.name)
            if previous is not None and previous.file.filename != candidate.file.filename:
                self._abandon(previous)
            self._pinned[candidate.name] = candidate
            if candidate.name not in self.hold_together:
                self._start(candidate)
            elif self.hold_together <= self._pinned.keys():
                for name in self._pinned:  # pin order: torch first
                    if name in self.hold_together:
                        self._start(self._pinned[name])

    def close(self) -> None:
        """No transfer starts after this (the run ended or failed)."""
        with self._lock:
            self._closed = True

    def finish(
        self, resolution: Resolution, sizes: Mapping[str, int] | None = None
    ) -> list[CachedWheel]:
        """The resolution's wheels in the cache, in its order: pins it did not keep are
        abandoned, the rest not yet started start now (biggest first), then all are awaited."""
        chosen = {c.file.filename for c in resolution.candidates}
        with self._lock:
            for c in list(self._pinned.values()):
                if c.file.filename not in chosen:
                    self._abandon(c)
            sizes = sizes or {}
            later = sorted(
                (c for c in resolution.candidates if c.file.filename not in self._started),
                key=lambda c: -(c.file.size or sizes.get(c.file.url) or 0),
            )
            for c in later:
                self._start(c)
            futures = [self._started[c.file.filename] for c in resolution.candidates]
            self._closed = True
        return self.downloader.wait(futures)

    def _start(self, candidate: Candidate) -> None:
        filename = candidate.file.filename
        if filename not in self._started and not self._closed:
            self._started[filename] = self.downloader.start(self.make_job(candidate))

    def _abandon(self, candidate: Candidate) -> None:
        future = self._started.pop(candidate.file.filename, None)
        if future is not None:
            log.info("%s: the resolver moved on; stopping its download", candidate.file.filename)
            self.downloader.abandon(candidate.file.filename)
