#!/usr/bin/env python3
"""Benchmark ``wheelcache serve`` against nginx serving ``wheelcache index`` of the same cache.

One run, on 127.0.0.1 only, bounded everywhere (fixed request counts, timeouts):

* a cache with one big wheel (``--size``, default 1 GiB, deterministic non-sparse bytes) and
  ``--projects`` small projects (default 200, two versions each);
* the same cache exported with ``write_static_index`` and served by nginx (the snippet that
  ``wheelcache index`` writes, ``worker_processes auto``);
* download throughput with curl: 1 client (median of 5), 8 and 32 concurrent clients
  (aggregate);
* index-page latency: 32 keep-alive connections from one asyncio client, each asking for
  random project pages with pip's Accept header (PEP 691 JSON); p50, p99 and requests/s;
* server CPU seconds per GiB sent (user + system, from /proc) during the downloads;
* peak memory: VmHWM of the server process (nginx: master plus workers).

``--peer-cmd NAME=COMMAND`` adds any other server of the static tree (``{tree}`` and ``{port}``
are substituted), which is how alternatives were compared before choosing the server library.

Usage: python scripts/bench_serve.py [--size 1G] [--projects 200] [--requests 300]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import random
import re
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from blake3 import blake3

from wheelcache.core.models import Blake3, Sha256
from wheelcache.serve.publish import CacheView
from wheelcache.serve.static_index import SNIPPET_NAME, write_static_index
from wheelcache.store.cache import Cache

PIP_ACCEPT = (
    "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; q=0.1, "
    "text/html; q=0.01"
)
MiB = 1024 * 1024
GiB = 1024 * MiB


def parse_size(text: str) -> int:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([KMG]?)i?B?", text.strip(), re.I)
    if not m:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 1G, 256M)")
    scale = {"": 1, "K": 1024, "M": MiB, "G": GiB}[m.group(2).upper()]
    return int(float(m.group(1)) * scale)


# -- building the cache ------------------------------------------------------------------------
def _dist_info(name: str, version: str, record: list[str]) -> list[tuple[str, bytes]]:
    di = f"{name}-{version}.dist-info"
    meta = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\nRequires-Python: >=3.8\n"
    wheel = "Wheel-Version: 1.0\nGenerator: bench\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    files = [(f"{di}/METADATA", meta.encode()), (f"{di}/WHEEL", wheel.encode())]
    lines = record + [f"{arc},," for arc, _ in files] + [f"{di}/RECORD,,"]
    return files + [(f"{di}/RECORD", ("\n".join(lines) + "\n").encode())]


def _zinfo(name: str, method: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
    info.compress_type = method
    return info


def write_big_wheel(path: Path, size: int) -> None:
    """A valid wheel of about *size* bytes: one stored member of deterministic, dense bytes."""
    block = bytearray(random.Random(1234).randbytes(MiB))
    with zipfile.ZipFile(path, "w") as zf:
        with zf.open(_zinfo("bigpkg/blob.bin", zipfile.ZIP_STORED), "w", force_zip64=True) as fh:
            left, n = max(size - 4096, 0), 0
            while left > 0:
                block[:8] = n.to_bytes(8, "little")  # no two blocks alike, nothing sparse
                fh.write(block[: min(left, MiB)])
                left -= min(left, MiB)
                n += 1
        for arc, data in _dist_info("bigpkg", "1.0", []):
            zf.writestr(_zinfo(arc, zipfile.ZIP_DEFLATED), data)


def write_small_wheel(path: Path, name: str, version: str) -> None:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(_zinfo(f"{name}/__init__.py", zipfile.ZIP_DEFLATED), b"")
        for arc, data in _dist_info(name, version, []):
            zf.writestr(_zinfo(arc, zipfile.ZIP_DEFLATED), data)


def ingest(cache: Cache, tmp: Path, filename: str, project: str, version: str) -> None:
    sha, b3, size = hashlib.sha256(), blake3(max_threads=blake3.AUTO), 0
    with open(tmp, "rb") as fh:
        while chunk := fh.read(8 * MiB):
            sha.update(chunk)
            b3.update(chunk)
            size += len(chunk)
    cache.ingest(
        tmp,
        sha256=Sha256(sha.hexdigest()),
        blake3=Blake3(b3.hexdigest()),
        size=size,
        filename=filename,
        project=project,
        version=version,
        url=f"http://origin.invalid/{filename}",
        hash_origin="index",
    )


def build(work: Path, size: int, projects: int) -> tuple[Cache, Path, str, list[str]]:
    cache = Cache(work / "cache")
    big = "bigpkg-1.0-py3-none-any.whl"
    tmp = cache.temp_path()
    write_big_wheel(tmp, size)
    ingest(cache, tmp, big, "bigpkg", "1.0")
    names = [f"proj{i:03d}" for i in range(projects)]
    for name in names:
        for version in ("1.0", "1.1"):
            tmp = cache.temp_path()
            write_small_wheel(tmp, name, version)
            ingest(cache, tmp, f"{name}-{version}-py3-none-any.whl", name, version)
    tree = work / "tree"
    write_static_index(CacheView(cache).snapshot(), tree)
    return cache, tree, big, names


# -- servers -----------------------------------------------------------------------------------
@dataclass
class Server:
    name: str
    url: str
    pids: list[int] = field(default_factory=list)

    def cpu_seconds(self) -> float:
        """User + system CPU time used so far by the server's processes."""
        total = 0
        for pid in self.pids + [c for p in self.pids for c in _children(p)]:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
        return total / os.sysconf("SC_CLK_TCK")

    def peak_rss(self) -> int:
        """Sum of VmHWM (peak resident set) over the server's processes, in bytes."""
        total = 0
        for pid in self.pids + [c for p in self.pids for c in _children(p)]:
            try:
                text = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            m = re.search(r"^VmHWM:\s+(\d+) kB", text, re.M)
            total += int(m.group(1)) * 1024 if m else 0
        return total


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(x) for x in text.split()]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"{what} did not start listening on {port}")


