"""The lock a fetch writes: PEP 751 ``pylock.<variant>-<abi>-<platform>.toml`` for one target.

:func:`build_pylock` describes fetched wheels as a lock for one target (``environments`` and
``requires-python`` say which) and has :mod:`packaging.pylock` validate it; :func:`render_pylock`
writes it as TOML.  The standard library reads TOML but does not write it, and this document's
shape is small and fixed (tables, arrays of tables, inline tables of strings), so a writer of a
few lines beats a dependency.  Each wheel carries its ``url`` (where it came from) and its
``path`` relative to the lock, so pip and uv install it offline from the files beside the lock.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from packaging.markers import Marker
from packaging.utils import NormalizedName

from wheelcache.core.lockfile import LockedWheel, lock_filename
from wheelcache.core.target import Target
from wheelcache.errors import LockFileError

if TYPE_CHECKING:  # packaging.pylock (about 15 ms to import) is loaded when a lock is made
    from packaging.pylock import Pylock

__all__ = [
    "CREATED_BY",
    "build_pylock",
    "environment_marker",
    "lock_document",
    "parse_upload_time",
    "pylock_text",
    "render_pylock",
]

CREATED_BY = "wheelcache"
_UPLOAD_TIME = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(Z|z|[+-]\d{2}:\d{2})?$"
)
_HEADER = (
    "# Written by wheelcache for one target (PEP 751). Install from it offline with",
    "#   pip install --no-index -r <this file>        (pip 26.1 or newer)",
    "#   uv pip install --offline -r <this file>",
)
_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


# -- writing -----------------------------------------------------------------------------------
def parse_upload_time(text: str | None) -> datetime | None:
    """An index's upload time (ISO 8601, ``Z`` or an offset) as an aware datetime.

    Python 3.10's ``fromisoformat`` takes neither ``Z`` nor every fraction length, hence this.

    >>> parse_upload_time("2024-07-01T00:00:00.000000Z").isoformat()
    '2024-07-01T00:00:00+00:00'
    >>> parse_upload_time("2026-04-06 12:00:00.5+02:00").isoformat()
    '2026-04-06T12:00:00.500000+02:00'
    >>> parse_upload_time("yesterday") is None
    True
    """
    m = _UPLOAD_TIME.match((text or "").strip())
    if not m:
        return None
    y, mo, d, h, mi, s = (int(g) for g in m.groups()[:6])
    micro = int((m.group(7) or "0")[:6].ljust(6, "0"))
    zone = m.group(8)
    tz = timezone.utc
    if zone and zone not in ("Z", "z"):
        sign = 1 if zone[0] == "+" else -1
        tz = timezone(sign * timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6])))
    try:
        return datetime(y, mo, d, h, mi, s, micro, tzinfo=tz)
    except ValueError:
        return None


def environment_marker(target: Target) -> Marker:
    """The target as one marker: platform, machine, implementation and Python version.

    >>> from wheelcache.core.target import make_target
    >>> str(environment_marker(make_target(python="39", platform="win_amd64")))
    'sys_platform == "win32" and platform_machine == "AMD64" and implementation_name == "cpython" and python_version == "3.9"'
    """  # noqa: E501
    env = target.marker_environment
    keys = ("sys_platform", "platform_machine", "implementation_name", "python_version")
    return Marker(" and ".join(f"{k} == {json.dumps(env[k])}" for k in keys))


def _wheel(w: LockedWheel) -> dict[str, Any]:
    # Keys in packaging's order, so that this and render_pylock write the same text.
    entry: dict[str, Any] = {
        "name": w.filename,
        "upload-time": parse_upload_time(w.upload_time),
        "url": w.url,
        "path": w.path,
        "size": w.size,
        "hashes": {"sha256": w.sha256},
    }
    return {k: v for k, v in entry.items() if v is not None}


def lock_document(wheels: Sequence[LockedWheel], target: Target) -> dict[str, Any]:
    """The TOML document of a lock for *target* holding exactly *wheels* (not yet validated:
    :func:`build_pylock` does that).

    Wheels of one project become one package (an installer takes the best of its wheels);
    two versions of one project cannot both be meant for one target and are refused.
    """
    groups: dict[NormalizedName, list[LockedWheel]] = {}
    for w in sorted(wheels, key=lambda w: (w.project, w.filename)):
        group = groups.setdefault(w.project, [])
        if group and group[0].version != w.version:
            raise LockFileError(
                lock_filename(target),
                f"{w.project} {group[0].version} and {w.version} cannot both be locked for "
                f"{target.describe()}",
            )
        group.append(w)
    return {
        "lock-version": "1.0",
        "environments": [str(environment_marker(target))],
        "requires-python": f"=={target.python[0]}.{target.python[1]}.*",
        "created-by": CREATED_BY,
        "packages": [
            {"name": name, "version": g[0].version, "wheels": [_wheel(w) for w in g]}
            for name, g in groups.items()
        ],
        "tool": {"wheelcache": {"target": target.describe()}},
    }


def _validated(document: Mapping[str, Any], target: Target) -> Pylock:
    from packaging.pylock import Pylock, PylockValidationError

    try:
        return Pylock.from_dict(document)
    except PylockValidationError as exc:  # our own data: a bug, but say what
        raise LockFileError(lock_filename(target), f"the lock written is not valid: {exc}") from exc


def build_pylock(wheels: Sequence[LockedWheel], target: Target) -> Pylock:
    """A lock for *target* holding exactly *wheels*, validated by packaging."""
    return _validated(lock_document(wheels, target), target)


def pylock_text(wheels: Sequence[LockedWheel], target: Target) -> str:
    """:func:`build_pylock` as TOML text: the document is validated by packaging, then
    written as it is (one dict, not a dataclass copied back into one)."""
    document = lock_document(wheels, target)
    _validated(document, target)
    return _render(document)


def _string(value: str) -> str:
    # JSON's string escapes are TOML's basic-string escapes; TOML also wants DEL escaped.
    return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")


def _key(key: str) -> str:
    return key if _BARE_KEY.match(key) else _string(key)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, Sequence):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    return _string(str(value))  # Version, Marker, SpecifierSet


def _tables(value: Any) -> bool:
    return (
        isinstance(value, Sequence)
        and not isinstance(value, str)
        and bool(value)
        and all(isinstance(v, Mapping) for v in value)
    )


def _emit(lines: list[str], prefix: str, table: Mapping[str, Any]) -> None:
    for k, v in table.items():
        if not _tables(v):
            lines.append(f"{_key(k)} = {_value(v)}")
    for k, v in table.items():
        if _tables(v):
            name = f"{prefix}{_key(k)}"
            for item in v:
                lines += ["", f"[[{name}]]"]
                _emit(lines, name + ".", item)


def render_pylock(lock: Pylock) -> str:
    """The lock as TOML text, keys in the order packaging gives them.

    >>> from packaging.pylock import Package, PackageWheel, Pylock
    >>> from packaging.version import Version
    >>> lock = Pylock(lock_version=Version("1.0"), created_by="wheelcache", packages=[
    ...     Package(name="mpmath", version=Version("1.3.0"), wheels=[PackageWheel(
    ...         name="mpmath-1.3.0-py3-none-any.whl", path="mpmath-1.3.0-py3-none-any.whl",
    ...         hashes={"sha256": "0" * 64})])])
    >>> print(render_pylock(lock))  # doctest: +ELLIPSIS
    # Written by wheelcache ...
    lock-version = "1.0"
    created-by = "wheelcache"
    <BLANKLINE>
    [[packages]]
    name = "mpmath"
    version = "1.3.0"
    <BLANKLINE>
    [[packages.wheels]]
    name = "mpmath-1.3.0-py3-none-any.whl"
    path = "mpmath-1.3.0-py3-none-any.whl"
    hashes = { sha256 = "000...000" }
    <BLANKLINE>
    """
    return _render(lock.to_dict())


def _render(document: Mapping[str, Any]) -> str:
    lines = list(_HEADER)
    _emit(lines, "", document)
    return "\n".join(lines) + "\n"
