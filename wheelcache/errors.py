"""The one exception tree of wheelcache.

Every error a user can see is a :class:`WheelcacheError`; its ``str()`` is one line that says
what was wrong and what to do.  Third-party errors (socket, TLS, sqlite3, OSError) are translated at
the edge with ``raise ... from exc`` and never reach the user as they are::

    WheelcacheError
    ├── TargetError               bad --cuda/--py/--platform/--target input
    ├── ConfigError               a config file (or WHEELCACHE_* value) that is not valid
    ├── RequirementError          a requirement string that does not parse
    │   └── RequirementsFileError     a requirements file: unreadable, or a line (file:line)
    ├── LockFileError             a PEP 751 lock: unreadable, invalid, or not for the target
    ├── HashPinError              a --hash pin the index does not have (names both digests)
    ├── IndexPageError            an index page that cannot be fetched or parsed
    │   └── IndexUnreachableError     connection refused, DNS, timeout, HTTP 5xx …
    ├── ResolutionError           what has no usable file, or conflicts, and the chain to it
    ├── MetadataError             a wheel's METADATA cannot be obtained or parsed
    ├── DownloadError             a file could not be downloaded
    │   ├── ConnectionFault           the connection failed (socket and TLS errors, net/http11)
    │   ├── ResponseTooLargeError     a body over its limit (page, .metadata, range)
    │   ├── HashMismatchError         bytes do not match the index's sha256
    │   └── IncompleteDownloadError   size differs from what was announced
    ├── CacheError                the cache cannot be read or written (full disk, permissions)
    └── BundleError               bundles (export/import/verify)
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlsplit

__all__ = [
    "BundleError",
    "CacheError",
    "ConfigError",
    "ConnectionFault",
    "DownloadError",
    "HashMismatchError",
    "HashPinError",
    "IncompleteDownloadError",
    "IndexPageError",
    "IndexUnreachableError",
    "LockFileError",
    "MetadataError",
    "RequirementError",
    "RequirementsFileError",
    "ResolutionError",
    "ResponseTooLargeError",
    "TargetError",
    "WheelcacheError",
]


class WheelcacheError(Exception):
    """Root of every error wheelcache reports to a user."""


class TargetError(WheelcacheError, ValueError):
    """A target flag or target file that does not describe a usable target."""


class ConfigError(WheelcacheError, ValueError):
    """The config file cannot be read, or names a key or value that is not valid (it says
    which file, which key and the nearest valid one)."""


class RequirementError(WheelcacheError, ValueError):
    """A requirement argument that is not valid PEP 508."""


class RequirementsFileError(RequirementError):
    """A requirements file that cannot be read, or a line in it wheelcache cannot follow.

    ``line`` is 0 when the problem is the file as a whole (missing, not UTF-8, too big).
    """

    def __init__(self, source: str, line: int, reason: str) -> None:
        super().__init__(source, line, reason)
        self.source = source
        self.line = line
        self.reason = reason

    def __str__(self) -> str:
        where = f"{self.source}:{self.line}" if self.line else self.source
        return f"{where}: {self.reason}"


class LockFileError(WheelcacheError):
    """A PEP 751 lock file that cannot be read or validated, or that does not fit the target."""

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(source, reason)
        self.source = source
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.source}: {self.reason}"


class HashPinError(WheelcacheError):
    """A ``--hash`` pin that no file on the index has; names the pin and what the index has."""

    def __init__(
        self, where: str, requirement: str, pinned: Sequence[str], found: Sequence[tuple[str, str]]
    ) -> None:
        super().__init__(where, requirement, pinned, found)
        self.where = where
        self.requirement = requirement
        self.pinned = tuple(pinned)
        self.found = tuple(found)

    def __str__(self) -> str:
        pins = ", ".join(f"sha256:{p}" for p in self.pinned)
        if self.found:
            has = "; ".join(f"{name} sha256:{sha or '(no hash given)'}" for name, sha in self.found)
            what = f"the index has {has}"
        else:
            what = "the index has no file of it for the target"
        return (
            f"{self.where}: {self.requirement} is pinned to {pins} but {what}; nothing was "
            "fetched (update the pin, or check that the index is the one the file was made for)"
        )


class IndexPageError(WheelcacheError):
    """An index page could not be fetched or parsed."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(url, reason)
        self.url = url
        self.reason = reason

    def __str__(self) -> str:
        return f"index page {self.url}: {self.reason}"


