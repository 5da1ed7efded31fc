"""Byte progress on a terminal: the one place tqdm is used (the library reports through
:class:`~wheelcache.core.progress.Reporter`)."""

from __future__ import annotations

import threading
from typing import Any

__all__ = ["TqdmReporter"]


class TqdmReporter:
    """Per-file bars plus a total, only when stderr is a terminal (tqdm lives here only)."""

    def __init__(self) -> None:
        from tqdm import tqdm

        self._tqdm = tqdm
        self._bars: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._total = tqdm(total=0, unit="B", unit_scale=True, desc="total", position=0)

    def file_started(self, filename: str, total: int | None, initial: int) -> None:
        with self._lock:
            old = self._bars.get(filename)
            if old is not None:  # started over: the same bar, from zero
                self._total.total = (self._total.total or 0) - (old.total or 0) + (total or 0)
                old.reset(total=total)
                old.update(initial)
                self._total.update(initial)
                return
            bar = self._tqdm(
                total=total,
                initial=initial,
                unit="B",
                unit_scale=True,
                leave=False,
                desc=filename[:40],
                position=len(self._bars) + 1,
            )
            self._bars[filename] = bar
            self._total.total = (self._total.total or 0) + (total or 0)
            self._total.update(initial)

    def file_advanced(self, filename: str, nbytes: int) -> None:
        with self._lock:
            bar = self._bars.get(filename)
            if bar is not None:
                bar.update(nbytes)
            self._total.update(nbytes)

    def file_restarted(self, filename: str) -> None:
        with self._lock:
            bar = self._bars.get(filename)
            if bar is not None:
                self._total.update(-bar.n)
                bar.reset()

    def file_finished(self, filename: str) -> None:
        with self._lock:
            bar = self._bars.pop(filename, None)
            if bar is not None:
                bar.close()

    def close(self) -> None:
        self._total.close()
