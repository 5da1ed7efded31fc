#!/usr/bin/env python3
"""Check a wheelcache bundle against its manifest.json: standard library only, Python 3.8+.

This file is copied into every bundle as ``verify.py``, so that the person at the offline host
can check a USB stick before installing, on any machine with any Python 3.8 or newer, without
wheelcache.  ``wheelcache verify`` imports the same functions, so both report alike.

It reports every file the manifest lists that is missing, truncated (shorter than recorded) or
corrupt (other size, or other sha256), and every extra file the manifest does not list.  The
manifest also records a blake3 digest per file; blake3 is not in Python's standard library, so
this script checks size and sha256 only (sha256 alone detects any accidental change); the
``wheelcache verify`` command checks blake3 as well.

Usage::

    python verify.py [BUNDLE_DIR] [--json] [--quiet]

Exit status 0 when every file is as recorded, 1 when anything is wrong, 2 on bad usage.
"""

from __future__ import annotations

# Python 3.8 compatible: no `X | Y` at runtime, no str.removeprefix, no slotted dataclasses.
import argparse
import hashlib
import json
import os
import sys
from collections.abc import Callable
from typing import Any, NamedTuple

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "INCOMPLETE_MARKER",
    "MANIFEST",
    "REPAIR",
    "Entry",
    "ManifestError",
    "Problem",
    "Report",
    "check_bundle",
    "check_entry",
    "check_size",
    "format_problem",
    "hash_file",
    "is_ignored",
    "list_files",
    "load_manifest",
    "main",
    "manifest_entries",
]

MANIFEST = "manifest.json"
FORMAT = "wheelcache-bundle"
FORMAT_VERSION = 1
#: Present while an export runs; an interrupted export leaves it, and a re-run finishes.
INCOMPLETE_MARKER = ".wheelcache-export-incomplete"
CHUNK = 1 << 20
#: What to do about a damaged bundle (true to what ``wheelcache export`` does on a re-run).
REPAIR = (
    "copy the bundle again, or run the same wheelcache export into it again: that rewrites "
    "missing and damaged files and removes files an earlier export wrote; other extra files "
    "must be removed by hand"
)

# Files operating systems put on removable disks by themselves; never "extra".
_OS_NAMES = frozenset(
    n.lower()
    for n in (
        "System Volume Information",
        "$RECYCLE.BIN",
        ".Trashes",
        ".Trash-1000",
        ".fseventsd",
        ".Spotlight-V100",
        ".TemporaryItems",
        ".DS_Store",
        "Thumbs.db",
        "desktop.ini",
        "__pycache__",
    )
)


class ManifestError(ValueError):
    """The manifest is missing, unreadable or not one this script understands."""


class Entry(NamedTuple):
    """One file of the bundle as the manifest records it."""

    path: str  # relative, "/"-separated
    size: int
    sha256: str
    blake3: str


class Problem(NamedTuple):
    """Something wrong with one file: kind is missing, truncated, corrupt or extra."""

    kind: str
    path: str
    detail: str


class Report(NamedTuple):
    """The result of :func:`check_bundle`."""

    problems: list[Problem]
    files: int
    size: int

    @property
    def ok(self) -> bool:
        return not self.problems


def is_ignored(name: str) -> bool:
    """Files an OS adds to removable disks (``System Volume Information``, ``._x``, …)."""
    return name.lower() in _OS_NAMES or name.startswith("._")


def load_manifest(root: str) -> dict[str, Any]:
    """Read ``manifest.json`` in *root*; raise :class:`ManifestError` with an actionable line."""
    path = os.path.join(root, MANIFEST)
    try:
        with open(path, "rb") as fh:
            data = json.loads(fh.read().decode("utf-8"))
    except FileNotFoundError:
        if os.path.exists(os.path.join(root, INCOMPLETE_MARKER)):
            raise ManifestError(
                f"{root} is an unfinished bundle: the export was interrupted; run the same "
                "wheelcache export again to finish it"
            ) from None
        raise ManifestError(f"{root} holds no {MANIFEST}; is it a wheelcache bundle?") from None
    except (OSError, ValueError) as exc:
        raise ManifestError(f"cannot read {path}: {exc}") from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ManifestError(f"{path} is not a wheelcache bundle manifest")
    version = data.get("version")
    if not isinstance(version, int) or version < 1:
        raise ManifestError(f"{path}: bad format version {version!r}")
    if version > FORMAT_VERSION:
        raise ManifestError(
            f"{path} has format version {version}; this verify.py reads up to "
            f"{FORMAT_VERSION}: use the verify.py inside that bundle"
        )
    return data


def _safe_relpath(text: object) -> str:
    if not isinstance(text, str) or not text or "\\" in text or text.startswith("/"):
        raise ManifestError(f"bad path in the manifest: {text!r}")
    parts = text.split("/")
    if any(p in ("", ".", "..") or ":" in p for p in parts):
        raise ManifestError(f"bad path in the manifest: {text!r}")
    return text


def manifest_entries(manifest: dict[str, Any]) -> list[Entry]:
    """The manifest's file list, checked (no absolute paths, no ``..``, plausible digests)."""
    files = manifest.get("files")
    if not isinstance(files, list):
        raise ManifestError("the manifest has no file list")
    out: list[Entry] = []
    for item in files:
        if not isinstance(item, dict):
            raise ManifestError("the manifest's file list holds a non-object")
        path = _safe_relpath(item.get("path"))
        size, sha, b3 = item.get("size"), item.get("sha256"), item.get("blake3")
        if not isinstance(size, int) or size < 0 or not isinstance(sha, str) or len(sha) != 64:
            raise ManifestError(f"the manifest entry for {path} lacks a size or sha256")
        out.append(Entry(path, size, sha.lower(), b3.lower() if isinstance(b3, str) else ""))
    return out


