#!/usr/bin/env python3
"""Benchmark ``wheelcache serve --pull``: N machines install the trio behind one slow link.

The lab of issue 13: one gateway with a bad way out, N machines behind it.  The upstream is the
tests' PyTorch-style index on three 127.0.0.1 origins (``tests/support/torchindex.py``), with the
torch wheel this interpreter installs padded to ``--torch-size`` (default 64 MiB) and every byte
any origin sends going through one shared token bucket of ``--link`` bytes/s (default 16 MiB/s):
the gateway's link, which every machine shares when each one pulls for itself.

For each N in ``--clients`` (default 1, 8, 32), all N clients start at once, each
``uv pip install --target`` (or ``--client pip``) of torch, torchvision and torchaudio, cold:

* **direct** — each client asks the upstream indexes itself;
* **wheelcache** — each asks ``wheelcache serve --pull`` (a fresh cache), which asks upstream;
* **proxpi**, **devpi** — the same through those proxies, when ``--peers`` names them and pip
  can install them here (each in its own virtual environment under ``--peer-dir``); a peer
  that cannot be installed is reported as such, not assumed.

Printed per N and way: wall time until every client finished, clients that failed, bytes the
upstream sent (all origins, bodies only) and the server's peak memory (VmHWM, polled).

Usage: python scripts/bench_pull.py [--clients 1,8,32] [--link 16M] [--torch-size 64M]
       [--client uv|pip] [--peers proxpi,devpi] [--peer-dir DIR]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from http.server import BaseHTTPRequestHandler
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support import torchindex  # noqa: E402
from tests.support.httpserver import CHUNK, Fault, FileServer, RequestRecord  # noqa: E402

MiB = 1024 * 1024
PY = f"cp{sys.version_info[0]}{sys.version_info[1]}"
TRIO = ("torch==2.4.0", "torchvision", "torchaudio")


def parse_size(text: str) -> int:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([KMG]?)i?B?", text.strip(), re.I)
    if not m:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 16M)")
    return int(
        float(m.group(1)) * {"": 1, "K": 1024, "M": MiB, "G": 1024 * MiB}[m.group(2).upper()]
    )


# -- the upstream: three origins behind one link --------------------------------------------------
class Link:
    """A token bucket shared by every origin: the gateway's way out."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self._lock = threading.Lock()
        self._next = time.monotonic()

    def take(self, n: int) -> None:
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + n / self.rate
            wait = self._next - now
        if wait > 0:
            time.sleep(wait)


