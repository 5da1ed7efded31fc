from __future__ import annotations

import pytest
from packaging.markers import Marker
from packaging.tags import Tag

from wheelcache.core.target import make_target, parse_platform, parse_python
from wheelcache.core.variants import parse_cuda, parse_variant, torch_index_for
from wheelcache.errors import TargetError


@pytest.mark.parametrize(
    ("text", "expected"),
    [("39", (3, 9)), ("3.9", (3, 9)), ("cp39", (3, 9)), ("310", (3, 10)), ("3.12", (3, 12))],
)
def test_parse_python(text: str, expected: tuple[int, int]) -> None:
    assert parse_python(text) == (expected, False)


@pytest.mark.parametrize("bad", ["2.7", "python", "3", "cp3x", ""])
def test_parse_python_rejects(bad: str) -> None:
    with pytest.raises(TargetError, match="--py"):
        parse_python(bad)


@pytest.mark.parametrize(
    ("text", "variant"),
    [("118", "cu118"), ("11.8", "cu118"), ("cu118", "cu118"), ("12.4", "cu124")],
)
def test_parse_cuda(text: str, variant: str) -> None:
    assert parse_cuda(text) == variant


def test_unknown_cuda_lists_known_variants() -> None:
    with pytest.raises(TargetError) as info:
        parse_cuda("12x")
    assert "cu118" in str(info.value) and "cu121" in str(info.value)
    with pytest.raises(TargetError, match="known: .*cu118"):
        parse_cuda("119")


def test_variant_names() -> None:
    assert parse_variant("rocm6.1") == "rocm6.1"
    assert parse_variant("cu130") == "cu130"
    with pytest.raises(TargetError, match="known: cpu, "):
        parse_variant("cuda-twelve")


def test_torch_index_template() -> None:
    assert torch_index_for("http://h/whl/{variant}/", "cu118") == ("http://h/whl/cu118", True)
    assert torch_index_for("http://h/simple", "cu118") == ("http://h/simple", False)


def _plats(tag: str, glibc: tuple[int, int] | None = None) -> tuple[str, ...]:
    return parse_platform(tag, glibc).platforms


def test_linux_means_glibc_228_manylinux_and_plain_linux() -> None:
    plats = _plats("linux_x86_64")
    # pip 26's order (packaging >= 26.3): the plain linux tag first, then manylinux, newest first.
    assert plats[0] == "linux_x86_64"
    assert plats[1] == "manylinux_2_28_x86_64"
    assert "manylinux_2_29_x86_64" not in plats
    assert {"manylinux2014_x86_64", "manylinux_2_17_x86_64", "manylinux1_x86_64"} <= set(plats)
    assert plats.count("linux_x86_64") == 1
    assert not any("musllinux" in p or "aarch64" in p for p in plats)


def test_glibc_override_and_manylinux_tag() -> None:
    assert _plats("linux_x86_64", (2, 17))[1] == "manylinux_2_17_x86_64"
    assert _plats("manylinux_2_31_x86_64")[1] == "manylinux_2_31_x86_64"
    assert _plats("manylinux2014_aarch64")[1] == "manylinux_2_17_aarch64"
    # aarch64 manylinux starts at 2.17: there is no manylinux1/2010 for it.
    assert not any(p.startswith(("manylinux1", "manylinux2010")) for p in _plats("linux_aarch64"))
    with pytest.raises(TargetError, match="glibc"):
        make_target(python="39", platform="manylinux_2_28_x86_64", glibc="2.31")
    with pytest.raises(TargetError, match="--glibc applies to Linux"):
        make_target(python="39", platform="win_amd64", glibc="2.31")


def test_unknown_platform() -> None:
    with pytest.raises(TargetError, match="not a platform tag; use e.g. win_amd64"):
        make_target(python="39", platform="windows")


def test_windows_target_tags_and_markers() -> None:
    t = make_target(python="39", platform="win_amd64", variant="cu118")
    assert t.tags[0] == Tag("cp39", "cp39", "win_amd64")
    assert Tag("py3", "none", "any") in t.tag_priority
    assert Tag("cp39", "cp39", "manylinux2014_x86_64") not in t.tag_priority
    env = t.marker_environment
    assert (env["sys_platform"], env["platform_system"], env["platform_machine"]) == (
        "win32",
        "Windows",
        "AMD64",
    )
    linux_only = Marker('platform_system == "Linux" and platform_machine == "x86_64"')
    assert not linux_only.evaluate(env)
    assert linux_only.evaluate(make_target(python="39", platform="linux_x86_64").marker_environment)


def test_markers_use_target_python_not_this_interpreter() -> None:
    new = Marker('python_version >= "3.12"')
    assert not new.evaluate(make_target(python="39", platform="linux_x86_64").marker_environment)
    assert new.evaluate(make_target(python="3.12", platform="linux_x86_64").marker_environment)


def test_macos_target() -> None:
    t = make_target(python="3.12", platform="macosx_11_0_arm64")
    assert t.tags[0] == Tag("cp312", "cp312", "macosx_11_0_arm64")
    assert Tag("cp312", "cp312", "macosx_11_0_universal2") in t.tag_priority
    assert t.marker_environment["sys_platform"] == "darwin"
    assert t.marker_environment["platform_machine"] == "arm64"


def test_free_threaded_abi() -> None:
    t = make_target(python="3.13t", platform="manylinux_2_28_x86_64")
    assert t.abi == "cp313t"
    assert t.tags[1] == Tag("cp313", "cp313t", "manylinux_2_28_x86_64")
    assert Tag("cp313", "cp313", "manylinux_2_28_x86_64") not in t.tag_priority


@pytest.mark.parametrize(
    ("text", "full", "abi"),
    [
        ("3.8", "3.8.0", "cp38"),
        ("38", "3.8.0", "cp38"),
        ("3.8.10", "3.8.10", "cp38"),
        ("3.13.1t", "3.13.1", "cp313t"),
        ("cp3.12.4", "3.12.4", "cp312"),
    ],
)
def test_py_is_an_exact_release_x_y_meaning_x_y_0(text: str, full: str, abi: str) -> None:
    """As pip and uv: --py 3.8 is 3.8.0, so Requires-Python >=3.8.1 excludes it (issue 15)."""
    t = make_target(python=text, platform="linux_x86_64")
    assert (t.python_version_full, t.python_versions, t.abi) == (full, (full,), abi)
    assert t.marker_environment["python_full_version"] == full
    assert t.marker_environment["python_version"] == full.rsplit(".", 1)[0]


@pytest.mark.parametrize("bad", ["3.8.", "3.8.10.1", "3810", "3.8.x"])
def test_py_rejects_malformed_micro_releases(bad: str) -> None:
    with pytest.raises(TargetError, match="is not a Python version; use e.g. 39, 3.9, 3.9.13"):
        parse_python(bad)
