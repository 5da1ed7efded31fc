"""Which index serves which project, and the PyTorch wheel mirrors.

Routing: torch, torchvision and torchaudio come from the PyTorch index (one tree per variant,
or one index); every other project from the first of ``index_urls`` that has a page for it.
One project never mixes files from two indexes (that is how dependency confusion happens).
Find-links pages (``--find-links`` in a requirements file) add their wheels to every project's
page, as pip adds them: the user named those pages; ``--no-index`` leaves only them.
When the PyTorch index cannot be reached, a torch-family project is listed from the first
mirror that has it, and that is recorded (its hashes are the mirror's).
"""

from __future__ import annotations

import logging
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TypeVar

from packaging.utils import InvalidWheelFilename, NormalizedName, parse_wheel_filename

from wheelcache.core.models import DistFile, ProjectPage
from wheelcache.core.requirements_file import RequirementSet
from wheelcache.core.simple import PageParseError, parse_flat_listing, parse_project_page
from wheelcache.core.variants import KNOWN_VARIANTS, Mirror, is_torch_family
from wheelcache.errors import IndexPageError, IndexUnreachableError, TargetError, WheelcacheError
from wheelcache.net.pages import PageResponse, PageStore

__all__ = ["Indexes", "Sources", "project_url", "with_file_options"]

log = logging.getLogger(__name__)

T = TypeVar("T")


def _trim() -> None:
    """Give the memory a big page's parse freed back to the OS (glibc keeps it otherwise,
    spread over the arenas of the threads that parsed)."""
    if sys.platform.startswith("linux"):
        import ctypes  # only here: its import costs more than most runs ever trim

        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):  # not glibc (musl has no malloc_trim)
            pass


_SHOWN = 5  # refused files named per page; the rest at debug level
#: The fewest bytes a page spends per file it lists, as far as what a page may hold is
#: concerned (a JSON entry with a URL and a sha256 takes more than this; an HTML anchor too).
_BYTES_PER_FILE = 320


@dataclass(frozen=True, slots=True)
class Sources:
    """Where projects come from."""

    torch_index: str  # URL of the PyTorch index for this variant (no trailing slash)
    per_variant: bool  # True when it is a per-variant tree (local versions are filtered)
    index_urls: tuple[str, ...]  # everything else, first match wins
    mirrors: tuple[Mirror, ...] = ()  # PyTorch wheel mirrors (torch family only)
    find_links: tuple[str, ...] = ()  # pages of wheel links, added to every project
    no_index: bool = False  # only find_links (a requirements file's --no-index)


def with_file_options(sources: Sources, files: RequirementSet) -> Sources:
    """*sources* changed by requirement files' index options as pip changes them:
    ``--index-url`` replaces the indexes, ``--extra-index-url`` and ``--find-links`` add,
    ``--no-index`` leaves only the find-links.

    >>> from wheelcache.core.requirements_file import collect, parse_requirements_text
    >>> files = collect(parse_requirements_text(
    ...     "-i https://a.invalid/simple/\\n--extra-index-url https://b.invalid/\\n", source="r"))
    >>> with_file_options(Sources("t", True, ("https://pypi.invalid/simple",)), files).index_urls
    ('https://a.invalid/simple', 'https://b.invalid')
    """
    urls = [files.index_url.value] if files.index_url and files.index_url.value else []
    urls = urls or list(sources.index_urls)
    urls += [o.value for o in files.extra_index_urls if o.value]
    no_index = sources.no_index or files.no_index is not None
    index_urls = () if no_index else tuple(dict.fromkeys(u.rstrip("/") for u in urls))
    links = (*sources.find_links, *(o.value for o in files.find_links if o.value))
    for o in files.ignored:
        log.info("%s: %s changes nothing for fetching; ignored", o.where, o)
    return replace(sources, index_urls=index_urls, find_links=links, no_index=no_index)


def project_url(index: str, name: str) -> str:
    """
    >>> project_url("https://idx.invalid/simple/", "torch")
    'https://idx.invalid/simple/torch/'
    """
    return f"{index.rstrip('/')}/{name}/"


def _wheel_project(filename: str) -> NormalizedName | None:
    try:
        return parse_wheel_filename(filename)[0]
    except (InvalidWheelFilename, ValueError):
        return None


