"""Which index serves which project, and the PyTorch wheel mirrors.

Routing: torch, torchvision and torchaudio come from the PyTorch index (one tree per variant,
or one index); every other project from the first of ``index_urls`` that has a page for it.
One project never mixes files from two indexes (that is how dependency confusion happens).
When the PyTorch index cannot be reached, a torch-family project is listed from the first
mirror that has it, and that is recorded (its hashes are the mirror's).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from packaging.utils import NormalizedName

from wheelcache.core.models import DistFile, ProjectPage
from wheelcache.core.simple import PageParseError, parse_flat_page, parse_project_page
from wheelcache.core.variants import KNOWN_VARIANTS, is_torch_family
from wheelcache.errors import IndexPageError, IndexUnreachableError, TargetError
from wheelcache.net.pages import PageStore

__all__ = ["Indexes", "Mirror", "Sources", "project_url"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Mirror:
    """A PyTorch wheel mirror: a PEP 503 tree per variant, or a flat listing per variant.

    ``url`` may contain ``{variant}``.  Files are matched by filename; their hashes still
    come from the official index whenever it can be reached.
    """

    url: str
    layout: str = "pep503"  # or "flat"

    def base(self, variant: str) -> str:
        return self.url.replace("{variant}", variant).rstrip("/")

    @classmethod
    def parse(cls, text: str) -> Mirror:
        """``URL`` (PEP 503 tree) or ``flat+URL`` (a directory listing of wheels)."""
        if text.startswith("flat+"):
            return cls(text[len("flat+") :], "flat")
        return cls(text.removeprefix("pep503+"), "pep503")


@dataclass(frozen=True, slots=True)
class Sources:
    """Where projects come from."""

    torch_index: str  # URL of the PyTorch index for this variant (no trailing slash)
    per_variant: bool  # True when it is a per-variant tree (local versions are filtered)
    index_urls: tuple[str, ...]  # everything else, first match wins
    mirrors: tuple[Mirror, ...] = ()  # PyTorch wheel mirrors (torch family only)


def project_url(index: str, name: str) -> str:
    """
    >>> project_url("https://idx.invalid/simple/", "torch")
    'https://idx.invalid/simple/torch/'
    """
    return f"{index.rstrip('/')}/{name}/"


class Indexes:
    """Project pages from the index that serves each project (thread-safe, memoized).

    *variant* is the PyTorch variant whose tree and mirrors are read (``cpu``, ``cu118``…).
    """

    def __init__(self, sources: Sources, pages: PageStore, variant: str) -> None:
        self.sources = sources
        self.pages = pages
        self.variant = variant
        self._pages: dict[NormalizedName, ProjectPage | None] = {}
        self._lock = threading.Lock()
        #: Projects listed from a mirror because the official index was unreachable.
        self.mirror_hashed: set[NormalizedName] = set()
        self._mirror_warned: set[str] = set()

    def variant_for(self, name: NormalizedName) -> str | None:
        """The variant whose local versions *name*'s files must carry (None: any)."""
        return self.variant if is_torch_family(name) and self.sources.per_variant else None

    def where(self, name: NormalizedName) -> str:
        """The index (or indexes) asked for *name*, for messages."""
        if is_torch_family(name):
            return self.sources.torch_index
        return ", ".join(self.sources.index_urls) or "no index configured"

    def page(self, name: NormalizedName) -> ProjectPage | None:
        """The project's page from the index that serves it; None when it has none."""
        with self._lock:
            if name in self._pages:
                return self._pages[name]
        if is_torch_family(name):
            url = project_url(self.sources.torch_index, name)
            try:
                page = self._get_page(url, name)
            except IndexUnreachableError as exc:
                page = self._page_from_mirrors(name, exc)
            if page is None and self.sources.per_variant:
                self._check_variant_exists()
        else:
            page = None
            for index in self.sources.index_urls:
                page = self._get_page(project_url(index, name), name)
                if page is not None:
                    break
        with self._lock:
            self._pages[name] = page
        return page

    def _get_page(self, url: str, name: NormalizedName) -> ProjectPage | None:
        resp = self.pages.get(url)
        for attempt in (1, 2):
            if resp.status == 404:
                return None
            try:
                return parse_project_page(
                    resp.body, content_type=resp.content_type, base_url=resp.url, project=name
                )
            except PageParseError as exc:
                if attempt == 2 or not resp.from_cache or self.pages.http is None:
                    raise IndexPageError(url, f"cannot parse the page: {exc}") from exc
                # The stored copy is damaged (a bad answer once): ask again, unconditionally.
                log.warning("cached page %s is unreadable (%s); fetching it again", url, exc)
                resp = self.pages.get(url, fresh=True)
        raise AssertionError("unreachable")

    def _check_variant_exists(self) -> None:
        root = self.sources.torch_index + "/"
        if self.pages.get(root).status == 404:
            raise TargetError(
                f"the PyTorch index has no variant {self.variant!r} ({root} not found); "
                f"known: {', '.join(KNOWN_VARIANTS)}"
            )

    # -- mirrors --------------------------------------------------------------------------
    def _mirror_files(self, mirror: Mirror, name: NormalizedName) -> dict[str, DistFile]:
        """The mirror's files of project *name*, by filename ({} when it cannot be read)."""
        base = mirror.base(self.variant)
        try:
            if mirror.layout == "flat":
                resp = self.pages.get(base + "/", accept="text/html")
                files = parse_flat_page(resp.body, base_url=resp.url) if resp.status == 200 else ()
            else:
                page = self._get_page(project_url(base, name), name)
                files = page.files if page else ()
        except (IndexPageError, PageParseError) as exc:
            with self._lock:
                warned = base in self._mirror_warned
                self._mirror_warned.add(base)
            if not warned:
                log.warning("mirror %s cannot be read (%s); not using it", base, exc)
            return {}
        prefix = name.replace("-", "_") + "-"
        return {f.filename: f for f in files if f.filename.lower().startswith(prefix)}

    def mirror_urls(self, name: NormalizedName, file: DistFile) -> tuple[str, ...]:
        """URLs of the same file on the configured mirrors (matched by filename)."""
        if not is_torch_family(name):
            return ()
        urls = []
        for mirror in self.sources.mirrors:
            f = self._mirror_files(mirror, name).get(file.filename)
            if f is not None and f.url != file.url:
                urls.append(f.url)
        return tuple(urls)

    def _page_from_mirrors(
        self, name: NormalizedName, exc: IndexUnreachableError
    ) -> ProjectPage | None:
        """The official index is down: list the project from the first mirror that has it."""
        for mirror in self.sources.mirrors:
            files = self._mirror_files(mirror, name)
            if files:
                hashed = any(f.sha256 for f in files.values())
                log.warning(
                    "%s; using mirror %s for %s: the hashes are the mirror's%s, not the "
                    "official index's",
                    exc,
                    mirror.base(self.variant),
                    name,
                    "" if hashed else " (it gives none: each file's computed hash is recorded)",
                )
                with self._lock:
                    self.mirror_hashed.add(name)
                listed = tuple(sorted(files.values(), key=lambda f: f.filename))
                return ProjectPage(name, mirror.base(self.variant), listed)
        raise exc
