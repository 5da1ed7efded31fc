"""``fetch`` against crafted indexes (issue 11): nothing outside the cache, one clear line.

Each index here is a real server on 127.0.0.1 whose pages say what an attacker would write:
a sha256 that is a path, an unsafe filename, two projects sharing one sha256, a target file
whose ABI is a path.  The assertions are what is on disk outside the cache (nothing changed),
what the catalog holds, and the line the user gets.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.hostile import CraftedIndex, Run, run_wheelcache, tree
from tests.support.httpserver import FileServer
from tests.support.wheels import build_wheel

LEGIT = "legit-1.0-py3-none-any.whl"


@pytest.fixture
def index() -> Iterator[CraftedIndex]:
    with FileServer() as srv:
        yield CraftedIndex(srv)


@pytest.fixture(scope="module")
def legit_wheel(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return build_wheel(tmp_path_factory.mktemp("w"), "legit", "1.0").read_bytes()


def fetch(index: CraftedIndex, cache: Path, *args: str, cwd: Path) -> Run:
    return run_wheelcache(
        "fetch",
        *args,
        "--index-url",
        index.url,
        "--torch-index",
        index.url + "/{variant}",
        "--cache-dir",
        str(cache),
        "--no-deps",
        cwd=cwd,
        timeout=120,
    )


def _rows(cache: Path) -> list[tuple[str, str, str]]:
    with sqlite3.connect(cache / "catalog-v1.sqlite") as db:
        return db.execute("SELECT filename, project, sha256 FROM wheels ORDER BY 1").fetchall()


def _outside(tmp_path: Path) -> Path:
    """A folder beside the cache holding files an attacker would like to reach."""
    outside = tmp_path / "outside"
    outside.mkdir()
    for name in ("config", "config.part", "config.json", "config.lock"):
        (outside / name).write_text(f"precious {name}\n")
    return outside


def test_a_sha256_that_is_a_path_touches_nothing_outside_the_cache(
    index: CraftedIndex, legit_wheel: bytes, tmp_path: Path
) -> None:
    _outside(tmp_path)
    entry = index.entry(LEGIT, legit_wheel)
    entry["hashes"] = {"sha256": "../../outside/config"}  # partial-v1/../../outside/config.part
    index.json_page("legit", [entry])
    fragment = ("../../outside/" + "x" * 64)[:64]  # 64 characters: passed the length check
    index.add_file("legit-0.9-py3-none-any.whl", legit_wheel)
    index.html_page(
        "other", [f'<a href="/files/legit-0.9-py3-none-any.whl#sha256={fragment}">x</a>']
    )
    before = tree(tmp_path, skip=[tmp_path / "cache"])
    for project in ("legit", "other"):
        run = fetch(index, tmp_path / "cache", project, cwd=tmp_path)
        assert run.returncode == 1, run.stderr
        assert run.lines[-1].startswith("wheelcache: error:") and project in run.lines[-1]
        assert "Traceback" not in run.stderr
    assert tree(tmp_path, skip=[tmp_path / "cache"]) == before
    assert _rows(tmp_path / "cache") == []


def test_an_unsafe_filename_never_reaches_the_catalog(
    index: CraftedIndex, legit_wheel: bytes, tmp_path: Path
) -> None:
    name = "legit-1.0-1" + "a" * 280 + "-py3-none-any.whl"  # a build tag no filesystem takes
    index.json_page("legit", [index.entry(name, legit_wheel)])
    cache = tmp_path / "cache"
    run = fetch(index, cache, "legit", cwd=tmp_path)
    assert run.returncode == 1 and "Traceback" not in run.stderr, run.stderr
    assert _rows(cache) == []
    # The cache is still usable: the commands that crashed on such a row work.
    for args in (["verify"], ["ls"], ["export", str(tmp_path / "b"), "--all"]):
        later = run_wheelcache(*args, "--cache-dir", str(cache), cwd=tmp_path)
        assert "Traceback" not in later.stderr, later.stderr


def test_two_projects_sharing_one_sha256_each_get_their_own_file(
    index: CraftedIndex, legit_wheel: bytes, tmp_path: Path
) -> None:
    alias = "alias-1.0-py3-none-any.whl"
    index.json_page("legit", [index.entry(LEGIT, legit_wheel)])
    index.json_page("alias", [index.entry(alias, legit_wheel)])  # the same bytes, renamed
    cache = tmp_path / "cache"
    first = fetch(index, cache, "alias", "--json", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    run = fetch(index, cache, "legit", "--json", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    (got,) = json.loads(run.stdout)["files"]
    assert (got["filename"], got["project"]) == (LEGIT, "legit")
    assert Path(got["path"]).name == LEGIT and Path(got["path"]).read_bytes() == legit_wheel
    assert [r[:2] for r in _rows(cache)] == [(alias, "alias"), (LEGIT, "legit")]


def test_a_target_file_whose_abi_is_a_path_is_refused_in_one_line(
    index: CraftedIndex, legit_wheel: bytes, tmp_path: Path
) -> None:
    from tests.unit.test_targetfile import WINDOWS_PY39

    index.json_page("legit", [index.entry(LEGIT, legit_wheel)])
    target = json.loads(json.dumps(WINDOWS_PY39))
    target["python"]["abi"] = "x/../../../../outside/PWNED"
    (tmp_path / "t.json").write_text(json.dumps(target))
    _outside(tmp_path)
    before = tree(tmp_path, skip=[tmp_path / "cache"])
    run = fetch(index, tmp_path / "cache", "legit", "--target", "t.json", cwd=tmp_path)
    assert run.returncode == 1
    assert run.lines == [
        f"wheelcache: error: target file t.json: python: abi {target['python']['abi']!r} "
        "is not a wheel tag"
    ]
    assert tree(tmp_path, skip=[tmp_path / "cache"]) == before


def test_a_catalog_keyed_by_sha256_alone_is_migrated_in_place(
    legit_wheel: bytes, tmp_path: Path
) -> None:
    """Caches written before the (sha256, filename) key keep every row."""
    cache = tmp_path / "cache"
    cache.mkdir()
    old_schema = (
        "CREATE TABLE wheels (sha256 TEXT PRIMARY KEY, blake3 TEXT NOT NULL, filename TEXT "
        "NOT NULL, project TEXT NOT NULL, version TEXT NOT NULL, size INTEGER NOT NULL, url "
        "TEXT NOT NULL, hash_origin TEXT NOT NULL, fetched_at REAL NOT NULL, used_at REAL NOT "
        "NULL); CREATE TABLE wheel_targets (sha256 TEXT NOT NULL, target TEXT NOT NULL, "
        "PRIMARY KEY (sha256, target));"
    )
    row = ("ab" * 32, "cd" * 32, LEGIT, "legit", "1.0", 5, "http://h.invalid/x", "index", 1.0, 2.0)
    with sqlite3.connect(cache / "catalog-v1.sqlite") as db:
        db.executescript(old_schema)
        db.execute("INSERT INTO wheels VALUES (?,?,?,?,?,?,?,?,?,?)", row)
        db.execute("INSERT INTO wheel_targets VALUES (?, ?)", ("ab" * 32, "cp39-x (cpu)"))
    run = run_wheelcache("ls", "--json", "--cache-dir", str(cache), cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    (listed,) = json.loads(run.stdout)["wheels"]
    assert (listed["filename"], listed["targets"]) == (LEGIT, ["cp39-x (cpu)"])
    with sqlite3.connect(cache / "catalog-v1.sqlite") as db:
        keys = [r[1] for r in db.execute("PRAGMA table_info(wheels)") if r[5]]
        assert keys == ["sha256", "filename"]
        assert db.execute("SELECT * FROM wheels").fetchall() == [row]
