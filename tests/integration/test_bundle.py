"""Bundles end to end: export, verify.py (also under Python 3.8), pip, install.sh, import.

Caches are filled two ways: small generated wheels ingested with :meth:`Cache.ingest`, and a
real ``wheelcache fetch`` against the PyTorch-style test index (so the closure of a pin is the
one fetch resolved).  Installs run the real pip, isolated from this machine's configuration.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from blake3 import blake3
from click.testing import CliRunner, Result

from tests.support.cachefill import add_wheel
from tests.support.lockclients import pip_install_lock, uv_install_lock
from tests.support.torchindex import WIN_CU118_PY39, TorchIndex
from tests.support.wheels import build_wheel
from wheelcache.bundle.export import export_bundle
from wheelcache.bundle.select import select_wheels
from wheelcache.cli.main import main
from wheelcache.core.models import Blake3, Sha256
from wheelcache.errors import BundleError
from wheelcache.store.cache import Cache

PY38 = Path("/root/.pyenv/versions/3.8.18/bin/python")
APP = "app-1.0-py3-none-any.whl"
DEP = "dep-1.2-py3-none-any.whl"


def demo_cache(root: Path) -> Cache:
    """app 1.0 needs dep>=1 (and winonly on Windows only); older versions and an unrelated
    project sit beside them and must stay out of the bundle."""
    cache = Cache(root / "cache")
    build = root / "build"
    specs: list[tuple[str, str, dict[str, Any]]] = [
        (
            "app",
            "1.0",
            {
                "requires_dist": ["dep>=1", "winonly; sys_platform == 'win32'"],
                "payload_size": 300_000,
            },
        ),
        ("app", "0.9", {}),
        ("dep", "1.2", {"requires_python": ">=3.8"}),
        ("dep", "0.5", {}),
        ("winonly", "1.0", {}),
        ("other", "3.0", {}),
    ]
    for name, version, kw in specs:
        add_wheel(cache, build_wheel(build, name, version, **kw), name, version)
    return cache


def cli(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def isolated_env(tmp: Path, **extra: str) -> dict[str, str]:
    """No PIP_* variable, no config file, no proxy, a throwaway HOME."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PIP_", "WHEELCACHE_")) and "proxy" not in k.lower()
    }
    (tmp / "home").mkdir(parents=True, exist_ok=True)
    env.update(PIP_CONFIG_FILE=os.devnull, HOME=str(tmp / "home"), **extra)
    return env


def run(
    cmd: list[str], tmp: Path, cwd: Path | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cmd, env=isolated_env(tmp, **env), cwd=cwd, capture_output=True, text=True, timeout=300
    )


def pip_install(bundle: Path, target: Path, tmp: Path, *how: str) -> str:
    """pip install -r requirements.txt; *how* says from where (default: wheels/, no index)."""
    how = how or ("--no-index", "--find-links", str(bundle / "wheels"))
    proc = run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            *how,
            "--require-hashes",
            "-r",
            str(bundle / "requirements.txt"),
            "--target",
            str(target),
            "--no-cache-dir",
            "--disable-pip-version-check",
            "--no-input",
        ],
        tmp,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def installed(target: Path) -> set[str]:
    return {p.name.split("-")[0] for p in target.glob("*.dist-info")}


def verify_py(
    bundle: Path, tmp: Path, python: Path | str = sys.executable, *args: str
) -> subprocess.CompletedProcess[str]:
    # -I -S: no site-packages at all, so only the standard library can be imported.
    return run([str(python), "-I", "-S", str(bundle / "verify.py"), *args], tmp, cwd=tmp)


@pytest.fixture
def exported(tmp_path: Path) -> tuple[Cache, Path]:
    cache = demo_cache(tmp_path)
    bundle = tmp_path / "stick" / "bundle"
    res = cli("export", str(bundle), "app==1.0", "--cache-dir", str(cache.root))
    assert res.exit_code == 0, res.stderr
    return cache, bundle


