"""``wheelcache fetch`` end to end against the PyTorch-style index served on 127.0.0.1."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from blake3 import blake3
from click.testing import CliRunner, Result

from tests.support.fetchcli import fetch_json
from tests.support.torchindex import (
    CUDA_DEPS,
    WIN_CU118_PY39,
    TorchIndex,
    newest_complete_release,
)
from wheelcache.cli.main import main
from wheelcache.net.transfer import TransferSettings


def run(ti: TorchIndex, cache: Path, *args: str, json_out: bool = True) -> Result:
    argv = [
        "fetch",
        "--torch-index",
        ti.torch_index_url,
        "--index-url",
        ti.deps_index_url,
        "--cache-dir",
        str(cache),
        *args,
    ]
    if json_out:
        argv.append("--json")
    return CliRunner().invoke(main, argv, catch_exceptions=False)


def ok_json(result: Result) -> dict[str, Any]:
    assert result.exit_code == 0, result.stderr
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def names(data: dict[str, Any]) -> set[str]:
    return {f["filename"] for f in data["files"]}


def whl_gets(ti: TorchIndex) -> list[str]:
    """Full (non-range) GETs of wheel files on any origin."""
    return [
        r.path
        for srv in ti.servers
        for r in srv.requests
        if r.method == "GET" and r.path.endswith(".whl") and not r.range
    ]


def test_windows_cu118_py39_closure_is_verified_and_install_commands_printed(
    torch_index: TorchIndex, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    data = ok_json(
        run(
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
    )
    assert names(data) == WIN_CU118_PY39
    for f in data["files"]:
        body = Path(f["path"]).read_bytes()
        assert Path(f["path"]).name == f["filename"]
        assert hashlib.sha256(body).hexdigest() == f["sha256"] == torch_index.sha256(f["filename"])
        assert blake3(body).hexdigest() == f["blake3"]
        assert (cache / "blobs-v1" / f["blake3"][:2] / f["blake3"][2:4] / f["blake3"]).is_file()
        assert f["source"] == "network" and f["size"] == len(body)
    assert data["requested"] == [
        "torch==2.4.0+cu118",
        "torchvision==0.19.0+cu118",
        "torchaudio==2.4.0+cu118",
    ]
    req = Path(data["requirements_file"]).read_text()
    for f in data["files"]:
        assert f"--hash=sha256:{f['sha256']}" in req
    assert data["install"]["find_links"][-3:] == data["requested"]
    # The torch-family wheels came from the CDN origin, the rest from the deps origin.
    assert torch_index.cdn.count("torch-2.4.0+cu118-cp39-cp39-win_amd64.whl", method="GET")
    assert not torch_index.index.count(".whl")

    human = run(
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
        json_out=False,
    )
    assert human.exit_code == 0, human.stderr
    assert "dropping" not in human.stderr  # the CDN fallback waits until the CDN fails
    out = human.stdout
    assert "pip install --no-index " in out and "torch-2.4.0+cu118-cp39-cp39-win_amd64.whl" in out
    assert (
        "--find-links "
        + str(cache / "wheels-v1")
        + " torch==2.4.0+cu118 torchvision==0.19.0+cu118 torchaudio==2.4.0+cu118"
    ) in out
    assert "13 already in the cache" in out


def test_linux_cu118_includes_nvidia_and_triton(torch_index: TorchIndex, tmp_path: Path) -> None:
    data = ok_json(
        run(
            torch_index,
            tmp_path / "c",
            "--cuda",
            "11.8",
            "--py",
            "3.9",
            "--platform",
            "linux_x86_64",
            "--torch",
            "2.4.0",
            "--dry-run",
        )
    )
    projects = {f["project"]: f["version"] for f in data["files"]}
    for pin in CUDA_DEPS[("2.4.0", "cu118")]:
        name, version = pin.split("==")
        assert projects[name] == version, pin
    assert projects["triton"] == "3.0.0"
    triton = next(f for f in data["files"] if f["project"] == "triton")
    assert triton["filename"].startswith("triton-3.0.0-1-cp39-cp39-")  # build tag kept
    assert projects["torch"] == "2.4.0+cu118"
    assert {f["source"] for f in data["files"]} == {"planned"}
    assert whl_gets(torch_index) == []  # dry run: nothing downloaded
    sizes = [f["size"] for f in data["files"]]
    assert all(isinstance(s, int) and s > 0 for s in sizes)


@pytest.mark.parametrize("py", ["39", "310"])
def test_newest_complete_set_without_torch_pin(
    torch_index: TorchIndex, tmp_path: Path, py: str
) -> None:
    data = ok_json(
        run(
            torch_index,
            tmp_path / "c",
            "--cuda",
            "118",
            "--py",
            py,
            "--platform",
            "win_amd64",
            "--dry-run",
        )
    )
    expected = newest_complete_release("cu118", f"cp{py}", "win_amd64")
    assert expected is not None
    got = {f["project"]: f["version"] for f in data["files"]}
    assert got["torch"] == f"{expected}+cu118"
    assert got["torchaudio"].startswith(expected)
    if py == "39":
        assert (got["networkx"], got["numpy"]) == ("3.2.1", "2.0.2")  # newest for 3.9
    else:
        assert got["numpy"] == "2.1.1"


def test_metadata_by_range_reads_when_no_pep658(torch_index: TorchIndex, tmp_path: Path) -> None:
    # torch 2.3.1 files have no .metadata; neither has triton (1 MiB) nor pillow.
    data = ok_json(
        run(
            torch_index,
            tmp_path / "c",
            "--cuda",
            "118",
            "--py",
            "39",
            "--platform",
            "linux_x86_64",
            "--torch",
            "2.3.1",
            "--dry-run",
        )
    )
    assert "torch-2.3.1+cu118-cp39-cp39-linux_x86_64.whl" in names(data)
    ranged = [r for r in torch_index.cdn.requests if r.path.endswith(".whl") and r.method == "GET"]
    assert ranged and all(r.range for r in ranged)
    assert whl_gets(torch_index) == []
    triton_reads = [
        r
        for r in torch_index.deps.requests
        if r.path.endswith(".whl") and "triton" in r.path and r.method == "GET"
    ]
    assert triton_reads and all(r.range for r in triton_reads)
    assert sum(r.body_bytes for r in triton_reads) < 200_000  # not the 1 MiB wheel


def test_server_without_ranges_costs_one_whole_download_that_is_kept(
    torch_index: TorchIndex, tmp_path: Path
) -> None:
    fn = "pillow-10.4.0-cp39-cp39-win_amd64.whl"
    torch_index.deps.fault(torch_index.url(fn), no_ranges=True, times=None)
    cache = tmp_path / "c"
    dry = ok_json(
        run(
            torch_index,
            cache,
            "--cpu",
            "--py",
            "39",
            "--platform",
            "win_amd64",
            "pillow",
            "--dry-run",
        )
    )
    pillow = next(f for f in dry["files"] if f["filename"] == fn)
    assert pillow["source"] == "cache" and Path(pillow["path"]).is_file()
    torch_index.clear()
    again = ok_json(
        run(torch_index, cache, "--cpu", "--py", "39", "--platform", "win_amd64", "pillow")
    )
    assert [f["source"] for f in again["files"]] == ["cache"]
    assert whl_gets(torch_index) == []


def test_dropped_connection_is_resumed(torch_index: TorchIndex, tmp_path: Path) -> None:
    fn = "torch-2.4.0+cu118-cp39-cp39-win_amd64.whl"
    size = torch_index.file_path(fn).stat().st_size
    cut = 500_000  # inside the first (probe) request
    torch_index.cdn.fault(torch_index.url(fn), drop_after=cut, times=1)
    data = ok_json(
        run(
            torch_index,
            tmp_path / "c",
            "--cuda",
            "118",
            "--py",
            "39",
            "--platform",
            "win_amd64",
            "--torch",
            "2.4.0",
            "--no-deps",
            "torch",
        )
    )
    (f,) = data["files"]
    assert f["sha256"] == torch_index.sha256(fn)
    gets = [r for r in torch_index.cdn.requests if r.path.endswith(fn) and r.method == "GET"]
    probe = TransferSettings().probe_size
    assert [r.range for r in gets] == [f"bytes=0-{probe - 1}", f"bytes={cut}-{size - 1}"]
    assert gets[1].headers.get("if-range")
    fetched = sum(r.body_bytes for r in gets)
    assert size <= fetched <= size * 1.01
    assert data["downloaded_bytes"] == size


def test_corrupt_file_is_rejected_and_nothing_enters_the_cache(
    torch_index: TorchIndex, tmp_path: Path
) -> None:
    fn = "filelock-3.16.1-py3-none-any.whl"
    torch_index.deps.fault(torch_index.url(fn), corrupt=True, times=None)
    cache = tmp_path / "c"
    result = run(torch_index, cache, "--cpu", "--py", "39", "--platform", "win_amd64", "filelock")
    assert result.exit_code == 1
    err = result.stderr.strip().splitlines()
    assert len(err) == 1, result.stderr
    assert f"hash mismatch for {fn}" in err[0]
    assert f"expected sha256 {torch_index.sha256(fn)}, got " in err[0]
    assert not (cache / "wheels-v1" / fn).exists()
    assert [p for p in (cache / "blobs-v1").rglob("*") if p.is_file()] == []
    assert list((cache / "partial-v1").iterdir()) == []


def test_second_run_downloads_nothing_and_revalidates_pages(
    torch_index: TorchIndex, tmp_path: Path
) -> None:
    cache = tmp_path / "c"
    args = ("--cuda", "118", "--py", "39", "--platform", "win_amd64", "--torch", "2.4.0")
    first = ok_json(run(torch_index, cache, *args))
    torch_index.clear()
    second = ok_json(run(torch_index, cache, *args))
    assert {f["source"] for f in second["files"]} == {"cache"}
    assert names(first) == names(second)
    assert second["downloaded_bytes"] == 0
    assert whl_gets(torch_index) == []
    assert not any(r.path.endswith(".metadata") for s in torch_index.servers for r in s.requests)
    pages = [r for r in torch_index.index.requests if r.path.endswith("/torch/")]
    assert pages and all(r.status == 304 for r in pages)


def test_offline_makes_no_request_at_all(torch_index: TorchIndex, tmp_path: Path) -> None:
    cache = tmp_path / "c"
    args = ("--cuda", "118", "--py", "39", "--platform", "win_amd64", "--torch", "2.4.0")
    online = ok_json(run(torch_index, cache, *args))
    torch_index.clear()
    offline = ok_json(run(torch_index, cache, *args, "--offline"))
    assert names(offline) == names(online)
    assert sum(len(s.requests) for s in torch_index.servers) == 0

    empty = run(torch_index, tmp_path / "empty", *args, "--offline")
    assert empty.exit_code == 1
    assert "not in the cache; run once without --offline" in empty.stderr
    assert sum(len(s.requests) for s in torch_index.servers) == 0


def test_dest_places_wheels_and_requirements(torch_index: TorchIndex, tmp_path: Path) -> None:
    dest = tmp_path / "usb"
    data = ok_json(
        run(
            torch_index,
            tmp_path / "c",
            "--cpu",
            "--py",
            "39",
            "--platform",
            "win_amd64",
            "jinja2",
            "--dest",
            str(dest),
        )
    )
    lock = "pylock.cpu-cp39-win_amd64.toml"
    assert {p.name for p in dest.iterdir()} == names(data) | {"requirements.txt", lock}
    assert all(Path(f["path"]).parent == dest for f in data["files"])
    assert data["lock_file"] == str(dest / lock)


@pytest.mark.parametrize(
    ("args", "message", "code"),
    [
        # Bad option values are usage errors: exit 2 (issue 10).
        (
            ("--cuda", "12x"),
            "invalid value for '--cuda': '12x' is not a CUDA version; known: cu92",
            2,
        ),
        (
            ("--platform", "solaris", "--cpu"),
            "invalid value for '--platform': 'solaris' is not a platform tag",
            2,
        ),
        # The rest: exit 1.
        (("--variant", "cu999"), "the PyTorch index has no variant 'cu999'", 1),
        (("--cpu", "torch>>2"), "invalid requirement 'torch>>2'", 1),
        (
            ("--py", "3.13", "--platform", "win_amd64", "--cuda", "118", "--torch", "2.4.0"),
            "torch 2.4.0+cu118 has wheels for cp38–cp312 on linux_x86_64 and win_amd64; "
            "none for cp313 on win_amd64",
            1,
        ),
        (
            ("--platform", "macosx_11_0_arm64", "--py", "39", "--cuda", "118", "--torch", "2.4.0"),
            "none for cp39 on macosx_11_0_arm64",
            1,
        ),
        (
            ("--cpu", "--py", "39", "--platform", "win_amd64", "no-such-project"),
            "no-such-project is not on",
            1,
        ),
    ],
)
def test_bad_inputs_give_one_clear_line(
    torch_index: TorchIndex, tmp_path: Path, args: tuple[str, ...], message: str, code: int
) -> None:
    result = run(torch_index, tmp_path / "c", *args, json_out=False)
    assert result.exit_code == code
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("wheelcache: error: "), result.stderr
    assert message in lines[0]
    assert result.stdout == ""


def test_unreachable_index_names_the_url(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    url = f"http://127.0.0.1:{port}/whl/{{variant}}"
    result = CliRunner().invoke(
        main,
        [
            "fetch",
            "--cpu",
            "--torch-index",
            url,
            "--index-url",
            f"http://127.0.0.1:{port}/simple",
            "--cache-dir",
            str(tmp_path / "c"),
            "--py",
            "39",
            "--platform",
            "win_amd64",
            "--retries",
            "1",
        ],
    )
    assert result.exit_code == 1
    assert f"cannot reach 127.0.0.1:{port}: connection refused" in result.stderr
    assert f"(http://127.0.0.1:{port}/whl/cpu/torch/)" in result.stderr


def test_usage_error_exit_code_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["fetch", "--cuda", "118", "--cpu"])
    assert result.exit_code == 2
    assert "both choose the variant" in result.stderr


def test_installed_script_in_a_subprocess_and_pip_installs_the_result(
    torch_index: TorchIndex, tmp_path: Path
) -> None:
    """The console script, for this machine (cpu, this Python), then pip installs offline."""
    script = Path(sys.executable).with_name("wheelcache")
    assert script.exists(), "the package is not installed (pip install -e .)"
    py = f"{sys.version_info[0]}.{sys.version_info[1]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "WHEELCACHE_"))}
    env["PIP_CONFIG_FILE"] = os.devnull
    proc = subprocess.run(
        [
            str(script),
            "fetch",
            "--cpu",
            "--py",
            py,
            "--platform",
            "linux_x86_64",
            "--torch-index",
            torch_index.torch_index_url,
            "--index-url",
            torch_index.deps_index_url,
            "--cache-dir",
            str(tmp_path / "c"),
            "--torch",
            "2.4.0",
            "--json",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    cmd = data["install"]["find_links"]
    assert cmd[:3] == ["pip", "install", "--no-index"]
    target = tmp_path / "site"
    pip = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-cache-dir",
            "--disable-pip-version-check",
            "--target",
            str(target),
            *cmd[2:],
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert pip.returncode == 0, pip.stdout + pip.stderr
    installed = {p.name.split("-")[0].lower() for p in target.glob("*.dist-info")}
    assert {"torch", "torchvision", "torchaudio", "numpy", "sympy", "jinja2"} <= installed


def test_file_without_index_hash_is_accepted_with_a_warning(
    torch_index: TorchIndex, tmp_path: Path
) -> None:
    fn = "torch-2.4.0-cp39-cp39-manylinux2014_aarch64.whl"  # listed without #sha256
    cache = tmp_path / "c"
    result = run(
        torch_index,
        cache,
        "--cpu",
        "--py",
        "39",
        "--platform",
        "linux_aarch64",
        "--torch",
        "2.4.0",
        "--no-deps",
        "torch",
    )
    data = ok_json(result)
    (f,) = data["files"]
    assert f["filename"] == fn and f["sha256"] == torch_index.sha256(fn)
    assert f"{fn}: the index gives no sha256; recorded the computed one {f['sha256']}" in (
        result.stderr
    )
    from wheelcache.store.catalog import Catalog

    (row,) = Catalog(cache / "catalog-v1.sqlite").by_filename(fn)
    assert row.hash_origin == "computed"


def test_plain_torch_index_takes_the_build_of_the_variant(
    torch_index: TorchIndex, tmp_path: Path
) -> None:
    """The cu118 tree used as a plain index: its aarch64 wheels have no local version and
    require no CUDA, so they are the CPU build — taken for --cpu, refused for --cuda 118
    with the builds the index has (issue 10: the label used to say cu118)."""
    args = ("--py", "39", "--platform", "linux_aarch64", "--torch", "2.4.0", "--no-deps", "torch")
    refused = run(torch_index, tmp_path / "c", "--cuda", "118", *args, json_out=False)
    assert refused.exit_code == 1
    assert "none for cp39 on linux_aarch64" in refused.stderr
    plain = [
        "--torch-index",
        torch_index.variant_url("cu118"),
        "--index-url",
        torch_index.deps_index_url,
        "--cache-dir",
        str(tmp_path / "c"),
        "--json",
    ]
    cpu = CliRunner().invoke(main, ["fetch", "--cpu", *args, *plain])
    assert names(ok_json(cpu)) == {"torch-2.4.0-cp39-cp39-manylinux2014_aarch64.whl"}
    cuda = CliRunner().invoke(main, ["fetch", "--cuda", "118", *args, *plain])
    assert cuda.exit_code == 1
    assert "has no cu118 build for cp39-linux_aarch64; it carries torch 2.4.0 as cpu" in (
        cuda.stderr
    )


def test_dependency_pages_are_asked_for_as_pep691_json(
    torch_index: TorchIndex, tmp_path: Path
) -> None:
    ok_json(
        run(
            torch_index,
            tmp_path / "c",
            "--cpu",
            "--py",
            "39",
            "--platform",
            "win_amd64",
            "jinja2",
            "--dry-run",
        )
    )
    pages = [r for r in torch_index.deps.requests if r.path.startswith("/simple/")]
    assert pages
    assert all(r.headers["accept"].startswith("application/vnd.pypi.simple.v1+json") for r in pages)


def test_a_damaged_page_once_does_not_poison_the_page_cache(
    torch_index: TorchIndex, tmp_path: Path
) -> None:
    torch_index.deps.fault("/simple/filelock/", corrupt=True, times=1)
    code, _, err = fetch_json(torch_index, tmp_path / "c", "filelock")
    assert code == 1 and "cannot parse the page" in err
    code, out, err = fetch_json(torch_index, tmp_path / "c", "filelock")
    assert code == 0, err
    assert "is unreadable" in err and "fetching it again" in err
    assert json.loads(out)["files"][0]["project"] == "filelock"


def test_markers_on_requested_projects_are_judged_for_the_target(
    torch_index: TorchIndex, tmp_path: Path
) -> None:
    code, out, err = fetch_json(
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


def test_a_yanked_file_pinned_exactly_is_taken_with_one_warning(
    torch_index: TorchIndex, tmp_path: Path
) -> None:
    """PEP 592: an exact pin may take a yanked file; the user hears it once, with the index's
    reason, and the warning is said again when the resolution is recalled."""
    args = ("filelock==3.16.2", "--no-deps", "--cpu", "--py", "310", "--platform", "linux_x86_64")
    for _ in range(2):  # resolved, then recalled
        result = run(torch_index, tmp_path / "cache", *args)
        assert names(ok_json(result)) == {"filelock-3.16.2-py3-none-any.whl"}
        warning = (
            "wheelcache: WARNING: filelock-3.16.2-py3-none-any.whl is yanked (broken); taken "
            "because it was pinned exactly\n"
        )
        assert result.stderr.count(warning) == 1, result.stderr
