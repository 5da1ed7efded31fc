"""Start-up: the command group is lazy, so a command imports only what it uses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest

from tests.support.miniindex import Dist, serve_index
from wheelcache.cli.main import COMMANDS

PROBE = """
import json, sys
from wheelcache.cli.main import main
try:
    main(sys.argv[1:], prog_name="wheelcache")
except SystemExit:
    pass
print(json.dumps(sorted(sys.modules)), file=sys.stderr)
"""


def _modules_after(*args: str, env: dict[str, str] | None = None) -> set[str]:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )
    last = proc.stderr.strip().splitlines()[-1]
    return set(json.loads(last))


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_registry_names_the_module_and_help_of_each_command(name: str) -> None:
    """--help shows the registry's text without importing the command: it must be what the
    loaded command would show, at any terminal width."""
    module, first_sentence = COMMANDS[name]
    group = click.Group()
    __import__(module, fromlist=["register"]).register(group)
    assert name in group.commands
    for width in (25, 45, 70, 200):
        stand_in = click.Command(name, short_help=first_sentence)
        assert stand_in.get_short_help_str(width) == group.commands[name].get_short_help_str(width)


def test_every_registered_command_is_in_the_registry() -> None:
    """A command module left out of COMMANDS would silently lose its commands."""
    import pkgutil

    import wheelcache.cli

    modules = {f"wheelcache.cli.{m.name}" for m in pkgutil.iter_modules(wheelcache.cli.__path__)}
    with_commands = {
        m for m in modules if hasattr(__import__(m, fromlist=["register"]), "register")
    }
    assert with_commands == {m for m, _ in COMMANDS.values()}
    group = click.Group()
    for module in with_commands:
        __import__(module, fromlist=["register"]).register(group)
    assert set(group.commands) == set(COMMANDS)


@pytest.mark.parametrize("args", [("--version",), ("--help",)])
def test_version_and_help_import_no_command(args: tuple[str, ...]) -> None:
    loaded = _modules_after(*args)
    ours = {m for m in loaded if m.startswith("wheelcache")}
    assert ours <= {"wheelcache", "wheelcache.cli", "wheelcache.cli.main", "wheelcache.errors"}
    assert not {"httpx", "packaging", "resolvelib", "sqlite3", "logging"} & loaded


def test_a_command_imports_its_own_module_only() -> None:
    loaded = _modules_after("fetch", "--help")
    assert "wheelcache.cli.fetch" in loaded
    others = {"wheelcache.cli.serve", "wheelcache.cli.bundle", "wheelcache.cli.cache"}
    assert not (others | {"wheelcache.serve.server", "wheelcache.bundle.export"}) & loaded
    # The lock's validator (about 15 ms) loads while a fetch's transfers run, not at its start.
    assert "packaging.pylock" not in loaded


def test_fetch_over_plain_http_reads_no_trust_store_and_offline_loads_no_http_stack(
    tmp_path: Path,
) -> None:
    """The HTTP stack (``http.client``) is loaded when the first client is made, the TLS trust
    store (about 30 ms) when the first TLS connection is: a run on a plain-http LAN index never
    reads it (so a trust store that is not there does not matter), ``--offline`` does not even
    import ``http.client``, and no run imports httpx and its stack (issue 14: 65-100 ms),
    urllib.request (about 40 ms) or, with no config file and no lock, a TOML reader."""
    cache = tmp_path / "cache"
    with serve_index(tmp_path / "index", [Dist("tiny", "1.0")]) as url:
        args = ("fetch", "tiny", "--py", "311", "--platform", "linux_x86_64", "--cpu")
        args += ("--index-url", url, "--torch-index", url, "--cache-dir", str(cache))
        online = _modules_after(*args, env={"SSL_CERT_FILE": str(tmp_path / "missing.pem")})
        offline = _modules_after(*args, "--offline")
    assert any(cache.glob("wheels-v1/tiny-1.0-*.whl")), "the online run fetched nothing"
    assert "http.client" in online and "wheelcache.net.http11" in online
    assert not {"httpx", "httpcore", "h11", "idna", "urllib.request", "tomllib"} & online
    # Nor the header registry of email.policy (about 5 ms; METADATA is read with compat32)
    # nor, for a plain-ASCII host name, the idna codec (about 5 ms before the first connection).
    assert not {"email.policy", "email.headerregistry", "encodings.idna"} & online
    assert "wheelcache.jobs.fetch" in offline
    assert not {"http.client", "httpx", "certifi", "ssl", "tomllib"} & offline


def test_a_recalled_fetch_loads_no_resolver_finder_or_downloader(tmp_path: Path) -> None:
    """A second identical fetch whose pages did not change (see test_remembered) takes last
    run's wheels: the resolver, the page parsers and the downloader are never imported."""
    cache = tmp_path / "cache"
    heavy = {
        "resolvelib",
        "wheelcache.core.provider",
        "wheelcache.net.finder",
        "wheelcache.net.download",
        "wheelcache.net.transfer",
        "html.parser",
        "email.parser",
        "zipfile",
    }
    with serve_index(tmp_path / "index", [Dist("tiny", "1.0")]) as url:
        args = ("fetch", "tiny", "--py", "311", "--platform", "linux_x86_64", "--cpu")
        args += ("--index-url", url, "--torch-index", url, "--cache-dir", str(cache))
        first = _modules_after(*args)
        second = _modules_after(*args)
        offline = _modules_after(*args, "--offline")
    assert heavy <= first  # the probe sees them when they are loaded
    assert not (heavy - {"email.parser"}) & second  # (the HTTP stack loads that one)
    assert not heavy & offline


