"""Writing into a folder that someone else may have prepared: a bundle stick, an index tree.

``export`` and ``index`` write into (and remove stale files from) folders that existed before
the run; a stick that comes back from elsewhere is the documented round trip.  A ``wheels/``
there that is a symbolic link would carry every write and every delete out of the folder.  So
before anything is written or deleted, the folder is walked with ``lstat`` (links are never
followed) and anything that is not a plain file or folder is refused; and each removal checks
again, on the path itself, that it is a plain file whose real folder lies inside the
destination.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

__all__ = ["first_unsafe", "inside", "remove_inside"]


def _kind(st: os.stat_result) -> str | None:
    """What is wrong with a directory entry, or None for a plain file or folder."""
    if stat.S_ISLNK(st.st_mode) or getattr(st, "st_file_attributes", 0) & 0x400:
        return "a symbolic link"
    if stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode):
        return None
    if stat.S_ISFIFO(st.st_mode):
        return "a FIFO"
    if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
        return "a device"
    return "not a plain file"


def first_unsafe(root: Path) -> tuple[Path, str] | None:
    """The first entry under *root* (itself excluded) that is not a plain file or folder,
    with what it is; None when there is none (or *root* does not exist)."""
    for dirpath, dirnames, filenames in os.walk(root):
        keep = []
        for name in sorted(dirnames + filenames):
            path = Path(dirpath, name)
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                continue
            why = _kind(st)
            if why is not None:
                return path, why
            if stat.S_ISDIR(st.st_mode):
                keep.append(name)
        dirnames[:] = keep
    return None


def inside(root: Path, path: Path) -> bool:
    """Whether *path*'s folder, resolved, is *root* (resolved) or below it."""
    real_root = os.path.realpath(root)
    real = os.path.realpath(path.parent)
    return real == real_root or real.startswith(real_root.rstrip(os.sep) + os.sep)


def remove_inside(root: Path, rel: str) -> bool:
    """Remove the plain file *rel* ("/"-separated, from a manifest) under *root*.

    Refuses (returns False) a path with ``..``, an absolute one, one whose folder resolves
    outside *root*, and anything but a plain file; True when a file was removed.  Empty
    folders left behind are removed too.
    """
    parts = rel.split("/")
    if not rel or rel.startswith("/") or any(p in ("", ".", "..") or "\\" in p for p in parts):
        return False
    path = root.joinpath(*parts)
    try:
        if not inside(root, path) or not stat.S_ISREG(os.lstat(path).st_mode):
            return False
        path.unlink()
    except OSError:
        return False
    parent = path.parent
    while parent != root and inside(root, parent):
        try:
            parent.rmdir()  # only when now empty
        except OSError:
            break
        parent = parent.parent
    return True
