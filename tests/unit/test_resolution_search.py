"""The resolver's search and its explanations, over dict-backed sources (no network)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import pytest
import resolvelib
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import Version

import wheelcache.core.provider as provider_module
from wheelcache.core.companions import torch_line_for
from wheelcache.core.evaluator import Candidate, best_per_version, evaluate_file
from wheelcache.core.models import CoreMetadata, DistFile
from wheelcache.core.provider import Req, resolve
from wheelcache.core.target import Target, make_target
from wheelcache.errors import ResolutionError

LINUX = make_target(python="3.11", platform="linux_x86_64")


class Universe:
    """CandidateSource + MetadataSource over ``(name, version, requires)`` triples."""

    def __init__(self, target: Target, releases: Iterable[tuple[str, str, Sequence[str]]]):
        self.target = target
        self.files: dict[str, list[DistFile]] = {}
        self.meta: dict[str, CoreMetadata] = {}
        for name, version, requires in releases:
            fn = f"{name}-{version}-py3-none-any.whl"
            self.files.setdefault(name, []).append(DistFile(fn, f"https://h.invalid/{fn}"))
            reqs = tuple(Requirement(r) for r in requires)
            self.meta[fn] = CoreMetadata(canonicalize_name(name), version, reqs)
        self._cands: dict[str, list[Candidate]] = {}

    def find_candidates(self, name: NormalizedName) -> list[Candidate]:
        if name not in self._cands:
            evs = [evaluate_file(f, name, self.target) for f in self.files.get(name, [])]
            self._cands[name] = best_per_version(evs)
        return self._cands[name]

    def explain(self, name: NormalizedName, specifier: SpecifierSet) -> str:
        return f"{name}{specifier} is not on the index"

    def get_metadata(self, candidate: Candidate) -> CoreMetadata:
        return self.meta[candidate.file.filename]


def _resolve(u: Universe, *texts: str, **kw: int) -> dict[str, str]:
    reqs = [Req.from_requirement(Requirement(t)) for t in texts]
    res = resolve(reqs, u.target, u, u, **kw)  # type: ignore[arg-type]
    return {c.name: str(c.version) for c in res.candidates}


def _chain_universe(depth: int, versions: int) -> Universe:
    """app N needs a1==N, a1 N needs a2==N … a<depth> N needs core==N; zlast needs core==1.
    Each app version costs about *depth* rounds before its conflict shows."""
    rel: list[tuple[str, str, Sequence[str]]] = []
    for n in range(1, versions + 1):
        rel.append(("app", f"{n}.0", [f"a1=={n}.0"]))
        for level in range(1, depth + 1):
            nxt = f"a{level + 1}" if level < depth else "core"
            rel.append((f"a{level}", f"{n}.0", [f"{nxt}=={n}.0"]))
        rel.append(("core", f"{n}.0", []))
    rel.append(("zlast", "1.0", ["core==1.0"]))
    return Universe(LINUX, rel)


class _Rounds(resolvelib.BaseReporter):  # type: ignore[type-arg]
    last = 0

    def starting_round(self, index: int) -> None:
        _Rounds.last = index


def test_a_search_longer_than_2000_rounds_completes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 15: max_rounds=2000 made apache-airflow fail; pip allows 200000."""
    monkeypatch.setattr(provider_module, "BaseReporter", _Rounds)
    u = _chain_universe(depth=100, versions=21)
    got = _resolve(u, "app", "zlast")
    assert got["app"] == "1.0" and got["core"] == "1.0"
    assert _Rounds.last > 2000  # so the old limit could not have done it
    with pytest.raises(
        ResolutionError, match="gave up after 2000 rounds of backtracking; pin some"
    ):
        _resolve(u, "app", "zlast", max_rounds=2000)


def test_a_requirement_without_files_is_explained_from_the_request_down() -> None:
    rel: list[tuple[str, str, Sequence[str]]] = [
        *(("top", f"{n}.0", ["mid", "leafless>=2"]) for n in range(1, 30)),
        *(("mid", f"{n}.0", []) for n in range(1, 30)),
        ("leafless", "1.0", []),
    ]
    with pytest.raises(ResolutionError) as info:
        _resolve(Universe(LINUX, rel), "top")
    msg = str(info.value)
    assert msg.splitlines() == [
        "cannot resolve for cp311-linux_x86_64 (cpu):",
        "  leafless>=2 is not on the index",
        "  needed by: top (requested) → top 29.0 requires leafless>=2",
    ]
    assert info.value.details[0] == "leafless>=2 is not on the index"


def test_requires_python_of_a_dependency_names_the_target_python() -> None:
    u = Universe(LINUX, [("top", "1.0", ["needsnew"]), ("needsnew", "1.0", [])])
    old = u.meta["needsnew-1.0-py3-none-any.whl"]
    u.meta["needsnew-1.0-py3-none-any.whl"] = CoreMetadata(
        old.name, old.version, (), SpecifierSet(">=3.11.1")
    )
    with pytest.raises(ResolutionError) as info:
        _resolve(u, "top")
    assert "needsnew 1.0 requires Python >=3.11.1 but the target has Python 3.11.0" in str(
        info.value
    )


# -- companions: which torch line a release without a torch pin belongs to ---------------------
V = Version
TORCHES = {V("2.4.0"), V("2.5.1"), V("2.8.0"), V("2.11.0")}


def test_line_by_numbering_and_upload_times_agree() -> None:
    choice = torch_line_for(
        canonicalize_name("torchaudio"),
        V("2.11.0"),
        pins={V("2.8.0"): V("2.8.0")},
        torch_versions=TORCHES,
        companion_uploads={V("2.11.0"): "2026-03-01T09:00:00Z"},
        torch_uploads={
            V("2.8.0"): "2025-08-06T10:00:00Z",
            V("2.11.0"): "2026-03-01T12:00:00Z",  # torch came three hours after
        },
    )
    assert (choice.line, choice.from_table) == ((2, 11), False)
    assert choice.reason == (
        "by version numbering (torchaudio 2.8.0 pins torch 2.8.0) and upload times"
    )


def test_line_by_upload_times_alone() -> None:
    choice = torch_line_for(
        canonicalize_name("torchvision"),
        V("0.26.0"),
        pins={},
        torch_versions=TORCHES,
        companion_uploads={V("0.26.0"): "2025-08-07T00:00:00Z"},
        torch_uploads={V("2.5.1"): "2024-10-29T00:00:00Z", V("2.8.0"): "2025-08-06T00:00:00Z"},
    )
    assert choice.line == (2, 8) and choice.reason.startswith("by upload times")


def test_bulk_reupload_times_are_ignored_and_the_table_says_so() -> None:
    same = "2026-04-06T12:00:00Z"  # the PyTorch index re-listed old releases at one time
    choice = torch_line_for(
        canonicalize_name("torchvision"),
        V("0.26.0"),
        pins={},
        torch_versions=TORCHES,
        companion_uploads={V("0.26.0"): same},
        torch_uploads={V("2.5.1"): same, V("2.11.0"): same},
    )
    assert choice.line == (2, 11) and choice.from_table
    assert "wheelcache's table" in choice.reason


def test_two_requests_on_one_project_that_exclude_each_other() -> None:
    u = Universe(LINUX, [("mid", "1.0", []), ("mid", "2.0", [])])
    with pytest.raises(ResolutionError) as info:
        _resolve(u, "mid==1.0", "mid>=2")
    assert str(info.value) == (
        "cannot resolve for cp311-linux_x86_64 (cpu): mid: no version satisfies all of: "
        "you asked for mid==1.0; you asked for mid>=2"
    )
