"""A resolution remembered: the wheels a fetch chose, and the index pages it chose them from.

What ``fetch`` chooses is a function of the request (the target, the requirements, the
indexes, the options) and of the bytes of the index pages it read: a wheel's metadata is
fixed by the wheel, which the page names with its sha256.  So a later run of the same request
whose pages all come back byte-identical (304s, or the same bytes) would choose the same
wheels.  It takes them from the record instead, without loading the resolver: the warm
second run of a PyTorch closure is about the page revalidations and the outputs, nothing
more.

A page that changed, a wheel no longer in the cache, a record that does not read back whole
and valid: the ordinary resolution, which writes a new record.  The record sits in the cache
beside the pages it depends on; it is checked like anything read from disk (64-hex digests,
safe filenames, valid versions, bounded size), since a record that lied would choose files.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields, is_dataclass

from packaging.tags import Tag
from packaging.utils import NormalizedName, canonicalize_name, parse_wheel_filename
from packaging.version import InvalidVersion, Version

from wheelcache.core.checks import parse_sha256, safe_filename, safe_text
from wheelcache.core.models import Sha256

__all__ = [
    "MAX_RECORD",
    "ChosenFile",
    "PageSeen",
    "ResolvedRecord",
    "decode_record",
    "encode_record",
    "fits",
    "request_key",
]

#: Bumped when the record's meaning changes — or when resolution would now choose
#: differently from the same pages (a resolver fix): an older record is then not found.
#: ``__version__`` is in the key too, but a development install does not change it.
FORMAT = 1
#: The largest record read back (a closure of hundreds of wheels is a few hundred KiB).
MAX_RECORD = 8 << 20
_MAX_LINE = 4000


@dataclass(frozen=True, slots=True)
class PageSeen:
    """One index page the resolution read: what it asked for and what it got — the bytes,
    and the final URL (after redirects: relative links resolve against it) and content type
    they were read with."""

    url: str
    accept: str
    status: int
    sha256: Sha256
    final_url: str = ""
    content_type: str = ""


@dataclass(frozen=True, slots=True)
class ChosenFile:
    """One chosen wheel, with what the outputs need (the lock, ``--json``, ``required_by``)."""

    project: NormalizedName
    version: str
    filename: str
    url: str
    sha256: Sha256
    size: int | None = None
    upload_time: str | None = None
    required_by: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ResolvedRecord:
    key: str
    pages: tuple[PageSeen, ...]
    files: tuple[ChosenFile, ...]
    #: What the resolution said, said again when the record is used.
    warnings: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()


def request_key(parts: Mapping[str, object]) -> str:
    """The record's key: a sha256 of everything the choice depends on besides the pages.

    >>> request_key({"a": 1, "b": [2]}) == request_key({"b": [2], "a": 1})
    True
    >>> request_key({"a": 1}) == request_key({"a": 2})
    False
    """
    text = json.dumps(
        {"format": FORMAT, **parts}, sort_keys=True, separators=(",", ":"), default=_plain
    )
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _plain(value: object) -> object:
    """A JSON-able stand-in, the same in every process: a dataclass as its fields, a set
    sorted (its iteration order changes with each process's string hashing), anything else
    as its text (a ``Requirement``, a ``Path``).

    >>> _plain(frozenset({"b", "a"}))
    ['a', 'b']
    """
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in fields(value)}
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=lambda v: json.dumps(v, sort_keys=True, default=_plain))
    return str(value)


def encode_record(record: ResolvedRecord) -> bytes:
    return json.dumps(
        {
            "format": FORMAT,
            "key": record.key,
            "pages": [
                [p.url, p.accept, p.status, p.sha256, p.final_url, p.content_type]
                for p in record.pages
            ],
            "files": [
                {
                    "project": f.project,
                    "version": f.version,
                    "filename": f.filename,
                    "url": f.url,
                    "sha256": f.sha256,
                    "size": f.size,
                    "upload_time": f.upload_time,
                    "required_by": list(f.required_by),
                }
                for f in record.files
            ],
            "warnings": list(record.warnings),
            "notes": list(record.notes),
        },
        separators=(",", ":"),
    ).encode("utf-8")


def decode_record(data: bytes, key: str) -> ResolvedRecord | None:
    """The record in *data* if it is whole, valid and for *key*; None otherwise (the caller
    then resolves as if there were none).  Each file must be a wheel named for its project
    and version; whether its tags fit the target is :func:`fits`'s to say."""
    if len(data) > MAX_RECORD:
        return None
    try:
        raw = json.loads(data)
        if not isinstance(raw, dict) or raw.get("format") != FORMAT or raw.get("key") != key:
            return None
        pages = tuple(_page(p) for p in _list(raw["pages"]))
        files = tuple(_file(f) for f in _list(raw["files"]))
        warnings = tuple(_line(w) for w in _list(raw["warnings"]))
        notes = tuple(_line(n) for n in _list(raw["notes"]))
    except (ValueError, KeyError, TypeError, InvalidVersion):
        return None
    if not pages or not files or len({f.project for f in files}) != len(files):
        return None
    return ResolvedRecord(key, pages, files, warnings, notes)


def fits(record: ResolvedRecord, tags: Iterable[Tag]) -> bool:
    """Whether every wheel of *record* carries one of *tags* (the target's): a record is
    trusted no further than the catalog, but never hands over a wheel for another machine.

    >>> from packaging.tags import Tag
    >>> f = ChosenFile("a", "1.0", "a-1.0-py3-none-any.whl", "u", "ab" * 32)
    >>> r = ResolvedRecord("k", (), (f,))
    >>> fits(r, [Tag("py3", "none", "any")]), fits(r, [Tag("cp39", "cp39", "win_amd64")])
    (True, False)
    """
    wanted = frozenset(tags)
    return all(wanted & parse_wheel_filename(f.filename)[3] for f in record.files)


def _list(value: object) -> list[object]:
    if not isinstance(value, list):
        raise ValueError("not a list")
    return value


def _text(value: object, what: str) -> str:
    return safe_text(value, what=what, limit=_MAX_LINE)


def _line(value: object) -> str:
    return _text(value, "line")


def _page(value: object) -> PageSeen:
    url, accept, status, sha, final, kind = _list(value)
    if not isinstance(status, int) or isinstance(status, bool):
        raise ValueError("status")
    return PageSeen(
        _text(url, "url"),
        _text(accept, "accept"),
        status,
        parse_sha256(sha),
        _text(final, "url"),
        _text(kind, "content type"),
    )


def _file(value: object) -> ChosenFile:
    if not isinstance(value, dict):
        raise ValueError("not an object")
    project = _text(value["project"], "project")
    if canonicalize_name(project) != project:
        raise ValueError("project")
    size, upload = value.get("size"), value.get("upload_time")
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
        raise ValueError("size")
    filename = safe_filename(value["filename"])
    version = Version(_text(value["version"], "version"))
    named, numbered, _build, _tags = parse_wheel_filename(filename)
    if named != project or numbered != version:  # the lock would name another wheel
        raise ValueError("the filename is another project's or version's")
    return ChosenFile(
        project=NormalizedName(project),
        version=str(version),
        filename=filename,
        url=_text(value["url"], "url"),
        sha256=parse_sha256(value["sha256"]),
        size=size,
        upload_time=None if upload is None else _text(upload, "upload time"),
        required_by=tuple(_text(r, "requirer") for r in _list(value["required_by"])),
    )
