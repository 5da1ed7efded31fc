"""Settings from the world outside the library: this machine, pip's configuration, our config file.

Only this module and :mod:`wheelcache.cli.main` read the environment.  Precedence is the usual one:
command-line option > ``WHEELCACHE_*`` environment variable > config file > default; click does
the first two and the config file arrives as click's ``default_map``.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

from wheelcache.errors import ConfigError, WheelcacheError

__all__ = [
    "DATA_TABLES",
    "config_default_map",
    "config_file_path",
    "default_cache_dir",
    "host_platform",
    "host_python",
    "read_config_file",
    "pip_index_urls",
]

log = logging.getLogger(__name__)

APP = "wheelcache"


def default_cache_dir() -> Path:
    import platformdirs  # (the imports of this module are made where they are needed: a
    # command given --cache-dir, --index-url and --platform loads none of them)

    return Path(platformdirs.user_cache_dir(APP, appauthor=False))


def config_file_path(environ: Mapping[str, str] = os.environ) -> Path:
    override = environ.get("WHEELCACHE_CONFIG")
    if override:
        return Path(override)
    import platformdirs

    return Path(platformdirs.user_config_dir(APP, appauthor=False)) / "config.toml"


def read_config_file(path: Path) -> dict[str, Any]:
    """The TOML document at *path*, ``{}`` when there is none; a file that cannot be read or
    parsed is one :class:`ConfigError` naming it."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path}: {exc}") from exc
    if not text.strip():  # an empty file (or WHEELCACHE_CONFIG=/dev/null): no settings
        return {}
    # Loaded only when there is a file to read (about 4 ms, most runs have none).
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path}: {exc}") from exc


#: Tables that are not a command's options (``[mirrors.NAME]``, read by ``--mirror NAME``).
DATA_TABLES = ("mirrors",)


def config_default_map(
    data: Mapping[str, Any], path: Path, options: Mapping[str, Mapping[str, str]]
) -> dict[str, dict[str, Any]]:
    """The config file as click's ``default_map``: ``{command: {parameter: value}}``.

    *options* maps each command to its keys — exactly its long option names as typed after
    ``--`` (``py``, ``platform``, ``cache-dir``) — and the click parameter each sets.  Top-level
    keys apply to every command that has the option, a ``[fetch]`` table to one command.  A key
    no command (or not that command) has is refused with the nearest valid key: a misspelt key
    silently ignored once fetched 2.9 GB of wheels for the wrong machine.

    >>> opts = {"fetch": {"py": "python", "jobs": "jobs"}, "ls": {"cache-dir": "cache_dir"}}
    >>> config_default_map({"fetch": {"py": "39"}, "cache-dir": "/c"}, Path("c.toml"), opts)
    {'fetch': {'python': '39'}, 'ls': {'cache_dir': '/c'}}
    >>> try:
    ...     config_default_map({"fetch": {"python": "39"}}, Path("c.toml"), opts)
    ... except ConfigError as exc:
    ...     print(exc)
    config file c.toml: unknown key "python" in [fetch]; did you mean "py"?
    """
    out: dict[str, dict[str, Any]] = {name: {} for name in options}
    everywhere = {key: param for keys in options.values() for key, param in keys.items()}
    for key, value in data.items():
        if key in DATA_TABLES:
            continue
        if isinstance(value, dict):
            if key not in options:
                raise ConfigError(_unknown(path, f"[{key}]", "", list(options), {}))
            for sub, sub_value in value.items():
                if sub not in options[key]:
                    raise ConfigError(_unknown(path, sub, f" in [{key}]", [], options[key]))
                out[key][options[key][sub]] = sub_value
            continue
        if key not in everywhere:
            raise ConfigError(_unknown(path, key, "", [], everywhere))
        for name, keys in options.items():
            if key in keys and keys[key] not in out[name]:  # a [command] table wins
                out[name][keys[key]] = value
    return out


def _unknown(path: Path, key: str, where: str, names: list[str], keys: Mapping[str, str]) -> str:
    """``unknown key "python" in [fetch]; did you mean "py"?`` (or the valid keys)."""
    import difflib

    valid = names or sorted(keys)
    by_param = {param: k for k, param in keys.items()}  # an internal name: python -> py
    nearest = by_param.get(key.replace("-", "_")) or next(
        iter(difflib.get_close_matches(key.strip("[]"), valid, n=1, cutoff=0.5)), None
    )
    what = "table" if key.startswith("[") else "key"
    hint = (
        f'did you mean "{nearest}"?'
        if nearest
        else f"valid {what}s: {', '.join(valid[:12])}{' …' if len(valid) > 12 else ''}"
    )
    shown = key if key.startswith("[") else f'"{key}"'
    return f"config file {path}: unknown {what} {shown}{where}; {hint}"


def _pip_config_files(environ: Mapping[str, str]) -> list[Path]:
    """pip's configuration files in pip's load order (global, user, site, PIP_CONFIG_FILE)."""
    env_file = environ.get("PIP_CONFIG_FILE")
    if env_file == os.devnull:
        return []  # pip's documented way to switch every config file off
    files: list[Path] = []
    if sys.platform == "win32":
        program_data = environ.get("PROGRAMDATA", r"C:\ProgramData")
        files.append(Path(program_data) / "pip" / "pip.ini")
        appdata = environ.get("APPDATA")
        if appdata:
            files.append(Path(appdata) / "pip" / "pip.ini")
        files.append(Path.home() / "pip" / "pip.ini")
        name = "pip.ini"
    else:
        xdg_dirs = environ.get("XDG_CONFIG_DIRS", "/etc/xdg").split(os.pathsep)
        files += [Path(d) / "pip" / "pip.conf" for d in xdg_dirs if d]
        files.append(Path("/etc/pip.conf"))
        if sys.platform == "darwin":
            files.append(Path.home() / "Library" / "Application Support" / "pip" / "pip.conf")
        files.append(Path.home() / ".pip" / "pip.conf")
        xdg_home = environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
        files.append(Path(xdg_home) / "pip" / "pip.conf")
        name = "pip.conf"
    files.append(Path(sys.prefix) / name)
    if env_file:
        files.append(Path(env_file))
    return files


