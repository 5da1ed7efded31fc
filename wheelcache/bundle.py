"""Bundles for offline hosts: ``export`` to a folder (a USB stick), ``verify`` it, ``import`` it.

::

    DEST/wheels/<filename>, <filename>.metadata    the wheels under their real names
    DEST/simple/index.html, <project>/index.html…  a simple index with relative links
    DEST/requirements.txt                          every wheel pinned with --hash=sha256:
    DEST/install.bat, install.ps1, install.sh      pip alone: --no-index --find-links wheels
    DEST/verify.py                                 standard library only, Python 3.8+
    DEST/README.txt                                for the person at the other end
    DEST/manifest.json                             written last: every file's size and digests

Why it works this way:

* The person at the other end may have no wheelcache, an old Python and a FAT32 stick, so the
  checks run *before* anything is copied (free space; no file of 4 GiB or more on FAT32, which
  cannot hold one), and ``verify.py`` (:mod:`wheelcache.bundle_verify`) needs nothing but a
  Python 3.8.
* Every file is written to a temporary name, fsynced, renamed, then read back from the
  destination and checked: a stick that lies about writes is caught here, not at the install.
  An interrupted export leaves a marker; running it again re-checks what is there and copies
  only what is missing or wrong.  The manifest is written last, so a bundle with a manifest
  is complete.
* What goes in is chosen by :mod:`wheelcache.bundle_select` (offline, over the cache); the
  text files come from :mod:`wheelcache.bundle_texts`; ``verify.py`` is
  :mod:`wheelcache.bundle_verify` as it is.
* ``verify`` and ``import`` live in :mod:`wheelcache.bundle_import`.
* The bundle's ``simple/`` pages are written by :func:`wheelcache.static_index.
  write_static_index`, so they are the very pages ``wheelcache index`` would write.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from blake3 import blake3
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

from . import __version__, bundle_verify
from .bundle_select import BundleSelection
from .bundle_texts import (
    human_size,
    render_install_bat,
    render_install_ps1,
    render_install_sh,
    render_readme,
    render_requirements,
)
from .bundle_verify import INCOMPLETE_MARKER, MANIFEST, ManifestError
from .cache import Cache, describe_os_error, fsync_dir
from .care import file_digests
from .catalog import CatalogRow
from .errors import BundleError
from .layout import safe_filename
from .publish import CacheView, Pin, Selection, Snapshot
from .static_index import write_static_index

__all__ = [
    "FAT32_MAX_FILE",
    "ExportResult",
    "export_bundle",
    "filesystem_type",
    "free_bytes",
    "fs_type_from_mount_output",
    "fs_type_from_mountinfo",
    "is_fat",
    "write_hashed",
]

log = logging.getLogger(__name__)

FAT32_MAX_FILE = 2**32 - 1  # FAT32 stores a file's size in 32 bits
_FAT = frozenset({"vfat", "msdos", "fat", "fat12", "fat16", "fat32", "umsdos"})
_TMP_SUFFIX = ".wctmp"
_EXECUTABLE = frozenset({"install.sh", "verify.py"})
_CHUNK = 1 << 20
Progress = Callable[[str, int, int], None]  # (relative path, bytes done, bytes total)


# -- the destination's filesystem -------------------------------------------------------------
def _unescape_mount(text: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), text)


def _under(mount: str, path: str) -> bool:
    return mount == "/" or path == mount or path.startswith(mount.rstrip("/") + "/")


def fs_type_from_mountinfo(text: str, path: str) -> str | None:
    """The filesystem type of *path* (absolute, resolved) from ``/proc/self/mountinfo``.

    >>> info = ("22 1 8:1 / / rw - ext4 /dev/sda1 rw\\n"
    ...         "40 22 8:17 / /media/USB\\\\040STICK rw - vfat /dev/sdb1 rw\\n")
    >>> fs_type_from_mountinfo(info, "/media/USB STICK/bundle"), fs_type_from_mountinfo(info, "/")
    ('vfat', 'ext4')
    """
    best, best_len = None, -1
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        fields, after = left.split(), right.split()
        if not sep or len(fields) < 5 or not after:
            continue
        mount = _unescape_mount(fields[4])
        if _under(mount, path) and len(mount) >= best_len:  # a later over-mount wins a tie
            best, best_len = after[0], len(mount)
    return best


def fs_type_from_mount_output(text: str, path: str) -> str | None:
    """The filesystem type of *path* from macOS/BSD ``mount`` output.

    >>> out = ("/dev/disk1s1 on / (apfs, local, journaled)\\n"
    ...        "/dev/disk4s1 on /Volumes/NO NAME (msdos, local, nodev, nosuid, noowners)\\n")
    >>> fs_type_from_mount_output(out, "/Volumes/NO NAME/b"), fs_type_from_mount_output(out, "/x")
    ('msdos', 'apfs')
    """
    best, best_len = None, -1
    for line in text.splitlines():
        m = re.match(r"^.*? on (.*) \(([^,)]+)", line)
        if m and _under(m.group(1), path) and len(m.group(1)) >= best_len:
            best, best_len = m.group(2).strip(), len(m.group(1))
    return best


def _existing(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path.parent != path:
        path = path.parent
    return path


def _windows_fs_type(path: str) -> str | None:
    if sys.platform != "win32":
        return None
    import ctypes

    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
    root = ctypes.create_unicode_buffer(1024)
    if not kernel32.GetVolumePathNameW(ctypes.c_wchar_p(path), root, 1024):
        return None
    name = ctypes.create_unicode_buffer(261)
    if not kernel32.GetVolumeInformationW(root, None, 0, None, None, None, name, 261):
        return None
    return str(name.value)


def filesystem_type(path: Path) -> str | None:
    """The type of the filesystem *path* is (or would be) on, or None when unknown."""
    where = _existing(path)
    try:
        if sys.platform == "win32":
            return _windows_fs_type(str(where))
        real = os.path.realpath(where)
        if sys.platform == "darwin":
            out = subprocess.run(["mount"], capture_output=True, text=True, timeout=10).stdout
            return fs_type_from_mount_output(out, real)
        return fs_type_from_mountinfo(Path("/proc/self/mountinfo").read_text(), real)
    except (OSError, ValueError, subprocess.SubprocessError):
        return None


def is_fat(fs_type: str | None) -> bool:
    """FAT12/16/32 as Linux, macOS and Windows name them (exFAT is fine)."""
    return fs_type is not None and fs_type.lower() in _FAT


def free_bytes(path: Path) -> int:
    """Free bytes on the filesystem *path* is (or would be) on."""
    return shutil.disk_usage(_existing(path)).free


# -- export -----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _Item:
    """One file to place in the bundle: from a cached blob or from bytes in memory."""

    rel: str
    size: int
    sha256: str
    blake3: str
    kind: str
    source: Path | None = None
    data: bytes | None = None
    meta: tuple[tuple[str, Any], ...] = ()

    def entry(self) -> dict[str, Any]:
        out = {"path": self.rel, "size": self.size, "sha256": self.sha256,
               "blake3": self.blake3, "kind": self.kind}  # fmt: skip
        out.update(self.meta)
        return out


def _data_item(rel: str, data: bytes, kind: str) -> _Item:
    sha, b3 = _digest_bytes(data)
    return _Item(rel, len(data), sha, b3, kind, data=data)


def _digest_bytes(data: bytes) -> tuple[str, str]:
    return hashlib.sha256(data).hexdigest(), str(blake3(data).hexdigest())


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export_bundle` did."""

    dest: Path
    wheels: int
    left_out: int
    files: int
    size: int
    copied: int
    reused: int
    removed: int
    fs_type: str | None


