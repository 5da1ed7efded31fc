"""Mirrors (PEP 503 tree and flat listing) with official hashes, and the CDN fallback."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from tests.support.httpserver import FileServer
from tests.support.torchindex import TorchIndex
from wheelcache.cli.main import main
from wheelcache.store.catalog import Catalog

FAMILY = (
    "torch-2.4.0+cu118-cp39-cp39-win_amd64.whl",
    "torchvision-0.19.0+cu118-cp39-cp39-win_amd64.whl",
    "torchaudio-2.4.0+cu118-cp39-cp39-win_amd64.whl",
)
ARGS = (
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
    "torchvision",
    "torchaudio",
    "--retries",
    "1",
)


def _project(filename: str) -> str:
    return filename.split("-")[0]


@pytest.fixture
def mirror(torch_index: TorchIndex) -> Iterator[FileServer]:
    """A mirror with both layouts: /pytorch-wheels/cu118/<project>/ and /flat/cu118/."""
    with FileServer() as srv:
        flat = []
        for fn in FAMILY:
            quoted = fn.replace("+", "%2B")
            srv.add(f"/pytorch-wheels/cu118/files/{fn}", torch_index.file_path(fn))
            srv.add(f"/flat/cu118/{fn}", torch_index.file_path(fn))
            page = (f'<html><body><a href="../files/{quoted}">{fn}</a></body></html>').encode()
            srv.add(f"/pytorch-wheels/cu118/{_project(fn)}/", page, content_type="text/html")
            flat.append(f'<a href="{fn.replace("+", "&#43;")}">{fn[:20]}..&gt;</a>')
        srv.add(
            "/flat/cu118/",
            ("<html><pre>" + "\n".join(flat) + "</pre></html>").encode(),
            content_type="text/html",
        )
        yield srv


def _run(ti: TorchIndex, cache: Path, *extra: str, torch_index: str | None = None) -> Result:
    return CliRunner().invoke(
        main,
        [
            "fetch",
            *ARGS,
            "--torch-index",
            torch_index or ti.torch_index_url,
            "--index-url",
            ti.deps_index_url,
            "--cache-dir",
            str(cache),
            "--json",
            *extra,
        ],
    )


def _ok(result: Result) -> dict[str, Any]:
    assert result.exit_code == 0, result.stderr
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def _file_gets(srv: FileServer) -> list[str]:
    return [r.path for r in srv.requests if r.method == "GET" and r.path.endswith(".whl")]


@pytest.mark.parametrize("layout", ["pep503", "flat"])
def test_bytes_from_the_mirror_hashes_from_the_official_index(
    torch_index: TorchIndex, mirror: FileServer, tmp_path: Path, layout: str
) -> None:
    url = (
        f"{mirror.url}/pytorch-wheels/{{variant}}"
        if layout == "pep503"
        else f"flat+{mirror.url}/flat/{{variant}}"
    )
    data = _ok(_run(torch_index, tmp_path / "c", "--mirror", url))
    assert {f["filename"] for f in data["files"]} == set(FAMILY)
    for f in data["files"]:
        assert f["sha256"] == torch_index.sha256(f["filename"])  # the official hash
    assert len(_file_gets(mirror)) >= 3
    (row,) = Catalog(tmp_path / "c" / "catalog-v1.sqlite").by_filename(FAMILY[1])
    assert row.hash_origin == "index"


def test_corrupt_file_on_the_mirror_is_rejected_and_fetched_elsewhere(
    torch_index: TorchIndex, mirror: FileServer, tmp_path: Path
) -> None:
    bad = FAMILY[1]
    mirror.fault(f"/pytorch-wheels/cu118/files/{bad}", corrupt=True, times=None)
    pep503 = f"{mirror.url}/pytorch-wheels/{{variant}}"
    result = _run(torch_index, tmp_path / "c", "--mirror", pep503)
    data = _ok(result)
    got = next(f for f in data["files"] if f["filename"] == bad)
    assert got["sha256"] == torch_index.sha256(bad)
    assert "rejected" in result.stderr and mirror.url in result.stderr


def test_file_missing_on_the_mirror_comes_from_the_official_index(
    torch_index: TorchIndex, mirror: FileServer, tmp_path: Path
) -> None:
    gone = FAMILY[2]
    mirror.remove(f"/pytorch-wheels/cu118/files/{gone}")
    mirror.remove(f"/pytorch-wheels/cu118/{_project(gone)}/")
    data = _ok(
        _run(torch_index, tmp_path / "c", "--mirror", f"{mirror.url}/pytorch-wheels/{{variant}}")
    )
    assert {f["filename"] for f in data["files"]} == set(FAMILY)
    assert torch_index.cdn.count(gone, method="GET") >= 1


def test_mirror_failing_mid_file_is_dropped(
    torch_index: TorchIndex, mirror: FileServer, tmp_path: Path
) -> None:
    big = FAMILY[0]
    mirror.fault(f"/pytorch-wheels/cu118/files/{big}", status=503, times=None)
    pep503 = f"{mirror.url}/pytorch-wheels/{{variant}}"
    result = _run(torch_index, tmp_path / "c", "--mirror", pep503)
    data = _ok(result)
    assert next(f for f in data["files"] if f["filename"] == big)["sha256"] == (
        torch_index.sha256(big)
    )
    assert f"dropping {mirror.url}" in result.stderr


def test_official_index_unreachable_uses_the_mirror_and_says_whose_hashes(
    torch_index: TorchIndex, mirror: FileServer, tmp_path: Path
) -> None:
    dead = "http://127.0.0.1:9/whl/{variant}"  # the discard port: nothing listens there
    result = _run(
        torch_index,
        tmp_path / "c",
        "--mirror",
        f"flat+{mirror.url}/flat/{{variant}}",
        torch_index=dead,
    )
    data = _ok(result)
    assert {f["filename"] for f in data["files"]} == set(FAMILY)
    assert "the hashes are the mirror's (it gives none" in result.stderr
    (row,) = Catalog(tmp_path / "c" / "catalog-v1.sqlite").by_filename(FAMILY[0])
    assert row.hash_origin == "computed"


def test_cdn_failure_falls_back_to_the_same_path_on_the_index_host(
    torch_index: TorchIndex, tmp_path: Path
) -> None:
    fn = FAMILY[1]
    path = f"/whl/cu118/{fn}"
    torch_index.index.add(path, torch_index.file_path(fn))
    try:
        torch_index.cdn.fault(path, status=503, times=None)
        data = _ok(_run(torch_index, tmp_path / "c"))
        assert next(f for f in data["files"] if f["filename"] == fn)["sha256"] == (
            torch_index.sha256(fn)
        )
        assert torch_index.index.count(fn, method="GET") >= 1
    finally:
        torch_index.index.remove(path)


def test_unknown_mirror_name_is_a_usage_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["fetch", "--cpu", "--mirror", "nosuch"])
    assert result.exit_code == 2 and "unknown mirror 'nosuch'" in result.stderr


def test_named_mirror_from_the_config_file(
    torch_index: TorchIndex, mirror: FileServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f'[mirrors.lan]\nurl = "{mirror.url}/flat/{{variant}}"\nlayout = "flat"\n')
    monkeypatch.setenv("WHEELCACHE_CONFIG", str(config))
    _ok(_run(torch_index, tmp_path / "c", "--mirror", "lan"))
    assert len(_file_gets(mirror)) >= 3


def test_slow_mirror_gives_way_to_the_faster_source(
    torch_index: TorchIndex, mirror: FileServer, tmp_path: Path
) -> None:
    big = FAMILY[0]  # 4 MiB: split into segments over both sources
    size = torch_index.file_path(big).stat().st_size
    mirror.fault(f"/pytorch-wheels/cu118/files/{big}", throttle_bps=100_000, times=None)
    pep503 = f"{mirror.url}/pytorch-wheels/{{variant}}"
    data = _ok(_run(torch_index, tmp_path / "c", "--mirror", pep503, "--split-size", "1M"))
    assert next(f for f in data["files"] if f["filename"] == big)["sha256"] == (
        torch_index.sha256(big)
    )
    from_mirror = sum(r.body_bytes for r in mirror.requests if r.path.endswith(big))
    from_official = sum(r.body_bytes for r in torch_index.cdn.requests if r.path.endswith(big))
    assert from_official > size / 2 > from_mirror
