"""Shared by the pull-through tests: a ``serve --pull`` in a thread, raw HTTP, upstream logs."""

from __future__ import annotations

import http.client
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from tests.support.httpserver import FileServer
from tests.support.torchindex import TorchIndex
from wheelcache.core.variants import Mirror
from wheelcache.serve.publish import Selection
from wheelcache.serve.pull import Upstreams
from wheelcache.serve.pull_server import PullServer, PullSettings, make_pull_server
from wheelcache.serve.server import AccessRecord
from wheelcache.store.cache import Cache

__all__ = [
    "BIG",
    "Pulled",
    "fetch_path",
    "get",
    "pulled",
    "upstream_bytes",
]

BIG = "torch-2.4.0+cu118-cp39-cp39-win_amd64.whl"  # 4 MiB on the test index


@dataclass
class Pulled:
    server: PullServer
    cache: Cache
    records: list[AccessRecord] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def port(self) -> int:
        return self.server.port


@contextmanager
def pulled(
    cache_dir: Path,
    ti: TorchIndex,
    selection: Selection | None = None,
    settings: PullSettings | None = None,
    *,
    index_urls: tuple[str, ...] | None = None,
    mirrors: tuple[Mirror, ...] = (),
    torch_index: str | None = None,
) -> Iterator[Pulled]:
    """``serve --pull`` over the test index, in a thread on 127.0.0.1, port 0."""
    cache = Cache(cache_dir)
    records: list[AccessRecord] = []
    upstreams = Upstreams(
        torch_index or ti.torch_index_url, index_urls or (ti.deps_index_url,), mirrors
    )
    server = make_pull_server(
        ("127.0.0.1", 0), cache, upstreams, selection, settings, on_request=records.append
    )
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield Pulled(server, cache, records)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def fetch_path(variant: str | None, filename: str) -> str:
    """The server's path of a file: ``/whl/<variant>/<project>/<file>`` or ``/simple/…``."""
    project = filename.split("-")[0].lower().replace("_", "-")
    base = f"/whl/{variant}/" if variant else "/simple/"
    return f"{base}{project}/{quote(filename, safe='')}"


def get(
    port: int, path: str, headers: dict[str, str] | None = None, method: str = "GET"
) -> tuple[int, http.client.HTTPMessage, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request(method, path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.msg, resp.read()
    finally:
        conn.close()


def upstream_bytes(server: FileServer, filename: str) -> int:
    """Body bytes the upstream sent for files named *filename* (GETs of the file itself)."""
    return sum(
        r.body_bytes
        for r in server.requests
        if r.method == "GET" and r.path.rsplit("/", 1)[-1] == filename
    )
