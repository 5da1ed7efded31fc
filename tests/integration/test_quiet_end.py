"""Nothing after the last line, nothing left behind.

torch 2.3.1 has no PEP 658 file on the test index, so its METADATA is read from the wheel;
when the server ignores ranges, the whole wheel is read (and kept, verified).  A dry run
writes nothing to partial-v1, a failed read leaves no partial, and Ctrl-C during such a read
ends with the "interrupted" line — no false "does not support ranges", no 0-byte partial.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from click.testing import CliRunner

from tests.support.torchindex import TorchIndex
from wheelcache.cli.main import main

WHEEL = "torch-2.3.1+cu118-cp39-cp39-win_amd64.whl"
TARGET = ["--cuda", "118", "--py", "39", "--platform", "win_amd64", "--torch", "2.3.1"]


def _args(ti: TorchIndex, cache: Path) -> list[str]:
    return [
        "fetch",
        *TARGET,
        "--torch-index",
        ti.torch_index_url,
        "--index-url",
        ti.deps_index_url,
        "--cache-dir",
        str(cache),
        "torch",
    ]


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def _wheel_path(ti: TorchIndex) -> str:
    return ti.built(WHEEL).spec.url_path


def test_a_dry_run_reads_a_wheel_without_ranges_outside_partial_v1(
    torch_index: TorchIndex, tmp_path: Path
) -> None:
    torch_index.cdn.fault(_wheel_path(torch_index), no_ranges=True, times=None)
    cache = tmp_path / "c"
    result = CliRunner().invoke(main, [*_args(torch_index, cache), "--dry-run"])
    assert result.exit_code == 0, result.stderr
    assert WHEEL in result.stdout and "nothing was downloaded (--dry-run)" in result.stdout
    assert result.stderr == (
        f"wheelcache: WARNING: {WHEEL}: the server does not support ranges; reading it whole "
        "for its metadata (it stays in the cache)\n"
    )
    assert _files(cache / "partial-v1") == [] and _files(cache / "tmp-v1") == []
    assert WHEEL in _files(cache / "wheels-v1")  # verified and kept: no second transfer


def test_a_failed_metadata_read_leaves_no_partial(torch_index: TorchIndex, tmp_path: Path) -> None:
    """The wheel is gone (404): the range read fails, the whole read fails; no 0-byte
    partial of it is left in partial-v1."""
    torch_index.cdn.fault(_wheel_path(torch_index), status=404, times=None)
    cache = tmp_path / "c"
    result = CliRunner().invoke(main, _args(torch_index, cache))
    assert result.exit_code == 1
    assert result.stderr.splitlines()[-1].startswith("wheelcache: error: ")
    assert "torch-2.3.1%2Bcu118-cp39-cp39-win_amd64.whl" in result.stderr.splitlines()[-1]
    assert _files(cache / "partial-v1") == []


def test_ctrl_c_during_a_whole_wheel_read_is_the_last_line_and_leaves_nothing(
    torch_index: TorchIndex, tmp_path: Path
) -> None:
    path = _wheel_path(torch_index)
    torch_index.cdn.fault(path, no_ranges=True, stall_after=1000, stall_seconds=60, times=None)
    cache = tmp_path / "c"
    env = {k: v for k, v in os.environ.items() if not k.startswith("WHEELCACHE_")}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from wheelcache.cli.main import main; main()",
            *_args(torch_index, cache),
            "--stall",
            "2",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**env, "WHEELCACHE_CONFIG": os.devnull},
    )
    try:
        deadline = time.monotonic() + 60
        while not torch_index.cdn.count(path, method="GET") and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)  # the body has started (and stalled)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    lines = err.splitlines()
    assert proc.returncode == 130, err
    assert lines[-1] == (
        "wheelcache: interrupted; partial downloads are kept and resume on the next run"
    )
    assert "range read failed" not in err and out == ""
    assert [ln for ln in lines if "does not support ranges" in ln] == [lines[0]]  # before ^C
    # The resolver's own read leaves nothing; a background prefetch of the same wheel that was
    # reading when ^C came keeps its partial as every download does (it resumes next run):
    # never an empty one, never one without its state.
    left = _files(cache / "partial-v1")
    parts = [n for n in left if n.endswith(".part")]
    assert sorted(left) == sorted([*parts, *(n[: -len(".part")] + ".json" for n in parts)])
    assert all((cache / "partial-v1" / n).stat().st_size > 0 for n in parts)
