"""What a value from outside must look like before anything stores it or builds a path from it.

Index pages, mirrors, bundle manifests and target files are written by others.  A digest
becomes a file name (partials, locks), a filename becomes a path (``wheels-v1/``, bundles) and
a tag becomes part of a requirements file's name, so each is checked *where it is parsed*, by
the one rule here, and refused otherwise:

* a sha256 is 64 hex digits (stored lower-case);
* a distribution filename is one plain path segment of safe characters on every OS;
* a wheel tag is dot-separated runs of letters, digits and ``_``.
"""

from __future__ import annotations

import re

from wheelcache.core.models import Sha256

__all__ = [
    "MAX_FILENAME",
    "is_sha256",
    "parse_sha256",
    "safe_filename",
    "safe_tag",
    "safe_text",
]

MAX_FILENAME = 255
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+!-]*")
_TAG = re.compile(r"[A-Za-z0-9_]+(?:\.[A-Za-z0-9_]+)*")
#: Names Windows reserves for devices, with any extension (``nul.tar.gz`` opens the device).
_WINDOWS_DEVICES = frozenset(
    ["con", "prn", "aux", "nul"] + [f"{d}{i}" for d in ("com", "lpt") for i in range(10)]
)


def is_sha256(value: object) -> bool:
    """Whether *value* is a sha256 hex digest (either case).

    >>> is_sha256("a" * 64), is_sha256("../" * 21 + "x"), is_sha256("A" * 64)
    (True, False, True)
    """
    return isinstance(value, str) and _HEX64.fullmatch(value) is not None


def parse_sha256(value: object, *, what: str = "sha256") -> Sha256:
    """The lower-case digest, or ``ValueError`` naming *what* and the value.

    >>> parse_sha256("AB" * 32) == "ab" * 32
    True
    >>> parse_sha256("../../outside/config")
    Traceback (most recent call last):
    ...
    ValueError: sha256 '../../outside/config' is not 64 hex digits
    """
    if not is_sha256(value):
        raise ValueError(f"{what} {_short(value)} is not 64 hex digits")
    assert isinstance(value, str)
    return Sha256(value.lower())


def safe_filename(name: str) -> str:
    """Return *name* if it is a plain file name safe on every OS, else raise ``ValueError``.

    One path segment: an ASCII letter or digit first, then letters, digits and ``._+!-``; no
    ``..``; no trailing dot; not a Windows device name; at most 255 characters.  That covers
    every wheel and sdist name the standards allow, and no separator, NUL, colon, backslash,
    percent sign or space.

    >>> safe_filename("torch-2.4.0+cu118-cp39-cp39-win_amd64.whl")
    'torch-2.4.0+cu118-cp39-cp39-win_amd64.whl'
    >>> safe_filename("../evil.whl")
    Traceback (most recent call last):
    ...
    ValueError: unsafe file name '../evil.whl'
    >>> safe_filename("nul.tar.gz")
    Traceback (most recent call last):
    ...
    ValueError: unsafe file name 'nul.tar.gz'
    """
    if (
        not isinstance(name, str)
        or len(name) > MAX_FILENAME
        or not _SAFE_NAME.fullmatch(name)
        or ".." in name
        or name.endswith(".")
        or name.split(".", 1)[0].lower() in _WINDOWS_DEVICES
    ):
        raise ValueError(f"unsafe file name {_short(name)}")
    return name


def safe_tag(value: object, *, what: str = "tag") -> str:
    """A wheel tag part (``cp39``, ``win_amd64``, ``py2.py3``), else ``ValueError``.

    >>> safe_tag("manylinux_2_28_x86_64")
    'manylinux_2_28_x86_64'
    >>> safe_tag("x/../../PWNED", what="abi")
    Traceback (most recent call last):
    ...
    ValueError: abi 'x/../../PWNED' is not a wheel tag
    """
    if not isinstance(value, str) or len(value) > 200 or not _TAG.fullmatch(value):
        raise ValueError(f"{what} {_short(value)} is not a wheel tag")
    return value


def safe_text(value: object, *, what: str, limit: int = 500) -> str:
    """One line of printable text of at most *limit* characters, else ``ValueError``.

    For free text from outside that is shown or written into text files (GPU names, marker
    values): a newline there would start a new line in a requirements file or a report.

    >>> safe_text("NVIDIA GeForce RTX 4090", what="GPU name")
    'NVIDIA GeForce RTX 4090'
    >>> safe_text("1.0\\n--find-links /elsewhere", what="version")
    Traceback (most recent call last):
    ...
    ValueError: version '1.0\\n--find-links /elsewhere' is not one line of printable text
    """
    if not isinstance(value, str) or len(value) > limit or not value.isprintable():
        raise ValueError(f"{what} {_short(value)} is not one line of printable text")
    return value


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
