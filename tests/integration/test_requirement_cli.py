"""The command line of requirement files and locks: ``fetch -r/-c``, one ``-r/--requirement``
across fetch, export, serve and index (old spellings as deprecated aliases), and every bad input
as one line, the right exit code, nothing fetched and nothing left in the cache."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from tests.support.lockclients import uv_compile
from tests.support.torchindex import WIN_CU118_PY39, TorchIndex
from wheelcache.cli.main import main
from wheelcache.reqfiles import read_lock_file
from wheelcache.store.cache import Cache

WIN39 = ("--py", "39", "--platform", "win_amd64")


def fetch(ti: TorchIndex, cache: Path, *args: str) -> Result:
    argv = [
        "fetch",
        "--torch-index",
        ti.torch_index_url,
        "--index-url",
        ti.deps_index_url,
        "--cache-dir",
        str(cache),
        *args,
    ]
    return CliRunner().invoke(main, argv)


def ok_json(result: Result) -> dict[str, Any]:
    assert result.exit_code == 0, result.stderr
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def empty_cache(cache: Path) -> bool:
    if not cache.exists():
        return True
    c = Cache(cache)
    return not c.catalog.all() and not list(Path(c.layout.wheels).glob("*.whl"))


def test_fetch_r_and_c_report_the_files_index_options_and_the_lock(
    torch_index: TorchIndex, tmp_path: Path
) -> None:
    req = write(
        tmp_path / "requirements.txt",
        f"--extra-index-url {torch_index.variant_url('cu118')}\ntorch==2.4.0\ntorchvision\n"
        "torchaudio\n",
    )
    con = write(tmp_path / "constraints.txt", "networkx<3.3\n")
    result = fetch(torch_index, tmp_path / "c", *WIN39, "-r", str(req), "-c", str(con))
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    assert "Target: cp39-win_amd64 (cu118)" in out  # the variant the file's index names
    assert "Index options from the requirement files:" in out
    assert f"{req}:1: --extra-index-url {torch_index.variant_url('cu118')}" in out
    lock = tmp_path / "c" / "wheels-v1" / "pylock.cu118-cp39-win_amd64.toml"
    assert f"PEP 751 lock:             {lock}" in out
    assert f"pip install --no-index -r {lock}" in out
    assert f"uv pip install --offline -r {lock}" in out
    locked = {w.name for p in read_lock_file(lock).packages for w in p.wheels or ()}
    assert locked == WIN_CU118_PY39


def test_a_pin_with_a_local_version_names_the_variant(
    torch_index: TorchIndex, tmp_path: Path
) -> None:
    req = write(tmp_path / "r.txt", "torch==2.4.0+cu121\n")
    data = ok_json(
        fetch(torch_index, tmp_path / "c", *WIN39, "-r", str(req), "--json", "--no-deps")
    )
    assert data["target"]["variant"] == "cu121"
    assert [f["filename"] for f in data["files"]] == ["torch-2.4.0+cu121-cp39-cp39-win_amd64.whl"]


def test_fetch_r_lock_takes_uvs_wheels_and_its_variant(
    torch_index: TorchIndex, tmp_path: Path
) -> None:
    lock = uv_compile(
        "torch==2.4.0\ntorchvision\ntorchaudio\n",
        tmp_path / "pylock.toml",
        tmp_path,
        "--python-platform",
        "x86_64-pc-windows-msvc",
        "--python-version",
        "3.9",
        "--index-url",
        torch_index.deps_index_url,
        "--extra-index-url",
        torch_index.variant_url("cu118"),
    )
    data = ok_json(fetch(torch_index, tmp_path / "c", *WIN39, "-r", str(lock), "--json"))
    assert data["target"]["variant"] == "cu118"
    assert {f["filename"] for f in data["files"]} == WIN_CU118_PY39
    assert data["lock_file"].endswith("pylock.cu118-cp39-win_amd64.toml")
    # The README's round trip: export the lock for the same target.
    bundle = tmp_path / "bundle"
    exported = CliRunner().invoke(
        main,
        [
            "export",
            str(bundle),
            "-r",
            str(lock),
            "--cuda",
            "118",
            "--cache-dir",
            str(tmp_path / "c"),
        ],
    )
    assert exported.exit_code == 0, exported.stderr
    assert {p.name for p in (bundle / "wheels").glob("*.whl")} == WIN_CU118_PY39
    carried = read_lock_file(bundle / "pylock.cu118-cp39-win_amd64.toml")
    assert {w.path for p in carried.packages for w in p.wheels or ()} == {
        f"wheels/{n}" for n in WIN_CU118_PY39
    }


def test_a_lock_is_given_alone(torch_index: TorchIndex, tmp_path: Path) -> None:
    lock = write(
        tmp_path / "pylock.toml", 'lock-version = "1.0"\ncreated-by = "x"\npackages = []\n'
    )
    result = fetch(torch_index, tmp_path / "c", "--cpu", "-r", str(lock), "numpy")
    assert result.exit_code == 2
    assert "is a lock: it says exactly what to fetch; give it alone" in result.stderr


def _uv_lock(torch_index: TorchIndex, tmp_path: Path) -> Path:
    return uv_compile(
        "mpmath\n",
        tmp_path / "pylock.uv.toml",
        tmp_path,
        "--python-version",
        "3.9",
        "--index-url",
        torch_index.deps_index_url,
    )


@pytest.mark.parametrize(
    ("name", "text", "code", "message"),
    [
        ("missing", None, 2, "wheelcache: error: invalid value for '-r' / '--requirement': File"),
        ("r.txt", "mpmath\nnumpy=>2\n", 1, "r.txt:2: not a requirement: 'numpy=>2'"),
        ("r.txt", "--frobnicate\nmpmath\n", 1, "r.txt:1: unknown option --frobnicate"),
        ("r.txt", "-r nested.txt\n", 1, "r.txt:1: {tmp}/nested.txt: no such file"),
        ("r.txt", "-e ./src\n", 1, "r.txt:1: -e ./src: an editable install would need a build"),
        (
            "pylock.toml",
            'lock-version = "2.0"\ncreated-by = "x"\npackages = []\n',
            1,
            "pylock.toml: lock-version '2.0' is not one wheelcache reads (1.x)",
        ),
        ("pylock.toml", "lock-version = \n", 1, "pylock.toml: not TOML: "),
        ("r.txt", "mpmath --hash=sha256:" + "0" * 64 + "\n", 1, "r.txt:1: mpmath is pinned to"),
        ("uv-lock", None, 1, "the lock requires Python >=3.9 but the target cp38-win_amd64"),
    ],
)
def test_bad_input_is_one_line_and_leaves_nothing(
    torch_index: TorchIndex,
    tmp_path: Path,
    name: str,
    text: str | None,
    code: int,
    message: str,
) -> None:
    if name == "uv-lock":
        path = _uv_lock(torch_index, tmp_path)
    else:
        path = tmp_path / name
        if text is not None:
            write(path, text)
    torch_index.clear()
    cache = tmp_path / "cache"
    result = fetch(
        torch_index, cache, "--cpu", "--py", "38", "--platform", "win_amd64", "-r", str(path)
    )
    assert result.exit_code == code, result.stderr
    assert message.format(tmp=tmp_path) in result.stderr
    if code == 1:
        assert result.stderr.startswith("wheelcache: error: ")
        assert result.stderr.strip().count("\n") == 0, result.stderr
    assert result.stdout == ""
    assert empty_cache(cache)
    assert not [r for s in torch_index.servers for r in s.requests if r.path.endswith(".whl")]


def test_one_spelling_in_every_command() -> None:
    for command in ("fetch", "export", "serve", "index"):
        out = CliRunner().invoke(main, [command, "--help"]).stdout
        assert "-r, --requirement FILE" in out, command
        assert "--requirements" not in out and "--lock" not in out, command


def test_old_spellings_work_and_say_so_once(torch_index: TorchIndex, tmp_path: Path) -> None:
    req = write(tmp_path / "r.txt", "mpmath\n")
    cache = tmp_path / "c"
    assert fetch(torch_index, cache, "--cpu", "-r", str(req)).exit_code == 0
    runner = CliRunner()
    new = runner.invoke(
        main, ["index", str(tmp_path / "a"), "-r", str(req), "--cache-dir", str(cache)]
    )
    old = runner.invoke(
        main, ["index", str(tmp_path / "b"), "--requirements", str(req), "--cache-dir", str(cache)]
    )
    assert new.exit_code == 0 and old.exit_code == 0, old.stderr
    assert "deprecated" not in new.stderr
    assert old.stderr.count("wheelcache: warning: --requirements is deprecated; use -r/") == 1
    assert {p.name for p in (tmp_path / "a" / "simple").iterdir()} == {
        p.name for p in (tmp_path / "b" / "simple").iterdir()
    }
    lock = cache / "wheels-v1"
    [ours] = lock.glob("pylock.*.toml")
    exported = runner.invoke(
        main, ["export", str(tmp_path / "bundle"), "--lock", str(ours), "--cache-dir", str(cache)]
    )
    assert exported.exit_code == 0, exported.stderr
    assert exported.stderr.count("--lock is deprecated; use -r/--requirement FILE") == 1
    assert (tmp_path / "bundle" / "wheels" / "mpmath-1.3.0-py3-none-any.whl").is_file()


def test_serve_names_a_locks_pins_not_the_lock(tmp_path: Path) -> None:
    """A lock's URLs point at where its wheels came from; a LAN client installs its pins."""
    from wheelcache.cli.serve import install_lines

    lock = write(
        tmp_path / "pylock.toml",
        'lock-version = "1.0"\ncreated-by = "x"\n[[packages]]\nname = "torch"\n'
        'version = "2.4.0+cu118"\nwheels = [{ url = "https://x.invalid/torch-2.4.0+cu118-'
        'cp39-cp39-win_amd64.whl", hashes = { sha256 = "' + "a" * 64 + '" } }]\n',
    )
    req = write(tmp_path / "r.txt", "numpy\n")
    pip, uv = install_lines("127.0.0.1", 8000, (lock, req), ())
    assert (
        pip == f"pip install --index-url http://127.0.0.1:8000/simple/ torch==2.4.0+cu118 -r {req}"
    )
    assert uv.endswith(f"torch==2.4.0+cu118 -r {req}")
