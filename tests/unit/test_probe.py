"""The standalone probe agrees with packaging, parses nvidia-smi, and stays stdlib-only/3.8."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from packaging import tags as ptags
from packaging.markers import default_environment

from wheelcache.host import probe_script as ps

DATA = Path(__file__).resolve().parents[1] / "data" / "nvidia-smi"
SCRIPT = Path(ps.__file__)


def _strs(tags: Any) -> list[str]:
    return [str(t) for t in tags]


# --- agreement with packaging on this machine -----------------------------------------------


def test_supported_tags_equal_packaging_sys_tags_in_order() -> None:
    assert ps.supported_tags() == _strs(ptags.sys_tags())


def test_marker_environment_equals_packaging_default_environment() -> None:
    assert ps.marker_environment() == default_environment()


def test_probe_document_shape() -> None:
    doc = ps.probe(nvidia=False)
    assert list(doc) == [
        "format",
        "version",
        "created_at",
        "python",
        "tags",
        "markers",
        "platform",
        "nvidia",
    ]
    assert doc["format"] == "wheelcache-target" and doc["version"] == 1
    assert doc["created_at"].endswith("Z")
    assert doc["python"]["version"] == default_environment()["python_full_version"]
    assert doc["python"]["abi"] == doc["tags"][0].split("-")[1]
    assert doc["platform"]["platform_tag"] == doc["tags"][0].split("-")[2]
    if sys.platform.startswith("linux") and doc["platform"]["glibc"]:
        # The probe's own glibc reading agrees with the stdlib's.
        import platform

        assert platform.libc_ver()[1].startswith(doc["platform"]["glibc"])
    assert doc["nvidia"]["driver_version"] is None


# --- agreement with packaging for hosts that are not this one -------------------------------

PLATS = ["manylinux_2_17_x86_64", "manylinux2014_x86_64", "linux_x86_64"]


@pytest.mark.parametrize(
    ("version", "abis", "platforms"),
    [
        ((3, 9), ["cp39"], ["win_amd64"]),
        ((3, 12), ["cp312"], PLATS),
        ((3, 12), ["cp312d", "cp312"], PLATS),  # debug build
        ((3, 13), ["cp313t"], ["macosx_14_0_arm64", "macosx_14_0_universal2"]),  # free-threaded
        ((3, 7), ["cp37m"], ["win32"]),
        ((3, 11), ["cp311", "abi3", "none"], ["linux_aarch64"]),
    ],
)
def test_cpython_tags_match_packaging(
    version: tuple[int, int], abis: list[str], platforms: list[str]
) -> None:
    ours = ps.cpython_tags(version, abis, platforms)
    assert ours == _strs(ptags.cpython_tags(version, abis, platforms))


@pytest.mark.parametrize("interpreter", ["cp310", "pp3", None])
def test_compatible_tags_match_packaging(interpreter: str | None) -> None:
    ours = ps.compatible_tags((3, 10), interpreter, PLATS)
    assert ours == _strs(ptags.compatible_tags((3, 10), interpreter, PLATS))


@pytest.mark.parametrize(
    ("version", "arch"),
    [
        ((10, 15), "x86_64"),
        ((10, 9), "i386"),
        ((10, 5), "ppc64"),
        ((11, 0), "arm64"),
        ((14, 2), "arm64"),
        ((14, 2), "x86_64"),
        ((15, 0), "arm64"),
    ],
)
def test_mac_platforms_match_packaging(version: tuple[int, int], arch: str) -> None:
    assert ps.mac_platforms(version, arch) == list(ptags.mac_platforms(version, arch))


@pytest.mark.parametrize(
    ("archs", "glibc"),
    [
        (["x86_64"], (2, 36)),
        (["x86_64"], (2, 17)),
        (["x86_64"], (2, 5)),
        (["i686"], (2, 12)),
        (["aarch64"], (2, 28)),
        (["aarch64"], (2, 16)),  # older than any aarch64 manylinux: nothing
        (["armv8l", "armv7l"], (2, 31)),
        (["x86_64"], (3, 1)),  # a future glibc 3 keeps every 2.x level
    ],
)
def test_manylinux_platforms_match_packaging(
    monkeypatch: pytest.MonkeyPatch, archs: list[str], glibc: tuple[int, int]
) -> None:
    from packaging import _manylinux as manylinux

    monkeypatch.setattr(manylinux, "_get_glibc_version", lambda: manylinux._GLibCVersion(*glibc))
    monkeypatch.setattr(manylinux, "_have_compatible_abi", lambda executable, archs: True)
    monkeypatch.setitem(sys.modules, "_manylinux", None)  # no distro hook on either side
    ours = ps.manylinux_platforms(archs, glibc)
    assert ours == list(manylinux.platform_tags(archs))


def test_manylinux_hook_can_veto_a_level(monkeypatch: pytest.MonkeyPatch) -> None:
    """PEP 600: a distro's ``_manylinux`` module may say a level does not work there."""

    class Hook:
        @staticmethod
        def manylinux_compatible(major: int, minor: int, arch: str) -> bool | None:
            return False if minor > 28 else None

    monkeypatch.setitem(sys.modules, "_manylinux", Hook)  # type: ignore[arg-type]
    tags = ps.manylinux_platforms(["x86_64"], (2, 31))
    assert tags[0] == "manylinux_2_28_x86_64"


