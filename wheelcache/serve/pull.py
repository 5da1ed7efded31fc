"""``serve --pull``: which upstream answers a project, and its pages rewritten for the LAN.

The URL space of a pull-through server (a contract: scripts and checks outside use it)::

    /whl/<variant>/                       a complete index for one PyTorch variant
    /whl/<variant>/<project>/             from the PyTorch index's variant page when that
                                          variant's root lists the project (torch,
                                          torchvision, torchaudio, triton …), else from the
                                          dependency index
    /whl/<variant>/<project>/<file>       the file, pulled once and streamed (see
                                          :mod:`wheelcache.serve.shared_transfer`)
    /whl/<variant>/<project>/<file>.metadata
    /simple/, /simple/<project>/, /simple/<project>/<file>[.metadata]
                                          the dependency index alone

A project of the dependency index comes from the first ``--index-url``/``--extra-index-url``
that has it, never mixed across indexes (that is how dependency confusion happens).

Pages are parsed (:func:`~wheelcache.core.simple.parse_project_page`) and rendered again
(:func:`~wheelcache.core.render.render_files_html`/``_json``) with every link on this server,
absolute CDN links included; sha256, Requires-Python, yanked and PEP 658/714 attributes pass
through.  A file request is looked up by name on its project page, so the server only ever
fetches URLs that a configured upstream listed, never a URL taken from a request.
``--project`` and ``-r`` narrow what is listed and what may be pulled.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import zipfile
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import quote, urlsplit

from packaging.utils import NormalizedName, canonicalize_name

from wheelcache.core.layout import safe_filename
from wheelcache.core.models import DistFile, ProjectPage
from wheelcache.core.render import (
    dist_version,
    render_files_html,
    render_files_json,
    render_root_html,
    render_root_json,
)
from wheelcache.core.simple import (
    PageParseError,
    parse_flat_page,
    parse_project_page,
    parse_root_page,
)
from wheelcache.core.variants import TORCH_FAMILY, Mirror, cdn_fallback, torch_index_for
from wheelcache.errors import IndexPageError, IndexUnreachableError, WheelcacheError
from wheelcache.net.client import Http
from wheelcache.net.download import DownloadJob
from wheelcache.serve.publish import Selection
from wheelcache.serve.upstream import UpstreamPage, UpstreamPages
from wheelcache.store.cache import Cache, CachedWheel
from wheelcache.store.metadata import dist_info_metadata

__all__ = ["Listing", "PullService", "Scope", "Upstreams"]

log = logging.getLogger(__name__)

MAX_METADATA = 16 * 1024 * 1024  # a METADATA file bigger than this is refused
_MEMO = 256  # parsed and rendered pages kept in memory (a lab needs a few dozen)


@dataclass(frozen=True, slots=True)
class Upstreams:
    """The configured upstreams: nothing else is ever asked."""

    torch_index: str  # may hold "{variant}"
    index_urls: tuple[str, ...]
    mirrors: tuple[Mirror, ...] = ()


@dataclass(frozen=True, slots=True)
class Scope:
    """Which local index a request is for: ``/whl/<variant>/`` or ``/simple/`` (variant None)."""

    variant: str | None = None

    @property
    def prefix(self) -> str:
        return f"/whl/{self.variant}/" if self.variant else "/simple/"


@dataclass(frozen=True, slots=True)
class Listing:
    """One project's files as this server lists them, by filename, with upstream URLs."""

    project: NormalizedName
    files: dict[str, DistFile]
    page_url: str  # the upstream page
    version: str  # of the upstream content (for the rendered-page memo)
    torch: bool  # from the PyTorch index (mirrors and a CDN fallback apply)
    stale: bool = False
    hash_origin: str = "index"


@dataclass(frozen=True, slots=True)
class RenderedPage:
    body: bytes
    etag: str


class _Memo:
    """A small thread-safe LRU map."""

    def __init__(self, size: int = _MEMO) -> None:
        self._data: OrderedDict[object, object] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def get(self, key: object) -> object | None:
        with self._lock:
            value = self._data.get(key)
            if value is not None:
                self._data.move_to_end(key)
            return value

    def put(self, key: object, value: object) -> None:
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self._size:
                self._data.popitem(last=False)


