"""Parse index pages: PEP 503 HTML, PEP 691 JSON and flat find-links listings.

Bytes and a base URL in, a :class:`~wheelcache.core.models.ProjectPage` out.  Every href is joined
against the page URL (the PyTorch index uses root-relative links, absolute links to a CDN host and
``%2B`` for ``+``; mirrors write ``&#43;``), fragments are split off into hashes, and files are
sorted so nothing downstream depends on the order a server lists them in.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from html.parser import HTMLParser
from typing import Any
from urllib.parse import unquote, urldefrag, urljoin, urlsplit

from packaging.utils import NormalizedName, canonicalize_name

from wheelcache.core.models import DistFile, ProjectPage, Sha256

__all__ = [
    "JSON_CONTENT_TYPE",
    "PageParseError",
    "parse_flat_page",
    "parse_project_page",
    "parse_root_page",
]

JSON_CONTENT_TYPE = "application/vnd.pypi.simple.v1+json"
HTML_CONTENT_TYPES = ("text/html", "application/vnd.pypi.simple.v1+html")
_DIST_SUFFIXES = (".whl", ".tar.gz", ".zip", ".tar.bz2", ".tgz")


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


def _sha256_from_fragment(fragment: str) -> Sha256 | None:
    name, _, value = fragment.partition("=")
    if name.lower() == "sha256" and len(value) == 64:
        return Sha256(value.lower())
    return None


def _metadata_attr(value: str | None) -> tuple[bool, Sha256 | None]:
    """PEP 658/714 attribute: absent, ``true`` or ``sha256=<hex>``."""
    if value is None:
        return False, None
    v = value.strip()
    if v.lower() == "false":
        return False, None
    name, _, digest = v.partition("=")
    if name.lower() == "sha256" and len(digest) == 64:
        return True, Sha256(digest.lower())
    return True, None


def _filename_for(url: str, text: str) -> str:
    """The dist filename: last path segment of the href, else the link text.

    Directory listings (nginx autoindex) shorten long link texts, so the href wins.
    """
    last = unquote(urlsplit(url).path.rsplit("/", 1)[-1])
    if last.endswith(_DIST_SUFFIXES):
        return last
    return text


def _files_from_html(body: bytes, base_url: str) -> list[DistFile]:
    parser = _AnchorCollector()
    try:
        parser.feed(body.decode("utf-8", errors="replace"))
        parser.close()
    except Exception as exc:  # html.parser is lenient; this is a last line of defence
        raise PageParseError(f"unreadable HTML: {exc}") from exc
    base = urljoin(base_url, parser.base) if parser.base else base_url
    files: list[DistFile] = []
    for attrs, text in parser.anchors:
        href = attrs.get("href")
        if not href:
            continue
        url, fragment = _join(base, href)
        filename = _filename_for(url, text)
        if not filename.endswith(_DIST_SUFFIXES):
            continue
        has_md, md_sha = _metadata_attr(
            attrs.get("data-core-metadata", attrs.get("data-dist-info-metadata"))
        )
        yanked = "data-yanked" in attrs
        files.append(
            DistFile(
                filename=filename,
                url=url,
                sha256=_sha256_from_fragment(fragment),
                requires_python=(attrs.get("data-requires-python") or None),
                yanked=yanked,
                yanked_reason=(attrs.get("data-yanked") or None) if yanked else None,
                core_metadata=has_md,
                core_metadata_sha256=md_sha,
                upload_time=attrs.get("data-upload-time") or None,
            )
        )
    return files


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
        return True, Sha256(str(digest).lower()) if digest else None
    return bool(value), None


def _files_from_json(body: bytes, base_url: str) -> tuple[str | None, list[DistFile]]:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise PageParseError(f"invalid JSON: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("files"), list):
        raise PageParseError("JSON page has no 'files' list (not PEP 691)")
    version = str(data.get("meta", {}).get("api-version", "1.0"))
    if not version.startswith("1."):
        raise PageParseError(f"unsupported PEP 691 api-version {version}")
    files: list[DistFile] = []
    for entry in data["files"]:
        if not isinstance(entry, dict) or "filename" not in entry or "url" not in entry:
            raise PageParseError("JSON file entry without filename or url")
        url, fragment = _join(base_url, str(entry["url"]))
        hashes = entry.get("hashes") or {}
        sha = hashes.get("sha256") if isinstance(hashes, dict) else None
        yanked = entry.get("yanked", False)
        has_md, md_sha = _json_metadata(entry)
        size = entry.get("size")
        files.append(
            DistFile(
                filename=str(entry["filename"]),
                url=url,
                sha256=Sha256(sha.lower()) if sha else _sha256_from_fragment(fragment),
                requires_python=entry.get("requires-python") or None,
                yanked=bool(yanked),
                yanked_reason=yanked if isinstance(yanked, str) and yanked else None,
                core_metadata=has_md,
                core_metadata_sha256=md_sha,
                size=size if isinstance(size, int) else None,
                upload_time=entry.get("upload-time"),
            )
        )
    name = data.get("name")
    return (str(name) if name else None), files


def _sorted(files: Iterable[DistFile]) -> tuple[DistFile, ...]:
    return tuple(sorted(files, key=lambda f: (f.filename, f.url)))


def parse_project_page(
    body: bytes, *, content_type: str | None, base_url: str, project: str
) -> ProjectPage:
    """Parse a project page in either PEP 503 HTML or PEP 691 JSON form.

    >>> page = parse_project_page(
    ...     b'<a href="/whl/cu118/torch-2.4.0%2Bcu118-cp39-cp39-win_amd64.whl#sha256=' + b'a' * 64
    ...     + b'">torch-2.4.0+cu118-cp39-cp39-win_amd64.whl</a>',
    ...     content_type="text/html", base_url="https://h.invalid/whl/cu118/torch/",
    ...     project="torch")
    >>> f = page.files[0]
    >>> f.filename, f.url
    ('torch-2.4.0+cu118-cp39-cp39-win_amd64.whl', 'https://h.invalid/whl/cu118/torch-2.4.0%2Bcu118-cp39-cp39-win_amd64.whl')
    """
    ctype = (content_type or "").split(";")[0].strip().lower()
    if ctype == JSON_CONTENT_TYPE or (
        ctype not in HTML_CONTENT_TYPES and body.lstrip()[:1] == b"{"
    ):
        _, files = _files_from_json(body, base_url)
    else:
        files = _files_from_html(body, base_url)
    return ProjectPage(name=canonicalize_name(project), url=base_url, files=_sorted(files))


def parse_flat_page(body: bytes, *, base_url: str) -> tuple[DistFile, ...]:
    """Parse a find-links page: any HTML listing of distribution links (no project name)."""
    return _sorted(_files_from_html(body, base_url))


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
    ctype = (content_type or "").split(";")[0].strip().lower()
    if ctype == JSON_CONTENT_TYPE or (
        ctype not in HTML_CONTENT_TYPES and body.lstrip()[:1] == b"{"
    ):
        try:
            data = json.loads(body)
            projects = data["projects"]
            return frozenset(canonicalize_name(str(p["name"])) for p in projects)
        except (ValueError, UnicodeDecodeError, KeyError, TypeError) as exc:
            raise PageParseError(f"not a PEP 691 root page: {exc}") from exc
    parser = _AnchorCollector()
    try:
        parser.feed(body.decode("utf-8", errors="replace"))
        parser.close()
    except Exception as exc:  # html.parser is lenient; this is a last line of defence
        raise PageParseError(f"unreadable HTML: {exc}") from exc
    names: set[NormalizedName] = set()
    for attrs, text in parser.anchors:
        name = text or unquote(urlsplit(attrs.get("href") or "").path.rstrip("/").rsplit("/")[-1])
        if name:
            names.add(canonicalize_name(name))
    return frozenset(names)
