"""Progress reporting as a small protocol; the library never imports tqdm.

The CLI passes a tqdm-backed reporter; library callers get :class:`NullReporter`.  Reporters
are called from download threads and must be thread-safe.
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["NullReporter", "Reporter"]


class Reporter(Protocol):
    def file_started(self, filename: str, total: int | None, initial: int) -> None:
        """A download began (``initial`` bytes were already there from a partial)."""

    def file_advanced(self, filename: str, nbytes: int) -> None:
        """*nbytes* more arrived."""

    def file_restarted(self, filename: str) -> None:
        """The partial was discarded; progress starts from zero again."""

    def file_finished(self, filename: str) -> None:
        """The file is verified and stored (or failed: progress stops either way)."""


class NullReporter:
    """Reports nothing."""

    def file_started(self, filename: str, total: int | None, initial: int) -> None:
        pass

    def file_advanced(self, filename: str, nbytes: int) -> None:
        pass

    def file_restarted(self, filename: str) -> None:
        pass

    def file_finished(self, filename: str) -> None:
        pass
