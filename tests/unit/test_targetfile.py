"""Target descriptions → Target; the CUDA variant a driver implies; GPUs a build cannot run."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from packaging import tags as ptags
from packaging.markers import Marker, default_environment

from wheelcache.core.cuda import (
    CUDA_DRIVER_MINIMUM,
    CUDA_FULL_SUPPORT,
    TORCH_CUDA_ARCHS,
    GpuInfo,
    choose_cuda_variant,
    cuda_version_of,
    gpu_warning,
)
from wheelcache.core.variants import KNOWN_VARIANTS
from wheelcache.errors import TargetError
from wheelcache.host import probe_script
from wheelcache.host.targetfile import (
    load_target,
    parse_target_description,
    read_target_description,
)

WINDOWS_PY39: dict[str, Any] = {
    "format": "wheelcache-target",
    "version": 1,
    "created_at": "2024-07-01T10:00:00Z",
    "python": {"version": "3.9.13", "implementation": "cpython", "abi": "cp39"},
    "tags": [
        "cp39-cp39-win_amd64",
        "cp39-abi3-win_amd64",
        "cp39-none-win_amd64",
        "cp38-abi3-win_amd64",
        "py39-none-win_amd64",
        "py3-none-win_amd64",
        "cp39-none-any",
        "py39-none-any",
        "py3-none-any",
    ],
    "markers": {
        "implementation_name": "cpython",
        "implementation_version": "3.9.13",
        "os_name": "nt",
        "platform_machine": "AMD64",
        "platform_python_implementation": "CPython",
        "platform_release": "10",
        "platform_system": "Windows",
        "platform_version": "10.0.19045",
        "python_full_version": "3.9.13",
        "python_version": "3.9",
        "sys_platform": "win32",
    },
    "platform": {
        "system": "Windows",
        "machine": "AMD64",
        "glibc": None,
        "musl": None,
        "macos": None,
        "platform_tag": "win_amd64",
    },
    "nvidia": {
        "driver_version": "522.06",
        "gpus": [{"name": "NVIDIA GeForce RTX 3060", "compute_capability": "8.6"}],
        "error": None,
    },
}


def _write(tmp_path: Path, data: Any, name: str = "target.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


# --- reading --------------------------------------------------------------------------------


def test_this_machine_round_trips_to_the_same_tags_and_markers(tmp_path: Path) -> None:
    path = tmp_path / "me.json"
    path.write_text(probe_script.dumps(probe_script.probe(nvidia=False)), encoding="utf-8")
    target = load_target(path, "cu124")
    assert [str(t) for t in target.tags] == [str(t) for t in ptags.sys_tags()]
    assert target.marker_environment == default_environment()
    assert target.variant == "cu124"
    assert target.tag_list is not None and target.markers
    desc = read_target_description(path)
    assert target.platforms == desc.platforms
    assert "any" not in target.platforms


def test_windows_description_becomes_a_windows_target(tmp_path: Path) -> None:
    target = load_target(_write(tmp_path, WINDOWS_PY39), "cu118")
    assert (target.python, target.abi, target.os, target.machine) == (
        (3, 9),
        "cp39",
        "windows",
        "AMD64",
    )
    assert target.platforms == ("win_amd64",)
    assert target.platform == "win_amd64"
    assert target.describe() == "cp39-win_amd64 (cu118)"
    assert [str(t) for t in target.tags] == WINDOWS_PY39["tags"]
    env = target.marker_environment
    assert env["platform_version"] == "10.0.19045"  # the host's own value, not a guess
    assert not Marker('platform_system == "Linux"').evaluate(env)
    assert Marker('sys_platform == "win32" and python_version < "3.10"').evaluate(env)
    assert target.to_dict()["platform"] == "win_amd64"


def test_description_fields() -> None:
    desc = parse_target_description(WINDOWS_PY39, source="t.json")
    assert desc.python == (3, 9)
    assert desc.driver_version == "522.06"
    assert desc.gpus == (GpuInfo("NVIDIA GeForce RTX 3060", "8.6"),)
    assert desc.system == "windows" and desc.glibc is None
    assert desc.choose_cuda_variant() == (
        "cu118",
        "driver 522.06 supports CUDA up to 11.8; picked cu118",
    )


def test_linux_description_keeps_glibc() -> None:
    data = copy.deepcopy(WINDOWS_PY39)
    data["tags"] = ["cp39-cp39-manylinux_2_31_x86_64", "cp39-cp39-linux_x86_64", "py3-none-any"]
    data["platform"].update(system="Linux", machine="x86_64", glibc="2.31", platform_tag=None)
    data["markers"].update(platform_machine="x86_64", platform_system="Linux", sys_platform="linux")
    target = parse_target_description(data).to_target()
    assert (target.os, target.glibc, target.platform) == ("linux", (2, 31), "linux_x86_64")
    assert target.platforms == ("manylinux_2_31_x86_64", "linux_x86_64")


def test_utf16_and_bom_files_are_read(tmp_path: Path) -> None:
    """PowerShell 5's ``>`` writes UTF-16 with a BOM; Notepad writes a UTF-8 BOM."""
    text = json.dumps(WINDOWS_PY39)
    (tmp_path / "a.json").write_bytes(text.encode("utf-16"))
    (tmp_path / "b.json").write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    for name in ("a.json", "b.json"):
        assert read_target_description(tmp_path / name).python_version == "3.9.13"


