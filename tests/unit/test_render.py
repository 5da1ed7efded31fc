"""The page renderer: exact pages, escaping, determinism, and a round trip through our parser."""

from __future__ import annotations

import dataclasses
import doctest
import json

import pytest
from packaging.utils import NormalizedName

import wheelcache
import wheelcache.core.render
from wheelcache.core.models import DistFile, Sha256
from wheelcache.core.render import (
    API_VERSION,
    IndexEntry,
    file_href,
    project_versions,
    render_files_html,
    render_files_json,
    render_project_html,
    render_project_json,
    render_root_html,
    render_root_json,
)
from wheelcache.core.simple import JSON_CONTENT_TYPE, parse_project_page

SHA_A = Sha256("a" * 64)
SHA_B = Sha256("b" * 64)
SHA_M = Sha256("c" * 64)
PAGE_URL = "http://index.invalid/simple/torch/"


def entry(
    filename: str,
    version: str,
    *,
    sha256: Sha256 = SHA_A,
    requires_python: str | None = None,
    metadata_sha256: Sha256 | None = None,
    url: str | None = None,
) -> IndexEntry:
    torch = NormalizedName("torch")
    return IndexEntry(filename, torch, version, sha256, 10, requires_python, metadata_sha256, url)


TORCH = [
    entry(
        "torch-2.4.0+cu118-cp39-cp39-win_amd64.whl",
        "2.4.0+cu118",
        sha256=SHA_B,
        requires_python=">=3.8.0",
        metadata_sha256=SHA_M,
    ),
    entry("torch-2.10.0-py3-none-any.whl", "2.10.0", requires_python='<4,>=3.8 & "x"'),
    entry("torch-2.3.1-py3-none-any.whl", "2.3.1"),
]


def test_project_html_exact() -> None:
    body = render_project_html("Torch", [TORCH[0]], files_base="../../wheels/").decode()
    assert body == (
        "<!DOCTYPE html>\n<html>\n  <head>\n"
        f'    <meta name="pypi:repository-version" content="{API_VERSION}">\n'
        "    <title>Links for torch</title>\n  </head>\n  <body>\n"
        "    <h1>Links for torch</h1>\n"
        '    <a href="../../wheels/torch-2.4.0%2Bcu118-cp39-cp39-win_amd64.whl#sha256='
        + "b" * 64
        + '" data-requires-python="&gt;=3.8.0" data-dist-info-metadata="sha256='
        + "c" * 64
        + '" data-core-metadata="sha256='
        + "c" * 64
        + '">torch-2.4.0+cu118-cp39-cp39-win_amd64.whl</a><br />\n'
        "  </body>\n</html>\n"
    )


def test_project_json_exact() -> None:
    data = json.loads(render_project_json("Torch", [TORCH[0]], files_base="/wheels/"))
    assert data == {
        "meta": {"api-version": "1.1"},
        "name": "torch",
        "files": [
            {
                "filename": "torch-2.4.0+cu118-cp39-cp39-win_amd64.whl",
                "url": "/wheels/torch-2.4.0%2Bcu118-cp39-cp39-win_amd64.whl",
                "hashes": {"sha256": "b" * 64},
                "requires-python": ">=3.8.0",
                "core-metadata": {"sha256": "c" * 64},
                "dist-info-metadata": {"sha256": "c" * 64},
                "size": 10,
                "yanked": False,
            }
        ],
        "versions": ["2.4.0+cu118"],
    }


def test_json_without_metadata_says_false_and_omits_requires_python() -> None:
    data = json.loads(render_project_json("torch", [TORCH[2]], files_base=""))
    (f,) = data["files"]
    assert f["core-metadata"] is False and f["dist-info-metadata"] is False
    assert "requires-python" not in f


def test_roots() -> None:
    names = ["Typing_Extensions", "torch", "typing-extensions", "Jinja2"]
    html = render_root_html(names).decode()
    assert html.count("<a ") == 3
    assert html.index("jinja2/") < html.index("torch/") < html.index("typing-extensions/")
    assert (
        '<a href="/simple/torch/">torch</a>'
        in render_root_html(names, projects_base="/simple/").decode()
    )
    assert json.loads(render_root_json(names)) == {
        "meta": {"api-version": "1.1"},
        "projects": [{"name": "jinja2"}, {"name": "torch"}, {"name": "typing-extensions"}],
    }


def test_empty_pages_are_valid() -> None:
    assert b"<body>\n    <h1>Simple index</h1>\n  </body>" in render_root_html([])
    assert json.loads(render_project_json("x", [], files_base=""))["files"] == []


def test_output_is_sorted_and_deterministic() -> None:
    forward = render_project_html("torch", TORCH, files_base="/w/")
    backward = render_project_html("torch", list(reversed(TORCH)), files_base="/w/")
    assert forward == backward
    assert render_project_json("torch", TORCH, files_base="/w/") == render_project_json(
        "torch", list(reversed(TORCH)), files_base="/w/"
    )
    text = forward.decode()
    assert text.index("torch-2.10.0") < text.index("torch-2.3.1") < text.index("torch-2.4.0")