def test_export_verify_install_and_import(exported: tuple[Cache, Path], tmp_path: Path) -> None:
    cache, bundle = exported
    files = sorted(p.relative_to(bundle).as_posix() for p in bundle.rglob("*") if p.is_file())
    lock = f"pylock.cpu-cp{sys.version_info[0]}{sys.version_info[1]}-linux_x86_64.toml"
    assert files == [
        "README.txt",
        "install.bat",
        "install.ps1",
        "install.sh",
        "install_check.py",
        "manifest.json",
        lock,
        "requirements.txt",
        "simple/app/index.html",
        "simple/app/index.json",
        "simple/dep/index.html",
        "simple/dep/index.json",
        "simple/index.html",
        "simple/index.json",
        "verify.py",
        "wheelcache-probe.py",
        f"wheels/{APP}",
        f"wheels/{APP}.metadata",
        f"wheels/{DEP}",
        f"wheels/{DEP}.metadata",
    ]  # (winonly is for Windows only: this machine's markers left it out)
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert (manifest["format"], manifest["version"]) == ("wheelcache-bundle", 1)
    assert manifest["created_at"].endswith("Z") and manifest["requested"] == ["app==1.0"]
    assert manifest["target"]["python"] == f"{sys.version_info[0]}.{sys.version_info[1]}"
    for entry in manifest["files"]:
        data = (bundle / entry["path"]).read_bytes()
        assert entry["size"] == len(data)
        assert entry["sha256"] == hashlib.sha256(data).hexdigest()
        assert entry["blake3"] == blake3(data).hexdigest()
    wheel = next(e for e in manifest["files"] if e["path"] == f"wheels/{APP}")
    assert (wheel["project"], wheel["version"], wheel["kind"]) == ("app", "1.0", "wheel")
    assert wheel["targets"] == manifest["targets"]
    req = (bundle / "requirements.txt").read_text()
    assert [ln.split(" ")[0] for ln in req.splitlines() if "==" in ln] == ["app==1.0", "dep==1.2"]
    assert (
        '<a href="../../wheels/app-1.0-py3-none-any.whl#sha256='
        in (bundle / "simple" / "app" / "index.html").read_text()
    )

    # verify.py needs nothing but the standard library, on this Python and on 3.8.
    pythons: list[Path | str] = [sys.executable, *([PY38] if PY38.exists() else [])]
    for python in pythons:
        proc = verify_py(bundle, tmp_path, python)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "OK: all 19 files" in proc.stdout and "blake3 is not in" in proc.stdout
    assert PY38.exists(), "Python 3.8 is expected here; verify.py must run on it"

    # pip alone installs it: from the flat folder, and from the simple/ tree as an index.
    t1 = tmp_path / "t1"
    pip_install(bundle, t1, tmp_path)
    assert installed(t1) == {"app", "dep"}
    t2 = tmp_path / "t2"
    pip_install(bundle, t2, tmp_path, "--index-url", (bundle / "simple").as_uri() + "/")
    assert installed(t2) == {"app", "dep"}
    # install.sh for real, with extra pip arguments passed through.
    t3 = tmp_path / "t3"
    proc = run(
        [
            "sh",
            str(bundle / "install.sh"),
            "--target",
            str(t3),
            "--no-cache-dir",
            "--disable-pip-version-check",
        ],
        tmp_path,
        cwd=tmp_path,
        PYTHON=sys.executable,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert installed(t3) == {"app", "dep"}
    # The PEP 751 lock beside them: pip (26.1+) and uv install from its paths, no network.
    readme = (bundle / "README.txt").read_text()
    assert f"python -m pip install --no-index -r {lock}" in readme
    assert f"uv pip install --offline -r {lock}" in readme
    assert pip_install_lock(bundle / lock, tmp_path) == {"app-1.0", "dep-1.2"}
    assert uv_install_lock(bundle / lock, tmp_path) == {"app-1.0", "dep-1.2"}

    assert cli("verify", str(bundle)).exit_code == 0

    # import into a second cache: verified, ingested, targets recorded, then idempotent.
    other = tmp_path / "other-cache"
    res = cli("import", str(bundle), "--cache-dir", str(other))
    assert res.exit_code == 0, res.stdout + res.stderr
    assert "Imported 2 wheels" in res.stdout and "--require-hashes -r" in res.stdout
    inv = json.loads(cli("ls", "--json", "--cache-dir", str(other)).stdout)
    assert {w["filename"]: w["targets"] for w in inv["wheels"]} == {
        APP: manifest["targets"],
        DEP: manifest["targets"],
    }
    again = cli("import", str(bundle), "--cache-dir", str(other))
    assert "Imported 0 wheels" in again.stdout and "2 were already there" in again.stdout
    assert cli("verify", "--cache-dir", str(other)).exit_code == 0


def _flip(p: Path) -> None:
    data = bytearray(p.read_bytes())
    data[len(data) // 2] ^= 0x01
    p.write_bytes(bytes(data))


def _truncate(p: Path) -> None:
    with open(p, "r+b") as fh:
        fh.truncate(p.stat().st_size - 100)


DAMAGE: dict[str, tuple[Callable[[Path], object], str, str]] = {
    "flip": (lambda b: _flip(b / "wheels" / APP), "CORRUPT", f"wheels/{APP}"),
    "truncate": (lambda b: _truncate(b / "wheels" / APP), "TRUNCATED", f"wheels/{APP}"),
    "delete": (lambda b: (b / "wheels" / APP).unlink(), "MISSING", f"wheels/{APP}"),
    "stray": (
        lambda b: (b / "wheels" / "evil-1.0-py3-none-any.whl").write_bytes(b"x"),
        "EXTRA",
        "wheels/evil-1.0-py3-none-any.whl",
    ),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_damage_is_named_by_verify_verify_py_and_import(
    exported: tuple[Cache, Path], tmp_path: Path, damage: str
) -> None:
    source, bundle = exported
    do, kind, rel = DAMAGE[damage]
    do(bundle)
    line = f"{kind:<9} {rel}"
    res = cli("verify", str(bundle))
    assert res.exit_code == 1 and line in res.stdout, res.stdout
    assert len(res.stdout.strip().splitlines()) == 1  # nothing else is blamed
    proc = verify_py(bundle, tmp_path)
    assert proc.returncode == 1 and line in proc.stdout, proc.stdout + proc.stderr
    other = tmp_path / "other"
    res = cli("import", str(bundle), "--cache-dir", str(other))
    assert line in res.stdout, res.stdout
    names = {
        w["filename"]
        for w in json.loads(cli("ls", "--json", "--cache-dir", str(other)).stdout)["wheels"]
    }
    if damage == "stray":
        assert res.exit_code == 0 and names == {APP, DEP}  # named, and nothing is refused
    else:
        assert res.exit_code == 1 and f"REFUSED   {line}" in res.stdout
        assert names == {DEP}  # the good wheel is still imported
        assert "1 wheel(s) refused" in res.stderr
    # Into a cache that has every wheel already: nothing to refuse, the damage is still named.
    res = cli("import", str(bundle), "--cache-dir", str(source.root))
    assert res.exit_code == 0 and line in res.stdout and "REFUSED" not in res.stdout


def test_fat32_refuses_a_file_over_4_gib_before_copying(tmp_path: Path) -> None:
    cache = demo_cache(tmp_path)
    big = build_wheel(tmp_path / "big", "huge", "1.0")
    with open(big, "r+b") as fh:
        fh.truncate(4 * 2**30 + 1)  # sparse: 4 GiB + 1 byte, no disk used
    digests = (Sha256("a" * 64), Blake3("b" * 64))  # the check reads sizes only
    tmp = cache.temp_path()
    os.replace(big, tmp)
    cache.ingest(
        tmp,
        sha256=digests[0],
        blake3=digests[1],
        size=4 * 2**30 + 1,
        filename=big.name,
        project="huge",
        version="1.0",
        url="u",
        hash_origin="index",
    )
    selection = select_wheels(cache, everything=True)
    dest = tmp_path / "stick" / "bundle"
    seen: list[Path] = []

    def fat(path: Path) -> str:
        seen.append(path)
        return "vfat"

    with pytest.raises(BundleError) as err:
        export_bundle(cache, dest, selection, fs_type=fat, free_space=lambda p: 2**50)
    msg = str(err.value)
    assert "FAT32" in msg and "huge-1.0-py3-none-any.whl" in msg and "4294967297 bytes" in msg
    assert "exFAT or NTFS" in msg
    assert seen == [dest] and not dest.exists()  # refused before anything was written
    # Without the big file the same FAT32 stick is fine.
    assert cli("rm", "huge", "--cache-dir", str(cache.root)).exit_code == 0
    ok = export_bundle(
        cache, dest, select_wheels(cache, everything=True), fs_type=fat, free_space=lambda p: 2**50
    )
    assert ok.wheels == 6 and ok.fs_type == "vfat"


def test_fat32_through_the_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = demo_cache(tmp_path)
    monkeypatch.setattr("wheelcache.bundle.export.filesystem_type", lambda p: "FAT32")
    res = CliRunner().invoke(
        main, ["export", str(tmp_path / "b"), "--all", "--cache-dir", str(cache.root)]
    )
    assert res.exit_code == 0, res.stderr  # small files fit on FAT32
    assert "FAT32" not in res.stderr


def test_too_little_free_space_is_refused_before_copying(tmp_path: Path) -> None:
    cache = demo_cache(tmp_path)
    dest = tmp_path / "full"
    selection = select_wheels(
        cache, requirements=["app==1.0"], fallback=None, target_text=None, target=_this_machine()
    )
    with pytest.raises(BundleError, match="not enough free space on .*full: the bundle needs"):
        export_bundle(cache, dest, selection, free_space=lambda p: 100_000)
    assert not dest.exists()


def _this_machine() -> Any:
    from wheelcache.cli.bundle import _this_machine as this

    return this()


def test_interrupted_export_is_finished_by_running_it_again(tmp_path: Path) -> None:
    cache = demo_cache(tmp_path)
    selection = select_wheels(cache, everything=True)
    dest = tmp_path / "b"
    written: list[str] = []

    def interrupt_in_third_wheel(rel: str, done: int, total: int) -> None:
        if done == 0:
            written.append(rel)
        if len(written) == 3 and done > 0:
            raise KeyboardInterrupt  # Ctrl-C in the middle of a copy

    with pytest.raises(KeyboardInterrupt):
        export_bundle(cache, dest, selection, progress=interrupt_in_third_wheel)
    assert (dest / ".wheelcache-export-incomplete").exists()
    assert not (dest / "manifest.json").exists()
    assert not list(dest.rglob("*.wctmp"))  # the half copy was removed
    proc = verify_py(dest, tmp_path) if (dest / "verify.py").exists() else None
    assert proc is None  # the text files come after the wheels
    res = cli("verify", str(dest))
    assert res.exit_code == 1 and "interrupted" in res.stderr
    done_before = {rel: (dest / rel).stat().st_mtime_ns for rel in written[:2]}
    (dest / "wheels" / ".leftover.whl.wctmp").write_bytes(b"from a killed run")
    # Damage one finished file: the re-run must notice (right size, wrong sha256).
    _flip(dest / written[1])
    done_before.pop(written[1])

    again: list[str] = []
    result = export_bundle(
        cache, dest, selection, progress=lambda rel, d, t: again.append(rel) if d == 0 else None
    )
    assert written[0] not in again and written[1] in again  # only what was missing or bad
    assert all((dest / rel).stat().st_mtime_ns == ns for rel, ns in done_before.items())
    assert result.reused == 1 and result.copied == result.files - 1
    assert not (dest / ".wheelcache-export-incomplete").exists()
    assert not list(dest.rglob("*.wctmp"))
    assert cli("verify", str(dest)).exit_code == 0
    # A third run copies nothing at all.
    third = export_bundle(cache, dest, selection)
    assert third.copied == 0 and third.reused == third.files


def test_delta_bundle_carries_only_what_the_other_side_lacks(tmp_path: Path) -> None:
    cache = demo_cache(tmp_path)
    offline = tmp_path / "offline-cache"
    first = tmp_path / "first"
    assert cli("export", str(first), "dep==1.2", "--cache-dir", str(cache.root)).exit_code == 0
    assert cli("import", str(first), "--cache-dir", str(offline)).exit_code == 0
    inventory = tmp_path / "inventory.json"
    inventory.write_text(cli("ls", "--json", "--cache-dir", str(offline)).stdout)

    delta = tmp_path / "delta"
    res = cli(
        "export",
        str(delta),
        "app==1.0",
        "--exclude-present",
        str(inventory),
        "--cache-dir",
        str(cache.root),
    )
    assert res.exit_code == 0, res.stderr
    assert "1 left out" in res.stdout
    assert sorted(p.name for p in (delta / "wheels").glob("*.whl")) == [APP]
    manifest = json.loads((delta / "manifest.json").read_text())
    assert [w["filename"] for w in manifest["delta"]["left_out"]] == [DEP]
    assert "dep==1.2" in (delta / "requirements.txt").read_text()  # still the whole closure
    assert "delta bundle" in (delta / "README.txt").read_text()
    assert cli("verify", str(delta)).exit_code == 0
    res = cli("import", str(delta), "--cache-dir", str(offline))
    assert res.exit_code == 0 and "Imported 1 wheels" in res.stdout
    assert "expects" not in res.stdout  # the left-out wheel is there
    # Install on the offline side from its cache, with the bundle's pinned requirements.
    target = tmp_path / "t"
    pip_install(delta, target, tmp_path, "--no-index", "--find-links", str(offline / "wheels-v1"))
    assert installed(target) == {"app", "dep"}


def test_re_export_removes_what_is_no_longer_selected(tmp_path: Path) -> None:
    cache = demo_cache(tmp_path)
    dest = tmp_path / "b"
    assert cli("export", str(dest), "app==1.0", "--cache-dir", str(cache.root)).exit_code == 0
    res = cli("export", str(dest), "other==3.0", "--cache-dir", str(cache.root))
    assert res.exit_code == 0 and "Removed 8 files of an earlier export" in res.stdout
    assert sorted(p.name for p in (dest / "wheels").glob("*.whl")) == ["other-3.0-py3-none-any.whl"]
    assert not (dest / "simple" / "app").exists()
    assert cli("verify", str(dest)).exit_code == 0


def test_export_refuses_bad_input(tmp_path: Path) -> None:
    cache = demo_cache(tmp_path)
    c = ["--cache-dir", str(cache.root)]
    assert cli("export", str(tmp_path / "x"), "app==1.0", "--all", *c).exit_code == 2
    assert cli("export", str(tmp_path / "x"), *c).exit_code == 2
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "thesis.docx").write_bytes(b"precious")
    res = CliRunner().invoke(main, ["export", str(busy), "app==1.0", *c])
    assert res.exit_code == 1 and "is not empty and is not a wheelcache bundle" in res.stderr
    assert (busy / "thesis.docx").read_bytes() == b"precious"
    res = CliRunner().invoke(main, ["export", str(tmp_path / "y"), "nope==1", *c])
    assert res.exit_code == 1 and "the cache has no nope==1 wheel" in res.stderr
    res = CliRunner().invoke(main, ["verify", str(tmp_path)])
    assert res.exit_code == 1 and "neither a wheelcache bundle" in res.stderr


def test_target_file_from_the_probe_selects_and_is_recorded(tmp_path: Path) -> None:
    cache = demo_cache(tmp_path)
    target = tmp_path / "target.json"
    assert cli("probe", "--no-nvidia", "--output", str(target)).exit_code == 0
    dest = tmp_path / "b"
    res = cli(
        "export", str(dest), "app==1.0", "--target", str(target), "--cache-dir", str(cache.root)
    )
    assert res.exit_code == 0, res.stderr
    manifest = json.loads((dest / "manifest.json").read_text())
    probe = json.loads(target.read_text())
    assert manifest["target"]["variant"] == "cpu"  # the target used, and the probe's facts
    assert manifest["target"]["probe"]["tags"] == probe["tags"]
    assert manifest["target"]["probe"]["markers"] == probe["markers"]
    assert {p.name for p in (dest / "wheels").glob("*.whl")} == {APP, DEP}


# -- from a real fetch ------------------------------------------------------------------------
def fetch(ti: TorchIndex, cache: Path, *args: str) -> dict[str, Any]:
    res = cli(
        "fetch",
        "--torch-index",
        ti.torch_index_url,
        "--index-url",
        ti.deps_index_url,
        "--cache-dir",
        str(cache),
        "--json",
        *args,
    )
    assert res.exit_code == 0, res.stderr
    data: dict[str, Any] = json.loads(res.stdout)
    return data


def test_fetched_closures_export_by_pin_target_and_lock(
    torch_index: TorchIndex, tmp_path: Path
) -> None:
    cache = tmp_path / "c"
    here = fetch(torch_index, cache, "--cpu", "--torch", "2.4.0")  # this machine
    win = fetch(
        torch_index,
        cache,
        "--cuda",
        "118",
        "--py",
        "39",
        "--platform",
        "win_amd64",
        "--torch",
        "2.4.0",
    )
    fetch(
        torch_index,
        cache,
        "--cuda",
        "118",
        "--py",
        "39",
        "--platform",
        "linux_x86_64",
        "--torch",
        "2.4.0",
    )
    c = ["--cache-dir", str(cache)]
    requests_before = sum(len(s.requests) for s in torch_index.servers)

    # The pin alone: the cache knows the one target that torch file was fetched for.
    mine = tmp_path / "mine"
    res = cli("export", str(mine), "torch==2.4.0+cpu", "torchvision==0.19.0+cpu", *c)
    assert res.exit_code == 0, res.stderr
    assert {p.name for p in (mine / "wheels").glob("*.whl")} == {
        f["filename"] for f in here["files"] if f["project"] != "torchaudio"
    }  # not asked for
    t = tmp_path / "t"
    pip_install(mine, t, tmp_path)
    assert {"torch", "torchvision", "numpy", "sympy"} <= installed(t)
    assert "torchaudio" not in installed(t)

    # torch==2.4.0+cu118 was fetched for two targets: which one must be said.
    res = CliRunner().invoke(main, ["export", str(tmp_path / "x"), "torch==2.4.0+cu118", *c])
    assert res.exit_code == 1 and "fetched for several targets" in res.stderr
    assert "cp39-win_amd64 (cu118)" in res.stderr and "cp39-linux_x86_64 (cu118)" in res.stderr
    by_pin = tmp_path / "by-pin"
    res = cli(
        "export",
        str(by_pin),
        "torch==2.4.0+cu118",
        "torchvision==0.19.0+cu118",
        "torchaudio==2.4.0+cu118",
        "--target",
        "win_amd64",
        *c,
    )
    assert res.exit_code == 0, res.stderr
    assert {p.name for p in (by_pin / "wheels").glob("*.whl")} == WIN_CU118_PY39
    assert {f["filename"] for f in win["files"]} == WIN_CU118_PY39

    # The requirements file fetch wrote, as a lock: the same files, the same pins.
    by_lock = tmp_path / "by-lock"
    lock = cache / "wheels-v1" / "requirements-cu118-cp39-win_amd64.txt"
    assert cli("export", str(by_lock), "-r", str(lock), *c).exit_code == 0
    assert {p.name for p in (by_lock / "wheels").glob("*.whl")} == WIN_CU118_PY39
    assert (by_lock / "requirements.txt").read_text() == (by_pin / "requirements.txt").read_text()
    manifest = json.loads((by_lock / "manifest.json").read_text())
    assert manifest["targets"] == ["cp39-win_amd64 (cu118)"]
    for bundle in (by_pin, by_lock):  # the target's Python is preferred by the scripts
        assert 'set "PYARGS=-3.9"' in (bundle / "install.bat").read_text()
        assert "for candidate in python3.9 python3 python" in (bundle / "install.sh").read_text()

    # --all narrowed to a recorded target; exporting never touched the network.
    everything = tmp_path / "all-win"
    assert cli("export", str(everything), "--all", "--target", "cp39-win", *c).exit_code == 0
    assert {p.name for p in (everything / "wheels").glob("*.whl")} == WIN_CU118_PY39
    assert sum(len(s.requests) for s in torch_index.servers) == requests_before
    for bundle in (mine, by_pin, by_lock, everything):
        assert verify_py(bundle, tmp_path).returncode == 0