@dataclass
class PullService:
    """Routing, page rewriting, file lookup and metadata for a pull-through server."""

    cache: Cache
    http: Http  # for pages and .metadata files (few retries: a client is waiting)
    pages: UpstreamPages
    upstreams: Upstreams
    selection: Selection = field(default_factory=Selection)
    _memo: _Memo = field(default_factory=_Memo)

    # -- selection ---------------------------------------------------------------------------
    def project_allowed(self, name: NormalizedName) -> bool:
        sel = self.selection
        return sel.everything or name in sel.projects or any(p.name == name for p in sel.pins)

    def file_allowed(self, name: NormalizedName, f: DistFile) -> bool:
        sel = self.selection
        if sel.everything or name in sel.projects:
            return True
        parsed = dist_version(f.filename)
        for pin in sel.pins:
            if pin.name != name:
                continue
            if pin.hashes:
                if f.sha256 in pin.hashes:
                    return True
            elif parsed and pin.specifier.contains(parsed[1], prereleases=True):
                return True
        return False

    # -- routing -----------------------------------------------------------------------------
    def _torch_url(self, variant: str) -> str:
        return torch_index_for(self.upstreams.torch_index, variant)[0]

    def torch_projects(self, variant: str) -> frozenset[NormalizedName]:
        """What the PyTorch index's root for *variant* lists (at least the torch family)."""
        url = self._torch_url(variant) + "/"
        try:
            page = self.pages.get(url)
        except WheelcacheError as exc:
            log.debug("variant root %s: %s", url, exc)
            return frozenset(TORCH_FAMILY)
        key = ("root", url, page.version)
        names = self._memo.get(key)
        if names is None:
            try:
                names = (
                    parse_root_page(page.body, content_type=page.content_type)
                    if page.status == 200
                    else frozenset()
                )
            except PageParseError as exc:
                log.warning("cannot read the variant root %s: %s", url, exc)
                names = frozenset()
            self._memo.put(key, names)
        assert isinstance(names, frozenset)
        return names | frozenset(TORCH_FAMILY)

    def listing(self, scope: Scope, name: NormalizedName, *, revalidate: bool = False) -> Listing:
        """*name*'s files on *scope*'s index; an empty listing when no upstream has it.

        Raises :class:`IndexPageError` when the upstream that would answer cannot be reached
        and nothing is cached.
        """
        if scope.variant is not None and name in self.torch_projects(scope.variant):
            url = f"{self._torch_url(scope.variant)}/{name}/"
            try:
                page = self.pages.get(url, revalidate=revalidate)
            except IndexUnreachableError as exc:
                mirrored = self._listing_from_mirrors(scope.variant, name, exc)
                if mirrored is None:
                    raise
                return mirrored
            return self._parse(name, page, torch=True)
        found: UpstreamPage | None = None
        for index in self.upstreams.index_urls:
            found = self.pages.get(f"{index.rstrip('/')}/{name}/", revalidate=revalidate)
            if found.status == 200:
                break
        if found is None:
            return Listing(name, {}, "", "none", False)
        return self._parse(name, found, torch=False)

    def _parse(self, name: NormalizedName, page: UpstreamPage, *, torch: bool) -> Listing:
        key = ("page", page.url, name, page.version)
        found = self._memo.get(key)
        if isinstance(found, Listing):
            return replace(found, stale=page.stale)
        files: dict[str, DistFile] = {}
        if page.status == 200:
            try:
                parsed = parse_project_page(
                    page.body, content_type=page.content_type, base_url=page.url, project=name
                )
            except PageParseError as exc:
                raise IndexPageError(page.url, f"cannot parse the page: {exc}") from exc
            files = self._usable(name, parsed)
        listing = Listing(name, files, page.url, page.version, torch, page.stale)
        self._memo.put(key, listing)
        return listing

    def _usable(self, name: NormalizedName, page: ProjectPage) -> dict[str, DistFile]:
        """The files this server may list: plain names, http(s) links, inside the selection."""
        out: dict[str, DistFile] = {}
        for f in page.files:
            try:
                safe_filename(f.filename)
            except ValueError:
                log.debug("%s: unsafe file name %r not listed", page.url, f.filename)
                continue
            if urlsplit(f.url).scheme not in ("http", "https"):
                log.debug("%s: %s is not an http(s) link; not listed", page.url, f.url)
                continue
            if self.file_allowed(name, f) and f.filename not in out:
                out[f.filename] = f
        return out

    # -- mirrors -------------------------------------------------------------------------------
    def _mirror_files(self, mirror: Mirror, variant: str, name: NormalizedName) -> list[DistFile]:
        base = mirror.base(variant)
        try:
            if mirror.layout == "flat":
                page = self.pages.get(base + "/")
                files: Iterable[DistFile] = (
                    parse_flat_page(page.body, base_url=page.url) if page.status == 200 else ()
                )
            else:
                page = self.pages.get(f"{base}/{name}/")
                files = (
                    parse_project_page(
                        page.body, content_type=page.content_type, base_url=page.url, project=name
                    ).files
                    if page.status == 200
                    else ()
                )
        except (WheelcacheError, PageParseError) as exc:
            log.debug("mirror %s: %s", base, exc)
            return []
        prefix = name.replace("-", "_") + "-"
        return [f for f in files if f.filename.lower().startswith(prefix)]

    def mirror_urls(self, variant: str, name: NormalizedName, filename: str) -> tuple[str, ...]:
        urls = []
        for mirror in self.upstreams.mirrors:
            urls += [
                f.url for f in self._mirror_files(mirror, variant, name) if f.filename == filename
            ]
        return tuple(urls)

    def _listing_from_mirrors(
        self, variant: str, name: NormalizedName, exc: IndexUnreachableError
    ) -> Listing | None:
        for mirror in self.upstreams.mirrors:
            files = self._mirror_files(mirror, variant, name)
            if files:
                key = ("mirror-warned", variant, name)
                if self._memo.get(key) is None:
                    self._memo.put(key, True)
                    log.warning(
                        "%s cannot be reached; listing %s from mirror %s: the hashes are the "
                        "mirror's",
                        exc.url,
                        name,
                        mirror.base(variant),
                    )
                page = ProjectPage(name, mirror.base(variant), tuple(files))
                usable = self._usable(name, page)
                return Listing(name, usable, page.url, "mirror", True, True, "mirror")
        return None

    # -- pages -------------------------------------------------------------------------------
    def href(self, scope: Scope, name: NormalizedName, filename: str) -> str:
        return f"{scope.prefix}{name}/{quote(filename, safe='')}"

    def project_page(self, scope: Scope, name: NormalizedName, rep: str) -> RenderedPage | None:
        """The rewritten project page (``rep`` ``"json"`` or HTML), or None for a 404."""
        if not self.project_allowed(name):
            return None
        listing = self.listing(scope, name)
        if not listing.files:
            return None
        key = ("rendered", scope.prefix, name, rep, listing.page_url, listing.version)
        found = self._memo.get(key)
        if isinstance(found, RenderedPage):
            return found
        local = [replace(f, url=self.href(scope, name, f.filename)) for f in listing.files.values()]
        body = (render_files_json if rep == "json" else render_files_html)(name, local)
        page = RenderedPage(body, f'"{hashlib.sha256(body).hexdigest()[:32]}-{rep}"')
        self._memo.put(key, page)
        return page

    def root_page(self, scope: Scope, rep: str) -> bytes:
        """A root listing what is known here: the variant's PyTorch projects, the projects in
        the cache, the selection's names (an index root of a whole upstream is not needed by
        installers and can be huge)."""
        names: set[str] = {row.project for row in self.cache.catalog.all()}
        names |= set(self.selection.projects) | {p.name for p in self.selection.pins}
        if scope.variant is not None:
            names |= self.torch_projects(scope.variant)
        allowed = [n for n in names if self.project_allowed(canonicalize_name(n))]
        if rep == "json":
            return render_root_json(allowed)
        return render_root_html(allowed, projects_base=scope.prefix)

    # -- files -------------------------------------------------------------------------------
    def find_file(
        self, scope: Scope, name: NormalizedName, filename: str
    ) -> tuple[Listing, DistFile] | None:
        """The listed file called *filename*; the page is asked again once if it is not there
        (a release newer than the stored page)."""
        if not self.project_allowed(name):
            return None
        for revalidate in (False, True):
            listing = self.listing(scope, name, revalidate=revalidate)
            f = listing.files.get(filename)
            if f is not None:
                return listing, f
            if listing.stale:
                break
        return None

    def cached(self, f: DistFile) -> CachedWheel | None:
        """The verified file in the cache: by sha256, or (a link without one) by its URL."""
        if f.sha256:
            return self.cache.find(f.filename, f.sha256)
        for row in self.cache.catalog.by_filename(f.filename):
            if row.url == f.url:
                return self.cache.find(f.filename, row.sha256)
        return None

    def job(self, scope: Scope, listing: Listing, f: DistFile) -> DownloadJob:
        """The download of *f*: its URL, mirrors for PyTorch files, the CDN fallback."""
        parsed = dist_version(f.filename)
        version = parsed[1] if parsed else "unknown"
        mirrors: tuple[str, ...] = ()
        fallbacks: tuple[str, ...] = ()
        if listing.torch and scope.variant is not None:
            mirrors = self.mirror_urls(scope.variant, listing.project, f.filename)
            fallback = cdn_fallback(f.url, self._torch_url(scope.variant))
            fallbacks = (fallback,) if fallback else ()
        urls = list(dict.fromkeys([*mirrors, f.url]))
        return DownloadJob(
            url=urls[0],
            filename=f.filename,
            project=listing.project,
            version=version,
            sha256=f.sha256,
            size=f.size,
            mirrors=tuple(urls[1:]),
            fallbacks=fallbacks,
            hash_origin=listing.hash_origin,
        )

    # -- metadata ----------------------------------------------------------------------------
    def metadata(self, f: DistFile) -> bytes | None:
        """The PEP 658 file of *f*: stored, extracted from the cached wheel, or upstream's.

        Only offered for files whose page announces it, and always with the digest the page
        gave; None when none of the three can give it.
        """
        if not f.core_metadata:
            return None
        stored = Path(self.cache.layout.metadata(f.url))
        try:
            kept = stored.read_bytes()
            if self._matches(f, kept):
                return kept
        except OSError:
            pass
        data = self._from_wheel(f) or self._from_upstream(f)
        if data is None:
            return None
        try:
            self.cache.write_atomic(stored, data, durable=False)
        except WheelcacheError as exc:
            log.debug("cannot keep %s.metadata: %s", f.filename, exc)
        return data

    @staticmethod
    def _matches(f: DistFile, data: bytes) -> bool:
        want = f.core_metadata_sha256
        return want is None or hashlib.sha256(data).hexdigest() == want

    def _from_wheel(self, f: DistFile) -> bytes | None:
        wheel = self.cached(f) if f.filename.endswith(".whl") else None
        if wheel is None:
            return None
        parsed = dist_version(f.filename)
        try:
            with zipfile.ZipFile(wheel.blob) as zf:
                member = zf.getinfo(dist_info_metadata(zf, parsed[0] if parsed else f.filename))
                if member.file_size > MAX_METADATA:
                    raise ValueError(f"METADATA of {member.file_size} bytes")
                data = zf.read(member)
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
            log.warning("no METADATA from the cached %s: %s", f.filename, exc)
            return None
        return data if self._matches(f, data) else None

    def _from_upstream(self, f: DistFile) -> bytes | None:
        try:
            r = self.http.get(f.metadata_url)
        except WheelcacheError as exc:
            log.warning("%s.metadata: %s", f.filename, exc)
            return None
        if r.status != 200 or len(r.content) > MAX_METADATA:
            return None
        data = r.content
        if not self._matches(f, data):
            log.warning("%s.metadata from upstream does not match the page's sha256", f.filename)
            return None
        return data
