"""A killed fetch leaves a resumable partial; the next run continues it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.support.torchindex import TorchIndex

FN = "torch-2.4.0+cu118-cp39-cp39-win_amd64.whl"


def _done(state: dict[str, list[list[int]]]) -> int:
    return sum(pos - start for start, pos, _end in state["segments"])


def _cmd(ti: TorchIndex, cache: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "wheelcache",
        "fetch",
        "--cuda",
        "118",
        "--py",
        "39",
        "--platform",
        "win_amd64",
        "--torch",
        "2.4.0",
        "--no-deps",
        "torch",
        "--torch-index",
        ti.torch_index_url,
        "--index-url",
        ti.deps_index_url,
        "--cache-dir",
        str(cache),
        "--json",
    ]


def test_kill_9_then_resume(torch_index: TorchIndex, tmp_path: Path) -> None:
    size = torch_index.file_path(FN).stat().st_size
    torch_index.cdn.fault(torch_index.url(FN), throttle_bps=size // 8, times=None)  # ~8 s
    cache = tmp_path / "c"
    env = {k: v for k, v in os.environ.items() if not k.startswith("WHEELCACHE_")}
    proc = subprocess.Popen(
        _cmd(torch_index, cache), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    state_file = cache / "partial-v1" / f"{torch_index.sha256(FN)}.json"
    deadline = time.monotonic() + 60
    done = 0
    while time.monotonic() < deadline and done < size // 4:
        time.sleep(0.1)
        try:
            done = _done(json.loads(state_file.read_text()))
        except (OSError, ValueError, KeyError):
            continue
    assert done >= size // 4, "the partial state was never saved while downloading"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert not (cache / "wheels-v1" / FN).exists()  # nothing half-written became visible
    saved = _done(json.loads(state_file.read_text()))

    torch_index.clear()
    again = subprocess.run(
        _cmd(torch_index, cache), env=env, capture_output=True, text=True, timeout=120
    )
    assert again.returncode == 0, again.stderr
    (f,) = json.loads(again.stdout)["files"]
    assert f["sha256"] == torch_index.sha256(FN)
    gets = [r for r in torch_index.cdn.requests if r.path.endswith(FN) and r.method == "GET"]
    assert [r.range for r in gets] == [f"bytes={saved}-{size - 1}"]
    assert saved + gets[0].body_bytes == size
    assert "resuming" in again.stderr
    assert not state_file.exists()
