"""Values from outside are checked where they are parsed (issue 11, "validate where parsed").

Index pages (HTML and PEP 691 JSON), target files, zips and cache keys written by someone
hostile: each bad value is refused with its reason, and nothing unsafe comes out of a parser.
"""

from __future__ import annotations

import copy
import json
import struct
import zlib
from typing import Any

import pytest

from tests.unit.test_targetfile import WINDOWS_PY39
from wheelcache.core.checks import parse_sha256, safe_filename, safe_tag
from wheelcache.core.layout import CacheLayout
from wheelcache.core.simple import parse_flat_listing, parse_project_page
from wheelcache.core.zipmeta import (
    ZipFormatError,
    find_metadata_entry,
    locate_central_directory,
    read_local_entry,
)
from wheelcache.errors import TargetError
from wheelcache.host.targetfile import parse_target_description

BASE = "https://index.invalid/simple/demo/"
GOOD = "demo-1.0-py3-none-any.whl"
SHA = "ab" * 32
TRAVERSAL = "../../../../outside/config"
PATH64 = ("../" * 21 + "x")[:64]  # 64 characters, not hex: the old length check let it by


def _json(*files: dict[str, Any]) -> bytes:
    return json.dumps(
        {"meta": {"api-version": "1.1"}, "name": "demo", "files": list(files)}
    ).encode()


def _entry(filename: str = GOOD, **kw: Any) -> dict[str, Any]:
    return {"filename": filename, "url": f"/files/{filename}", "hashes": {"sha256": SHA}, **kw}


def _parse_json(body: bytes):  # type: ignore[no-untyped-def]
    return parse_project_page(
        body, content_type="application/vnd.pypi.simple.v1+json", base_url=BASE, project="demo"
    )


def _parse_html(links: str):  # type: ignore[no-untyped-def]
    body = f"<html><body>{links}</body></html>".encode()
    return parse_project_page(body, content_type="text/html", base_url=BASE, project="demo")


# -- sha256 ------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [TRAVERSAL, PATH64, "g" * 64, "a" * 63, "a" * 65, 12, ["x"]])
def test_a_json_sha256_that_is_not_hex_refuses_the_file(bad: object) -> None:
    page = _parse_json(_json(_entry(hashes={"sha256": bad}), _entry("demo-0.9-py3-none-any.whl")))
    assert [f.filename for f in page.files] == ["demo-0.9-py3-none-any.whl"]
    ((name, why),) = page.rejected
    assert name == GOOD and "not 64 hex digits" in why


@pytest.mark.parametrize("bad", [PATH64, "z" * 64, "a" * 10])
def test_an_html_sha256_fragment_that_is_not_hex_refuses_the_file(bad: str) -> None:
    page = _parse_html(f'<a href="/files/{GOOD}#sha256={bad}">{GOOD}</a>')
    assert page.files == ()
    assert page.rejected and "not 64 hex digits" in page.rejected[0][1]


def test_upper_case_hex_is_accepted_and_stored_lower_case() -> None:
    page = _parse_html(f'<a href="/files/{GOOD}#sha256={SHA.upper()}">x</a>')
    assert page.files[0].sha256 == SHA


@pytest.mark.parametrize(
    "md",
    [{"sha256": TRAVERSAL}, {"sha256": PATH64}],
)
def test_a_core_metadata_sha256_that_is_not_hex_refuses_the_file(md: dict[str, str]) -> None:
    page = _parse_json(_json(_entry(**{"core-metadata": md})))
    assert page.files == () and "core-metadata" in page.rejected[0][1]


# -- filenames ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name",
    [
        "demo-1.0-1%2F..-py3-none-any.whl",  # a build tag hiding a separator
        "demo-1.0-1%5C..%5Cx-py3-none-any.whl",  # backslashes
        "demo-1.0-1%00-py3-none-any.whl",  # NUL
        "demo-1.0-1%3Ax-py3-none-any.whl",  # a colon (an NTFS stream, a drive)
        "demo-1.0-" + "1" * 280 + "-py3-none-any.whl",  # too long for any filesystem
        "..%2F..%2Fdemo-1.0-py3-none-any.whl",
        "nul.tar.gz",  # a Windows device
    ],
)
def test_unsafe_filenames_never_leave_the_parser(name: str) -> None:
    html = _parse_html(f'<a href="/files/{name}#sha256={SHA}">x</a>')
    data = _parse_json(_json({"filename": name.replace("%2F", "/"), "url": f"/files/{name}"}))
    flat, rejected = parse_flat_listing(
        f'<a href="{name}">{name}</a>'.encode(), base_url="https://m.invalid/cu118/"
    )
    assert html.files == data.files == flat == ()
    assert html.rejected and data.rejected and rejected
    assert all("unsafe file name" in why for _, why in (*html.rejected, *data.rejected))