class LinkServer(FileServer):
    """The tests' file server with every body sent through the shared :class:`Link`."""

    link: Link | None = None
    sent = 0
    _sent_lock = threading.Lock()

    def _send_body(
        self,
        h: BaseHTTPRequestHandler,
        rec: RequestRecord,
        body: bytes | Path,
        start: int,
        length: int,
        flt: Fault | None,
    ) -> None:
        for chunk in self._chunks(body, start, length):
            for i in range(0, len(chunk), CHUNK // 4):
                piece = chunk[i : i + CHUNK // 4]
                if self.link is not None:
                    self.link.take(len(piece))
                h.wfile.write(piece)
                rec.body_bytes += len(piece)
                with LinkServer._sent_lock:
                    LinkServer.sent += len(piece)


def build(root: Path, torch_size: int) -> torchindex.Universe:
    """The test universe with the torch 2.4.0 wheel of this interpreter padded."""
    padded = f"torch-2.4.0+cu118-{PY}-{PY}-linux_x86_64.whl"
    torchindex.FILES = tuple(
        dataclasses.replace(f, payload_size=torch_size) if f.filename == padded else f
        for f in torchindex.FILES
    )
    return torchindex.build_universe(root)


@contextmanager
def upstream(uni: torchindex.Universe, rate: int) -> Iterator[torchindex.TorchIndex]:
    LinkServer.link = Link(rate)
    with torchindex.serve_universe(uni, LinkServer) as ti:
        yield ti


# -- processes ------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def clean_env(home: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PIP_", "UV_", "WHEELCACHE_", "PROXPI_"))
        and k.upper() not in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")
    }
    home.mkdir(parents=True, exist_ok=True)
    env.update(PIP_CONFIG_FILE=os.devnull, UV_NO_CONFIG="1", UV_PYTHON_DOWNLOADS="never")
    env.update(HOME=str(home), XDG_CACHE_HOME=str(home / ".cache"))
    return env


def hwm_kib(pid: int) -> int:
    """VmHWM of *pid* and its children (a server that forks workers)."""
    total = 0
    for p in [pid, *_children(pid)]:
        try:
            with open(f"/proc/{p}/status") as fh:
                total += next((int(x.split()[1]) for x in fh if x.startswith("VmHWM:")), 0)
        except OSError:
            pass
    return total


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as fh:
            return [int(x) for x in fh.read().split()]
    except OSError:
        return []


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    index: str  # what clients pass as --index-url
    extra: tuple[str, ...] = ()
    peak_kib: int = 0
    _stop: threading.Event = dataclasses.field(default_factory=threading.Event)

    def watch(self) -> None:
        def poll() -> None:
            while not self._stop.is_set() and self.proc.poll() is None:
                self.peak_kib = max(self.peak_kib, hwm_kib(self.proc.pid))
                self._stop.wait(0.05)

        threading.Thread(target=poll, daemon=True).start()

    def stop(self) -> None:
        self.peak_kib = max(self.peak_kib, hwm_kib(self.proc.pid))
        self._stop.set()
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


def wait_http(
    url: str, proc: subprocess.Popen[bytes], log: Path, accept: str = "text/html"
) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited: {log.read_text()[-2000:]}")
        try:
            req = urllib.request.Request(url, headers={"Accept": accept})
            with urllib.request.urlopen(req, timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"server did not answer {url}: {log.read_text()[-2000:]}")


# -- the ways --------------------------------------------------------------------------------
def start_wheelcache(ti: torchindex.TorchIndex, work: Path) -> Server:
    port, log = free_port(), work / "wheelcache.log"
    cmd = [sys.executable, "-m", "wheelcache", "serve", "--pull", "--port", str(port)]
    cmd += ["--torch-index", ti.torch_index_url, "--index-url", ti.deps_index_url]
    cmd += ["--cache-dir", str(work / "cache")]
    proc = subprocess.Popen(
        cmd, env=clean_env(work / "home"), stdout=log.open("wb"), stderr=subprocess.STDOUT
    )
    wait_http(f"http://127.0.0.1:{port}/", proc, log)
    return Server(proc, f"http://127.0.0.1:{port}/whl/cu118/")


def start_proxpi(ti: torchindex.TorchIndex, work: Path, venv: Path) -> Server:
    port, log = free_port(), work / "proxpi.log"
    env = clean_env(work / "home")
    env.update(
        PROXPI_INDEX_URL=ti.variant_url("cu118") + "/",
        PROXPI_EXTRA_INDEX_URLS=ti.deps_index_url + "/",
        PROXPI_CACHE_DIR=str(work / "cache"),
    )
    cmd = [str(venv / "bin" / "python"), "-m", "flask", "--app", "proxpi.server:app", "run"]
    cmd += ["--port", str(port), "--with-threads"]
    proc = subprocess.Popen(cmd, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    wait_http(f"http://127.0.0.1:{port}/index/", proc, log)
    return Server(proc, f"http://127.0.0.1:{port}/index/")


def start_devpi(ti: torchindex.TorchIndex, work: Path, venv: Path) -> Server:
    """devpi-server with two mirror indexes (the variant page, the deps index) and one index
    that has both as bases, as a lab would set it up."""
    port, log = free_port(), work / "devpi.log"
    env = clean_env(work / "home")
    server_dir = work / "devpi"
    bin_dir = venv / "bin"
    subprocess.run(
        [str(bin_dir / "devpi-init"), "--serverdir", str(server_dir), "--no-root-pypi"],
        env=env,
        check=True,
        capture_output=True,
    )
    cmd = [str(bin_dir / "devpi-server"), "--serverdir", str(server_dir), "--port", str(port)]
    proc = subprocess.Popen(cmd, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    wait_http(base + "/+api", proc, log, accept="application/json")
    login = _devpi_json(base + "/+login", {"user": "root", "password": ""}, None, "POST")
    result = login.get("result")  # {"result": {"password": <session token>, ...}, ...}
    token = result.get("password") if isinstance(result, dict) else None
    if not isinstance(token, str):
        raise SystemExit(f"devpi login: no session token in {login!r:.200}")
    auth = f"root:{token}"
    for name, url in (("torch", ti.variant_url("cu118") + "/"), ("deps", ti.deps_index_url + "/")):
        _devpi_json(f"{base}/root/{name}", {"type": "mirror", "mirror_url": url}, auth, "PUT")
    _devpi_json(
        f"{base}/root/lab",
        {"type": "stage", "bases": ["root/torch", "root/deps"], "volatile": True},
        auth,
        "PUT",
    )
    return Server(proc, f"{base}/root/lab/+simple/")


def _devpi_json(
    url: str, data: dict[str, object], auth: str | None, method: str
) -> dict[str, object]:
    import base64

    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if auth:
        headers["X-Devpi-Auth"] = base64.b64encode(auth.encode()).decode()
    req = urllib.request.Request(url, json.dumps(data).encode(), headers, method=method)
    with urllib.request.urlopen(req, timeout=30) as r:
        answer = json.loads(r.read() or b"{}")
    if not isinstance(answer, dict):
        raise SystemExit(f"devpi {method} {url}: not a JSON object: {answer!r:.200}")
    return answer


def ensure_peer(name: str, peer_dir: Path) -> Path | str:
    """A venv with the peer installed from the package index (pip, no local config), or why not."""
    venv = peer_dir / name
    package = {"proxpi": "proxpi", "devpi": "devpi-server"}[name]
    marker = venv / ".installed"
    if marker.exists():
        return venv
    env = clean_env(peer_dir / "home")
    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True)
        subprocess.run(
            [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", package],
            env=env,
            check=True,
            capture_output=True,
            timeout=600,
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        out = getattr(exc, "stderr", b"") or b""
        return f"cannot be installed here: {out.decode(errors='replace').strip().splitlines()[-1:]}"
    marker.touch()
    return venv


# -- clients --------------------------------------------------------------------------------
def client_cmd(kind: str, index: str, extra: tuple[str, ...], target: Path) -> list[str]:
    extras = [a for e in extra for a in ("--extra-index-url", e)]
    if kind == "pip":
        return [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--disable-pip-version-check",
            "--no-cache-dir",
            "--target",
            str(target),
            "--index-url",
            index,
            *extras,
            *TRIO,
        ]
    return [
        sys.executable,
        "-m",
        "uv",
        "pip",
        "install",
        "-q",
        "--no-cache",
        "--target",
        str(target),
        "--python",
        sys.executable,
        "--index-url",
        index,
        *extras,
        *TRIO,
    ]


def run_clients(
    kind: str, n: int, index: str, extra: tuple[str, ...], work: Path
) -> tuple[float, int, str]:
    """All *n* clients at once; (seconds until the last finished, failures, one failure's text)."""
    procs = []
    t0 = time.perf_counter()
    for i in range(n):
        home = work / f"client{i}"
        cmd = client_cmd(kind, index, extra, home / "site")
        procs.append(
            subprocess.Popen(
                cmd, env=clean_env(home), stdout=subprocess.PIPE, stderr=subprocess.STDOUT
            )
        )
    failures, text = 0, ""
    for p in procs:
        out, _ = p.communicate(timeout=3600)
        if p.returncode != 0:
            failures += 1
            text = out.decode(errors="replace")[-800:]
    return time.perf_counter() - t0, failures, text


@dataclass
class Row:
    way: str
    n: int
    seconds: float
    failures: int
    upstream_mib: float
    peak_mib: float | None
    note: str = ""


def measure(
    way: str,
    n: int,
    ti: torchindex.TorchIndex,
    work: Path,
    kind: str,
    start: Callable[[Path], Server] | None,
) -> Row:
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    before = LinkServer.sent
    server = None
    extra: tuple[str, ...]
    if start is None:
        index, extra = ti.variant_url("cu118") + "/", (ti.deps_index_url + "/",)
    else:
        server = start(work)
        server.watch()
        index, extra = server.index, server.extra
    try:
        seconds, failures, text = run_clients(kind, n, index, extra, work)
    finally:
        if server is not None:
            server.stop()
    sent = (LinkServer.sent - before) / MiB
    peak = server.peak_kib / 1024 if server is not None else None
    return Row(way, n, seconds, failures, sent, peak, text.strip().splitlines()[-1] if text else "")


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--clients", default="1,8,32")
    ap.add_argument("--link", type=parse_size, default="16M", help="upstream bytes/s, all origins")
    ap.add_argument("--torch-size", type=parse_size, default="64M")
    ap.add_argument("--client", choices=("uv", "pip"), default="uv")
    ap.add_argument("--peers", default="proxpi,devpi", help="comma list; empty for none")
    ap.add_argument(
        "--peer-dir", type=Path, default=Path(tempfile.gettempdir()) / "wheelcache-bench-peers"
    )
    ap.add_argument("--ways", default="direct,wheelcache,proxpi,devpi", help="comma list")
    ap.add_argument("--work", type=Path, default=None)
    args = ap.parse_args()
    counts = [int(x) for x in args.clients.split(",") if x]
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-pull-"))
    peers: dict[str, Path | str] = {
        name: ensure_peer(name, args.peer_dir) for name in args.peers.split(",") if name
    }
    python = sys.version.split()[0]
    print(
        f"{sys.platform}, {os.cpu_count()} cores, Python {python}, client {args.client}; ", end=""
    )
    print(
        f"link {args.link / MiB:.0f} MiB/s for all origins; torch {args.torch_size / MiB:.0f} MiB"
    )
    for name, where in peers.items():
        print(f"  {name}: {where if isinstance(where, str) else 'installed in ' + str(where)}")
    uni = build(work / "universe", args.torch_size)
    rows: list[Row] = []
    with upstream(uni, args.link) as ti:
        ways: list[tuple[str, Callable[[Path], Server] | None]] = [
            ("direct", None),
            ("wheelcache", lambda w: start_wheelcache(ti, w)),
        ]
        ways = [w for w in ways if w[0] in args.ways.split(",")]
        for name, where in peers.items():
            if isinstance(where, Path) and name in args.ways.split(","):
                starter = start_proxpi if name == "proxpi" else start_devpi
                ways.append((name, partial(starter, ti, venv=where)))
        for n in counts:
            for way, start in ways:
                try:
                    row = measure(way, n, ti, work / f"{way}-{n}", args.client, start)
                except (SystemExit, OSError, subprocess.SubprocessError) as exc:
                    row = Row(
                        way, n, float("nan"), n, float("nan"), None, f"did not run: {exc}"[:200]
                    )
                rows.append(row)
                peak = f"{row.peak_mib:.0f}" if row.peak_mib is not None else "-"
                print(
                    f"N={n:<3} {way:<11} {row.seconds:7.1f} s  failed {row.failures:<3} "
                    f"upstream {row.upstream_mib:8.1f} MiB  peak {peak:>4} MiB  {row.note}",
                    flush=True,
                )
    print("\n| clients | " + " | ".join(w for w, _ in ways) + " |")
    print("|---:|" + "---:|" * len(ways))
    for n in counts:
        cells = []
        for way, _ in ways:
            r = next(r for r in rows if r.n == n and r.way == way)
            cells.append(
                f"{r.seconds:.1f} s, {r.upstream_mib:.0f} MiB"
                + (f", {r.failures} failed" if r.failures else "")
            )
        print(f"| {n} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
