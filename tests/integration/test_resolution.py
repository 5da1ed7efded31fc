"""Resolution cases from issue 15, each against a small index served on 127.0.0.1.

Every case failed before the change it tests: the search gave up after 2000 rounds, an
impossible extra was explained by a list of versions, ``--py 3.8`` took 3.8.x, a companion
without a torch pin was taken from another torch release, and a cp313 gap in the companions
was blamed on torch.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from tests.support.miniindex import Dist, serve_index
from wheelcache.cli.main import main


def _fetch(index: str, cache: Path, *args: str, verbose: bool = False) -> Result:
    argv = [*(["-v"] if verbose else []), "fetch", "--dry-run", "--json"]
    argv += ["--torch-index", index, "--index-url", index, "--cache-dir", str(cache), *args]
    return CliRunner().invoke(main, argv, catch_exceptions=False)


def _versions(result: Result) -> dict[str, str]:
    assert result.exit_code == 0, result.stderr
    data: dict[str, Any] = json.loads(result.stdout)
    return {f["project"]: f["version"] for f in data["files"]}


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Any]:
    def start(dists: Sequence[Dist]) -> str:
        return stack.enter_context(serve_index(tmp_path / "index", dists))

    from contextlib import ExitStack

    with ExitStack() as stack:
        yield start


# -- 1. a closure that needs many rounds of backtracking ---------------------------------------
FILLERS = [Dist(f"filler{i:02d}", "1.0") for i in range(40)]
BACKTRACKING = [
    # app N needs core==N; only app 1 goes with zlast, which needs core==1.  The resolver
    # learns that late: after app, core and the forty fillers are pinned.
    *(Dist("app", f"{n}.0", (f"core=={n}.0",)) for n in range(1, 61)),
    *(Dist("core", f"{n}.0") for n in range(1, 61)),
    Dist("zlast", "1.0", ("core==1.0",)),
    *FILLERS,
]


def test_backtracking_heavy_closure_resolves(serve: Any, tmp_path: Path) -> None:
    index = serve(BACKTRACKING)
    roots = ["app", *(d.name for d in FILLERS), "zlast"]
    got = _versions(
        _fetch(index, tmp_path / "c", "--py", "3.11", "--platform", "linux_x86_64", *roots)
    )
    assert (got["app"], got["core"], got["zlast"]) == ("1.0", "1.0", "1.0")
    assert len(got) == 43


# -- 2 and 5. an extra that cannot be met, and an extra that does not exist -----------------
def _frame(version: str, extra: bool) -> Dist:
    if not extra:  # like pandas 1.5.3: no "all" extra at all
        return Dist("frame", version, ("numbits",))
    return Dist(
        "frame",
        version,
        (
            "numbits",
            'frame[excel,parquet]; extra == "all"',
            'odfthing>=1.4; extra == "excel"',
            'fastpq; extra == "parquet"',
        ),
        extras=("all", "excel", "parquet"),
    )


IMPOSSIBLE_EXTRA = [
    _frame("1.5.3", extra=False),
    *(_frame(f"2.{n}.0", extra=True) for n in range(8)),
    Dist("odfthing", "1.4.1", tags=()),  # an sdist only: nothing to fetch
    *(Dist("fastpq", f"2024.{n}.0", ("frame>=1.5", "packing", "numbits")) for n in range(1, 9)),
    *(Dist("packing", f"{n}.0") for n in range(20, 26)),
    *(Dist("numbits", f"1.{n}.0") for n in range(20, 27)),
]


def test_impossible_extra_names_the_project_without_files_and_the_chain(
    serve: Any, tmp_path: Path
) -> None:
    index = serve(IMPOSSIBLE_EXTRA)
    result = _fetch(
        index, tmp_path / "c", "--py", "3.12", "--platform", "win_amd64", "frame[all]>=2"
    )
    assert result.exit_code == 1
    err = result.stderr
    assert "odfthing>=1.4 has no wheels on the index; none for cp312 on win_amd64" in err
    assert (
        "frame[all]>=2 (requested) → frame 2.7.0[all] requires frame[excel,parquet]==2.7.0 → "
        "frame 2.7.0[excel,parquet] requires odfthing>=1.4"
    ) in err
    assert len(err.strip().splitlines()) <= 6  # a few lines, not one per version
    assert "2.0.0" not in err


def test_missing_extra_warns_with_the_version(serve: Any, tmp_path: Path) -> None:
    index = serve(IMPOSSIBLE_EXTRA)
    result = _fetch(index, tmp_path / "c", "--py", "3.12", "--platform", "win_amd64", "frame[all]")
    assert _versions(result)["frame"] == "1.5.3"
    assert "frame 1.5.3 does not provide the extra 'all'" in result.stderr


# -- 3. --py 3.8 is 3.8.0 -------------------------------------------------------------------
PY381 = [
    Dist("flakey", "5.0.4", requires_python=">=3.6.1"),
    Dist("flakey", "7.1.2", requires_python=">=3.8.1"),
    Dist("chainy", "0.0.27", ('flakey; python_full_version >= "3.8.1"',), requires_python=">=3.8"),
]


@pytest.mark.parametrize(
    ("py", "flakey", "with_marker"), [("3.8", "5.0.4", False), ("3.8.10", "7.1.2", True)]
)
def test_py_without_micro_means_x_y_0(
    serve: Any, tmp_path: Path, py: str, flakey: str, with_marker: bool
) -> None:
    index = serve(PY381)
    plat = ("--platform", "linux_x86_64")
    assert _versions(_fetch(index, tmp_path / "c", "--py", py, *plat, "flakey"))["flakey"] == flakey
    got = _versions(_fetch(index, tmp_path / "c", "--py", py, *plat, "chainy"))
    assert ("flakey" in got) is with_marker


# -- 4 and 6. the torch trio ------------------------------------------------------------------
def _trio(
    torch: str, vision: str, audio: str, pythons: Sequence[str], *, audio_pins: bool = True
) -> list[Dist]:
    tags = tuple(f"{py}-{py}-manylinux_2_28_x86_64" for py in pythons)
    return [
        Dist("torch", torch, ("filelock",), tags=tags),
        Dist("torchvision", vision, (f"torch=={torch}",), tags=tags),
        Dist("torchaudio", audio, (f"torch=={torch}",) if audio_pins else (), tags=tags),
    ]


TRIO = [
    *_trio("2.4.0", "0.19.0", "2.4.0", ("cp311", "cp312")),
    *_trio("2.5.1", "0.20.1", "2.5.1", ("cp311", "cp312")),
    *_trio("2.6.0", "0.21.0", "2.6.0", ("cp311", "cp312", "cp313")),
    # torch 2.5.1 itself has a cp313 wheel; its companions do not.
    Dist("torch", "2.5.1", ("filelock",), tags=("cp313-cp313-manylinux_2_28_x86_64",)),
    *_trio("2.8.0", "0.23.0", "2.8.0", ("cp311", "cp312", "cp313")),
    # From 2.9 on torchaudio declares no torch requirement at all.
    *_trio("2.11.0", "0.26.0", "2.11.0", ("cp311", "cp312", "cp313"), audio_pins=False),
    Dist("filelock", "3.16.1"),
]
LINUX = ("--platform", "linux_x86_64")


def test_companion_without_torch_pin_follows_the_pinned_torch(serve: Any, tmp_path: Path) -> None:
    index = serve(TRIO)
    result = _fetch(index, tmp_path / "c", "--py", "3.12", *LINUX, "--torch", "2.4.0")
    got = _versions(result)
    assert (got["torch"], got["torchvision"], got["torchaudio"]) == ("2.4.0", "0.19.0", "2.4.0")
    assert (
        "torchaudio 2.4.0 goes with torch 2.4.0: its metadata pins torch 2.4.0; newer "
        "torchaudio 2.11.0 declares no torch requirement and is torch 2.11's release (by "
        "version numbering (torchaudio 2.8.0 pins torch 2.8.0))"
    ) in result.stderr


def test_unpinned_companion_is_taken_for_its_own_torch_and_said_so(
    serve: Any, tmp_path: Path
) -> None:
    index = serve(TRIO)
    result = _fetch(index, tmp_path / "c", "--py", "3.12", *LINUX)
    got = _versions(result)
    assert (got["torch"], got["torchvision"], got["torchaudio"]) == ("2.11.0", "0.26.0", "2.11.0")
    assert "torchaudio 2.11.0 declares no torch requirement; taken as torch 2.11's release" in (
        result.stderr
    )


def test_companion_gap_names_the_companions_not_torch(serve: Any, tmp_path: Path) -> None:
    index = serve(TRIO)
    result = _fetch(index, tmp_path / "c", "--py", "3.13", *LINUX, "--torch", "2.5.1")
    assert result.exit_code == 1
    err = result.stderr
    assert (
        "torchvision 0.20.1 has wheels for cp311–cp312 on manylinux_2_28_x86_64; none for "
        "cp313 on linux_x86_64 (torchvision==0.20.* is the release for torch 2.5.1"
    ) in err
    assert "torchaudio 2.5.1 has wheels for cp311–cp312" in err
    assert "torch==2.5.1 has no wheels" not in err and "torch: " not in err
    verbose = _fetch(
        index, tmp_path / "c", "--py", "3.13", *LINUX, "--torch", "2.5.1", verbose=True
    )
    assert "torchvision 0.23.0 requires torch==2.8.0" in verbose.stderr  # the conflict, with -v
