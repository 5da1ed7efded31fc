"""The command line: one module per command family."""

from wheelcache.cli.main import main

__all__ = ["main"]
