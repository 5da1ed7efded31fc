"""A cache this process cannot write: on a read-only mount, and another user's cache.

Reading commands (``ls``, ``info``, ``verify``, ``export``, ``index``, ``serve``) work and leave
the cache exactly as it was; commands that must write say so in one line.  Root ignores file
modes, so the read-only case is a real read-only bind mount and the other user is a real
other user (``nobody``).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import pwd
import re
import signal
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.support.cachefill import add_wheel
from tests.support.torchindex import TorchIndex
from tests.support.wheels import build_wheel
from wheelcache.cli.main import main
from wheelcache.store.cache import Cache

TARGET = "cp39-win_amd64 (cu118)"

# Runs the CLI as user nobody.  The interpreter and the virtual environment may live where
# nobody cannot read (/root/.pyenv, a 0700 temp folder in CI), so every module is imported
# first, as root, and only then are the privileges dropped.
_AS_NOBODY = """
import importlib, os, pkgutil, sys
import wheelcache, wheelcache.cli.main
for m in pkgutil.walk_packages(wheelcache.__path__, "wheelcache."):
    if m.name != "wheelcache.__main__":
        importlib.import_module(m.name)
import encodings.cp437, encodings.idna
if sys.version_info >= (3, 11):  # TOML readers are imported where there is TOML to read
    import tomllib
else:
    import tomli
uid, gid = int(sys.argv.pop(1)), int(sys.argv.pop(1))
os.setgroups([])
os.setgid(gid)
os.setuid(uid)
sys.argv[0] = "wheelcache"
wheelcache.cli.main.main()
"""


def _fill(root: Path) -> Cache:
    cache = Cache(root)
    for name in ("alpha", "beta"):
        w = add_wheel(cache, build_wheel(root.parent / "build", name, "1.0"), name, "1.0")
        cache.catalog.add_target(w.sha256, TARGET)
    return cache


def _tree(root: Path) -> dict[str, tuple[int, int]]:
    """Every path under *root* with its size and mtime: what "unchanged" means."""
    return {
        p.relative_to(root).as_posix(): (p.lstat().st_size, p.lstat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
    }


@contextlib.contextmanager
def _read_only_bind(src: Path, dest: Path) -> Iterator[Path]:
    dest.mkdir(parents=True)
    subprocess.run(["mount", "--bind", str(src), str(dest)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(dest)], check=True)
        yield dest
    finally:
        subprocess.run(["umount", "-l", str(dest)], check=False)


def _run(*args: str, as_user: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WHEELCACHE_")}
    env["WHEELCACHE_CONFIG"] = os.devnull
    cmd = [sys.executable, "-c", "from wheelcache.cli.main import main; main()", *args]
    if as_user is not None:
        user = pwd.getpwnam(as_user)
        cmd = [sys.executable, "-c", _AS_NOBODY, str(user.pw_uid), str(user.pw_gid), *args]
        env["HOME"] = "/nonexistent"
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, cwd="/")


@pytest.fixture
def ro_cache(tmp_path: Path) -> Iterator[Path]:
    """A cache of two wheels, seen through a read-only bind mount."""
    _fill(tmp_path / "rw" / "cache")
    with _read_only_bind(tmp_path / "rw", tmp_path / "ro") as mnt:
        yield mnt / "cache"


@pytest.fixture
def others_cache() -> Iterator[Path]:
    """A cache of two wheels owned by root, in a folder user nobody may read but not write."""
    base = Path(tempfile.mkdtemp(prefix="wheelcache-others-"))
    try:
        base.chmod(0o755)
        _fill(base / "cache")
        yield base / "cache"
    finally:
        subprocess.run(["rm", "-rf", str(base)], check=False)


def _serve_and_get(cache: Path, tmp_path: Path, as_user: str | None = None) -> list[int]:
    """Start ``serve --port 0`` on *cache*; GET a page, a wheel and its .metadata file."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WHEELCACHE_")}
    env["WHEELCACHE_CONFIG"] = os.devnull
    args = ["serve", "--port", "0", "--cache-dir", str(cache)]
    cmd = [sys.executable, "-c", "from wheelcache.cli.main import main; main()", *args]
    if as_user is not None:
        user = pwd.getpwnam(as_user)
        cmd = [sys.executable, "-c", _AS_NOBODY, str(user.pw_uid), str(user.pw_gid), *args]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd="/"
    )
    statuses = []
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        lines = [first] + [proc.stdout.readline() for _ in range(3)]
        m = re.search(r"http://127\.0\.0\.1:(\d+)/simple/", "".join(lines))
        assert m, (lines, proc.stderr.read() if proc.poll() is not None and proc.stderr else "")
        conn = http.client.HTTPConnection("127.0.0.1", int(m.group(1)), timeout=10)
        for path in (
            "/simple/alpha/",
            "/wheels/alpha-1.0-py3-none-any.whl",
            "/wheels/alpha-1.0-py3-none-any.whl.metadata",
        ):
            conn.request("GET", path)
            resp = conn.getresponse()
            resp.read()
            statuses.append(resp.status)
        conn.close()
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "WARNING" not in err.upper() and "error" not in err, err
    return statuses


