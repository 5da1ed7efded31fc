"""Render simple-repository pages: PEP 503 HTML and PEP 691 JSON (api-version 1.1).

One renderer for ``wheelcache serve`` and ``wheelcache index`` so that the live server and the
static tree can never disagree.  Values in, bytes out: no disk, no environment, no network.

Why the details look the way they do:

* Output is a pure function of its inputs and everything is sorted (projects by normalized
  name, files by filename, versions by PEP 440 order), so two exports of the same cache are
  byte-identical and a page's ETag only changes when its content does.
* Hrefs are built from a *files_base* prefix plus the percent-quoted filename (``+`` in local
  versions becomes ``%2B``, as pip and uv expect).  The server passes a root-relative base
  (``/wheels/``); the static tree passes a relative one (``../../wheels/``) so the tree can be
  moved or hosted under any prefix; ``--base-url`` gives an absolute one.
* Both ``data-dist-info-metadata`` (PEP 658, read by older pip) and ``data-core-metadata``
  (PEP 714, the current name) are written, with the ``.metadata`` file's own sha256.
* JSON uses api-version 1.1 (PEP 700): ``size`` on every file and ``versions`` on every project
  page are required there, and both are facts the cache has.
* ``serve --pull`` re-renders *upstream* pages (:func:`render_files_html`,
  :func:`render_files_json`) from the parsed :class:`~wheelcache.core.models.DistFile` s with
  their links already pointing at the LAN server.  Upstream facts are kept as they were given:
  a missing ``#sha256`` stays missing, yanked reasons and PEP 658 digests pass through, and a
  JSON page says api-version 1.0 when some size is unknown (1.1 would promise every size).
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    NormalizedName,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

from wheelcache.core.models import DistFile, Sha256

__all__ = [
    "API_VERSION",
    "HTML_CONTENT_TYPE",
    "JSON_CONTENT_TYPE",
    "IndexEntry",
    "file_href",
    "dist_version",
    "project_versions",
    "render_files_html",
    "render_files_json",
    "render_project_html",
    "render_project_json",
    "render_root_html",
    "render_root_json",
]

API_VERSION = "1.1"
JSON_CONTENT_TYPE = "application/vnd.pypi.simple.v1+json"
HTML_CONTENT_TYPE = "text/html; charset=utf-8"


@dataclass(frozen=True, slots=True)
class IndexEntry:
    """One file on a project page, as the cache knows it.

    ``metadata_sha256`` is set when a PEP 658 ``<file>.metadata`` sits next to the file.
    ``url`` overrides the link; when ``None`` the renderer links ``files_base + filename``.
    """

    filename: str
    project: NormalizedName
    version: str
    sha256: Sha256
    size: int
    requires_python: str | None = None
    metadata_sha256: Sha256 | None = None
    url: str | None = None

    @property
    def has_metadata(self) -> bool:
        return self.metadata_sha256 is not None


def file_href(entry: IndexEntry, files_base: str) -> str:
    """The link to *entry*'s file, without the hash fragment.

    >>> e = IndexEntry("torch-2.4.0+cu118-cp39-cp39-win_amd64.whl", NormalizedName("torch"),
    ...                "2.4.0+cu118", Sha256("0" * 64), 1)
    >>> file_href(e, "../../wheels/")
    '../../wheels/torch-2.4.0%2Bcu118-cp39-cp39-win_amd64.whl'
    """
    if entry.url is not None:
        return entry.url
    return files_base + quote(entry.filename, safe="")


def _version_key(version: str) -> tuple[int, Version | None, str]:
    try:
        return (0, Version(version), version)
    except InvalidVersion:  # keep unparsable versions, after the valid ones, in text order
        return (1, None, version)


def project_versions(entries: Iterable[IndexEntry]) -> list[str]:
    """The distinct versions of *entries* in PEP 440 order (the PEP 700 ``versions`` list).

    >>> e = [IndexEntry(f"a-{v}-py3-none-any.whl", NormalizedName("a"), v, Sha256("0" * 64), 1)
    ...      for v in ("1.10", "1.9", "1.9")]
    >>> project_versions(e)
    ['1.9', '1.10']
    """
    return sorted({e.version for e in entries}, key=_version_key)


def _sorted_entries(entries: Iterable[IndexEntry]) -> list[IndexEntry]:
    return sorted(entries, key=lambda e: e.filename)


def _sorted_projects(projects: Iterable[str]) -> list[NormalizedName]:
    return sorted({canonicalize_name(p) for p in projects})


def _attr(value: str) -> str:
    return html.escape(value, quote=True)


def _html_page(title: str, lines: Sequence[str]) -> bytes:
    body = "\n".join(f"    {line}" for line in lines)
    text = (
        "<!DOCTYPE html>\n"
        "<html>\n"
        "  <head>\n"
        f'    <meta name="pypi:repository-version" content="{API_VERSION}">\n'
        f"    <title>{html.escape(title)}</title>\n"
        "  </head>\n"
        "  <body>\n"
        f"    <h1>{html.escape(title)}</h1>\n"
        f"{body}{chr(10) if lines else ''}"
        "  </body>\n"
        "</html>\n"
    )
    return text.encode("utf-8")


def _json(data: dict[str, Any]) -> bytes:
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return (text + "\n").encode("utf-8")


def render_root_html(projects: Iterable[str], *, projects_base: str = "") -> bytes:
    """The PEP 503 root page: one link per project, ``projects_base + name + "/"``.

    >>> b"<a href=\\"torch/\\">torch</a>" in render_root_html(["Torch"])
    True
    """
    lines = [
        f'<a href="{_attr(projects_base + quote(name) + "/")}">{html.escape(name)}</a><br />'
        for name in _sorted_projects(projects)
    ]
    return _html_page("Simple index", lines)


def render_root_json(projects: Iterable[str]) -> bytes:
    """The PEP 691 root page: ``{"meta": …, "projects": [{"name": …}]}``."""
    return _json(
        {
            "meta": {"api-version": API_VERSION},
            "projects": [{"name": name} for name in _sorted_projects(projects)],
        }
    )


def render_project_html(project: str, entries: Iterable[IndexEntry], *, files_base: str) -> bytes:
    """A PEP 503 project page with ``#sha256=``, ``data-requires-python`` and PEP 658/714 attrs."""
    name = canonicalize_name(project)
    lines = []
    for e in _sorted_entries(entries):
        attrs = [f'href="{_attr(file_href(e, files_base))}#sha256={e.sha256}"']
        if e.requires_python:
            attrs.append(f'data-requires-python="{_attr(e.requires_python)}"')
        if e.metadata_sha256 is not None:
            attrs.append(f'data-dist-info-metadata="sha256={e.metadata_sha256}"')
            attrs.append(f'data-core-metadata="sha256={e.metadata_sha256}"')
        lines.append(f"<a {' '.join(attrs)}>{html.escape(e.filename)}</a><br />")
    return _html_page(f"Links for {name}", lines)