def _broken(change: Any) -> dict[str, Any]:
    data = copy.deepcopy(WINDOWS_PY39)
    change(data)
    return data


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([1, 2], "no JSON object"),
        (_broken(lambda d: d.update(format="something-else")), "format 'something-else'"),
        (_broken(lambda d: d.pop("format")), "format None"),
        (_broken(lambda d: d.update(version=2)), "newer probe (format version 2)"),
        (_broken(lambda d: d.update(version="1")), "format version '1'"),
        (_broken(lambda d: d["python"].pop("version")), "python: field 'version' is missing"),
        (_broken(lambda d: d["python"].update(version="three")), "is not like 3.9.13"),
        (_broken(lambda d: d["python"].update(implementation="pypy")), "runs pypy"),
        (_broken(lambda d: d.pop("tags")), "field 'tags' is missing"),
        (_broken(lambda d: d.update(tags=[])), "'tags' is empty"),
        (_broken(lambda d: d.update(tags=["cp39-cp39"])), "'cp39-cp39' in 'tags'"),
        (_broken(lambda d: d.update(tags="cp39-cp39-win_amd64")), "'tags' has the wrong type"),
        (_broken(lambda d: d["markers"].pop("sys_platform")), "markers lack sys_platform"),
        (_broken(lambda d: d["markers"].update(os_name=3)), "must be a string"),
        (_broken(lambda d: d.pop("platform")), "field 'platform' is missing"),
        (_broken(lambda d: d["platform"].update(system="FreeBSD")), "runs FreeBSD"),
        (_broken(lambda d: d["platform"].update(glibc="new")), "'new' is not a version"),
        (_broken(lambda d: d["nvidia"].update(driver_version="R550")), "'R550' is not like"),
        (_broken(lambda d: d["nvidia"].update(gpus=[{"compute_capability": "8.6"}])), "name"),
        (_broken(lambda d: d.update(nvidia="yes")), "'nvidia' must be an object"),
    ],
)
def test_bad_descriptions_fail_with_one_clear_line(tmp_path: Path, data: Any, message: str) -> None:
    with pytest.raises(TargetError) as info:
        load_target(_write(tmp_path, data))
    text = str(info.value)
    assert message in text
    assert "\n" not in text
    assert str(tmp_path / "target.json") in text


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(TargetError, match="does not exist; write it on the target with"):
        load_target(tmp_path / "nope.json")


def test_directory_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(TargetError, match="cannot read target file"):
        load_target(tmp_path)


def test_bad_json(tmp_path: Path) -> None:
    path = tmp_path / "t.json"
    path.write_text('{"format": "wheelcache-target",\n "version": 1,,}', encoding="utf-8")
    with pytest.raises(TargetError, match=r"is not valid JSON \(line 2 column"):
        load_target(path)


def test_not_text(tmp_path: Path) -> None:
    path = tmp_path / "t.json"
    path.write_bytes(b"\x80\x81\x82 not utf-8")
    with pytest.raises(TargetError, match="is not UTF-8 text"):
        load_target(path)


def test_unknown_variant_is_refused(tmp_path: Path) -> None:
    with pytest.raises(TargetError, match="is not a PyTorch variant"):
        load_target(_write(tmp_path, WINDOWS_PY39), "cu12x")


