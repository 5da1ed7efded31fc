"""The provider over dict-backed sources: no network, no disk."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import NormalizedName, canonicalize_name

from wheelcache.core.evaluator import (
    Candidate,
    best_per_version,
    describe_availability,
    evaluate_file,
)
from wheelcache.core.models import CoreMetadata, DistFile
from wheelcache.core.provider import Req, resolve
from wheelcache.core.target import Target, make_target
from wheelcache.errors import ResolutionError

NV = '; platform_system == "Linux" and platform_machine == "x86_64"'

# name -> [(filename, requires_dist, requires_python, yanked)]
UNIVERSE: dict[str, list[tuple[str, list[str], str | None, bool]]] = {
    "torch": [
        (
            f"torch-{v}+{var}-cp{py}-cp{py}-{plat}.whl",
            [
                "filelock",
                "sympy",
                f"nvidia-cublas-cu11==11.11.3.6{NV}",
                'opt-einsum>=3.3; extra == "opt-einsum"',
            ],
            ">=3.8",
            False,
        )
        for v in ("2.4.0", "2.5.1")
        for var in ("cu118", "cu121")
        for py in (39, 310)
        for plat in ("win_amd64", "linux_x86_64")
    ],
    "torchvision": [
        (
            f"torchvision-{tv}+{var}-cp{py}-cp{py}-{plat}.whl",
            ["numpy", f"torch=={t}+{var}" if plat == "win_amd64" else f"torch=={t}"],
            ">=3.8",
            False,
        )
        for tv, t in (("0.19.0", "2.4.0"), ("0.20.1", "2.5.1"))
        for var in ("cu118", "cu121")
        for py in (39, 310)
        for plat in ("win_amd64", "linux_x86_64")
    ],
    "torchaudio": [
        (f"torchaudio-{v}+cu118-cp{py}-cp{py}-{plat}.whl", [f"torch=={v}"], ">=3.8", False)
        for v in ("2.4.0", "2.5.1")
        for py in (39, 310)
        for plat in ("win_amd64", "linux_x86_64")
        if not (v == "2.5.1" and py == 39 and plat == "win_amd64")  # missing: forces 2.4.0
    ],
    "filelock": [
        ("filelock-3.16.1-py3-none-any.whl", [], ">=3.8", False),
        ("filelock-3.16.2-py3-none-any.whl", [], ">=3.8", True),
    ],
    "sympy": [("sympy-1.13.1-py3-none-any.whl", ["mpmath<1.4,>=1.1.0"], ">=3.8", False)],
    "mpmath": [
        ("mpmath-1.3.0-py3-none-any.whl", [], None, False),
        ("mpmath-1.4.0a1-py3-none-any.whl", [], None, False),
    ],
    "numpy": [
        ("numpy-2.0.2-cp39-cp39-win_amd64.whl", [], ">=3.9", False),
        ("numpy-2.0.2-cp310-cp310-win_amd64.whl", [], ">=3.9", False),
        ("numpy-2.1.1-cp310-cp310-win_amd64.whl", [], ">=3.10", False),
        ("numpy-2.0.2-cp39-cp39-manylinux2014_x86_64.whl", [], ">=3.9", False),
    ],
    "nvidia-cublas-cu11": [
        ("nvidia_cublas_cu11-11.11.3.6-py3-none-manylinux1_x86_64.whl", [], None, False)
    ],
    "opt-einsum": [("opt_einsum-3.3.0-py3-none-any.whl", ["numpy>=1.7"], ">=3.5", False)],
}


class DictSource:
    """CandidateSource + MetadataSource over UNIVERSE; counts metadata lookups."""

    def __init__(self, target: Target, *, metadata_python: dict[str, str] | None = None) -> None:
        self.target = target
        self.meta_calls: list[str] = []
        self.metadata_python = metadata_python or {}
        self.files: dict[str, list[DistFile]] = {}
        self.meta: dict[str, CoreMetadata] = {}
        for name, entries in UNIVERSE.items():
            for fn, deps, rp, yanked in entries:
                f = DistFile(fn, f"https://h.invalid/{fn}", requires_python=rp, yanked=yanked)
                self.files.setdefault(name, []).append(f)
                version = fn.split("-")[1]
                self.meta[fn] = CoreMetadata(
                    canonicalize_name(name),
                    version,
                    tuple(Requirement(d) for d in deps),
                    None,
                    (canonicalize_name("opt-einsum"),) if name == "torch" else (),
                )

    def find_candidates(self, name: NormalizedName) -> Sequence[Candidate]:
        variant = self.target.variant if name.startswith("torch") else None
        evs = [
            evaluate_file(f, name, self.target, variant=variant) for f in self.files.get(name, [])
        ]
        return best_per_version(evs)

    def explain(self, name: NormalizedName, specifier: SpecifierSet) -> str:
        variant = self.target.variant if name.startswith("torch") else None
        files = self.files.get(name, [])
        return describe_availability(name, files, self.target, specifier, variant=variant)

    def get_metadata(self, candidate: Candidate) -> CoreMetadata:
        self.meta_calls.append(candidate.file.filename)
        md = self.meta[candidate.file.filename]
        rp = self.metadata_python.get(candidate.file.filename)
        if rp:
            md = CoreMetadata(md.name, md.version, md.requires_dist, SpecifierSet(rp))
        return md


def _reqs(*texts: str) -> list[Req]:
    return [Req.from_requirement(Requirement(t)) for t in texts]


def _versions(target: Target, *texts: str, **kw: object) -> dict[str, str]:
    src = DictSource(target)
    res = resolve(_reqs(*texts), target, src, src, **kw)  # type: ignore[arg-type]
    return {c.name: str(c.version) for c in res.candidates}


WIN39 = make_target(python="39", platform="win_amd64", variant="cu118")
WIN310 = make_target(python="310", platform="win_amd64", variant="cu118")
LINUX39 = make_target(python="39", platform="linux_x86_64", variant="cu118")


def test_windows_cu118_py39_picks_newest_complete_set_without_nvidia() -> None:
    got = _versions(WIN39, "torch", "torchvision", "torchaudio")
    assert got == {
        "torch": "2.4.0+cu118",
        "torchvision": "0.19.0+cu118",
        "torchaudio": "2.4.0+cu118",
        "filelock": "3.16.1",
        "sympy": "1.13.1",
        "mpmath": "1.3.0",
        "numpy": "2.0.2",
    }


def test_newest_when_all_three_exist() -> None:
    got = _versions(WIN310, "torch", "torchvision", "torchaudio")
    assert (got["torch"], got["torchvision"], got["torchaudio"]) == (
        "2.5.1+cu118",
        "0.20.1+cu118",
        "2.5.1+cu118",
    )
    assert got["numpy"] == "2.1.1"  # cp310 may take the newest numpy


def test_linux_pulls_nvidia_and_plain_torch_pin_matches_local_version() -> None:
    got = _versions(LINUX39, "torch==2.4.0", "torchvision", "torchaudio")
    assert got["nvidia-cublas-cu11"] == "11.11.3.6"
    assert got["torch"] == "2.4.0+cu118"


def test_extras_add_their_dependencies() -> None:
    got = _versions(WIN39, "torch[opt-einsum]==2.4.0")
    assert got["opt-einsum"] == "3.3.0" and got["torch"] == "2.4.0+cu118"
    assert "opt-einsum" not in _versions(WIN39, "torch==2.4.0")


def test_yanked_only_when_pinned_exactly() -> None:
    assert _versions(WIN39, "filelock")["filelock"] == "3.16.1"
    assert _versions(WIN39, "filelock==3.16.2")["filelock"] == "3.16.2"
    with pytest.raises(ResolutionError):
        _versions(WIN39, "filelock>=3.16.2")


def test_prereleases_only_with_pre_or_pin() -> None:
    assert _versions(WIN39, "mpmath")["mpmath"] == "1.3.0"
    assert _versions(WIN39, "mpmath", allow_prereleases=True)["mpmath"] == "1.4.0a1"
    assert _versions(WIN39, "mpmath==1.4.0a1")["mpmath"] == "1.4.0a1"


def test_metadata_requires_python_backtracks() -> None:
    src = DictSource(WIN310, metadata_python={"numpy-2.1.1-cp310-cp310-win_amd64.whl": ">=3.11"})
    res = resolve(_reqs("numpy"), WIN310, src, src)
    assert [str(c.version) for c in res.candidates] == ["2.0.2"]


def test_no_deps_resolves_only_the_request() -> None:
    got = _versions(WIN39, "torch==2.4.0", no_deps=True)
    assert got == {"torch": "2.4.0+cu118"}


def test_missing_platform_error_names_what_exists() -> None:
    mac = make_target(python="39", platform="macosx_11_0_arm64", variant="cu118")
    with pytest.raises(ResolutionError) as info:
        _versions(mac, "torch==2.4.0")
    msg = str(info.value)
    assert "torch 2.4.0+cu118 has wheels for cp39–cp310 on linux_x86_64 and win_amd64" in msg
    assert "none for cp39 on macosx_11_0_arm64" in msg


def test_conflict_error_names_both_sides() -> None:
    with pytest.raises(ResolutionError) as info:
        _versions(WIN39, "torch==2.5.1", "torchvision==0.19.0")
    msg = str(info.value)
    assert "torch==2.5.1" in msg and "torchvision 0.19.0+cu118 requires torch==2.4.0+cu118" in msg


def test_no_deps_still_keeps_requested_companions_matched() -> None:
    got = _versions(WIN310, "torch==2.4.0", "torchvision", "torchaudio", no_deps=True)
    assert got == {
        "torch": "2.4.0+cu118",
        "torchvision": "0.19.0+cu118",
        "torchaudio": "2.4.0+cu118",
    }
    # ...but does not pull torch in when only a companion was asked for.
    assert _versions(WIN310, "torchvision==0.19.0", no_deps=True) == {"torchvision": "0.19.0+cu118"}


def test_prereleases_are_taken_when_they_are_all_there_is() -> None:
    src = DictSource(WIN39)
    src.files["newthing"] = [DistFile("newthing-1.0b1-py3-none-any.whl", "https://h.invalid/n")]
    src.meta["newthing-1.0b1-py3-none-any.whl"] = CoreMetadata(
        canonicalize_name("newthing"), "1.0b1"
    )
    res = resolve(_reqs("newthing"), WIN39, src, src)
    assert [str(c.version) for c in res.candidates] == ["1.0b1"]


def test_python_full_version_markers_use_x_y_0_unless_the_micro_is_given() -> None:
    """--py 3.9 is 3.9.0, as in pip and uv; --py 3.9.13 is exactly that (issue 15)."""
    from packaging.markers import Marker

    from wheelcache.core.provider import WheelProvider

    src = DictSource(WIN39)
    provider = WheelProvider(WIN39, src, src)
    assert not provider._applies(Marker('python_full_version >= "3.9.1"'))
    assert provider._applies(Marker('python_full_version < "3.9.2"'))
    assert not provider._applies(Marker('python_full_version >= "3.10"'))
    exact = make_target(python="3.9.13", platform="win_amd64", variant="cu118")
    provider = WheelProvider(exact, src, src)
    assert provider._applies(Marker('python_full_version >= "3.9.1"'))
    assert not provider._applies(Marker('python_full_version < "3.9.2"'))


def test_on_pin_reports_torch_first_and_every_final_wheel() -> None:
    """Transfers start from these calls: torch is pinned first, every chosen wheel is
    reported, and a wheel a backtrack replaced (torch 2.5.1 on win/cp39, whose torchaudio
    is missing) may appear too but is not final."""
    src = DictSource(WIN39)
    pinned: list[str] = []
    res = resolve(
        _reqs("torch", "torchvision", "torchaudio"),
        WIN39,
        src,
        src,
        on_pin=lambda c: pinned.append(c.file.filename),
    )
    assert pinned[0].startswith("torch-")
    assert {c.file.filename for c in res.candidates} <= set(pinned)
    assert "torch-2.5.1+cu118-cp39-cp39-win_amd64.whl" in pinned  # tried, then replaced
    assert "torch-2.5.1+cu118-cp39-cp39-win_amd64.whl" not in {
        c.file.filename for c in res.candidates
    }


def test_on_pin_reports_the_base_wheel_of_an_extra() -> None:
    src = DictSource(WIN310)
    pinned: list[Candidate] = []
    resolve(_reqs("torch[opt-einsum]==2.4.0"), WIN310, src, src, on_pin=pinned.append)
    assert all(isinstance(c, Candidate) for c in pinned)
    assert [c.name for c in pinned].count("torch") >= 1
    assert "opt-einsum" in {c.name for c in pinned}
