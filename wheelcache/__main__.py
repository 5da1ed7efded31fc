"""``python -m wheelcache``."""

from wheelcache.cli import main

main(prog_name="wheelcache")
