"""Shared fixtures: keep this machine's settings out of every test."""

from __future__ import annotations

import errno
import logging
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.torchindex import TorchIndex, Universe, build_universe, serve_universe

# Real PyTorch index pages, kept in the repository (tests/data/pytorch-index/README.md).
FIXTURES = Path(__file__).resolve().parent / "data" / "pytorch-index"


def pytest_configure(config: pytest.Config) -> None:
    """The suite runs on Linux (CI's machine): it mounts tmpfs filesystems as root, drives a
    pty and runs shebang scripts as fake nvidia-smi.  Say so once instead of skipping."""
    if not sys.platform.startswith("linux"):
        raise pytest.UsageError("wheelcache's test suite needs Linux (see .ci/run)")
    # Tests press Ctrl-C (SIGINT) in the programs they start, as on a terminal.  A suite
    # started in the background (``pytest &`` in a script) inherits SIGINT ignored, and so
    # would every program it starts: they would run on as if nothing had been pressed.
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


_LEAKY_PREFIXES = ("WHEELCACHE_", "PIP_", "UV_")
_LEAKY_NAMES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Clear WHEELCACHE_*, PIP_*, UV_* and proxy variables; isolate pip's config files."""
    for name in list(os.environ):
        if name.startswith(_LEAKY_PREFIXES) or name.upper() in _LEAKY_NAMES:
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("WHEELCACHE_CONFIG", str(tmp_path / "no-config.toml"))


@pytest.fixture(autouse=True)
def _restore_wheelcache_logger() -> Iterator[None]:
    """The CLI configures the "wheelcache" logger for a terminal (own handler, no
    propagation) and silences it after a run's last line; undo that after each test so caplog
    keeps seeing library records."""
    logger = logging.getLogger("wheelcache")
    saved = (logger.handlers[:], logger.level, logger.propagate, logger.disabled)
    yield
    logger.handlers[:], logger.level, logger.propagate, logger.disabled = saved


@pytest.fixture
def fixtures_dir() -> Path:
    assert FIXTURES.is_dir(), f"fixture pages not found at {FIXTURES}"
    return FIXTURES


@pytest.fixture(scope="session")
def torch_universe(tmp_path_factory: pytest.TempPathFactory) -> Universe:
    """The generated PyTorch-style universe (built once per session, deterministic)."""
    return build_universe(tmp_path_factory.mktemp("torch-universe"))


@pytest.fixture(scope="session")
def _torch_index_session(torch_universe: Universe) -> Iterator[TorchIndex]:
    with serve_universe(torch_universe) as ti:
        yield ti


@pytest.fixture
def torch_index(_torch_index_session: TorchIndex) -> Iterator[TorchIndex]:
    """The universe served on three 127.0.0.1 origins, with fresh logs and no faults."""
    _torch_index_session.clear()
    yield _torch_index_session
    _torch_index_session.clear()


@pytest.fixture
def unlinkable_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A folder no hard link from ``tmp_path`` can reach: on a real second filesystem (tmpfs)
    where there is one, else with ``os.link`` failing as it does across devices."""
    shm = Path("/dev/shm")
    if shm.is_dir() and shm.stat().st_dev != tmp_path.stat().st_dev:
        base = Path(tempfile.mkdtemp(dir=shm))
    else:

        def no_link(src: object, dst: object) -> None:
            raise OSError(errno.EXDEV, "Invalid cross-device link")

        monkeypatch.setattr(os, "link", no_link)
        base = Path(tempfile.mkdtemp(dir=tmp_path))
    try:
        yield base
    finally:
        shutil.rmtree(base)
