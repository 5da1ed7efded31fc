#!/usr/bin/env python3
"""End-to-end benchmark: a whole PyTorch closure, resolved and fetched, against pip, uv, aria2c.

The multi-origin PyTorch-style index of the test suite (``tests/support/torchindex.py``: torch
pages on one origin linking wheels on a CDN origin, everything else on a PyPI-like origin) is
built with realistic sizes — the target's torch wheel 32 MiB, every other wheel 10–200 KiB —
and served by nginx, once unthrottled and once behind ``scripts/throttle.py``, which paces
every connection to a rate (default 2 MiB/s: a link that is slow per connection; nginx's
``limit_rate`` is per request and gives each new request a second's worth at once).  For
cu118 / Python 3.10 / linux_x86_64 / torch 2.4.0 (25 files) it times, end to end, fresh caches
each run:

* ``wheelcache fetch --cuda 118 --py 310 --platform linux_x86_64 --torch 2.4.0``;
* the newest ``pip download`` (installed into a throw-away venv; ``--only-binary`` with the
  target's ``--platform``/``--python-version``/``--abi``, the trio pinned);
* the newest ``uv pip install --target`` for the same target (uv also unpacks);
* ``aria2c -x8 -j4`` given the 25 URLs and sha256s (the bare download, no resolution).

Then wheelcache alone: a second identical run from the warm cache, the same with
``--offline``, and the start-up of ``wheelcache --version`` and ``--help``.  Every tool's
result is checked to be the same 25 files.  Medians of ``--runs``; peak RSS from VmHWM.

Needs nginx and aria2c (``apt-get install nginx-light aria2``); the peers are installed from the
package index into a temporary venv.  Loopback only.

    python scripts/bench_closure.py              # both links, 3 runs each
    python scripts/bench_closure.py --runs 1 --only unthrottled,warm,start
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from urllib.parse import quote

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchlib import (  # noqa: E402
    Measure,
    MiB,
    Peers,
    clean_env,
    free_ports,
    fresh_dir,
    install_peers,
    install_wheelcache,
    interleaved,
    machine_line,
    median,
    timed,
    wait_for_port,
)
from packaging.utils import canonicalize_name  # noqa: E402

from tests.support import torchindex as ti  # noqa: E402

VARIANT, PY, PLATFORM, TORCH = "cu118", "cp310", "linux_x86_64", "2.4.0"
PIN = ("torch==2.4.0", "torchvision==0.19.0", "torchaudio==2.4.0")
#: What a fetch imports that is not wheelcache's own: its start costs any Python tool for
#: this job, and is printed beside the others as the floor under wheelcache's times.
FLOOR = (
    "click",
    "packaging.requirements",
    "packaging.tags",
    "resolvelib",
    "http.client",
    "html.parser",
    "email.parser",
    "sqlite3",
    "hashlib",
    "blake3",
    "json",
    "logging",
    "concurrent.futures",
    "platformdirs",
)
PIP_PLATFORMS = (
    "manylinux_2_28_x86_64",
    "manylinux_2_17_x86_64",
    "manylinux2014_x86_64",
    "manylinux1_x86_64",
    "linux_x86_64",
)


def payload_sizes(torch_size: int) -> dict[str, int]:
    """The target's torch wheel *torch_size*; its companions and every deps wheel 10–200 KiB
    (seeded, so each run of the benchmark serves the same bytes)."""
    rng = random.Random(14)
    sizes: dict[str, int] = {}
    for spec in ti.FILES:
        if spec.tag is None:
            continue
        small = rng.randint(10, 200) << 10
        ours = spec.release == TORCH and spec.tag == f"{PY}-{PY}-{PLATFORM}"
        if spec.origin == "cdn" and ours and VARIANT in spec.pages:
            sizes[spec.filename] = torch_size if spec.project == "torch" else small
        elif spec.origin == "deps":
            sizes[spec.filename] = small
    return sizes


# -- nginx over the universe ---------------------------------------------------------------
NGINX_CONF = """
worker_processes 2;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    types {{ text/html html; application/vnd.pypi.simple.v1+json json; }}
    default_type application/octet-stream;
    sendfile on; tcp_nopush on; keepalive_requests 10000;
    access_log off;
    client_body_temp_path {prefix}/tmp; proxy_temp_path {prefix}/tmp;
    fastcgi_temp_path {prefix}/tmp; uwsgi_temp_path {prefix}/tmp; scgi_temp_path {prefix}/tmp;
    map $http_accept $simple_index {{
        default index.html;
        "~application/vnd\\.pypi\\.simple\\.v1\\+json" index.json;
    }}
{servers}
}}
"""
SERVERS = """
    server {{ listen 127.0.0.1:{index}; root {site}/index; index index.html; }}
    server {{ listen 127.0.0.1:{cdn}; root {uni}/cdn; }}
    server {{
        listen 127.0.0.1:{deps};
        location /simple/ {{ root {site}/deps; index $simple_index; }}
        location /files/ {{ root {uni}/deps; }}
    }}
