"""``wheelcache index OUTDIR``: the tree, its determinism, a real nginx serving it to pip/uv."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.integration._serve_wheels import (
    DEMO,
    Nginx,
    add_wheel,
    build_demo_cache,
    pip_install,
    run_nginx,
    uv_install,
)
from tests.support.wheels import build_wheel, read_wheel_metadata
from wheelcache.cli.main import main
from wheelcache.core.simple import JSON_CONTENT_TYPE, parse_project_page
from wheelcache.serve.publish import CacheView, Selection
from wheelcache.serve.static_index import MANIFEST_NAME, SNIPPET_NAME, write_static_index
from wheelcache.store.cache import Cache

PEP691_ACCEPT = "application/vnd.pypi.simple.v1+json"
TORCH = "torch-2.4.0+cu118-py3-none-any.whl"
WANT = {
    "torch-2.4.0+cu118",
    "torchvision-0.19.0+cu118",
    "torchaudio-2.4.0+cu118",
    "filelock-3.13.1",
    "typing_extensions-4.12.2",
}


@pytest.fixture(scope="module")
def demo_cache(tmp_path_factory: pytest.TempPathFactory) -> Cache:
    root = tmp_path_factory.mktemp("static")
    return build_demo_cache(root / "cache", root / "build")


@pytest.fixture(scope="module")
def tree(demo_cache: Cache, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tree") / "index"
    write_static_index(CacheView(demo_cache).snapshot(), out)
    return out


@pytest.fixture(scope="module")
def nginx(tree: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nginx]:
    with run_nginx(tree / SNIPPET_NAME, tmp_path_factory.mktemp("nginx")) as ng:
        yield ng


def tree_files(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def get(
    url: str, path: str, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


def test_tree_layout_and_relative_links(tree: Path, demo_cache: Cache) -> None:
    files = tree_files(tree)
    projects = sorted({name.lower().replace("_", "-") for name, *_ in DEMO})
    expected = {MANIFEST_NAME, SNIPPET_NAME, "simple/index.html", "simple/index.json"}
    expected |= {f"simple/{p}/index.{ext}" for p in projects for ext in ("html", "json")}
    for row in demo_cache.catalog.all():
        expected |= {f"wheels/{row.filename}", f"wheels/{row.filename}.metadata"}
    assert set(files) == expected
    manifest = json.loads(files[MANIFEST_NAME])
    assert manifest["files"] == sorted(expected)
    # Every link on every page resolves, relative to the page, to a file in the tree with
    # the advertised sha256; the same for the .metadata files.
    base = "http://host.invalid/some/prefix/"
    for project in projects:
        for ext, ctype in (("html", "text/html"), ("json", JSON_CONTENT_TYPE)):
            page = parse_project_page(
                files[f"simple/{project}/index.{ext}"],
                content_type=ctype,
                base_url=f"{base}simple/{project}/",
                project=project,
            )
            assert page.files
            for f in page.files:
                rel = f.url.removeprefix(base).replace("%2B", "+")
                assert rel == f"wheels/{f.filename}"
                assert hashlib.sha256(files[rel]).hexdigest() == f.sha256
                md = files[rel + ".metadata"]
                assert hashlib.sha256(md).hexdigest() == f.core_metadata_sha256
    cached = demo_cache.find(TORCH)
    assert cached is not None
    assert files[f"wheels/{TORCH}.metadata"] == read_wheel_metadata(cached.path)
    root = json.loads(files["simple/index.json"])
    assert [p["name"] for p in root["projects"]] == projects
    assert b'<a href="torch/">torch</a>' in files["simple/index.html"]


def test_wheels_are_hard_links_and_world_readable(tree: Path, demo_cache: Cache) -> None:
    for row in demo_cache.catalog.all():
        exported = tree / "wheels" / row.filename
        cached = demo_cache.find(row.filename)
        assert cached is not None
        assert os.path.samefile(exported, cached.blob)
        assert exported.stat().st_mode & 0o444 == 0o444
    for p in tree.rglob("*"):
        if p.is_file():
            assert p.stat().st_mode & 0o044 == 0o044, p
    assert not list(tree.rglob(".*.tmp"))


def test_two_exports_are_byte_identical(demo_cache: Cache, tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    write_static_index(CacheView(demo_cache).snapshot(), a)
    write_static_index(CacheView(demo_cache).snapshot(), b)
    fa, fb = tree_files(a), tree_files(b)
    # the snippet names its own folder, so it differs in exactly that path
    assert fa.pop(SNIPPET_NAME).replace(str(a).encode(), b"@") == fb.pop(SNIPPET_NAME).replace(
        str(b).encode(), b"@"
    )
    assert fa == fb
    before = {p: p.stat().st_mtime_ns for p in a.rglob("*") if p.is_file()}
    again = write_static_index(CacheView(demo_cache).snapshot(), a)
    assert again.linked == again.copied == again.removed == 0
    assert {p: p.stat().st_mtime_ns for p in a.rglob("*") if p.is_file()} == before


def test_another_filesystem_gets_copies_that_are_not_copied_twice(
    demo_cache: Cache, unlinkable_dir: Path
) -> None:
    out = unlinkable_dir / "out"
    first = write_static_index(CacheView(demo_cache).snapshot(), out)
    assert first.linked == 0 and first.copied == 2 * len(demo_cache.catalog.all())
    for row in demo_cache.catalog.all():
        exported = out / "wheels" / row.filename
        assert hashlib.sha256(exported.read_bytes()).hexdigest() == row.sha256
        assert exported.stat().st_mode & 0o044 == 0o044
    again = write_static_index(CacheView(demo_cache).snapshot(), out)
    assert again.copied == again.linked == 0


def test_base_url_makes_file_links_absolute(demo_cache: Cache, tmp_path: Path) -> None:
    out = tmp_path / "out"
    write_static_index(CacheView(demo_cache).snapshot(), out, base_url="https://wheels.invalid/py")
    page = json.loads((out / "simple" / "torch" / "index.json").read_bytes())
    assert {f["url"] for f in page["files"]} == {
        "https://wheels.invalid/py/wheels/torch-2.3.1%2Bcu118-py3-none-any.whl",
        "https://wheels.invalid/py/wheels/torch-2.4.0%2Bcu118-py3-none-any.whl",
    }
    snippet = (out / SNIPPET_NAME).read_text()
    assert "location ^~ /py/simple/" in snippet and "location ^~ /py/wheels/" in snippet


def test_re_export_of_a_smaller_selection_removes_only_its_own_stale_files(
    demo_cache: Cache, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    write_static_index(CacheView(demo_cache).snapshot(), out)
    (out / "README.txt").write_text("mine")  # not ours: must survive
    result = write_static_index(CacheView(demo_cache, Selection.of(("torch",))).snapshot(), out)
    assert result.removed > 0
    assert sorted(p.name for p in (out / "simple").iterdir()) == [
        "index.html",
        "index.json",
        "torch",
    ]
    assert sorted(p.name for p in (out / "wheels").iterdir() if p.suffix == ".whl") == [
        "torch-2.3.1+cu118-py3-none-any.whl",
        TORCH,
    ]
    assert (out / "README.txt").read_text() == "mine"


def test_index_command(demo_cache: Cache, tmp_path: Path) -> None:
    torch = demo_cache.find(TORCH)
    assert torch is not None
    req = tmp_path / "requirements.txt"
    req.write_text(f"torch==2.4.0+cu118 --hash=sha256:{torch.sha256}\nfilelock==3.13.1\n")
    out = tmp_path / "out"
    result = CliRunner().invoke(
        main, ["index", str(out), "--cache-dir", str(demo_cache.root), "-r", str(req)]
    )
    assert result.exit_code == 0, result.stderr
    assert "Wrote 2 wheels of 2 projects" in result.stdout
    assert f"include {out / SNIPPET_NAME};" in result.stdout
    assert sorted(p.name for p in (out / "wheels").glob("*.whl")) == [
        "filelock-3.13.1-py3-none-any.whl",
        TORCH,
    ]


def test_index_command_refuses_a_folder_that_is_not_ours(demo_cache: Cache, tmp_path: Path) -> None:
    out = tmp_path / "precious"
    out.mkdir()
    (out / "thesis.tex").write_text("x")
    result = CliRunner().invoke(main, ["index", str(out), "--cache-dir", str(demo_cache.root)])
    assert result.exit_code == 1
    assert result.stderr.startswith("wheelcache: error: ") and "not empty" in result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["thesis.tex"]
    result = CliRunner().invoke(
        main,
        [
            "index",
            str(tmp_path / "o"),
            "--cache-dir",
            str(demo_cache.root),
            "--base-url",
            "ftp://x",
        ],
    )
    assert result.exit_code == 1 and "--base-url" in result.stderr


def test_wheels_added_later_appear_on_re_export(tmp_path: Path) -> None:
    cache = Cache(tmp_path / "cache")
    add_wheel(cache, build_wheel(tmp_path / "b", "one", "1.0"), "one", "1.0")
    out = tmp_path / "out"
    write_static_index(CacheView(cache).snapshot(), out)
    add_wheel(cache, build_wheel(tmp_path / "b", "one", "1.1"), "one", "1.1")
    write_static_index(CacheView(cache).snapshot(), out)
    page = json.loads((out / "simple" / "one" / "index.json").read_bytes())
    assert page["versions"] == ["1.0", "1.1"]


def _installed(target: Path) -> set[str]:
    return {p.name.removesuffix(".dist-info") for p in target.glob("*.dist-info")}


# -- nginx ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("accept", "content_type"),
    [
        (None, "text/html; charset=utf-8"),
        ("text/html", "text/html; charset=utf-8"),
        (PEP691_ACCEPT, JSON_CONTENT_TYPE),
        (
            f"{PEP691_ACCEPT}, application/vnd.pypi.simple.v1+html; q=0.1, text/html; q=0.01",
            JSON_CONTENT_TYPE,
        ),
        ("application/vnd.pypi.simple.latest+json", JSON_CONTENT_TYPE),
        (f"{PEP691_ACCEPT}; q=0, text/html", "text/html; charset=utf-8"),
    ],
)
def test_nginx_negotiates_pep691(
    nginx: Nginx, tree: Path, accept: str | None, content_type: str
) -> None:
    for path in ("/simple/", "/simple/torch/"):
        status, headers, body = get(nginx.url, path, {"Accept": accept} if accept else {})
        assert (status, headers["Content-Type"]) == (200, content_type)
        assert headers["Vary"] == "Accept"
        name = "index.json" if content_type == JSON_CONTENT_TYPE else "index.html"
        assert body == (tree / path.strip("/") / name).read_bytes()


def test_nginx_serves_files_and_nothing_else(nginx: Nginx, tree: Path) -> None:
    status, headers, body = get(nginx.url, "/wheels/torch-2.4.0%2Bcu118-py3-none-any.whl")
    assert status == 200 and body == (tree / "wheels" / TORCH).read_bytes()
    status, _, body = get(nginx.url, f"/wheels/{TORCH}.metadata".replace("+", "%2B"))
    assert status == 200 and body.startswith(b"Metadata-Version:")
    for path in (
        "/",
        f"/{SNIPPET_NAME}",
        f"/{MANIFEST_NAME}",
        "/wheels/",
        "/simple/../",
        "/wheels/%2e%2e/nginx.conf.snippet",
    ):
        status, _, body = get(nginx.url, path)
        assert 400 <= status < 500, path
        assert b"listen" not in body


def test_pip_installs_from_nginx(nginx: Nginx, tmp_path: Path) -> None:
    before = len(nginx.access_lines())
    pip_install(
        f"{nginx.url}/simple/",
        tmp_path / "site",
        tmp_path,
        "torch==2.4.0+cu118",
        "torchvision",
        "torchaudio",
    )
    assert _installed(tmp_path / "site") == WANT
    lines = nginx.access_lines()[before:]
    assert any('"GET /simple/torch/ HTTP/1.1" 200' in line for line in lines)
    assert any(
        'GET /wheels/torch-2.4.0%2Bcu118-py3-none-any.whl HTTP/1.1" 200' in line for line in lines
    )
    assert all('"pip/' in line for line in lines)


def test_uv_installs_from_nginx(nginx: Nginx, tmp_path: Path) -> None:
    before = len(nginx.access_lines())
    uv_install(
        f"{nginx.url}/simple/",
        tmp_path / "site",
        tmp_path,
        "torch==2.4.0+cu118",
        "torchvision",
        "torchaudio",
    )
    assert _installed(tmp_path / "site") == WANT
    lines = nginx.access_lines()[before:]
    assert any('"GET /simple/torch/ HTTP/1.1" 200' in line for line in lines)
    assert all('"uv/' in line for line in lines)