def _json_file(e: IndexEntry, files_base: str) -> dict[str, Any]:
    metadata: dict[str, str] | bool = (
        {"sha256": e.metadata_sha256} if e.metadata_sha256 is not None else False
    )
    out: dict[str, Any] = {
        "filename": e.filename,
        "url": file_href(e, files_base),
        "hashes": {"sha256": e.sha256},
        "size": e.size,
        "yanked": False,
        "core-metadata": metadata,
        "dist-info-metadata": metadata,
    }
    if e.requires_python:
        out["requires-python"] = e.requires_python
    return out


def render_project_json(project: str, entries: Iterable[IndexEntry], *, files_base: str) -> bytes:
    """A PEP 691 project page, api-version 1.1 (``size`` per file, ``versions`` list)."""
    ordered = _sorted_entries(entries)
    return _json(
        {
            "meta": {"api-version": API_VERSION},
            "name": canonicalize_name(project),
            "files": [_json_file(e, files_base) for e in ordered],
            "versions": project_versions(ordered),
        }
    )


# -- upstream pages, re-rendered for serve --pull -----------------------------------------------
def dist_version(filename: str) -> tuple[NormalizedName, str] | None:
    """``(project, version)`` of a wheel or sdist file name; ``None`` when it is neither.

    >>> dist_version("torch-2.4.0+cu118-cp39-cp39-win_amd64.whl")
    ('torch', '2.4.0+cu118')
    >>> dist_version("Jinja2-3.1.4.tar.gz"), dist_version("notes.txt")
    (('jinja2', '3.1.4'), None)
    """
    try:
        if filename.endswith(".whl"):
            name, version, _, _ = parse_wheel_filename(filename)
        else:
            name, version = parse_sdist_filename(filename)
    except (InvalidWheelFilename, InvalidSdistFilename):
        return None
    return name, str(version)