@contextmanager
def _process(
    cmd: list[str], log: Path, new_session: bool = False
) -> Iterator[subprocess.Popen[bytes]]:
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=new_session
        )
    try:
        yield proc
    finally:
        proc.send_signal(signal.SIGINT if cmd[0] == sys.executable else signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def run_wheelcache(cache: Cache, work: Path) -> Iterator[Server]:
    port = free_port()
    cmd = [
        sys.executable,
        "-c",
        "from wheelcache.cli.main import main; main()",
        "serve",
        "--port",
        str(port),
        "--cache-dir",
        str(cache.root),
    ]
    with _process(cmd, work / "wheelcache-serve.log") as proc:
        _wait_port(port, proc, "wheelcache serve")
        yield Server("wheelcache", f"http://127.0.0.1:{port}", [proc.pid])


@contextmanager
def run_nginx(tree: Path, work: Path) -> Iterator[Server]:
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not os.access(nginx, os.X_OK):
        raise SystemExit("nginx is not installed (apt-get install nginx-light)")
    port = free_port()
    prefix = work / "nginx"
    prefix.mkdir(exist_ok=True)
    server_conf = prefix / "server.conf"
    snippet = (tree / SNIPPET_NAME).read_text()
    server_conf.write_text(snippet.replace("listen 8080;", f"listen 127.0.0.1:{port};"))
    user = "user root;\n" if os.geteuid() == 0 else ""
    (prefix / "nginx.conf").write_text(
        f"{user}worker_processes auto;\nerror_log {prefix}/error.log;\n"
        "events { worker_connections 1024; }\n"
        f"http {{\n  access_log {prefix}/access.log;\n"
        + "".join(
            f"  {t}_temp_path {prefix}/{t};\n"
            for t in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        + f"  include {server_conf};\n}}\n"
    )
    cmd = [
        nginx,
        "-c",
        str(prefix / "nginx.conf"),
        "-p",
        str(prefix),
        "-g",
        f"daemon off; pid {prefix}/nginx.pid;",
    ]
    with _process(cmd, work / "nginx.log") as proc:
        _wait_port(port, proc, "nginx")
        yield Server("nginx", f"http://127.0.0.1:{port}", [proc.pid])


@contextmanager
def run_peer(name: str, template: str, tree: Path, work: Path) -> Iterator[Server]:
    port = free_port()
    cmd = shlex.split(template.format(tree=tree, port=port))
    with _process(cmd, work / f"{name}.log", new_session=True) as proc:
        _wait_port(port, proc, name)
        yield Server(name, f"http://127.0.0.1:{port}", [proc.pid])


# -- measurements ------------------------------------------------------------------------------
def curl_many(url: str, clients: int, size: int) -> float:
    """Aggregate GiB/s of *clients* simultaneous curl downloads of *url* (each must be whole)."""
    cmd = ["curl", "-sS", "--max-time", "900", "-o", "/dev/null", "-w", "%{size_download}", url]
    started = time.perf_counter()
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) for _ in range(clients)]
    for p in procs:
        out, _ = p.communicate(timeout=1000)
        if p.returncode != 0 or int(out or 0) != size:
            raise SystemExit(f"curl {url}: exit {p.returncode}, {out} of {size} bytes")
    return clients * size / (time.perf_counter() - started) / GiB