def test_musllinux_platforms_match_packaging(monkeypatch: pytest.MonkeyPatch) -> None:
    from packaging import _musllinux as musllinux

    monkeypatch.setattr(musllinux, "_get_musl_version", lambda exe: musllinux._MuslVersion(1, 2))
    for archs in (["x86_64"], ["armv8l", "armv7l"]):
        assert ps.musllinux_platforms(archs, (1, 2)) == list(musllinux.platform_tags(archs))


def test_elf_reader_finds_this_interpreters_loader() -> None:
    info = ps._elf_interpreter_and_header(sys.executable)
    assert info is not None
    assert info[4] is not None and "ld" in info[4]
    assert ps._elf_interpreter_and_header(str(SCRIPT)) is None  # not an ELF file


# --- nvidia-smi -----------------------------------------------------------------------------


def _sample(name: str) -> str:
    return (DATA / name).read_text(encoding="utf-8")


def test_parse_one_gpu() -> None:
    assert ps.parse_nvidia_smi(_sample("one-gpu.txt")) == (
        "550.54.14",
        [{"name": "NVIDIA GeForce RTX 3090", "compute_capability": "8.6"}],
    )


def test_parse_two_gpus() -> None:
    assert ps.parse_nvidia_smi(_sample("two-gpus.txt")) == (
        "570.133.07",
        [
            {"name": "NVIDIA GeForce RTX 4090", "compute_capability": "8.9"},
            {"name": "NVIDIA GeForce GTX 1080 Ti", "compute_capability": "6.1"},
        ],
    )


def test_parse_without_compute_cap() -> None:
    text = _sample("old-driver-without-compute-cap.txt")
    assert ps.parse_nvidia_smi(text, with_compute_cap=False) == (
        "470.182.03",
        [
            {"name": "Tesla K80", "compute_capability": None},
            {"name": "Tesla K80", "compute_capability": None},
        ],
    )


def test_parse_odd_but_valid_lines() -> None:
    text = "\r\n535.104.05, Some GPU, Rev. 2, [N/A]\r\n\r\n"
    assert ps.parse_nvidia_smi(text) == (
        "535.104.05",
        [{"name": "Some GPU, Rev. 2", "compute_capability": None}],
    )


@pytest.mark.parametrize(
    "name", ["garbage.txt", "old-driver.txt", "no-devices.txt", "driver-not-loaded.txt"]
)
def test_parse_rejects_what_is_not_the_csv(name: str) -> None:
    with pytest.raises(ValueError):
        ps.parse_nvidia_smi(_sample(name))


def test_parse_rejects_empty_output() -> None:
    with pytest.raises(ValueError, match="no GPU"):
        ps.parse_nvidia_smi("\n")


class FakeSmi:
    """Stands in for ``_run_smi``: answers from sample files, records the fields asked for."""

    def __init__(self, *answers: tuple[int, str]) -> None:
        self.answers = list(answers)
        self.calls: list[list[str]] = []

    def __call__(self, executable: str, fields: Any, timeout: float) -> tuple[int, str]:
        self.calls.append(list(fields))
        return self.answers.pop(0)


