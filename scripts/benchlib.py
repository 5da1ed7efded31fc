"""What the benchmarks in scripts/ share: timing with peak RSS, a clean environment, medians,
and the peers (the newest pip and uv) installed into a throw-away virtual environment.

Not part of the package: the scripts import it from their own folder.
"""

from __future__ import annotations

import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import venv
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

MiB = 1 << 20


def free_ports(n: int) -> list[int]:
    """*n* distinct free ports on 127.0.0.1.  Each socket is held until all are chosen: a
    port whose socket was closed can be handed out again at once, and two servers given one
    port left a benchmark's dependency origin unreachable."""
    socks: list[socket.socket] = []
    try:
        for _ in range(n):
            s = socket.socket()
            socks.append(s)
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def wait_for_port(port: int, what: str, proc: subprocess.Popen[bytes] | None = None) -> None:
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), 0.1).close()
            return
        except OSError:
            if proc is not None and proc.poll() is not None:
                break
            time.sleep(0.05)
    err = proc.stderr.read().decode() if proc is not None and proc.stderr else ""
    raise SystemExit(f"{what} did not start on port {port}: {err}")


@dataclass
class Measure:
    seconds: float
    rss_mb: float
    cpu: float = 0.0  # user + system seconds of the process and its waited-for children


def _hwm_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _tree_hwm_kib(pid: int) -> int:
    """The largest VmHWM among *pid* and its children (uv and pip start helpers)."""
    peak = _hwm_kib(pid)
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as fh:
            kids = [int(k) for k in fh.read().split()]
    except OSError:
        kids = []
    for kid in kids:
        peak = max(peak, _tree_hwm_kib(kid))
    return peak


def timed(cmd: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> Measure:
    """Run *cmd*; its wall time, peak RSS and CPU time.

    The peak is the kernel's VmHWM of the process (and of its children), polled every 5 ms;
    ``ru_maxrss`` from wait4 would include the RSS this script had when it forked.  CPU time
    comes from wait4 and says what a run costs when other jobs share the machine.
    """
    start = time.perf_counter()
    errors = tempfile.TemporaryFile()
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=errors)
    peak = 0
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        peak = max(peak, _tree_hwm_kib(proc.pid))
        time.sleep(0.005)
    elapsed = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        errors.seek(0)
        err = errors.read().decode(errors="replace")
        raise SystemExit(f"{cmd[0]} failed ({proc.returncode}): {' '.join(cmd)}\n{err[-3000:]}")
    errors.close()
    return Measure(elapsed, peak / 1024, usage.ru_utime + usage.ru_stime)


def median(ms: list[Measure]) -> Measure:
    """Median time and CPU, the highest peak."""
    return Measure(
        statistics.median(m.seconds for m in ms),
        max(m.rss_mb for m in ms),
        statistics.median(m.cpu for m in ms),
    )


def interleaved(tools: Mapping[str, Callable[[], Measure]], runs: int) -> dict[str, Measure]:
    """Each tool's median over *runs*, the tools taking turns (run 1 of each, then run 2 …).

    This VM has phases, minutes long, in which everything runs up to 1.5× slower: measured
    one tool after the other, a ratio could compare a slow phase with a fast one; taking
    turns puts every tool in every phase alike.
    """
    seen: dict[str, list[Measure]] = {name: [] for name in tools}
    for run in range(runs):
        for name, fn in tools.items():
            print(f"    {name} (run {run + 1} of {runs}) …", file=sys.stderr)
            seen[name].append(fn())
    return {name: median(ms) for name, ms in seen.items()}


def clean_env() -> dict[str, str]:
    """This environment without pip's, uv's and wheelcache's settings (the machine's pip
    configuration points at local find-links and constraints), and with bytecode caching on:
    an installed tool starts from its ``.pyc`` files, so every tool is timed that way."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_", "WHEELCACHE_"))}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PIP_CONFIG_FILE"] = os.devnull
    env["UV_NO_CONFIG"] = "1"
    env["WHEELCACHE_CONFIG"] = os.devnull
    return env


def fresh_dir(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


@dataclass(frozen=True)
class Peers:
    """The newest pip and uv, in their own virtual environment."""

    python: Path  # that environment's interpreter (runs ``-m pip``)
    uv: Path
    pip_version: str
    uv_version: str


def install_peers(where: Path) -> Peers:
    """Create a virtual environment under *where* with the newest pip and uv from the package
    index, ignoring this machine's pip configuration."""
    env_dir = where / "peers-venv"
    if not (env_dir / "bin" / "python").exists():
        print("installing the newest pip and uv for the peers …", file=sys.stderr)
        venv.create(env_dir, with_pip=True)
        subprocess.run(
            [str(env_dir / "bin" / "python"), "-m", "pip", "install", "-q", "-U", "pip", "uv"],
            env=clean_env(),
            check=True,
        )
    python = env_dir / "bin" / "python"
    pip_v = subprocess.run(
        [str(python), "-m", "pip", "--version"], capture_output=True, text=True, check=True
    ).stdout.split()[1]
    uv = env_dir / "bin" / "uv"
    uv_v = subprocess.run([str(uv), "--version"], capture_output=True, text=True, check=True)
    return Peers(python, uv, pip_v, uv_v.stdout.split()[1])


def install_wheelcache(where: Path, repo: Path | None = None) -> Path:
    """This checkout (or *repo*, e.g. an older one to compare with) installed, not editable,
    as a user has it, into its own venv under *where*; returns its ``wheelcache`` script.
    Re-run, only the project is reinstalled."""
    env_dir = where / "wheelcache-venv"
    python = env_dir / "bin" / "python"
    repo = repo or Path(__file__).resolve().parent.parent
    first = not python.exists()
    if first:
        print("installing wheelcache into its own venv …", file=sys.stderr)
        venv.create(env_dir, with_pip=True)
    extra = [] if first else ["--no-deps", "--force-reinstall"]
    subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "-q",
            "--disable-pip-version-check",
            "--no-compile",
            *extra,
            str(repo),
        ],
        env=clean_env(),
        check=True,
        cwd=where,
    )
    subprocess.run([str(python), "-m", "compileall", "-q", str(env_dir)], check=False)
    return env_dir / "bin" / "wheelcache"


def machine_line(runs: int) -> str:
    import platform

    return (
        f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.system()} "
        f"{platform.release()}, Python {platform.python_version()}, medians of {runs} runs"
    )
