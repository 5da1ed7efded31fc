"""``python -m wheelcache``."""

from wheelcache.cli.main import run

run()
