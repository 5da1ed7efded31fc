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
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.httpserver import JSON_TYPE, FileServer

__all__ = [
    "CraftedIndex",
    "RawServer",
    "Run",
    "metadata_bomb",
    "run_wheelcache",
    "send_forever",
    "self_signed",
    "send_head",
    "sha256_of",
    "start_wheelcache",
    "tree",
]

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
#: At exit it writes its own VmHWM (kB) to $WHEELCACHE_TEST_HWM: the peak of this program
#: alone — rusage's ru_maxrss keeps the forking pytest process's size across exec.  Both
#: exits write it: the ordinary one (atexit) and the quick one the console script takes
#: (``os._exit``, which skips atexit: see ``wheelcache.cli.main.run``).
_BOOT = (
    "import atexit, os, resource, runpy, sys; "
    f"resource.setrlimit(resource.RLIMIT_AS, ({CHILD_ADDRESS_SPACE}, {CHILD_ADDRESS_SPACE})); "
    "hwm = lambda: open(os.environ['WHEELCACHE_TEST_HWM'], 'w').write("
    "next(l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM'))); "
    "atexit.register(hwm); quick = os._exit; "
    "os._exit = lambda code: (hwm(), quick(code)); "
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
        fd, self._hwm = tempfile.mkstemp(suffix=".hwm")
        os.close(fd)
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _BOOT, *args],
            cwd=cwd,
            env={**_env(env), "WHEELCACHE_TEST_HWM": self._hwm},
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
        hwm = Path(self._hwm).read_text().strip()
        Path(self._hwm).unlink()
        # A run killed before its exit handlers (a hang) falls back to rusage, which can only
        # overstate the peak.
        peak_kib = int(hwm) if hwm.isdigit() else usage.ru_maxrss
        return Run(self.proc.returncode, out, err, peak_kib / 1024, seconds)


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


# -- a server that says exactly what a test scripts ------------------------------------------
@dataclass
class RawRequest:
    method: str
    path: str
    headers: dict[str, str]


Route = Callable[["RawRequest", "socket.socket"], None]


class RawServer:
    """HTTP on 127.0.0.1 written by hand, for answers no honest server gives: endless bodies,
    lying lengths, dropped connections, absurd ``Retry-After``, redirect loops.

    Each route is a function ``(request, socket)`` that writes whatever it likes; the
    connection is closed after it returns.  Bodies are written until the client goes away
    or ``max_seconds`` pass (so a test that fails cannot run forever).
    """

    max_seconds = 60.0

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.tls = tls
        self.routes: dict[str, Route] = {}
        self.requests: list[RawRequest] = []
        self._lock = threading.Lock()
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(128)
        scheme = "https" if tls is not None else "http"
        self.url = f"{scheme}://127.0.0.1:{self._sock.getsockname()[1]}"
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._closed = False

    def __enter__(self) -> RawServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._closed = True
        self._sock.close()

    def count(self, path: str) -> int:
        with self._lock:
            return sum(1 for r in self.requests if r.path == path)

    def _accept(self) -> None:
        while not self._closed:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            conn.settimeout(30)
            if self.tls is not None:
                conn = self.tls.wrap_socket(conn, server_side=True)
            head = b""
            while b"\r\n\r\n" not in head and len(head) < 65536:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                head += chunk
            lines = head.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
            method, target, _ = lines[0].split(" ", 2)
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            req = RawRequest(method, target.split("?", 1)[0], headers)
            with self._lock:
                self.requests.append(req)
            route = self.routes.get(req.path)
            if route is None:
                send_head(conn, "404 Not Found", {"Content-Length": "0"})
            else:
                route(req, conn)
        except OSError:
            pass
        finally:
            conn.close()


def self_signed(dest: Path) -> tuple[Path, ssl.SSLContext]:
    """A certificate for 127.0.0.1 (the file a client trusts) and a server context using it."""
    cert, key = dest / "cert.pem", dest / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    return cert, ctx


def send_head(conn: socket.socket, status: str, headers: Mapping[str, str]) -> None:
    # The server closes every connection after one answer: say so, or a client may reuse it.
    headers = {**headers, "Connection": "close"}
    lines = [f"HTTP/1.1 {status}", *(f"{k}: {v}" for k, v in headers.items()), "", ""]
    conn.sendall("\r\n".join(lines).encode("latin-1"))


def send_forever(conn: socket.socket, block: bytes = bytes(64 * 1024), chunked: bool = False):  # type: ignore[no-untyped-def]
    """Write *block* again and again until the client goes away (or a minute passes)."""
    frame = f"{len(block):x}\r\n".encode() + block + b"\r\n" if chunked else block
    started = time.monotonic()
    while time.monotonic() - started < RawServer.max_seconds:
        conn.sendall(frame)
