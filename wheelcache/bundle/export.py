"""Bundles for offline hosts: ``export`` to a folder (a USB stick), ``verify`` it, ``import`` it.

::

    DEST/wheels/<filename>, <filename>.metadata    the wheels under their real names
    DEST/simple/index.html, <project>/index.html…  a simple index with relative links
    DEST/requirements.txt                          every wheel pinned with --hash=sha256:
    DEST/pylock.<variant>-<abi>-<platform>.toml    the same as a PEP 751 lock (pip 26.1+, uv)
    DEST/install.bat, install.ps1, install.sh      pip alone: --no-index --find-links wheels
      (for wheels of several targets: requirements-<variant>-<abi>-<platform>.txt per target
      and no install scripts, see :mod:`wheelcache.bundle.texts`)
    DEST/verify.py                                 standard library only, Python 3.8+
    DEST/README.txt                                for the person at the other end
    DEST/manifest.json                             written last: every file's size and digests

Why it works this way:

* The person at the other end may have no wheelcache, an old Python and a FAT32 stick, so the
  checks run *before* anything is copied (free space; no file of 4 GiB or more on FAT32, which
  cannot hold one: :mod:`wheelcache.bundle.disk`), and ``verify.py``
  (:mod:`wheelcache.bundle.verify_script`) needs nothing but a Python 3.8.
* Every file is written to a temporary name, fsynced, renamed, then read back from the
  destination and checked: a stick that lies about writes is caught here, not at the install.
  An interrupted export leaves a marker that lists what that run had written before it and
  what it meant to write; the next run (even with another selection) treats all of it as its
  own, re-checks what is there, copies only what is missing or wrong and removes the rest, so
  no stray file of the interrupted run is left behind.  The manifest is written last, so a
  bundle with a manifest is complete.
* What goes in is chosen by :mod:`wheelcache.bundle.select` (offline, over the cache); the
  text files come from :mod:`wheelcache.bundle.texts`; ``verify.py`` is
  :mod:`wheelcache.bundle.verify_script` as it is.
* ``verify`` and ``import`` live in :mod:`wheelcache.bundle.importer`.
* The bundle's ``simple/`` pages are written by :func:`wheelcache.serve.static_index.
  write_static_index`, so they are the very pages ``wheelcache index`` would write.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import IO, Any

from blake3 import blake3
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

from wheelcache import __version__
from wheelcache.bundle import verify_script as bundle_verify
from wheelcache.bundle.disk import check_room, filesystem_type, free_bytes
from wheelcache.bundle.select import BundleSelection, target_of_description
from wheelcache.bundle.texts import (
    CHECK,
    PROBE,
    REQUIREMENTS,
    render_install_bat,
    render_install_ps1,
    render_install_sh,
    render_lock,
    render_readme,
    render_requirements,
    requirements_name,
)
from wheelcache.bundle.verify_script import INCOMPLETE_MARKER, MANIFEST, ManifestError
from wheelcache.core.layout import safe_filename
from wheelcache.errors import BundleError
from wheelcache.serve.publish import CacheView, Pin, Selection, Snapshot
from wheelcache.serve.static_index import write_static_index
from wheelcache.store.cache import Cache, describe_os_error, fsync_dir
from wheelcache.store.catalog import CatalogRow
from wheelcache.store.maintenance import file_digests
from wheelcache.store.safepath import first_unsafe, remove_inside

__all__ = ["ExportResult", "export_bundle", "write_hashed"]

log = logging.getLogger(__name__)

_TMP_SUFFIX = ".wctmp"
_EXECUTABLE = frozenset({"install.sh", "verify.py"})
_CHUNK = 1 << 20
Progress = Callable[[str, int, int], None]  # (relative path, bytes done, bytes total)


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
        out = {
            "path": self.rel,
            "size": self.size,
            "sha256": self.sha256,
            "blake3": self.blake3,
            "kind": self.kind,
        }
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
    requirement_files: tuple[str, ...] = (REQUIREMENTS,)
    install_scripts: bool = True  # False for wheels of several targets (see README.txt)
    lock_files: tuple[str, ...] = ()
    #: sha256 of manifest.json: the trust anchor carried apart from the stick (verify.py
    #: --expect); ``short_fingerprint`` gives the part people read out.
    fingerprint: str = ""


def _os_error(exc: OSError, where: Path | str) -> BundleError:
    if exc.errno == errno.ENOSPC:
        return BundleError(
            f"disk full while writing to {where}; free some space or use a bigger "
            "disk, then run the same export again (it finishes what is missing)"
        )
    return BundleError(describe_os_error(exc, where, "export to another folder"))


def _pages(cache: Cache, rows: Sequence[CatalogRow]) -> list[_Item]:
    """``simple/`` pages (by the static-index writer) and ``.metadata`` files for *rows*."""
    snap = Snapshot(0)
    if rows:
        pins = tuple(
            Pin(canonicalize_name(r.project), SpecifierSet(), frozenset({r.sha256}), r.filename)
            for r in rows
        )
        snap = CacheView(cache, Selection(pins=pins)).snapshot()
    lost = [r.filename for r in rows if r.filename not in snap.files]
    if lost:
        raise BundleError(
            f"cannot publish {', '.join(lost)} from the cache (blob missing or "
            "damaged, or two files of that name); run wheelcache verify"
        )
    items = []
    for filename, pf in sorted(snap.files.items()):
        md = pf.metadata
        if md is not None:
            data = md.data if md.data is not None else Path(str(md.path)).read_bytes()
            items.append(_data_item(f"wheels/{filename}.metadata", data, "metadata"))
    # Inside the cache (same filesystem, cleaned by gc), unless nothing may be written there.
    staging = Path(
        tempfile.mkdtemp(dir=None if cache.read_only else cache.layout.tmp, prefix="bundle-pages-")
    )
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


def _previous(dest: Path) -> set[str]:
    """Files a previous (maybe interrupted) export wrote; refuse a folder that is not ours.

    After an interruption that is what the interrupted run found from before it (its
    ``previous``) and everything it meant to write (its ``planned``; some of it is there), plus
    a manifest that may still be there; a re-run with another selection removes all of it that
    it does not write itself.
    """
    if not dest.exists():
        return set()
    if not dest.is_dir():
        raise BundleError(f"{dest} exists and is not a folder")
    found: set[str] = set()
    marker = dest / INCOMPLETE_MARKER
    if marker.exists():
        with contextlib.suppress(OSError, ValueError):
            data = json.loads(marker.read_bytes())
            if isinstance(data, dict):
                for key in ("previous", "planned"):
                    if isinstance(data.get(key), list):
                        found.update(str(p) for p in data[key])
    if (dest / MANIFEST).exists():
        try:
            found.update(
                e.path
                for e in bundle_verify.manifest_entries(bundle_verify.load_manifest(str(dest)))
            )
        except ManifestError as exc:
            if not marker.exists():
                raise BundleError(f"{dest}: {exc}; choose an empty folder") from exc
    elif not marker.exists() and any(not bundle_verify.is_ignored(p.name) for p in dest.iterdir()):
        raise BundleError(
            f"{dest} is not empty and is not a wheelcache bundle; choose an empty "
            "folder (or one a previous export wrote)"
        )
    return found


def _present(dest: Path, items: Sequence[_Item]) -> set[str]:
    """Items an earlier run left with the right size (checked again before they are kept)."""
    out = set()
    for i in items:
        with contextlib.suppress(OSError):
            if dest.joinpath(*i.rel.split("/")).stat().st_size == i.size:
                out.add(i.rel)
    return out


def write_hashed(
    tmp: Path,
    *,
    data: bytes | None = None,
    source: Path | None = None,
    stream: IO[bytes] | None = None,
    limit: int | None = None,
    on_chunk: Callable[[int], None] | None = None,
) -> tuple[str, str, int]:
    """Write *data*, a copy of *source* or what *stream* holds to *tmp*, fsynced; digests of
    the bytes read.  With *limit*, at most ``limit + 1`` bytes are read (a longer source shows
    as longer without being read to its end: a stick's file may be endless)."""
    sha, b3, done = hashlib.sha256(), blake3(), 0
    with open(tmp, "wb") as out:
        if data is not None:
            out.write(data)
            sha.update(data)
            b3.update(data)
            done = len(data)
        else:
            with contextlib.ExitStack() as stack:
                src = stream if stream is not None else stack.enter_context(open(str(source), "rb"))
                while True:
                    want = _CHUNK if limit is None else min(_CHUNK, limit + 1 - done)
                    buf = src.read(want) if want > 0 else b""
                    if not buf:
                        break
                    out.write(buf)
                    sha.update(buf)
                    b3.update(buf)
                    done += len(buf)
                    if on_chunk is not None:
                        on_chunk(done)
        out.flush()
        os.fsync(out.fileno())
        if sys.platform == "linux":  # read back from the device, not from memory
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
            raise BundleError(
                f"the cached {item.rel.rsplit('/', 1)[-1]} is damaged (sha256 "
                f"{got[0]}, expected {item.sha256}); run wheelcache verify, then "
                "fetch it again"
            )
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
        raise BundleError(
            f"{item.rel} reads back wrong from {dest} ({size} bytes, sha256 {sha}; "
            f"expected {item.size}, {item.sha256}): the disk may be failing; run "
            "the export again or use another disk"
        )
    return True


def _remove_stale(dest: Path, previous: Iterable[str], current: set[str]) -> int:
    """Remove what an earlier export wrote and this one does not: plain files inside *dest*
    only (a hand-edited manifest or marker must not make us delete anything else)."""
    return sum(remove_inside(dest, rel) for rel in sorted(set(previous) - current, reverse=True))


def _refuse_unsafe(dest: Path) -> None:
    """Before anything is written or deleted: *dest* holds plain files and folders only."""
    found = first_unsafe(dest)
    if found is not None:
        path, what = found
        raise BundleError(
            f"{path} is {what}; a bundle folder holds plain files and folders only (a link "
            "would carry the export out of it): remove it, or choose an empty folder; "
            "nothing was written"
        )


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
    dest = Path(os.path.realpath(dest.absolute()))  # a link the user named is followed, once
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
                raise BundleError(
                    f"the cached {r.filename} is missing or has the wrong size; "
                    "run wheelcache verify, then fetch it again"
                )
            # The target the selection was resolved for counts too (import records it).
            served = set(served_by.get(r.sha256, ())) | set(own_target)
            meta = {
                "project": r.project,
                "version": r.version,
                "url": r.url,
                "hash_origin": r.hash_origin,
                "targets": sorted(served),
            }
            items.append(
                _Item(
                    f"wheels/{safe_filename(r.filename)}",
                    r.size,
                    r.sha256,
                    r.blake3,
                    "wheel",
                    source=blob,
                    meta=tuple(meta.items()),
                )
            )
        items += _pages(cache, carried)
        items += _text_items(selection, carried, left_out)
        seen: dict[str, str] = {}
        for i in items:  # FAT, exFAT and NTFS ignore case
            if seen.setdefault(i.rel.lower(), i.rel) != i.rel:
                raise BundleError(f"{i.rel} and {seen[i.rel.lower()]} differ only in case")
        _refuse_unsafe(dest)
        previous = _previous(dest)
        fs = (fs_type or filesystem_type)(dest)
        check_room(
            dest,
            [(i.rel, i.size) for i in items],
            fs,
            free_space or free_bytes,
            present=_present(dest, items),
        )
        dest.mkdir(parents=True, exist_ok=True)
        marker = json.dumps(
            {"previous": sorted(previous), "planned": sorted(i.rel for i in items)}
        ).encode()
        (dest / INCOMPLETE_MARKER).write_bytes(marker)
        with contextlib.suppress(FileNotFoundError):
            (dest / MANIFEST).unlink()  # the bundle is incomplete from here until the end
        for stale in list(dest.rglob(f"*{_TMP_SUFFIX}")):
            stale.unlink()
        # Wheels first (the long part), then what refers to them, the manifest last.
        order = {"wheel": 0, "metadata": 1, "page": 2, "requirements": 3, "lock": 3, "text": 3}
        copied = sum(
            _place(dest, i, progress)
            for i in sorted(items, key=lambda i: (order.get(i.kind, 9), i.rel))
        )
        current = {i.rel for i in items}
        removed = _remove_stale(dest, previous, current)
        manifest = _manifest(selection, items, left_out, inventory_name)
        _place(dest, _data_item(MANIFEST, manifest, "manifest"), None)
        fingerprint = hashlib.sha256(manifest).hexdigest()
        (dest / INCOMPLETE_MARKER).unlink()
        fsync_dir(dest)
    except OSError as exc:
        raise _os_error(exc, getattr(exc, "filename", None) or dest) from exc
    cache.catalog.touch([r.sha256 for r in carried])
    log.info("bundle in %s: %d wheels, %d files copied", dest, len(carried), copied)
    reqs = tuple(sorted(i.rel for i in items if i.kind == "requirements"))
    locks = tuple(sorted(i.rel for i in items if i.kind == "lock"))
    return ExportResult(
        dest,
        len(carried),
        len(left_out),
        len(items),
        sum(i.size for i in items),
        copied,
        len(items) - copied,
        removed,
        fs,
        reqs,
        any(i.rel == "install.sh" for i in items),
        locks,
        fingerprint,
    )


def _manifest(
    sel: BundleSelection,
    items: Sequence[_Item],
    left_out: Sequence[CatalogRow],
    inventory: str | None,
) -> bytes:
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
        "delta": None
        if inventory is None and not left_out
        else {
            "inventory": inventory,
            "left_out": [
                {"filename": r.filename, "sha256": r.sha256, "size": r.size} for r in left_out
            ],
        },
        "files": [i.entry() for i in sorted(items, key=lambda i: i.rel)],
    }
    return (json.dumps(data, indent=1) + "\n").encode()


