"""Shared by the serve and static-index tests: a populated cache, real clients, a real nginx.

The cache is filled with :func:`tests.support.wheels.build_wheel` wheels ingested through
:meth:`Cache.ingest` (no fetch pipeline), so these tests only depend on the cache's contract.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.cachefill import add_wheel
from tests.support.wheels import build_wheel
from wheelcache.serve.publish import CacheView, Selection
from wheelcache.serve.server import AccessRecord, IndexServer
from wheelcache.store.cache import Cache

__all__ = [
    "DEMO",
    "Nginx",
    "Served",
    "add_wheel",
    "build_demo_cache",
    "free_port",
    "nginx_binary",
    "pip_install",
    "run_nginx",
    "serve",
    "uv_command",
    "uv_install",
]

# (name, version, requires_dist, requires_python, payload bytes)
DEMO: tuple[tuple[str, str, tuple[str, ...], str | None, int], ...] = (
    ("torch", "2.4.0+cu118", ("filelock", "typing-extensions>=4.8.0"), ">=3.8.0", 256 * 1024),
    ("torch", "2.3.1+cu118", ("filelock",), ">=3.8.0", 0),
    ("torchvision", "0.19.0+cu118", ("torch==2.4.0",), ">=3.8", 0),
    ("torchaudio", "2.4.0+cu118", ("torch==2.4.0",), None, 0),
    ("filelock", "3.13.1", (), ">=3.8", 0),
    # Newer, but for a Python that does not exist: installers must skip it by
    # data-requires-python / "requires-python" alone.
    ("filelock", "99.0", (), ">=3.99", 0),
    ("typing_extensions", "4.12.2", (), ">=3.8", 0),
    ("Jinja2", "3.1.4", ("MarkupSafe>=2.0",), ">=3.7", 0),
    ("MarkupSafe", "2.1.5", (), ">=3.7", 0),
)


def build_demo_cache(root: Path, build_dir: Path) -> Cache:
    cache = Cache(root)
    for name, version, requires, requires_python, payload in DEMO:
        wheel = build_wheel(
            build_dir,
            name,
            version,
            requires_dist=requires,
            requires_python=requires_python,
            payload_size=payload,
        )
        add_wheel(cache, wheel, name, version)
    return cache


@dataclass
class Served:
    server: IndexServer
    view: CacheView
    records: list[AccessRecord] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def index_url(self) -> str:
        return f"{self.server.url}/simple/"

    def paths(self) -> list[str]:
        return [r.path for r in list(self.records)]


@contextmanager
def serve(cache: Cache, selection: Selection | None = None) -> Iterator[Served]:
    """``wheelcache serve`` in a thread on 127.0.0.1, port 0; records every request."""
    view = CacheView(cache, selection)
    records: list[AccessRecord] = []
    server = IndexServer(("127.0.0.1", 0), view, on_request=records.append)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield Served(server, view, records)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _isolated_env(tmp: Path) -> dict[str, str]:
    """This machine's pip/uv configuration and proxies must not reach the client."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PIP_", "UV_"))
        and k.upper() not in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")
    }
    env.update(
        PIP_CONFIG_FILE=os.devnull,
        UV_NO_CONFIG="1",
        UV_PYTHON_DOWNLOADS="never",
        HOME=str(tmp / "home"),
        XDG_CONFIG_HOME=str(tmp / "home" / ".config"),
        XDG_CACHE_HOME=str(tmp / "home" / ".cache"),
    )
    return env


def _run(cmd: Sequence[str], tmp: Path) -> subprocess.CompletedProcess[str]:
    (tmp / "home").mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        list(cmd), env=_isolated_env(tmp), capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stdout}\n{proc.stderr}"
    return proc


def pip_install(index_url: str, target: Path, tmp: Path, *args: str) -> str:
    """``pip install --target`` from *index_url* only, isolated from this machine's config."""
    proc = _run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--index-url",
            index_url,
            "--target",
            str(target),
            "--no-cache-dir",
            "--disable-pip-version-check",
            "--no-input",
            *args,
        ],
        tmp,
    )
    return proc.stdout + proc.stderr


def uv_command() -> list[str]:
    """How to run uv here; fails (never skips) when it is missing: CI must install it."""
    probe = subprocess.run(
        [sys.executable, "-m", "uv", "--version"], capture_output=True, text=True, check=False
    )
    if probe.returncode == 0:
        return [sys.executable, "-m", "uv"]
    found = shutil.which("uv")
    assert found, "uv is not installed: `pip install uv` (CI installs it; this test needs it)"
    return [found]


def uv_install(index_url: str, target: Path, tmp: Path, *args: str) -> str:
    proc = _run(
        [
            *uv_command(),
            "pip",
            "install",
            "--target",
            str(target),
            "--index-url",
            index_url,
            "--no-cache",
            "--python",
            sys.executable,
            *args,
        ],
        tmp,
    )
    return proc.stdout + proc.stderr


def nginx_binary() -> str:
    found = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None
    )
    assert found, (
        "nginx is not installed: `apt-get install -y nginx-light` (or nginx); "
        "CI installs it and these tests need it"
    )
    return found


@dataclass
class Nginx:
    url: str
    access_log: Path
    error_log: Path

    def access_lines(self) -> list[str]:
        return self.access_log.read_text(encoding="utf-8").splitlines()


@contextmanager
def run_nginx(snippet: Path, workdir: Path) -> Iterator[Nginx]:
    """A real nginx (foreground, own prefix and logs) serving *snippet* on a free port."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    text = snippet.read_text(encoding="utf-8")
    assert "    listen 8080;\n" in text
    server_conf = workdir / "server.conf"
    server_conf.write_text(text.replace("listen 8080;", f"listen 127.0.0.1:{port};"))
    user = "user root;\n" if os.geteuid() == 0 else ""  # as root, workers would be nobody
    conf = workdir / "nginx.conf"
    conf.write_text(
        f"{user}worker_processes 1;\nerror_log {workdir}/error.log info;\n"
        "events { worker_connections 256; }\n"
        "http {\n"
        f"  access_log {workdir}/access.log;\n"
        f"  client_body_temp_path {workdir}/body;\n  proxy_temp_path {workdir}/proxy;\n"
        f"  fastcgi_temp_path {workdir}/fastcgi;\n  uwsgi_temp_path {workdir}/uwsgi;\n"
        f"  scgi_temp_path {workdir}/scgi;\n"
        f"  include {server_conf};\n"
        "}\n"
    )
    proc = subprocess.Popen(
        [
            nginx_binary(),
            "-c",
            str(conf),
            "-p",
            str(workdir),
            "-g",
            f"daemon off; pid {workdir}/nginx.pid;",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    out = proc.stdout.read().decode() if proc.stdout else ""
                    log = workdir / "error.log"
                    raise AssertionError(
                        f"nginx did not start: {out}\n{log.read_text() if log.exists() else ''}"
                    ) from None
                time.sleep(0.05)
        yield Nginx(f"http://127.0.0.1:{port}", workdir / "access.log", workdir / "error.log")
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout:
            proc.stdout.close()
