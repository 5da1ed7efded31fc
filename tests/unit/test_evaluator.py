from __future__ import annotations

import pytest
from packaging.version import Version

from wheelcache.core.evaluator import best_per_version, evaluate_file
from wheelcache.core.models import DistFile
from wheelcache.core.target import make_target

WIN39 = make_target(python="39", platform="win_amd64", variant="cu118")
LINUX39 = make_target(python="39", platform="linux_x86_64", variant="cu118")


def _f(name: str, **kw: object) -> DistFile:
    return DistFile(name, f"https://h.invalid/{name}", **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("filename", "kw", "reason"),
    [
        ("torch-2.4.0.tar.gz", {}, "source distribution"),
        ("torch-2.4.0+cu118-cp310-cp310-win_amd64.whl", {}, "built for cp310-cp310-win_amd64"),
        ("torch-2.4.0+cu118-cp39-cp39-linux_x86_64.whl", {}, "built for cp39-cp39-linux_x86_64"),
        ("torch-2.4.0+cu117-cp39-cp39-win_amd64.whl", {}, "built for +cu117, not cu118"),
        ("torch-2.4.0-cp39-cp39-win_amd64.whl", {}, "plain build without +cu118"),
        ("numpy-2.1.1-cp39-cp39-win_amd64.whl", {}, "belongs to numpy"),
        (
            "torch-2.4.0+cu118-cp39-cp39-win_amd64.whl",
            {"requires_python": ">=3.10"},
            "requires Python >=3.10",
        ),
        ("torch-bad.whl", {}, "invalid wheel filename"),
    ],
)
def test_rejections_carry_reasons(filename: str, kw: dict[str, object], reason: str) -> None:
    ev = evaluate_file(_f(filename, **kw), "torch", WIN39, variant="cu118")  # type: ignore[arg-type]
    assert not ev.ok
    assert reason in ev.reason


def test_plain_index_takes_wheels_without_local_version() -> None:
    ev = evaluate_file(_f("torch-2.4.0-cp39-cp39-win_amd64.whl"), "torch", WIN39, variant=None)
    assert ev.ok and ev.candidate is not None and ev.candidate.version == Version("2.4.0")


def test_cpu_variant_accepts_plain_macos_wheels() -> None:
    mac = make_target(python="39", platform="macosx_11_0_arm64", variant="cpu")
    ev = evaluate_file(
        _f("torch-2.4.0-cp39-none-macosx_11_0_arm64.whl"), "torch", mac, variant="cpu"
    )
    assert ev.ok


def test_musllinux_and_other_arch_never_fit_linux_x86_64() -> None:
    for name in (
        "numpy-2.0.2-cp39-cp39-musllinux_1_1_x86_64.whl",
        "numpy-2.0.2-cp39-cp39-manylinux_2_17_aarch64.manylinux2014_aarch64.whl",
        "numpy-2.0.2-cp39-cp39-manylinux_2_34_x86_64.whl",
    ):
        assert not evaluate_file(_f(name), "numpy", LINUX39).ok, name
    assert evaluate_file(
        _f("numpy-2.0.2-cp39-cp39-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"), "numpy", LINUX39
    ).ok


def test_ranking_prefers_best_tag_then_build_tag() -> None:
    files = [
        _f("triton-3.0.0-cp39-cp39-manylinux2014_x86_64.manylinux_2_17_x86_64.whl"),
        _f("triton-3.0.0-1-cp39-cp39-manylinux2014_x86_64.manylinux_2_17_x86_64.whl"),
        _f("triton-2.3.1-cp39-cp39-manylinux_2_28_x86_64.whl"),
        _f("triton-2.3.1-py3-none-any.whl"),
    ]
    best = best_per_version(evaluate_file(f, "triton", LINUX39) for f in files)
    assert [c.file.filename for c in best] == [
        "triton-3.0.0-1-cp39-cp39-manylinux2014_x86_64.manylinux_2_17_x86_64.whl",
        "triton-2.3.1-cp39-cp39-manylinux_2_28_x86_64.whl",
    ]
    assert best[0].build == (1, "")
