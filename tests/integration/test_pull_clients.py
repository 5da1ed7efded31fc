"""``serve --pull`` with real clients: eight pip runs and uv at once, kill -9, the command.

The upstream is the multi-origin PyTorch-style test index with every file throttled, so the
clients' requests for one file overlap and must share one upstream transfer.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from click.testing import CliRunner

from tests.integration._pull import BIG, fetch_path, get, pulled, upstream_bytes
from tests.integration._serve_wheels import free_port, uv_command
from tests.support.torchindex import TorchIndex
from wheelcache.cli.main import main
from wheelcache.store.cache import Cache

MiB = 1024 * 1024
TRIO = ("torch", "torchvision", "torchaudio")
CP39_LINUX_PLATFORMS = ("linux_x86_64", "manylinux1_x86_64", "manylinux2014_x86_64")
CP39_TORCH = "torch-2.4.0+cu118-cp39-cp39-linux_x86_64.whl"  # 4 MiB on the test index
CP39_TRITON = "triton-3.0.0-1-cp39-cp39-manylinux2014_x86_64.manylinux_2_17_x86_64.whl"


def _client_env(home: Path) -> dict[str, str]:
    """No PIP_*/UV_* variable, no proxy, no config file: only what the command line says."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PIP_", "UV_", "WHEELCACHE_"))
        and k.upper() not in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")
    }
    home.mkdir(parents=True, exist_ok=True)
    env.update(
        PIP_CONFIG_FILE=os.devnull,
        UV_NO_CONFIG="1",
        UV_PYTHON_DOWNLOADS="never",
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / ".config"),
        XDG_CACHE_HOME=str(home / ".cache"),
    )
    return env