"""


@dataclass(frozen=True)
class Origins:
    index: int
    cdn: int
    deps: int

    @property
    def ports(self) -> tuple[int, int, int]:
        return (self.index, self.cdn, self.deps)

    @property
    def torch_index(self) -> str:
        return f"http://127.0.0.1:{self.index}/whl/{{variant}}"

    @property
    def variant_index(self) -> str:
        return f"http://127.0.0.1:{self.index}/whl/{VARIANT}"

    @property
    def deps_index(self) -> str:
        return f"http://127.0.0.1:{self.deps}/simple"


def write_site(uni: ti.Universe, site: Path, origins: Origins) -> None:
    """The index pages with absolute links to this set of origins (HTML and PEP 691 JSON)."""
    cdn_url, deps_url = f"http://127.0.0.1:{origins.cdn}", f"http://127.0.0.1:{origins.deps}"
    for variant in ti.VARIANTS:
        root = site / "index" / "whl" / variant
        root.mkdir(parents=True)
        (root / "index.html").write_bytes(ti.torch_root_page(variant))
        for name in ti.FAMILY:
            (root / name).mkdir()
            (root / name / "index.html").write_bytes(ti.torch_page(uni, variant, name, cdn_url))
    simple = site / "deps" / "simple"
    simple.mkdir(parents=True)
    html, js = ti.simple_root_pages()
    (simple / "index.html").write_bytes(html)
    (simple / "index.json").write_bytes(js)
    for dep in ti.DEPS:
        key = str(canonicalize_name(dep.name))
        html, js = ti.simple_project_pages(uni, key, deps_url)
        (simple / key).mkdir()
        (simple / key / "index.html").write_bytes(html)
        (simple / key / "index.json").write_bytes(js)


class Servers:
    """nginx with two sets of the three origins, the second behind the throttling proxy
    (``scripts/throttle.py``: each connection paced to the rate, as on a slow link)."""

    def __init__(self, uni: ti.Universe, work: Path, rate: str) -> None:
        self.prefix = work / "nginx"
        (self.prefix / "tmp").mkdir(parents=True, exist_ok=True)
        ports = free_ports(9)
        self.fast = Origins(*ports[0:3])
        self.slow = Origins(*ports[3:6])  # the proxy's ports
        behind = Origins(*ports[6:9])  # nginx behind the proxy
        blocks = []
        for name, pages_for, listen in (
            ("fast", self.fast, self.fast),
            ("slow", self.slow, behind),
        ):
            site = work / f"site-{name}"
            write_site(uni, site, pages_for)
            blocks.append(
                SERVERS.format(
                    index=listen.index, cdn=listen.cdn, deps=listen.deps, site=site, uni=uni.root
                )
            )
        conf = self.prefix / "nginx.conf"
        conf.write_text(NGINX_CONF.format(prefix=self.prefix, servers="".join(blocks)))
        self.nginx = subprocess.Popen(
            ["nginx", "-c", str(conf), "-p", str(self.prefix), "-g", "daemon off;"],
            stderr=subprocess.PIPE,
        )
        pairs = [f"{a}:{b}" for a, b in zip(self.slow.ports, behind.ports, strict=True)]
        throttle = Path(__file__).resolve().parent / "throttle.py"
        self.proxy = subprocess.Popen(
            [sys.executable, str(throttle), "--rate", rate, *pairs], stderr=subprocess.PIPE
        )
        for port in (*self.fast.ports, *behind.ports):
            wait_for_port(port, "nginx", self.nginx)
        for port in self.slow.ports:
            wait_for_port(port, "the throttling proxy", self.proxy)

    def stop(self) -> None:
        self.proxy.terminate()
        self.nginx.send_signal(signal.SIGQUIT)
        for proc in (self.proxy, self.nginx):
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


# -- the tools ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Closure:
    """The 25 files (filename → (url path on its origin, sha256)) the target needs."""

    files: dict[str, tuple[str, str, str]]  # filename -> (origin, url_path, sha256)

    def urls(self, o: Origins) -> list[tuple[str, str, str]]:
        out = []
        for name, (origin, path, sha) in sorted(self.files.items()):
            port = o.cdn if origin == "cdn" else o.deps
            out.append((name, f"http://127.0.0.1:{port}{quote(path)}", sha))
        return out


class Tools:
    def __init__(self, work: Path, peers: Peers, closure: Closure, wheelcache: list[str]) -> None:
        self.work = work
        self.peers = peers
        self.closure = closure
        self.wc = wheelcache
        self.env = clean_env()
        self.got: dict[str, set[str]] = {}

    def _expect(self, tool: str, names: set[str]) -> None:
        want = set(self.closure.files)
        if names != want:
            raise SystemExit(
                f"{tool} got other files than the closure: missing {sorted(want - names)}, "
                f"extra {sorted(names - want)}"
            )

    def wheelcache_cmd(self, o: Origins, cache: Path, *extra: str) -> list[str]:
        return [
            *self.wc,
            "fetch",
            "--cuda",
            "118",
            "--py",
            "310",
            "--platform",
            PLATFORM,
            "--torch",
            TORCH,
            "--torch-index",
            o.torch_index,
            "--index-url",
            o.deps_index,
            "--cache-dir",
            str(cache),
            *extra,
        ]

    def wheelcache(self, o: Origins) -> Measure:
        cache = fresh_dir(self.work / "wc")
        m = timed(self.wheelcache_cmd(o, cache), self.env)
        self._expect("wheelcache", {p.name for p in (cache / "wheels-v1").glob("*.whl")})
        return m

    def pip(self, o: Origins) -> Measure:
        out = fresh_dir(self.work / "pip")
        cmd = [str(self.peers.python), "-m", "pip", "download", "--no-cache-dir"]
        cmd += ["--disable-pip-version-check", "-q", "-d", str(out), "--only-binary=:all:"]
        cmd += ["--python-version", "3.10", "--implementation", "cp", "--abi", PY]
        for plat in PIP_PLATFORMS:
            cmd += ["--platform", plat]
        cmd += ["--index-url", o.deps_index, "--extra-index-url", o.variant_index, *PIN]
        m = timed(cmd, self.env)
        self._expect("pip", {p.name for p in out.iterdir()})
        return m

    def uv(self, o: Origins) -> Measure:
        out = fresh_dir(self.work / "uv")
        cache = fresh_dir(self.work / "uv-cache")
        cmd = [str(self.peers.uv), "pip", "install", "-q", "--no-config", "--target", str(out)]
        cmd += ["--python", sys.executable, "--python-version", "3.10"]
        cmd += ["--python-platform", "x86_64-manylinux_2_28", "--cache-dir", str(cache)]
        cmd += ["--index-url", o.deps_index, "--extra-index-url", o.variant_index, *PIN]
        m = timed(cmd, self.env)
        installed = {p.name for p in out.iterdir() if p.name.endswith(".dist-info")}
        if len(installed) != len(self.closure.files):
            raise SystemExit(f"uv installed {len(installed)} distributions: {sorted(installed)}")
        return m

    def aria2c(self, o: Origins) -> Measure:
        out = fresh_dir(self.work / "aria2")
        listing = self.work / "aria2-list.txt"
        lines = []
        for name, url, sha in self.closure.urls(o):
            lines += [url, f"  out={name}", f"  checksum=sha-256={sha}"]
        listing.write_text("\n".join(lines) + "\n")
        cmd = ["aria2c", "-q", "-x", "8", "-s", "8", "-k", "1M", "-j", "4", "-d", str(out)]
        cmd += ["--allow-overwrite=true", "--auto-file-renaming=false"]
        cmd += ["--file-allocation=none", "-i", str(listing)]
        m = timed(cmd)
        self._expect("aria2c", {p.name for p in out.iterdir()})
        return m


def closure_files(uni: ti.Universe, tools_wc: list[str], o: Origins, work: Path) -> Closure:
    """What the target needs, from a wheelcache dry run (cross-checked against every tool)."""
    env = clean_env()
    cmd = [*tools_wc, "fetch", "--cuda", "118", "--py", "310", "--platform", PLATFORM]
    cmd += ["--torch", TORCH, "--torch-index", o.torch_index, "--index-url", o.deps_index]
    cmd += ["--cache-dir", str(fresh_dir(work / "plan")), "--dry-run", "--json"]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    files = {}
    for f in json.loads(out)["files"]:
        b = uni.files[f["filename"]]
        files[f["filename"]] = (b.spec.origin, b.spec.url_path, b.sha256)
    return Closure(files)


def startup(cmd: list[str], runs: int) -> tuple[float, float]:
    """Median wall and CPU seconds of *cmd* over *runs* runs (after one warm-up run)."""
    env = clean_env()
    walls, cpus = [], []
    for i in range(runs + 1):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t = time.perf_counter()
        subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, check=True)
        wall = time.perf_counter() - t
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if i:
            walls.append(wall)
            cpus.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    return statistics.median(walls), statistics.median(cpus)


def serve_forever(server: Servers, wc: list[str]) -> None:
    """Keep nginx up and say how to reach it, until Ctrl-C or SIGTERM."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        for name, o in (("unthrottled", server.fast), ("throttled", server.slow)):
            cmd = [*wc, "fetch", "--cuda", "118", "--py", "310", "--platform", PLATFORM]
            cmd += ["--torch", TORCH, "--torch-index", o.torch_index, "--index-url", o.deps_index]
            print(f"{name}: {' '.join(cmd)}", flush=True)
        while True:
            time.sleep(3600)
    finally:
        server.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", default="2m", help="bytes/s per connection (default 2m: 2 MiB/s)")
    ap.add_argument("--torch-size", default=32, type=int, help="torch wheel MiB (default 32)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--startup-runs", type=int, default=20)
    ap.add_argument("--workdir", type=Path, default=None, help="keep files here (reused)")
    ap.add_argument(
        "--project",
        type=Path,
        default=None,
        help="the wheelcache checkout to time (default: this one; give an older one, in its "
        "own --workdir, for a before/after comparison)",
    )
    ap.add_argument("--only", default="throttled,unthrottled,warm,start")
    ap.add_argument("--tools", default="wheelcache,pip,uv,aria2c")
    ap.add_argument(
        "--serve", action="store_true", help="only serve the index and print the URLs (profiling)"
    )
    args = ap.parse_args()
    for tool in ("nginx", "aria2c"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} not found; apt-get install nginx-light aria2")
    only, chosen = set(args.only.split(",")), args.tools.split(",")
    work = Path(args.workdir or tempfile.mkdtemp(prefix="wc-closure-"))
    work.mkdir(parents=True, exist_ok=True)
    work.chmod(0o755)  # nginx workers run as an unprivileged user
    print(f"building the index in {work} …", file=sys.stderr)
    uni_dir = work / "universe"
    shutil.rmtree(uni_dir, ignore_errors=True)
    for d in ("site-fast", "site-slow", "nginx"):
        shutil.rmtree(work / d, ignore_errors=True)
    uni = ti.build_universe(uni_dir, payload_sizes(args.torch_size * MiB))
    for p in [work, *uni_dir.rglob("*")]:
        if p.is_dir():
            p.chmod(0o755)
    peers = install_peers(work)
    wc = [str(install_wheelcache(work, args.project))]
    server = Servers(uni, work, args.rate)
    if args.serve:
        serve_forever(server, wc)
        return
    rows: list[tuple[str, str, Measure]] = []
    extra: list[str] = []
    try:
        closure = closure_files(uni, wc, server.fast, work)
        total = sum(uni.files[n].size for n in closure.files)
        print(f"closure: {len(closure.files)} files, {total / MiB:.1f} MiB", file=sys.stderr)
        tools = Tools(work / "out", peers, closure, wc)
        peer_fns: dict[str, tuple[str, Callable[[Origins], Measure]]] = {
            "wheelcache": ("wheelcache fetch", tools.wheelcache),
            "pip": (f"pip {peers.pip_version} download", tools.pip),
            "uv": (f"uv {peers.uv_version} pip install --target", tools.uv),
            "aria2c": ("aria2c -x8 -j4, URL list given", tools.aria2c),
        }
        links = [
            ("throttled", f"{args.rate.upper()}iB/s per connection", server.slow),
            ("unthrottled", "unthrottled", server.fast),
        ]
        for key, title, origins in links:
            if key not in only:
                continue
            print(f"  {title} …", file=sys.stderr)
            turns = {peer_fns[name][0]: partial(peer_fns[name][1], origins) for name in chosen}
            for label, measure in interleaved(turns, args.runs).items():
                rows.append((title, label, measure))
        if "warm" in only:
            cache = fresh_dir(work / "out" / "warm")
            cmd = tools.wheelcache_cmd(server.fast, cache)
            timed(cmd, clean_env())  # fill the cache
            warm = median([timed(cmd, clean_env()) for _ in range(args.runs)])
            offline = median([timed([*cmd, "--offline"], clean_env()) for _ in range(args.runs)])
            extra.append(
                f"second identical run, warm cache: {warm.seconds:.3f} s, CPU {warm.cpu:.3f} s "
                f"(peak RSS {warm.rss_mb:.0f} MiB); --offline: {offline.seconds:.3f} s, CPU "
                f"{offline.cpu:.3f} s (peak RSS {offline.rss_mb:.0f} MiB)"
            )
        if "start" in only:
            for flag in ("--version", "--help"):
                wall, cpu = startup([*wc, flag], args.startup_runs)
                extra.append(
                    f"wheelcache {flag}: {wall * 1000:.0f} ms, CPU {cpu * 1000:.0f} ms "
                    f"(medians of {args.startup_runs})"
                )
            python = str(Path(wc[0]).parent / "python")
            wall, cpu = startup([python, "-c", f"import {', '.join(FLOOR)}"], args.startup_runs)
            extra.append(
                f"the floor of a Python tool for this job — the interpreter starting and "
                f"importing the libraries a fetch uses, none of wheelcache ({', '.join(FLOOR)}): "
                f"{wall * 1000:.0f} ms, CPU {cpu * 1000:.0f} ms (medians of {args.startup_runs})"
            )
    finally:
        server.stop()
    size = f"closure {len(closure.files)} files, {total / MiB:.1f} MiB"
    print(f"\n{machine_line(args.runs)}; {size}\n")
    print("| link | tool | seconds | peer time / wheelcache time | CPU s | peak RSS MiB |")
    print("|---|---|---:|---:|---:|---:|")
    base = {title: m for title, label, m in rows if label == "wheelcache fetch"}
    for title, label, m in rows:
        ratio = f"{m.seconds / base[title].seconds:.2f}×" if title in base else "–"
        print(f"| {title} | {label} | {m.seconds:.2f} | {ratio} | {m.cpu:.2f} | {m.rss_mb:.0f} |")
    for line in extra:
        print(f"\n{line}", end="")
    print()
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