def _os_error(exc: OSError, where: Path | str) -> BundleError:
    if exc.errno == errno.ENOSPC:
        return BundleError(f"disk full while writing to {where}; free some space or use a bigger "
                           "disk, then run the same export again (it finishes what is missing)")
    return BundleError(describe_os_error(exc, where))


def _pages(cache: Cache, rows: Sequence[CatalogRow]) -> list[_Item]:
    """``simple/`` pages (by the static-index writer) and ``.metadata`` files for *rows*."""
    snap = Snapshot(0)
    if rows:
        pins = tuple(Pin(canonicalize_name(r.project), SpecifierSet(), frozenset({r.sha256}),
                         r.filename) for r in rows)  # fmt: skip
        snap = CacheView(cache, Selection(pins=pins)).snapshot()
    lost = [r.filename for r in rows if r.filename not in snap.files]
    if lost:
        raise BundleError(f"cannot publish {', '.join(lost)} from the cache (blob missing or "
                          "damaged, or two files of that name); run wheelcache verify")
    items = []
    for filename, pf in sorted(snap.files.items()):
        md = pf.metadata
        if md is not None:
            data = md.data if md.data is not None else Path(str(md.path)).read_bytes()
            items.append(_data_item(f"wheels/{filename}.metadata", data, "metadata"))
    staging = Path(tempfile.mkdtemp(dir=cache.layout.tmp, prefix="bundle-pages-"))
    try:
        tree = staging / "tree"
        write_static_index(Snapshot(snap.generation, {}, snap.projects), tree)
        for page in sorted((tree / "simple").rglob("*")):
            if page.is_file():
                rel = page.relative_to(tree).as_posix()
                items.append(_data_item(rel, page.read_bytes(), "page"))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return items


