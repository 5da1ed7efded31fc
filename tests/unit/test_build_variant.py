"""Which PyTorch variant a torch build is, from the wheel itself (plain indexes carry no
``+cu124``): the local version, else the CUDA runtime it requires on the target, else cpu."""

from __future__ import annotations

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from tests.support.torchindex import torch_requires
from wheelcache.core.target import make_target
from wheelcache.core.variants import build_variant

LINUX = make_target(python="39", platform="linux_x86_64")
ARM = make_target(python="39", platform="linux_aarch64")
WIN = make_target(python="39", platform="win_amd64")


def _reqs(*lines: str) -> list[Requirement]:
    return [Requirement(x) for x in lines]


@pytest.mark.parametrize(
    ("version", "requires", "target", "expected"),
    [
        # The plain builds of the test universe, with the real pins of those releases.
        ("2.5.1", torch_requires("2.5.1", "cu121"), LINUX, "cu121"),
        ("2.4.0", torch_requires("2.4.0", "cu118"), LINUX, "cu118"),
        ("2.5.1", torch_requires("2.5.1", "cu121"), WIN, "cpu"),  # the pins are Linux x86 only
        ("2.5.1", torch_requires("2.5.1", "cu121"), ARM, "cpu"),
        ("2.5.1", torch_requires("2.5.1", None), LINUX, "cpu"),
        # The local version wins over anything the requirements say.
        ("2.4.0+cu118", torch_requires("2.4.0", "cu118"), LINUX, "cu118"),
        ("2.4.0+cpu", (), LINUX, "cpu"),
        ("2.5.1+rocm6.1", (), LINUX, "rocm6.1"),
        # The spellings seen on real indexes.
        ("2.5.1", ("nvidia-cuda-runtime-cu12==12.4.127",), LINUX, "cu124"),
        ("1.13.1", ("nvidia-cuda-runtime-cu11==11.7.99",), LINUX, "cu117"),
        ("2.9.0", ("nvidia-cuda-runtime==13.0.48",), LINUX, "cu130"),
        ("2.9.0", ("nvidia_cuda_runtime_cu12>=12.8",), LINUX, "cu128"),
        ("2.9.0", ("nvidia-cuda-runtime-cu12",), LINUX, "cu12"),  # unpinned: the major only
        ("2.5.1", ("nvidia-cudnn-cu12==9.1.0.70",), LINUX, "cu12"),  # a CUDA library, no runtime
        ("2.5.1", ('nvidia-cuda-runtime-cu12==12.4.127; extra == "cuda"',), LINUX, "cpu"),
    ],
)
def test_build_variant(
    version: str, requires: tuple[str, ...], target: object, expected: str
) -> None:
    envs = target.marker_environments  # type: ignore[attr-defined]
    assert build_variant(Version(version), _reqs(*requires), envs) == expected
