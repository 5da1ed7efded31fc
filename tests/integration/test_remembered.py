"""A second identical fetch takes the wheels it chose last time when no index page changed,
without resolving (issue 14: the warm run) — and resolves again as soon as anything that
the choice depends on is different: a page, the request, a wheel gone from the cache, a
record that is not whole."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from tests.support.httpserver import FileServer
from tests.support.miniindex import Dist, publish
from wheelcache.cli.main import main
from wheelcache.core.layout import CacheLayout

TARGET = ("--cpu", "--py", "311", "--platform", "linux_x86_64")
RECALLED = "the index pages are unchanged: the same"
FIRST = [Dist("app", "1.0", requires=("lib>=1",)), Dist("lib", "1.0")]


def _fetch(url: str, cache: Path, *args: str) -> tuple[dict[str, object], str]:
    result = CliRunner().invoke(
        main,
        ["fetch", *TARGET, "--index-url", url, "--torch-index", url]
        + ["--cache-dir", str(cache), "--json", "-v", *args],  # (a later option wins)
    )
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout), result.stderr


def _chosen(out: dict[str, object]) -> list[str]:
    files = out["files"]
    assert isinstance(files, list)
    return sorted(f["filename"] for f in files)


def _records(cache: Path) -> list[Path]:
    return sorted(Path(CacheLayout(cache).pages, "resolved").glob("*.json"))


def test_the_second_identical_run_is_recalled_with_the_same_outputs(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    with FileServer() as srv:
        url = publish(srv, tmp_path / "index", FIRST)
        first, err1 = _fetch(url, cache, "app")
        assert RECALLED not in err1
        wheels = Path(str(first["wheels_dir"]))
        lock = (wheels / Path(str(first["lock_file"])).name).read_bytes()
        second, err2 = _fetch(url, cache, "app")
        third, _ = _fetch(url, cache, "app", "--offline")
    assert f"{RECALLED} 2 wheels as last time" in err2
    assert len(_records(cache)) == 1
    for out in (second, third):  # the same answer as the resolution, from the cache
        assert (
            _chosen(out)
            == _chosen(first)
            == ["app-1.0-py3-none-any.whl", "lib-1.0-py3-none-any.whl"]
        )
        assert out["requested"] == first["requested"] == ["app==1.0"]
        assert [f["required_by"] for f in out["files"]] == [
            f["required_by"] for f in first["files"]
        ]  # type: ignore[union-attr]
        assert {f["source"] for f in out["files"]} == {"cache"}  # type: ignore[union-attr]
    assert (wheels / Path(str(first["lock_file"])).name).read_bytes() == lock


def test_a_changed_page_is_resolved_again(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    with FileServer() as srv:
        url = publish(srv, tmp_path / "index", FIRST)
        _fetch(url, cache, "app")
        publish(srv, tmp_path / "index", [*FIRST, Dist("lib", "2.0")])  # a new release
        out, err = _fetch(url, cache, "app")
    assert RECALLED not in err
    assert "lib-2.0-py3-none-any.whl" in _chosen(out)
    assert len(_records(cache)) == 1  # the same request: its record is replaced


def test_another_request_or_a_wheel_gone_is_resolved_again(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    with FileServer() as srv:
        url = publish(srv, tmp_path / "index", [*FIRST, Dist("lib", "2.0")])
        _fetch(url, cache, "app", "lib<2")
        out, err = _fetch(url, cache, "app")  # another request: its own record
        assert RECALLED not in err and "lib-2.0-py3-none-any.whl" in _chosen(out)
        assert len(_records(cache)) == 2
        for blob in Path(CacheLayout(cache).blobs).rglob("*"):
            if blob.is_file():
                blob.unlink()  # every wheel gone (as after a gc)
        again, err = _fetch(url, cache, "app")
    assert RECALLED not in err
    assert {f["source"] for f in again["files"]} == {"network"}  # type: ignore[union-attr]


def test_a_record_that_is_not_whole_or_lies_is_not_used(tmp_path: Path) -> None:
    """The record is read like anything from disk: a torn one is passed over; so is one
    that names a cached wheel for another machine (here the Windows build, cached by a
    fetch for Windows) — and nothing is written outside the cache."""
    cache = tmp_path / "cache"
    native = Dist("native", "1.0", tags=("cp311-cp311-linux_x86_64", "cp311-cp311-win_amd64"))
    win = ("--platform", "win_amd64")
    with FileServer() as srv:
        url = publish(srv, tmp_path / "index", [native])
        first, _ = _fetch(url, cache, "native")
        (record,) = _records(cache)
        data = record.read_bytes()
        record.write_bytes(data[: len(data) // 2])
        out, err = _fetch(url, cache, "native")
        assert RECALLED not in err and _chosen(out) == _chosen(first)
        windows, _ = _fetch(url, cache, "native", *win)  # its own record and wheel
        (other,) = windows["files"]  # type: ignore[misc]
        raw = json.loads(record.read_bytes())  # written whole again by the second run
        raw["files"][0].update(filename=other["filename"], sha256=other["sha256"])
        record.write_text(json.dumps(raw))
        out, err = _fetch(url, cache, "native")
    assert RECALLED not in err
    assert _chosen(out) == _chosen(first) == ["native-1.0-cp311-cp311-linux_x86_64.whl"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "index"]


def test_a_resolution_made_while_metadata_failed_is_not_remembered(tmp_path: Path) -> None:
    """A metadata read that failed (a flaky server, a size limit, --offline without it) may
    have made the resolution pass over a candidate — on a plain torch index a build whose
    metadata cannot be read is not taken — and that answer is not kept for later runs."""
    cache = tmp_path / "cache"
    newest = "/files/torch-2.5.1-py3-none-any.whl"
    with FileServer() as srv:
        url = publish(srv, tmp_path / "index", [Dist("torch", "2.5.1"), Dist("torch", "2.4.0")])
        for path in (newest, newest + ".metadata"):
            srv.fault(path, status=404, times=None)
        first, _ = _fetch(url, cache, "torch")
        assert _chosen(first) == ["torch-2.4.0-py3-none-any.whl"]  # the worse answer …
        assert _records(cache) == []  # … is not remembered
        srv.clear_faults()
        again, err = _fetch(url, cache, "torch")
    assert RECALLED not in err
    assert _chosen(again) == ["torch-2.5.1-py3-none-any.whl"]
    assert len(_records(cache)) == 1  # a run that read everything is


def test_gc_removes_the_records_that_can_no_longer_be_used(tmp_path: Path) -> None:
    """After ``rm`` of a wheel a record names, or a record torn, ``gc`` removes the record;
    a record whose wheels are all there stays (and is recalled)."""
    cache = tmp_path / "cache"
    with FileServer() as srv:
        url = publish(srv, tmp_path / "index", [*FIRST, Dist("other", "1.0")])
        _fetch(url, cache, "app")
        _fetch(url, cache, "other")
        assert len(_records(cache)) == 2
        removed = CliRunner().invoke(main, ["rm", "lib", "--cache-dir", str(cache)])
        assert removed.exit_code == 0, removed.stderr
        dry = CliRunner().invoke(main, ["gc", "--dry-run", "--cache-dir", str(cache)])
        assert "Would remove" in dry.stdout and "1 remembered resolution(s)" in dry.stdout
        assert len(_records(cache)) == 2  # a dry run removes nothing
        done = CliRunner().invoke(main, ["gc", "--cache-dir", str(cache)])
        assert done.exit_code == 0, done.stderr
        assert "1 remembered resolution(s) of wheels now gone" in done.stdout
        (kept,) = _records(cache)
        kept.write_bytes(kept.read_bytes()[:-3])  # torn: never readable again
        CliRunner().invoke(main, ["gc", "--cache-dir", str(cache)])
        assert _records(cache) == []
        _fetch(url, cache, "other")
        again = CliRunner().invoke(main, ["gc", "--cache-dir", str(cache)])
        assert "remembered" not in again.stdout
        _, err = _fetch(url, cache, "other")
    assert RECALLED in err  # the record gc kept still serves
