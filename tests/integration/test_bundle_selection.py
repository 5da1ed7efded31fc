"""Bundles: what an export selects (variants, several targets), re-runs after an interruption,
import.

Each test here failed before its fix.  Caches are filled with small generated wheels through
:meth:`Cache.ingest` (as fetch stores them) and the targets fetch would record; everything runs
through the real CLI, the real ``verify.py`` and the real pip.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from tests.integration.test_bundle import (
    APP,
    DEP,
    add_wheel,
    demo_cache,
    run,
    verify_py,
)
from tests.support.wheels import build_wheel
from wheelcache.bundle.export import export_bundle
from wheelcache.bundle.select import select_wheels
from wheelcache.cli.bundle import _this_machine
from wheelcache.cli.main import main
from wheelcache.errors import BundleError
from wheelcache.store.cache import Cache

HERE = _this_machine()
T_CPU = HERE.describe()  # e.g. cp311-linux_x86_64 (cpu)
T_CU = dataclasses.replace(HERE, variant="cu121").describe()
TORCH_CPU = "torch-2.4.0+cpu-py3-none-any.whl"
TORCH_CU = "torch-2.4.0+cu121-py3-none-any.whl"
NVIDIA = "nvidia_cublas_cu12-12.1.3.1-py3-none-any.whl"


def invoke(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def wheels_in(bundle: Path) -> set[str]:
    return {p.name for p in (bundle / "wheels").glob("*.whl")}


def variant_cache(root: Path) -> Cache:
    """torch 2.4.0 as a cpu and a cu121 build for this machine's tags, as two fetches left it:
    the cu121 build pulls an nvidia-* wheel on Linux, both pull dep."""
    cache = Cache(root / "cache")
    build = root / "build"
    cu_deps = ["dep>=1", "nvidia-cublas-cu12==12.1.3.1; platform_system == 'Linux'"]
    made = {
        "cpu": add_wheel(
            cache,
            build_wheel(build, "torch", "2.4.0+cpu", requires_dist=["dep>=1"]),
            "torch",
            "2.4.0+cpu",
        ),
        "cu": add_wheel(
            cache,
            build_wheel(build, "torch", "2.4.0+cu121", requires_dist=cu_deps),
            "torch",
            "2.4.0+cu121",
        ),
        "nvidia": add_wheel(
            cache,
            build_wheel(build, "nvidia-cublas-cu12", "12.1.3.1"),
            "nvidia-cublas-cu12",
            "12.1.3.1",
        ),
        "dep": add_wheel(cache, build_wheel(build, "dep", "1.2"), "dep", "1.2"),
    }
    for key in ("cpu", "dep"):
        cache.catalog.add_target(made[key].sha256, T_CPU)
    for key in ("cu", "nvidia", "dep"):
        cache.catalog.add_target(made[key].sha256, T_CU)
    return cache


def probe_file(tmp: Path, driver: str | None = None) -> Path:
    path = tmp / "target.json"
    res = invoke("probe", "--no-nvidia", "--output", str(path))
    assert res.exit_code == 0, res.stderr
    if driver is not None:
        data = json.loads(path.read_text())
        data["nvidia"] = {"driver_version": driver, "gpus": [], "error": None}
        path.write_text(json.dumps(data))
    return path


# -- finding 1: the variant is named, or the only one; never guessed -------------------------
def test_export_with_a_target_file_refuses_to_guess_the_variant(tmp_path: Path) -> None:
    cache = variant_cache(tmp_path)
    c = ["--cache-dir", str(cache.root)]
    target = probe_file(tmp_path)

    res = invoke("export", str(tmp_path / "x"), "torch==2.4.0", "--target", str(target), *c)
    assert res.exit_code == 1, res.stdout + res.stderr
    assert "several variants" in res.stderr and "(cpu, cu121)" in res.stderr
    assert "--cuda VER, --cpu or --variant NAME" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and not (tmp_path / "x").exists()

    cpu = tmp_path / "cpu"
    res = invoke("export", str(cpu), "torch==2.4.0", "--target", str(target), "--cpu", *c)
    assert res.exit_code == 0, res.stderr
    assert wheels_in(cpu) == {TORCH_CPU, "dep-1.2-py3-none-any.whl"}
    manifest = json.loads((cpu / "manifest.json").read_text())
    assert manifest["targets"] == [T_CPU] and manifest["target"]["variant"] == "cpu"

    cu = tmp_path / "cu"
    res = invoke("export", str(cu), "torch==2.4.0", "--target", str(target), "--cuda", "12.1", *c)
    assert res.exit_code == 0, res.stderr
    assert wheels_in(cu) == {TORCH_CU, NVIDIA, "dep-1.2-py3-none-any.whl"}
    assert json.loads((cu / "manifest.json").read_text())["targets"] == [T_CU]

    # --all over a target file: the same question, and the answer leaves out the other build
    # and the wheels recorded only for it.
    res = invoke("export", str(tmp_path / "y"), "--all", "--target", str(target), *c)
    assert res.exit_code == 1 and "several variants" in res.stderr
    everything = tmp_path / "all-cpu"
    res = invoke(
        "export", str(everything), "--all", "--target", str(target), "--variant", "cpu", *c
    )
    assert res.exit_code == 0, res.stderr
    assert wheels_in(everything) == {TORCH_CPU, "dep-1.2-py3-none-any.whl"}
    assert json.loads((everything / "manifest.json").read_text())["targets"] == [T_CPU]


def test_export_without_a_target_file_narrows_recorded_targets_by_variant(tmp_path: Path) -> None:
    cache = variant_cache(tmp_path)
    c = ["--cache-dir", str(cache.root)]
    res = invoke("export", str(tmp_path / "x"), "torch==2.4.0", *c)
    assert res.exit_code == 1 and "fetched for several targets" in res.stderr
    cpu = tmp_path / "cpu"
    res = invoke("export", str(cpu), "torch==2.4.0", "--cpu", *c)
    assert res.exit_code == 0, res.stderr
    assert wheels_in(cpu) == {TORCH_CPU, "dep-1.2-py3-none-any.whl"}
    res = invoke("export", str(tmp_path / "z"), "torch==2.4.0+cpu", "--cuda", "121", *c)
    assert res.exit_code == 1 and "drop one of them" in res.stderr


def test_export_cuda_auto_picks_by_the_target_files_driver(tmp_path: Path) -> None:
    cache = variant_cache(tmp_path)
    c = ["--cache-dir", str(cache.root)]
    dest = tmp_path / "auto"
    target = probe_file(tmp_path, driver="535.104.05")
    res = invoke("export", str(dest), "torch==2.4.0", "--target", str(target), "--cuda", "auto", *c)
    assert res.exit_code == 0, res.stderr
    assert "--cuda auto: driver 535.104.05" in res.stderr and "picked cu121" in res.stderr
    assert TORCH_CU in wheels_in(dest)
    manifest = json.loads((dest / "manifest.json").read_text())
    assert manifest["target"]["probe"]["driver_version"] == "535.104.05"
    res = invoke(
        "export",
        str(tmp_path / "no"),
        "torch==2.4.0",
        "--target",
        str(probe_file(tmp_path)),
        "--cuda",
        "auto",
        *c,
    )
    assert res.exit_code == 1 and "reports no NVIDIA driver" in res.stderr


def test_a_cache_with_one_variant_needs_no_option(tmp_path: Path) -> None:
    cache = variant_cache(tmp_path)
    assert invoke("rm", TORCH_CU, "--cache-dir", str(cache.root)).exit_code == 0
    dest = tmp_path / "b"
    res = invoke(
        "export",
        str(dest),
        "torch==2.4.0",
        "--target",
        str(probe_file(tmp_path)),
        "--cache-dir",
        str(cache.root),
    )
    assert res.exit_code == 0, res.stderr
    assert json.loads((dest / "manifest.json").read_text())["targets"] == [T_CPU]


# -- finding 2: --all over several targets ----------------------------------------------------
def test_all_over_several_targets_writes_a_requirements_file_per_target(tmp_path: Path) -> None:
    cache = Cache(tmp_path / "cache")
    build = tmp_path / "build"
    win, linux = "cp39-win_amd64 (cu118)", "cp39-linux_x86_64 (cu118)"
    for name, version, targets in [
        ("app", "1.0", [win]),
        ("app", "0.9", [linux]),
        ("dep", "1.2", [win, linux]),
    ]:
        w = add_wheel(cache, build_wheel(build, name, version), name, version)
        for t in targets:
            cache.catalog.add_target(w.sha256, t)
    dest = tmp_path / "b"
    res = invoke("export", str(dest), "--all", "--cache-dir", str(cache.root))
    assert res.exit_code == 0, res.stderr
    assert "several targets, so no install scripts" in res.stdout
    top = sorted(p.name for p in dest.iterdir() if p.is_file())
    assert top == [
        "README.txt",
        "manifest.json",
        "pylock.cu118-cp39-linux_x86_64.toml",
        "pylock.cu118-cp39-win_amd64.toml",
        "requirements-cu118-cp39-linux_x86_64.txt",
        "requirements-cu118-cp39-win_amd64.txt",
        "verify.py",
    ]
    pins = {
        name: [
            ln.split(" ")[0]
            for ln in (dest / name).read_text().splitlines()
            if "==" in ln and not ln.startswith("#")
        ]
        for name in top
        if name.startswith("requirements-")
    }
    assert pins == {
        "requirements-cu118-cp39-linux_x86_64.txt": ["app==0.9", "dep==1.2"],
        "requirements-cu118-cp39-win_amd64.txt": ["app==1.0", "dep==1.2"],
    }
    readme = (dest / "README.txt").read_text()
    assert f"{linux}: requirements-cu118-cp39-linux_x86_64.txt" in readme
    assert "uv pip install --offline -r pylock.<the host's>.toml" in readme
    assert "pylock.cu118-cp39-linux_x86_64.toml, pylock.cu118-cp39-win_amd64.toml" in readme
    linux_lock = (dest / "pylock.cu118-cp39-linux_x86_64.toml").read_text()
    assert 'path = "wheels/app-0.9-py3-none-any.whl"' in linux_lock
    assert "app-1.0" not in linux_lock
    assert "install.bat" not in readme
    assert verify_py(dest, tmp_path).returncode == 0
    # The linux file installs the linux wheels, with pip alone.
    t = tmp_path / "t"
    proc = run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-index",
            "--find-links",
            str(dest / "wheels"),
            "--require-hashes",
            "-r",
            str(dest / "requirements-cu118-cp39-linux_x86_64.txt"),
            "--target",
            str(t),
            "--no-cache-dir",
            "--disable-pip-version-check",
        ],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert sorted(p.name for p in t.glob("*.dist-info")) == [
        "app-0.9.dist-info",
        "dep-1.2.dist-info",
    ]


# -- finding 3: an interrupted export, then another selection ---------------------------------
def test_interrupted_export_then_another_selection_leaves_nothing_behind(tmp_path: Path) -> None:
    cache = demo_cache(tmp_path)
    dest = tmp_path / "b"
    started: list[str] = []

    def interrupt_in_second_wheel(rel: str, done: int, total: int) -> None:
        if done == 0:
            started.append(rel)
        if len(started) == 2 and done > 0:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        export_bundle(
            cache, dest, select_wheels(cache, everything=True), progress=interrupt_in_second_wheel
        )
    assert (dest / started[0]).exists()  # the first wheel was finished
    res = invoke("export", str(dest), "other==3.0", "--cache-dir", str(cache.root))
    assert res.exit_code == 0, res.stderr
    assert wheels_in(dest) == {"other-3.0-py3-none-any.whl"}
    res = invoke("verify", str(dest))
    assert res.exit_code == 0, res.stdout
    assert verify_py(dest, tmp_path).returncode == 0


# -- finding 4: import reads each wheel once ---------------------------------------------------
_OPENED: list[str] | None = None


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if _OPENED is not None and event == "open" and isinstance(args[0], str | Path):
        _OPENED.append(str(args[0]))


sys.addaudithook(_audit)  # (hooks cannot be removed; it records only inside the test below)


def test_import_reads_each_wheel_of_the_bundle_once(tmp_path: Path) -> None:
    global _OPENED
    cache = demo_cache(tmp_path)
    bundle = tmp_path / "b"
    assert invoke("export", str(bundle), "app==1.0", "--cache-dir", str(cache.root)).exit_code == 0
    _OPENED = []
    try:
        res = invoke("import", str(bundle), "--cache-dir", str(tmp_path / "other"))
    finally:
        opened, _OPENED = _OPENED, None
    assert res.exit_code == 0 and "Imported 2 wheels" in res.stdout
    for name in (APP, DEP):
        assert opened.count(str(bundle / "wheels" / name)) == 1, opened


def test_a_refused_wheel_is_named_and_a_corrupt_copy_stops_at_the_copy(tmp_path: Path) -> None:
    cache = demo_cache(tmp_path)
    bundle = tmp_path / "b"
    assert invoke("export", str(bundle), "app==1.0", "--cache-dir", str(cache.root)).exit_code == 0
    wheel = bundle / "wheels" / APP
    data = bytearray(wheel.read_bytes())
    data[-1000] ^= 0x01  # same size: only the hash while copying can tell
    wheel.write_bytes(bytes(data))
    res = invoke("import", str(bundle), "--cache-dir", str(tmp_path / "other"))
    assert res.exit_code == 1 and f"REFUSED   CORRUPT   wheels/{APP}: sha256" in res.stdout
    # finding 8: no install command that would fail for want of the refused wheel
    assert "Install from the cache" not in res.stdout
    assert not list((tmp_path / "other" / "tmp-v1").iterdir())  # the temp copy is gone


# -- finding 6: a mirror's hash stays a mirror's hash ------------------------------------------
def test_import_keeps_where_the_hash_came_from(tmp_path: Path) -> None:
    cache = Cache(tmp_path / "cache")
    w = add_wheel(cache, build_wheel(tmp_path / "build", "dep", "1.2"), "dep", "1.2")
    row = cache.catalog.by_sha256(w.sha256)
    assert row is not None
    cache.catalog.add(dataclasses.replace(row, hash_origin="mirror"))
    bundle = tmp_path / "b"
    assert invoke("export", str(bundle), "--all", "--cache-dir", str(cache.root)).exit_code == 0
    other = tmp_path / "other"
    assert invoke("import", str(bundle), "--cache-dir", str(other)).exit_code == 0
    inv = json.loads(invoke("ls", "--json", "--cache-dir", str(other)).stdout)
    assert [w["hash_origin"] for w in inv["wheels"]] == ["mirror"]


# -- finding 8: the nits -----------------------------------------------------------------------
def test_verify_py_says_what_a_re_export_repairs(tmp_path: Path) -> None:
    cache = demo_cache(tmp_path)
    bundle = tmp_path / "b"
    assert invoke("export", str(bundle), "dep==1.2", "--cache-dir", str(cache.root)).exit_code == 0
    (bundle / "wheels" / "stray.whl").write_bytes(b"x")
    proc = verify_py(bundle, tmp_path)
    assert proc.returncode == 1
    assert "removes files an earlier export wrote" in proc.stderr
    assert "other extra files must be removed by hand" in proc.stderr


def test_delta_export_says_what_install_needs(tmp_path: Path) -> None:
    cache = demo_cache(tmp_path)
    inventory = tmp_path / "inventory.json"
    dep = next(r for r in cache.catalog.all() if r.filename == DEP)
    inventory.write_text(json.dumps({"wheels": [{"sha256": dep.sha256}]}))
    res = invoke(
        "export",
        str(tmp_path / "d"),
        "app==1.0",
        "--exclude-present",
        str(inventory),
        "--cache-dir",
        str(cache.root),
    )
    assert res.exit_code == 0, res.stderr
    assert "sh install.sh --find-links DIR" in res.stdout
    assert "DIR: a folder with the 1 wheel(s) left out" in res.stdout


def test_space_check_is_proportional_to_the_bundle(tmp_path: Path) -> None:
    cache = demo_cache(tmp_path)
    sel = select_wheels(cache, requirements=["dep==1.2"], target=HERE)
    res = export_bundle(cache, tmp_path / "b", sel, free_space=lambda p: 2 << 20)
    assert res.size < 100_000  # a small bundle fits in 2 MiB of free space
    with pytest.raises(BundleError, match=r"needs 1\.\d MB, 1\.0 MB are free"):
        export_bundle(cache, tmp_path / "c", sel, free_space=lambda p: 1_000_000)


def _vendoring_wheel(build: Path) -> Path:
    """A wheel whose first dist-info is a vendored one without the project's dependencies."""
    real = build_wheel(build / "real", "zapp", "1.0", requires_dist=["dep>=1"])
    out = build / real.name
    with zipfile.ZipFile(real) as src, zipfile.ZipFile(out, "w") as dst:
        dst.writestr(
            "aaa_vendored-0.1.dist-info/METADATA",
            "Metadata-Version: 2.1\nName: aaa-vendored\nVersion: 0.1\n",
        )
        for info in src.infolist():
            dst.writestr(info, src.read(info))
    return out


