"""``fetch`` from requirement files against the PyTorch-style index on 127.0.0.1: includes,
constraints, markers and extras for the target, index options, hash pins, direct URLs, and the
PEP 751 lock every fetch writes."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.support.httpserver import FileServer
from tests.support.lockclients import pip_install_lock, uv_install_lock
from tests.support.torchindex import TorchIndex
from tests.support.wheels import build_wheel
from wheelcache.core.lockfile import select_locked
from wheelcache.core.target import Target, make_target
from wheelcache.errors import HashPinError, RequirementsFileError
from wheelcache.jobs.fetch import FetchRequest, FetchResult, fetch
from wheelcache.net.client import http_session
from wheelcache.reqfiles import read_lock_file, read_requirement_files
from wheelcache.store.cache import Cache

WIN39 = make_target(python="39", platform="win_amd64", variant="cu118")


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def run(
    ti: TorchIndex,
    cache: Path,
    *files: Path,
    target: Target = WIN39,
    constraints: tuple[Path, ...] = (),
    index_urls: tuple[str, ...] | None = None,
    **kw: object,
) -> FetchResult:
    inputs = read_requirement_files(files, constraints)
    request = FetchRequest(
        target=target,
        requirements=(),
        torch_index=ti.torch_index_url,
        index_urls=(ti.deps_index_url,) if index_urls is None else index_urls,
        files=inputs.requirements,
        **kw,  # type: ignore[arg-type]
    )
    with http_session(None, offline=False) as http:
        return fetch(request, Cache(cache), http=http)


def filenames(result: FetchResult) -> set[str]:
    return {f.filename for f in result.files}


def nothing_stored(cache: Path) -> bool:
    c = Cache(cache)
    wheels = list(Path(c.layout.wheels).glob("*.whl"))
    partial = [p for p in Path(c.layout.partial).iterdir()]
    return not c.catalog.all() and not wheels and not partial


def test_includes_constraints_markers_extras_and_the_files_index(
    torch_index: TorchIndex, tmp_path: Path
) -> None:
    write(tmp_path / "base.txt", "networkx\n-c pins.txt\n")
    write(tmp_path / "pins.txt", "networkx<3.2  # the 3.1 release\n")
    req = write(
        tmp_path / "requirements.txt",
        f"--index-url {torch_index.deps_index_url}\n"
        "-r base.txt\n"
        'pillow ; sys_platform == "linux"\n'
        "torch[opt-einsum]==2.4.0\n",
    )
    result = run(torch_index, tmp_path / "c", req, index_urls=("http://127.0.0.1:9/unused",))
    got = filenames(result)
    assert "networkx-3.1-py3-none-any.whl" in got  # the constraint from the nested file
    assert "torch-2.4.0+cu118-cp39-cp39-win_amd64.whl" in got
    assert "opt_einsum-3.3.0-py3-none-any.whl" in got  # the extra, for the target
    assert not any(n.startswith(("pillow", "torchvision")) for n in got)  # marker; not asked
    assert result.index_options == (f"{req}:1: --index-url {torch_index.deps_index_url}",)


def test_hash_pins_must_match_the_index(torch_index: TorchIndex, tmp_path: Path) -> None:
    numpy = "numpy-2.0.2-cp39-cp39-win_amd64.whl"
    good = torch_index.sha256(numpy)
    other = torch_index.sha256(
        "numpy-2.0.2-cp39-cp39-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"
    )
    req = write(tmp_path / "r.txt", f"numpy==2.0.2 --hash=sha256:{other} --hash=sha256:{good}\n")
    result = run(torch_index, tmp_path / "c", req)
    assert [(f.filename, f.sha256) for f in result.files] == [(numpy, good)]

    bad = write(tmp_path / "bad.txt", "mpmath\nnumpy==2.0.2 \\\n  --hash=sha256:" + "0" * 64 + "\n")
    torch_index.clear()
    with pytest.raises(HashPinError) as info:
        run(torch_index, tmp_path / "c2", bad)
    assert str(info.value).startswith(
        f"{bad}:2: numpy==2.0.2 is pinned to sha256:{'0' * 64} but the index has {numpy} "
        f"sha256:{good}"
    )
    assert nothing_stored(tmp_path / "c2")
    assert not [r for s in torch_index.servers for r in s.requests if r.path.endswith(".whl")]


def test_a_direct_wheel_url_with_a_hash(torch_index: TorchIndex, tmp_path: Path) -> None:
    fn = "mpmath-1.3.0-py3-none-any.whl"
    url = torch_index.url(fn)
    req = write(tmp_path / "r.txt", f"mpmath @ {url}#sha256={torch_index.sha256(fn)}\n")
    result = run(torch_index, tmp_path / "c", req, index_urls=())
    assert [(f.filename, f.url) for f in result.files] == [(fn, url)]
    unpinned = write(tmp_path / "u.txt", f"{url}\n")
    with pytest.raises(RequirementsFileError, match=r"u.txt:1: .* gives no sha256"):
        run(torch_index, tmp_path / "c2", unpinned)
    assert nothing_stored(tmp_path / "c2")


def test_find_links_pages_add_wheels_to_every_project(
    torch_index: TorchIndex, tmp_path: Path
) -> None:
    extra = build_wheel(tmp_path / "built", "lab-tools", "0.3", requires_dist=["mpmath"])
    with FileServer() as links:
        links.add(f"/wheels/{extra.name}", extra)
        page = f'<html><body><a href="{extra.name}">{extra.name}</a></body></html>'
        links.add("/wheels/", page.encode(), content_type="text/html")
        req = write(tmp_path / "r.txt", f"--find-links {links.url}/wheels/\nlab-tools\n")
        result = run(torch_index, tmp_path / "c", req)
    assert filenames(result) == {extra.name, "mpmath-1.3.0-py3-none-any.whl"}
    assert result.index_options == (f"{req}:1: --find-links {links.url}/wheels/",)


def test_nothing_asked_is_the_trio_but_a_file_is_something(
    torch_index: TorchIndex, tmp_path: Path
) -> None:
    req = write(tmp_path / "r.txt", "# only a comment\nsympy\n")
    got = filenames(run(torch_index, tmp_path / "c", req, dry_run=True))
    assert got == {"sympy-1.13.1-py3-none-any.whl", "mpmath-1.3.0-py3-none-any.whl"}


def test_every_fetch_writes_a_lock_that_reads_back_and_installs(
    torch_index: TorchIndex, tmp_path: Path
) -> None:
    """The lock beside the requirements file: valid PEP 751, the same files, and pip and uv
    install from it offline (for this machine, so that they can)."""
    py = f"{sys.version_info[0]}.{sys.version_info[1]}"
    host = make_target(python=py, platform="linux_x86_64", variant="cpu")
    req = write(tmp_path / "r.txt", "sympy\n")
    result = run(torch_index, tmp_path / "c", req, target=host)
    assert result.lock_file is not None
    assert result.lock_file.name == f"pylock.cpu-cp{py.replace('.', '')}-linux_x86_64.toml"
    assert result.lock_file.parent == result.requirements_file.parent  # type: ignore[union-attr]
    lock = read_lock_file(result.lock_file)
    assert lock.created_by == "wheelcache"
    chosen = select_locked(lock, host, source="lock").wheels
    assert {(w.filename, w.sha256, w.size) for w in chosen} == {
        (f.filename, f.sha256, f.size) for f in result.files
    }
    assert all(w.url and w.url.startswith(torch_index.deps.url) for w in chosen)
    assert all(w.upload_time == "2024-07-01T00:00:00+00:00" for w in chosen)  # from PEP 691
    assert pip_install_lock(result.lock_file, tmp_path) == {"sympy-1.13.1", "mpmath-1.3.0"}
    assert uv_install_lock(result.lock_file, tmp_path) == {"sympy-1.13.1", "mpmath-1.3.0"}