class Indexes:
    """Project pages from the index that serves each project (thread-safe, memoized).

    *variant* is the PyTorch variant whose tree and mirrors are read (``cpu``, ``cu118``…).
    """

    def __init__(self, sources: Sources, pages: PageStore, variant: str) -> None:
        self.sources = sources
        self.pages = pages
        self.variant = variant
        self._pages: OrderedDict[NormalizedName, ProjectPage | None] = OrderedDict()
        self._lock = threading.Lock()
        #: Projects listed from a mirror because the official index was unreachable.
        self.mirror_hashed: set[NormalizedName] = set()
        self._mirror_warned: set[str] = set()
        self._links: dict[str, tuple[DistFile, ...]] = {}
        self._said: set[str] = set()  # pages whose refused files were named
        self._big = threading.Lock()  # one big page parsed at a time

    def variant_for(self, name: NormalizedName) -> str | None:
        """The variant whose local versions *name*'s files must carry (None: any)."""
        return self.variant if is_torch_family(name) and self.sources.per_variant else None

    def where(self, name: NormalizedName) -> str:
        """The index (or indexes) asked for *name*, for messages."""
        if self.sources.no_index:
            where: tuple[str, ...] = ()
        elif is_torch_family(name):
            where = (self.sources.torch_index,)
        else:
            where = self.sources.index_urls
        return ", ".join((*where, *self.sources.find_links)) or "no index configured"

    @property
    def max_files(self) -> int:
        """Files one page may list: one per 320 bytes of ``--max-page-size`` (52,428 at the
        16 MiB default; the most a real page lists is a few thousand)."""
        http = self.pages.http
        return max(1000, (http.settings.max_page if http else 16 << 20) // _BYTES_PER_FILE)

    def _hold(self, name: NormalizedName, page: ProjectPage | None) -> None:
        """Keep *page* for the run; the pages kept list at most half a full page's worth of
        files in all (each file costs memory, and a run may read hundreds of pages): the
        oldest are let go, and read again from the page cache (no request) if asked for."""
        with self._lock:
            self._pages[name] = page
            self._pages.move_to_end(name)
            self._let_go(keep=name)

    def _let_go(self, *, keep: NormalizedName | None = None, coming: int = 0) -> None:
        """Let the oldest pages go (not *keep*) until those held, plus *coming* files about to
        be parsed, list at most half a full page's worth.  Caller holds ``_lock``."""
        held = coming + sum(len(p.files) for p in self._pages.values() if p is not None)
        for old in list(self._pages):
            if held <= self.max_files // 2 or old == keep:
                break
            gone = self._pages.pop(old)
            held -= len(gone.files) if gone is not None else 0

    def fetch(self, name: NormalizedName) -> None:
        """Fetch (not parse) the page :meth:`page` will read first for *name*: the network
        part, which prefetch threads do in parallel.  Failures are left for :meth:`page` to
        meet again (the page store remembers them)."""
        if self.sources.no_index:
            return
        if is_torch_family(name):
            url = project_url(self.sources.torch_index, name)
        elif self.sources.index_urls:
            url = project_url(self.sources.index_urls[0], name)
        else:
            return
        try:
            self.pages.get(url)
        except WheelcacheError as exc:
            log.debug("prefetch of %s: %s", url, exc)

    def page(self, name: NormalizedName) -> ProjectPage | None:
        """The project's page from the index that serves it; None when it has none."""
        with self._lock:
            if name in self._pages:
                return self._pages[name]
        page = None
        if self.sources.no_index:
            pass
        elif is_torch_family(name):
            url = project_url(self.sources.torch_index, name)
            try:
                page = self._get_page(url, name)
            except IndexUnreachableError as exc:
                page = self._page_from_mirrors(name, exc)
            if page is None and self.sources.per_variant and not self.sources.find_links:
                self._check_variant_exists()
        else:
            for index in self.sources.index_urls:
                try:
                    page = self._get_page(project_url(index, name), name)
                except IndexUnreachableError as exc:
                    raise self._with_hint(exc, "check --index-url (or pip's index-url)") from exc
                if page is not None:
                    break
        page = self._with_links(name, page)
        self._hold(name, page)
        return page

    # -- find-links -----------------------------------------------------------------------
    def _links_page(self, url: str) -> tuple[DistFile, ...]:
        with self._lock:
            if url in self._links:
                return self._links[url]
        resp = self.pages.get(url, accept="text/html")
        if resp.status != 200:
            raise IndexPageError(url, f"the find-links page answered HTTP {resp.status}")
        try:
            files, rejected = self._parsed(
                resp,
                lambda body: parse_flat_listing(body, base_url=resp.url, max_files=self.max_files),
            )
        except PageParseError as exc:
            raise IndexPageError(url, f"cannot parse the find-links page: {exc}") from exc
        self._say_rejected(resp.url, rejected)
        with self._lock:
            self._links[url] = files
        return files

    def _with_links(self, name: NormalizedName, page: ProjectPage | None) -> ProjectPage | None:
        """*page* plus the find-links wheels of *name* (a page of its own if it had none)."""
        linked: dict[str, DistFile] = {}
        for url in self.sources.find_links:
            for f in self._links_page(url):
                if f.is_wheel and _wheel_project(f.filename) == name:
                    linked.setdefault(f.filename, f)
        if not linked:
            return page
        files = {f.filename: f for f in page.files} if page is not None else {}
        for filename, f in linked.items():
            files.setdefault(filename, f)  # the index's entry (with its hash) wins
        url = page.url if page is not None else self.sources.find_links[0]
        return ProjectPage(name, url, tuple(sorted(files.values(), key=lambda f: f.filename)))

    def _get_page(self, url: str, name: NormalizedName) -> ProjectPage | None:
        resp = self.pages.get(url)
        for attempt in (1, 2):
            if resp.status == 404:
                return None
            try:
                page = self._project_page(resp, name)
                self._say_rejected(url, page.rejected)
                return page
            except PageParseError as exc:
                if attempt == 2 or not resp.from_cache or self.pages.http is None:
                    raise IndexPageError(url, f"cannot parse the page: {exc}") from exc
                # The stored copy is damaged (a bad answer once): ask again, unconditionally.
                log.warning("cached page %s is unreadable (%s); fetching it again", url, exc)
                resp = self.pages.get(url, fresh=True)
        raise AssertionError("unreachable")

    def _project_page(self, resp: PageResponse, name: NormalizedName) -> ProjectPage:
        return self._parsed(
            resp,
            lambda body: parse_project_page(
                body,
                content_type=resp.content_type,
                base_url=resp.url,
                project=name,
                max_files=self.max_files,
            ),
        )

    def _parsed(self, resp: PageResponse, parse: Callable[[bytes], T]) -> T:
        """*parse* the page's body; a big page (on disk) is read and parsed by one thread at
        a time: parsing holds the GIL anyway, and eight big pages at once would each hold
        their body and its parse in memory."""
        if resp.path is None:
            return parse(resp.body)
        with self._big:
            try:
                size = resp.path.stat().st_size
                with self._lock:  # room for its files first: a big page's parse is a run's peak
                    self._let_go(coming=size // _BYTES_PER_FILE)
                body = resp.read()
            except OSError as exc:
                raise IndexPageError(resp.url, f"the stored page is gone ({exc})") from exc
            try:
                return parse(body)
            finally:
                del body
                _trim()

    def _say_rejected(self, url: str, rejected: tuple[tuple[str, str], ...]) -> None:
        """Name each listed file the parser refused (once per page and run)."""
        with self._lock:
            if not rejected or url in self._said:
                return
            self._said.add(url)
        shown = rejected[:_SHOWN]
        for name, why in shown:
            log.warning("%s: left out %s: %s", url, name, why)
        if len(rejected) > len(shown):
            log.warning(
                "%s: left out %d more listed files (-vv names them)",
                url,
                len(rejected) - len(shown),
            )
            for name, why in rejected[len(shown) :]:
                log.debug("%s: left out %s: %s", url, name, why)

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
                files, rejected = (
                    self._parsed(
                        resp,
                        lambda body: parse_flat_listing(
                            body, base_url=resp.url, max_files=self.max_files
                        ),
                    )
                    if resp.status == 200
                    else ((), ())
                )
                self._say_rejected(resp.url, rejected)
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
        todo = "use --mirror URL, or --torch-index URL of an index that carries these builds"
        raise self._with_hint(exc, todo) from exc

    def _with_hint(self, exc: IndexUnreachableError, todo: str) -> IndexUnreachableError:
        """*exc* with what to do instead, and ``--offline`` when the cache has the page."""
        if exc.hint:
            return exc
        if self.pages.http is not None and self.pages.has_stored(exc.url):
            todo += ", or --offline (the cache has this page)"
        return IndexUnreachableError(exc.url, exc.reason, todo)
