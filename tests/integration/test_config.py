"""Settings: flag > WHEELCACHE_* > config file > default; indexes from pip's configuration."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from tests.support.torchindex import TorchIndex
from wheelcache.cli.main import main
from wheelcache.config import pip_index_urls


def _show(env: dict[str, str] | None = None) -> dict[str, dict[str, Any]]:
    result = CliRunner().invoke(main, ["config", "show", "--json"], env=env)
    assert result.exit_code == 0, result.stderr
    return {row["setting"]: row for row in json.loads(result.stdout)}


def test_config_show_names_each_origin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f'cache-dir = "{tmp_path / "cc"}"\n[fetch]\njobs = 7\n')
    monkeypatch.setenv("WHEELCACHE_CONFIG", str(config))
    rows = _show({"WHEELCACHE_CONNECTIONS": "3", "HTTPS_PROXY": "http://127.0.0.1:3128"})
    assert rows["fetch.jobs"] == {
        "setting": "fetch.jobs",
        "value": 7,
        "origin": f"config file {config}",
    }
    assert rows["fetch.connections"]["value"] == "3"
    assert rows["fetch.connections"]["origin"] == "environment WHEELCACHE_CONNECTIONS"
    assert rows["fetch.retries"] == {"setting": "fetch.retries", "value": 5, "origin": "default"}
    assert rows["fetch.cache-dir"]["value"] == str(tmp_path / "cc")
    assert rows["config-file"]["origin"] == "environment WHEELCACHE_CONFIG"
    assert rows["proxy.HTTPS_PROXY"]["value"] == "http://127.0.0.1:3128"


def test_config_show_names_the_proxy_in_use_without_its_password() -> None:
    """As the transport reads them: a lower-case variable wins over its upper case (even set
    empty), and a password in a proxy URL is never printed."""
    rows = _show(
        {
            "HTTPS_PROXY": "http://me:s3cret@upper.invalid:3128",
            "https_proxy": "http://me:s3cret@lower.invalid:3128",
            "HTTP_PROXY": "http://other.invalid:8080",
            "http_proxy": "",
        }
    )
    assert rows["proxy.https_proxy"]["value"] == "http://lower.invalid:3128"
    assert rows["proxy.https_proxy"]["origin"] == "environment https_proxy"
    assert rows["proxy.HTTPS_PROXY"]["origin"] == (
        "environment HTTPS_PROXY (not used: https_proxy is set)"
    )
    assert rows["proxy.http_proxy"]["origin"] == "environment http_proxy (set empty: no http proxy)"
    assert "s3cret" not in json.dumps(rows)


def test_config_file_values_are_used_by_fetch(
    torch_index: TorchIndex, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        f'[fetch]\ntorch-index = "{torch_index.torch_index_url}"\n'
        f'index-url = "{torch_index.deps_index_url}"\ncache-dir = "{tmp_path / "c"}"\n'
    )
    monkeypatch.setenv("WHEELCACHE_CONFIG", str(config))
    result = CliRunner().invoke(
        main, ["fetch", "--cpu", "--py", "39", "--platform", "win_amd64", "jinja2", "--json"]
    )
    assert result.exit_code == 0, result.stderr
    assert Path(json.loads(result.stdout)["wheels_dir"]) == tmp_path / "c" / "wheels-v1"


def test_broken_config_file_is_one_warning_not_a_crash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "config.toml"
    config.write_text("[fetch\njobs = ")
    monkeypatch.setenv("WHEELCACHE_CONFIG", str(config))
    result = CliRunner().invoke(main, ["fetch", "--help"])
    assert result.exit_code == 0
    assert f"config file {config}" in result.stderr


def test_pip_configuration_is_read(tmp_path: Path) -> None:
    pip_conf = tmp_path / "pip.conf"
    pip_conf.write_text(
        "[global]\nindex-url = http://127.0.0.1:1/simple\n"
        "extra-index-url = http://127.0.0.1:2/simple file:///local/simple\n"
    )
    env = {"PIP_CONFIG_FILE": str(pip_conf), "HOME": str(tmp_path), "XDG_CONFIG_DIRS": ""}
    urls, origin = pip_index_urls(env)
    assert urls == ["http://127.0.0.1:1/simple", "http://127.0.0.1:2/simple"]  # file:// skipped
    assert str(pip_conf) in origin
    urls, origin = pip_index_urls({**env, "PIP_INDEX_URL": "http://127.0.0.1:3/simple"})
    assert urls[0] == "http://127.0.0.1:3/simple" and origin.startswith("PIP_INDEX_URL")


def test_without_pip_configuration_pips_own_default_is_used() -> None:
    from pip._internal.models.index import PyPI

    urls, origin = pip_index_urls({"PIP_CONFIG_FILE": os.devnull})
    assert urls == [PyPI.simple_url] and origin == "pip's default"


def test_fetch_uses_pip_configuration_when_no_index_is_given(
    torch_index: TorchIndex, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pip_conf = tmp_path / "pip.conf"
    pip_conf.write_text(f"[global]\nindex-url = {torch_index.deps_index_url}\n")
    monkeypatch.setenv("PIP_CONFIG_FILE", str(pip_conf))
    result = CliRunner().invoke(
        main,
        [
            "fetch",
            "--cpu",
            "--py",
            "39",
            "--platform",
            "win_amd64",
            "jinja2",
            "--torch-index",
            torch_index.torch_index_url,
            "--cache-dir",
            str(tmp_path / "c"),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.stderr
    assert torch_index.deps.count("/simple/jinja2/") >= 1


def test_top_level_config_keys_apply_to_every_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f'cache-dir = "{tmp_path / "shared-cache"}"\n')
    monkeypatch.setenv("WHEELCACHE_CONFIG", str(config))
    result = CliRunner().invoke(main, ["info", "--json"])
    assert result.exit_code == 0, result.stderr
    assert str(tmp_path / "shared-cache") in result.stdout
