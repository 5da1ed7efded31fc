"""PEP 751 locks (wheelcache.core.lockfile, lockwrite): what a lock gives a target, and the lock
we write."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import pytest
from packaging.pylock import Pylock

from wheelcache.core.lockfile import LockedWheel, lock_filename, parse_pylock, select_locked
from wheelcache.core.lockwrite import build_pylock, pylock_text, render_pylock
from wheelcache.core.models import Sha256
from wheelcache.core.target import Target, make_target
from wheelcache.errors import LockFileError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

DATA = Path(__file__).resolve().parents[1] / "data" / "pylock"
WIN39 = make_target(python="39", platform="win_amd64", variant="cu118")
LINUX39 = make_target(python="39", platform="linux_x86_64", variant="cu118")
AARCH310 = make_target(python="310", platform="linux_aarch64", variant="cu118")
MAC39 = make_target(python="39", platform="macosx_11_0_arm64")


def uv_lock() -> dict[str, Any]:
    return tomllib.loads((DATA / "uv-universal-cu118.toml").read_text(encoding="utf-8"))


def lock_of(data: dict[str, Any]) -> Pylock:
    return parse_pylock(data, source="pylock.toml")


def chosen(data: dict[str, Any], target: Target) -> dict[str, str]:
    return {w.project: w.filename for w in select_locked(lock_of(data), target, source="l").wheels}


def test_a_universal_uv_lock_gives_windows_its_own_wheels() -> None:
    got = chosen(uv_lock(), WIN39)
    assert got == {
        "filelock": "filelock-3.16.1-py3-none-any.whl",
        "fsspec": "fsspec-2024.6.1-py3-none-any.whl",
        "jinja2": "jinja2-3.1.4-py3-none-any.whl",
        "markupsafe": "MarkupSafe-2.1.5-cp39-cp39-win_amd64.whl",
        "mpmath": "mpmath-1.3.0-py3-none-any.whl",
        "networkx": "networkx-3.2.1-py3-none-any.whl",
        "numpy": "numpy-2.0.2-cp39-cp39-win_amd64.whl",
        "pillow": "pillow-10.4.0-cp39-cp39-win_amd64.whl",
        "sympy": "sympy-1.13.1-py3-none-any.whl",
        "torch": "torch-2.4.0+cu118-cp39-cp39-win_amd64.whl",
        "torchvision": "torchvision-0.19.0+cu118-cp39-cp39-win_amd64.whl",
        "typing-extensions": "typing_extensions-4.12.2-py3-none-any.whl",
    }


def test_markers_are_judged_for_the_target_not_this_machine() -> None:
    linux = chosen(uv_lock(), LINUX39)
    assert linux["torch"] == "torch-2.4.0+cu118-cp39-cp39-linux_x86_64.whl"
    assert linux["triton"].startswith("triton-3.0.0-1-cp39-cp39-manylinux")
    assert len([n for n in linux if n.startswith("nvidia-")]) == 11
    linux310 = chosen(uv_lock(), make_target(python="310", platform="linux_x86_64"))
    assert linux310["networkx"] == "networkx-3.3-py3-none-any.whl"  # the 3.10 half of the lock
    with pytest.raises(LockFileError) as info:  # the test index has no aarch64 numpy …
        select_locked(lock_of(uv_lock()), AARCH310, source="l")
    assert str(info.value).startswith(
        "l: the lock does not cover cp310-linux_aarch64 (cu118): no usable wheel for "
        "markupsafe 2.1.5 (wheels for manylinux2014_x86_64, manylinux_2_17_x86_64, win_amd64; "
        "its sdist would need a build), numpy 2.1.1 (wheels for macosx_11_0_arm64, "
    )
    assert "torch" not in str(info.value)  # … but the plain aarch64 torch wheels fit


def test_the_selection_carries_url_hash_size_and_upload_time() -> None:
    sel = select_locked(lock_of(uv_lock()), WIN39, source="l")
    fsspec = next(w for w in sel.wheels if w.project == "fsspec")
    assert fsspec == LockedWheel(
        project="fsspec",
        version="2024.6.1",
        filename="fsspec-2024.6.1-py3-none-any.whl",
        sha256=Sha256("806969bc253f5ff1a5af52097056346db10837ac8114991ced38342817e8d8a1"),
        url="https://deps.invalid/files/fsspec-2024.6.1-py3-none-any.whl",
        size=1246,
        upload_time="2024-07-01T00:00:00+00:00",
    )
    assert "triton" in sel.skipped and "nvidia-nccl-cu11" in sel.skipped


def test_a_lock_that_does_not_cover_the_target_names_every_package_without_a_wheel() -> None:
    with pytest.raises(LockFileError) as info:
        select_locked(lock_of(uv_lock()), MAC39, source="pylock.toml")
    msg = str(info.value)
    assert msg.startswith("pylock.toml: the lock does not cover cp39-macosx_11_0_arm64 (cpu)")
    for name in ("markupsafe 2.1.5", "torch 2.4.0+cu118", "torchvision 0.19.0+cu118"):
        assert name in msg
    assert "numpy" not in msg and "\n" not in msg  # numpy has a macOS wheel


def test_a_lock_for_another_python() -> None:
    data = uv_lock()
    data["requires-python"] = ">=3.10"
    with pytest.raises(LockFileError) as info:
        select_locked(lock_of(data), WIN39, source="pylock.toml")
    # "3.9" or "3.9.0": --py 3.9 is the first 3.9 release once resolution follows pip and uv
    assert re.fullmatch(
        r"pylock.toml: the lock requires Python >=3.10 but the target cp39-win_amd64 \(cu118\) "
        r"has Python 3\.9(\.0)?: lock for that Python, or fetch for one the lock fits \(--py\)",
        str(info.value),
    )


def test_environments_must_name_the_target() -> None:
    data = uv_lock()
    data["environments"] = ["sys_platform == 'linux'", "sys_platform == 'darwin'"]
    with pytest.raises(LockFileError, match=r"is for the environments \(sys_platform == "):
        select_locked(lock_of(data), WIN39, source="pylock.toml")
    assert chosen(data, LINUX39)["torch"].endswith("linux_x86_64.whl")


def _one(package: dict[str, Any], **lock: Any) -> dict[str, Any]:
    return {"lock-version": "1.0", "created-by": "test", "packages": [package], **lock}


SHA = {"sha256": "ab" * 32}
SDIST = "https://f.invalid/x-1.0.tar.gz"
WHEEL = {"url": "https://f.invalid/x-1.0-py3-none-any.whl", "hashes": SHA}


@pytest.mark.parametrize(
    ("package", "message"),
    [
        (
            {"name": "x", "version": "1.0", "sdist": {"url": SDIST, "hashes": SHA}},
            "cannot fetch without a build: x 1.0 (sdist only); wheelcache fetches wheels only",
        ),
        (
            {"name": "x", "vcs": {"type": "git", "url": "https://g.invalid/x", "commit-id": "c0"}},
            "cannot fetch without a build: x (git checkout)",
        ),
        ({"name": "x", "directory": {"path": "./x"}}, "without a build: x (directory ./x)"),
        (
            {"name": "x", "archive": {"url": SDIST, "hashes": SHA}},
            "cannot fetch without a build: x (source archive)",
        ),
        (
            {"name": "x", "wheels": [{**WHEEL, "hashes": {"sha512": "00" * 64}}]},
            "x: x-1.0-py3-none-any.whl has no valid sha256 hash (given: sha512)",
        ),
        (
            {"name": "x", "wheels": [{**WHEEL, "hashes": {"sha256": "../../etc/passwd"}}]},
            "has no valid sha256 hash",
        ),
        (
            {"name": "x", "wheels": [{**WHEEL, "url": "ftp://f.invalid/x-1.0-py3-none-any.whl"}]},
            "url 'ftp://f.invalid/x-1.0-py3-none-any.whl' is not http(s)",
        ),
        (
            {"name": "x", "wheels": [{"path": "../../x-1.0-py3-none-any.whl", "hashes": SHA}]},
            "path '../../x-1.0-py3-none-any.whl' is not relative to the lock",
        ),
        (
            {"name": "x", "wheels": [{"path": "C:\\w\\x-1.0-py3-none-any.whl", "hashes": SHA}]},
            "is not relative to the lock",
        ),
        (
            {"name": "x", "wheels": [{**WHEEL, "path": "../../etc/x-1.0-py3-none-any.whl"}]},
            "path '../../etc/x-1.0-py3-none-any.whl' is not relative to the lock",
        ),
        (
            {"name": "x", "requires-python": ">=3.12", "wheels": [WHEEL]},
            "x requires Python >=3.12 but the target cp39-win_amd64 (cu118) has Python 3.9",
        ),
    ],
)
def test_packages_refused_in_one_line(package: dict[str, Any], message: str) -> None:
    with pytest.raises(LockFileError) as info:
        select_locked(lock_of(_one(package)), WIN39, source="pylock.toml")
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_every_package_needing_a_build_is_named_at_once() -> None:
    data = _one({"name": "a", "directory": {"path": "a"}})
    data["packages"].append({"name": "b", "directory": {"path": "b"}})
    with pytest.raises(LockFileError, match=r"a \(directory a\), b \(directory b\)"):
        select_locked(lock_of(data), WIN39, source="pylock.toml")


def test_an_archive_that_is_a_wheel_is_fetched_like_one() -> None:
    archive = {"url": "https://f.invalid/x-1.0-py3-none-any.whl", "size": 9, "hashes": SHA}
    sel = select_locked(lock_of(_one({"name": "x", "archive": archive})), WIN39, source="l")
    assert [(w.filename, w.url, w.size) for w in sel.wheels] == [
        ("x-1.0-py3-none-any.whl", archive["url"], 9)
    ]


def test_a_package_selected_twice_for_the_target_is_an_error() -> None:
    data = _one({"name": "x", "wheels": [WHEEL]})
    data["packages"].append({"name": "x", "marker": "sys_platform == 'win32'", "wheels": [WHEEL]})
    with pytest.raises(
        LockFileError, match=r"x is selected twice .*packages\[0\] and packages\[1\]"
    ):
        select_locked(lock_of(data), WIN39, source="l")


def test_default_groups_and_extras_in_markers() -> None:
    data = _one({"name": "x", "marker": "'dev' in dependency_groups", "wheels": [WHEEL]})
    assert select_locked(lock_of(data), WIN39, source="l").wheels == ()
    data["default-groups"] = ["dev"]
    data["dependency-groups"] = ["dev"]
    assert len(select_locked(lock_of(data), WIN39, source="l").wheels) == 1
    data = _one({"name": "x", "marker": "'gpu' in extras", "wheels": [WHEEL]}, extras=["gpu"])
    assert select_locked(lock_of(data), WIN39, source="l").wheels == ()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"lock-version": "2.0", "created-by": "x", "packages": []},
            "pylock.toml: lock-version '2.0' is not one wheelcache reads (1.x)",
        ),
        (
            {"lock-version": "one", "created-by": "x", "packages": []},
            "pylock.toml: not a valid PEP 751 lock: Invalid version: 'one' in 'lock-version'",
        ),
        (
            {"lock-version": "1.0", "packages": []},
            "pylock.toml: not a valid PEP 751 lock: Missing required value in 'created-by'",
        ),
        (
            {"lock-version": "1.0", "created-by": "x", "packages": [{"name": "X_Y"}]},
            "pylock.toml: not a valid PEP 751 lock: Name 'X_Y' is not normalized in "
            "'packages[0].name'",
        ),
    ],
)
def test_locks_we_cannot_read(data: dict[str, Any], message: str) -> None:
    with pytest.raises(LockFileError) as info:
        parse_pylock(data, source="pylock.toml")
    assert str(info.value).startswith(message)


def _fetched(target: Target) -> list[LockedWheel]:
    return [
        LockedWheel(
            project="torch",
            version="2.4.0+cu118",
            filename="torch-2.4.0+cu118-cp39-cp39-win_amd64.whl",
            sha256=Sha256("1" * 64),
            url="https://cdn.invalid/whl/cu118/torch-2.4.0%2Bcu118-cp39-cp39-win_amd64.whl",
            path="torch-2.4.0+cu118-cp39-cp39-win_amd64.whl",
            size=4194304,
            upload_time="2026-04-06T12:00:00Z",
        ),
        LockedWheel(
            project="filelock",
            version="3.16.1",
            filename="filelock-3.16.1-py3-none-any.whl",
            sha256=Sha256("2" * 64),
            url='https://deps.invalid/files/a "quoted"\\name\x7f',
            path="filelock-3.16.1-py3-none-any.whl",
            size=1249,
        ),
    ]


def test_the_lock_we_write_reads_back_and_selects_what_was_fetched() -> None:
    lock = build_pylock(_fetched(WIN39), WIN39)
    text = render_pylock(lock)
    back = lock_of(tomllib.loads(text))
    assert back == lock
    assert pylock_text(_fetched(WIN39), WIN39) == text  # the fast path writes the same
    assert back.created_by == "wheelcache"
    assert [str(m) for m in back.environments or ()] == [
        'sys_platform == "win32" and platform_machine == "AMD64" and '
        'implementation_name == "cpython" and python_version == "3.9"'
    ]
    assert str(back.requires_python) == "==3.9.*"
    assert text.startswith("# Written by wheelcache")
    assert "upload-time = 2026-04-06T12:00:00+00:00\n" in text
    sel = select_locked(back, WIN39, source="l")
    assert sorted(sel.wheels, key=lambda w: w.filename) == sorted(
        (
            w.__class__(**{**_as_dict(w), "upload_time": _iso(w.upload_time)})
            for w in _fetched(WIN39)
        ),
        key=lambda w: w.filename,
    )


def _as_dict(w: LockedWheel) -> dict[str, Any]:
    return {f: getattr(w, f) for f in LockedWheel.__dataclass_fields__}


def _iso(text: str | None) -> str | None:
    return None if text is None else text.replace("Z", "+00:00")


def test_the_lock_we_write_refuses_other_targets() -> None:
    lock = build_pylock(_fetched(WIN39), WIN39)
    with pytest.raises(LockFileError, match="requires Python ==3.9.*"):
        select_locked(lock, make_target(python="310", platform="win_amd64"), source="l")
    with pytest.raises(LockFileError, match="is for the environments"):
        select_locked(lock, LINUX39, source="l")


def test_wheels_of_one_project_are_one_package() -> None:
    base = _fetched(WIN39)[0]
    other = LockedWheel(
        **{
            **_as_dict(base),
            "filename": base.filename.replace("cp39-cp39", "py3-none"),
            "sha256": Sha256("3" * 64),
        }
    )
    lock = build_pylock([base, other], WIN39)
    assert [(p.name, len(p.wheels or ())) for p in lock.packages] == [("torch", 2)]
    newer = LockedWheel(**{**_as_dict(other), "version": "2.5.0"})
    with pytest.raises(LockFileError, match="torch 2.4.0.cu118 and 2.5.0 cannot both be locked"):
        build_pylock([base, newer], WIN39)


def test_lock_file_names_are_pep_751_names() -> None:
    from packaging.pylock import is_valid_pylock_path

    for variant in ("cu118", "cpu", "rocm6.2.4"):
        name = lock_filename(make_target(python="313t", platform="linux_x86_64", variant=variant))
        assert is_valid_pylock_path(Path(name)), name
