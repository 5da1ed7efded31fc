"""Transfers overlap resolution: a wheel's download starts when the resolver pins it."""

from __future__ import annotations

from pathlib import Path

from tests.integration.test_fetch import names, ok_json, run
from tests.support.torchindex import TorchIndex

LINUX_TORCH = "/whl/cu118/torch-2.4.0+cu118-cp39-cp39-linux_x86_64.whl"
STALL = 3.0
WIN39 = ("--cuda", "118", "--py", "39", "--platform", "win_amd64")
LINUX39_TORCH240 = ("--cuda", "118", "--py", "39", "--platform", "linux_x86_64", "--torch", "2.4.0")
LINUX310_TORCH240 = (
    "--cuda",
    "118",
    "--py",
    "310",
    "--platform",
    "linux_x86_64",
    "--torch",
    "2.4.0",
)


def test_torch_transfer_starts_while_resolution_still_waits_for_a_page(
    torch_index: TorchIndex, tmp_path: Path
) -> None:
    """mpmath's page (needed only through sympy, late in resolution) answers after 3 s; the
    torch wheel (pinned first) must be on its way long before that answer could arrive."""
    torch_index.deps.fault("/simple/mpmath/", times=None, stall_after=1, stall_seconds=STALL)
    data = ok_json(
        run(
            torch_index,
            tmp_path / "cache",
            *LINUX39_TORCH240,
        )
    )
    assert "mpmath-1.3.0-py3-none-any.whl" in names(data)
    mpmath = min(r.at for r in torch_index.deps.requests if r.path == "/simple/mpmath/")
    torch_gets = [r.at for r in torch_index.cdn.requests if r.path == LINUX_TORCH]
    assert torch_gets, "the torch wheel was not downloaded"
    assert min(torch_gets) < mpmath + STALL - 1.0


def test_a_torch_the_companions_reject_is_never_started(
    torch_index: TorchIndex, tmp_path: Path
) -> None:
    """Without --torch, cp39/win_amd64/cu118 pins torch 2.5.1 first, then backtracks (no
    torchaudio 2.5.1 there): that torch must not start downloading, because the family's
    transfers wait until all three are pinned."""
    data = ok_json(
        run(
            torch_index,
            tmp_path / "cache",
            *WIN39,
        )
    )
    assert "torch-2.4.0+cu118-cp39-cp39-win_amd64.whl" in names(data)
    wrong = "/whl/cu118/torch-2.5.1+cu118-cp39-cp39-win_amd64.whl"
    assert [r for r in torch_index.cdn.requests if r.path == wrong and r.method == "GET"] == []


def test_a_page_copy_torn_by_a_power_loss_is_fetched_again(
    torch_index: TorchIndex, tmp_path: Path
) -> None:
    """Page copies are written without fsync; one whose body no longer matches its meta (an
    empty body after a power loss) must not be revalidated into use: a 304 would then answer
    with the torn copy, a project with no files."""
    from tests.support.fetchcli import fetch_json as _fetch
    from wheelcache.core.layout import CacheLayout

    cache = tmp_path / "c"
    code, _, err = _fetch(torch_index, cache, "filelock")
    assert code == 0, err
    url = f"{torch_index.deps_index_url}/filelock/"
    body, meta = CacheLayout(cache).page(url)
    Path(body).write_bytes(b"")  # the data never reached the disk; the rename did
    torch_index.clear()
    code, out, err = _fetch(torch_index, cache, "filelock")
    assert code == 0, err
    asked = [r for r in torch_index.deps.requests if r.path == "/simple/filelock/"]
    assert asked and all("if-none-match" not in r.headers for r in asked)
    assert Path(body).read_bytes()  # stored again, whole
    code, _, err = _fetch(torch_index, cache, "filelock", "--offline")
    assert code == 0, err


def test_prefetch_reads_the_metadata_resolution_will_use(
    torch_index: TorchIndex, tmp_path: Path
) -> None:
    """Metadata fetched ahead follows the specifiers known at the time: the pinned torch, not
    the newest, nor the one below it (a backtrack over the companions never goes there); a
    dependency's pinned version; never a yanked file or a pre-release."""
    ok_json(
        run(
            torch_index,
            tmp_path / "cache",
            *LINUX310_TORCH240,
        )
    )
    asked = {r.path for srv in torch_index.servers for r in srv.requests}
    never = {
        "/whl/cu118/torch-2.5.1+cu118-cp310-cp310-linux_x86_64.whl.metadata",  # not the pin
        "/whl/cu118/torch-2.3.1+cu118-cp310-cp310-linux_x86_64.whl",  # nor the one below it
        "/files/filelock-3.16.2-py3-none-any.whl.metadata",  # yanked
        "/files/networkx-3.4rc1-py3-none-any.whl.metadata",  # a pre-release
        "/files/nvidia_nccl_cu11-2.21.5-py3-none-manylinux1_x86_64.whl.metadata",  # not torch's
    }
    assert not never & asked
    assert "/whl/cu118/torch-2.4.0+cu118-cp310-cp310-linux_x86_64.whl.metadata" in asked


def test_an_exactly_pinned_torch_starts_before_its_dependencies_are_listed(
    torch_index: TorchIndex, tmp_path: Path
) -> None:
    """The resolver pins torch only after reading the pages of all torch's dependencies; with
    --torch there is one torch to take, so it starts as soon as its page is read.  filelock's
    page (a torch dependency) answers after 3 s; torch must be on its way before that."""
    torch_index.deps.fault("/simple/filelock/", times=None, stall_after=1, stall_seconds=STALL)
    ok_json(
        run(
            torch_index,
            tmp_path / "cache",
            *LINUX39_TORCH240,
        )
    )
    filelock = min(r.at for r in torch_index.deps.requests if r.path == "/simple/filelock/")
    torch_gets = [r.at for r in torch_index.cdn.requests if r.path == LINUX_TORCH]
    assert torch_gets and min(torch_gets) < filelock + STALL - 1.0


def test_no_deps_reads_no_dependency_page(torch_index: TorchIndex, tmp_path: Path) -> None:
    """``--no-deps``: torch's metadata may be read, its dependencies' pages never are."""
    out = ok_json(
        run(
            torch_index,
            tmp_path / "cache",
            "torch",
            "--no-deps",
            *LINUX310_TORCH240,
        )
    )
    assert [f["project"] for f in out["files"]] == ["torch"]
    assert not [r.path for r in torch_index.deps.requests if r.path.startswith("/simple/")]


def test_with_no_deps_each_wheel_starts_when_its_own_page_is_judged(
    torch_index: TorchIndex, tmp_path: Path
) -> None:
    """The resolver reads every root's page before it pins the first; with --no-deps nothing
    but a root's own page decides its wheel, so filelock's starts while mpmath's page (a
    root too) is still 3 s from answering."""
    torch_index.deps.fault("/simple/mpmath/", times=None, stall_after=1, stall_seconds=STALL)
    out = ok_json(run(torch_index, tmp_path / "cache", "filelock", "mpmath", "--no-deps", *WIN39))
    assert sorted(f["project"] for f in out["files"]) == ["filelock", "mpmath"]
    mpmath = min(r.at for r in torch_index.deps.requests if r.path == "/simple/mpmath/")
    servers = (torch_index.deps, torch_index.cdn, torch_index.index)
    gets = [
        r.at
        for srv in servers
        for r in srv.requests
        if r.method == "GET" and r.path.endswith(".whl") and "filelock" in r.path
    ]
    assert gets and min(gets) < mpmath + STALL - 1.0