def test_no_driver_means_no_auto_variant() -> None:
    data = _broken(lambda d: d.update(nvidia={"driver_version": None, "gpus": [], "error": None}))
    with pytest.raises(TargetError, match=r"reports no NVIDIA driver \(nvidia-smi not found\)"):
        parse_target_description(data, "t.json").choose_cuda_variant()
    data["nvidia"]["error"] = "nvidia-smi exited with status 9: NVIDIA-SMI has failed"
    with pytest.raises(TargetError, match="status 9"):
        parse_target_description(data, "t.json").choose_cuda_variant()


# --- choose_cuda_variant --------------------------------------------------------------------

TORCH24 = ("cpu", "cu118", "cu121", "cu124")
TORCH28 = ("cpu", "cu126", "cu128", "cu129")


@pytest.mark.parametrize(
    ("driver", "os", "available", "variant", "reason"),
    [
        # Full support: the newest variant the driver's CUDA release covers.
        ("535.104.05", "linux", TORCH24, "cu121", "supports CUDA up to 12.2; picked cu121"),
        ("550.54.14", "linux", TORCH24, "cu124", "up to 12.4"),
        ("550.54.13", "linux", TORCH24, "cu121", "up to 12.3"),
        ("550.54.14", "windows", TORCH24, "cu121", "up to 12.3"),  # Windows needs 551.61
        ("551.61", "windows", TORCH24, "cu124", "up to 12.4"),
        ("520.61.05", "linux", TORCH24, "cu118", "up to 11.8"),
        ("520.06", "windows", TORCH24, "cu118", "up to 11.8"),
        ("530.30.02", "linux", TORCH24, "cu121", "up to 12.1"),
        ("560.28.03", "linux", KNOWN_VARIANTS, "cu126", "up to 12.6"),
        ("560.76", "windows", KNOWN_VARIANTS, "cu126", "up to 12.6"),
        ("570.26", "linux", KNOWN_VARIANTS, "cu128", "up to 12.8"),
        ("570.65", "windows", KNOWN_VARIANTS, "cu128", "up to 12.8"),
        ("575.51.03", "linux", KNOWN_VARIANTS, "cu129", "up to 12.9"),
        ("580.65.06", "linux", KNOWN_VARIANTS, "cu130", "up to 13.0"),
        ("590.44.01", "linux", TORCH28, "cu129", "up to 13.0"),
        ("440.33", "linux", ("cu102", "cu118"), "cu102", "up to 10.2"),
        ("418.39", "windows", ("cu92", "cu101"), "cu92", "up to 10.0"),  # 10.1 needs 418.96
        # Minor-version compatibility when nothing that old is offered: the closest one.
        ("525.60.13", "linux", TORCH28, "cu126", "CUDA 12.x minor-version compatibility"),
        ("528.33", "windows", TORCH28, "cu126", "driver >= 528.33"),
        ("470.182.03", "linux", TORCH24, "cu118", "up to 11.4; nothing that old is available"),
        ("452.39", "windows", ("cu118", "cu121"), "cu118", "CUDA 11.x minor-version"),
    ],
)
def test_choose_cuda_variant(
    driver: str, os: str, available: tuple[str, ...], variant: str, reason: str
) -> None:
    chosen, why = choose_cuda_variant(driver, os, available)
    assert chosen == variant
    assert reason in why
    assert why.startswith(f"driver {driver} supports ")
    assert why.endswith(variant) or "compatibility" in why


@pytest.mark.parametrize(
    ("driver", "os", "available", "message"),
    [
        (
            "390.48",
            "linux",
            TORCH24,
            "too old for every CUDA variant offered (cu118, cu121, cu124)",
        ),
        ("450.80.01", "linux", ("cu118",), "cu118 needs >= 450.80.02 on linux"),
        ("525.60.12", "linux", TORCH28, "cu126 needs >= 525.60.13"),
        ("528.32", "windows", TORCH28, "cu126 needs >= 528.33 on windows"),
        ("410.47", "linux", ("cu100",), "cu100 needs >= 410.48"),
        ("550.54.14", "macos", KNOWN_VARIANTS, "no CUDA builds for macos"),
        ("550.54.14", "linux", ("cpu", "rocm6.1"), "no CUDA variant to choose from"),
        ("five-fifty", "linux", TORCH24, "is not like 550.54.14"),
    ],
)
def test_choose_cuda_variant_refuses(
    driver: str, os: str, available: tuple[str, ...], message: str
) -> None:
    with pytest.raises(TargetError, match=message.replace("(", r"\(").replace(")", r"\)")):
        choose_cuda_variant(driver, os, available)


