"""``wheelcache index OUTDIR``: the published cache as a static simple-index tree.

::

    OUTDIR/simple/index.html, index.json               root page, both formats
    OUTDIR/simple/<project>/index.html, index.json     project pages (links ../../wheels/…)
    OUTDIR/wheels/<filename>, <filename>.metadata      hard links to the blobs, else copies
    OUTDIR/nginx.conf.snippet                          serves it, JSON by Accept (PEP 691)
    OUTDIR/wheelcache-index.json                       what this tree holds (for re-exports)

Why this shape: any static web server, CDN or object store can host it, and the links are
relative so the tree can move (``--base-url`` makes file links absolute, for files hosted
elsewhere).  A plain static server serves ``index.html`` for a directory, which pip and uv
read; nginx with the snippet also gives PEP 691 JSON.  Pages are rendered by
:mod:`wheelcache.core.render`, so the tree matches ``wheelcache serve`` and two exports of the same
cache are byte-identical.  Every file is written to a temp name in its own directory and
renamed into place; wheels and ``.metadata`` go first and the root page last, so a server that
is already serving the tree never lists a file that is not there yet.  Files a previous export
wrote and this one does not are removed at the end, and only those: the manifest says which.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from wheelcache.core.render import (
    render_project_html,
    render_project_json,
    render_root_html,
    render_root_json,
)
from wheelcache.errors import CacheError
from wheelcache.serve.publish import PublishedFile, Snapshot
from wheelcache.store.cache import describe_os_error
from wheelcache.store.safepath import first_unsafe, remove_inside

__all__ = [
    "MANIFEST_NAME",
    "SNIPPET_NAME",
    "StaticIndexResult",
    "normalize_base_url",
    "render_nginx_snippet",
    "write_static_index",
]

log = logging.getLogger(__name__)

MANIFEST_NAME = "wheelcache-index.json"
SNIPPET_NAME = "nginx.conf.snippet"
_MANIFEST_FORMAT = "wheelcache-static-index-v1"
# PEP 691 JSON asked for, and not refused with q=0 (nginx's PCRE has lookaheads).
_JSON_REGEX = (
    r"~*application/vnd\.pypi\.simple\.(v1|latest)\+json"
    r"(?!\s*;\s*q\s*=\s*0(\.0*)?\s*(,|$))"
)
_READABLE = 0o644  # the web server's user must be able to read what we export


@dataclass(frozen=True, slots=True)
class StaticIndexResult:
    """What :func:`write_static_index` wrote."""

    outdir: Path
    projects: int
    files: int
    linked: int
    copied: int
    removed: int
    snippet: Path


def normalize_base_url(url: str) -> str:
    """Check an ``http(s)://`` base URL and give it exactly one trailing slash.

    >>> normalize_base_url("https://wheels.lan/py")
    'https://wheels.lan/py/'
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise CacheError(f"--base-url must be an http(s) URL without query or fragment: {url!r}")
    return url.rstrip("/") + "/"


def render_nginx_snippet(root: Path, *, prefix: str = "/", listen: str = "8080") -> str:
    """An nginx config (http context) serving the tree at *root* under URL path *prefix*.

    The ``map`` picks ``index.json`` when the client asks for PEP 691 JSON (as pip and uv do,
    with q=1) and ``index.html`` otherwise; ``q=0`` for JSON counts as a refusal.  A regex
    cannot weigh q-values against each other; no installer relies on that.
    """
    root_s = root.as_posix().replace('"', '\\"')  # nginx wants / even on Windows
    return f"""\
# nginx configuration for a static index written by `wheelcache index`.
# Include it in the http {{}} block (e.g. copy to /etc/nginx/conf.d/wheelcache.conf),
# adjust `listen` (and `server_name`), then: nginx -t && nginx -s reload
# Clients: pip install --index-url http://HOST:PORT{prefix}simple/ PACKAGE
map $http_accept $wheelcache_index {{
    default index.html;
    "{_JSON_REGEX}" index.json;
}}

server {{
    listen {listen};
    sendfile on;
    tcp_nopush on;
    autoindex off;
    absolute_redirect off;
    disable_symlinks on from=$document_root;  # hard links are fine; symlinks out are not

    location ^~ {prefix}simple/ {{
        alias "{root_s}/simple/";
        index $wheelcache_index;
        types {{
            text/html html;
            application/vnd.pypi.simple.v1+json json;
        }}
        charset utf-8;
        add_header Vary Accept always;
        add_header Cache-Control no-cache always;
    }}

    location ^~ {prefix}wheels/ {{
        alias "{root_s}/wheels/";
        types {{
            text/plain metadata;
        }}
        default_type application/octet-stream;
        charset utf-8;
    }}

    location / {{
        return 404;
    }}
}}
"""


