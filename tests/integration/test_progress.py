"""Progress bars appear on a terminal and stay off the pipe."""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios
from pathlib import Path

from tests.support.torchindex import TorchIndex

FN = "torch-2.4.0+cu118-cp39-cp39-win_amd64.whl"


def _args(ti: TorchIndex, cache: Path) -> list[str]:
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
        "--torch-index",
        ti.torch_index_url,
        "--index-url",
        ti.deps_index_url,
        "--cache-dir",
        str(cache),
    ]


def test_bars_on_a_terminal(torch_index: TorchIndex, tmp_path: Path) -> None:
    size = torch_index.file_path(FN).stat().st_size
    torch_index.cdn.fault(torch_index.url(FN), throttle_bps=size, times=1)  # about a second
    master, slave = pty.openpty()
    # A real terminal has a size; a fresh pty says 0 columns and tqdm would draw nothing.
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 160, 0, 0))
    proc = subprocess.Popen(
        _args(torch_index, tmp_path / "c"), stdout=subprocess.PIPE, stderr=slave
    )
    os.close(slave)
    chunks: list[bytes] = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO once the child closed its end
            break
        if not data:
            break
        chunks.append(data)
    out, _ = proc.communicate(timeout=120)
    os.close(master)
    assert proc.returncode == 0
    screen = b"".join(chunks).decode("utf-8", "replace")
    assert "total" in screen and "torch-2.4.0+cu118-cp39-cp39-win_amd64.wh" in screen
    assert "MB" in screen or "kB" in screen
    assert b"\r" not in out  # bars never go to stdout


def test_no_bars_when_stderr_is_not_a_terminal(torch_index: TorchIndex, tmp_path: Path) -> None:
    proc = subprocess.run(_args(torch_index, tmp_path / "c"), capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert b"\r" not in proc.stderr and b"total" not in proc.stderr