class IndexUnreachableError(IndexPageError):
    """The index did not answer at all (network error, timeout or server error).

    ``hint`` says what to do instead, in the caller's terms (``--mirror``, ``--offline``…).
    """

    def __init__(self, url: str, reason: str, hint: str = "") -> None:
        super().__init__(url, reason)
        self.hint = hint

    def __str__(self) -> str:
        try:
            host = urlsplit(self.url).netloc or self.url
        except ValueError:  # a malformed URL ("[::1"): the error must still say so
            host = self.url
        hint = self.hint or "check the URL and the network, or use --offline to work from the cache"
        return f"cannot reach {host}: {self.reason} ({self.url}); {hint}"


class ResolutionError(WheelcacheError):
    """The requirements cannot be satisfied together on the target.

    ``str()`` is a short explanation (a few lines); ``details`` has every requirement chain
    behind it, for ``-v``.
    """

    def __init__(self, message: str, details: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.details = tuple(details)


class MetadataError(WheelcacheError):
    """A wheel's core metadata could not be obtained or parsed."""

    def __init__(self, filename: str, reason: str) -> None:
        super().__init__(filename, reason)
        self.filename = filename
        self.reason = reason

    def __str__(self) -> str:
        return f"metadata of {self.filename}: {self.reason}"


class DownloadError(WheelcacheError):
    """A file could not be downloaded; names the URL and the reason."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(url, reason)
        self.url = url
        self.reason = reason

    def __str__(self) -> str:
        return f"download of {self.url} failed: {self.reason}"


class ConnectionFault(DownloadError):
    """The connection itself failed: refused, reset, dropped, timed out, or a bad URL.

    ``retryable`` says whether waiting and asking again may help (not for a URL without
    http(s)); ``timed_out`` marks a read or connect timeout (a stalled connection).
    """

    def __init__(
        self,
        url: str,
        reason: str,
        *,
        retryable: bool,
        timed_out: bool = False,
        unreachable: bool = False,
    ) -> None:
        super().__init__(url, reason)
        self.retryable = retryable
        self.timed_out = timed_out
        #: The host cannot be reached at all (name not resolved, connection refused, TLS
        #: failure, no answer to connect): waiting does not help a page request.
        self.unreachable = unreachable


class ResponseTooLargeError(DownloadError):
    """A body larger than the limit for what was asked (a page, a ``.metadata`` file, a range):
    refused as soon as it is known, never read to its end."""

    def __init__(self, url: str, limit: int, what: str) -> None:
        super().__init__(url, f"{what} larger than {_mib(limit)}")
        self.limit = limit
        self.what = what


def _mib(n: int) -> str:
    """``16 MiB`` for whole MiB, else bytes."""
    return f"{n >> 20} MiB" if n and n % (1 << 20) == 0 else f"{n} bytes"


class HashMismatchError(DownloadError):
    """Downloaded bytes do not match the digest the index announced."""

    def __init__(self, url: str, filename: str, expected: str, actual: str) -> None:
        super().__init__(url, f"sha256 mismatch for {filename}")
        self.filename = filename
        self.expected = expected
        self.actual = actual

    def __str__(self) -> str:
        return (
            f"hash mismatch for {self.filename} from {self.url}: expected sha256 "
            f"{self.expected}, got {self.actual}; nothing was stored (the file or the index "
            "is corrupt; try again or use another mirror)"
        )


class IncompleteDownloadError(DownloadError):
    """The body was shorter or longer than announced."""


class CacheError(WheelcacheError):
    """The cache could not be read or written."""


class BundleError(WheelcacheError):
    """A bundle could not be exported, verified or imported."""