async def _client(host: str, port: int, paths: list[str], out: list[float]) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        for path in paths:
            request = (
                f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: {PIP_ACCEPT}\r\n"
                "User-Agent: bench\r\n\r\n"
            ).encode()
            started = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 200"):
                raise SystemExit(f"{path}: {head[:80]!r}")
            m = re.search(rb"\r\ncontent-length:\s*(\d+)", head, re.I)
            if not m:
                raise SystemExit(f"{path}: no Content-Length")
            await reader.readexactly(int(m.group(1)))
            out.append(time.perf_counter() - started)
    finally:
        writer.close()


def index_latency(url: str, names: list[str], clients: int, requests: int) -> tuple[float, ...]:
    """(p50 ms, p99 ms, requests/s) of project pages over *clients* keep-alive connections."""
    host, port = url.removeprefix("http://").split(":")
    rng = random.Random(42)
    plans = [[f"/simple/{rng.choice(names)}/" for _ in range(requests)] for _ in range(clients)]
    latencies: list[float] = []

    async def main() -> float:
        started = time.perf_counter()
        await asyncio.wait_for(
            asyncio.gather(*(_client(host, int(port), p, latencies) for p in plans)), 600
        )
        return time.perf_counter() - started

    elapsed = asyncio.run(main())
    q = statistics.quantiles(latencies, n=100, method="inclusive")
    return q[49] * 1000, q[98] * 1000, len(latencies) / elapsed


@dataclass
class Result:
    name: str
    values: dict[str, float] = field(default_factory=dict)


ROWS = [
    ("1 client GiB/s (median 5)", "single"),
    ("8 clients GiB/s (sum)", "c8"),
    ("32 clients GiB/s (sum)", "c32"),
    ("server CPU s per GiB sent", "cpu"),
    ("index p50 ms (32 conns)", "p50"),
    ("index p99 ms (32 conns)", "p99"),
    ("index requests/s", "rps"),
    ("peak RSS MiB", "rss"),
]


