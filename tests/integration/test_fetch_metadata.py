"""Where fetch reads a wheel's METADATA from, against a real server on 127.0.0.1."""

from __future__ import annotations

import zipfile
from pathlib import Path

from tests.support.httpserver import FileServer
from tests.support.wheels import build_wheel, metadata_bytes
from wheelcache.core.target import make_target
from wheelcache.jobs.fetch import FetchRequest, fetch
from wheelcache.net.client import http_session
from wheelcache.store.cache import Cache

WHEEL = "app-1.0-py3-none-any.whl"


def _vendoring_wheel(tmp_path: Path) -> Path:
    """app 1.0 (no dependencies) whose zip lists a vendored project's dist-info first."""
    plain = build_wheel(tmp_path / "plain", "app", "1.0")
    out = tmp_path / WHEEL
    vendored = metadata_bytes("vendored", "9.9", requires_dist=["no-such-project>=1"])
    with zipfile.ZipFile(plain) as src, zipfile.ZipFile(out, "w") as dst:
        dst.writestr("vendored-9.9.dist-info/METADATA", vendored)
        for info in src.infolist():
            dst.writestr(info, src.read(info))
    return out


def test_whole_wheel_metadata_is_the_wheels_own_not_a_vendored_one(tmp_path: Path) -> None:
    wheel = _vendoring_wheel(tmp_path)
    with FileServer() as srv:
        srv.add(f"/files/{WHEEL}", wheel)
        page = f'<html><body><a href="{srv.url}/files/{WHEEL}">{WHEEL}</a></body></html>'
        srv.add("/simple/app/", page.encode(), content_type="text/html")
        srv.fault(f"/files/{WHEEL}", no_ranges=True)  # range reads fail: the whole wheel
        request = FetchRequest(
            target=make_target(python="3.12", platform="linux_x86_64", variant="cpu"),
            requirements=("app",),
            torch_index=srv.url + "/whl/{variant}",
            index_urls=(srv.url + "/simple",),
        )
        with http_session(None, offline=False) as http:
            result = fetch(request, Cache(tmp_path / "cache"), http=http)
        assert [(f.project, f.version) for f in result.files] == [("app", "1.0")]
        assert srv.count("/simple/no-such-project/") == 0
        whl_gets = [r for r in srv.requests if r.path.endswith(".whl") and r.method == "GET"]
        assert whl_gets and all(r.range for r in whl_gets[:1])  # a range read was tried first
