"""Hash pins, constraints and direct wheel URLs over a dict-backed index (wheelcache.core.pins)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import NormalizedName, canonicalize_name

from wheelcache.core.evaluator import Candidate, best_per_version, evaluate_file
from wheelcache.core.models import CoreMetadata, DistFile, Sha256
from wheelcache.core.pins import PinnedSource, plan_requirements
from wheelcache.core.provider import resolve
from wheelcache.core.requirements_file import collect, parse_requirements_text
from wheelcache.core.target import Target, make_target
from wheelcache.errors import HashPinError, RequirementsFileError, ResolutionError


def sha(filename: str) -> Sha256:
    import hashlib

    return Sha256(hashlib.sha256(filename.encode()).hexdigest())


FILES = {
    "numpy": [
        "numpy-1.26.4-cp39-cp39-win_amd64.whl",
        "numpy-2.0.2-cp39-cp39-win_amd64.whl",
        "numpy-2.0.2-cp39-cp39-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
        "numpy-2.0.2-cp39-cp39-linux_x86_64.whl",
        "numpy-2.1.1-cp310-cp310-win_amd64.whl",
    ],
    "pillow": ["pillow-10.4.0-cp39-cp39-win_amd64.whl", "pillow-11.0.0-cp39-cp39-win_amd64.whl"],
    "mpmath": ["mpmath-1.3.0-py3-none-any.whl"],
}
DEPS = {"pillow": ["numpy"]}
NO_HASH = {"numpy-1.26.4-cp39-cp39-win_amd64.whl"}
WIN39 = make_target(python="39", platform="win_amd64")
LINUX39 = make_target(python="39", platform="linux_x86_64")


class Index:
    """An index as dicts: best file per version, every fitting file, metadata."""

    def __init__(self, target: Target) -> None:
        self.target = target

    def _evals(self, name: NormalizedName) -> list[Candidate]:
        out = []
        for fn in FILES.get(name, []):
            f = DistFile(fn, f"https://h.invalid/{fn}", None if fn in NO_HASH else sha(fn))
            c = evaluate_file(f, name, self.target).candidate
            if c is not None:
                out.append(c)
        return sorted(out, key=lambda c: c.sort_key, reverse=True)

    def find_candidates(self, name: NormalizedName) -> Sequence[Candidate]:
        return best_per_version(
            [evaluate_file(c.file, name, self.target) for c in self._evals(name)]
        )

    def all_candidates(self, name: NormalizedName) -> Sequence[Candidate]:
        return self._evals(name)

    def explain(self, name: NormalizedName, specifier: SpecifierSet) -> str:
        return f"{name}{specifier} has nothing for the target"

    def get_metadata(self, candidate: Candidate) -> CoreMetadata:
        deps = tuple(Requirement(d) for d in DEPS.get(candidate.name, []))
        return CoreMetadata(candidate.name, str(candidate.version), deps)


def run(text: str, target: Target = WIN39, constraints: str = "") -> dict[str, str]:
    entries = parse_requirements_text(text, source="r.txt")
    entries += parse_requirements_text(constraints, source="c.txt", constraint=True)
    plan = plan_requirements(collect(entries), target)
    index = Index(target)
    source = PinnedSource(index, index.all_candidates, plan.pins, target)
    source.check()
    res = resolve(plan.roots, target, source, index)
    return {c.name: c.file.filename for c in res.candidates}


def test_a_hash_pin_takes_the_pinned_file_not_the_best_one() -> None:
    manylinux = "numpy-2.0.2-cp39-cp39-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"
    assert run("numpy==2.0.2\n", LINUX39)["numpy"] == "numpy-2.0.2-cp39-cp39-linux_x86_64.whl"
    got = run(f"numpy==2.0.2 --hash=sha256:{sha(manylinux)}\n", LINUX39)
    assert got["numpy"] == manylinux


def test_pip_compile_style_pins_list_every_platform() -> None:
    pins = " ".join(f"--hash=sha256:{sha(f)}" for f in FILES["numpy"][1:4])
    assert run(f"numpy==2.0.2 {pins}\n")["numpy"] == "numpy-2.0.2-cp39-cp39-win_amd64.whl"


def test_a_pin_the_index_does_not_have_names_both_digests() -> None:
    wrong = "0" * 64
    with pytest.raises(HashPinError) as info:
        run(f"mpmath\nnumpy==2.0.2 --hash=sha256:{wrong}\n")
    win = "numpy-2.0.2-cp39-cp39-win_amd64.whl"
    assert str(info.value) == (
        f"r.txt:2: numpy==2.0.2 is pinned to sha256:{wrong} but the index has {win} "
        f"sha256:{sha(win)}; nothing was fetched (update the pin, or check that the index is "
        "the one the file was made for)"
    )


def test_a_file_without_an_index_hash_is_checked_against_a_single_pin() -> None:
    fn = "numpy-1.26.4-cp39-cp39-win_amd64.whl"
    entries = parse_requirements_text(f"numpy<2 --hash=sha256:{sha(fn)}\n", source="r.txt")
    plan = plan_requirements(collect(entries), WIN39)
    index = Index(WIN39)
    [cand] = PinnedSource(index, index.all_candidates, plan.pins, WIN39).find_candidates(
        canonicalize_name("numpy")
    )
    assert (cand.file.filename, cand.file.sha256) == (fn, sha(fn))


def test_constraints_limit_versions_without_adding_projects() -> None:
    assert run("pillow\n", constraints="numpy<2\nmpmath==1.3.0\n") == {
        "pillow": "pillow-11.0.0-cp39-cp39-win_amd64.whl",
        "numpy": "numpy-1.26.4-cp39-cp39-win_amd64.whl",
    }
    with pytest.raises(ResolutionError, match=r"constrained to <1 by c.txt:1"):
        run("numpy\n", constraints="numpy<1\n")


def test_markers_of_lines_are_judged_for_the_target() -> None:
    entries = parse_requirements_text(
        'numpy ; sys_platform == "linux"\nmpmath ; sys_platform == "win32"\n', source="r.txt"
    )
    plan = plan_requirements(collect(entries), WIN39)
    assert [r.name for r in plan.roots] == ["mpmath"]
    assert plan.left_out == ('r.txt:1: numpy; sys_platform == "linux"',)


def test_a_direct_wheel_url_is_the_only_candidate() -> None:
    fn = "numpy-2.0.2-cp39-cp39-win_amd64.whl"
    got = run(f"pillow==10.4.0\nnumpy @ https://w.invalid/{fn}#sha256={sha(fn)}\n")
    assert got["numpy"] == fn
    entries = parse_requirements_text(
        f"https://w.invalid/{fn} --hash=sha256:{sha(fn)}\n", source="r.txt"
    )
    plan = plan_requirements(collect(entries), WIN39)
    assert plan.pins.direct[canonicalize_name("numpy")].file == DistFile(
        fn, f"https://w.invalid/{fn}", sha(fn)
    )


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (
            "numpy @ https://w.invalid/numpy-2.0.2-cp39-cp39-win_amd64.whl",
            "r.txt:1: https://w.invalid/numpy-2.0.2-cp39-cp39-win_amd64.whl gives no sha256",
        ),
        (
            f"numpy @ https://w.invalid/numpy-2.0.2-cp39-cp39-linux_x86_64.whl#sha256={'a' * 64}",
            "r.txt:1: https://w.invalid/numpy-2.0.2-cp39-cp39-linux_x86_64.whl: built for "
            "cp39-cp39-linux_x86_64, target is cp39-win_amd64 (cpu)",
        ),
    ],
)
def test_direct_urls_need_a_hash_and_must_fit(line: str, message: str) -> None:
    with pytest.raises(RequirementsFileError) as info:
        run(line + "\n")
    assert str(info.value).startswith(message)