def test_export_reads_the_projects_own_metadata(tmp_path: Path) -> None:
    cache = demo_cache(tmp_path)
    wheel = _vendoring_wheel(tmp_path / "vend")
    add_wheel(cache, wheel, "zapp", "1.0")
    dest = tmp_path / "b"
    res = invoke("export", str(dest), "zapp==1.0", "--cache-dir", str(cache.root))
    assert res.exit_code == 0, res.stderr
    assert wheels_in(dest) == {wheel.name, DEP}


def test_a_missing_target_file_is_named(tmp_path: Path) -> None:
    cache = demo_cache(tmp_path)
    res = invoke(
        "export",
        str(tmp_path / "b"),
        "app==1.0",
        "--target",
        str(tmp_path / "target.json"),
        "--cache-dir",
        str(cache.root),
    )
    assert res.exit_code == 1 and "does not exist" in res.stderr
    # A UTF-16 file (PowerShell 5's `>`) is read by the same reader fetch uses.
    utf16 = tmp_path / "t16.json"
    utf16.write_text(probe_file(tmp_path).read_text(), encoding="utf-16")
    res = invoke(
        "export",
        str(tmp_path / "b"),
        "app==1.0",
        "--target",
        str(utf16),
        "--cache-dir",
        str(cache.root),
    )
    assert res.exit_code == 0, res.stderr


