"""The smaller things a newcomer met in the first hour (issue 10, item 9), each one line."""

from __future__ import annotations

import contextlib
import http.server
import os
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from tests.support.torchindex import TorchIndex
from wheelcache.cli.main import main

WIN39 = ["--cpu", "--py", "39", "--platform", "win_amd64"]


def _cli(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def _error_line(result: Result, code: int = 1) -> str:
    assert result.exit_code == code, (result.exit_code, result.stderr)
    assert result.stderr.count("\n") == 1, result.stderr
    return result.stderr


@contextlib.contextmanager
def _read_only(path: Path) -> Iterator[Path]:
    """*path* as a read-only bind mount of an empty folder (root ignores file modes)."""
    src = path.with_name(path.name + "-src")
    src.mkdir()
    path.mkdir()
    subprocess.run(["mount", "--bind", str(src), str(path)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(path)], check=True)
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def _fetch_args(ti: TorchIndex, cache: Path) -> list[str]:
    return [
        "fetch",
        *WIN39,
        "--torch-index",
        ti.torch_index_url,
        "--index-url",
        ti.deps_index_url,
        "--cache-dir",
        str(cache),
        "jinja2",
    ]


def test_read_only_destinations_are_named_as_what_they_are(
    torch_index: TorchIndex, tmp_path: Path
) -> None:
    cache = tmp_path / "c"
    with _read_only(tmp_path / "ro") as ro:
        fetched = _cli(*_fetch_args(torch_index, cache), "--dest", str(ro / "wheels"))
        assert _error_line(fetched).endswith(
            f"cannot write to {ro / 'wheels'} (Read-only file system); choose another --dest "
            "folder\n"
        )
        exported = _cli("export", str(ro / "bundle"), "--all", "--cache-dir", str(cache))
        assert _error_line(exported).endswith("(Read-only file system); export to another folder\n")
        indexed = _cli("index", str(ro / "tree"), "--cache-dir", str(cache))
        assert _error_line(indexed).endswith(
            "(Read-only file system); write the index to another folder\n"
        )


def test_requirements_files_follow_the_umask(torch_index: TorchIndex, tmp_path: Path) -> None:
    old = os.umask(0o002)  # a shared folder: group-writable files
    try:
        result = _cli(*_fetch_args(torch_index, tmp_path / "c"), "--json")
    finally:
        os.umask(old)
    assert result.exit_code == 0, result.stderr
    reqs = next((tmp_path / "c" / "wheels-v1").glob("requirements-*.txt"))
    assert reqs.stat().st_mode & 0o777 == 0o664


def test_missing_paths_are_said_to_be_missing(tmp_path: Path) -> None:
    typo = tmp_path / "cahce"
    served = _cli("serve", "--cache-dir", str(typo))
    assert _error_line(served) == (
        f"wheelcache: error: {typo} does not exist; check --cache-dir (or WHEELCACHE_CACHE_DIR)\n"
    )
    assert not typo.exists()
    verified = _cli("verify", str(tmp_path / "stick"))
    assert _error_line(verified) == (
        f"wheelcache: error: {tmp_path / 'stick'} does not exist; give the folder of a bundle "
        "or a cache\n"
    )
    a_file = tmp_path / "file"
    a_file.write_text("x")
    uncreatable = _cli("fetch", *WIN39, "--cache-dir", str(a_file / "cache"), "--dry-run")
    assert _error_line(uncreatable) == (
        f"wheelcache: error: cannot create the cache at {a_file / 'cache'} (Not a directory); "
        "check --cache-dir (or WHEELCACHE_CACHE_DIR)\n"
    )


class _Junk(http.server.BaseHTTPRequestHandler):
    """A web site, not a package index: the same HTML page for every path."""

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass

    def do_GET(self) -> None:
        body = b"<html><body><h1>Welcome</h1><a href='/about'>About us</a></body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _BusyCompanions(_Junk):
    """The same site, busy (503) the first time each of torch's companions is asked for: their
    prefetches are waiting to try again when the resolution fails on torch."""

    asked: set[str] = set()

    def do_GET(self) -> None:
        first = self.path not in self.asked
        self.asked.add(self.path)
        if first and ("torchvision" in self.path or "torchaudio" in self.path):
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        super().do_GET()


@contextlib.contextmanager
def _site(handler: type[http.server.BaseHTTPRequestHandler]) -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def junk_site() -> Iterator[str]:
    with _site(_Junk) as url:
        yield url


def test_an_index_with_none_of_the_projects_is_said_not_to_be_one(
    junk_site: str, tmp_path: Path
) -> None:
    result = _cli(
        "fetch",
        *WIN39,
        "--torch-index",
        f"{junk_site}/whl/{{variant}}",
        "--index-url",
        f"{junk_site}/simple",
        "--cache-dir",
        str(tmp_path / "c"),
        "--dry-run",
    )
    assert _error_line(result) == (
        f"wheelcache: error: {junk_site}/whl/cpu has none of torch, torchvision, torchaudio (no "
        "page, or a page without files): is it a package index? Check --torch-index\n"
    )


def test_an_index_is_said_not_to_be_one_while_its_pages_are_still_coming(
    tmp_path: Path,
) -> None:
    """The resolution fails on torch's page at once, while the companions' pages are still
    to come (here: a retry after a 503; on a busy machine: still queued for the prefetch
    threads).  They are read for the diagnosis before the failed run cancels its client;
    read after it, they were refused, and the resolver's line about torch came instead."""
    _BusyCompanions.asked.clear()
    with _site(_BusyCompanions) as site:
        result = _cli(
            "fetch",
            *WIN39,
            "--torch-index",
            f"{site}/whl/{{variant}}",
            "--index-url",
            f"{site}/simple",
            "--cache-dir",
            str(tmp_path / "c"),
            "--dry-run",
        )
    assert result.exit_code == 1
    assert result.stderr.splitlines()[-1] == (  # after the companions' retry warnings
        f"wheelcache: error: {site}/whl/cpu has none of torch, torchvision, torchaudio (no "
        "page, or a page without files): is it a package index? Check --torch-index"
    )
