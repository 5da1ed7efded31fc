"""``python -m wheelcache``."""

from wheelcache.cli.main import main

main(prog_name="wheelcache")
