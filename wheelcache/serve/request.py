"""The parts of HTTP (RFC 9110/9112) and PEP 691 that ``wheelcache serve`` needs, as pure functions.

Kept apart from the socket code so each rule can be tested alone and so the request path stays
cheap: the standard library's ``http.server`` parses every header block with the ``email``
package, which cost about half of a page request's CPU time in our profile; these functions do
only what a read-only file server needs and refuse anything ambiguous (obsolete line folding,
whitespace before a colon, percent-encoded slashes or dots) instead of guessing.
"""

from __future__ import annotations

import email.utils
import functools
import re
from http import HTTPStatus
from typing import Literal
from urllib.parse import unquote

from wheelcache.core.render import HTML_CONTENT_TYPE, JSON_CONTENT_TYPE

__all__ = [
    "JSON_TYPES",
    "HTTPProblem",
    "etag_matches",
    "http_date",
    "negotiate",
    "representation",
    "parse_header_lines",
    "parse_http_date",
    "parse_range",
    "parse_request_line",
    "reason",
    "split_target",
]

JSON_TYPES = ("application/vnd.pypi.simple.v1+json", "application/vnd.pypi.simple.latest+json")
_OFFERS = {  # media type → (representation, preference on ties: text/html first)
    "text/html": ("html", 2),
    JSON_TYPES[0]: ("json", 1),
    JSON_TYPES[1]: ("json", 1),
    "application/vnd.pypi.simple.v1+html": ("v1html", 0),
    "application/vnd.pypi.simple.latest+html": ("v1html", 0),
}
_ESCAPE = re.compile(r"%[0-9A-Fa-f]{2}")
_RANGE = re.compile(r"\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*")
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_VERSION = re.compile(r"HTTP/(\d)\.(\d)")
_HUGE = 1 << 62  # "more than any file": what an over-long number in a Range means


class HTTPProblem(Exception):
    """A request we answer with an error status (and, for 4xx on the wire, by closing)."""

    def __init__(self, status: int, message: str = "") -> None:
        super().__init__(status, message)
        self.status = status
        self.message = message