def _metadata_value(f: DistFile) -> str | None:
    if not f.core_metadata:
        return None
    return f"sha256={f.core_metadata_sha256}" if f.core_metadata_sha256 else "true"


def render_files_html(project: str, files: Iterable[DistFile]) -> bytes:
    """A PEP 503 project page for upstream *files* whose ``url`` is already the local link.

    >>> f = DistFile("a-1.0-py3-none-any.whl", "/simple/a/a-1.0-py3-none-any.whl",
    ...              yanked=True, yanked_reason="broken", core_metadata=True)
    >>> [line.strip() for line in render_files_html("a", [f]).decode().splitlines()
    ...  if "<a " in line]
    ['<a href="/simple/a/a-1.0-py3-none-any.whl" data-yanked="broken" \
data-dist-info-metadata="true" data-core-metadata="true">a-1.0-py3-none-any.whl</a><br />']
    """
    lines = []
    for f in sorted(files, key=lambda f: f.filename):
        href = f.url + (f"#sha256={f.sha256}" if f.sha256 else "")
        attrs = [f'href="{_attr(href)}"']
        if f.requires_python:
            attrs.append(f'data-requires-python="{_attr(f.requires_python)}"')
        if f.yanked:
            attrs.append(f'data-yanked="{_attr(f.yanked_reason or "")}"')
        metadata = _metadata_value(f)
        if metadata is not None:
            attrs.append(f'data-dist-info-metadata="{_attr(metadata)}"')
            attrs.append(f'data-core-metadata="{_attr(metadata)}"')
        if f.upload_time:
            attrs.append(f'data-upload-time="{_attr(f.upload_time)}"')
        lines.append(f"<a {' '.join(attrs)}>{html.escape(f.filename)}</a><br />")
    return _html_page(f"Links for {canonicalize_name(project)}", lines)


def _json_dist_file(f: DistFile) -> dict[str, Any]:
    metadata: dict[str, str] | bool = f.core_metadata
    if f.core_metadata and f.core_metadata_sha256:
        metadata = {"sha256": f.core_metadata_sha256}
    out: dict[str, Any] = {
        "filename": f.filename,
        "url": f.url,
        "hashes": {"sha256": f.sha256} if f.sha256 else {},
        "yanked": (f.yanked_reason or True) if f.yanked else False,
        "core-metadata": metadata,
        "dist-info-metadata": metadata,
    }
    if f.requires_python:
        out["requires-python"] = f.requires_python
    if f.size is not None:
        out["size"] = f.size
    if f.upload_time:
        out["upload-time"] = f.upload_time
    return out


def render_files_json(project: str, files: Iterable[DistFile]) -> bytes:
    """A PEP 691 project page for upstream *files* (links already local).

    api-version 1.1 (with ``versions``) when every size is known, else 1.0.

    >>> f = DistFile("a-1.0-py3-none-any.whl", "/simple/a/a-1.0-py3-none-any.whl", size=3)
    >>> json.loads(render_files_json("A", [f]))["meta"], json.loads(render_files_json("A", [f]))[
    ...     "versions"]
    ({'api-version': '1.1'}, ['1.0'])
    """
    ordered = sorted(files, key=lambda f: f.filename)
    complete = all(f.size is not None for f in ordered)
    data: dict[str, Any] = {
        "meta": {"api-version": API_VERSION if complete else "1.0"},
        "name": canonicalize_name(project),
        "files": [_json_dist_file(f) for f in ordered],
    }
    if complete:
        versions = {v[1] for f in ordered if (v := dist_version(f.filename)) is not None}
        data["versions"] = sorted(versions, key=_version_key)
    return _json(data)