def _check_reading_commands(cache: Path, tmp_path: Path, as_user: str | None = None) -> None:
    out = tmp_path / "out"
    out.mkdir(mode=0o777, exist_ok=True)
    out.chmod(0o777)
    ls = _run("ls", "--json", "--cache-dir", str(cache), as_user=as_user)
    assert ls.returncode == 0, ls.stderr
    rows = json.loads(ls.stdout)["wheels"]
    assert [(w["project"], w["targets"]) for w in rows] == [("alpha", [TARGET]), ("beta", [TARGET])]
    info = _run("info", "--cache-dir", str(cache), as_user=as_user)
    assert info.returncode == 0 and "Wheels:     2" in info.stdout, info.stdout + info.stderr
    verify = _run("verify", "--cache-dir", str(cache), as_user=as_user)
    assert verify.returncode == 0 and verify.stdout.startswith("OK: checked 2 wheels"), (
        verify.stdout + verify.stderr
    )
    assert _serve_and_get(cache, tmp_path, as_user) == [200, 200, 200]
    if as_user is not None:
        return  # export and index read package data files nobody may not reach (see above)
    export = _run("export", str(out / "bundle"), "--all", "--cache-dir", str(cache))
    assert export.returncode == 0, export.stderr
    assert (out / "bundle" / "wheels" / "alpha-1.0-py3-none-any.whl").is_file()
    index = _run("index", str(out / "tree"), "--cache-dir", str(cache))
    assert index.returncode == 0, index.stderr
    assert (out / "tree" / "simple" / "beta" / "index.html").is_file()


def test_reading_commands_work_on_a_read_only_mount(ro_cache: Path, tmp_path: Path) -> None:
    before = _tree(ro_cache)
    _check_reading_commands(ro_cache, tmp_path)
    assert _tree(ro_cache) == before


def test_writing_commands_say_the_cache_is_read_only(ro_cache: Path, tmp_path: Path) -> None:
    for args in (["rm", "alpha"], ["gc"]):
        res = _run(*args, "--cache-dir", str(ro_cache))
        assert res.returncode == 1, res
        assert res.stderr.count("\n") == 1, res.stderr
        assert res.stderr.startswith(f"wheelcache: error: wheelcache {args[0]} needs to write to")
        assert f"the cache {ro_cache}, which is read-only (it is on a read-only filesystem)" in (
            res.stderr
        )
    dry = _run("gc", "--dry-run", "--cache-dir", str(ro_cache))
    assert dry.returncode == 0, dry.stderr


def test_verify_names_damage_in_a_read_only_cache_and_moves_nothing(tmp_path: Path) -> None:
    cache = _fill(tmp_path / "rw" / "cache")
    alpha = cache.find("alpha-1.0-py3-none-any.whl")
    assert alpha is not None
    alpha.path.unlink()  # the view goes, and so does the blob's last byte
    with open(alpha.blob, "r+b") as fh:
        fh.truncate(alpha.size - 1)
    with _read_only_bind(tmp_path / "rw", tmp_path / "ro") as mnt:
        before = _tree(mnt)
        res = _run("verify", "--cache-dir", str(mnt / "cache"))
        assert _tree(mnt) == before
    assert res.returncode == 1, res
    assert (
        f"TRUNCATED alpha-1.0-py3-none-any.whl: {alpha.size - 1} of {alpha.size} bytes; "
        "left in place (the cache is read-only)"
    ) in res.stdout
    assert "FAILED: checked 2 wheels" in res.stdout


