"""The probe as a real script (this Python and older ones), fake nvidia-smi executables on PATH,
and the ``probe`` / ``detect`` commands."""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from packaging import tags as ptags
from packaging.markers import default_environment

import wheelcache.host.probe_script as ps
from wheelcache.cli.main import main
from wheelcache.core.target import make_target
from wheelcache.host.targetfile import load_target, read_target_description

SCRIPT = Path(ps.__file__)
DATA = Path(__file__).resolve().parents[1] / "data" / "nvidia-smi"


def _run_probe(python: str, out: Path, env: dict[str, str] | None = None) -> dict[str, Any]:
    proc = subprocess.run(
        [python, str(SCRIPT), "--output", str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    assert "wrote" in proc.stderr
    data: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    return data


# --- this interpreter -----------------------------------------------------------------------


def test_probe_script_subprocess_feeds_targetfile(tmp_path: Path) -> None:
    out = tmp_path / "target.json"
    data = _run_probe(sys.executable, out)
    assert data["tags"] == [str(t) for t in ptags.sys_tags()]
    assert data["markers"] == default_environment()
    target = load_target(out, "cu121")
    assert [str(t) for t in target.tags] == data["tags"]
    assert target.marker_environment == default_environment()
    assert target.describe().endswith("(cu121)")


def test_probe_script_prints_to_stdout_without_output() -> None:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--no-nvidia"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["nvidia"]["error"] == "nvidia-smi not run (--no-nvidia)"


def test_probe_script_reports_an_unwritable_output(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--no-nvidia", "-o", str(tmp_path / "no" / "t.json")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1
    assert proc.stderr.startswith("wheelcache-probe: error: cannot write")
    assert proc.stderr.count("\n") == 1


# --- other interpreters on this machine -----------------------------------------------------


def _interpreters() -> dict[str, str]:
    """Other CPythons here (pyenv, uv), by "major.minor", each one checked by running it."""
    found: dict[str, str] = {}
    candidates = sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.*/bin/python3")))
    uv = shutil.which("uv")
    if uv:
        try:
            listing = subprocess.run(
                [uv, "python", "list", "--only-installed", "--output-format", "json"],
                capture_output=True,
                text=True,
                timeout=30,
            ).stdout
            candidates += [e["path"] for e in json.loads(listing or "[]") if e.get("path")]
        except (OSError, ValueError, subprocess.SubprocessError):
            pass
    for exe in candidates:
        try:
            proc = subprocess.run(
                [exe, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                capture_output=True,
                text=True,
                timeout=30,
            )
        except (OSError, subprocess.SubprocessError):
            continue
        version = proc.stdout.strip()
        if proc.returncode == 0 and version and version not in found:
            found[version] = exe
    return found


INTERPRETERS = _interpreters()
# The probe promises 3.8+; 3.8 is the one that matters most (old lab machines).
OLD_AND_NEW = ["3.8", "3.9", "3.10", "3.12", "3.13"]

_MARKERS_OF_ITS_PIP = """
import json, sys
from pip._vendor.packaging import markers
data = json.load(open(sys.argv[1]))
print(json.dumps(data["markers"] == markers.default_environment()))
"""


@pytest.mark.parametrize("version", OLD_AND_NEW)
def test_probe_script_on_other_pythons(tmp_path: Path, version: str) -> None:
    """The oracle for another interpreter: its tags as the installed packaging computes them
    from that interpreter's facts (version, ABI, this machine's platforms), and its markers as
    that interpreter's own pip computes them.  The installed packaging itself cannot run there
    (it needs Python >= 3.10), so the oracle is pinned to facts, not to a packaging release."""
    exe = INTERPRETERS.get(version)
    assert exe is not None, (
        f"Python {version} is expected on this machine kind (pyenv); the probe must run on it"
    )
    out = tmp_path / "target.json"
    data = _run_probe(exe, out)
    assert data["python"]["version"].startswith(version + ".")
    target = load_target(out)
    py = tuple(int(p) for p in version.split("."))
    assert target.python == py
    assert str(target.tags[0]).startswith("cp" + version.replace(".", ""))
    abi = data["tags"][0].split("-")[1]
    assert abi == "cp" + version.replace(".", "")
    platforms = list(ptags.platform_tags())
    expected = [
        *ptags.cpython_tags(py, [abi], platforms),
        *ptags.compatible_tags(py, "cp" + version.replace(".", ""), platforms),
    ]
    assert data["tags"] == [str(t) for t in expected]
    proc = subprocess.run(
        [exe, "-c", _MARKERS_OF_ITS_PIP, str(out)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, f"pip's packaging on Python {version}: {proc.stderr[-400:]}"
    assert json.loads(proc.stdout) is True


# --- fake nvidia-smi executables ------------------------------------------------------------

_FAKE = """#!{python}
import sys
query = " ".join(sys.argv[1:])
if {old_driver!r} and "compute_cap" in query:
    sys.stdout.write(open({old!r}).read())
    sys.exit(2)
sys.stdout.write(open({sample!r}).read())
sys.exit({status})
"""


def _fake_smi(directory: Path, sample: str, status: int = 0, old_driver: bool = False) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    exe = directory / "nvidia-smi"
    exe.write_text(
        _FAKE.format(
            python=sys.executable,
            old_driver=old_driver,
            old=str(DATA / "old-driver.txt"),
            sample=str(DATA / sample),
            status=status,
        ),
        encoding="utf-8",
    )
    exe.chmod(0o755)
    return directory


def _env_with_path(first: Path, keep_rest: bool = True) -> dict[str, str]:
    env = dict(os.environ)
    rest = os.pathsep + env.get("PATH", "") if keep_rest else ""
    env["PATH"] = str(first) + rest
    return env


@pytest.mark.parametrize(
    ("sample", "status", "old_driver", "driver", "gpus", "error"),
    [
        ("one-gpu.txt", 0, False, "550.54.14", [("NVIDIA GeForce RTX 3090", "8.6")], None),
        (
            "two-gpus.txt",
            0,
            False,
            "570.133.07",
            [("NVIDIA GeForce RTX 4090", "8.9"), ("NVIDIA GeForce GTX 1080 Ti", "6.1")],
            None,
        ),
        (
            "old-driver-without-compute-cap.txt",
            0,
            True,
            "470.182.03",
            [("Tesla K80", None), ("Tesla K80", None)],
            None,
        ),
        ("driver-not-loaded.txt", 9, False, None, [], "nvidia-smi exited with status 9"),
        ("no-devices.txt", 6, False, None, [], "status 6: No devices were found"),
        ("garbage.txt", 0, False, None, [], "cannot read nvidia-smi output"),
    ],
)
def test_probe_script_with_fake_nvidia_smi(
    tmp_path: Path,
    sample: str,
    status: int,
    old_driver: bool,
    driver: str | None,
    gpus: list[tuple[str, str | None]],
    error: str | None,
) -> None:
    fake_dir = _fake_smi(tmp_path / "bin", sample, status, old_driver)
    out = tmp_path / "target.json"
    data = _run_probe(sys.executable, out, env=_env_with_path(fake_dir))
    nvidia = data["nvidia"]
    assert nvidia["driver_version"] == driver
    assert [(g["name"], g["compute_capability"]) for g in nvidia["gpus"]] == gpus
    if error is None:
        assert nvidia["error"] is None
    else:
        assert error in nvidia["error"]
    desc = read_target_description(out)
    assert desc.driver_version == driver
    if driver is not None:
        variant, reason = desc.choose_cuda_variant()
        assert variant.startswith("cu") and driver in reason


def test_probe_script_without_nvidia_smi(tmp_path: Path) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    data = _run_probe(sys.executable, tmp_path / "t.json", env=_env_with_path(empty, False))
    assert data["nvidia"] == {"driver_version": None, "gpus": [], "error": None}


# --- wheelcache detect ----------------------------------------------------------------------


def _detect(monkeypatch: pytest.MonkeyPatch, path_dir: Path, *args: str) -> Any:
    monkeypatch.setenv("PATH", str(path_dir))
    result = CliRunner().invoke(main, ["detect", *args])
    assert result.exit_code == 0, result.output
    return result


def _host_flags() -> list[str]:
    doc = ps.probe(nvidia=False)
    py = f"{sys.version_info[0]}.{sys.version_info[1]}"
    if doc["platform"]["glibc"]:
        arch = next(p for p in ps.platform_tags() if p.startswith("linux_"))
        return ["--py", py, "--platform", arch, "--glibc", doc["platform"]["glibc"]]
    return ["--py", py, "--platform", doc["platform"]["platform_tag"]]


def test_detect_one_gpu(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    result = _detect(monkeypatch, _fake_smi(tmp_path / "bin", "one-gpu.txt"))
    out = result.stdout
    assert "driver 550.54.14: NVIDIA GeForce RTX 3090 (compute capability 8.6)" in out
    assert "cu124: driver 550.54.14 supports CUDA up to 12.4; picked cu124" in out
    line = next(x for x in out.splitlines() if x.startswith("  wheelcache fetch"))
    assert line.split()[2:] == [*_host_flags(), "--cuda", "124"]
    assert "Warning" not in out


def test_detect_two_gpus_warns_about_the_old_one(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    result = _detect(monkeypatch, _fake_smi(tmp_path / "bin", "two-gpus.txt"), "--json")
    data = json.loads(result.stdout)
    assert data["variant"] == "cu128"
    assert data["fetch_args"][-2:] == ["--cuda", "128"]
    assert "GTX 1080 Ti (compute capability 6.1) is too old" in data["warning"]
    assert "cu126 builds include it" in data["warning"]
    assert "4090" not in data["warning"]
    assert data["target"]["nvidia"]["driver_version"] == "570.133.07"


def test_detect_failing_nvidia_smi_falls_back_to_cpu(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake = _fake_smi(tmp_path / "bin", "driver-not-loaded.txt", status=9)
    data = json.loads(_detect(monkeypatch, fake, "--json").stdout)
    assert data["variant"] == "cpu" and data["fetch_args"][-1] == "--cpu"
    assert "nvidia-smi exited with status 9" in data["reason"]


def test_detect_without_driver(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    result = _detect(monkeypatch, empty)
    assert "no NVIDIA driver (nvidia-smi not found)" in result.stdout
    line = next(x for x in result.stdout.splitlines() if x.startswith("  wheelcache fetch"))
    flags = line.split()[2:]
    assert flags == [*_host_flags(), "--cpu"]
    # The flags describe this machine: make_target builds the same tags the probe found.
    values = dict(zip(flags[::2], flags[1::2], strict=False))
    target = make_target(
        python=values["--py"], platform=values["--platform"], glibc=values.get("--glibc")
    )
    assert [str(t) for t in target.tags] == [str(t) for t in ptags.sys_tags()]


def test_detect_json_is_only_json(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    data = json.loads(_detect(monkeypatch, empty, "--json").stdout)
    assert set(data) == {"target", "fetch_args", "variant", "reason", "warning"}
    assert data["target"]["tags"] == [str(t) for t in ptags.sys_tags()]


# --- wheelcache probe -----------------------------------------------------------------------


def test_probe_command_stdout_and_output(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(main, ["probe", "--no-nvidia"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["tags"] == [str(t) for t in ptags.sys_tags()]
    out = tmp_path / "t.json"
    result = runner.invoke(main, ["probe", "--no-nvidia", "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert f"wheelcache fetch --target {out}" in result.stderr
    assert load_target(out).marker_environment == default_environment()


def test_probe_command_writes_the_standalone_script(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["probe", "--write-script", str(tmp_path / "usb") + "/"])
    assert result.exit_code == 0, result.output
    script = tmp_path / "usb" / "wheelcache-probe.py"
    assert script.read_bytes() == SCRIPT.read_bytes()
    if os.name != "nt":
        assert os.access(script, os.X_OK)
    assert "python wheelcache-probe.py --output target.json" in result.stderr
    # A file name works too, and the written script runs on its own (outside the package).
    named = tmp_path / "probe.py"
    CliRunner().invoke(main, ["probe", "--write-script", str(named)])
    proc = subprocess.run(
        [sys.executable, "-I", str(named), "--no-nvidia"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["tags"] == [str(t) for t in ptags.sys_tags()]


def test_probe_command_errors_are_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["probe", "--no-nvidia", "--output", str(tmp_path / "missing" / "t.json")]
    )
    assert result.exit_code == 1
    assert result.stderr.startswith("wheelcache: error: cannot write")
    assert result.stderr.count("\n") == 1
    assert not list(tmp_path.glob("**/.t.json.*"))
