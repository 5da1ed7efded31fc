"""The pure parts of bundles: filesystem detection, text files, manifest checks, verify.py."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from wheelcache.bundle.disk import (
    FAT32_MAX_FILE,
    check_room,
    filesystem_type,
    fs_type_from_mount_output,
    fs_type_from_mountinfo,
    is_fat,
    space_needed,
)
from wheelcache.bundle.select import target_of_description
from wheelcache.bundle.texts import (
    human_size,
    render_install_bat,
    render_install_ps1,
    render_install_sh,
    render_readme,
    render_requirements,
    requirements_name,
)
from wheelcache.bundle.verify_script import (
    FORMAT,
    INCOMPLETE_MARKER,
    REPAIR,
    ManifestError,
    Problem,
    check_bundle,
    format_problem,
    load_manifest,
    main,
    manifest_entries,
)
from wheelcache.core.models import Blake3, Sha256
from wheelcache.errors import BundleError
from wheelcache.store.catalog import CatalogRow

MOUNTINFO = """\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
23 22 0:21 / /proc rw,nosuid - proc proc rw
40 22 8:17 / /media/me/USB\\040STICK rw,nosuid shared:7 - vfat /dev/sdb1 rw,fmask=0022
41 22 8:33 / /media/me/EXFAT rw,nosuid - exfat /dev/sdc1 rw
42 22 8:49 / /media/me/USB rw - ext4 /dev/sdd1 rw
43 42 8:50 / /media/me/USB rw - vfat /dev/sdd2 rw
"""


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/media/me/USB STICK/bundle", "vfat"),
        ("/media/me/USB STICK", "vfat"),
        ("/media/me/USB STICKER", "ext4"),  # a prefix of the text is not a parent folder
        ("/media/me/EXFAT/b", "exfat"),
        ("/media/me/USB/b", "vfat"),  # the later mount over the same point wins
        ("/home/me", "ext4"),
        ("/proc/self", "proc"),
    ],
)
def test_fs_type_from_mountinfo(path: str, expected: str) -> None:
    assert fs_type_from_mountinfo(MOUNTINFO, path) == expected


def test_fs_type_from_macos_mount_output() -> None:
    out = (
        "/dev/disk3s1s1 on / (apfs, sealed, local, read-only, journaled)\n"
        "devfs on /dev (devfs, local, nobrowse)\n"
        "/dev/disk4s1 on /Volumes/NO NAME (msdos, local, nodev, nosuid, noowners)\n"
        "/dev/disk5s1 on /Volumes/Big (exfat, local, nodev, nosuid, noowners)\n"
    )
    assert fs_type_from_mount_output(out, "/Volumes/NO NAME/bundle") == "msdos"
    assert fs_type_from_mount_output(out, "/Volumes/Big") == "exfat"
    assert fs_type_from_mount_output(out, "/Users/me") == "apfs"


@pytest.mark.parametrize(
    ("name", "fat"),
    [
        ("vfat", True),
        ("msdos", True),
        ("FAT32", True),
        ("FAT", True),
        ("exfat", False),
        ("exFAT", False),
        ("NTFS", False),
        ("ext4", False),
        (None, False),
    ],
)
def test_is_fat(name: str | None, fat: bool) -> None:
    assert is_fat(name) is fat


def test_filesystem_type_of_this_machine_is_known_for_a_path_that_does_not_exist_yet(
    tmp_path: Path,
) -> None:
    here = filesystem_type(tmp_path)
    assert here is not None and not is_fat(here)
    assert filesystem_type(tmp_path / "not" / "yet") == here
    assert FAT32_MAX_FILE == 4 * 2**30 - 1


def _row(project: str, version: str, filename: str, sha: str) -> CatalogRow:
    return CatalogRow(
        Sha256(sha * 64),
        Blake3("b" * 64),
        filename,
        project,
        version,
        10,
        "http://origin.invalid/x",
        "index",
        0.0,
        0.0,
    )


def test_requirements_one_line_per_project_all_files_of_the_newest_version() -> None:
    rows = [
        _row("torch", "2.4.0+cu118", "torch-2.4.0+cu118-cp39-cp39-win_amd64.whl", "1"),
        _row("torch", "2.4.0+cu118", "torch-2.4.0+cu118-cp39-cp39-linux_x86_64.whl", "2"),
        _row("Jinja2", "3.1.4", "jinja2-3.1.4-py3-none-any.whl", "3"),
        _row("jinja2", "3.0.0", "jinja2-3.0.0-py3-none-any.whl", "4"),
    ]
    text = render_requirements(rows)
    assert text.splitlines()[2:] == [
        "# jinja2 3.0.0: in wheels/ too, not pinned here",
        "jinja2==3.1.4 \\",
        f"    --hash=sha256:{'3' * 64}",
        "torch==2.4.0+cu118 \\",
        f"    --hash=sha256:{'1' * 64} \\",
        f"    --hash=sha256:{'2' * 64}",
    ]


def test_install_scripts_use_pip_alone_and_pass_extra_arguments() -> None:
    sh = render_install_sh("3.9")
    assert sh.startswith("#!/bin/sh\n") and "\r" not in sh
    assert (
        '-m pip install \\\n  --no-index --find-links "$here/wheels" --require-hashes -r '
        '"$here/requirements.txt" "$@"'
    ) in sh
    assert "for candidate in python3.9 python3 python" in sh
    bat = render_install_bat("3.9")
    assert bat.count("\r\n") == bat.count("\n")  # CRLF everywhere
    assert (
        '"%PY%" %PYARGS% -m pip install --no-index --find-links "%HERE%wheels" '
        '--require-hashes -r "%HERE%requirements.txt" %*'
    ) in bat
    assert 'set "PYARGS=-3.9"' in bat and "exit /b %ERRORLEVEL%" in bat
    ps1 = render_install_ps1(None)
    assert ps1.count("\r\n") == ps1.count("\n")
    assert (
        "& $py @pyArgs -m pip install --no-index --find-links (Join-Path $here 'wheels') "
        "--require-hashes -r (Join-Path $here 'requirements.txt') @args"
    ) in ps1
    assert "$pyArgs = @('-3')" in ps1 and "exit $LASTEXITCODE" in ps1
    for script in (sh, bat, ps1):
        assert "--index-url" not in script and "http" not in script


def test_windows_scripts_prefer_an_activated_environment_then_probe_the_launcher() -> None:
    bat = render_install_bat("3.9")
    block = [ln.strip() for ln in bat.split("\r\n")]
    i = block.index("if not defined PY (")
    assert block[i + 1 : i + 8] == [
        "if defined VIRTUAL_ENV (",
        'set "PY=python"',
        ") else if defined CONDA_PREFIX (",
        'set "PY=python"',
        ") else (",
        'py -3.9 -c pass >nul 2>nul && (set "PY=py" & set "PYARGS=-3.9") || set "PY=python"',
        ")",
    ]
    assert "where py" not in bat  # the launcher alone proves nothing about -3.9
    ps1 = render_install_ps1("3.9")
    assert "elseif ($env:VIRTUAL_ENV -or $env:CONDA_PREFIX) { $py = 'python' }" in ps1
    assert (
        "  try { & py -3.9 -c pass 2>$null | Out-Null; $found = ($LASTEXITCODE -eq 0) }"
        in ps1.split("\r\n")
    )
    assert "  if ($found) { $py = 'py'; $pyArgs = @('-3.9') }" in ps1.split("\r\n")
    # `-c ""` would reach python as a bare -c under Windows PowerShell, which drops "".
    assert '-c ""' not in ps1 and '-c ""' not in bat
    sh = render_install_sh("3.9")
    assert 'if [ -z "${PYTHON:-}" ] && [ -n "${VIRTUAL_ENV:-}${CONDA_PREFIX:-}" ]; then' in sh


def test_requirements_per_target_and_the_readme_for_several_targets() -> None:
    assert requirements_name("cp39-win_amd64 (cu118)") == "requirements-cu118-cp39-win_amd64.txt"
    assert requirements_name("cp313t-linux_aarch64 (rocm6.1)") == (
        "requirements-rocm6.1-cp313t-linux_aarch64.txt"
    )
    row = _row("a", "1", "a-1-py3-none-any.whl", "1")
    text = render_readme(
        targets=["t1", "t2"],
        requested=[],
        carried=[row],
        left_out=[],
        per_target=[("t1", "requirements-t1.txt"), ("t2", "requirements-t2.txt")],
        unlisted=1,
    )
    assert "     t1: requirements-t1.txt\r\n     t2: requirements-t2.txt" in text
    assert "install.bat" not in text and "1 wheel(s) in wheels/ were recorded for no" in text
    assert "-r requirements-t1.txt" in render_requirements([row], "requirements-t1.txt")


def test_space_is_reserved_by_cluster_not_by_a_fixed_overhead(tmp_path: Path) -> None:
    assert space_needed([1]) == 4096 + 2**20
    assert space_needed([4096, 4097]) == 4096 * 3 + 2**20
    files = [(f"wheels/w{i}.whl", 3000) for i in range(17)]  # a 51 KB bundle
    check_room(tmp_path, files, "ext4", lambda p: 2**20 + 17 * 4096)
    with pytest.raises(BundleError, match="needs 1.1 MB, 1.1 MB are free"):
        check_room(tmp_path, files, "ext4", lambda p: 2**20 + 17 * 4096 - 1)
    check_room(tmp_path, files, "ext4", lambda p: 2**20, present={rel for rel, _ in files})


def test_readme_names_the_steps_and_a_delta() -> None:
    row = _row("a", "1", "a-1-py3-none-any.whl", "1")
    text = render_readme(
        targets=["cp39-win_amd64 (cu118)"], requested=["a==1"], carried=[row], left_out=[row]
    )
    assert "python verify.py" in text and "install.bat" in text and "sh install.sh" in text
    assert "For:   cp39-win_amd64 (cu118)" in text and "delta bundle: 1 wheel(s)" in text
    assert text.endswith("\r\n")
    assert human_size(2_500_000_000) == "2.5 GB"


def test_target_rebuilt_from_its_description() -> None:
    t = target_of_description("cp39-win_amd64 (cu118)")
    assert t is not None and t.describe() == "cp39-win_amd64 (cu118)"
    assert target_of_description("nonsense") is None
    assert target_of_description("cp39-nowhere_x (cpu)") is None


# -- verify.py on a hand-made bundle ---------------------------------------------------------
def _bundle(root: Path, files: dict[str, bytes]) -> None:
    entries = []
    for rel, data in files.items():
        p = root.joinpath(*rel.split("/"))
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        entries.append(
            {
                "path": rel,
                "size": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
                "blake3": "",
            }
        )
    manifest = {"format": FORMAT, "version": 1, "files": entries}
    (root / "manifest.json").write_text(json.dumps(manifest))


FILES = {
    "wheels/a-1-py3-none-any.whl": b"A" * 1000,
    "wheels/b-1-py3-none-any.whl": b"B" * 10,
    "requirements.txt": b"a==1\n",
}


def test_check_bundle_names_every_kind_of_damage(tmp_path: Path) -> None:
    _bundle(tmp_path, FILES)
    assert check_bundle(str(tmp_path)).ok
    a = tmp_path / "wheels" / "a-1-py3-none-any.whl"
    b = tmp_path / "wheels" / "b-1-py3-none-any.whl"
    data = bytearray(a.read_bytes())
    data[500] ^= 0x01
    a.write_bytes(bytes(data))
    b.write_bytes(b"B" * 4)
    (tmp_path / "requirements.txt").unlink()
    (tmp_path / "wheels" / "stray.whl").write_bytes(b"x")
    (tmp_path / "System Volume Information").mkdir()  # the OS's, never "extra"
    (tmp_path / "System Volume Information" / "IndexerVolumeGuid").write_bytes(b"x")
    (tmp_path / "._README.txt").write_bytes(b"x")
    report = check_bundle(str(tmp_path))
    kinds = {(p.kind, p.path) for p in report.problems}
    assert kinds == {
        ("corrupt", "wheels/a-1-py3-none-any.whl"),
        ("truncated", "wheels/b-1-py3-none-any.whl"),
        ("missing", "requirements.txt"),
        ("extra", "wheels/stray.whl"),
    }
    assert format_problem(Problem("truncated", "x", "4 of 10 bytes")) == (
        "TRUNCATED x: 4 of 10 bytes"
    )


def test_main_exit_codes_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _bundle(tmp_path, FILES)
    assert main([str(tmp_path)]) == 0
    assert "OK: all 3 files" in capsys.readouterr().out
    (tmp_path / "wheels" / "b-1-py3-none-any.whl").unlink()
    assert main([str(tmp_path)]) == 1
    assert REPAIR in capsys.readouterr().err
    assert main([str(tmp_path), "--json"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] is False and out["checked"] == ["size", "sha256"]
    assert out["problems"] == [
        {
            "kind": "missing",
            "path": "wheels/b-1-py3-none-any.whl",
            "detail": "listed in the manifest, not on the disk",
        }
    ]


@pytest.mark.parametrize("bad", ["../evil", "/etc/passwd", "a/../../b", "C:/x", "a\\b", ""])
def test_manifest_paths_cannot_leave_the_bundle(bad: str) -> None:
    manifest = {
        "format": FORMAT,
        "version": 1,
        "files": [{"path": bad, "size": 1, "sha256": "0" * 64}],
    }
    with pytest.raises(ManifestError, match="bad path"):
        manifest_entries(manifest)


def test_manifest_errors_say_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="holds no manifest.json"):
        load_manifest(str(tmp_path))
    (tmp_path / INCOMPLETE_MARKER).write_text("{}")
    with pytest.raises(ManifestError, match="interrupted; run the same wheelcache export again"):
        load_manifest(str(tmp_path))
    (tmp_path / "manifest.json").write_text(json.dumps({"format": FORMAT, "version": 99}))
    with pytest.raises(ManifestError, match="format version 99"):
        load_manifest(str(tmp_path))
    (tmp_path / "manifest.json").write_text("[1]")
    with pytest.raises(ManifestError, match="not a wheelcache bundle manifest"):
        load_manifest(str(tmp_path))
    assert os.path.basename(str(tmp_path))  # a real folder was used throughout


@pytest.mark.parametrize(
    "module", ["bundle.disk", "bundle.select", "bundle.texts", "store.maintenance", "store.gc"]
)
def test_doctests(module: str) -> None:
    import doctest
    import importlib

    assert doctest.testmod(importlib.import_module(f"wheelcache.{module}")).failed == 0