def _previous(dest: Path) -> list[str]:
    """Files a previous (maybe interrupted) export wrote; refuse a folder that is not ours."""
    if not dest.exists():
        return []
    if not dest.is_dir():
        raise BundleError(f"{dest} exists and is not a folder")
    marker = dest / INCOMPLETE_MARKER
    if marker.exists():
        with contextlib.suppress(OSError, ValueError):
            data = json.loads(marker.read_bytes())
            if isinstance(data, dict) and isinstance(data.get("previous"), list):
                return [str(p) for p in data["previous"]]
        return []
    if (dest / MANIFEST).exists():
        try:
            return [e.path for e in bundle_verify.manifest_entries(
                bundle_verify.load_manifest(str(dest)))]  # fmt: skip
        except ManifestError as exc:
            raise BundleError(f"{dest}: {exc}; choose an empty folder") from exc
    if any(not bundle_verify.is_ignored(p.name) for p in dest.iterdir()):
        raise BundleError(f"{dest} is not empty and is not a wheelcache bundle; choose an empty "
                          "folder (or one a previous export wrote)")
    return []


def _preflight(dest: Path, items: Sequence[_Item], fs: str | None,
               free: Callable[[Path], int]) -> None:  # fmt: skip
    """Refuse before copying anything: a FAT32 file-size limit, or too little free space."""
    if is_fat(fs):
        big = [i for i in items if i.size > FAT32_MAX_FILE]
        if big:
            i = max(big, key=lambda i: i.size)
            raise BundleError(
                f"{dest} is on a FAT32 filesystem ({fs}), which cannot hold a file of 4 GiB or "
                f"more, and {i.rel.rsplit('/', 1)[-1]} is {human_size(i.size)} ({i.size} bytes); "
                "reformat the stick as exFAT or NTFS (this erases it), or export to another disk"
            )
    need = 0
    for i in items:
        try:
            if dest.joinpath(*i.rel.split("/")).stat().st_size == i.size:
                continue  # there from an earlier run (checked again before it is kept)
        except OSError:
            pass
        need += i.size + 64 * 1024  # a cluster or two of filesystem overhead per file
    need += 4 << 20
    have = free(dest)
    if need > have:
        raise BundleError(f"not enough free space on {dest}: the bundle needs {human_size(need)}, "
                          f"{human_size(have)} are free; free some space, use a bigger disk, or "
                          "leave out what the other side has with --exclude-present")


