"""pip's requirements-file format: text in, entries out (no file is opened here).

A lab hands over its environment as a ``requirements.txt``; reading it the way pip does keeps
``wheelcache fetch -r FILE`` and ``pip install -r FILE`` in agreement.  What this module does,
in pip's order:

1. lines ending in ``\\`` are joined with the next (a comment line ends the joining);
2. comments go: a ``#`` at the start of a line or after whitespace, to the end of the line;
3. ``${NAME}`` (upper case, digits, ``_``) is replaced from the mapping the caller passes (pip
   reads the environment; the core never does);
4. a line that starts with ``-`` is options (``-r``, ``-c``, ``--index-url`` …); any other
   line is a requirement followed by its own options (``--hash=sha256:…``).

The result is a tuple of entries: :class:`ReqLine`, :class:`Include` (``-r``/``-c``, read by
the edge that read this file) and :class:`Option`.  :func:`collect` folds the entries of every
file into one :class:`RequirementSet`.  Anything wheelcache cannot do without a build (``-e``,
VCS URLs, source archives, ``--no-binary``) is refused here with the file and line, as is every
malformed or unknown line: a requirements file is input, and input is checked where it is read.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import (
    InvalidWheelFilename,
    NormalizedName,
    canonicalize_name,
    parse_wheel_filename,
)

from wheelcache.core.models import Sha256
from wheelcache.errors import RequirementsFileError

__all__ = [
    "Entry",
    "Include",
    "Location",
    "Option",
    "ReqLine",
    "RequirementSet",
    "collect",
    "parse_requirements_text",
]

_COMMENT = re.compile(r"(^|\s+)#.*$")
_ENV_VAR = re.compile(r"\$\{([A-Z0-9_]+)\}")
_HEX = re.compile(r"^[0-9a-f]+$")
_NAMED_URL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*\s*(\[[^\]]*\])?\s*@")
_HASH_LENGTHS = {"sha256": 64, "sha384": 96, "sha512": 128}
_VCS_PREFIXES = ("git+", "hg+", "svn+", "bzr+")
_ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar.bz2", ".tbz", ".tar.xz", ".txz", ".tar", ".zip")

#: Options a line of their own may carry: spelling -> (canonical long name, takes a value).
_FILE_OPTIONS: dict[str, tuple[str, bool]] = {
    "-r": ("--requirement", True),
    "--requirement": ("--requirement", True),
    "-c": ("--constraint", True),
    "--constraint": ("--constraint", True),
    "-e": ("--editable", True),
    "--editable": ("--editable", True),
    "-i": ("--index-url", True),
    "--index-url": ("--index-url", True),
    "--extra-index-url": ("--extra-index-url", True),
    "--no-index": ("--no-index", False),
    "-f": ("--find-links", True),
    "--find-links": ("--find-links", True),
    "--pre": ("--pre", False),
    "--require-hashes": ("--require-hashes", False),
    "--prefer-binary": ("--prefer-binary", False),
    "--only-binary": ("--only-binary", True),
    "--no-binary": ("--no-binary", True),
    "--trusted-host": ("--trusted-host", True),
    "--use-feature": ("--use-feature", True),
}
#: Options a requirement line may carry after the requirement.
_LINE_OPTIONS: dict[str, tuple[str, bool]] = {
    "--hash": ("--hash", True),
    "--config-settings": ("--config-settings", True),
    "--global-option": ("--global-option", True),
}
#: Options that change nothing for wheelcache (they are about installing or building); kept
#: so that the caller can say they were read and ignored.
IGNORED_OPTIONS = frozenset(
    {
        "--trusted-host",
        "--use-feature",
        "--prefer-binary",
        "--only-binary",
        "--config-settings",
        "--global-option",
    }
)
_NEEDS_BUILD = "would need a build; wheelcache fetches wheels only (build a wheel and publish it)"


@dataclass(frozen=True, slots=True)
class Location:
    """Where an entry was written: ``r.txt:3``."""

    source: str
    line: int

    def __str__(self) -> str:
        return f"{self.source}:{self.line}"


@dataclass(frozen=True, slots=True)
class ReqLine:
    """One requirement (or constraint) line.

    ``requirement.url`` is set for a direct wheel URL; ``hashes`` are the line's sha256 pins
    (``--hash``): the file fetched for this requirement must have one of them.
    """

    where: Location
    requirement: Requirement
    hashes: frozenset[Sha256] = frozenset()
    constraint: bool = False

    @property
    def name(self) -> NormalizedName:
        return canonicalize_name(self.requirement.name)


@dataclass(frozen=True, slots=True)
class Include:
    """``-r FILE`` or ``-c FILE``; the path is as written (relative to the including file)."""

    where: Location
    path: str
    constraint: bool


@dataclass(frozen=True, slots=True)
class Option:
    """A file-wide option: ``--index-url URL``, ``--pre`` … (``value`` None for flags)."""

    where: Location
    name: str
    value: str | None = None

    def __str__(self) -> str:
        return self.name if self.value is None else f"{self.name} {self.value}"


Entry = ReqLine | Include | Option


def _fail(where: Location, reason: str) -> RequirementsFileError:
    return RequirementsFileError(where.source, where.line, reason)


def _logical_lines(text: str) -> Iterator[tuple[int, str]]:
    """Join ``\\``-continued lines (pip's ``join_lines``); yields (first line number, text)."""
    start: int | None = None
    parts: list[str] = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.endswith("\\") or _COMMENT.match(line):
            if _COMMENT.match(line):
                line = " " + line  # so that the comment is removed below
            if parts:
                parts.append(line)
                assert start is not None
                yield start, "".join(parts)
                parts = []
            else:
                yield number, line
        else:
            if not parts:
                start = number
            parts.append(line.rstrip("\\"))
    if parts:
        assert start is not None
        yield start, "".join(parts)


def _expand(line: str, environ: Mapping[str, str]) -> str:
    """``${NAME}`` from *environ*; unknown names stay as written (as pip leaves them)."""
    return _ENV_VAR.sub(lambda m: environ.get(m.group(1), m.group(0)), line)


def _split_args_options(line: str) -> tuple[str, str]:
    """pip's ``break_args_options``: the requirement, then everything from the first token
    that starts with ``-``."""
    tokens = line.split(" ")
    args: list[str] = []
    for i, token in enumerate(tokens):
        if token.startswith("-"):
            return " ".join(args), " ".join(tokens[i:])
        args.append(token)
    return " ".join(args), ""


def _lookup(token: str, table: Mapping[str, tuple[str, bool]]) -> tuple[str, bool] | None:
    """An option by spelling; a long option may be abbreviated while it stays unambiguous
    (optparse, and so pip, accept ``--extra-index`` for ``--extra-index-url``)."""
    if token in table:
        return table[token]
    if token.startswith("--") and len(token) > 3:
        hits = {v for k, v in table.items() if k.startswith(token)}
        if len(hits) == 1:
            return hits.pop()
    return None


def _parse_options(
    text: str, table: Mapping[str, tuple[str, bool]], where: Location
) -> list[tuple[str, str | None]]:
    """Tokens of an option string → ``[(canonical name, value)]``; unknown ones are errors."""
    try:
        # shlex reads a character at a time; without quotes or escapes it is str.split (a
        # pip-compile file of 2000 pins with 8 hashes each: 4.4 s with shlex, 0.2 s without).
        tokens = shlex.split(text) if any(c in text for c in "'\"\\") else text.split()
    except ValueError as exc:
        raise _fail(where, f"cannot split the options {text!r}: {exc}") from exc
    out: list[tuple[str, str | None]] = []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        value: str | None = None
        if token.startswith("--") and "=" in token:
            token, value = token.split("=", 1)
        elif not token.startswith("--") and len(token) > 2 and token.startswith("-"):
            token, value = token[:2], token[2:]  # -rfile, -ihttps://…
        spec = _lookup(token, table) if token.startswith("-") else None
        if spec is None:
            if not token.startswith("-"):
                raise _fail(where, f"unexpected {token!r} after the options")
            known = ", ".join(sorted({v[0] for v in table.values()}))
            raise _fail(where, f"unknown option {token} (pip's requirements format knows {known})")
        name, takes_value = spec
        if takes_value and value is None:
            i += 1
            if i >= len(tokens):
                raise _fail(where, f"{name} needs a value")
            value = tokens[i]
        elif not takes_value and value is not None:
            raise _fail(where, f"{name} takes no value")
        out.append((name, value))
        i += 1
    return out


def _parse_hash(value: str, where: Location) -> tuple[str, str]:
    algo, sep, digest = value.partition(":")
    digest = digest.lower()
    want = _HASH_LENGTHS.get(algo.lower())
    if not sep or want is None or len(digest) != want or not _HEX.match(digest):
        raise _fail(
            where, f"--hash={value} is not ALGORITHM:HEX (sha256, sha384 or sha512 with its digest)"
        )
    return algo.lower(), digest


def _wheel_name(url: str) -> str | None:
    """The wheel filename an URL or path ends in, or None when it is not a wheel."""
    path = urlsplit(url).path if "://" in url else url
    name = unquote(path.replace("\\", "/").rsplit("/", 1)[-1])
    try:
        parse_wheel_filename(name)
    except (InvalidWheelFilename, ValueError):
        return None
    return name


def _looks_like_path(text: str) -> bool:
    return (
        text.startswith((".", "/", "~", "\\"))
        or re.match(r"^[A-Za-z]:[\\/]", text) is not None
        or text.lower().endswith((".whl", *_ARCHIVE_SUFFIXES))
    )


def _direct(text: str, where: Location) -> Requirement:
    """A line that is a bare URL or path: a wheel URL becomes ``name @ url``; the rest needs a
    build or is a local file, and is refused."""
    target, _, marker = text.partition("; ")  # pip: a URL's marker follows "; "
    target = target.strip()
    if target.startswith(_VCS_PREFIXES):
        raise _fail(where, f"{target} is a version-control URL: it {_NEEDS_BUILD}")
    if "://" not in target:
        if not _looks_like_path(target):
            raise _fail(where, f"not a requirement: {text!r}")
        raise _fail(
            where,
            f"{target} is a local path: wheelcache fetches from indexes (serve the folder with "
            "`python -m http.server` and give --find-links URL, or publish the wheel)",
        )
    name = _wheel_name(target)
    if name is None:
        raise _fail(where, f"{target} is not a wheel: it {_NEEDS_BUILD}")
    project = parse_wheel_filename(name)[0]
    spec = f"{project} @ {target}" + (f" ; {marker.strip()}" if marker.strip() else "")
    try:
        return Requirement(spec)
    except InvalidRequirement as exc:
        raise _fail(where, f"not a requirement: {text!r} ({str(exc).splitlines()[0]})") from exc


def _requirement(text: str, where: Location) -> Requirement:
    head = text.split(";", 1)[0].strip()
    if not _NAMED_URL.match(head) and (
        head.startswith(_VCS_PREFIXES) or "://" in head or _looks_like_path(head)
    ):
        return _direct(text, where)
    try:
        req = Requirement(text)
    except InvalidRequirement as exc:
        raise _fail(where, f"not a requirement: {text!r} ({str(exc).splitlines()[0]})") from exc
    if req.url is not None:
        if req.url.startswith(_VCS_PREFIXES):
            raise _fail(where, f"{req.url} is a version-control URL: it {_NEEDS_BUILD}")
        if urlsplit(req.url).scheme not in ("http", "https"):
            raise _fail(
                where,
                f"{req.url} is not an http(s) URL: wheelcache fetches from indexes and web servers",
            )
        if _wheel_name(req.url) is None:
            raise _fail(where, f"{req.url} is not a wheel: it {_NEEDS_BUILD}")
    return req


def _requirement_line(
    args: str, options: str, where: Location, constraint: bool
) -> tuple[ReqLine, list[Option]]:
    req = _requirement(args.strip(), where)
    hashes: dict[str, set[str]] = {}
    ignored: list[Option] = []
    for name, value in _parse_options(options, _LINE_OPTIONS, where):
        assert value is not None
        if name == "--hash":
            algo, digest = _parse_hash(value, where)
            hashes.setdefault(algo, set()).add(digest)
        else:
            ignored.append(Option(where, name, value))
    if hashes and "sha256" not in hashes:
        raise _fail(
            where,
            f"{req.name} is pinned by {', '.join(sorted(hashes))} only: wheelcache checks "
            "sha256 (what indexes publish); add its --hash=sha256:…",
        )
    if constraint:
        if req.extras:
            raise _fail(where, f"constraints cannot have extras ({req})")
        if req.url is not None:
            raise _fail(where, f"constraints cannot be URLs ({req})")
    sha = frozenset(Sha256(h) for h in hashes.get("sha256", ()))
    return ReqLine(where, req, sha, constraint), ignored


def _http_url(value: str) -> bool:
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def _option_line(line: str, where: Location, constraint: bool) -> list[Entry]:
    out: list[Entry] = []
    for name, value in _parse_options(line, _FILE_OPTIONS, where):
        if name in ("--requirement", "--constraint"):
            assert value is not None
            out.append(Include(where, value, constraint=name == "--constraint"))
        elif name == "--editable":
            raise _fail(where, f"-e {value}: an editable install {_NEEDS_BUILD}")
        elif name == "--no-binary" and value != ":none:":
            raise _fail(where, f"--no-binary {value} asks for source builds: it {_NEEDS_BUILD}")
        elif name in ("--index-url", "--extra-index-url") and not _http_url(value or ""):
            raise _fail(where, f"{name} {value} is not an http:// or https:// URL")
        else:
            out.append(Option(where, name, value))
    return out


def parse_requirements_text(
    text: str,
    *,
    source: str,
    constraint: bool = False,
    environ: Mapping[str, str] | None = None,
) -> tuple[Entry, ...]:
    """Parse one requirements (or, with *constraint*, constraints) file.

    >>> entries = parse_requirements_text(
    ...     "--extra-index-url https://idx.invalid/simple  # mirror\\n"
    ...     "numpy==2.0.2 \\\\\\n    --hash=sha256:" + "A" * 64 + "\\n"
    ...     "-r more.txt\\n",
    ...     source="r.txt")
    >>> [type(e).__name__ for e in entries]
    ['Option', 'ReqLine', 'Include']
    >>> str(entries[0]), str(entries[1].requirement), sorted(entries[1].hashes) == ["a" * 64]
    ('--extra-index-url https://idx.invalid/simple', 'numpy==2.0.2', True)
    >>> parse_requirements_text("numpy=>2\\n", source="r.txt")
    Traceback (most recent call last):
    ...
    wheelcache.errors.RequirementsFileError: r.txt:1: not a requirement: 'numpy=>2' (Expected ...)
    """
    env = environ or {}
    out: list[Entry] = []
    for number, raw in _logical_lines(text):
        line = _expand(_COMMENT.sub("", raw).strip(), env)
        if not line:
            continue
        where = Location(source, number)
        if line.startswith("-"):
            out += _option_line(line, where, constraint)
            continue
        args, options = _split_args_options(line)
        entry, ignored = _requirement_line(args, options, where, constraint)
        out.append(entry)
        out += ignored
    return tuple(out)


@dataclass(frozen=True, slots=True)
class RequirementSet:
    """Every file's entries folded into what a fetch needs.

    The index options follow pip: the last ``--index-url`` wins, ``--extra-index-url`` and
    ``--find-links`` add up in order, ``--no-index`` leaves only the find-links.
    """

    requirements: tuple[ReqLine, ...] = ()
    constraints: tuple[ReqLine, ...] = ()
    index_url: Option | None = None
    extra_index_urls: tuple[Option, ...] = ()
    find_links: tuple[Option, ...] = ()
    no_index: Option | None = None
    pre: bool = False
    require_hashes: bool = False
    ignored: tuple[Option, ...] = field(default=())

    @property
    def index_options(self) -> tuple[Option, ...]:
        """The options that change where files come from, in the order they apply."""
        first = tuple(o for o in (self.index_url, self.no_index) if o is not None)
        return first + self.extra_index_urls + self.find_links

    def reported(self) -> tuple[str, ...]:
        """The index options as the output reports them: ``r.txt:2: --index-url URL``."""
        return tuple(f"{o.where}: {o}" for o in self.index_options)

    @property
    def hash_checking(self) -> bool:
        """pip's hash-checking mode: ``--require-hashes``, or any line with a ``--hash``."""
        return self.require_hashes or any(r.hashes for r in self.requirements)


def collect(entries: Iterable[Entry]) -> RequirementSet:
    """Fold the entries of every file read (includes already followed) into one set.

    >>> rs = collect(parse_requirements_text(
    ...     "-i https://a.invalid/simple\\n--index-url https://b.invalid/simple\\n"
    ...     "--pre\\ntorch>=2\\n", source="r.txt"))
    >>> rs.index_url.value, rs.pre, [str(r.requirement) for r in rs.requirements]
    ('https://b.invalid/simple', True, ['torch>=2'])
    """
    reqs: list[ReqLine] = []
    cons: list[ReqLine] = []
    index_url: Option | None = None
    no_index: Option | None = None
    extra: list[Option] = []
    links: list[Option] = []
    ignored: list[Option] = []
    flags: set[str] = set()
    for e in entries:
        if isinstance(e, ReqLine):
            (cons if e.constraint else reqs).append(e)
        elif isinstance(e, Include):
            continue  # the edge followed it already
        elif e.name == "--index-url":
            index_url = e
        elif e.name == "--no-index":
            no_index = e
        elif e.name == "--extra-index-url":
            extra.append(e)
        elif e.name == "--find-links":
            links.append(e)
        elif e.name in ("--pre", "--require-hashes"):
            flags.add(e.name)
        else:
            ignored.append(e)
    return RequirementSet(
        tuple(reqs),
        tuple(cons),
        index_url,
        tuple(extra),
        tuple(links),
        no_index,
        "--pre" in flags,
        "--require-hashes" in flags,
        tuple(ignored),
    )