def _text_items(
    sel: BundleSelection, carried: Sequence[CatalogRow], left_out: Sequence[CatalogRow]
) -> list[_Item]:
    """Requirements, PEP 751 locks, install scripts, README.txt and verify.py.

    Wheels of several targets get one requirements file per target and no install scripts
    (a script cannot know which host it runs on); see :mod:`wheelcache.bundle.texts`.
    """
    verify = _package_file("wheelcache.bundle", "verify_script.py")
    scripts: list[_Item] = []
    rows = [*carried, *left_out]
    texts: dict[str, str] = {}
    reqs: dict[str, str] = {}
    locks: dict[str, str] = {}
    per_target: list[tuple[str, str]] = []
    unlisted = 0
    if sel.per_target:
        listed: set[str] = set()
        for description, shas in sel.per_target:
            name = requirements_name(description)
            wanted = set(shas)
            reqs[name] = render_requirements([r for r in rows if r.sha256 in wanted], name)
            target = target_of_description(description)
            if target is not None:
                locks.update([render_lock([r for r in rows if r.sha256 in wanted], target)])
            per_target.append((description, name))
            listed |= wanted
        unlisted = sum(r.sha256 not in listed for r in carried)
    else:
        py = f"{sel.target.python[0]}.{sel.target.python[1]}" if sel.target else None
        reqs[REQUIREMENTS] = render_requirements(rows)
        if sel.target is not None:
            locks.update([render_lock(rows, sel.target)])
        texts.update(
            {
                "install.sh": render_install_sh(py),
                "install.bat": render_install_bat(py),
                "install.ps1": render_install_ps1(py),
            }
        )
        scripts += [
            _data_item(CHECK, _package_file("wheelcache.bundle", "install_check.py"), "text"),
            _data_item(PROBE, _package_file("wheelcache.host", "probe_script.py"), "text"),
        ]
    texts["README.txt"] = render_readme(
        targets=sel.targets,
        requested=sel.requested,
        carried=carried,
        left_out=left_out,
        per_target=per_target,
        unlisted=unlisted,
        locks=sorted(locks),
    )
    items = [_data_item(k, v.encode(), "lock") for k, v in locks.items()]
    items += [_data_item(k, v.encode(), "requirements") for k, v in reqs.items()]
    items += [_data_item(k, v.encode(), "text") for k, v in texts.items()]
    return [*items, *scripts, _data_item("verify.py", verify, "text")]


def _package_file(package: str, name: str) -> bytes:
    """A standard-library script of wheelcache, copied into the bundle as it is."""
    return resources.files(package).joinpath(name).read_bytes()
