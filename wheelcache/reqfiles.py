"""Requirement files and PEP 751 lock files on disk: read into the core's values.

The parsing is pure (:mod:`wheelcache.core.requirements_file`,
:mod:`wheelcache.core.lockfile`); this module is the edge that opens files.  It sits low (it
needs nothing but the core) because ``fetch``, ``serve``, ``index`` and ``export`` all read the
same files with the same rules.

* A requirements file is followed through its ``-r``/``-c`` lines, each path relative to the
  file that names it, as pip does.  Files are bounded (size, count, depth) and a file that
  includes itself is an error, not a recursion.  Text is UTF-8, or UTF-16/32 with a BOM (what
  Windows PowerShell writes for ``pip freeze > requirements.txt``).
* A lock is recognised by its name (``pylock.toml``, ``pylock.<name>.toml``, PEP 751), read as
  TOML and validated by :mod:`packaging.pylock`.
"""

from __future__ import annotations

import codecs
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from wheelcache.core.lockfile import parse_pylock
from wheelcache.core.requirements_file import (
    Entry,
    Include,
    Option,
    RequirementSet,
    collect,
    parse_requirements_text,
)
from wheelcache.errors import LockFileError, RequirementsFileError

if TYPE_CHECKING:  # packaging.pylock (about 15 ms to import) is loaded where a lock is
    from packaging.pylock import Pylock

__all__ = [
    "MAX_FILE_BYTES",
    "RequirementInputs",
    "is_lock_file",
    "read_lock_file",
    "read_requirement_files",
]

#: A requirements or lock file bigger than this is not one (a lock of a few thousand
#: packages is a few MiB).
MAX_FILE_BYTES = 32 * 1024 * 1024
MAX_FILES = 256
MAX_DEPTH = 32
_BOMS = (  # UTF-32 before UTF-16: the UTF-32-LE BOM starts with the UTF-16-LE one
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


def is_lock_file(path: Path) -> bool:
    """Whether *path* names a PEP 751 lock (``pylock.toml`` or ``pylock.<name>.toml``)."""
    from packaging.pylock import is_valid_pylock_path

    return is_valid_pylock_path(path)


def _read_bytes(path: Path, fail: Callable[[str], Exception]) -> bytes:
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError as exc:
        raise fail("no such file") from exc
    except IsADirectoryError as exc:
        raise fail("is a directory, not a file") from exc
    except OSError as exc:
        raise fail(f"cannot read it: {exc.strerror or exc}") from exc
    if len(data) > MAX_FILE_BYTES:
        raise fail(f"bigger than {MAX_FILE_BYTES // (1024 * 1024)} MiB; not a requirements file")
    return data


def _decode(data: bytes, fail: Callable[[str], Exception]) -> str:
    encoding = next((enc for bom, enc in _BOMS if data.startswith(bom)), "utf-8")
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise fail(f"not {encoding.upper()} text ({exc.reason} at byte {exc.start})") from exc


@dataclass(frozen=True)
class RequirementInputs:
    """What the requirement files said, folded, and every file that was read (for reports)."""

    requirements: RequirementSet
    files: tuple[Path, ...]


class _Reader:
    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ
        self.files: list[Path] = []

    def read(
        self, path: Path, *, constraint: bool, chain: tuple[Path, ...], named_at: str | None
    ) -> list[Entry]:
        def fail(reason: str) -> RequirementsFileError:
            if named_at is None:
                return RequirementsFileError(str(path), 0, reason)
            source, _, line = named_at.rpartition(":")
            return RequirementsFileError(source, int(line), f"{path}: {reason}")

        if is_lock_file(path):
            raise fail("is a lock file; give it to fetch -r itself, not inside a requirements file")
        key = path.resolve()
        if key in chain:
            loop = " -> ".join(str(p) for p in (*chain, key))
            raise fail(f"includes itself ({loop})")
        if len(chain) >= MAX_DEPTH or len(self.files) >= MAX_FILES:
            raise fail(f"more than {MAX_DEPTH} levels or {MAX_FILES} files of -r/-c")
        text = _decode(_read_bytes(path, fail), fail)
        self.files.append(path)
        entries = parse_requirements_text(
            text, source=str(path), constraint=constraint, environ=self.environ
        )
        out: list[Entry] = []
        for e in entries:
            if isinstance(e, Include):
                out += self._include(e, path, (*chain, key))
            elif isinstance(e, Option) and e.name == "--find-links":
                out.append(_find_links(e, path))
            else:
                out.append(e)
        return out

    def _include(self, e: Include, parent: Path, chain: tuple[Path, ...]) -> list[Entry]:
        if "://" in e.path:
            raise RequirementsFileError(
                e.where.source,
                e.where.line,
                f"{e.path}: requirement files are read from disk, not from URLs; download it "
                "and name the file",
            )
        return self.read(
            parent.parent / Path(e.path).expanduser(),
            constraint=e.constraint,
            chain=chain,
            named_at=str(e.where),
        )


def _find_links(option: Option, file: Path) -> Option:
    """``--find-links`` must be a URL: wheelcache reads listings over HTTP.  A folder is
    refused with the way to serve it (pip takes folders; a fetch for another host cannot
    assume the folder is there)."""
    value = option.value or ""
    if value.startswith(("http://", "https://")):
        return option
    raise RequirementsFileError(
        option.where.source,
        option.where.line,
        f"--find-links {value}: wheelcache reads find-links pages over http(s); serve the "
        f"folder (python -m http.server --directory {value}) and give its URL",
    )


def read_requirement_files(
    requirements: Sequence[Path] = (),
    constraints: Sequence[Path] = (),
    *,
    environ: Mapping[str, str] | None = None,
) -> RequirementInputs:
    """Read requirement files (``-r``) and constraint files (``-c``), following their
    includes, into one :class:`RequirementSet`.  *environ* is for ``${NAME}`` in the files
    (the CLI passes the process environment)."""
    reader = _Reader(environ or {})
    entries: list[Entry] = []
    for path in requirements:
        entries += reader.read(path, constraint=False, chain=(), named_at=None)
    for path in constraints:
        entries += reader.read(path, constraint=True, chain=(), named_at=None)
    return RequirementInputs(collect(entries), tuple(reader.files))


def read_lock_file(path: Path) -> Pylock:
    """Read and validate a PEP 751 lock (any error is one :class:`LockFileError` line)."""

    def fail(reason: str) -> LockFileError:
        return LockFileError(str(path), reason)

    text = _decode(_read_bytes(path, fail), fail)
    if sys.version_info >= (3, 11):  # loaded here: a fetch without a lock never needs it
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise fail(f"not TOML: {exc}") from exc
    return parse_pylock(data, source=str(path))