@pytest.mark.parametrize(
    "args",
    [("ls",), ("info",), ("verify",), ("export", "{tmp}/b", "--all"), ("rm", "app"), ("gc",)],
)
def test_commands_that_read_a_cache_refuse_one_that_is_not_there(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    missing = tmp_path / "typo"
    argv = [a.replace("{tmp}", str(tmp_path)) for a in args]
    res = invoke(*argv, "--cache-dir", str(missing))
    assert res.exit_code == 1, res.stdout + res.stderr
    assert res.stderr.strip() == (
        f"wheelcache: error: {missing} does not exist; check --cache-dir (or WHEELCACHE_CACHE_DIR)"
    )
    assert not missing.exists() and not (tmp_path / "b").exists()
    (tmp_path / "plain").mkdir()
    res = invoke(*argv, "--cache-dir", str(tmp_path / "plain"))
    assert res.exit_code == 1 and "is not a wheelcache cache" in res.stderr
    assert not list((tmp_path / "plain").iterdir())


def test_cache_paths_are_printed_resolved(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    demo_cache(tmp_path)
    monkeypatch.chdir(tmp_path)
    res = invoke("info", "--cache-dir", "cache")
    assert res.exit_code == 0, res.stderr
    assert f"Location:   {tmp_path.resolve() / 'cache'}" in res.stdout
    data = json.loads(invoke("ls", "--json", "--cache-dir", "cache").stdout)
    assert data["cache"] == str(tmp_path.resolve() / "cache")