def reason(status: int) -> str:
    """The reason phrase for *status* (``"OK"``, ``"Not Found"``…)."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def parse_request_line(line: bytes) -> tuple[str, str, tuple[int, int]]:
    """``GET /simple/ HTTP/1.1\\r\\n`` → ``("GET", "/simple/", (1, 1))``.

    >>> parse_request_line(b"GET /simple/ HTTP/1.1\\r\\n")
    ('GET', '/simple/', (1, 1))
    >>> parse_request_line(b"GET /simple/\\r\\n")
    Traceback (most recent call last):
    ...
    wheelcache.serve.request.HTTPProblem: (400, 'malformed request line')
    """
    words = line.decode("latin-1").rstrip("\r\n").split(" ")
    if len(words) != 3 or not _TOKEN.fullmatch(words[0]) or not words[1]:
        raise HTTPProblem(400, "malformed request line")
    m = _VERSION.fullmatch(words[2])
    if not m:
        raise HTTPProblem(400, "malformed HTTP version")
    version = (int(m.group(1)), int(m.group(2)))
    if version[0] != 1:
        raise HTTPProblem(505, "only HTTP/1.x is spoken here")
    return words[0], words[1], version


def parse_header_lines(lines: list[bytes]) -> dict[str, str]:
    """Header lines (without the blank line) → ``{lower-case name: value}``.

    Repeated fields are joined with ``", "`` (RFC 9110 5.3).

    >>> parse_header_lines([b"Accept: text/html\\r\\n", b"accept:  */* \\r\\n"])
    {'accept': 'text/html, */*'}
    """
    headers: dict[str, str] = {}
    for raw in lines:
        line = raw.decode("latin-1").rstrip("\r\n")
        name, sep, value = line.partition(":")
        if not sep or not _TOKEN.fullmatch(name):
            # also catches obsolete line folding and "Name : value" (RFC 9112 5.1, 5.2)
            raise HTTPProblem(400, "malformed header line")
        key, value = name.lower(), value.strip(" \t")
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return headers


def split_target(target: str) -> list[str]:
    """Split an origin-form request target into decoded path segments, refusing ambiguity.

    Each segment is percent-decoded on its own, so ``%2f`` cannot become a separator and
    ``%2e%2e`` cannot become a parent directory: both are errors, not 404s.

    >>> split_target("/simple/torch/?x=1")
    ['simple', 'torch', '']
    >>> split_target("/wheels/%2e%2e/x")
    Traceback (most recent call last):
    ...
    wheelcache.serve.request.HTTPProblem: (400, 'path segment not allowed')
    """
    if not target.startswith("/") or target.startswith("//"):
        raise HTTPProblem(400, "the request target must be an absolute path")
    path = target.split("?", 1)[0].split("#", 1)[0]
    out = []
    for raw in path[1:].split("/"):
        if "%" in raw and len(_ESCAPE.findall(raw)) != raw.count("%"):
            raise HTTPProblem(400, "bad percent-encoding")
        try:
            seg = unquote(raw, errors="strict")
        except UnicodeDecodeError:
            raise HTTPProblem(400, "path is not UTF-8") from None
        if seg in (".", "..") or any(c in seg for c in "/\\\x00") or not seg.isprintable():
            raise HTTPProblem(400, "path segment not allowed")
        out.append(seg)
    return out


@functools.lru_cache(maxsize=256)  # a LAN has few distinct clients; q-value parsing is not free
def negotiate(accept: str | None) -> str | None:
    """Pick ``"json"``, ``"v1html"`` or ``"html"`` for an Accept header; ``None`` means 406.

    The highest q wins, then the most specific match, then text/html (what browsers and old
    clients expect when they send ``*/*``).

    >>> negotiate("application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;"
    ...           " q=0.1, text/html; q=0.01")
    'json'
    >>> negotiate("*/*"), negotiate(None), negotiate("application/json")
    ('html', 'html', None)
    """
    if not accept or not accept.strip():
        return "html"
    ranges: list[tuple[str, float]] = []
    for part in accept.split(","):
        mtype, *params = (p.strip() for p in part.split(";"))
        q = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = max(0.0, min(1.0, float(value)))
                except ValueError:
                    q = 0.0
        if mtype:
            ranges.append((mtype.lower(), q))
    best: tuple[float, int, int] | None = None
    chosen: str | None = None
    for offer, (rep, pref) in _OFFERS.items():
        major = offer.split("/")[0]
        for mtype, q in ranges:
            spec = {offer: 2, f"{major}/*": 1, "*/*": 0}.get(mtype, -1)
            if spec < 0 or q <= 0:
                continue
            score = (q, spec, pref)
            if best is None or score > best:
                best, chosen = score, rep
    return chosen


#: The Content-Type each representation :func:`negotiate` picks is sent with.
CONTENT_TYPES = {
    "html": HTML_CONTENT_TYPE,
    "json": JSON_CONTENT_TYPE,
    "v1html": "application/vnd.pypi.simple.v1+html",
}


def representation(accept: str | None) -> tuple[str, str]:
    """The representation of a page an ``Accept`` header asks for, and its Content-Type;
    406 when the client accepts none of them.

    >>> representation("application/vnd.pypi.simple.v1+json")
    ('json', 'application/vnd.pypi.simple.v1+json')
    """
    rep = negotiate(accept)
    if rep is None:
        offered = ", ".join(["text/html", JSON_CONTENT_TYPE, CONTENT_TYPES["v1html"]])
        raise HTTPProblem(406, f"available: {offered}")
    return rep, CONTENT_TYPES[rep]


def parse_range(header: str, size: int) -> tuple[int, int] | Literal[False] | None:
    """One ``bytes=`` range → inclusive ``(start, end)``; ``None`` = ignore it; ``False`` = 416.

    Several ranges or a malformed header are ignored (RFC 9110 14.2 lets a server send the
    whole file), which is simpler and safer than multipart bodies no installer asks for.

    >>> parse_range("bytes=0-99", 1000), parse_range("bytes=-10", 1000)
    ((0, 99), (990, 999))
    >>> parse_range("bytes=990-", 1000), parse_range("bytes=990-5000", 1000)
    ((990, 999), (990, 999))
    >>> parse_range("bytes=1000-", 1000), parse_range("bytes=0-1,5-6", 1000)
    (False, None)
    >>> parse_range("bytes=" + "9" * 5000 + "-", 1000), parse_range("bytes=0-" + "9" * 5000, 10)
    (False, (0, 9))
    """
    m = _RANGE.fullmatch(header)
    if not m or not (m.group(1) or m.group(2)):
        return None
    first, last = m.groups()
    if not first:
        suffix = _number(last)
        if suffix == 0 or size == 0:
            return False
        return max(0, size - suffix), size - 1
    start = _number(first)
    if last and _number(last) < start:
        return None
    if start >= size:
        return False
    end = _number(last) if last else size - 1
    return start, min(end, size - 1)


def _number(digits: str) -> int:
    """A byte position; beyond any file's size the exact value does not matter (and Python
    refuses to convert more than 4300 digits).

    >>> _number("42"), _number("9" * 30) == _HUGE
    (42, True)
    """
    return int(digits) if len(digits) <= 18 else _HUGE


def etag_matches(header: str, etag: str) -> bool:
    """Weak comparison, as If-None-Match requires (``W/"x"`` matches ``"x"``).

    >>> etag_matches('"a", W/"b"', '"b"'), etag_matches('"a"', '"b"'), etag_matches("*", '"b"')
    (True, False, True)
    """
    if header.strip() == "*":
        return True
    return any(t.strip().removeprefix("W/") == etag for t in header.split(","))


def http_date(ts: float) -> str:
    """An IMF-fixdate (``Sun, 06 Nov 1994 08:49:37 GMT``) for a POSIX timestamp."""
    return email.utils.formatdate(int(ts), usegmt=True)


def parse_http_date(value: str) -> float | None:
    """A POSIX timestamp for an HTTP date, or ``None`` when it is not one."""
    try:
        return email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
