"""A plain torch index (no ``{variant}``: the package index, or a mirror of it).

Such an index carries one torch build per platform and no ``+cu124`` in the names; which
variant each build is shows in its requirements, as on the real package index: the Linux
x86_64 wheels require ``nvidia-cuda-runtime-cu12==12.4.127`` (2.5.1) or ``==12.1.105``
(2.4.0) under a Linux marker, the Windows wheels nothing.  ``fetch`` takes the build of the
variant asked for or says in one line which variants the index has for the target; ``matrix``
shows each build under its variant.  The index here is ``wheelcache serve`` over a cache of
such wheels (PEP 503/691 pages with PEP 658 metadata, as the package index serves them).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.integration._serve_wheels import Served, serve
from tests.support.cachefill import add_wheel
from tests.support.wheels import build_wheel
from wheelcache.cli.main import main
from wheelcache.config import pip_index_urls
from wheelcache.store.cache import Cache

LINUX_X86 = 'platform_system == "Linux" and platform_machine == "x86_64"'
RUNTIME = {"2.5.1": "12.4.127", "2.4.0": "12.1.105"}
VISION = {"2.5.1": "0.20.1", "2.4.0": "0.19.0"}


@pytest.fixture(scope="module")
def plain_index(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("plain-index")
    cache = Cache(root / "cache")
    build = root / "build"

    def add(name: str, version: str, tag: str = "py3-none-any", **kw: object) -> None:
        wheel = build_wheel(build, name, version, tag, **kw)  # type: ignore[arg-type]
        add_wheel(cache, wheel, name, version)

    for release, runtime in RUNTIME.items():
        common = ["filelock", f"nvidia-cuda-runtime-cu12=={runtime}; {LINUX_X86}"]
        add("torch", release, "cp39-cp39-manylinux1_x86_64", requires_dist=common)
        add("torch", release, "cp39-cp39-win_amd64", requires_dist=["filelock"])
        add("nvidia-cuda-runtime-cu12", runtime, "py3-none-manylinux2014_x86_64")
        for plat in ("manylinux1_x86_64", "win_amd64"):
            pin = [f"torch=={release}"]
            add("torchvision", VISION[release], f"cp39-cp39-{plat}", requires_dist=pin)
            add("torchaudio", release, f"cp39-cp39-{plat}", requires_dist=pin)
    add("filelock", "3.16.1")
    with serve(cache) as served:
        yield served


def _fetch(index: Served, tmp: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(
        main,
        [
            "fetch",
            "--py",
            "39",
            "--torch-index",
            index.index_url,
            "--index-url",
            index.index_url,
            "--cache-dir",
            str(tmp / "cache"),
            *args,
        ],
    )
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize(
    ("platform", "variant", "expected"),
    [
        ("linux_x86_64", ["--cuda", "124"], "torch-2.5.1-cp39-cp39-manylinux1_x86_64.whl"),
        ("linux_x86_64", ["--cuda", "12.1"], "torch-2.4.0-cp39-cp39-manylinux1_x86_64.whl"),
        ("win_amd64", ["--cpu"], "torch-2.5.1-cp39-cp39-win_amd64.whl"),
    ],
)
def test_fetch_takes_the_build_of_the_variant_asked_for(
    plain_index: Served, tmp_path: Path, platform: str, variant: list[str], expected: str
) -> None:
    code, out, err = _fetch(
        plain_index, tmp_path, "--platform", platform, *variant, "torch", "torchvision", "--json"
    )
    assert code == 0, err
    data = json.loads(out)
    files = {f["project"]: f["filename"] for f in data["files"]}
    assert files["torch"] == expected
    release = expected.split("-")[1]
    assert files["torchvision"].startswith(f"torchvision-{VISION[release]}-")
    wants_runtime = platform == "linux_x86_64"
    assert ("nvidia-cuda-runtime-cu12" in files) is wants_runtime
    asked = "cpu" if variant == ["--cpu"] else f"cu{variant[1].replace('.', '')}"
    assert data["target"]["variant"] == asked


@pytest.mark.parametrize(
    ("platform", "variant", "carried"),
    [
        ("linux_x86_64", "118", "it carries torch 2.5.1 as cu124; 2.4.0 as cu121"),
        ("win_amd64", "124", "it carries torch 2.5.1, 2.4.0 as cpu"),
    ],
)
def test_fetch_says_which_variants_the_index_carries(
    plain_index: Served, tmp_path: Path, platform: str, variant: str, carried: str
) -> None:
    code, out, err = _fetch(plain_index, tmp_path, "--platform", platform, "--cuda", variant)
    assert code == 1 and out == ""
    assert err.count("\n") == 1, err
    assert (
        f"torch on {plain_index.index_url.rstrip('/')} (a plain index: each build's variant read "
        f"from its wheel) has no cu{variant} build for cp39-{platform}; {carried}"
    ) in err


def test_the_target_line_tells_the_truth(plain_index: Served, tmp_path: Path) -> None:
    """The newest torch here is a cu124 build: asked for cu121, the plan is 2.4.0, the
    cu121 build, under a cu121 label (it was 2.5.1 under that label)."""
    code, out, err = _fetch(
        plain_index, tmp_path, "--platform", "linux_x86_64", "--cuda", "121", "--dry-run", "torch"
    )
    assert code == 0, err
    assert out.startswith("Target: cp39-linux_x86_64 (cu121)\n")
    assert "torch-2.4.0-cp39-cp39-manylinux1_x86_64.whl" in out and "2.5.1" not in out


def test_matrix_shows_each_build_under_its_variant(plain_index: Served, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main,
        [
            "matrix",
            "--torch-index",
            plain_index.index_url,
            "--cache-dir",
            str(tmp_path / "cache"),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.stderr
    sets = {
        m["variant"]: [
            (s["torch"], s["torchvision"], s["torchaudio"], s["available"]) for s in m["sets"]
        ]
        for m in json.loads(result.stdout)["variants"]
    }
    assert sets == {
        "cu124": [("2.5.1", "0.20.1", "2.5.1", {"linux_x86_64": ["cp39"]})],
        "cu121": [("2.4.0", "0.19.0", "2.4.0", {"linux_x86_64": ["cp39"]})],
        "cpu": [
            ("2.5.1", "0.20.1", "2.5.1", {"win_amd64": ["cp39"]}),
            ("2.4.0", "0.19.0", "2.4.0", {"win_amd64": ["cp39"]}),
        ],
    }


@pytest.mark.network
def test_the_live_package_index_as_a_plain_torch_index(tmp_path: Path) -> None:
    """The live package index (its URL from pip's configuration on this machine, read at run
    time): torch 2.5.1 is a cu124 build for Linux x86_64 and a CPU build for Windows."""
    environ = {k: v for k, v in os.environ.items() if k != "PIP_CONFIG_FILE"}
    index = pip_index_urls(environ)[0][0]
    args = ["--py", "311", "--torch", "2.5.1", "--torch-index", index, "--index-url", index]
    args += ["--cache-dir", str(tmp_path / "cache"), "torch", "--dry-run"]
    runner = CliRunner()
    linux = runner.invoke(main, ["fetch", *args, "--platform", "linux_x86_64", "--cuda", "124"])
    assert linux.exit_code == 0, linux.stderr
    assert "torch-2.5.1-cp311-cp311-manylinux1_x86_64.whl" in linux.stdout
    assert "nvidia_cuda_runtime_cu12-12.4.127" in linux.stdout
    wrong = runner.invoke(main, ["fetch", *args, "--platform", "linux_x86_64", "--cuda", "118"])
    assert wrong.exit_code == 1
    assert "has no cu118 build for cp311-linux_x86_64; it carries torch 2.5.1 as cu124" in (
        wrong.stderr
    )
    windows = runner.invoke(main, ["fetch", *args, "--platform", "win_amd64", "--cuda", "124"])
    assert windows.exit_code == 1
    assert "has no cu124 build for cp311-win_amd64; it carries torch 2.5.1 as cpu" in (
        windows.stderr
    )


@pytest.fixture(scope="module")
def old_releases(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """As on the package index: torchvision 0.11.3 declares a bare ``torch`` requirement."""
    root = tmp_path_factory.mktemp("old-releases")
    cache = Cache(root / "cache")
    for name, version, requires in [
        ("torch", "1.9.0", []),
        ("torch", "1.10.0", []),
        ("torchvision", "0.10.0", ["torch==1.9.0"]),
        ("torchvision", "0.11.3", ["torch"]),
        ("torchaudio", "0.9.0", ["torch==1.9.0"]),
        ("torchaudio", "0.10.0", ["torch==1.10.0"]),
    ]:
        wheel = build_wheel(
            root / "b", name, version, "cp39-cp39-win_amd64", requires_dist=requires
        )
        add_wheel(cache, wheel, name, version)
    with serve(cache) as served:
        yield served


def test_matrix_and_fetch_pair_an_unpinned_companion_by_one_rule(
    old_releases: Served, tmp_path: Path
) -> None:
    """matrix paired torchvision 0.11.3 with torch 1.9 too, while fetch --torch 1.9.0 took
    torchvision 0.10.0; both now follow the torch line derived from the index."""
    index = old_releases.index_url
    result = CliRunner().invoke(
        main, ["matrix", "--torch-index", index, "--cache-dir", str(tmp_path / "c"), "--json"]
    )
    assert result.exit_code == 0, result.stderr
    (table,) = json.loads(result.stdout)["variants"]
    assert [(s["torch"], s["torchvision"], s["torchaudio"]) for s in table["sets"]] == [
        ("1.10.0", "0.11.3", "0.10.0"),
        ("1.9.0", "0.10.0", "0.9.0"),
    ]
    code, out, err = _fetch(
        old_releases, tmp_path, "--cpu", "--platform", "win_amd64", "--torch", "1.9.0", "--json"
    )
    assert code == 0, err
    chosen = {f["project"]: f["version"] for f in json.loads(out)["files"]}
    assert (chosen["torchvision"], chosen["torchaudio"]) == ("0.10.0", "0.9.0")
