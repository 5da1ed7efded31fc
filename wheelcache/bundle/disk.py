"""What the destination disk of a bundle can hold: its filesystem, its free space, FAT32's limit.

A bundle usually goes to a USB stick, and sticks are often FAT32, which cannot hold a file of
4 GiB or more (its directory entry stores the size in 32 bits) and says so only when the copy
fails near the end.  So :func:`check_room` refuses before anything is copied: a file too big
for the filesystem, or too little free space.  The filesystem type comes from
``/proc/self/mountinfo`` (Linux), ``mount`` (macOS, BSD) or ``GetVolumeInformationW``
(Windows); the parsers are pure so that tests feed them captured text.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Collection, Sequence
from pathlib import Path

from wheelcache.core.units import human_size
from wheelcache.errors import BundleError

__all__ = [
    "CLUSTER",
    "FAT32_MAX_FILE",
    "check_room",
    "filesystem_type",
    "free_bytes",
    "fs_type_from_mount_output",
    "fs_type_from_mountinfo",
    "is_fat",
    "space_needed",
]

FAT32_MAX_FILE = 2**32 - 1  # FAT32 stores a file's size in 32 bits
#: Allocation unit assumed per file: exFAT and FAT32 sticks of 8–256 GB use 32 KiB at most,
#: NTFS and ext4 4 KiB; rounding each file up to 4 KiB plus a fixed reserve is close enough
#: for small bundles without refusing a stick that has the room.
CLUSTER = 4096
_RESERVE = 1 << 20  # directories, the manifest rewritten last, the filesystem's own books
_FAT = frozenset({"vfat", "msdos", "fat", "fat12", "fat16", "fat32", "umsdos"})


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


def space_needed(sizes: Sequence[int]) -> int:
    """Bytes to reserve for files of *sizes*: each rounded up to whole clusters, plus 1 MiB.

    >>> space_needed([51_000]) == 53_248 + 2**20
    True
    >>> space_needed([])
    1048576
    """
    return sum(-(-n // CLUSTER) * CLUSTER for n in sizes) + _RESERVE


def check_room(
    dest: Path,
    files: Sequence[tuple[str, int]],
    fs: str | None,
    free: Callable[[Path], int],
    *,
    present: Collection[str] = (),
) -> None:
    """Refuse before copying anything: a file FAT32 cannot hold, or too little free space.

    *files* are every file of the bundle as ``(relative path, size)``; those in *present* (an
    earlier run left them with the right size; they are checked again before they are kept)
    need no more space.
    """
    if is_fat(fs):
        big = [(rel, n) for rel, n in files if n > FAT32_MAX_FILE]
        if big:
            rel, n = max(big, key=lambda f: f[1])
            raise BundleError(
                f"{dest} is on a FAT32 filesystem ({fs}), which cannot hold a file of 4 GiB or "
                f"more, and {rel.rsplit('/', 1)[-1]} is {human_size(n)} ({n} bytes); "
                "reformat the stick as exFAT or NTFS (this erases it), or export to another disk"
            )
    need = space_needed([n for rel, n in files if rel not in present])
    have = free(dest)
    if need > have:
        raise BundleError(
            f"not enough free space on {dest}: the bundle needs {human_size(need)}, "
            f"{human_size(have)} are free; free some space, use a bigger disk, or "
            "leave out what the other side has with --exclude-present"
        )
