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

A stick passes through other hands, so nothing on it is trusted further than it is checked:

* Only plain files and folders are read.  A symbolic link (it could point at any file of this
  machine), a FIFO or a device (reading ``/dev/zero`` never ends) is refused and named
  (``UNSAFE``), found with ``lstat`` and opened so that the check and the read are the same file;
  no file is read past the size the manifest gives it.
* Every requirements file is checked against the manifest: each ``--hash`` must be a wheel the
  manifest lists under that project's name, and no line may be a pip option (``--find-links``,
  ``-r`` …): a wheel replaced on the stick together with its manifest entry is caught here.
* The manifest itself can be replaced together with everything it lists.  What catches that is
  the bundle's *fingerprint*, the sha256 of ``manifest.json``: ``wheelcache export`` prints it,
  the person who exported carries it apart from the stick (a note, a message), and
  ``python verify.py --expect FINGERPRINT`` refuses a bundle whose manifest does not match.

Usage::

    python verify.py [BUNDLE_DIR] [--expect FINGERPRINT] [--json] [--quiet]

Exit status 0 when every file is as recorded, 1 when anything is wrong, 2 on bad usage.
"""

from __future__ import annotations

# Python 3.8 compatible: no `X | Y` at runtime, no str.removeprefix, no slotted dataclasses.
import argparse
import hashlib
import json
import os
import re
import stat
import sys
from collections.abc import Callable
from typing import IO, Any, NamedTuple

__all__ = [
    "FINGERPRINT_DIGITS",
    "FORMAT",
    "FORMAT_VERSION",
    "INCOMPLETE_MARKER",
    "MANIFEST",
    "REPAIR",
    "Entry",
    "FingerprintMismatch",
    "ManifestError",
    "Problem",
    "Report",
    "UnsafeFile",
    "check_bundle",
    "check_entry",
    "check_expected",
    "check_requirements",
    "check_size",
    "format_problem",
    "hash_file",
    "is_ignored",
    "list_files",
    "load_manifest",
    "lstat_regular",
    "main",
    "manifest_entries",
    "open_regular",
    "read_manifest",
    "scan",
    "short_fingerprint",
]

MANIFEST = "manifest.json"
FORMAT = "wheelcache-bundle"
FORMAT_VERSION = 1
#: Present while an export runs; an interrupted export leaves it, and a re-run finishes.
INCOMPLETE_MARKER = ".wheelcache-export-incomplete"
CHUNK = 1 << 20
#: Hex digits of the fingerprint that ``export`` prints and ``--expect`` needs at least: 80
#: bits, short enough to read out over the phone, far too many to forge a manifest for.
FINGERPRINT_DIGITS = 20
MAX_MANIFEST = 64 << 20  # bytes; a manifest of a million files is about 300 MB, of 5000 1.5 MB
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
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


class FingerprintMismatch(ManifestError):
    """The manifest is not the one whose fingerprint the user expects."""


class UnsafeFile(OSError):
    """A path in the bundle that is not a plain file inside it (a link, a FIFO, a device)."""


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
    fingerprint: str = ""  # sha256 of manifest.json, hex

    @property
    def ok(self) -> bool:
        return not self.problems


def is_ignored(name: str) -> bool:
    """Files an OS adds to removable disks (``System Volume Information``, ``._x``, …)."""
    return name.lower() in _OS_NAMES or name.startswith("._")


def _reparse_point(st: os.stat_result) -> bool:
    """Windows junctions and other reparse points are links too."""
    return bool(getattr(st, "st_file_attributes", 0) & 0x400)


def lstat_regular(root: str, rel: str) -> os.stat_result:
    """``lstat`` of the plain file *rel* ("/"-separated) under *root*, or raise.

    Every folder on the way and the file itself are checked: a symbolic link (or junction)
    anywhere, a FIFO, a device or a socket raises :class:`UnsafeFile`; ``FileNotFoundError``
    when it is not there.
    """
    parts = rel.split("/")
    path = root
    for i, part in enumerate(parts):
        path = os.path.join(path, part)
        st = os.lstat(path)
        shown = "/".join(parts[: i + 1])
        if stat.S_ISLNK(st.st_mode) or _reparse_point(st):
            raise UnsafeFile(f"{shown} is a symbolic link (refused: it could point anywhere)")
        last = i == len(parts) - 1
        if not last and not stat.S_ISDIR(st.st_mode):
            raise UnsafeFile(f"{shown} is not a folder")
        if last and not stat.S_ISREG(st.st_mode):
            raise UnsafeFile(f"{shown} is not a plain file ({_kind(st.st_mode)}; refused)")
    return st


def open_regular(root: str, rel: str) -> IO[bytes]:
    """Open the plain file *rel* under *root* for reading (checked by :func:`lstat_regular`),
    without following links and without blocking; it must still be the file checked."""
    st = lstat_regular(root, rel)
    path = os.path.join(root, *rel.split("/"))
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    fd = os.open(path, flags | getattr(os, "O_BINARY", 0))
    try:
        now = os.fstat(fd)
        if not stat.S_ISREG(now.st_mode) or (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
            raise UnsafeFile(f"{rel} changed while it was checked (refused)")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISDIR(mode):
        return "a folder"
    return "not a regular file"


def read_manifest(root: str) -> tuple[dict[str, Any], str]:
    """Read ``manifest.json`` in *root*: the document and its fingerprint (sha256 hex of the
    very bytes parsed); raise :class:`ManifestError` with an actionable line."""
    path = os.path.join(root, MANIFEST)
    try:
        with open_regular(root, MANIFEST) as fh:
            raw = fh.read(MAX_MANIFEST + 1)
        if len(raw) > MAX_MANIFEST:
            raise ManifestError(f"{path} is larger than {MAX_MANIFEST} bytes; not a manifest")
        data = json.loads(raw.decode("utf-8"))
    except FileNotFoundError:
        if os.path.exists(os.path.join(root, INCOMPLETE_MARKER)):
            raise ManifestError(
                f"{root} is an unfinished bundle: the export was interrupted; run the same "
                "wheelcache export again to finish it"
            ) from None
        raise ManifestError(f"{root} holds no {MANIFEST}; is it a wheelcache bundle?") from None
    except UnsafeFile as exc:
        raise ManifestError(f"{root}: {exc}") from None
    except (OSError, ValueError, RecursionError) as exc:
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
    return data, hashlib.sha256(raw).hexdigest()


def load_manifest(root: str) -> dict[str, Any]:
    """Read ``manifest.json`` in *root* (see :func:`read_manifest`)."""
    return read_manifest(root)[0]


def short_fingerprint(fingerprint: str) -> str:
    """The fingerprint as ``export`` prints it: the first 20 hex digits in groups of four.

    >>> short_fingerprint("0123456789abcdef" * 4)
    '0123-4567-89ab-cdef-0123'
    """
    digits = fingerprint[:FINGERPRINT_DIGITS]
    return "-".join(digits[i : i + 4] for i in range(0, len(digits), 4))


def check_expected(fingerprint: str, expected: str, root: str) -> None:
    """Raise unless *expected* (as printed, any case, dashes and spaces optional; at least the
    printed 20 digits, up to all 64) is the start of *fingerprint*."""
    wanted = re.sub(r"[\s-]", "", expected).lower()
    if not re.fullmatch(rf"[0-9a-f]{{{FINGERPRINT_DIGITS},64}}", wanted):
        raise ValueError(
            f"--expect {expected!r}: give the fingerprint export printed "
            f"({FINGERPRINT_DIGITS} hex digits or more, like {short_fingerprint('0' * 64)})"
        )
    if not fingerprint.startswith(wanted):
        raise FingerprintMismatch(
            f"{root}: the bundle's fingerprint is {short_fingerprint(fingerprint)}, not "
            f"{short_fingerprint(wanted)}: this is not the bundle that was exported, or it was "
            "changed since; do not install from it"
        )


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
        if type(size) is not int or size < 0 or not isinstance(sha, str):
            raise ManifestError(f"the manifest entry for {path} lacks a size or sha256")
        if not _HEX64.fullmatch(sha) or (b3 not in (None, "") and not _is_hex64(b3)):
            raise ManifestError(f"the manifest entry for {path} has a digest that is not 64 hex")
        out.append(Entry(path, size, sha.lower(), b3.lower() if isinstance(b3, str) else ""))
    return out


def _is_hex64(value: object) -> bool:
    return isinstance(value, str) and _HEX64.fullmatch(value) is not None


def scan(root: str) -> tuple[list[str], list[Problem]]:
    """Every plain file under *root* as a relative "/" path (except the manifest and OS
    files), and an ``unsafe`` problem for every link, FIFO, device or socket found (by
    ``lstat``; links are never followed)."""
    found: list[str] = []
    unsafe: list[Problem] = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root).replace(os.sep, "/")
        keep = []
        for name in sorted(dirnames + filenames):
            if is_ignored(name):
                continue
            rel = name if rel_dir == "." else rel_dir + "/" + name
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except OSError:
                continue
            if stat.S_ISLNK(st.st_mode) or _reparse_point(st):
                unsafe.append(Problem("unsafe", rel, "a symbolic link (refused)"))
            elif stat.S_ISDIR(st.st_mode):
                keep.append(name)
            elif not stat.S_ISREG(st.st_mode):
                unsafe.append(Problem("unsafe", rel, f"{_kind(st.st_mode)} (refused)"))
            elif rel != MANIFEST:
                found.append(rel)
        dirnames[:] = keep
    return found, unsafe


def list_files(root: str) -> list[str]:
    """Every plain file under *root* as a relative "/" path, except the manifest and OS files."""
    return scan(root)[0]


def hash_file(
    path: str,
    blake3: Callable[[], Any] | None = None,
    progress: Callable[[int], None] | None = None,
) -> tuple[int, str, str]:
    """(size, sha256 hex, blake3 hex or "") of a file, in one read."""
    with open(path, "rb") as fh:
        return hash_stream(fh, blake3, progress)


def hash_stream(
    fh: IO[bytes],
    blake3: Callable[[], Any] | None = None,
    progress: Callable[[int], None] | None = None,
    limit: int | None = None,
) -> tuple[int, str, str]:
    """(size, sha256 hex, blake3 hex or "") of what *fh* holds, reading at most *limit* + 1
    bytes (so a file longer than expected is seen as longer, never read to its end)."""
    sha = hashlib.sha256()
    b3 = blake3() if blake3 is not None else None
    size = 0
    while True:
        want = CHUNK if limit is None else min(CHUNK, limit + 1 - size)
        buf = fh.read(want) if want > 0 else b""
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
    """The problem with one listed file that its ``lstat`` alone shows: missing, truncated,
    longer, or not a plain file (a link, a FIFO, a device: ``unsafe``).

    Cheap: ``wheelcache import`` checks this before it copies, then hashes while copying.
    """
    try:
        size = lstat_regular(root, entry.path).st_size
    except FileNotFoundError:
        return Problem("missing", entry.path, "listed in the manifest, not on the disk")
    except UnsafeFile as exc:
        return Problem("unsafe", entry.path, str(exc))
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
    try:
        with open_regular(root, entry.path) as fh:
            size, sha, b3 = hash_stream(fh, blake3, progress, limit=entry.size)
    except UnsafeFile as exc:
        return Problem("unsafe", entry.path, str(exc))
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


_REQ_LINE = re.compile(
    r"([A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)==([A-Za-z0-9.+!_-]+)"
    r"((?:\s+--hash=sha256:[0-9a-fA-F]{64})*)"
)


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _wheel_project(path: str) -> str | None:
    """``wheels/Foo_Bar-1.0-py3-none-any.whl`` → ``foo-bar``."""
    name = path.rsplit("/", 1)[-1]
    if not name.endswith(".whl") or name.count("-") < 4:
        return None
    return _norm(name.split("-", 1)[0])


def check_requirements(root: str, manifest: dict[str, Any], entries: list[Entry]) -> list[Problem]:
    """Each requirements file of the bundle against the manifest.

    Every ``--hash`` must be a wheel the manifest lists (or a delta bundle's left-out wheel)
    of the project the line names, and every line must be a pin: an option line (``-r``,
    ``--find-links``, ``--index-url`` …) would make pip look elsewhere.
    """
    wheels: dict[str, set[str]] = {}  # sha256 -> normalized project names
    for e in entries:
        project = _wheel_project(e.path) if e.path.startswith("wheels/") else None
        if project is not None:
            wheels.setdefault(e.sha256, set()).add(project)
    delta = manifest.get("delta")
    left_out = delta.get("left_out") if isinstance(delta, dict) else None
    for item in left_out if isinstance(left_out, list) else []:
        if isinstance(item, dict) and _is_hex64(item.get("sha256")):
            project = _wheel_project(str(item.get("filename")))
            if project is not None:
                wheels.setdefault(str(item["sha256"]).lower(), set()).add(project)
    problems: list[Problem] = []
    for e in entries:
        requirements = e.path.startswith("requirements") and e.path.endswith(".txt")
        lock = e.path.startswith("pylock.") and e.path.endswith(".toml")
        if "/" in e.path or not (requirements or lock):
            continue
        try:
            with open_regular(root, e.path) as fh:
                text = fh.read(e.size + 1).decode("utf-8")
        except (OSError, ValueError):
            continue  # missing, unsafe or damaged: check_entry names it
        check = _requirements_problems if requirements else _pylock_problems
        problems += check(e.path, text, wheels)
    return problems


_TOML_STRING = r'"([^"\\]*)"'
_LOCK_SOURCES = re.compile(r"^\s*\[?\[?\s*(?:packages\.)?(sdist|vcs|directory|archive)\b")


def _pylock_problems(rel: str, text: str, wheels: dict[str, set[str]]) -> list[Problem]:
    """A PEP 751 lock of the bundle (as export writes it, read line by line: Python 3.8 has
    no TOML reader): every wheel's sha256 is a wheel the manifest lists under that package,
    every ``path`` stays inside the bundle, and no source other than wheels appears."""
    out: list[Problem] = []
    package, in_wheel, wheel_hashed = "", False, True
    for lineno, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if stripped.startswith("["):
            if in_wheel and not wheel_hashed:
                out.append(Problem("corrupt", rel, f"a wheel before line {lineno} has no sha256"))
            in_wheel, wheel_hashed = stripped == "[[packages.wheels]]", False
            if stripped == "[[packages]]":
                package = ""
        if _LOCK_SOURCES.match(line):
            out.append(Problem("corrupt", rel, f"line {lineno} names a source that is not a wheel"))
        m = re.match(r"\s*name\s*=\s*" + _TOML_STRING, line)
        if m and not in_wheel:
            package = _norm(m.group(1))
        m = re.match(r"\s*path\s*=\s*" + _TOML_STRING, line)
        if m and not _safe_lock_path(m.group(1)):
            out.append(
                Problem("corrupt", rel, f"line {lineno}: path {m.group(1)!r} leaves wheels/")
            )
        for digest in re.findall(r"sha256\s*=\s*\"([0-9a-fA-F]{64})\"", line):
            wheel_hashed = True
            owners = wheels.get(digest.lower())
            if owners is None or (package and package not in owners):
                out.append(
                    Problem(
                        "corrupt",
                        rel,
                        f"line {lineno} locks {package or 'a wheel'} to sha256 {digest}, which "
                        "no wheel of the manifest has under that name",
                    )
                )
    if in_wheel and not wheel_hashed:
        out.append(Problem("corrupt", rel, "its last wheel has no sha256"))
    return out


def _safe_lock_path(path: str) -> bool:
    parts = path.split("/")
    return path.startswith("wheels/") and "\\" not in path and ".." not in parts and "" not in parts


def _requirements_problems(rel: str, text: str, wheels: dict[str, set[str]]) -> list[Problem]:
    out = []
    joined = re.sub(r"\\\r?\n", " ", text)
    for lineno, raw in enumerate(joined.splitlines(), 1):
        line = re.sub(r"(^|\s)#.*$", "", raw).strip()
        if not line:
            continue
        m = _REQ_LINE.fullmatch(line)
        if m is None:
            what = "a pip option pip would follow" if line.startswith("-") else "not a pin"
            out.append(Problem("corrupt", rel, f"line {lineno} is {what}: {line[:80]!r} (refused)"))
            continue
        name = _norm(m.group(1))
        for digest in re.findall(r"sha256:([0-9a-fA-F]{64})", m.group(3)):
            owners = wheels.get(digest.lower())
            if owners is None:
                why = "which no wheel of the manifest has (a wheel was replaced or the file edited)"
            elif name not in owners:
                why = f"which the manifest lists as {', '.join(sorted(owners))}"
            else:
                continue
            out.append(
                Problem("corrupt", rel, f"line {lineno} pins {name} to sha256 {digest}, {why}")
            )
    return out


def check_bundle(
    root: str,
    *,
    blake3: Callable[[], Any] | None = None,
    progress: Callable[[int], None] | None = None,
    expect: str | None = None,
) -> Report:
    """Check every file of the bundle at *root*; *blake3* is a hasher factory, if available.

    With *expect* (a fingerprint as ``export`` printed it) a bundle whose manifest does not
    match is refused before anything else is read (:class:`FingerprintMismatch`).
    """
    manifest, fingerprint = read_manifest(root)
    if expect is not None:
        check_expected(fingerprint, expect, root)
    entries = manifest_entries(manifest)
    problems: list[Problem] = []
    for entry in entries:
        problem = check_entry(root, entry, blake3, progress)
        if problem is not None:
            problems.append(problem)
    problems += check_requirements(root, manifest, entries)
    listed = {e.path.lower() for e in entries}  # FAT and NTFS ignore case
    files, unsafe = scan(root)
    problems += [p for p in unsafe if p.path.lower() not in listed]
    for rel in files:
        if rel.lower() not in listed:
            why = "left by an interrupted export" if rel == INCOMPLETE_MARKER else "not listed"
            problems.append(Problem("extra", rel, f"{why} in the manifest"))
    return Report(problems, len(entries), sum(e.size for e in entries), fingerprint)


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
    parser.add_argument(
        "--expect",
        metavar="FINGERPRINT",
        help="the fingerprint `wheelcache export` printed; refuse a bundle that differs",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--quiet", action="store_true", help="print problems only")
    args = parser.parse_args(argv)
    try:
        report = check_bundle(args.bundle, expect=args.expect)
    except ManifestError as exc:
        print(f"verify.py: error: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:  # a malformed --expect
        parser.error(str(exc))
    if args.json:
        out = {
            "ok": report.ok,
            "files": report.files,
            "size": report.size,
            "fingerprint": report.fingerprint,
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
            checked = "matches --expect" if args.expect else "compare it with the exporter's"
            print(f"Bundle fingerprint: {short_fingerprint(report.fingerprint)} ({checked})")
        return 0
    print(f"FAILED: {len(report.problems)} problem(s) in {args.bundle}; {REPAIR}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
