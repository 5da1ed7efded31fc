"""A small PEP 503 index of generated wheels, described by a list of releases, served on
127.0.0.1 — for resolution cases that the PyTorch-style universe does not contain.

Every wheel gets a PEP 658 ``.metadata`` file, so a resolution over it reads no wheel bodies.
torch, torchvision and torchaudio may be listed like any project: pass the index as
``--torch-index`` without ``{variant}`` and their plain versions are taken.
"""

from __future__ import annotations

import hashlib
import html
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from packaging.utils import canonicalize_name

from .httpserver import FileServer
from .wheels import build_sdist, build_wheel, metadata_bytes

__all__ = ["Dist", "publish", "serve_index"]


@dataclass(frozen=True)
class Dist:
    """One release: its wheels (one per tag) or only an sdist (``tags=()``)."""

    name: str
    version: str
    requires: tuple[str, ...] = ()
    requires_python: str | None = None
    tags: tuple[str, ...] = ("py3-none-any",)
    extras: tuple[str, ...] = ()
    upload_time: str | None = None


def _link(url: str, path: Path, d: Dist, meta_sha: str | None) -> str:
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    attrs = ""
    if d.requires_python:
        attrs += f' data-requires-python="{html.escape(d.requires_python)}"'
    if meta_sha:
        attrs += f' data-dist-info-metadata="sha256={meta_sha}"'
        attrs += f' data-core-metadata="sha256={meta_sha}"'
    if d.upload_time:
        attrs += f' data-upload-time="{d.upload_time}"'
    return f'<a href="{url}#sha256={sha}"{attrs}>{path.name}</a><br/>'


@contextmanager
def serve_index(root: Path, dists: Iterable[Dist]) -> Iterator[str]:
    """Build every release under *root*, serve them, yield the ``…/simple`` URL."""
    with FileServer() as srv:
        yield publish(srv, root, dists)


def publish(srv: FileServer, root: Path, dists: Iterable[Dist]) -> str:
    """Build the releases under *root* and serve their pages on *srv* (a second call with
    more releases replaces the pages: an index that published something new); returns the
    ``…/simple`` URL."""
    links: dict[str, list[str]] = {}
    for d in dists:
        files = root / "files"
        paths: list[tuple[Path, str | None]] = []
        for tag in d.tags:
            wheel = build_wheel(
                files,
                d.name,
                d.version,
                tag,
                requires_dist=d.requires,
                requires_python=d.requires_python,
                provides_extra=d.extras,
            )
            meta = metadata_bytes(
                d.name,
                d.version,
                requires_dist=d.requires,
                requires_python=d.requires_python,
                provides_extra=d.extras,
            )
            srv.add(f"/files/{wheel.name}.metadata", meta)
            paths.append((wheel, hashlib.sha256(meta).hexdigest()))
        if not d.tags:
            paths.append((build_sdist(files, d.name, d.version, requires_dist=d.requires), None))
        key = str(canonicalize_name(d.name))
        for path, meta_sha in paths:
            srv.add(f"/files/{path.name}", path)
            url = srv.url + "/files/" + quote(path.name)
            links.setdefault(key, []).append(_link(url, path, d, meta_sha))
    for key, anchors in links.items():
        page = "<!DOCTYPE html>\n<html><body>\n" + "\n".join(anchors) + "\n</body></html>\n"
        srv.add(f"/simple/{key}/", page.encode(), content_type="text/html")
    return f"{srv.url}/simple"