def test_the_filename_comes_from_the_url_never_from_the_link_text() -> None:
    page = _parse_html(f'<a href="/download?id=7#sha256={SHA}">{GOOD}</a>')
    assert page.files == ()


def test_a_filename_listed_twice_with_different_hashes_is_refused_and_said() -> None:
    other = "cd" * 32
    page = _parse_html(
        f'<a href="https://a.invalid/{GOOD}#sha256={SHA}">x</a>'
        f'<a href="https://b.invalid/{GOOD}#sha256={other}">x</a>'
        f'<a href="https://a.invalid/demo-0.9-py3-none-any.whl#sha256={SHA}">x</a>'
    )
    assert [f.filename for f in page.files] == ["demo-0.9-py3-none-any.whl"]
    ((name, why),) = page.rejected
    assert name == GOOD and "listed 2 times with different sha256" in why


def test_a_filename_listed_twice_with_one_hash_is_kept_once_deterministically() -> None:
    links = [
        f'<a href="https://b.invalid/{GOOD}#sha256={SHA}">x</a>',
        f'<a href="https://a.invalid/{GOOD}">x</a>',
        f'<a href="https://c.invalid/{GOOD}#sha256={SHA}">x</a>',
    ]
    one = _parse_html("".join(links))
    other = _parse_html("".join(reversed(links)))
    assert one.files == other.files
    assert [(f.url, f.sha256) for f in one.files] == [(f"https://b.invalid/{GOOD}", SHA)]


# -- URLs --------------------------------------------------------------------------------------
def test_base_href_is_honoured_only_when_http() -> None:
    page = _parse_html(f'<base href="file:///etc/"><a href="{GOOD}#sha256={SHA}">x</a>')
    assert page.files[0].url == BASE + GOOD
    page = _parse_html(f'<base href="https://cdn.invalid/x/"><a href="{GOOD}">x</a>')
    assert page.files[0].url == "https://cdn.invalid/x/" + GOOD


@pytest.mark.parametrize("url", ["file:///etc/passwd/" + GOOD, "ftp://h.invalid/" + GOOD])
def test_links_that_are_not_http_are_refused(url: str) -> None:
    html = _parse_html(f'<a href="{url}">x</a>')
    data = _parse_json(_json({"filename": GOOD, "url": url}))
    assert html.files == data.files == ()
    assert "unsupported URL scheme" in html.rejected[0][1]


def test_a_size_that_is_not_a_byte_count_refuses_the_file() -> None:
    page = _parse_json(_json(_entry(size=-5), _entry("demo-0.9-py3-none-any.whl", size=True)))
    assert page.files == () and len(page.rejected) == 2


# -- keys, tags --------------------------------------------------------------------------------
@pytest.mark.parametrize("key", [TRAVERSAL, PATH64, "A" * 64, ""])
def test_cache_keys_that_are_not_hex_never_become_paths(key: str) -> None:
    layout = CacheLayout(__import__("pathlib").PurePosixPath("/c"))
    with pytest.raises(ValueError):
        layout.partial_files(key)
    with pytest.raises(ValueError):
        layout.lock(key)


def test_the_one_rules() -> None:
    assert parse_sha256("AB" * 32) == "ab" * 32
    assert safe_filename(GOOD) == GOOD
    assert safe_tag("py2.py3") == "py2.py3"
    for bad in ("a/b.whl", "a\\b.whl", "a:b.whl", "x.whl.", "a b.whl", "a%2Fb.whl"):
        with pytest.raises(ValueError):
            safe_filename(bad)


# -- target files ------------------------------------------------------------------------------
def _target(**changes: Any) -> dict[str, Any]:
    data = copy.deepcopy(WINDOWS_PY39)
    for path, value in changes.items():
        node = data
        *parents, leaf = path.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = value
    return data