def measure(server: Server, big: str, size: int, names: list[str], requests: int) -> Result:
    url = f"{server.url}/wheels/{big}"
    res = Result(server.name)
    print(f"[{server.name}] warm-up and 1 client ...", file=sys.stderr, flush=True)
    curl_many(url, 1, size)
    cpu = server.cpu_seconds()
    res.values["single"] = statistics.median(curl_many(url, 1, size) for _ in range(5))
    for n in (8, 32):
        print(f"[{server.name}] {n} clients ...", file=sys.stderr, flush=True)
        res.values[f"c{n}"] = curl_many(url, n, size)
    res.values["cpu"] = (server.cpu_seconds() - cpu) / (5 + 8 + 32) / (size / GiB)
    print(f"[{server.name}] index pages ...", file=sys.stderr, flush=True)
    index_latency(server.url, names, 32, max(requests // 10, 10))  # warm-up
    res.values["p50"], res.values["p99"], res.values["rps"] = index_latency(
        server.url, names, 32, requests
    )
    res.values["rss"] = server.peak_rss() / MiB
    return res


def print_table(results: list[Result], size: int, projects: int) -> None:
    nginx = next((r for r in results if r.name == "nginx"), None)
    others = [r for r in results if r is not nginx]
    heads = [r.name for r in results] + ([f"{r.name}/nginx" for r in others] if nginx else [])
    widths = [max(10, len(h) + 2) for h in heads]
    print(
        f"\nbig wheel {size / GiB:.2f} GiB, {projects} projects, 127.0.0.1, {os.cpu_count()} CPUs"
    )
    head = f"{'':26}" + "".join(f"{h:>{w}}" for h, w in zip(heads, widths, strict=True))
    print(head)
    print("-" * len(head))
    for label, key in ROWS:
        cells = [f"{r.values[key]:.2f}" for r in results]
        if nginx is not None:
            cells += [f"{r.values[key] / nginx.values[key]:.2f}x" for r in others]
        print(f"{label:26}" + "".join(f"{c:>{w}}" for c, w in zip(cells, widths, strict=True)))
    wc = next((r for r in results if r.name == "wheelcache"), None)
    if wc and nginx:
        ratio = min(wc.values[k] / nginx.values[k] for k in ("single", "c8", "c32"))
        print(
            f"\ntargets: big-file throughput >= 0.8x nginx: {'met' if ratio >= 0.8 else 'MISSED'}"
            f" (worst {ratio:.2f}x); index p99 < 20 ms with 32 clients: "
            f"{'met' if wc.values['p99'] < 20 else 'MISSED'} ({wc.values['p99']:.1f} ms)"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    ap.add_argument("--size", type=parse_size, default=GiB, help="big wheel size (default 1G)")
    ap.add_argument("--projects", type=int, default=200)
    ap.add_argument("--requests", type=int, default=300, help="page requests per connection")
    ap.add_argument("--workdir", type=Path, help="keep the cache and tree here (default: tmp)")
    ap.add_argument(
        "--peer-cmd",
        action="append",
        default=[],
        metavar="NAME=COMMAND",
        help="another server of the static tree; {tree} and {port} are replaced",
    )
    ap.add_argument("--skip-nginx", action="store_true")
    args = ap.parse_args()
    if not shutil.which("curl"):
        raise SystemExit("curl is needed for the throughput runs")
    with ExitStack() as stack:
        work = args.workdir or Path(stack.enter_context(tempfile.TemporaryDirectory()))
        work.mkdir(parents=True, exist_ok=True)
        print(f"building the cache in {work} ...", file=sys.stderr, flush=True)
        cache, tree, big, names = build(work, args.size, args.projects)
        size = (tree / "wheels" / big).stat().st_size
        results = []
        with run_wheelcache(cache, work) as server:
            results.append(measure(server, big, size, names, args.requests))
        if not args.skip_nginx:
            with run_nginx(tree, work) as server:
                results.append(measure(server, big, size, names, args.requests))
        for spec in args.peer_cmd:
            name, _, template = spec.partition("=")
            with run_peer(name, template, tree, work) as server:
                results.append(measure(server, big, size, names, args.requests))
        print_table(results, size, args.projects)


if __name__ == "__main__":
    main()