QUICK_EXIT = """
import atexit, sys
atexit.register(lambda: print("torn down", file=sys.stderr))
from wheelcache.cli.main import run
sys.argv[0] = "wheelcache"
run()
"""


@pytest.mark.parametrize(
    ("args", "code", "last"),
    [
        (("--version",), 0, None),
        (("fetch", "--cuda", "999"), 2, "wheelcache: error: invalid value for '--cuda'"),
        (
            ("fetch", "--cpu", "--py", "311", "--platform", "linux_x86_64", "--offline")
            + ("--index-url", "http://127.0.0.1:9/simple", "--cache-dir", "{missing}"),
            1,
            "wheelcache: error:",
        ),
    ],
)
def test_the_console_script_leaves_without_teardown_and_loses_no_output(
    tmp_path: Path, args: tuple[str, ...], code: int, last: str | None
) -> None:
    """``run`` (the console script) skips the interpreter's teardown (40–50 ms) once only its
    thread is left: atexit handlers do not run, yet the exit code and every line are there."""
    argv = [a.replace("{missing}", str(tmp_path / "no-cache")) for a in args]
    proc = subprocess.run(
        [sys.executable, "-c", QUICK_EXIT, *argv], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == code, proc.stderr
    assert "torn down" not in proc.stderr
    if last is None:
        assert proc.stdout.startswith("wheelcache, version ")
    else:
        assert proc.stderr.splitlines()[-1].startswith(last)


def test_the_console_script_flushes_a_long_output_into_a_pipe(tmp_path: Path) -> None:
    """More than a pipe holds (64 KiB) of ``--json``, read whole after the quick exit."""
    cache = tmp_path / "cache"
    dists = [Dist(f"p{i:03d}", "1.0") for i in range(120)]
    with serve_index(tmp_path / "index", dists) as url:
        args = [f"p{i:03d}" for i in range(120)]
        args += ["--py", "311", "--platform", "linux_x86_64", "--cpu", "--json"]
        args += ["--index-url", url, "--torch-index", url, "--cache-dir", str(cache)]
        proc = subprocess.run(
            [sys.executable, "-c", QUICK_EXIT, "fetch", *args],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert len(proc.stdout) > 64 * 1024
    assert len(json.loads(proc.stdout)["files"]) == 120
    assert "torn down" not in proc.stderr
