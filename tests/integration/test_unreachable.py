"""An index that cannot be reached: one line that names the host, what happened and what to do.

A name that does not resolve, a port where nothing listens or a TLS failure is no transient
fault: no retry, no warning per attempt, just the error (the README's main command against an
unresolvable PyTorch index took 30 s and printed 20 warnings).  Transient faults keep their
retries with backoff, one retry loop per page however many callers want it.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from tests.integration._serve_wheels import serve
from tests.support.cachefill import add_wheel
from tests.support.httpserver import FileServer
from tests.support.torchindex import TorchIndex
from tests.support.wheels import build_wheel
from wheelcache.cli.main import main
from wheelcache.store.cache import Cache

TORCH_HINT = "use --mirror URL, or --torch-index URL of an index that carries these builds"
TARGET = ["--cuda", "118", "--py", "39", "--platform", "win_amd64"]


def _refused_port() -> int:
    """A port on 127.0.0.1 where nothing listens (bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cli(tmp: Path, *args: str) -> Result:
    return CliRunner().invoke(main, [*args, "--cache-dir", str(tmp / "cache")])


def _one_line(result: Result) -> str:
    assert result.exit_code == 1, result.stderr
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1, result.stderr  # no retry warnings before it
    return result.stderr


@pytest.mark.parametrize("command", ["fetch", "matrix"])
def test_a_name_that_does_not_resolve(tmp_path: Path, command: str) -> None:
    index = "http://nonexistent.invalid/whl/{variant}"
    err = _one_line(_cli(tmp_path, command, *TARGET, "--torch-index", index))
    assert err == (
        "wheelcache: error: cannot reach nonexistent.invalid: name not resolved "
        f"(http://nonexistent.invalid/whl/cu118/torch/); {TORCH_HINT}\n"
    )


@pytest.mark.parametrize("command", ["fetch", "matrix"])
def test_a_port_where_nothing_listens(tmp_path: Path, command: str) -> None:
    port = _refused_port()
    index = f"http://127.0.0.1:{port}/whl/{{variant}}"
    err = _one_line(_cli(tmp_path, command, *TARGET, "--torch-index", index))
    assert err == (
        f"wheelcache: error: cannot reach 127.0.0.1:{port}: connection refused "
        f"(http://127.0.0.1:{port}/whl/cu118/torch/); {TORCH_HINT}\n"
    )


def test_a_tls_failure(tmp_path: Path) -> None:
    # A server of its own: the shared index can still be answering the test before's
    # prefetches (a failed run does not wait for requests already sent).
    with FileServer() as plain:
        plain_http = f"{plain.url.replace('http://', 'https://')}/whl/{{variant}}"
        err = _one_line(_cli(tmp_path, "fetch", *TARGET, "--torch-index", plain_http))
        host = plain_http.split("/")[2]
        assert err.startswith(f"wheelcache: error: cannot reach {host}: TLS failure (")
        assert err.endswith(f"; {TORCH_HINT}\n")
        assert plain.requests == []  # nothing but a failed handshake


def test_the_other_index_says_which_option_names_it(
    torch_index: TorchIndex, tmp_path: Path
) -> None:
    port = _refused_port()
    err = _one_line(
        _cli(
            tmp_path,
            "fetch",
            *TARGET,
            "--torch-index",
            torch_index.torch_index_url,
            "--index-url",
            f"http://127.0.0.1:{port}/simple",
        )
    )
    assert err.startswith(f"wheelcache: error: cannot reach 127.0.0.1:{port}: connection refused")
    assert err.endswith("; check --index-url (or pip's index-url)\n")


def test_offline_is_offered_when_the_cache_has_the_page(tmp_path: Path) -> None:
    """The index went away after a first run: --offline would work, so the line says so."""
    source = Cache(tmp_path / "source")
    add_wheel(source, build_wheel(tmp_path / "build", "torch", "2.4.0"), "torch", "2.4.0")
    args = ["fetch", "--cpu", "--py", "39", "--platform", "win_amd64", "torch", "--dry-run"]
    with serve(source) as served:
        index = served.index_url
        assert _cli(tmp_path, *args, "--torch-index", index).exit_code == 0
    err = _one_line(_cli(tmp_path, *args, "--torch-index", index))
    assert "connection refused" in err
    assert err.endswith(f"; {TORCH_HINT}, or --offline (the cache has this page)\n")
    assert _cli(tmp_path, *args, "--torch-index", index, "--offline").exit_code == 0


def test_a_transient_fault_is_retried_once_per_page(
    torch_index: TorchIndex, tmp_path: Path
) -> None:
    """503 on the torch page: the prefetch and the resolver both want it; one retry loop."""
    torch_index.index.fault("/whl/cu118/torch/", status=503, times=None)
    result = _cli(
        tmp_path,
        "fetch",
        *TARGET,
        "--torch-index",
        torch_index.torch_index_url,
        "--index-url",
        torch_index.deps_index_url,
        "--retries",
        "1",
    )
    assert result.exit_code == 1
    assert torch_index.index.count("/whl/cu118/torch/") == 2  # one request and one retry
    lines = result.stderr.splitlines()
    assert [ln for ln in lines if "retrying" in ln] == [lines[0]]
    assert lines[-1].startswith(
        f"wheelcache: error: cannot reach {torch_index.index.url.split('/')[2]}: HTTP 503 "
        "(gave up after 2 attempts)"
    )


def test_one_attempt_is_one_attempt(torch_index: TorchIndex, tmp_path: Path) -> None:
    """``--retries 0``: "gave up after 1 attempt", not "1 attempts"."""
    torch_index.index.fault("/whl/cu118/torch/", status=503, times=None)
    result = _cli(
        tmp_path, "fetch", *TARGET, "--torch-index", torch_index.torch_index_url, "--retries", "0"
    )
    assert result.exit_code == 1
    assert result.stderr.splitlines()[-1].endswith(
        "HTTP 503 (gave up after 1 attempt) (http://"
        f"{torch_index.index.url.split('/')[2]}/whl/cu118/torch/); use --mirror URL, or "
        "--torch-index URL of an index that carries these builds"
    )


def test_a_trust_store_that_cannot_be_read(
    torch_index: TorchIndex, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The trust store is read at the first TLS connection (a plain-http run never reads it:
    see test_cli_start); one that cannot be read fails that connection, saying which."""
    missing = tmp_path / "no-such-bundle.pem"
    monkeypatch.setenv("SSL_CERT_FILE", str(missing))
    with FileServer() as untouched:  # its own: see test_a_tls_failure
        https = f"{untouched.url.replace('http://', 'https://')}/whl/{{variant}}"
        err = _one_line(_cli(tmp_path, "fetch", *TARGET, "--torch-index", https))
        host = https.split("/")[2]
        assert err.startswith(
            f"wheelcache: error: cannot reach {host}: TLS failure (cannot read the trust store "
            f"{missing} (No such file or directory); check SSL_CERT_FILE)"
        )
        assert untouched.requests == []  # no byte sent
    plain = _cli(
        tmp_path,
        "fetch",
        *TARGET,
        "--torch-index",
        torch_index.torch_index_url,
        "--index-url",
        torch_index.deps_index_url,
    )
    assert plain.exit_code == 0, plain.stderr  # plain http does not read it
