"""install.sh on a bundle for Python 3.9: run with a matching and a non-matching Python.

The bundle holds a stand-in torch (a cp39 wheel whose module answers like torch) built for
CUDA 12.1, and a fake ``nvidia-smi`` reports a driver too old for it, so the report after pip
must say that.  The Pythons are pyenv's (3.8 to 3.13, see README); pip is the real one.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.cachefill import add_wheel
from tests.support.wheels import build_wheel
from wheelcache.store.cache import Cache


def _python(minor: int) -> Path:
    """Python 3.<minor>: pyenv's (README), else Debian's ``python3.<minor>``."""
    pyenv = sorted(Path("/root/.pyenv/versions").glob(f"3.{minor}.*/bin/python"))
    found = pyenv[-1] if pyenv else shutil.which(f"python3.{minor}")
    assert found, f"Python 3.{minor} is needed for these tests (see README)"
    return Path(found)


PY38, PY39, PY311 = _python(8), _python(9), _python(11)

FAKE_TORCH = """\
import os
__version__ = "2.4.0+cu121"
class version:
    cuda = "12.1"
    hip = None
class cuda:
    @staticmethod
    def is_available():
        return os.environ.get("FAKE_TORCH_CUDA") == "1"
    @staticmethod
    def get_device_name(index):
        return "NVIDIA GeForce GTX 1080"
"""


def _env(tmp: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "WHEELCACHE_"))}
    fake = tmp / "fakebin"
    fake.mkdir(exist_ok=True)
    smi = fake / "nvidia-smi"
    smi.write_text('#!/bin/sh\necho "470.82.01, NVIDIA GeForce GTX 1080, 6.1"\n')
    smi.chmod(0o755)
    env.update(
        PIP_CONFIG_FILE=os.devnull,
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        PATH=f"{fake}{os.pathsep}{env['PATH']}",
        WHEELCACHE_CONFIG=os.devnull,
        **extra,
    )
    return env


def _run(cmd: list[str], tmp: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cmd, env=_env(tmp, **env), cwd=tmp, capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bundle for this machine's Python 3.9 (target file written by the probe under 3.9)."""
    root = tmp_path_factory.mktemp("install-check")
    target = root / "target.json"
    probe = Path(__file__).resolve().parents[2] / "wheelcache" / "host" / "probe_script.py"
    subprocess.run(
        [str(PY39), str(probe), "--no-nvidia", "--output", str(target)], check=True, timeout=60
    )
    cache = Cache(root / "cache")
    torch = build_wheel(
        root / "build",
        "torch",
        "2.4.0+cu121",
        "cp39-cp39-linux_x86_64",
        requires_dist=["dep>=1"],
        init_py=FAKE_TORCH,
    )
    add_wheel(cache, torch, "torch", "2.4.0+cu121")
    add_wheel(cache, build_wheel(root / "build", "dep", "1.2"), "dep", "1.2")
    out = root / "bundle"
    res = _run(
        [
            sys.executable,
            "-m",
            "wheelcache",
            "export",
            str(out),
            "torch==2.4.0+cu121",
            "--target",
            str(target),
            "--cache-dir",
            str(cache.root),
        ],
        root,
    )
    assert res.returncode == 0, res.stderr
    assert json.loads((out / "manifest.json").read_text())["target"]["python"] == "3.9"
    return out


def test_the_right_python_installs_and_reports_torch_and_the_driver(
    bundle: Path, tmp_path: Path
) -> None:
    venv = tmp_path / "v39"
    subprocess.run([str(PY39), "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    res = _run(["sh", str(bundle / "install.sh"), "-q"], tmp_path, PYTHON=str(python))
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.splitlines()[-1] == (
        "torch 2.4.0+cu121 (CUDA 12.1 build): torch.cuda.is_available() is False; the NVIDIA "
        "driver 470.82.01 is older than CUDA 12.1 needs (525.60.13 or newer): update the "
        "driver, or install a bundle for an older CUDA"
    )
    again = _run(
        [str(python), str(bundle / "install_check.py"), "after"], tmp_path, FAKE_TORCH_CUDA="1"
    )
    assert again.stdout == (
        "torch 2.4.0+cu121 (CUDA 12.1 build): torch.cuda.is_available() is True "
        "(NVIDIA GeForce GTX 1080)\n"
    )


@pytest.mark.parametrize("python", [PY38, PY311], ids=["3.8", "3.11"])
def test_a_wrong_python_stops_before_pip_with_one_line(
    bundle: Path, tmp_path: Path, python: Path
) -> None:
    dest = tmp_path / "site"
    res = _run(
        ["sh", str(bundle / "install.sh"), "--target", str(dest)], tmp_path, PYTHON=str(python)
    )
    assert res.returncode == 1
    assert res.stdout == "" and not dest.exists()  # pip never ran
    version = subprocess.run(
        [str(python), "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    abi = "cp" + version.replace(".", "")
    assert res.stderr == (
        f"install: error: this bundle is for Python 3.9 (cp39) on linux_x86_64, cu121, but "
        f"{python} is Python {version} ({abi}) on linux_x86_64; run PYTHON=/path/to/python3.9 "
        "sh install.sh, or activate a venv or conda environment with Python 3.9 first "
        "(conda activate ENV)\n"
    )


def test_a_bundle_for_another_machine_says_how_to_get_the_right_one(
    bundle: Path, tmp_path: Path
) -> None:
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["target"].update(platform="win_amd64", platforms=["win_amd64"])
    other = tmp_path / "other"
    other.mkdir()
    for name in ("install_check.py", "wheelcache-probe.py", "requirements.txt"):
        (other / name).write_bytes((bundle / name).read_bytes())
    (other / "manifest.json").write_text(json.dumps(manifest))
    res = _run([str(PY39), str(other / "install_check.py"), "before", "install.sh"], tmp_path)
    assert res.returncode == 1
    assert res.stderr.startswith(
        "install: error: this bundle is for Python 3.9 (cp39) on win_amd64, cu121, but "
    )
    assert res.stderr.endswith(
        "on linux_x86_64; this bundle is for another kind of machine; on this one run python "
        "wheelcache-probe.py --output target.json and export a bundle with --target "
        "target.json\n"
    )
