"""Test support: deterministic wheels, a faulty HTTP server and a PyTorch-style index."""

from .httpserver import Fault, FileServer, RequestRecord
from .wheels import build_sdist, build_wheel, metadata_bytes, read_wheel_metadata

__all__ = [
    "Fault",
    "FileServer",
    "RequestRecord",
    "build_sdist",
    "build_wheel",
    "metadata_bytes",
    "read_wheel_metadata",
]