def test_versions_in_pep440_order() -> None:
    assert project_versions(TORCH) == ["2.3.1", "2.4.0+cu118", "2.10.0"]
    odd = entry("torch-weird-py3-none-any.whl", "not a version")
    assert project_versions([*TORCH, odd])[-1] == "not a version"


def test_attribute_escaping() -> None:
    text = render_project_html("torch", [TORCH[1]], files_base="/w/").decode()
    assert 'data-requires-python="&lt;4,&gt;=3.8 &amp; &quot;x&quot;"' in text


def test_explicit_url_wins_over_files_base() -> None:
    e = entry("torch-2.3.1-py3-none-any.whl", "2.3.1", url="https://cdn.invalid/t.whl")
    assert file_href(e, "/wheels/") == "https://cdn.invalid/t.whl"


def _expected(e: IndexEntry, url: str) -> DistFile:
    return DistFile(
        filename=e.filename,
        url=url,
        sha256=e.sha256,
        requires_python=e.requires_python,
        core_metadata=e.has_metadata,
        core_metadata_sha256=e.metadata_sha256,
    )


@pytest.mark.parametrize(
    ("files_base", "resolved"),
    [
        ("../../wheels/", "http://index.invalid/wheels/"),
        ("/wheels/", "http://index.invalid/wheels/"),
        ("https://cdn.invalid/pkgs/wheels/", "https://cdn.invalid/pkgs/wheels/"),
    ],
)
def test_round_trip_through_our_parser(files_base: str, resolved: str) -> None:
    """What we serve must read back as what we meant, in both formats."""
    urls = {e.filename: resolved + e.filename.replace("+", "%2B") for e in TORCH}
    html_page = parse_project_page(
        render_project_html("torch", TORCH, files_base=files_base),
        content_type="text/html",
        base_url=PAGE_URL,
        project="torch",
    )
    want = tuple(sorted((_expected(e, urls[e.filename]) for e in TORCH), key=lambda f: f.filename))
    assert html_page.files == want
    json_page = parse_project_page(
        render_project_json("torch", TORCH, files_base=files_base),
        content_type=JSON_CONTENT_TYPE,
        base_url=PAGE_URL,
        project="torch",
    )
    assert json_page.files == tuple(dataclasses.replace(f, size=10) for f in want)
    assert json_page.name == html_page.name == "torch"


def test_doctests() -> None:
    assert doctest.testmod(wheelcache.core.render).failed == 0


# -- upstream pages re-rendered by serve --pull ------------------------------------------------
UPSTREAM = [
    DistFile(
        "torch-2.4.0+cu118-cp39-cp39-win_amd64.whl",
        "/whl/cu118/torch/torch-2.4.0%2Bcu118-cp39-cp39-win_amd64.whl",
        sha256=SHA_A,
        requires_python='>=3.8,<4 & "x"',
        core_metadata=True,
        core_metadata_sha256=SHA_M,
        size=5,
        upload_time="2026-04-06T12:00:00Z",
    ),
    DistFile(
        "torch-2.4.0-cp39-cp39-manylinux2014_aarch64.whl",  # no hash on the upstream page
        "/whl/cu118/torch/torch-2.4.0-cp39-cp39-manylinux2014_aarch64.whl",
        yanked=True,
        yanked_reason="broken <build>",
        core_metadata=True,  # "true": announced without a digest
    ),
    DistFile(
        "torch-2.3.1.tar.gz",
        "/whl/cu118/torch/torch-2.3.1.tar.gz",
        sha256=SHA_B,
        yanked=True,  # yanked without a reason
        size=7,
    ),
]


@pytest.mark.parametrize("fmt", ["html", "json"])
def test_upstream_files_round_trip_through_our_parser(fmt: str) -> None:
    render = render_files_json if fmt == "json" else render_files_html
    ctype = JSON_CONTENT_TYPE if fmt == "json" else "text/html"
    body = render("Torch", UPSTREAM)
    page = parse_project_page(
        body, content_type=ctype, base_url="http://lan.invalid/whl/cu118/torch/", project="torch"
    )
    for got, want in zip(page.files, sorted(UPSTREAM, key=lambda f: f.filename), strict=True):
        want = dataclasses.replace(want, url="http://lan.invalid" + want.url)
        if fmt == "html":  # sizes are not part of PEP 503
            want = dataclasses.replace(want, size=None)
        assert got == want


def test_upstream_json_page_says_1_0_when_a_size_is_unknown() -> None:
    data = json.loads(render_files_json("torch", UPSTREAM))
    assert data["meta"] == {"api-version": "1.0"} and "versions" not in data
    aarch = next(f for f in data["files"] if "aarch64" in f["filename"])
    assert aarch["hashes"] == {} and aarch["yanked"] == "broken <build>"
    assert aarch["core-metadata"] is True and "size" not in aarch
    complete = json.loads(render_files_json("torch", [UPSTREAM[0], UPSTREAM[2]]))
    assert complete["meta"] == {"api-version": API_VERSION}
    assert complete["versions"] == ["2.3.1", "2.4.0+cu118"]
    sdist = next(f for f in complete["files"] if f["filename"].endswith(".tar.gz"))
    assert sdist["yanked"] is True