def test_tables_are_consistent() -> None:
    """Every published CUDA variant is in the full-support table (cu92 … cu130), each CUDA
    major's minor-compatibility minimum is no higher than the full support of its x.0, and
    newer CUDA releases never need an older driver."""
    for name in KNOWN_VARIANTS:
        version = cuda_version_of(name)
        if version is not None:
            assert version in CUDA_FULL_SUPPORT, name
    for column in (0, 1):
        keys = sorted(CUDA_FULL_SUPPORT)
        values = [tuple(map(int, CUDA_FULL_SUPPORT[k][column].split("."))) for k in keys]
        assert values == sorted(values)
    assert set(CUDA_DRIVER_MINIMUM) <= {major for major, _ in CUDA_FULL_SUPPORT}
    for name in TORCH_CUDA_ARCHS:
        assert name in KNOWN_VARIANTS


# --- gpu_warning ----------------------------------------------------------------------------

GTX1080 = GpuInfo("NVIDIA GeForce GTX 1080", "6.1")
K80 = GpuInfo("Tesla K80", "3.7")
V100 = GpuInfo("Tesla V100-PCIE-32GB", "7.0")
RTX3090 = GpuInfo("NVIDIA GeForce RTX 3090", "8.6")
RTX4090 = GpuInfo("NVIDIA GeForce RTX 4090", "8.9")  # runs sm_86 code: same major
RTX5090 = GpuInfo("NVIDIA GeForce RTX 5090", "12.0")
FUTURE = GpuInfo("Some future GPU", "13.0")


@pytest.mark.parametrize(
    ("gpus", "torch", "variant", "expected"),
    [
        ([GTX1080], "2.8.0", "cu128", "GTX 1080 (compute capability 6.1) is too old for torch 2.8"),
        ([GTX1080], "2.8.0+cu128", "cu128", "cu126 builds include it"),
        ([GTX1080], "2.8.0", "cu126", None),
        ([K80], "2.4.0", "cu118", None),
        ([K80], "2.4.0", "cu121", "Tesla K80 (compute capability 3.7) is too old"),
        ([K80], None, "cu126", "cu118 builds include it"),
        ([V100], "2.7.0", "cu128", "too old for torch 2.7 cu128 builds (kernels for sm_75-sm_120)"),
        ([V100], "2.8.1", "cu128", None),  # sm_70 came back in 2.8
        ([V100], "2.9.0", "cu130", "too old"),
        ([RTX4090, RTX3090], None, "cu118", None),
        ([RTX5090], "2.5.1", "cu124", "is too new for torch 2.5 cu124"),
        ([RTX5090], "2.5.1", "cu124", "newer torch cu130 builds include it"),
        ([RTX5090], "2.7.0", "cu128", None),
        ([FUTURE], "2.9.0", "cu130", None),  # sm_120+PTX JIT-compiles for newer GPUs
        ([FUTURE], "2.8.0", "cu128", "too new"),  # no PTX in 2.8's cu128
        ([GpuInfo("Old GPU", None)], "2.8.0", "cu128", None),  # no compute capability known
        ([GTX1080], "2.8.0", "cpu", None),
        ([GTX1080], "2.8.0", "rocm6.1", None),
        ([GTX1080], "1.12.0", "cu116", None),  # no data for that build
        ([K80], "1.12.0", "cu118", None),  # older than the first torch with cu118 data
        ([GTX1080], "not a version", "cu128", "too old for cu128 builds"),
        ([], "2.8.0", "cu128", None),
    ],
)
def test_gpu_warning(
    gpus: list[GpuInfo], torch: str | None, variant: str, expected: str | None
) -> None:
    warning = gpu_warning(gpus, torch, variant)
    if expected is None:
        assert warning is None
    else:
        assert warning is not None and expected in warning
        assert "\n" not in warning


def test_gpu_warning_names_every_gpu_that_fails() -> None:
    warning = gpu_warning([RTX4090, GTX1080, K80], "2.8.0", "cu128")
    assert warning is not None
    assert "GTX 1080" in warning and "K80" in warning and "4090" not in warning
    assert "no kernel image is available" in warning
