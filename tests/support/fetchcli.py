"""``wheelcache fetch --json`` for a cp39 Windows CPU target against a test index, run through
click's runner: the call several integration suites share."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from tests.support.torchindex import TorchIndex
from wheelcache.cli.main import main


def fetch_json(ti: TorchIndex, cache: Path, *args: str) -> tuple[int, str, str]:
    """(exit code, stdout, stderr)."""
    result = CliRunner().invoke(
        main,
        [
            "fetch",
            "--cpu",
            "--py",
            "39",
            "--platform",
            "win_amd64",
            "--torch-index",
            ti.torch_index_url,
            "--index-url",
            ti.deps_index_url,
            "--cache-dir",
            str(cache),
            "--json",
            *args,
        ],
    )
    return result.exit_code, result.stdout, result.stderr