def write_hashed(
    tmp: Path,
    *,
    data: bytes | None = None,
    source: Path | None = None,
    on_chunk: Callable[[int], None] | None = None,
) -> tuple[str, str, int]:
    """Write *data* or a copy of *source* to *tmp*, fsynced; digests of the bytes read."""
    sha, b3, done = hashlib.sha256(), blake3(), 0
    with open(tmp, "wb") as out:
        if data is not None:
            out.write(data)
            sha.update(data)
            b3.update(data)
            done = len(data)
        else:
            with open(str(source), "rb") as src:
                while buf := src.read(_CHUNK):
                    out.write(buf)
                    sha.update(buf)
                    b3.update(buf)
                    done += len(buf)
                    if on_chunk is not None:
                        on_chunk(done)
        out.flush()
        os.fsync(out.fileno())
        if hasattr(os, "posix_fadvise"):  # read back from the device, not from memory
            with contextlib.suppress(OSError):
                os.posix_fadvise(out.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
    return sha.hexdigest(), str(b3.hexdigest()), done


def _place(dest: Path, item: _Item, progress: Progress | None) -> bool:
    """Put *item* in place (temp name, fsync, rename) and read it back; False if it was there."""
    final = dest.joinpath(*item.rel.split("/"))
    with contextlib.suppress(OSError):
        if final.stat().st_size == item.size:
            sha, b3, _ = file_digests(final)
            if (sha, b3) == (item.sha256, item.blake3):
                return False
    if progress is not None:
        progress(item.rel, 0, item.size)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}{_TMP_SUFFIX}")
    try:
        tick = None if progress is None else (lambda n: progress(item.rel, n, item.size))
        got = write_hashed(tmp, data=item.data, source=item.source, on_chunk=tick)
        if got != (item.sha256, item.blake3, item.size):
            raise BundleError(f"the cached {item.rel.rsplit('/', 1)[-1]} is damaged (sha256 "
                              f"{got[0]}, expected {item.sha256}); run wheelcache verify, then "
                              "fetch it again")  # fmt: skip
        if item.rel in _EXECUTABLE and os.name != "nt":
            os.chmod(tmp, 0o755)  # ./install.sh works too (FAT ignores it; README says sh)
        os.replace(tmp, final)
        fsync_dir(final.parent)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    sha, b3, size = file_digests(final)
    if (sha, b3, size) != (item.sha256, item.blake3, item.size):
        with contextlib.suppress(OSError):
            final.unlink()
        raise BundleError(f"{item.rel} reads back wrong from {dest} ({size} bytes, sha256 {sha}; "
                          f"expected {item.size}, {item.sha256}): the disk may be failing; run "
                          "the export again or use another disk")  # fmt: skip
    return True


def _remove_stale(dest: Path, previous: Iterable[str], current: set[str]) -> int:
    removed = 0
    for rel in sorted(set(previous) - current, reverse=True):
        parts = rel.split("/")
        if not rel or rel.startswith("/") or any(p in ("", ".", "..") for p in parts):
            continue  # never follow a hand-edited path out of the bundle
        path = dest.joinpath(*parts)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            removed += 1
        with contextlib.suppress(OSError):
            path.parent.rmdir()  # only when now empty
    return removed


