"""Parse index pages: PEP 503 HTML, PEP 691 JSON and flat find-links listings.

Bytes and a base URL in, a :class:`~wheelcache.core.models.ProjectPage` out.  Every href is joined
against the page URL (the PyTorch index uses root-relative links, absolute links to a CDN host and
``%2B`` for ``+``; mirrors write ``&#43;``), fragments are split off into hashes, and files are
sorted so nothing downstream depends on the order a server lists them in.

Pages are hostile until checked, so each file is checked here, where it is parsed
(:mod:`wheelcache.core.checks`): its filename (from the URL, never the link text) must be a
safe file name, every sha256 64 hex digits and its URL http(s); ``<base href>`` counts only when
it is http(s).  A file that fails is left out and listed in :attr:`ProjectPage.rejected` with
the reason, as is a filename listed twice with different hashes.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from html.parser import HTMLParser
from itertools import groupby
from operator import attrgetter
from typing import Any
from urllib.parse import unquote, urldefrag, urljoin, urlsplit

from packaging.utils import NormalizedName, canonicalize_name

from wheelcache.core.checks import parse_sha256, safe_filename
from wheelcache.core.models import DistFile, ProjectPage, Sha256
from wheelcache.core.render import JSON_CONTENT_TYPE  # one home for the PEP 691 type

__all__ = [
    "JSON_CONTENT_TYPE",
    "PageParseError",
    "parse_flat_listing",
    "parse_flat_page",
    "parse_project_page",
    "parse_root_page",
]

HTML_CONTENT_TYPES = ("text/html", "application/vnd.pypi.simple.v1+html")
_DIST_SUFFIXES = (".whl", ".tar.gz", ".zip", ".tar.bz2", ".tgz")
_SCHEMES = ("http", "https")


class PageParseError(ValueError):
    """A page that is not a simple-repository page in any format we know."""


class _AnchorCollector(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.base: str | None = None
        self.anchors: list[tuple[dict[str, str | None], str]] = []
        self._current: dict[str, str | None] | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "base" and self.base is None:
            self.base = dict(attrs).get("href")
        elif tag == "a":
            self._current = dict(attrs)
            self._text = []

    def handle_data(self, data: str) -> None:
        if self._current is not None:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._current is not None:
            self.anchors.append((self._current, "".join(self._text).strip()))
            self._current = None


class _Rejected(ValueError):
    """One listed file refused while parsing; the page itself is still usable."""


def _sha256_from_fragment(fragment: str) -> Sha256 | None:
    """``sha256=<hex>`` → the digest; other hash names → None; a bad sha256 is refused."""
    name, _, value = fragment.partition("=")
    if name.lower() != "sha256":
        return None
    return parse_sha256(value, what="the sha256 in the link")


def _metadata_attr(value: str | None) -> tuple[bool, Sha256 | None]:
    """PEP 658/714 attribute: absent, ``true`` or ``sha256=<hex>``."""
    if value is None:
        return False, None
    v = value.strip()
    if v.lower() == "false":
        return False, None
    name, _, digest = v.partition("=")
    if name.lower() == "sha256":
        return True, parse_sha256(digest, what="the core-metadata sha256")
    return True, None


def _checked_url(url: str) -> str:
    scheme = urlsplit(url).scheme.lower()
    if scheme not in _SCHEMES:
        raise _Rejected(f"unsupported URL scheme {scheme or 'none'!r} (only http and https)")
    return url


def _filename_for(url: str) -> str:
    """The dist filename: the last path segment of the URL, percent-decoded.

    PEP 503 makes the link text match it, but only the URL says what is downloaded, so the
    text is never used (directory listings shorten it anyway).
    """
    return unquote(urlsplit(url).path.rsplit("/", 1)[-1])


def _base(page_url: str, href: str | None) -> str:
    """``<base href>`` joined to the page URL, honoured only when it stays http(s)."""
    if not href:
        return page_url
    joined = urljoin(page_url, href)
    return joined if urlsplit(joined).scheme.lower() in _SCHEMES else page_url


def _html_entry(attrs: dict[str, str | None], href: str, base: str) -> DistFile | None:
    url, fragment = _join(base, href)
    filename = _filename_for(url)
    if not filename.endswith(_DIST_SUFFIXES):
        return None
    try:
        safe_filename(filename)
        _checked_url(url)
        sha = _sha256_from_fragment(fragment)
        has_md, md_sha = _metadata_attr(
            attrs.get("data-core-metadata", attrs.get("data-dist-info-metadata"))
        )
    except ValueError as exc:
        raise _Rejected(str(exc)) from None
    yanked = "data-yanked" in attrs
    return DistFile(
        filename=filename,
        url=url,
        sha256=sha,
        requires_python=(attrs.get("data-requires-python") or None),
        yanked=yanked,
        yanked_reason=_reason(attrs.get("data-yanked")) if yanked else None,
        core_metadata=has_md,
        core_metadata_sha256=md_sha,
        upload_time=attrs.get("data-upload-time") or None,
    )


def _reason(text: str | None) -> str | None:
    """An index's yanked reason as one short line, or None when it gives none: it is shown in
    a warning, and a warning is one line however many the index wrote.

    >>> _reason("broken\\n  build"), _reason(" "), _reason(None), len(_reason("x" * 999) or "")
    ('broken build', None, None, 200)
    """
    line = " ".join((text or "").split())
    return (line[:197] + "...") if len(line) > 200 else line or None


def _anchors(body: bytes) -> _AnchorCollector:
    """The anchors (and ``<base>``) of an HTML page, read leniently as html.parser does."""
    parser = _AnchorCollector()
    try:
        parser.feed(body.decode("utf-8", errors="replace"))
        parser.close()
    except Exception as exc:  # html.parser is lenient; this is a last line of defence
        raise PageParseError(f"unreadable HTML: {exc}") from exc
    return parser


def _is_json(body: bytes, content_type: str | None) -> bool:
    """A PEP 691 JSON page by its Content-Type, or, when that names neither form, by its
    first byte."""
    ctype = (content_type or "").split(";")[0].strip().lower()
    return ctype == JSON_CONTENT_TYPE or (
        ctype not in HTML_CONTENT_TYPES and body.lstrip()[:1] == b"{"
    )


def _files_from_html(body: bytes, base_url: str) -> tuple[list[DistFile], list[tuple[str, str]]]:
    parser = _anchors(body)
    base = _base(base_url, parser.base)
    files: list[DistFile] = []
    rejected: list[tuple[str, str]] = []
    for attrs, _text in parser.anchors:
        href = attrs.get("href")
        if not href:
            continue
        try:
            entry = _html_entry(attrs, href, base)
        except _Rejected as exc:
            rejected.append((_label(href), str(exc)))
            continue
        if entry is not None:
            files.append(entry)
    return files, rejected


def _join(base: str, href: str) -> tuple[str, str]:
    """``urldefrag(urljoin(base, href))``, with a fast path for the absolute URLs most indexes
    give: a page with tens of thousands of files spent most of its parsing time in urljoin.

    >>> _join("https://i.invalid/simple/a/", "https://f.invalid/a-1.whl#sha256=ab")
    ('https://f.invalid/a-1.whl', 'sha256=ab')
    >>> _join("https://i.invalid/simple/a/", "../../f/a-1.whl")
    ('https://i.invalid/f/a-1.whl', '')
    """
    if href.startswith(("https://", "http://")) and "/." not in href:
        url, _, fragment = href.partition("#")
        return url, fragment
    joined = urldefrag(urljoin(base, href))
    return joined.url, joined.fragment


def _json_metadata(entry: dict[str, Any]) -> tuple[bool, Sha256 | None]:
    value = entry.get("core-metadata", entry.get("dist-info-metadata", False))
    if isinstance(value, dict):
        digest = value.get("sha256")
        return True, parse_sha256(digest, what="the core-metadata sha256") if digest else None
    return bool(value), None


def _json_entry(entry: dict[str, Any], base_url: str) -> DistFile:
    try:
        filename = safe_filename(entry["filename"])
        url, fragment = _join(base_url, str(entry["url"]))
        _checked_url(url)
        hashes = entry.get("hashes") or {}
        sha = hashes.get("sha256") if isinstance(hashes, dict) else None
        digest = parse_sha256(sha, what="hashes.sha256") if sha else None
        has_md, md_sha = _json_metadata(entry)
        size = entry.get("size")
        if size is not None and (type(size) is not int or size < 0):
            raise ValueError(f"size {size!r} is not a byte count")
        rp = entry.get("requires-python")
        upload = entry.get("upload-time")
        yanked = entry.get("yanked", False)
        return DistFile(
            filename=filename,
            url=url,
            sha256=digest or _sha256_from_fragment(fragment),
            requires_python=rp if isinstance(rp, str) and rp else None,
            yanked=bool(yanked),
            yanked_reason=_reason(yanked) if isinstance(yanked, str) else None,
            core_metadata=has_md,
            core_metadata_sha256=md_sha,
            size=size,
            upload_time=upload if isinstance(upload, str) else None,
        )
    except ValueError as exc:
        raise _Rejected(str(exc)) from None


class _Entry:
    """A ``files`` entry of a JSON page, judged the moment the parser closed it."""

    __slots__ = ("file", "label", "reason")

    def __init__(self, file: DistFile | None, label: str, reason: str) -> None:
        self.file, self.label, self.reason = file, label, reason


def _files_from_json(body: bytes, base_url: str) -> tuple[list[DistFile], list[tuple[str, str]]]:
    """Each file entry becomes a :class:`DistFile` (or a refusal) as soon as the JSON parser
    has read it (``object_hook``): a page of tens of thousands of files never exists as a
    tree of dicts beside the files made of it."""

    def judged(obj: dict[str, Any]) -> object:
        if "filename" not in obj or "url" not in obj:
            return obj
        try:
            return _Entry(_json_entry(obj, base_url), "", "")
        except _Rejected as exc:
            return _Entry(None, _label(obj["filename"]), str(exc))

    try:
        data = json.loads(body, object_hook=judged)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise PageParseError(f"invalid JSON: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("files"), list):
        raise PageParseError("JSON page has no 'files' list (not PEP 691)")
    meta = data.get("meta")
    version = str(meta.get("api-version", "1.0") if isinstance(meta, dict) else "1.0")
    if not version.startswith("1."):
        raise PageParseError(f"unsupported PEP 691 api-version {version[:20]!r}")
    files: list[DistFile] = []
    rejected: list[tuple[str, str]] = []
    for entry in data["files"]:
        if not isinstance(entry, _Entry):
            raise PageParseError("JSON file entry without filename or url")
        if entry.file is not None:
            files.append(entry.file)
        else:
            rejected.append((entry.label, entry.reason))
    return files, rejected


def _label(value: object) -> str:
    text = value if isinstance(value, str) else repr(value)
    text = "".join(c if c.isprintable() else "?" for c in text)
    return text if len(text) <= 100 else text[:97] + "..."


_filename = attrgetter("filename")


def _deduplicated(
    files: Iterable[DistFile], rejected: list[tuple[str, str]]
) -> tuple[DistFile, ...]:
    """Sorted files, one per filename.

    A filename listed more than once (a CDN and the main host) keeps its first URL in sorted
    order, preferring one with a sha256.  Listed with *different* sha256s it is refused
    altogether: which bytes are meant cannot be known, and taking the first by URL would let
    whoever sorts first decide.
    """
    out: list[DistFile] = []
    for name, group in groupby(sorted(files, key=lambda f: (f.filename, f.url)), _filename):
        same = list(group)
        if len(same) == 1:
            out.append(same[0])
            continue
        digests = sorted({f.sha256 for f in same if f.sha256})
        if len(digests) > 1:
            shown = ", ".join(d[:12] + "…" for d in digests)
            rejected.append((name, f"listed {len(same)} times with different sha256 ({shown})"))
            continue
        out.append(next((f for f in same if f.sha256), same[0]))
    return tuple(out)


def _count_files(body: bytes, json_page: bool, max_files: int | None) -> None:
    """Refuse a page listing more than *max_files* files before a single one is built: each
    costs memory, so the count bounds what a page can make us hold (an upper bound: every
    ``"filename"`` key or ``<a`` tag counts)."""
    if max_files is None:
        return
    marks = (b'"filename"',) if json_page else (b"<a", b"<A")
    if sum(body.count(m) for m in marks) > max_files:
        raise PageParseError(f"it lists more than {max_files} files (refused)")


def parse_project_page(
    body: bytes,
    *,
    content_type: str | None,
    base_url: str,
    project: str,
    max_files: int | None = None,
) -> ProjectPage:
    """Parse a project page in either PEP 503 HTML or PEP 691 JSON form (at most *max_files*
    files, else :class:`PageParseError`).

    >>> page = parse_project_page(
    ...     b'<a href="/whl/cu118/torch-2.4.0%2Bcu118-cp39-cp39-win_amd64.whl#sha256=' + b'a' * 64
    ...     + b'">torch-2.4.0+cu118-cp39-cp39-win_amd64.whl</a>',
    ...     content_type="text/html", base_url="https://h.invalid/whl/cu118/torch/",
    ...     project="torch")
    >>> f = page.files[0]
    >>> f.filename, f.url
    ('torch-2.4.0+cu118-cp39-cp39-win_amd64.whl', 'https://h.invalid/whl/cu118/torch-2.4.0%2Bcu118-cp39-cp39-win_amd64.whl')
    """
    json_page = _is_json(body, content_type)
    _count_files(body, json_page, max_files)
    if json_page:
        files, rejected = _files_from_json(body, base_url)
    else:
        files, rejected = _files_from_html(body, base_url)
    unique = _deduplicated(files, rejected)
    return ProjectPage(canonicalize_name(project), base_url, unique, tuple(rejected))


def parse_flat_listing(
    body: bytes, *, base_url: str, max_files: int | None = None
) -> tuple[tuple[DistFile, ...], tuple[tuple[str, str], ...]]:
    """Parse a find-links page (any HTML listing of distribution links, no project name):
    its files and the ``(name, reason)`` of every link refused."""
    _count_files(body, False, max_files)
    files, rejected = _files_from_html(body, base_url)
    unique = _deduplicated(files, rejected)
    return unique, tuple(rejected)


def parse_flat_page(body: bytes, *, base_url: str) -> tuple[DistFile, ...]:
    """The files of a find-links page (see :func:`parse_flat_listing`)."""
    return parse_flat_listing(body, base_url=base_url)[0]


def parse_root_page(body: bytes, *, content_type: str | None) -> frozenset[NormalizedName]:
    """The project names an index root lists (PEP 503 anchors or PEP 691 ``projects``).

    ``serve --pull`` asks a PyTorch variant root which projects it carries (torch, and such
    as triton); the anchor text is the name, else the last segment of the href.

    >>> sorted(parse_root_page(b'<a href="/whl/cu118/torch/">torch</a><a href="Triton/"></a>',
    ...                        content_type="text/html"))
    ['torch', 'triton']
    >>> sorted(parse_root_page(b'{"meta": {}, "projects": [{"name": "Jinja2"}]}',
    ...                        content_type=JSON_CONTENT_TYPE))
    ['jinja2']
    """
    if _is_json(body, content_type):
        try:
            data = json.loads(body)
            projects = data["projects"]
            return frozenset(canonicalize_name(str(p["name"])) for p in projects)
        except (ValueError, UnicodeDecodeError, KeyError, TypeError) as exc:
            raise PageParseError(f"not a PEP 691 root page: {exc}") from exc
    parser = _anchors(body)
    names: set[NormalizedName] = set()
    for attrs, text in parser.anchors:
        name = text or unquote(urlsplit(attrs.get("href") or "").path.rstrip("/").rsplit("/")[-1])
        if name:
            names.add(canonicalize_name(name))
    return frozenset(names)