def _pip_default_index() -> tuple[str, str] | None:
    """pip's built-in default index and where it was read: the installed pip, else — in an
    environment without pip, as uv makes them — the pip wheel that Python's ``ensurepip``
    carries, so the standard public index is never written down here."""
    try:
        from pip._internal.models.index import PyPI

        return str(PyPI.simple_url), "pip's default"
    except Exception:  # pip missing or its internals moved
        pass
    url = _bundled_pip_index()
    if url is None:
        return None
    return url, "the standard public index (no pip here: pip's default, read from ensurepip)"


def _bundled_pip_index() -> str | None:
    """``PyPI.simple_url`` from the pip wheel bundled with ``ensurepip``, without running it."""
    import ast
    import zipfile

    try:
        import ensurepip
    except ImportError:
        return None
    folders = [Path(ensurepip.__file__).parent / "_bundled"]
    folders.append(Path(str(getattr(ensurepip, "_WHEEL_PKG_DIR", None) or folders[0])))
    for wheel in sorted(p for d in folders if d.is_dir() for p in d.glob("pip-*.whl")):
        try:
            with zipfile.ZipFile(wheel) as zf:
                source = zf.read("pip/_internal/models/index.py").decode("utf-8")
        except (OSError, KeyError, UnicodeDecodeError, zipfile.BadZipFile):
            continue
        for node in ast.walk(ast.parse(source)):
            if (
                isinstance(node, ast.Assign)
                and any(isinstance(t, ast.Name) and t.id == "PyPI" for t in node.targets)
                and isinstance(node.value, ast.Call)
                and node.value.args
                and isinstance(node.value.args[0], ast.Constant)
                and isinstance(node.value.args[0].value, str)
            ):
                return urljoin(node.value.args[0].value, "simple")  # as PackageIndex does
    return None


def pip_index_urls(environ: Mapping[str, str] = os.environ) -> tuple[list[str], str]:
    """The index URLs pip on this machine would use, and where they came from.

    Reads ``index-url``/``extra-index-url`` from pip's config files (``[global]`` then
    ``[install]``), then ``PIP_INDEX_URL``/``PIP_EXTRA_INDEX_URL``.  Non-HTTP indexes
    (``file://``) are skipped: wheelcache fetches over HTTP.
    """
    index: str | None = None
    extra: list[str] = []
    origin, extra_origin = "pip's default", ""
    import configparser

    parser = configparser.RawConfigParser()
    for path in _pip_config_files(environ):
        try:
            parser.read(path, encoding="utf-8")
        except (OSError, configparser.Error) as exc:
            log.warning("ignoring unreadable pip config %s: %s", path, exc)
            continue
        for section in ("global", "install"):
            if parser.has_option(section, "index-url"):
                index, origin = parser.get(section, "index-url").strip(), f"pip config {path}"
            if parser.has_option(section, "extra-index-url"):
                extra = parser.get(section, "extra-index-url").split()
                extra_origin = f"pip config {path}"
    if environ.get("PIP_INDEX_URL"):
        index, origin = environ["PIP_INDEX_URL"].strip(), "PIP_INDEX_URL"
    if environ.get("PIP_EXTRA_INDEX_URL"):
        extra, extra_origin = environ["PIP_EXTRA_INDEX_URL"].split(), "PIP_EXTRA_INDEX_URL"
    if index is None:
        found = _pip_default_index()
        if found is not None:
            index, origin = found
    urls = [u for u in [index, *extra] if u]
    usable = [u for u in urls if u.startswith(("http://", "https://"))]
    for u in urls:
        if u not in usable:
            log.info("skipping non-HTTP index %s", u)
    if any(u in usable for u in extra):
        origin += f"; extra indexes from {extra_origin}"
    if not usable:
        raise WheelcacheError(
            "no HTTP package index is configured for pip on this machine; pass --index-url URL"
        )
    return usable, origin


def host_python() -> str:
    """This interpreter's exact version: ``--py`` without a micro release means ``X.Y.0``."""
    return "{}.{}.{}".format(*sys.version_info[:3])


def host_platform() -> tuple[str, str | None]:
    """This machine as ``(--platform tag, glibc version or None)``."""
    import platform

    machine = platform.machine().lower()
    if sys.platform == "win32":
        return {"arm64": "win_arm64", "x86": "win32", "i386": "win32"}.get(
            machine, "win_amd64"
        ), None
    if sys.platform == "darwin":
        major = int(platform.mac_ver()[0].split(".")[0] or 11)
        minor = 0 if major >= 11 else int(platform.mac_ver()[0].split(".")[1])
        arch = "arm64" if machine in ("arm64", "aarch64") else "x86_64"
        return f"macosx_{major}_{minor}_{arch}", None
    arch = {"amd64": "x86_64", "arm64": "aarch64"}.get(machine, machine)
    libc, version = platform.libc_ver()
    if libc == "glibc" and version:
        return f"linux_{arch}", ".".join(version.split(".")[:2])
    from wheelcache.host.probe_script import (
        musl_version,  # Alpine and friends: musllinux wheels only
    )

    musl = musl_version(sys.executable)
    if musl is not None:
        return f"musllinux_{musl[0]}_{musl[1]}_{arch}", None
    return f"linux_{arch}", None