def _query(monkeypatch: pytest.MonkeyPatch, fake: Any) -> dict[str, Any]:
    monkeypatch.setattr(ps, "_run_smi", fake)
    return ps.query_nvidia_smi("nvidia-smi")


def test_query_one_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeSmi((0, _sample("one-gpu.txt")))
    result = _query(monkeypatch, fake)
    assert result == {
        "driver_version": "550.54.14",
        "gpus": [{"name": "NVIDIA GeForce RTX 3090", "compute_capability": "8.6"}],
        "error": None,
    }
    assert fake.calls == [["driver_version", "name", "compute_cap"]]


def test_query_old_driver_asks_again_without_compute_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeSmi(
        (2, _sample("old-driver.txt")), (0, _sample("old-driver-without-compute-cap.txt"))
    )
    result = _query(monkeypatch, fake)
    assert result["driver_version"] == "470.182.03" and result["error"] is None
    assert [g["compute_capability"] for g in result["gpus"]] == [None, None]
    assert fake.calls[1] == ["driver_version", "name"]


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ((9, "driver-not-loaded.txt"), "nvidia-smi exited with status 9: NVIDIA-SMI has failed"),
        ((6, "no-devices.txt"), "nvidia-smi exited with status 6: No devices were found"),
        ((0, "garbage.txt"), "cannot read nvidia-smi output"),
    ],
)
def test_query_failures_leave_an_error(
    monkeypatch: pytest.MonkeyPatch, answer: tuple[int, str], expected: str
) -> None:
    result = _query(monkeypatch, FakeSmi((answer[0], _sample(answer[1]))))
    assert result["driver_version"] is None and result["gpus"] == []
    assert result["error"].startswith(expected)
    assert "\n" not in result["error"]


def test_query_timeout_and_oserror(monkeypatch: pytest.MonkeyPatch) -> None:
    def slow(executable: str, fields: Any, timeout: float) -> tuple[int, str]:
        raise subprocess.TimeoutExpired(executable, timeout)

    def broken(executable: str, fields: Any, timeout: float) -> tuple[int, str]:
        raise PermissionError(13, "Permission denied")

    assert "did not answer within" in _query(monkeypatch, slow)["error"]
    assert "Permission denied" in _query(monkeypatch, broken)["error"]


def test_query_without_nvidia_smi_is_no_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ps, "_find_nvidia_smi", lambda: None)
    assert ps.query_nvidia_smi() == {"driver_version": None, "gpus": [], "error": None}


def test_query_really_times_out(tmp_path: Path) -> None:
    """A hanging nvidia-smi (a real process) is cut off by the timeout."""
    fake = tmp_path / "nvidia-smi"
    fake.write_text(f"#!{sys.executable}\nimport time\ntime.sleep(30)\n", encoding="utf-8")
    fake.chmod(0o755)
    result = ps.query_nvidia_smi(str(fake), timeout=0.5)
    assert result["error"] == "nvidia-smi did not answer within 0.5 s"


# --- the script stays a standalone, standard-library, Python 3.8 file -----------------------


def test_probe_script_imports_only_the_standard_library() -> None:
    tree = ast.parse(SCRIPT.read_text(encoding="utf-8"))
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "the script must not import from its package"
            assert node.module is not None
            imported.add(node.module.split(".")[0])
    outside = {m for m in imported if m not in sys.stdlib_module_names and m != "__future__"}
    assert not outside, f"probe_script imports {sorted(outside)}"


# Functions and methods added after Python 3.8 (str, pathlib, functools, itertools, asyncio).
_NEWER_THAN_38 = {
    "removeprefix",
    "removesuffix",
    "is_relative_to",
    "with_stem",
    "cache",
    "bit_count",
    "pairwise",
    "batched",
    "to_thread",
}


def test_probe_script_parses_as_python_38() -> None:
    source = SCRIPT.read_text(encoding="utf-8")
    tree = ast.parse(source, feature_version=(3, 8))  # no match, no except*, no 3.9+ syntax
    calls = {
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load)
    }
    assert not (calls & _NEWER_THAN_38)
    first = source.splitlines()[0]
    assert first.startswith("#!") and "python" in first
    assert "from __future__ import annotations" in source
