"""Config keys are exactly the option names; anything else is refused with the nearest key."""

from __future__ import annotations

from pathlib import Path

import pytest

from wheelcache.config import config_default_map, read_config_file
from wheelcache.errors import ConfigError

OPTIONS = {
    "fetch": {"py": "python", "platform": "platform_tag", "jobs": "jobs", "cache-dir": "cache_dir"},
    "ls": {"cache-dir": "cache_dir", "project": "project"},
}
PATH = Path("/home/me/.config/wheelcache/config.toml")


def test_option_names_are_the_keys() -> None:
    data = {"cache-dir": "/c", "fetch": {"py": "39", "platform": "win_amd64"}, "mirrors": {}}
    assert config_default_map(data, PATH, OPTIONS) == {
        "fetch": {"python": "39", "platform_tag": "win_amd64", "cache_dir": "/c"},
        "ls": {"cache_dir": "/c"},
    }


def test_a_command_table_wins_over_the_top_level() -> None:
    data = {"fetch": {"cache-dir": "/f"}, "cache-dir": "/c"}
    assert config_default_map(data, PATH, OPTIONS)["fetch"] == {"cache_dir": "/f"}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"fetch": {"python": "39"}}, 'unknown key "python" in [fetch]; did you mean "py"?'),
        (
            {"fetch": {"platform-tag": "win_amd64"}},
            'unknown key "platform-tag" in [fetch]; did you mean "platform"?',
        ),
        ({"cache_dir": "/c"}, 'unknown key "cache_dir"; did you mean "cache-dir"?'),
        ({"jbos": 4}, 'unknown key "jbos"; did you mean "jobs"?'),
        ({"ls": {"jobs": 4}}, 'unknown key "jobs" in [ls]; valid keys: cache-dir, project'),
        ({"fecth": {"jobs": 4}}, 'unknown table [fecth]; did you mean "fetch"?'),
    ],
)
def test_unknown_keys_name_the_file_the_key_and_the_nearest(
    data: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        config_default_map(data, PATH, OPTIONS)
    assert str(info.value) == f"config file {PATH}: {message}"


def test_a_broken_file_is_one_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("[fetch\njobs = ")
    with pytest.raises(ConfigError) as info:
        read_config_file(path)
    assert str(info.value).startswith(f"config file {path}: ")
    assert read_config_file(tmp_path / "missing.toml") == {}