def test_another_users_cache_is_read_while_its_owner_writes(
    others_cache: Path, tmp_path: Path
) -> None:
    out = Path(tempfile.mkdtemp(prefix="wheelcache-out-"))
    out.chmod(0o777)
    try:
        _check_reading_commands(others_cache, out, as_user="nobody")
        # The owner keeps the catalog open (its WAL and shared memory stay) and adds a wheel:
        # the other user sees it, as a reader of a live cache should.
        holder = sqlite3.connect(others_cache / "catalog-v1.sqlite")
        try:
            holder.execute("SELECT count(*) FROM wheels").fetchone()
            cache = Cache(others_cache)
            add_wheel(cache, build_wheel(out / "build", "gamma", "1.0"), "gamma", "1.0")
            assert (others_cache / "catalog-v1.sqlite-wal").stat().st_size > 0
            ls = _run("ls", "--json", "--cache-dir", str(others_cache), as_user="nobody")
        finally:
            holder.close()
        assert ls.returncode == 0, ls.stderr
        assert [w["project"] for w in json.loads(ls.stdout)["wheels"]] == [
            "alpha",
            "beta",
            "gamma",
        ]
        rm = _run("rm", "alpha", "--cache-dir", str(others_cache), as_user="nobody")
        assert rm.returncode == 1 and rm.stderr.count("\n") == 1, rm
        assert "read-only (this user may not write to it); run as the user who owns it" in (
            rm.stderr
        )
        assert "alpha-1.0-py3-none-any.whl" in {r[1] for r in _catalog_rows(others_cache)}
    finally:
        subprocess.run(["rm", "-rf", str(out)], check=False)


def _catalog_rows(cache: Path) -> list[tuple[str, ...]]:
    db = sqlite3.connect(cache / "catalog-v1.sqlite")
    try:
        return db.execute("SELECT sha256, filename FROM wheels").fetchall()
    finally:
        db.close()


@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_files_written_into_the_cache_follow_the_umask(tmp_path: Path, umask: int) -> None:
    """Requirements files, pages and imported wheels are shared like downloaded ones."""
    old = os.umask(umask)
    try:
        cache = Cache(tmp_path / "cache")
        target = tmp_path / "cache" / "wheels-v1" / "requirements-cpu-cp39-linux_x86_64.txt"
        cache.write_atomic(target, b"x==1\n")
        wheel = add_wheel(cache, build_wheel(tmp_path / "build", "delta", "1.0"), "delta", "1.0")
    finally:
        os.umask(old)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask
    assert wheel.blob.stat().st_mode & 0o777 == 0o666 & ~umask


def test_fetch_offline_works_on_a_read_only_cache(torch_index: TorchIndex, tmp_path: Path) -> None:
    args = [
        "fetch",
        "--cpu",
        "--py",
        "39",
        "--platform",
        "win_amd64",
        "--torch-index",
        torch_index.torch_index_url,
        "--index-url",
        torch_index.deps_index_url,
        "jinja2",
    ]
    first = CliRunner().invoke(main, [*args, "--cache-dir", str(tmp_path / "rw" / "cache")])
    assert first.exit_code == 0, first.stderr
    with _read_only_bind(tmp_path / "rw", tmp_path / "ro") as mnt:
        cache = str(mnt / "cache")
        before = _tree(mnt)
        offline = _run(*args, "--offline", "--cache-dir", cache)
        assert offline.returncode == 0, offline.stderr
        assert "2 wheels" in offline.stdout and "2 already in the cache" in offline.stdout
        assert "Hash-pinned requirements" not in offline.stdout
        assert "--find-links " + f"{cache}/wheels-v1" in offline.stdout
        assert offline.stderr == (
            "wheelcache: WARNING: the cache is read-only: no requirements file or lock "
            "(--dest DIR writes them there)\n"
        )
        dest = tmp_path / "dest"
        with_dest = _run(*args, "--offline", "--dest", str(dest), "--cache-dir", cache)
        assert with_dest.returncode == 0, with_dest.stderr
        assert sorted(p.name for p in dest.iterdir()) == [
            "MarkupSafe-2.1.5-cp39-cp39-win_amd64.whl",
            "jinja2-3.1.4-py3-none-any.whl",
            "pylock.cpu-cp39-win_amd64.toml",
            "requirements.txt",
        ]
        online = _run(*args, "--cache-dir", cache)
        assert _tree(mnt) == before
    assert online.returncode == 1
    assert online.stderr == (
        f"wheelcache: error: wheelcache fetch needs to write to the cache {cache}, which is "
        "read-only (it is on a read-only filesystem); remount it read-write, or add --offline "
        "to use what it holds\n"
    )
