#!/usr/bin/env python3
"""Benchmark resolution of big closures: ``wheelcache fetch --dry-run`` against
``uv pip compile``, cold caches, the same foreign target, the live package index.

For each requirement both tools start from an empty cache directory; wall time and the peak
memory (VmHWM via ``wait4``) of each process are printed with the ratio wheelcache/uv.  The
goal (issue 15) is within 1.5× of uv.  Then an impossible request (an extra whose dependency has
no wheel) must fail with its explanation in under 30 s.

The index is the one pip's configuration gives (``--index-url`` overrides it); torch and its
companions are taken from the same index (``--torch-index`` without ``{variant}``), as uv does.

Usage: python scripts/bench_resolve.py [--py 3.10] [--platform linux_x86_64]
       [--repeat 1] [--only transformers[torch]] [--index-url URL]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from wheelcache.config import pip_index_urls

REQUIREMENTS = ("transformers[torch]", "ray[default]", "apache-airflow")
IMPOSSIBLE = "pandas[all]>=2"
UV_PLATFORMS = {
    "linux_x86_64": "x86_64-manylinux_2_28",
    "win_amd64": "x86_64-pc-windows-msvc",
    "macosx_11_0_arm64": "aarch64-apple-darwin",
}
GOAL = 1.5
IMPOSSIBLE_LIMIT = 30.0


def _env() -> dict[str, str]:
    """This machine's pip and uv settings stay out: both tools see the same index only."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_", "WHEELCACHE_"))}
    env["PIP_CONFIG_FILE"] = os.devnull
    return env


def _run(cmd: list[str], stdin: str | None = None) -> tuple[float, float, int, str]:
    """(seconds, peak RSS MiB, exit code, stderr) of one process; ``wait4`` gives its own
    peak memory (not the maximum over every child so far)."""
    with tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=err, text=True, env=_env()
        )
        assert proc.stdin is not None
        proc.stdin.write(stdin or "")
        proc.stdin.close()
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        return seconds, usage.ru_maxrss / 1024, proc.returncode, err.read()


def _wheelcache(req: str, args: argparse.Namespace, cache: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "wheelcache",
        "fetch",
        "--dry-run",
        "--py",
        args.py,
        "--platform",
        args.platform,
        "--index-url",
        args.index_url,
        "--torch-index",
        args.index_url,
        "--cache-dir",
        str(cache),
        req,
    ]


def _uv(args: argparse.Namespace, cache: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "uv",
        "pip",
        "compile",
        "-",
        "--python-version",
        args.py,
        "--python-platform",
        UV_PLATFORMS[args.platform],
        "--index-url",
        args.index_url,
        "--only-binary",
        ":all:",
        "--cache-dir",
        str(cache),
        "--quiet",
    ]


def _measure(
    cmd_for: Callable[[Path], list[str]], stdin: str | None, repeat: int
) -> tuple[float, float, int, str]:
    runs = []
    for _ in range(repeat):
        with tempfile.TemporaryDirectory(prefix="bench-resolve-") as tmp:
            runs.append(_run(cmd_for(Path(tmp)), stdin))
    secs = statistics.median(r[0] for r in runs)
    return secs, max(r[1] for r in runs), runs[-1][2], runs[-1][3]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--py", default="3.10")
    parser.add_argument("--platform", default="linux_x86_64", choices=sorted(UV_PLATFORMS))
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--only", action="append", default=[])
    parser.add_argument("--index-url", default=None)
    args = parser.parse_args()
    args.index_url = args.index_url or pip_index_urls()[0][0]
    print(f"target: Python {args.py} on {args.platform}; cold caches; median of {args.repeat}")
    header = f"{'requirement':<22} {'wheelcache s':>12} {'uv s':>8} {'ratio':>7} "
    print(header + f"{'wc MiB':>8} {'uv MiB':>8}")
    worst = 0.0
    for req in args.only or REQUIREMENTS:
        wc = _measure(partial(_wheelcache, req, args), None, args.repeat)
        uv = _measure(lambda c: _uv(args, c), req + "\n", args.repeat)
        if wc[2] or uv[2]:
            print(f"{req}: wheelcache exit {wc[2]}, uv exit {uv[2]}\n{wc[3]}{uv[3]}")
            return 1
        ratio = wc[0] / uv[0]
        worst = max(worst, ratio)
        print(f"{req:<22} {wc[0]:>12.2f} {uv[0]:>8.2f} {ratio:>6.2f}× {wc[1]:>8.1f} {uv[1]:>8.1f}")
    secs, rss, code, err = _measure(lambda c: _wheelcache(IMPOSSIBLE, args, c), None, 1)
    print(f"\nimpossible request {IMPOSSIBLE}: exit {code} after {secs:.1f} s, {rss:.1f} MiB:")
    print("".join("  " + line + "\n" for line in err.strip().splitlines()))
    ok = worst <= GOAL and code == 1 and secs < IMPOSSIBLE_LIMIT
    print(
        f"goal: within {GOAL}× of uv (worst {worst:.2f}×), impossible request failing in "
        f"under {IMPOSSIBLE_LIMIT:.0f} s ({secs:.1f} s): {'met' if ok else 'NOT met'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
