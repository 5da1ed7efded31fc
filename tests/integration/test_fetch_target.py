"""``fetch --target FILE`` and ``--cuda auto`` with a description written by the probe."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import wheelcache
from tests.support.torchindex import TorchIndex
from wheelcache.cli.main import main

PROBE = Path(wheelcache.__file__).parent / "host" / "probe_script.py"


@pytest.fixture
def description(tmp_path: Path) -> dict[str, Any]:
    out = tmp_path / "probe.json"
    subprocess.run([sys.executable, str(PROBE), "--no-nvidia", "--output", str(out)], check=True)
    data: dict[str, Any] = json.loads(out.read_text())
    return data


def _fetch(ti: TorchIndex, tmp_path: Path, target: Path, *args: str) -> Any:
    return CliRunner().invoke(
        main,
        [
            "fetch",
            "--target",
            str(target),
            "--torch-index",
            ti.torch_index_url,
            "--index-url",
            ti.deps_index_url,
            "--cache-dir",
            str(tmp_path / "c"),
            "--dry-run",
            "--json",
            *args,
        ],
    )


def test_fetch_for_a_probed_target_uses_its_tags(
    torch_index: TorchIndex, tmp_path: Path, description: dict[str, Any]
) -> None:
    target = tmp_path / "t.json"
    target.write_text(json.dumps(description))
    result = _fetch(torch_index, tmp_path, target, "--cpu", "--torch", "2.4.0")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    py = description["python"]["abi"]
    torch = next(f for f in data["files"] if f["project"] == "torch")
    assert torch["filename"] == f"torch-2.4.0+cpu-{py}-{py}-linux_x86_64.whl"
    assert data["target"]["markers"] == description["markers"]


def test_cuda_auto_picks_the_newest_variant_the_driver_runs_and_the_index_has(
    torch_index: TorchIndex, tmp_path: Path, description: dict[str, Any]
) -> None:
    description["nvidia"] = {
        "driver_version": "550.54.14",  # CUDA 12.4 in full: cu124 is not on this index
        "gpus": [{"name": "Tesla K80", "compute_capability": "3.7"}],
        "error": None,
    }
    target = tmp_path / "t.json"
    target.write_text(json.dumps(description))
    result = _fetch(torch_index, tmp_path, target, "--cuda", "auto", "--torch", "2.4.0")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["target"]["variant"] == "cu121"
    assert "--cuda auto: driver 550.54.14 supports CUDA up to 12.4; picked cu121" in result.stderr
    assert "Tesla K80" in result.stderr  # compute capability 3.7 is too old for cu121 builds


def test_cuda_auto_without_a_driver_is_a_clear_error(
    torch_index: TorchIndex, tmp_path: Path, description: dict[str, Any]
) -> None:
    target = tmp_path / "t.json"
    target.write_text(json.dumps(description))
    result = _fetch(torch_index, tmp_path, target, "--cuda", "auto")
    assert result.exit_code == 1
    assert "reports no NVIDIA driver" in result.stderr and "--cpu" in result.stderr


def test_target_conflicts_with_py_and_platform(tmp_path: Path) -> None:
    target = tmp_path / "t.json"
    target.write_text("{}")
    result = CliRunner().invoke(main, ["fetch", "--target", str(target), "--py", "39"])
    assert result.exit_code == 2 and "--target already gives" in result.stderr


def test_broken_target_file_is_one_line(tmp_path: Path) -> None:
    target = tmp_path / "t.json"
    target.write_text("{not json")
    result = CliRunner().invoke(main, ["fetch", "--target", str(target), "--cpu"])
    assert result.exit_code == 1
    assert len(result.stderr.strip().splitlines()) == 1 and str(target) in result.stderr
