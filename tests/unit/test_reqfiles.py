"""Requirement and lock files on disk (wheelcache.reqfiles): includes, encodings, bounds."""

from __future__ import annotations

import codecs
from pathlib import Path

import pytest

from wheelcache import reqfiles
from wheelcache.errors import LockFileError, RequirementsFileError
from wheelcache.reqfiles import is_lock_file, read_lock_file, read_requirement_files

DATA = Path(__file__).resolve().parents[1] / "data" / "pylock"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_includes_are_relative_to_the_file_that_names_them(tmp_path: Path) -> None:
    top = write(tmp_path / "env" / "requirements.txt", "-r base/base.txt\n-c pins.txt\ntorch\n")
    write(tmp_path / "env" / "base" / "base.txt", "-r ../more.txt\nnumpy\n")
    write(tmp_path / "env" / "more.txt", "pillow\n--extra-index-url https://x.invalid/simple\n")
    write(tmp_path / "env" / "pins.txt", "numpy<2\n")
    got = read_requirement_files([top])
    rs = got.requirements
    assert [str(r.requirement) for r in rs.requirements] == ["pillow", "numpy", "torch"]
    assert [str(r.requirement) for r in rs.constraints] == ["numpy<2"]
    assert [o.value for o in rs.extra_index_urls] == ["https://x.invalid/simple"]
    assert str(rs.extra_index_urls[0].where).endswith("more.txt:2")
    assert [p.name for p in got.files] == ["requirements.txt", "base.txt", "more.txt", "pins.txt"]


def test_constraint_files_from_the_command_line(tmp_path: Path) -> None:
    req = write(tmp_path / "r.txt", "torch\n")
    con = write(tmp_path / "c.txt", "torch<2.5\n")
    rs = read_requirement_files([req], [con]).requirements
    assert [str(c.requirement) for c in rs.constraints] == ["torch<2.5"]


@pytest.mark.parametrize(
    ("encode", "label"),
    [
        (lambda t: codecs.BOM_UTF16_LE + t.encode("utf-16-le"), "utf-16 (PowerShell)"),
        (lambda t: codecs.BOM_UTF8 + t.encode("utf-8"), "utf-8 with BOM"),
        (lambda t: codecs.BOM_UTF32_LE + t.encode("utf-32-le"), "utf-32"),
    ],
)
def test_windows_encodings_with_a_bom(tmp_path: Path, encode: object, label: str) -> None:
    path = tmp_path / "requirements.txt"
    path.write_bytes(encode("torch==2.4.0\r\nnumpy\r\n"))  # type: ignore[operator]
    rs = read_requirement_files([path]).requirements
    assert [str(r.requirement) for r in rs.requirements] == ["torch==2.4.0", "numpy"], label


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"r.txt": "-r missing.txt\n"}, "r.txt:1: {d}/missing.txt: no such file"),
        ({"r.txt": "numpy\n-r a.txt\n", "a.txt": "-r r.txt\n"}, "a.txt:1: {d}/r.txt: includes"),
        ({"r.txt": "-r r.txt\n"}, "r.txt:1: {d}/r.txt: includes itself"),
        (
            {"r.txt": "-r https://x.invalid/r.txt\n"},
            "r.txt:1: https://x.invalid/r.txt: requirement",
        ),
        ({"r.txt": "-r pylock.toml\n", "pylock.toml": ""}, "pylock.toml: is a lock file"),
        ({"r.txt": "-f ./wheels\n"}, "r.txt:1: --find-links ./wheels: wheelcache reads find-links"),
        ({"r.txt": "-r sub\n", "sub/x": ""}, "r.txt:1: {d}/sub: is a directory"),
    ],
)
def test_bad_includes_name_the_line(tmp_path: Path, files: dict[str, str], message: str) -> None:
    for name, text in files.items():
        write(tmp_path / name, text)
    with pytest.raises(RequirementsFileError) as info:
        read_requirement_files([tmp_path / "r.txt"])
    assert message.format(d=tmp_path) in str(info.value)
    assert "\n" not in str(info.value)


def test_a_missing_or_binary_file(tmp_path: Path) -> None:
    with pytest.raises(RequirementsFileError, match=r"nope.txt: no such file$"):
        read_requirement_files([tmp_path / "nope.txt"])
    (tmp_path / "bin.txt").write_bytes(b"torch\n\xff\xfe\xfa\n")
    with pytest.raises(RequirementsFileError, match=r"bin.txt: not UTF-8 text"):
        read_requirement_files([tmp_path / "bin.txt"])


def test_files_are_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reqfiles, "MAX_FILE_BYTES", 100)
    big = write(tmp_path / "r.txt", "numpy\n" * 50)
    with pytest.raises(RequirementsFileError, match="bigger than"):
        read_requirement_files([big])
    monkeypatch.setattr(reqfiles, "MAX_DEPTH", 3)
    for i in range(5):
        write(tmp_path / f"d{i}.txt", f"-r d{i + 1}.txt\n")
    with pytest.raises(RequirementsFileError, match="more than 3 levels"):
        read_requirement_files([tmp_path / "d0.txt"])


def test_environment_variables_come_from_the_caller(tmp_path: Path) -> None:
    req = write(tmp_path / "r.txt", "--index-url https://${HOST}/simple\n")
    rs = read_requirement_files([req], environ={"HOST": "idx.invalid"}).requirements
    assert rs.index_url is not None and rs.index_url.value == "https://idx.invalid/simple"


@pytest.mark.parametrize(
    ("name", "is_lock"),
    [
        ("pylock.toml", True),
        ("pylock.cu118-cp39-win_amd64.toml", True),
        ("requirements.txt", False),
        ("pylock.a.b.toml", False),
        ("my-pylock.toml", False),
    ],
)
def test_a_lock_is_known_by_its_name(name: str, is_lock: bool) -> None:
    assert is_lock_file(Path(name)) is is_lock


def test_reading_a_lock(tmp_path: Path) -> None:
    lock = read_lock_file(DATA / "uv-universal-cu118.toml")
    assert lock.created_by == "uv" and len(lock.packages) == 28
    bad = write(tmp_path / "pylock.toml", 'lock-version = "1.0"\ncreated-by = \n')
    with pytest.raises(LockFileError, match=r"pylock.toml: not TOML: "):
        read_lock_file(bad)
    with pytest.raises(LockFileError, match=r"pylock.toml: no such file"):
        read_lock_file(tmp_path / "x" / "pylock.toml")