def _venv(path: Path) -> Path:
    """A fresh virtual environment without pip: the current pip installs into it from
    outside (``pip --python``), so the client is today's pip whatever the venv bundles."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    return path / "bin" / "python"


def _throttle(ti: TorchIndex, bps: int, pause: float = 0.0) -> None:
    """Every file slow (*bps*), and each body held for *pause* seconds after its first byte,
    so that clients resolving the same closure ask for each file while it is still coming."""
    for b in ti.universe.files.values():
        server = ti.cdn if b.spec.origin == "cdn" else ti.deps
        extra = {"stall_after": 1, "stall_seconds": pause} if pause else {}
        server.fault(ti.url(b.spec.filename), throttle_bps=bps, times=None, **extra)


def _start(cmd: Sequence[str], home: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        list(cmd),
        env=_client_env(home),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _dist_infos(site: Path) -> set[str]:
    return {p.name.split("-")[0].lower() for p in site.glob("*.dist-info")}


def test_eight_pips_and_uv_at_once_pull_each_file_once(
    torch_index: TorchIndex, tmp_path: Path
) -> None:
    ti = torch_index
    _throttle(ti, MiB, pause=0.2)
    pip = [sys.executable, "-m", "pip"]
    quiet = ["--disable-pip-version-check", "--no-input", "--no-cache-dir", "--timeout", "60"]
    with pulled(tmp_path / "cache", ti) as p:
        index = f"{p.url}/whl/cu118/"
        runs: list[tuple[str, subprocess.Popen[str], Path]] = []
        for i in range(8):
            home = tmp_path / f"pip{i}"
            if i % 2:  # this machine, into a fresh venv
                python = _venv(home / "venv")
                cmd = [*pip, "--python", str(python), "install", *quiet, "--index-url", index]
                site = next((home / "venv" / "lib").glob("python3*")) / "site-packages"
                runs.append(("native", _start([*cmd, *TRIO], home), site))
            else:  # CPython 3.9 on Linux, into a folder: the 4 MiB torch and 1 MiB triton
                site = home / "target"
                cmd = [*pip, "install", *quiet, "--index-url", index, "--target", str(site)]
                cmd += ["--python-version", "3.9", "--implementation", "cp", "--abi", "cp39"]
                cmd += [f"--platform={p}" for p in CP39_LINUX_PLATFORMS]
                cmd += ["--only-binary=:all:"]
                runs.append(("cp39", _start([*cmd, "torch==2.4.0", *TRIO[1:]], home), site))
        uv_home = tmp_path / "uv"
        uv_python = _venv(uv_home / "venv")
        uv_cmd = [*uv_command(), "pip", "install", "--python", str(uv_python), "--no-cache"]
        uv_site = next((uv_home / "venv" / "lib").glob("python3*")) / "site-packages"
        runs.append(("uv", _start([*uv_cmd, "--index-url", index, *TRIO], uv_home), uv_site))
        outputs = [
            (kind, proc.communicate(timeout=600)[0], proc.returncode) for kind, proc, _ in runs
        ]
        records = list(p.records)
    for kind, out, code in outputs:
        assert code == 0, f"{kind}:\n{out}"
    for kind, _, site in runs:
        assert set(TRIO) <= _dist_infos(site), kind
    assert {"triton", "nvidia_nccl_cu11", "numpy"} <= _dist_infos(runs[0][2])
    # Upstream sent each file's bytes once, and the cache holds every file it sent.
    cache = Cache(tmp_path / "cache")
    sent = {
        r.path.rsplit("/", 1)[-1]
        for s in (ti.cdn, ti.deps)
        for r in s.requests
        if r.method == "GET" and r.path.endswith(".whl")
    }
    assert {CP39_TORCH, CP39_TRITON} <= sent and len(sent) > 20
    for filename in sent:
        total = upstream_bytes(ti.cdn, filename) + upstream_bytes(ti.deps, filename)
        assert total <= 1.05 * ti.built(filename).size, (filename, total)
        assert cache.find(filename, ti.sha256(filename)) is not None, filename
    served = [r for r in records if r.path.endswith(".whl") and r.status == 200]
    assert sum(1 for r in served if r.path == fetch_path("cu118", CP39_TORCH)) == 4
    assert any(r.user_agent.startswith("uv/") for r in served)


# -- the command ---------------------------------------------------------------------------------
@contextmanager
def _serve_command(
    cache: Path, config: Path, port: int, log: Path, *extra: str
) -> Iterator[subprocess.Popen[bytes]]:
    """``wheelcache serve --pull`` as a process; its upstreams come from the config file."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WHEELCACHE_")}
    env["WHEELCACHE_CONFIG"] = str(config)
    start = log.stat().st_size if log.exists() else 0
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from wheelcache.cli.main import main; main()",
                "serve",
                "--pull",
                "--port",
                str(port),
                "--cache-dir",
                str(cache),
                *extra,
            ],
            stdout=out,
            stderr=out,
            env=env,
        )
    try:
        deadline = time.monotonic() + 30
        while "Install with" not in log.read_text()[start:] and proc.poll() is None:
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            proc.wait(20)


def _config(tmp_path: Path, ti: TorchIndex) -> Path:
    config = tmp_path / "config.toml"
    config.write_text(
        f'[serve]\ntorch-index = "{ti.torch_index_url}"\nindex-url = "{ti.deps_index_url}"\n'
    )
    return config