def list_files(root: str) -> list[str]:
    """Every file under *root* as a relative "/" path, except the manifest and OS files."""
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not is_ignored(d))
        rel_dir = os.path.relpath(dirpath, root).replace(os.sep, "/")
        for name in sorted(filenames):
            if is_ignored(name):
                continue
            rel = name if rel_dir == "." else rel_dir + "/" + name
            if rel != MANIFEST:
                found.append(rel)
    return found


def hash_file(
    path: str,
    blake3: Callable[[], Any] | None = None,
    progress: Callable[[int], None] | None = None,
) -> tuple[int, str, str]:
    """(size, sha256 hex, blake3 hex or "") of a file, in one read."""
    sha = hashlib.sha256()
    b3 = blake3() if blake3 is not None else None
    size = 0
    with open(path, "rb") as fh:
        while True:
            buf = fh.read(CHUNK)
            if not buf:
                break
            sha.update(buf)
            if b3 is not None:
                b3.update(buf)
            size += len(buf)
            if progress is not None:
                progress(len(buf))
    return size, sha.hexdigest(), (b3.hexdigest() if b3 is not None else "")


def check_size(root: str, entry: Entry) -> Problem | None:
    """The problem with one listed file that its size alone shows (missing, truncated, longer).

    Cheap: ``wheelcache import`` checks this before it copies, then hashes while copying.
    """
    path = os.path.join(root, *entry.path.split("/"))
    try:
        size = os.stat(path).st_size
    except FileNotFoundError:
        return Problem("missing", entry.path, "listed in the manifest, not on the disk")
    except OSError as exc:
        return Problem("corrupt", entry.path, f"cannot read it: {exc}")
    if size < entry.size:
        return Problem("truncated", entry.path, f"{size} of {entry.size} bytes")
    if size > entry.size:
        return Problem("corrupt", entry.path, f"{size} bytes, the manifest says {entry.size}")
    return None


def check_entry(
    root: str,
    entry: Entry,
    blake3: Callable[[], Any] | None = None,
    progress: Callable[[int], None] | None = None,
) -> Problem | None:
    """The problem with one listed file, or None when its size and digests match."""
    problem = check_size(root, entry)
    if problem is not None:
        return problem
    path = os.path.join(root, *entry.path.split("/"))
    try:
        size, sha, b3 = hash_file(path, blake3, progress)
    except OSError as exc:
        return Problem("corrupt", entry.path, f"cannot read it: {exc}")
    if size != entry.size:
        return Problem(
            "truncated" if size < entry.size else "corrupt",
            entry.path,
            f"{size} bytes while reading, the manifest says {entry.size}",
        )
    if sha != entry.sha256:
        return Problem("corrupt", entry.path, f"sha256 {sha}, expected {entry.sha256}")
    if b3 and entry.blake3 and b3 != entry.blake3:
        return Problem("corrupt", entry.path, f"blake3 {b3}, expected {entry.blake3}")
    return None


def check_bundle(
    root: str,
    *,
    blake3: Callable[[], Any] | None = None,
    progress: Callable[[int], None] | None = None,
) -> Report:
    """Check every file of the bundle at *root*; *blake3* is a hasher factory, if available."""
    entries = manifest_entries(load_manifest(root))
    problems: list[Problem] = []
    for entry in entries:
        problem = check_entry(root, entry, blake3, progress)
        if problem is not None:
            problems.append(problem)
    listed = {e.path.lower() for e in entries}  # FAT and NTFS ignore case
    for rel in list_files(root):
        if rel.lower() not in listed:
            why = "left by an interrupted export" if rel == INCOMPLETE_MARKER else "not listed"
            problems.append(Problem("extra", rel, f"{why} in the manifest"))
    return Report(problems, len(entries), sum(e.size for e in entries))


def format_problem(p: Problem) -> str:
    """One line per problem, the kind first (ASCII only: any console can print it)."""
    return f"{p.kind.upper():<9} {p.path}: {p.detail}"


def _size(n: int) -> str:
    value = float(n)
    for unit in ("bytes", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{n} bytes" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="verify.py",
        description="Check a wheelcache bundle against its manifest.json (size and sha256).",
    )
    here = os.path.dirname(os.path.abspath(__file__))
    parser.add_argument("bundle", nargs="?", default=here, help="bundle folder (default: here)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--quiet", action="store_true", help="print problems only")
    args = parser.parse_args(argv)
    try:
        report = check_bundle(args.bundle)
    except ManifestError as exc:
        print(f"verify.py: error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        out = {
            "ok": report.ok,
            "files": report.files,
            "size": report.size,
            "checked": ["size", "sha256"],
            "problems": [p._asdict() for p in report.problems],
        }
        print(json.dumps(out, indent=2))
        return 0 if report.ok else 1
    for p in report.problems:
        print(format_problem(p))
    if report.ok:
        if not args.quiet:
            print(
                f"OK: all {report.files} files ({_size(report.size)}) match the manifest "
                "(size and sha256; blake3 is not in Python's standard library, so it is "
                "checked by `wheelcache verify` only)"
            )
        return 0
    print(f"FAILED: {len(report.problems)} problem(s) in {args.bundle}; {REPAIR}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