@pytest.mark.parametrize(
    ("change", "said"),
    [
        ({"python.abi": "x/../../../../PWNED"}, "abi 'x/../../../../PWNED' is not a wheel tag"),
        ({"tags": ["cp39-cp39-../../x", "py3-none-any"]}, "is not a wheel tag"),
        ({"tags": ["cp39-cp39-win_amd64\nx"]}, "is not a wheel tag"),
        ({"python.version": "3.9.13/../../x"}, "is not like 3.9.13"),
        ({"platform.machine": "AMD64\r\nx"}, "is not like x86_64"),
        ({"platform.platform_tag": "win_amd64/../x"}, "is not a wheel tag"),
        ({"markers.platform_machine": "AMD64\n--index-url http://evil"}, "printable"),
        ({"nvidia.gpus": [{"name": "GPU\x1b[2J"}]}, "printable"),
    ],
)
def test_target_file_strings_are_checked_against_the_tag_grammar(
    change: dict[str, Any], said: str
) -> None:
    with pytest.raises(TargetError) as exc:
        parse_target_description(_target(**change), source="target file t.json")
    message = str(exc.value)
    assert message.startswith("target file t.json") and said in message
    assert "\n" not in message


def test_a_real_target_file_still_parses() -> None:
    assert parse_target_description(WINDOWS_PY39).abi == "cp39"


# -- zips that lie -----------------------------------------------------------------------------
def _zip_with_metadata(data: bytes, *, claimed: int | None = None) -> tuple[bytes, bytes, int]:
    """A one-member zip (deflated METADATA): the whole file, its central directory, offset."""
    name = b"demo-1.0.dist-info/METADATA"
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    packed = comp.compress(data) + comp.flush()
    size = len(data) if claimed is None else claimed
    crc = zlib.crc32(data)
    local = struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", 20, 0, 8, 0, 0, crc, len(packed), size,
                        len(name), 0) + name + packed  # fmt: skip
    cd = struct.pack("<4sHHHHHHIIIHHHHHII", b"PK\x01\x02", 20, 20, 0, 8, 0, 0, crc, len(packed),
                     size, len(name), 0, 0, 0, 0, 0, 0) + name  # fmt: skip
    eocd = struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, 1, 1, len(cd), len(local), 0)
    return local + cd + eocd, cd, len(local)


def test_metadata_that_inflates_past_the_limit_is_refused_without_inflating_it_all() -> None:
    bomb = b"A" * (8 << 20)  # 8 MiB of one byte deflates to a few KiB
    whole, cd, _ = _zip_with_metadata(bomb, claimed=100)  # and the directory lies about it
    entry = find_metadata_entry(cd, "demo", limit=1 << 20)
    with pytest.raises(ZipFormatError, match="more than 1048576"):
        read_local_entry(entry, whole[: entry.read_span[1] + 1], limit=1 << 20)


def test_metadata_that_says_it_is_too_big_is_refused_before_it_is_read() -> None:
    _, cd, _ = _zip_with_metadata(b"Name: demo\n", claimed=2 << 30)
    with pytest.raises(ZipFormatError, match="METADATA of 2147483648 bytes"):
        find_metadata_entry(cd, "demo")


def test_a_central_directory_past_the_limit_is_refused() -> None:
    eocd = struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, 1, 1, 900 << 20, 0, 0)
    with pytest.raises(ZipFormatError, match="central directory of"):
        locate_central_directory(eocd, (900 << 20) + 22)


# -- direct wheel URLs in a requirements file --------------------------------------------------
@pytest.mark.parametrize(
    ("line", "said"),
    [
        (f"numpy @ https://w.invalid/numpy-2.0.2-py3-none-any.whl#sha256={PATH64}", "no sha256"),
        (
            f"numpy @ https://w.invalid/numpy-2.0.2-1%3Ax-py3-none-any.whl#sha256={SHA}",
            "unsafe file name",
        ),
    ],
)
def test_a_direct_url_gives_a_hex_sha256_and_a_safe_name(line: str, said: str) -> None:
    from wheelcache.core.pins import plan_requirements
    from wheelcache.core.requirements_file import collect, parse_requirements_text
    from wheelcache.core.target import make_target
    from wheelcache.errors import RequirementsFileError

    entries = parse_requirements_text(line + "\n", source="r.txt")
    with pytest.raises(RequirementsFileError, match=said):
        plan_requirements(collect(entries), make_target(python="39", platform="win_amd64"))
