"""Page parsing over every captured PyTorch index page and a hand-made page per quirk."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from wheelcache.core.models import DistFile
from wheelcache.core.simple import (
    JSON_CONTENT_TYPE,
    PageParseError,
    parse_flat_page,
    parse_project_page,
    parse_root_page,
)

BASE = "https://index.invalid/whl/"
SKELETON = (
    "<!DOCTYPE html>\n<html>\n  <body>\n    <h1>Links for torch</h1>\n{links}\n  </body>\n"
    "</html>\n<!--TIMESTAMP 1703347410-->\n"
)


def _load(fixtures_dir: Path, name: str) -> bytes:
    text = (fixtures_dir / name).read_text(encoding="utf-8")
    if "<html" not in text:  # link-line excerpts get the generator's skeleton
        text = SKELETON.format(links=text)
    return text.encode()


def _anchor_count(body: bytes) -> int:
    return body.count(b"<a ")


@pytest.mark.parametrize(
    "name",
    [
        "01_testinfra_nightly_torch_2023.html",
        "02_testinfra_pep658_nightly_cu126_torch_2025-01.html",
        "03_uv_download_pytorch_whl_jinja2_2023-12.html",
        "04_uv13195_download_pytorch_whl_cu128_torch_2.7.0_excerpt.html",
        "05_tiny_torch_mirror_cu117_torch_page.html",
    ],
)
def test_every_fixture_page_parses_completely(fixtures_dir: Path, name: str) -> None:
    body = _load(fixtures_dir, name)
    page = parse_project_page(body, content_type="text/html", base_url=BASE + "x/", project="torch")
    assert len(page.files) == _anchor_count(body) > 0
    for f in page.files:
        assert f.url.startswith("https://index.invalid/whl/")
        assert "#" not in f.url
        assert "%2B" not in f.filename and f.filename.endswith(".whl")
    assert [f.filename for f in page.files] == sorted(f.filename for f in page.files)


def test_nightly_page_joins_root_relative_links_and_keeps_plus(fixtures_dir: Path) -> None:
    page = parse_project_page(
        _load(fixtures_dir, "01_testinfra_nightly_torch_2023.html"),
        content_type="text/html",
        base_url=BASE + "nightly/torch/",
        project="torch",
    )
    first = page.files[0]
    assert first == DistFile(
        filename="torch-1.13.0.dev20220728+cpu-cp310-cp310-linux_x86_64.whl",
        url="https://index.invalid/whl/nightly/cpu/torch-1.13.0.dev20220728%2Bcpu-cp310-cp310-linux_x86_64.whl",
    )
    assert all(f.sha256 is None and not f.core_metadata for f in page.files)


def test_pep658_attributes_only_on_newer_files(fixtures_dir: Path) -> None:
    page = parse_project_page(
        _load(fixtures_dir, "02_testinfra_pep658_nightly_cu126_torch_2025-01.html"),
        content_type="text/html",
        base_url=BASE + "nightly/cu126/torch/",
        project="torch",
    )
    with_md = [f for f in page.files if f.core_metadata]
    without = [f for f in page.files if not f.core_metadata]
    assert with_md and without
    assert all("dev20250102" in f.filename for f in without)
    f = next(f for f in with_md if f.filename.endswith("cp310-cp310-linux_aarch64.whl"))
    assert f.core_metadata_sha256 == (
        "3217e3132055e58b637de9707757c7cc46317d928264f38baf9187c063f1fb34"
    )
    assert f.metadata_url == f.url + ".metadata"
    assert any("cp313t" in f.filename for f in page.files)


def test_dependency_page_has_hash(fixtures_dir: Path) -> None:
    page = parse_project_page(
        _load(fixtures_dir, "03_uv_download_pytorch_whl_jinja2_2023-12.html"),
        content_type="text/html",
        base_url=BASE + "jinja2/",
        project="jinja2",
    )
    assert page.files == (
        DistFile(
            filename="Jinja2-3.1.2-py3-none-any.whl",
            url="https://index.invalid/whl/Jinja2-3.1.2-py3-none-any.whl",
            sha256="6088930bfe239f0e6710546ab9c19c9ef35e29792895fed6e6e31a023a182a61",
        ),
    )


def test_sha256_missing_on_some_files_only(fixtures_dir: Path) -> None:
    page = parse_project_page(
        _load(fixtures_dir, "04_uv13195_download_pytorch_whl_cu128_torch_2.7.0_excerpt.html"),
        content_type="text/html",
        base_url=BASE + "cu128/torch/",
        project="torch",
    )
    no_hash = {f.filename for f in page.files if f.sha256 is None}
    assert no_hash and all("aarch64" in n for n in no_hash)
    assert all(f.core_metadata for f in page.files)
    win = next(f for f in page.files if f.filename == "torch-2.7.0+cu128-cp310-cp310-win_amd64.whl")
    assert win.sha256 == "c52c4b869742f00b12cb34521d1381be6119fa46244791704b00cc4a3cb06850"


def test_variant_page_lists_root_level_wheels(fixtures_dir: Path) -> None:
    page = parse_project_page(
        _load(fixtures_dir, "05_tiny_torch_mirror_cu117_torch_page.html"),
        content_type="text/html",
        base_url=BASE + "cu117/torch/",
        project="torch",
    )
    root_level = [f for f in page.files if "+" not in f.filename]
    assert [f.url for f in root_level] == [
        "https://index.invalid/whl/torch-2.0.1-cp38-cp38-manylinux2014_aarch64.whl",
        "https://index.invalid/whl/torch-2.0.1-cp39-cp39-manylinux2014_aarch64.whl",
    ]


def test_absolute_cdn_links_metadata_upload_time_yanked_requires_python() -> None:
    body = (
        b'<a href="https://cdn.invalid/whl/cu118/torch-2.4.0%2Bcu118-cp39-cp39-win_amd64.whl'
        b"#sha256="
        + b"ab" * 32
        + b'" data-dist-info-metadata="sha256='
        + b"cd" * 32
        + b'" data-core-metadata="sha256='
        + b"cd" * 32
        + b'" data-upload-time="2026-04-06T12:00:00Z">torch-2.4.0+cu118-cp39-cp39-win_amd64.whl</a>'
        b'<a href="numpy-2.1.1.tar.gz" data-requires-python="&gt;=3.10">numpy-2.1.1.tar.gz</a>'
        b'<a href="../files/numpy-1.0-py3-none-any.whl" data-yanked="broken build">x</a>'
        b'<a href="https://elsewhere.invalid/">not a dist</a>'
    )
    page = parse_project_page(
        body,
        content_type="text/html; charset=utf-8",
        base_url=BASE + "cu118/torch/",
        project="torch",
    )
    by_name = {f.filename: f for f in page.files}
    torch = by_name["torch-2.4.0+cu118-cp39-cp39-win_amd64.whl"]
    assert torch.url.startswith("https://cdn.invalid/whl/cu118/")
    assert torch.sha256 == "ab" * 32 and torch.core_metadata_sha256 == "cd" * 32
    assert torch.upload_time == "2026-04-06T12:00:00Z"
    assert by_name["numpy-2.1.1.tar.gz"].requires_python == ">=3.10"
    yanked = by_name["numpy-1.0-py3-none-any.whl"]
    assert yanked.yanked and yanked.yanked_reason == "broken build"
    assert yanked.url == "https://index.invalid/whl/cu118/files/numpy-1.0-py3-none-any.whl"
    assert len(page.files) == 3


def test_pep691_json_page() -> None:
    data = {
        "meta": {"api-version": "1.1"},
        "name": "numpy",
        "files": [
            {
                "filename": "numpy-2.0.2-cp39-cp39-win_amd64.whl",
                "url": "../../files/numpy-2.0.2-cp39-cp39-win_amd64.whl",
                "hashes": {"sha256": "EF" * 32},
                "requires-python": ">=3.9",
                "core-metadata": {"sha256": "12" * 32},
                "yanked": False,
                "size": 1234,
            },
            {
                "filename": "numpy-1.0-py3-none-any.whl",
                "url": "https://files.invalid/numpy-1.0-py3-none-any.whl",
                "hashes": {},
                "yanked": "bad",
                "dist-info-metadata": True,
            },
        ],
    }
    page = parse_project_page(
        json.dumps(data).encode(),
        content_type="application/vnd.pypi.simple.v1+json",
        base_url="http://deps.invalid/simple/numpy/",
        project="numpy",
    )
    a, b = page.files
    assert a.filename == "numpy-1.0-py3-none-any.whl" and a.yanked and a.yanked_reason == "bad"
    assert a.core_metadata and a.core_metadata_sha256 is None and a.sha256 is None
    assert b.url == "http://deps.invalid/files/numpy-2.0.2-cp39-cp39-win_amd64.whl"
    assert b.sha256 == "ef" * 32 and b.size == 1234 and b.requires_python == ">=3.9"
    assert b.core_metadata_sha256 == "12" * 32


def test_only_the_entries_of_the_files_list_are_files() -> None:
    """Entries are judged while the JSON is read: an object nested anywhere else that looks
    like one (a filename and a url) is not listed, and a files entry without them is refused."""
    nested = {"filename": "evil-1.0-py3-none-any.whl", "url": "https://evil.invalid/e.whl"}
    data = {
        "meta": {"api-version": "1.1", "x": nested},
        "files": [
            {
                "filename": "numpy-1.0-py3-none-any.whl",
                "url": "https://files.invalid/numpy-1.0-py3-none-any.whl",
                "hashes": {"sha256": "ab" * 32},
                "extra": nested,
            }
        ],
        "elsewhere": [nested],
    }
    page = parse_project_page(
        json.dumps(data).encode(), content_type=JSON_CONTENT_TYPE, base_url=BASE, project="numpy"
    )
    assert [(f.filename, f.sha256) for f in page.files] == [
        ("numpy-1.0-py3-none-any.whl", "ab" * 32)
    ]
    data["files"] = [{"x": nested}]
    with pytest.raises(PageParseError, match="without filename or url"):
        parse_project_page(
            json.dumps(data).encode(), content_type=JSON_CONTENT_TYPE, base_url=BASE, project="x"
        )


@pytest.mark.parametrize(
    "body",
    [b"{not json", b'{"meta": {"api-version": "2.0"}, "files": []}', b'{"files": 3}'],
)
def test_broken_json_pages_raise_parse_errors(body: bytes) -> None:
    with pytest.raises(PageParseError):
        parse_project_page(
            body, content_type="application/vnd.pypi.simple.v1+json", base_url=BASE, project="x"
        )


def test_flat_find_links_page_with_entity_plus_and_shortened_text() -> None:
    body = (
        b"<html><body><h1>Index of /cu118/</h1><pre>"
        b'<a href="../">../</a>\n'
        b'<a href="torch-2.4.0&#43;cu118-cp39-cp39-win_amd64.whl">'
        b"torch-2.4.0+cu118-cp39-c..&gt;</a>"
        b"  06-Apr-2026 12:00  2619000000\n"
        b'<a href="torchvision-0.19.0%2Bcu118-cp39-cp39-win_amd64.whl">tv</a>\n'
        b"</pre></body></html>"
    )
    files = parse_flat_page(body, base_url="http://mirror.invalid/cu118/")
    assert [f.filename for f in files] == [
        "torch-2.4.0+cu118-cp39-cp39-win_amd64.whl",
        "torchvision-0.19.0+cu118-cp39-cp39-win_amd64.whl",
    ]
    assert files[0].url == "http://mirror.invalid/cu118/torch-2.4.0+cu118-cp39-cp39-win_amd64.whl"


def test_root_pages_list_project_names() -> None:
    html = (
        b'<html><body><a href="/whl/cu118/torch/">torch</a><br/>'
        b'<a href="/whl/cu118/Torch_Vision/">Torch_Vision</a><a href="/whl/cu118/triton/"></a>'
        b"</body></html>"
    )
    assert parse_root_page(html, content_type="text/html") == {"torch", "torch-vision", "triton"}
    doc = b'{"meta": {"api-version": "1.1"}, "projects": [{"name": "Jinja2"}, {"name": "numpy"}]}'
    assert parse_root_page(doc, content_type=JSON_CONTENT_TYPE) == {"jinja2", "numpy"}
    with pytest.raises(PageParseError):
        parse_root_page(b'{"projects": 3}', content_type=JSON_CONTENT_TYPE)


def test_a_yanked_reason_is_one_short_line_in_both_forms() -> None:
    """A reason is shown in a warning: newlines and runs of spaces an index wrote collapse."""
    url = "https://h.invalid/simple/x/"
    html = b'<a href="x-1.0-py3-none-any.whl" data-yanked="broken\n\n  build">x</a>'
    js = json.dumps(
        {
            "meta": {"api-version": "1.0"},
            "name": "x",
            "files": [
                {
                    "filename": "x-1.0-py3-none-any.whl",
                    "url": "x-1.0-py3-none-any.whl",
                    "hashes": {},
                    "yanked": "broken\r\n\tbuild",
                }
            ],
        }
    ).encode()
    for body, ctype in ((html, "text/html"), (js, JSON_CONTENT_TYPE)):
        page = parse_project_page(body, content_type=ctype, base_url=url, project="x")
        assert [f.yanked_reason for f in page.files] == ["broken build"]
