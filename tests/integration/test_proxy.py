"""Proxies come from the standard environment variables."""

from __future__ import annotations

import json
import threading
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.support.torchindex import TorchIndex
from wheelcache.cli.main import main


class _Proxy(BaseHTTPRequestHandler):
    """A minimal forward proxy: absolute-form GET/HEAD relayed with urllib (no proxy itself)."""

    seen: list[str] = []
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def _relay(self, method: str) -> None:
        type(self).seen.append(self.path)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
        req = urllib.request.Request(self.path, headers=headers, method=method)
        try:
            resp = self.opener.open(req, timeout=30)
        except urllib.error.HTTPError as err:
            resp = err
        body = resp.read() if method == "GET" else b""
        self.send_response(resp.status)
        for k, v in resp.headers.items():
            if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(k, v)
        self.send_header(
            "Content-Length",
            str(len(body) if method == "GET" else resp.headers.get("Content-Length", 0)),
        )
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self._relay("GET")

    def do_HEAD(self) -> None:
        self._relay("HEAD")

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@pytest.fixture
def proxy() -> Iterator[str]:
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Proxy)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    _Proxy.seen = []
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def test_fetch_goes_through_the_proxy_from_the_environment(
    torch_index: TorchIndex, tmp_path: Path, proxy: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxy)
    result = CliRunner().invoke(
        main,
        [
            "fetch",
            "--cpu",
            "--py",
            "39",
            "--platform",
            "win_amd64",
            "jinja2",
            "--torch-index",
            torch_index.torch_index_url,
            "--index-url",
            torch_index.deps_index_url,
            "--cache-dir",
            str(tmp_path / "c"),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.stderr
    names = {f["filename"] for f in json.loads(result.stdout)["files"]}
    assert names == {"jinja2-3.1.4-py3-none-any.whl", "MarkupSafe-2.1.5-cp39-cp39-win_amd64.whl"}
    assert any(p.endswith("/simple/jinja2/") for p in _Proxy.seen)
    assert any(p.endswith("jinja2-3.1.4-py3-none-any.whl") for p in _Proxy.seen)
