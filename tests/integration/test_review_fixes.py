"""Cases a review found: damaged cached pages, markers on requested projects, bad URLs,
config keys for every command, a plain index in the matrix, cancelled retries."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.support.httpserver import FileServer
from tests.support.torchindex import TorchIndex
from wheelcache.cli.main import main
from wheelcache.errors import IndexUnreachableError
from wheelcache.net.client import Http, HttpSettings


def _fetch(ti: TorchIndex, cache: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(
        main,
        [
            "fetch",
            "--cpu",
            "--py",
            "39",
            "--platform",
            "win_amd64",
            "--torch-index",
            ti.torch_index_url,
            "--index-url",
            ti.deps_index_url,
            "--cache-dir",
            str(cache),
            "--json",
            *args,
        ],
    )
    return result.exit_code, result.stdout, result.stderr


def test_a_damaged_page_once_does_not_poison_the_page_cache(
    torch_index: TorchIndex, tmp_path: Path
) -> None:
    torch_index.deps.fault("/simple/filelock/", corrupt=True, times=1)
    code, _, err = _fetch(torch_index, tmp_path / "c", "filelock")
    assert code == 1 and "cannot parse the page" in err
    code, out, err = _fetch(torch_index, tmp_path / "c", "filelock")
    assert code == 0, err
    assert "is unreadable" in err and "fetching it again" in err
    assert json.loads(out)["files"][0]["project"] == "filelock"


def test_markers_on_requested_projects_are_judged_for_the_target(
    torch_index: TorchIndex, tmp_path: Path
) -> None:
    code, out, err = _fetch(
        torch_index, tmp_path / "c", "jinja2", 'filelock; sys_platform == "linux"'
    )
    assert code == 0, err
    assert "filelock" not in {f["project"] for f in json.loads(out)["files"]}
    assert "leaving out filelock" in err


@pytest.mark.parametrize(
    ("option", "url", "message"),
    [
        ("--torch-index", "localhost:9/whl/{variant}", "is not an http:// or https:// URL"),
        ("--index-url", "http://127.0.0.1:99999/simple", "Port out of range"),
        ("--mirror", "ftp://mirror.invalid/{variant}", "is not an http:// or https:// URL"),
    ],
)
def test_bad_urls_are_usage_errors_before_any_request(
    tmp_path: Path, option: str, url: str, message: str
) -> None:
    result = CliRunner().invoke(
        main, ["fetch", "--cpu", option, url, "--cache-dir", str(tmp_path / "c")]
    )
    assert result.exit_code == 2 and message in result.stderr


def test_top_level_config_keys_apply_to_every_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f'cache-dir = "{tmp_path / "shared-cache"}"\n')
    monkeypatch.setenv("WHEELCACHE_CONFIG", str(config))
    result = CliRunner().invoke(main, ["info", "--json"])
    assert result.exit_code == 0, result.stderr
    assert str(tmp_path / "shared-cache") in result.stdout


def test_matrix_of_a_plain_index_is_one_table(torch_index: TorchIndex, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main,
        [
            "matrix",
            "--torch-index",
            torch_index.variant_url("cu118"),
            "--cache-dir",
            str(tmp_path / "c"),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.stderr
    (table,) = json.loads(result.stdout)["variants"]
    assert table["variant"] == "" and table["sets"]


def test_matrix_offline_skips_variants_never_fetched(
    torch_index: TorchIndex, tmp_path: Path
) -> None:
    args = [
        "matrix",
        "--torch-index",
        torch_index.torch_index_url,
        "--cache-dir",
        str(tmp_path / "c"),
        "--json",
    ]
    assert CliRunner().invoke(main, [*args, "--cuda", "121"]).exit_code == 0
    result = CliRunner().invoke(main, [*args, "--offline"])
    assert result.exit_code == 0, result.stderr
    assert [v["variant"] for v in json.loads(result.stdout)["variants"]] == ["cu121"]


def test_cancel_ends_a_retry_wait_at_once() -> None:
    with FileServer() as srv:
        srv.add("/page/", b"x")
        srv.fault("/page/", status=503, retry_after="60", times=None)
        http = Http(HttpSettings(retries=3))
        threading.Timer(0.5, http.cancel).start()
        with pytest.raises(IndexUnreachableError, match="cancelled"):
            http.get(srv.url + "/page/")
        http.close()
        assert len(srv.requests) == 1  # no second attempt after the 60 s wait was cut short


def test_verify_really_remakes_a_damaged_view(torch_index: TorchIndex, tmp_path: Path) -> None:
    code, out, err = _fetch(torch_index, tmp_path / "c", "filelock")
    assert code == 0, err
    view = Path(json.loads(out)["files"][0]["path"])
    good = view.read_bytes()
    view.unlink()
    view.write_bytes(b"\0" * len(good))  # same size, garbage: what a bad copy leaves
    result = CliRunner().invoke(main, ["verify", "--cache-dir", str(tmp_path / "c")])
    assert view.read_bytes() == good, result.stdout + result.stderr


def test_serve_warns_when_torch_variants_are_mixed(torch_index: TorchIndex, tmp_path: Path) -> None:
    from wheelcache.cli.serve import _torch_variants
    from wheelcache.serve.publish import CacheView, Selection
    from wheelcache.store.cache import Cache

    cache = tmp_path / "c"
    for variant in ("cpu", "cu121"):
        result = CliRunner().invoke(
            main,
            [
                "fetch",
                f"--variant={variant}",
                "--py",
                "3.11",
                "--platform",
                "linux_x86_64",
                "--torch",
                "2.4.0",
                "--no-deps",
                "torch",
                "--torch-index",
                torch_index.torch_index_url,
                "--index-url",
                torch_index.deps_index_url,
                "--cache-dir",
                str(cache),
            ],
        )
        assert result.exit_code == 0, result.stderr
    view = CacheView(Cache(cache), Selection())
    assert _torch_variants(view.snapshot().files.values()) == {"cpu", "cu121"}


def test_serving_a_wheel_counts_as_use_for_gc(torch_index: TorchIndex, tmp_path: Path) -> None:
    import httpx

    from wheelcache.serve.publish import CacheView
    from wheelcache.serve.server import IndexServer
    from wheelcache.store.cache import Cache

    code, out, err = _fetch(torch_index, tmp_path / "c", "filelock")
    assert code == 0, err
    cache = Cache(tmp_path / "c")
    (row,) = cache.catalog.all()
    cache.catalog.touch([row.sha256], 0.0)  # long unused
    server = IndexServer(("127.0.0.1", 0), CacheView(cache))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1})
    thread.start()
    try:
        head = httpx.head(f"{server.url}/wheels/{row.filename}")
        assert head.status_code == 200
        assert cache.catalog.by_sha256(row.sha256).used_at == 0.0  # type: ignore[union-attr]
        got = httpx.get(f"{server.url}/wheels/{row.filename}")
        assert got.status_code == 200 and len(got.content) == row.size
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    assert cache.catalog.by_sha256(row.sha256).used_at > 0  # type: ignore[union-attr]