def test_kill_9_mid_transfer_then_restart_resumes(torch_index: TorchIndex, tmp_path: Path) -> None:
    ti = torch_index
    ti.cdn.fault(ti.url(BIG), throttle_bps=MiB // 2, times=None)
    cache, port, log = tmp_path / "cache", free_port(), tmp_path / "serve.log"
    config = _config(tmp_path, ti)
    got = bytearray()
    with _serve_command(cache, config, port, log) as proc:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("GET", fetch_path("cu118", BIG))
        resp = conn.getresponse()
        assert resp.status == 200
        while len(got) < 3 * MiB // 2:
            got += resp.read1(1 << 16)
        proc.kill()  # SIGKILL: no handler runs, no state is saved on the way out
        proc.wait(10)
        conn.close()
    before = upstream_bytes(ti.cdn, BIG)
    state = (cache / "partial-v1" / f"{ti.sha256(BIG)}.json").read_text()
    assert '"segments"' in state
    with _serve_command(cache, config, port, log):
        status, _, body = get(port, fetch_path("cu118", BIG))
    assert status == 200 and hashlib.sha256(body).hexdigest() == ti.sha256(BIG)
    assert body.startswith(bytes(got))
    file_requests = [r for r in ti.cdn.requests if r.path.endswith(BIG)]
    resumed = file_requests[-1].range or ""
    first = int(re.match(r"bytes=(\d+)-", resumed).group(1))  # type: ignore[union-attr]
    assert first >= MiB, resumed  # continued where the killed server stood
    size = ti.built(BIG).size
    assert before < size and upstream_bytes(ti.cdn, BIG) <= 1.05 * size
    assert Cache(cache).find(BIG, ti.sha256(BIG)) is not None
    assert not (cache / "partial-v1" / f"{ti.sha256(BIG)}.part").exists()


def test_the_command_prints_the_lan_lines_and_refuses_pull_options_without_pull(
    torch_index: TorchIndex, tmp_path: Path
) -> None:
    ti = torch_index
    port, log = free_port(), tmp_path / "serve.log"
    # -v: the access log shows pages too (by default only wheels served and failures)
    with _serve_command(tmp_path / "cache", _config(tmp_path, ti), port, log, "-v"):
        assert get(port, "/whl/cu118/torch/")[0] == 200  # upstreams from the config file
        assert get(port, "/simple/filelock/")[0] == 200
    text = log.read_text()
    assert f"pip install --index-url http://127.0.0.1:{port}/whl/cpu/ torch" in text
    assert f"uv pip install --index-url http://127.0.0.1:{port}/whl/cpu/ torch" in text
    assert re.search(r'"GET /whl/cu118/torch/" 200', text)
    assert "Traceback" not in text
    runner = CliRunner()
    shown = runner.invoke(
        main, ["config", "show", "--json"], env={"WHEELCACHE_CONFIG": str(tmp_path / "config.toml")}
    )
    rows = {r["setting"]: r for r in json.loads(shown.stdout)}
    assert rows["serve.torch-index"]["value"] == ti.torch_index_url
    assert rows["serve.index-url"]["origin"].startswith("config file")
    cache = ["--cache-dir", str(tmp_path / "cache")]
    result = runner.invoke(main, ["serve", *cache, "--index-url", ti.deps_index_url])
    assert result.exit_code == 2 and "--index-url only applies with --pull" in result.stderr
    result = runner.invoke(main, ["serve", "--pull", *cache, "--index-url", "ftp://x/simple"])
    assert result.exit_code == 2 and "is not an http:// or https:// URL" in result.stderr


def test_two_threads_asking_during_startup_of_a_resumed_partial(
    torch_index: TorchIndex, tmp_path: Path
) -> None:
    """A partial left by an earlier run is resumed by the first request and shared with the
    second; neither client gets a byte twice from upstream."""
    ti = torch_index
    ti.cdn.fault(ti.url(BIG), throttle_bps=MiB, times=None)
    with pulled(tmp_path / "cache", ti) as p:
        conn = http.client.HTTPConnection("127.0.0.1", p.port, timeout=30)
        conn.request("GET", fetch_path("cu118", BIG))
        resp = conn.getresponse()
        resp.read(MiB)
        conn.close()
        p.server.transfers.close()  # the server stops: the transfer saves its partial
    assert (tmp_path / "cache" / "partial-v1" / f"{ti.sha256(BIG)}.part").exists()
    with pulled(tmp_path / "cache", ti) as p:
        bodies: list[bytes] = []
        threads = [
            threading.Thread(target=lambda: bodies.append(get(p.port, fetch_path("cu118", BIG))[2]))
            for _ in range(2)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    assert [hashlib.sha256(b).hexdigest() for b in bodies] == [ti.sha256(BIG)] * 2
    assert upstream_bytes(ti.cdn, BIG) <= 1.05 * ti.built(BIG).size
