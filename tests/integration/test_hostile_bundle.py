"""Bundles that passed through other hands (issue 11): verify, import, export and index check
what they trust.

Each test prepares a stick the way an attacker would (links, FIFOs, a replaced wheel, a lying
manifest, a forged but consistent bundle) and runs the real ``verify.py`` and the real CLI.
The assertions: nothing outside the bundle or cache changed, nothing was imported, nothing
hangs, and the line the user gets names the file and what is wrong with it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from blake3 import blake3

from tests.integration.test_bundle import APP, DEP, demo_cache, isolated_env
from tests.support.hostile import Run, run_wheelcache, tree
from tests.support.wheels import build_wheel
from wheelcache.store.cache import Cache

FP_LINE = re.compile(r"^Bundle fingerprint: ([0-9a-f]{4}(?:-[0-9a-f]{4}){4})$", re.M)


def verify_py(bundle: Path, tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-I", "-S", str(bundle / "verify.py"), str(bundle), *args],
        env=isolated_env(tmp),
        capture_output=True,
        text=True,
        timeout=30,
    )


def wc(tmp: Path, *args: str, timeout: float = 60) -> Run:
    return run_wheelcache(*args, cwd=tmp, timeout=timeout)


@pytest.fixture
def exported(tmp_path: Path) -> tuple[Cache, Path, str]:
    """A real export of app==1.0 (app and dep) and the fingerprint it printed."""
    cache = demo_cache(tmp_path)
    bundle = tmp_path / "stick"
    run = wc(tmp_path, "export", str(bundle), "app==1.0", "--cache-dir", str(cache.root))
    assert run.returncode == 0, run.stderr
    m = FP_LINE.search(run.stdout)
    return cache, bundle, m.group(1) if m else "(export printed no fingerprint)"


def _digests(data: bytes) -> dict[str, Any]:
    return {
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "blake3": blake3(data).hexdigest(),
    }


def edit_manifest(bundle: Path, change: Callable[[dict[str, Any]], None]) -> None:
    data = json.loads((bundle / "manifest.json").read_bytes())
    change(data)
    (bundle / "manifest.json").write_text(json.dumps(data, indent=1))


def set_entry(bundle: Path, rel: str, **fields: Any) -> None:
    def change(data: dict[str, Any]) -> None:
        items = [i for i in data["files"] if i["path"] == rel]
        if not items:
            items = [{"path": rel, "kind": "wheel"}]
            data["files"].append(items[0])
        items[0].update(fields)

    edit_manifest(bundle, change)


def replace_wheel(bundle: Path, tmp: Path, *, requirements: bool) -> bytes:
    """Put another dep-1.2 wheel on the stick and update its manifest entry (and, with
    *requirements*, requirements.txt and its entry too: a forged, consistent bundle)."""
    evil = build_wheel(tmp / "evil", "dep", "1.2", payload_size=4321).read_bytes()
    old = (bundle / "wheels" / DEP).read_bytes()
    (bundle / "wheels" / DEP).write_bytes(evil)
    set_entry(bundle, f"wheels/{DEP}", **_digests(evil))
    if requirements:  # and the PEP 751 locks, which pin the same hashes
        for pinned in [bundle / "requirements.txt", *bundle.glob("pylock.*.toml")]:
            text = pinned.read_text()
            text = text.replace(hashlib.sha256(old).hexdigest(), hashlib.sha256(evil).hexdigest())
            text = text.replace(f"size = {len(old)}\n", f"size = {len(evil)}\n")
            pinned.write_text(text)
            set_entry(bundle, pinned.name, **_digests(text.encode()))
    return evil


def catalog(cache: Path) -> list[tuple[str, str, str]]:
    if not (cache / "catalog-v1.sqlite").exists():
        return []
    with sqlite3.connect(cache / "catalog-v1.sqlite") as db:
        return db.execute("SELECT filename, project, version FROM wheels ORDER BY 1").fetchall()


# -- links, FIFOs, devices ---------------------------------------------------------------------
def test_a_linked_wheel_is_refused_by_both_verifiers_and_import(
    exported: tuple[Cache, Path, str], tmp_path: Path
) -> None:
    _, bundle, _ = exported
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"a file of this machine that must never be published\n")
    link = "wheels/secret-1.0-py3-none-any.whl"
    os.symlink(secret, bundle / link)
    set_entry(bundle, link, **_digests(secret.read_bytes()))  # a consistent manifest
    proc = verify_py(bundle, tmp_path)
    assert proc.returncode == 1
    assert f"UNSAFE    {link}: " in proc.stdout and "symbolic link" in proc.stdout
    run = wc(tmp_path, "verify", str(bundle))
    assert run.returncode == 1 and f"UNSAFE    {link}:" in run.stdout
    other = tmp_path / "other"
    run = wc(tmp_path, "import", str(bundle), "--cache-dir", str(other))
    assert run.returncode == 1
    assert f"REFUSED   UNSAFE    {link}:" in run.stdout
    assert [r[0] for r in catalog(other)] == [APP, DEP]


@pytest.mark.parametrize("kind", ["fifo", "dev-zero"])
def test_a_fifo_or_dev_zero_named_like_a_wheel_neither_hangs_nor_fills_the_disk(
    exported: tuple[Cache, Path, str], tmp_path: Path, kind: str
) -> None:
    _, bundle, _ = exported
    rel = "wheels/endless-1.0-py3-none-any.whl"
    if kind == "fifo":
        os.mkfifo(bundle / rel)
    else:
        os.symlink("/dev/zero", bundle / rel)
    set_entry(bundle, rel, **_digests(b""))  # what stat says of both: 0 bytes
    proc = verify_py(bundle, tmp_path)  # a hang is a TimeoutExpired after 30 s
    assert proc.returncode == 1 and f"UNSAFE    {rel}: " in proc.stdout
    run = wc(tmp_path, "verify", str(bundle), timeout=30)
    assert run.returncode == 1 and f"UNSAFE    {rel}:" in run.stdout
    other = tmp_path / "other"
    run = wc(tmp_path, "import", str(bundle), "--cache-dir", str(other), timeout=30)
    assert run.returncode == 1 and f"REFUSED   UNSAFE    {rel}:" in run.stdout
    assert run.seconds < 20 and run.peak_mib < 150
    assert sum(p.stat().st_size for p in other.rglob("*") if p.is_file()) < 5 << 20


def test_a_manifest_sha256_that_is_a_path_touches_nothing_outside(
    exported: tuple[Cache, Path, str], tmp_path: Path
) -> None:
    _, bundle, _ = exported
    (tmp_path / "outside").mkdir()
    set_entry(bundle, f"wheels/{DEP}", sha256=("../../outside/" + "x" * 64)[:64])
    before = tree(tmp_path, skip=[tmp_path / "other"])
    run = wc(tmp_path, "import", str(bundle), "--cache-dir", str(tmp_path / "other"))
    assert run.returncode == 1
    assert run.lines == [
        f"wheelcache: error: the manifest entry for wheels/{DEP} has a digest that is not 64 hex"
    ]
    assert tree(tmp_path, skip=[tmp_path / "other"]) == before
    assert catalog(tmp_path / "other") == []


# -- what the manifest says ----------------------------------------------------------------------
def test_a_wheel_replaced_with_its_manifest_entry_but_not_requirements_is_caught(
    exported: tuple[Cache, Path, str], tmp_path: Path
) -> None:
    _, bundle, _ = exported
    replace_wheel(bundle, tmp_path, requirements=False)
    said = re.compile(
        r"requirements\.txt: line \d+ pins dep to sha256 [0-9a-f]{64}, which no wheel"
    )
    proc = verify_py(bundle, tmp_path)
    assert proc.returncode == 1 and said.search(proc.stdout), proc.stdout
    run = wc(tmp_path, "verify", str(bundle))
    assert run.returncode == 1 and said.search(run.stdout), run.stdout
    other = tmp_path / "other"
    run = wc(tmp_path, "import", str(bundle), "--cache-dir", str(other))
    assert run.returncode == 1
    assert len(run.lines) == 1 and run.lines[0].endswith(
        "the bundle was changed after it was exported: nothing imported"
    )
    assert catalog(other) == []


def test_a_requirements_option_line_is_refused(
    exported: tuple[Cache, Path, str], tmp_path: Path
) -> None:
    _, bundle, _ = exported
    reqs = (bundle / "requirements.txt").read_text() + "--find-links https://elsewhere.invalid/\n"
    (bundle / "requirements.txt").write_text(reqs)
    set_entry(bundle, "requirements.txt", **_digests(reqs.encode()))
    proc = verify_py(bundle, tmp_path)
    assert proc.returncode == 1
    assert "is a pip option pip would follow: '--find-links https://elsewhere.invalid/'" in (
        proc.stdout
    )


@pytest.mark.parametrize(
    ("change", "said"),
    [
        (lambda t: t.replace('path = "wheels/', 'path = "../../elsewhere/'), "leaves wheels/"),
        (lambda t: re.sub(r'sha256 = "[0-9a-f]{64}"', 'sha256 = "' + "ab" * 32 + '"', t, count=1),
         "which no wheel of the manifest has"),
        (lambda t: t + '\n[packages.sdist]\nurl = "https://elsewhere.invalid/x.tar.gz"\n',
         "names a source that is not a wheel"),
    ],
)  # fmt: skip
def test_a_pep751_lock_of_the_bundle_is_checked_against_the_manifest(
    exported: tuple[Cache, Path, str], tmp_path: Path, change: Any, said: str
) -> None:
    _, bundle, _ = exported
    (lock,) = bundle.glob("pylock.*.toml")
    text = change(lock.read_text())
    lock.write_text(text)
    set_entry(bundle, lock.name, **_digests(text.encode()))
    proc = verify_py(bundle, tmp_path)
    assert proc.returncode == 1 and f"CORRUPT   {lock.name}: " in proc.stdout
    assert said in proc.stdout, proc.stdout
    run = wc(tmp_path, "import", str(bundle), "--cache-dir", str(tmp_path / "other"))
    assert run.returncode == 1 and "nothing imported" in run.lines[-1]


def test_project_and_version_come_from_the_filename_not_the_manifest(
    exported: tuple[Cache, Path, str], tmp_path: Path
) -> None:
    _, bundle, _ = exported
    set_entry(bundle, f"wheels/{DEP}", project="torch", version="1.2\n--find-links /elsewhere")
    other = tmp_path / "other"
    run = wc(tmp_path, "import", str(bundle), "--cache-dir", str(other))
    assert run.returncode == 0, run.stderr
    assert catalog(other) == [(APP, "app", "1.0"), (DEP, "dep", "1.2")]
    again = tmp_path / "again"
    run = wc(tmp_path, "export", str(again), "--all", "--cache-dir", str(other))
    assert run.returncode == 0, run.stderr
    pins = [line for line in (again / "requirements.txt").read_text().splitlines() if "==" in line]
    assert pins == ["app==1.0 \\", "dep==1.2 \\"]


# -- the fingerprint ---------------------------------------------------------------------------
def test_export_prints_the_fingerprint_and_every_verifier_checks_it(
    exported: tuple[Cache, Path, str], tmp_path: Path
) -> None:
    _, bundle, fp = exported
    manifest_sha = hashlib.sha256((bundle / "manifest.json").read_bytes()).hexdigest()
    assert fp.replace("-", "") == manifest_sha[:20]
    proc = verify_py(bundle, tmp_path, "--expect", fp)
    assert proc.returncode == 0 and f"Bundle fingerprint: {fp} (matches --expect)" in proc.stdout
    assert wc(tmp_path, "verify", str(bundle), "--expect", fp.upper()).returncode == 0
    run = wc(tmp_path, "import", str(bundle), "--expect", manifest_sha, "--cache-dir", "o")
    assert run.returncode == 0, run.stderr
    assert "--expect FINGERPRINT" in (bundle / "README.txt").read_text()


def test_a_forged_consistent_bundle_passes_the_checks_but_not_the_fingerprint(
    exported: tuple[Cache, Path, str], tmp_path: Path
) -> None:
    _, bundle, fp = exported
    replace_wheel(bundle, tmp_path, requirements=True)
    assert verify_py(bundle, tmp_path).returncode == 0  # consistent: only the anchor can tell
    proc = verify_py(bundle, tmp_path, "--expect", fp)
    assert proc.returncode == 1 and proc.stdout == ""
    (line,) = proc.stderr.splitlines()
    assert f"not {fp}: this is not the bundle that was exported" in line
    run = wc(tmp_path, "verify", str(bundle), "--expect", fp)
    assert run.returncode == 1 and len(run.lines) == 1 and f"not {fp}" in run.lines[0]
    other = tmp_path / "other"
    run = wc(tmp_path, "import", str(bundle), "--expect", fp, "--cache-dir", str(other))
    assert run.returncode == 1 and len(run.lines) == 1 and f"not {fp}" in run.lines[0]
    assert catalog(other) == []


def test_expect_needs_the_whole_printed_fingerprint(
    exported: tuple[Cache, Path, str], tmp_path: Path
) -> None:
    _, bundle, fp = exported
    proc = verify_py(bundle, tmp_path, "--expect", fp[:9])
    assert proc.returncode == 2 and "20 hex digits or more" in proc.stderr


# -- writing into a prepared folder ------------------------------------------------------------
def test_re_export_into_a_folder_whose_wheels_is_a_link_changes_nothing_outside(
    exported: tuple[Cache, Path, str], tmp_path: Path
) -> None:
    cache, bundle, _ = exported
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "victim.txt").write_text("keep me\n")
    for p in (bundle / "wheels").iterdir():
        p.unlink()
    (bundle / "wheels").rmdir()
    os.symlink(elsewhere, bundle / "wheels")
    set_entry(bundle, "wheels/victim.txt", **_digests(b"stale\n"))  # "stale": delete it
    before = tree(elsewhere)
    run = wc(tmp_path, "export", str(bundle), "app==1.0", "--cache-dir", str(cache.root))
    assert run.returncode == 1
    assert run.lines == [
        f"wheelcache: error: {bundle / 'wheels'} is a symbolic link; a bundle folder holds plain "
        "files and folders only (a link would carry the export out of it): remove it, or "
        "choose an empty folder; nothing was written"
    ]
    assert tree(elsewhere) == before


def test_index_into_a_folder_whose_wheels_is_a_link_changes_nothing_outside(
    tmp_path: Path,
) -> None:
    cache = demo_cache(tmp_path)
    out = tmp_path / "out"
    assert wc(tmp_path, "index", str(out), "--cache-dir", str(cache.root)).returncode == 0
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "victim.txt").write_text("keep me\n")
    for p in (out / "wheels").iterdir():
        p.unlink()
    (out / "wheels").rmdir()
    os.symlink(elsewhere, out / "wheels")
    index = json.loads((out / "wheelcache-index.json").read_text())
    index["files"].append("wheels/victim.txt")
    (out / "wheelcache-index.json").write_text(json.dumps(index))
    before = tree(elsewhere)
    run = wc(tmp_path, "index", str(out), "--project", "app", "--cache-dir", str(cache.root))
    assert run.returncode == 1
    assert len(run.lines) == 1 and "is a symbolic link" in run.lines[0]
    assert tree(elsewhere) == before
