#!/usr/bin/env python3
"""Download benchmark: wheelcache against curl, aria2c, pip download and uv, in one run.

nginx serves one large wheel and a set of small ones from a simple index on 127.0.0.1, once
unthrottled and once with a per-connection cap (``limit_rate``, the case segmented downloads
are for).  Every tool is timed end to end including its verification (curl is followed by
``sha256sum``, aria2c checks ``--checksum``, pip and wheelcache check the index's hash), the
median of ``--runs`` is printed with the ratio to wheelcache, each tool's CPU time and peak
RSS.  pip and uv are the newest releases, installed into a throw-away venv (the pip in the
project's environment may be old); ``uv pip install --target`` also unpacks the wheels.  A
resume scenario kills wheelcache at 50 % and reports the bytes nginx sent in total relative
to the file size.  Finally the two hashing designs (hash while downloading vs
one pass after the last byte) are compared on the unthrottled large file.

Needs nginx, curl and aria2c on PATH (``apt-get install nginx curl aria2``).  Loopback only.

    python scripts/bench_download.py                   # 1 GiB, 256 MiB throttled at 10 MB/s
    python scripts/bench_download.py --size 256M --runs 1 --throttled-size 64M   # quick look
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import (  # noqa: E402
    Measure,
    MiB,
    Peers,
    clean_env,
    free_ports,
    install_peers,
    install_wheelcache,
    interleaved,
    machine_line,
    timed,
)


def parse_size(text: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    t = text.strip().upper()
    return int(float(t[:-1]) * units[t[-1]]) if t[-1] in units else int(t)


def make_wheel(dest: Path, name: str, size: int, seed: int) -> Path:
    """A valid wheel whose payload is *size* pseudo-random bytes, stored (not compressed)."""
    path = dest / f"{name}-1.0-py3-none-any.whl"
    rng = random.Random(seed)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        with zf.open(zipfile.ZipInfo(f"{name}/payload.bin"), "w", force_zip64=True) as fh:
            left = size
            while left > 0:
                n = min(left, 64 * MiB)
                fh.write(rng.randbytes(n))
                left -= n
        zf.writestr(f"{name}/__init__.py", "")
        zf.writestr(
            f"{name}-1.0.dist-info/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n"
        )
        zf.writestr(
            f"{name}-1.0.dist-info/WHEEL",
            "Wheel-Version: 1.0\nGenerator: bench\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        )
        zf.writestr(f"{name}-1.0.dist-info/RECORD", "")
    return path


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(4 * MiB):
            h.update(block)
    return h.hexdigest()


def build_tree(root: Path, size: int, throttled_size: int, small: int) -> dict[str, str]:
    shutil.rmtree(root, ignore_errors=True)  # a reused --workdir
    files = root / "files"
    files.mkdir(parents=True)
    wheels = [make_wheel(files, "bigpkg", size, 1), make_wheel(files, "midpkg", throttled_size, 2)]
    rng = random.Random(3)
    wheels += [
        make_wheel(files, f"small{i}", rng.randint(100_000, 2_000_000), 10 + i)
        for i in range(small)
    ]
    digests: dict[str, str] = {}
    for w in wheels:
        name = w.name.split("-")[0]
        digests[name] = sha256_of(w)
        page = root / "simple" / name
        page.mkdir(parents=True)
        (page / "index.html").write_text(
            f'<!DOCTYPE html><html><body><a href="../../files/{w.name}#sha256={digests[name]}">'
            f"{w.name}</a></body></html>\n"
        )
    return digests


NGINX_CONF = """
worker_processes 2;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    types {{ text/html html; application/octet-stream whl; }}
    default_type application/octet-stream;
    sendfile on; tcp_nopush on; keepalive_requests 10000;
    log_format bench '$request_uri $status $body_bytes_sent "$http_range"';
    access_log {prefix}/access.log bench;
    client_body_temp_path {prefix}/tmp; proxy_temp_path {prefix}/tmp;
    fastcgi_temp_path {prefix}/tmp; uwsgi_temp_path {prefix}/tmp; scgi_temp_path {prefix}/tmp;
    server {{ listen 127.0.0.1:{fast}; root {root}; index index.html; }}
    server {{ listen 127.0.0.1:{slow}; root {root}; index index.html; limit_rate {rate}; }}
}}
"""


class Nginx:
    def __init__(self, root: Path, prefix: Path, rate: str) -> None:
        self.prefix = prefix
        (prefix / "tmp").mkdir(parents=True, exist_ok=True)
        self.fast, self.slow = free_ports(2)
        conf = prefix / "nginx.conf"
        conf.write_text(
            NGINX_CONF.format(prefix=prefix, root=root, fast=self.fast, slow=self.slow, rate=rate)
        )
        self.proc = subprocess.Popen(
            ["nginx", "-c", str(conf), "-p", str(prefix), "-g", "daemon off;"],
            stderr=subprocess.PIPE,
        )
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", self.fast), 0.1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise SystemExit(
            "nginx did not start: " + self.proc.stderr.read().decode() if self.proc.stderr else ""
        )

    def url(self, slow: bool) -> str:
        return f"http://127.0.0.1:{self.slow if slow else self.fast}"

    def sent_bytes(self, marker: str) -> int:
        """Body bytes nginx logged for request URIs containing *marker*."""
        total = 0
        log = self.prefix / "access.log"
        for line in log.read_text().splitlines():
            parts = line.split()
            if len(parts) >= 3 and marker in parts[0]:
                total += int(parts[2])
        return total

    def clear_log(self) -> None:
        (self.prefix / "access.log").write_text("")
        os.kill(self.proc.pid, signal.SIGUSR1)  # reopen the log
        time.sleep(0.2)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


class Tools:
    def __init__(
        self, work: Path, server: Nginx, digests: dict[str, str], connections: int, peers: Peers
    ) -> None:
        self.work = work
        self.peers = peers
        self.wc = [str(install_wheelcache(work.parent))]
        self.server = server
        self.digests = digests
        self.connections = connections
        self.env = clean_env()

    def _fresh(self, name: str) -> Path:
        d = self.work / name
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
        return d

    def wheelcache(self, projects: list[str], slow: bool) -> Measure:
        base = self.server.url(slow)
        cmd = [
            *self.wc,
            "fetch",
            *projects,
            "--no-deps",
            "--cpu",
            "--py",
            "3.11",
            "--platform",
            "linux_x86_64",
            "--index-url",
            f"{base}/simple",
            "--torch-index",
            f"{base}/simple",
            "--cache-dir",
            str(self._fresh("wc")),
            "--connections",
            str(self.connections),
            "--jobs",
            "8",
        ]
        return timed(cmd, self.env)

    def curl(self, projects: list[str], slow: bool) -> Measure:
        out = self._fresh("curl")
        cmd = ["curl", "-sSf"]
        for p in projects:
            name = self._filename(p)
            cmd += ["-o", str(out / name), f"{self.server.url(slow)}/files/{name}"]
        m = timed(cmd)
        check = timed(["sha256sum", *(str(out / self._filename(p)) for p in projects)])
        return Measure(m.seconds + check.seconds, max(m.rss_mb, check.rss_mb), m.cpu + check.cpu)

    def aria2c(self, projects: list[str], slow: bool) -> Measure:
        out = self._fresh("aria2")
        listing = out / "list.txt"
        lines = []
        for p in projects:
            name = self._filename(p)
            lines += [
                f"{self.server.url(slow)}/files/{name}",
                f"  out={name}",
                f"  checksum=sha-256={self.digests[p]}",
            ]
        listing.write_text("\n".join(lines) + "\n")
        n = str(self.connections)
        return timed(
            [
                "aria2c",
                "-q",
                "-x",
                n,
                "-s",
                n,
                "-k",
                "1M",
                "-j",
                "8",
                "-d",
                str(out),
                "--allow-overwrite=true",
                "--auto-file-renaming=false",
                "--file-allocation=none",
                "-i",
                str(listing),
            ]
        )

    def pip(self, projects: list[str], slow: bool) -> Measure:
        out = self._fresh("pip")
        return timed(
            [
                str(self.peers.python),
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--no-cache-dir",
                "--disable-pip-version-check",
                "-q",
                "-d",
                str(out),
                "--index-url",
                f"{self.server.url(slow)}/simple",
                *projects,
            ],
            self.env,
        )

    def uv(self, projects: list[str], slow: bool) -> Measure:
        out = self._fresh("uv")
        cache = self._fresh("uv-cache")
        cmd = [str(self.peers.uv), "pip", "install", "-q", "--no-config", "--no-deps"]
        cmd += ["--target", str(out), "--python", sys.executable, "--cache-dir", str(cache)]
        cmd += ["--index-url", f"{self.server.url(slow)}/simple", *projects]
        return timed(cmd, self.env)

    def _filename(self, project: str) -> str:
        return f"{project}-1.0-py3-none-any.whl"


def bench_resume(tools: Tools, server: Nginx, size: int) -> float:
    """Kill wheelcache at 50 % on the throttled server, resume, return bytes sent / size."""
    cache = tools._fresh("resume")
    base = server.url(True)
    cmd = [
        *tools.wc,
        "fetch",
        "midpkg",
        "--no-deps",
        "--cpu",
        "--py",
        "3.11",
        "--platform",
        "linux_x86_64",
        "--index-url",
        f"{base}/simple",
        "--torch-index",
        f"{base}/simple",
        "--cache-dir",
        str(cache),
        "--connections",
        str(tools.connections),
    ]
    server.clear_log()
    proc = subprocess.Popen(
        cmd, env=tools.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    state = cache / "partial-v1" / f"{tools.digests['midpkg']}.json"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        try:
            segs = json.loads(state.read_text())["segments"]
            if sum(p - s for s, p, _ in segs) >= size // 2:
                break
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    subprocess.run(cmd, env=tools.env, check=True, stdout=subprocess.DEVNULL)
    time.sleep(0.3)  # nginx writes the access log line when the response ends
    return server.sent_bytes("midpkg-1.0") / size


def bench_hash_designs(tools: Tools, runs: int) -> dict[str, float]:
    """Time the two hashing designs through the library on the unthrottled large file."""
    out: dict[str, float] = {}
    for during in (True, False):
        code = (
            "import sys, time; from pathlib import Path;"
            "from wheelcache.store.cache import Cache; from wheelcache.net.client import Http;"
            "from wheelcache.net.download import Downloader, DownloadJob;"
            "from wheelcache.net.transfer import TransferSettings;"
            f"dl = Downloader(Http(), Cache(Path(sys.argv[1])), settings=TransferSettings("
            f"connections={tools.connections}, hash_during={during}));"
            f"dl.fetch(DownloadJob(sys.argv[2], 'bigpkg-1.0-py3-none-any.whl', 'bigpkg', '1.0',"
            f" {tools.digests['bigpkg']!r}))"
        )
        times = []
        for _ in range(runs):
            cache = tools._fresh("hash")
            url = f"{tools.server.url(False)}/files/bigpkg-1.0-py3-none-any.whl"
            times.append(timed([sys.executable, "-c", code, str(cache), url], tools.env).seconds)
        out["while downloading" if during else "after the last byte"] = statistics.median(times)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="1G", help="large wheel, unthrottled (default 1G)")
    ap.add_argument("--throttled-size", default="256M", help="large wheel, throttled")
    ap.add_argument("--rate", default="10m", help="nginx limit_rate per connection")
    ap.add_argument("--small", type=int, default=40, help="number of small wheels")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument(
        "--skip-pip-throttled",
        action="store_true",
        help="skip the slowest peer (pip on the throttled large file)",
    )
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument(
        "--only",
        default="large,throttled,small,small-throttled,resume,hash",
        help="comma-separated scenarios to run",
    )
    args = ap.parse_args()
    for tool in ("nginx", "curl", "aria2c", "sha256sum"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} not found; apt-get install nginx curl aria2 coreutils")
    size, tsize = parse_size(args.size), parse_size(args.throttled_size)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="wc-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    work.chmod(0o755)  # nginx workers run as an unprivileged user
    print(f"building files in {work} …", file=sys.stderr)
    digests = build_tree(work / "www", size, tsize, args.small)
    server = Nginx(work / "www", work / "nginx", args.rate)
    peers = install_peers(work)
    tools = Tools(work / "out", server, digests, args.connections, peers)
    small = [f"small{i}" for i in range(args.small)]
    contenders: dict[str, Callable[[list[str], bool], Measure]] = {
        "wheelcache": tools.wheelcache,
        "curl+sha256sum": tools.curl,
        f"aria2c -x{args.connections}": tools.aria2c,
        f"pip {peers.pip_version} download": tools.pip,
        f"uv {peers.uv_version} pip install --target": tools.uv,
    }
    only = set(args.only.split(","))
    scenarios = [
        (f"large {args.size}, loopback", ["bigpkg"], False, size, "large"),
        (
            f"large {args.throttled_size}, {args.rate}/s per connection",
            ["midpkg"],
            True,
            tsize,
            "throttled",
        ),
        (f"{args.small} small wheels, loopback", small, False, 0, "small"),
        (
            f"{args.small} small wheels, {args.rate}/s per connection",
            small,
            True,
            0,
            "small-throttled",
        ),
    ]
    rows: list[tuple[str, str, Measure, float, float]] = []
    try:
        for title, projects, slow, nbytes, key in scenarios:
            if key not in only:
                continue
            print(f"  {title} …", file=sys.stderr)
            results = interleaved(
                {
                    name: partial(fn, projects, slow)
                    for name, fn in contenders.items()
                    if not (args.skip_pip_throttled and name.startswith("pip") and slow and nbytes)
                },
                args.runs,
            )
            wc = results["wheelcache"]
            total = nbytes or sum(
                (work / "www" / "files" / f"{p}-1.0-py3-none-any.whl").stat().st_size
                for p in projects
            )
            for name, m in results.items():
                rows.append((title, name, m, total / m.seconds / MiB, m.seconds / wc.seconds))
        resume = bench_resume(tools, server, tsize) if "resume" in only else None
        hashing = bench_hash_designs(tools, args.runs) if "hash" in only else {}
    finally:
        server.stop()
    print(f"\n{machine_line(args.runs)}\n")
    print("| scenario | tool | seconds | MiB/s | peer time / wheelcache | CPU s | peak RSS MiB |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for title, name, m, rate, ratio in rows:
        print(
            f"| {title} | {name} | {m.seconds:.2f} | {rate:.0f} | {ratio:.2f}× | {m.cpu:.2f} "
            f"| {m.rss_mb:.0f} |"
        )
    if resume is not None:
        print(
            f"\nresume after kill -9 at 50 % ({args.throttled_size}, throttled): nginx sent "
            f"{resume:.3f}× the file size in total"
        )
    if hashing:
        print(
            "hashing design, large file on loopback (library, median): "
            + ", ".join(f"{k}: {v:.2f} s" for k, v in hashing.items())
        )
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