def export_bundle(
    cache: Cache,
    dest: Path,
    selection: BundleSelection,
    *,
    exclude: frozenset[str] = frozenset(),
    inventory_name: str | None = None,
    fs_type: Callable[[Path], str | None] | None = None,
    free_space: Callable[[Path], int] | None = None,
    progress: Progress | None = None,
) -> ExportResult:
    """Write *selection* as a bundle in *dest* (see the module docstring).

    *exclude* holds sha256 digests the other side already has (a delta bundle).  *fs_type*
    and *free_space* (default :func:`filesystem_type`, :func:`free_bytes`) are injectable so
    that tests can stand in a FAT32 stick or a full one.
    """
    dest = dest.absolute()
    carried = [r for r in selection.rows if r.sha256 not in exclude]
    left_out = [r for r in selection.rows if r.sha256 in exclude]
    served_by = cache.catalog.targets()
    own_target = selection.targets if selection.target is not None else ()
    try:
        items: list[_Item] = []
        for r in carried:
            blob = cache.blob_path(r.blake3)
            try:
                ok = blob.stat().st_size == r.size
            except OSError:
                ok = False
            if not ok:
                raise BundleError(f"the cached {r.filename} is missing or has the wrong size; "
                                  "run wheelcache verify, then fetch it again")  # fmt: skip
            # The target the selection was resolved for counts too (import records it).
            served = set(served_by.get(r.sha256, ())) | set(own_target)
            meta = {"project": r.project, "version": r.version, "url": r.url,
                    "hash_origin": r.hash_origin, "targets": sorted(served)}  # fmt: skip
            items.append(_Item(f"wheels/{safe_filename(r.filename)}", r.size, r.sha256, r.blake3,
                               "wheel", source=blob, meta=tuple(meta.items())))  # fmt: skip
        items += _pages(cache, carried)
        items += _text_items(selection, carried, left_out)
        seen: dict[str, str] = {}
        for i in items:  # FAT, exFAT and NTFS ignore case
            if seen.setdefault(i.rel.lower(), i.rel) != i.rel:
                raise BundleError(f"{i.rel} and {seen[i.rel.lower()]} differ only in case")
        previous = _previous(dest)
        fs = (fs_type or filesystem_type)(dest)
        _preflight(dest, items, fs, free_space or free_bytes)
        dest.mkdir(parents=True, exist_ok=True)
        marker = json.dumps({"previous": previous}).encode()
        (dest / INCOMPLETE_MARKER).write_bytes(marker)
        with contextlib.suppress(FileNotFoundError):
            (dest / MANIFEST).unlink()  # the bundle is incomplete from here until the end
        for stale in list(dest.rglob(f"*{_TMP_SUFFIX}")):
            stale.unlink()
        # Wheels first (the long part), then what refers to them, the manifest last.
        order = {"wheel": 0, "metadata": 1, "page": 2, "text": 3}
        copied = sum(_place(dest, i, progress)
                     for i in sorted(items, key=lambda i: (order.get(i.kind, 9), i.rel)))
        current = {i.rel for i in items}
        removed = _remove_stale(dest, previous, current)
        manifest = _manifest(selection, items, left_out, inventory_name)
        _place(dest, _data_item(MANIFEST, manifest, "manifest"), None)
        (dest / INCOMPLETE_MARKER).unlink()
        fsync_dir(dest)
    except OSError as exc:
        raise _os_error(exc, getattr(exc, "filename", None) or dest) from exc
    cache.catalog.touch([r.sha256 for r in carried])
    log.info("bundle in %s: %d wheels, %d files copied", dest, len(carried), copied)
    return ExportResult(dest, len(carried), len(left_out), len(items),
                        sum(i.size for i in items), copied, len(items) - copied, removed,
                        fs)  # fmt: skip


def _manifest(sel: BundleSelection, items: Sequence[_Item], left_out: Sequence[CatalogRow],
              inventory: str | None) -> bytes:  # fmt: skip
    target: dict[str, Any] | None = sel.target_document
    if target is None and sel.target is not None:
        target = sel.target.to_dict()
    data = {
        "format": bundle_verify.FORMAT,
        "version": bundle_verify.FORMAT_VERSION,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "created_by": f"wheelcache {__version__}",
        "target": target,
        "targets": list(sel.targets),
        "requested": list(sel.requested),
        "delta": None if inventory is None and not left_out else {
            "inventory": inventory,
            "left_out": [{"filename": r.filename, "sha256": r.sha256, "size": r.size}
                         for r in left_out],
        },  # fmt: skip
        "files": [i.entry() for i in sorted(items, key=lambda i: i.rel)],
    }
    return (json.dumps(data, indent=1) + "\n").encode()


def _text_items(sel: BundleSelection, carried: Sequence[CatalogRow],
                left_out: Sequence[CatalogRow]) -> list[_Item]:  # fmt: skip
    py = f"{sel.target.python[0]}.{sel.target.python[1]}" if sel.target else None
    verify = resources.files("wheelcache").joinpath("bundle_verify.py").read_bytes()
    texts = {
        "requirements.txt": render_requirements([*carried, *left_out]),
        "install.sh": render_install_sh(py),
        "install.bat": render_install_bat(py),
        "install.ps1": render_install_ps1(py),
        "README.txt": render_readme(targets=sel.targets, requested=sel.requested,
                                    carried=carried, left_out=left_out),  # fmt: skip
    }
    items = [_data_item(k, v.encode(), "text") for k, v in texts.items()]
    return [*items, _data_item("verify.py", verify, "text")]