class _Writer:
    """Atomic writes inside OUTDIR: temp file in the same directory, then ``os.replace``."""

    def __init__(self, outdir: Path) -> None:
        self.outdir = outdir
        self.written: list[str] = []
        self.linked = 0
        self.copied = 0

    def _temp(self, dest: Path) -> Path:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
        os.close(fd)
        return Path(name)

    def _record(self, dest: Path) -> None:
        self.written.append(dest.relative_to(self.outdir).as_posix())

    def bytes(self, dest: Path, data: bytes) -> None:
        self._record(dest)
        with contextlib.suppress(OSError):
            if dest.read_bytes() == data:
                return  # unchanged: keep the file (and its mtime, so caches keep validating)
        tmp = self._temp(dest)
        try:
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, _READABLE)
            os.replace(tmp, dest)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()

    def file(self, dest: Path, source: Path) -> None:
        """Place *source* at *dest*: a hard link where possible, else a copy."""
        self._record(dest)
        try:
            src, cur = source.stat(), dest.stat()
            same = os.path.samestat(src, cur) or (
                cur.st_size == src.st_size and cur.st_mtime_ns == src.st_mtime_ns
            )
            if same and cur.st_mode & 0o044 == 0o044:
                return
        except OSError:
            pass
        tmp = self._temp(dest)
        tmp.unlink()
        try:
            try:
                os.link(source, tmp)
                if os.stat(tmp).st_mode & 0o044 != 0o044:
                    # The blob is private (mkstemp makes 0600); readable for the web server.
                    os.chmod(tmp, stat.S_IMODE(os.stat(tmp).st_mode) | 0o044)
                self.linked += 1
            except OSError:
                with contextlib.suppress(FileNotFoundError):
                    tmp.unlink()
                shutil.copy2(source, tmp)
                os.chmod(tmp, _READABLE)
                self.copied += 1
            os.replace(tmp, dest)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()


def _read_manifest(outdir: Path) -> list[str] | None:
    try:
        data = json.loads((outdir / MANIFEST_NAME).read_bytes())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("format") != _MANIFEST_FORMAT:
        return None
    files = data.get("files")
    return [f for f in files if isinstance(f, str)] if isinstance(files, list) else None


def _check_outdir(outdir: Path) -> list[str]:
    """Files of a previous export; refuse a non-empty folder that is not one of ours, and one
    holding a link, a FIFO or a device (a ``wheels/`` link would carry writes and deletes out)."""
    if not outdir.exists():
        return []
    if not outdir.is_dir():
        raise CacheError(f"{outdir} exists and is not a folder")
    found = first_unsafe(outdir)
    if found is not None:
        raise CacheError(
            f"{found[0]} is {found[1]}; an index folder holds plain files and folders only: "
            "remove it, or choose an empty folder; nothing was written"
        )
    previous = _read_manifest(outdir)
    if previous is None and any(outdir.iterdir()):
        raise CacheError(
            f"{outdir} is not empty and holds no {MANIFEST_NAME}; choose an empty folder "
            "or one that a previous `wheelcache index` wrote"
        )
    return previous or []


def _remove_stale(outdir: Path, previous: list[str], current: set[str]) -> int:
    """Remove what the previous export wrote and this one does not: plain files inside
    *outdir* only (a hand-edited manifest must not make us delete anything else)."""
    return sum(remove_inside(outdir, rel) for rel in sorted(set(previous) - current, reverse=True))


def write_static_index(
    snapshot: Snapshot, outdir: Path, *, base_url: str | None = None
) -> StaticIndexResult:
    """Write *snapshot* as a static tree in *outdir* (see the module docstring)."""
    outdir = Path(os.path.realpath(outdir.absolute()))  # a link the user named is followed
    base = normalize_base_url(base_url) if base_url else None
    files_base = f"{base}wheels/" if base else "../../wheels/"
    prefix = urlsplit(base).path if base else "/"
    try:
        previous = _check_outdir(outdir)
        w = _Writer(outdir)
        published: list[PublishedFile] = list(snapshot.files.values())
        for pf in sorted(published, key=lambda p: p.entry.filename):
            dest = outdir / "wheels" / pf.entry.filename
            w.file(dest, pf.path)
            md = pf.metadata
            if md is not None:
                md_dest = dest.with_name(dest.name + ".metadata")
                if md.path is not None:
                    w.file(md_dest, md.path)
                else:
                    w.bytes(md_dest, md.data or b"")
        for project, pfs in sorted(snapshot.projects.items()):
            entries = [p.entry for p in pfs]
            pdir = outdir / "simple" / project
            html = render_project_html(project, entries, files_base=files_base)
            data = render_project_json(project, entries, files_base=files_base)
            w.bytes(pdir / "index.html", html)
            w.bytes(pdir / "index.json", data)
        w.bytes(outdir / "simple" / "index.json", render_root_json(snapshot.projects))
        w.bytes(outdir / "simple" / "index.html", render_root_html(snapshot.projects))
        snippet = outdir / SNIPPET_NAME
        w.bytes(snippet, render_nginx_snippet(outdir, prefix=prefix).encode("utf-8"))
        current = set(w.written) | {MANIFEST_NAME}
        manifest = {"format": _MANIFEST_FORMAT, "files": sorted(current)}
        w.bytes(outdir / MANIFEST_NAME, (json.dumps(manifest, indent=1) + "\n").encode())
        removed = _remove_stale(outdir, previous, current)
    except OSError as exc:
        where = getattr(exc, "filename", None) or outdir
        raise CacheError(
            describe_os_error(exc, where, "write the index to another folder")
        ) from exc
    log.info(
        "static index in %s: %d files, %d projects", outdir, len(published), len(snapshot.projects)
    )
    return StaticIndexResult(
        outdir, len(snapshot.projects), len(published), w.linked, w.copied, removed, snippet
    )
