"""``wheelcache matrix`` over the generated index: computed from pages and metadata."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from tests.support.torchindex import RELEASES, TorchIndex, newest_complete_release
from wheelcache.cli.main import main


def _matrix(ti: TorchIndex, tmp_path: Path, *args: str) -> dict[str, Any]:
    result = CliRunner().invoke(
        main,
        [
            "matrix",
            "--torch-index",
            ti.torch_index_url,
            "--cache-dir",
            str(tmp_path / "c"),
            "--json",
            *args,
        ],
    )
    assert result.exit_code == 0, result.stderr
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def test_every_variant_on_the_index_and_the_pairs_from_metadata(
    torch_index: TorchIndex, tmp_path: Path
) -> None:
    data = _matrix(torch_index, tmp_path)
    assert [v["variant"] for v in data["variants"]] == ["cpu", "cu118", "cu121"]
    cu118 = data["variants"][1]
    pairs = {(s["torch"], s["torchvision"], s["torchaudio"]) for s in cu118["sets"]}
    assert pairs == {
        (f"{t}+cu118", f"{tv}+cu118", f"{ta}+cu118") for t, (tv, ta, _) in RELEASES.items()
    }
    newest = next(s for s in cu118["sets"] if s["torch"] == "2.5.1+cu118")
    assert "cp39" not in newest["available"]["win_amd64"]  # torchaudio 2.5.1 lacks it
    assert "cp39" in newest["available"]["linux_x86_64"]
    assert "cp38" not in newest["available"]["linux_x86_64"]  # torch 2.5.1 has no cp38


def test_filters_answer_the_users_question(torch_index: TorchIndex, tmp_path: Path) -> None:
    data = _matrix(torch_index, tmp_path, "--cuda", "118", "--py", "39", "--platform", "win_amd64")
    (variant,) = data["variants"]
    torches = [s["torch"] for s in variant["sets"]]
    assert torches[0] == f"{newest_complete_release('cu118', 'cp39', 'win_amd64')}+cu118"
    assert "2.5.1+cu118" not in torches


def test_cpu_merges_plain_macos_wheels_into_the_release(
    torch_index: TorchIndex, tmp_path: Path
) -> None:
    data = _matrix(torch_index, tmp_path, "--cpu", "--platform", "macosx_11_0_arm64")
    (variant,) = data["variants"]
    assert variant["sets"] and all("macosx_arm64" in s["available"] for s in variant["sets"])


def test_human_table(torch_index: TorchIndex, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main,
        [
            "matrix",
            "--cuda",
            "118",
            "--torch-index",
            torch_index.torch_index_url,
            "--cache-dir",
            str(tmp_path / "c"),
        ],
    )
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("cu118  (")
    assert lines[1].split() == ["torch", "torchvision", "torchaudio", "linux_x86_64", "win_amd64"]
    assert lines[2].split()[:3] == ["2.5.1+cu118", "0.20.1+cu118", "2.5.1+cu118"]
    assert "cp310–cp312" in lines[2]


def test_offline_matrix_from_cached_pages(torch_index: TorchIndex, tmp_path: Path) -> None:
    online = _matrix(torch_index, tmp_path, "--cuda", "121")
    torch_index.clear()
    offline = _matrix(torch_index, tmp_path, "--cuda", "121", "--offline")
    assert offline == online
    assert sum(len(s.requests) for s in torch_index.servers) == 0


def test_matrix_of_a_plain_index_is_one_table_per_build_variant(
    torch_index: TorchIndex, tmp_path: Path
) -> None:
    result = CliRunner().invoke(
        main,
        [
            "matrix",
            "--torch-index",
            torch_index.variant_url("cu118"),
            "--cache-dir",
            str(tmp_path / "c"),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.stderr
    # Used as one plain index, the cu118 tree's builds are told apart by the wheels: the
    # +cu118 ones, and the plain aarch64 ones, which require no CUDA (issue 10, item 6).
    tables = {t["variant"]: t for t in json.loads(result.stdout)["variants"]}
    assert {
        v: [(s["torch"], sorted(s["available"])) for s in t["sets"]] for v, t in tables.items()
    } == {
        "cu118": [
            (f"{r}+cu118", ["linux_x86_64", "win_amd64"]) for r in ("2.5.1", "2.4.0", "2.3.1")
        ],
        "cpu": [(r, ["linux_aarch64"]) for r in ("2.5.1", "2.4.0", "2.3.1")],
    }


def test_matrix_offline_skips_variants_never_fetched(
    torch_index: TorchIndex, tmp_path: Path
) -> None:
    args = [
        "matrix",
        "--torch-index",
        torch_index.torch_index_url,
        "--cache-dir",
        str(tmp_path / "c"),
        "--json",
    ]
    assert CliRunner().invoke(main, [*args, "--cuda", "121"]).exit_code == 0
    result = CliRunner().invoke(main, [*args, "--offline"])
    assert result.exit_code == 0, result.stderr
    assert [v["variant"] for v in json.loads(result.stdout)["variants"]] == ["cu121"]
