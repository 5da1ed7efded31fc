"""Transfers that start while the resolver is still working (used by the ``fetch`` job).

The resolver pins torch first and it is the big file: waiting for the whole closure to be
resolved before the first byte moves wastes the time resolution takes.  :class:`EarlyTransfers`
is the resolver's ``on_pin`` hook: each wheel's download starts as soon as it is pinned, and
the downloads run beside the rest of the resolution.

A root requirement pinned exactly (``--torch 2.4.0``) leaves the resolver one wheel to choose:
:meth:`EarlyTransfers.start_exact` starts it as soon as its page has arrived, before the
resolver has read the pages of all its dependencies (which it does before it pins it).

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

    def start_exact(
        self,
        name: NormalizedName,
        spec: SpecifierSet,
        find_candidates: Callable[[NormalizedName], Sequence[Candidate]],
    ) -> None:
        """*spec* pins one version (``==2.4.0``, no wildcard): start that wheel's download as
        soon as *find_candidates* (the project's page) names it, in a thread of its own."""
        exact = [s for s in spec if s.operator in ("==", "===") and "*" not in s.version]
        if not exact:
            return

        def start_when_listed() -> None:
            try:
                found = [c for c in find_candidates(name) if spec.contains(c.version, True)]
            except WheelcacheError:
                return  # the resolver meets the same error and reports it
            except Exception as exc:  # the run ended under us (its client closed): nothing
                log.debug("early start of %s: %s", name, exc)  # to start, nothing to report
                return
            if len(found) == 1 and not found[0].file.yanked:
                with self._lock:
                    self._pinned.setdefault(name, found[0])
                    self._start(found[0])

        threading.Thread(target=start_when_listed, name="wheelcache-exact", daemon=True).start()

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
