"""Tools for tests against hostile indexes, bundles and clients (issue 11).

* :class:`CraftedIndex` — a simple index on a real :class:`FileServer` whose pages say whatever
  the test writes into them (PEP 691 JSON or HTML), with wheels built by :mod:`wheels`.
* :func:`tree` — what is on disk under a folder (to assert that nothing outside the cache
  changed).
* :func:`run_wheelcache` — the real CLI in a subprocess, with its own peak RSS (``wait4``),
  its wall time and an address-space limit so that a runaway process dies instead of eating
  the machine.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.httpserver import JSON_TYPE, FileServer

__all__ = ["CraftedIndex", "Run", "run_wheelcache", "sha256_of", "start_wheelcache", "tree"]

#: Address space a child may take: far above what wheelcache needs (threads reserve virtual
#: memory), far below what would hurt the machine if a bound were missing.
CHILD_ADDRESS_SPACE = 4 << 30
MIB = 1 << 20


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class CraftedIndex:
    """Project pages with whatever entries a test wants, plus the files they point to."""

    def __init__(self, server: FileServer) -> None:
        self.server = server

    @property
    def url(self) -> str:
        return self.server.url + "/simple"

    def add_file(self, name: str, data: bytes | Path) -> str:
        """Serve a file at ``/files/<name>``; returns its URL."""
        return self.server.add(f"/files/{name}", data, "application/octet-stream")

    def json_page(self, project: str, files: Sequence[Mapping[str, Any]]) -> None:
        body = json.dumps(
            {"meta": {"api-version": "1.1"}, "name": project, "files": list(files)}
        ).encode()
        self.server.add(f"/simple/{project}/", body, JSON_TYPE)

    def html_page(self, project: str, anchors: Sequence[str]) -> None:
        body = (
            "<!DOCTYPE html><html><body>\n" + "\n".join(anchors) + "\n</body></html>\n"
        ).encode()
        self.server.add(f"/simple/{project}/", body, "text/html")

    def entry(self, filename: str, data: bytes, **extra: Any) -> dict[str, Any]:
        """A PEP 691 file entry for *data* served under *filename* (its real sha256)."""
        self.add_file(filename, data)
        return {
            "filename": filename,
            "url": f"/files/{filename}",
            "hashes": {"sha256": sha256_of(data)},
            **extra,
        }


def tree(root: Path, *, skip: Sequence[Path] = ()) -> dict[str, tuple[str, str]]:
    """Every entry under *root* (links not followed) → (kind, content digest or target)."""
    skipped = {os.path.realpath(p) for p in skip}
    out: dict[str, tuple[str, str]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if os.path.realpath(Path(dirpath, d)) not in skipped]
        for name in dirnames + filenames:
            p = Path(dirpath, name)
            rel = p.relative_to(root).as_posix()
            if p.is_symlink():
                out[rel] = ("link", os.readlink(p))
            elif p.is_dir():
                out[rel] = ("dir", "")
            elif p.is_file():
                out[rel] = ("file", sha256_of(p.read_bytes()))
            else:
                out[rel] = ("other", "")
    return out


@dataclass
class Run:
    """One finished subprocess: exit code, output, peak RSS in MiB, wall time in seconds."""

    returncode: int
    stdout: str
    stderr: str
    peak_mib: float
    seconds: float

    @property
    def lines(self) -> list[str]:
        """stderr's non-empty lines."""
        return [line for line in self.stderr.splitlines() if line.strip()]


#: The child limits its own address space, then runs the CLI (no preexec_fn: it is not safe
#: in a process with threads, and test servers run threads).
_BOOT = (
    "import resource, runpy, sys; "
    f"resource.setrlimit(resource.RLIMIT_AS, ({CHILD_ADDRESS_SPACE}, {CHILD_ADDRESS_SPACE})); "
    "sys.argv[0] = 'wheelcache'; runpy.run_module('wheelcache', run_name='__main__')"
)


def _env(extra: Mapping[str, str] | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WHEELCACHE_", "PIP_"))}
    env.update({"WHEELCACHE_CONFIG": os.devnull, "PYTHONUNBUFFERED": "1"})
    repo = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = repo + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra or {})
    return env


class Started:
    """A running ``wheelcache`` subprocess; :meth:`finish` reaps it with its own rusage."""

    def __init__(self, args: Sequence[str], cwd: Path, env: Mapping[str, str] | None) -> None:
        self._out = tempfile.TemporaryFile()
        self._err = tempfile.TemporaryFile()
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _BOOT, *args],
            cwd=cwd,
            env=_env(env),
            stdout=self._out,
            stderr=self._err,
        )

    def output(self) -> tuple[str, str]:
        """What the process wrote so far (stdout, stderr)."""
        texts = []
        for fh in (self._out, self._err):
            fh.seek(0)
            texts.append(fh.read().decode("utf-8", "replace"))
        return texts[0], texts[1]

    def signal(self, signum: int = signal.SIGTERM) -> None:
        self.proc.send_signal(signum)

    def finish(self, timeout: float) -> Run:
        """Wait up to *timeout* seconds (then kill it: the run counts as a hang)."""
        timer = threading.Timer(timeout, self.proc.kill)
        timer.start()
        try:
            _, status, usage = os.wait4(self.proc.pid, 0)
        finally:
            timer.cancel()
        self.proc.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.monotonic() - self.started
        out, err = self.output()
        self._out.close()
        self._err.close()
        return Run(self.proc.returncode, out, err, usage.ru_maxrss / 1024, seconds)


def start_wheelcache(*args: str, cwd: Path, env: Mapping[str, str] | None = None) -> Started:
    return Started(args, cwd, env)


def run_wheelcache(
    *args: str, cwd: Path, timeout: float = 120, env: Mapping[str, str] | None = None
) -> Run:
    """Run ``python -m wheelcache ARGS`` to its end (killed after *timeout* seconds)."""
    return Started(args, cwd, env).finish(timeout)


def metadata_bomb(dest: Path, name: str = "bomb", inflated: int = 1 << 30) -> Path:
    """A small, valid wheel whose METADATA inflates to *inflated* bytes (headers, then a long
    description of one repeated byte: deflate packs it about 1000 to 1)."""
    import zipfile

    dest.mkdir(parents=True, exist_ok=True)
    path = dest / f"{name}-1.0-py3-none-any.whl"
    head = f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n\n".encode()
    dist = f"{name}-1.0.dist-info"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(f"{name}/__init__.py", b"")
        info = zipfile.ZipInfo(f"{dist}/METADATA", (1980, 1, 1, 0, 0, 0))
        info.compress_type = zipfile.ZIP_DEFLATED
        with zf.open(info, "w", force_zip64=True) as fh:
            fh.write(head)
            block = b"A" * MIB
            left = inflated - len(head)
            while left > 0:
                fh.write(block[: min(MIB, left)])
                left -= MIB
        zf.writestr(
            f"{dist}/WHEEL", b"Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        )
        zf.writestr(f"{dist}/RECORD", b"")
    return path
