"""The command line as a newcomer meets it: usage errors, the config file, -v/-q, --help.

Bad option values are usage errors (exit 2) with one line that says where the value came from;
config keys are exactly the option names; a broken config file is reported once; ``-v`` and
``-q`` work anywhere; the command list's summaries are whole sentences.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from tests.support.torchindex import TorchIndex
from wheelcache.cli.main import main


def _cli(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(main, list(args), env=env)


def _usage_line(result: Result) -> str:
    assert result.exit_code == 2, (result.exit_code, result.stderr)
    assert result.stdout == "" and result.stderr.count("\n") == 1, result.stderr
    return result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["fetch", "--cuda", "999"],
            "invalid value for '--cuda': '999' (= cu999) is not a PyTorch",
        ),
        (["fetch", "--variant", "foo"], "invalid value for '--variant': 'foo' is not a PyTorch"),
        (["fetch", "--py", "abc"], "invalid value for '--py': 'abc' is not a Python version"),
        (
            ["fetch", "--platform", "windows"],
            "invalid value for '--platform': 'windows' is not a platform tag; use e.g. win_amd64",
        ),
        (["matrix", "--cuda", "999"], "invalid value for '--cuda': '999' (= cu999)"),
        (["matrix", "--py", "abc"], "invalid value for '--py': 'abc' is not a Python version"),
        (["export", "out", "--all", "--cuda", "12x"], "invalid value for '--cuda': '12x' is not"),
        (["fetch", "--cuda", "118", "--cpu"], "--cuda and --cpu both choose the variant"),
    ],
)
def test_bad_option_values_are_usage_errors(tmp_path: Path, args: list[str], message: str) -> None:
    line = _usage_line(_cli(*args, "--cache-dir", str(tmp_path / "c")))
    assert line.startswith(f"wheelcache: error: {message}")
    assert line.endswith(f"(see wheelcache {args[0]} --help)\n")


def test_a_bad_value_says_where_it_came_from(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[fetch]\ncuda = "999"\n')
    from_file = _usage_line(_cli("fetch", env={"WHEELCACHE_CONFIG": str(config)}))
    assert from_file.startswith(
        f"wheelcache: error: invalid value for '--cuda' (key 'cuda' in the config file {config}): "
        "'999' (= cu999) is not a PyTorch CUDA variant"
    )
    from_env = _usage_line(_cli("fetch", env={"WHEELCACHE_JOBS": "many"}))
    assert from_env.startswith(
        "wheelcache: error: invalid value for '--jobs' (from WHEELCACHE_JOBS): 'many' is not"
    )


def test_config_keys_are_the_option_names(
    torch_index: TorchIndex, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``py`` and ``platform`` were silently ignored (the fetch targeted this machine)."""
    config = tmp_path / "config.toml"
    config.write_text(
        f'[fetch]\npy = "39"\nplatform = "win_amd64"\ncpu = true\n'
        f'torch-index = "{torch_index.torch_index_url}"\n'
        f'index-url = "{torch_index.deps_index_url}"\ncache-dir = "{tmp_path / "c"}"\n'
    )
    monkeypatch.setenv("WHEELCACHE_CONFIG", str(config))
    result = _cli("fetch", "jinja2", "--dry-run")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("Target: cp39-win_amd64 (cpu)\n")
    shown = {r["setting"]: r for r in json.loads(_cli("config", "show", "--json").stdout)}
    assert shown["fetch.py"] == {
        "setting": "fetch.py",
        "value": "39",
        "origin": f"config file {config}",
    }
    assert shown["fetch.platform"]["value"] == "win_amd64"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[fetch]\npython = "39"\n', 'unknown key "python" in [fetch]; did you mean "py"?'),
        (
            '[fetch]\nplatform-tag = "x"\n',
            'unknown key "platform-tag" in [fetch]; did you mean "platform"?',
        ),
        ("jbos = 4\n", 'unknown key "jbos"; did you mean "jobs"?'),
    ],
)
def test_an_unknown_key_names_the_file_the_key_and_the_nearest(
    tmp_path: Path, text: str, message: str
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(text)
    line = _usage_line(_cli("ls", env={"WHEELCACHE_CONFIG": str(config)}))
    assert line == f"wheelcache: error: config file {config}: {message}\n"


def test_a_broken_config_file_is_reported_once(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text("[fetch\njobs = ")
    env = {"WHEELCACHE_CONFIG": str(config)}
    for args in (["config", "show"], ["fetch", "--dry-run"]):
        line = _usage_line(_cli(*args, env=env))
        assert line.startswith(f"wheelcache: error: config file {config}: ")
    helped = _cli("fetch", "--help", env=env)
    assert helped.exit_code == 0 and helped.stderr.count(f"config file {config}") == 1


def test_ctrl_c_exits_130_with_the_interrupted_line_last(
    torch_index: TorchIndex, tmp_path: Path
) -> None:
    """SIGINT while the torch page is slow to come: one line, the last, and exit 130."""
    torch_index.index.fault("/whl/cpu/torch/", stall_after=0, stall_seconds=30, times=None)
    env = {k: v for k, v in os.environ.items() if not k.startswith("WHEELCACHE_")}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from wheelcache.cli.main import main; main()",
            "fetch",
            "--cpu",
            "--py",
            "39",
            "--platform",
            "win_amd64",
            "--torch-index",
            torch_index.torch_index_url,
            "--index-url",
            torch_index.deps_index_url,
            "--cache-dir",
            str(tmp_path / "c"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**env, "WHEELCACHE_CONFIG": os.devnull},
    )
    try:
        for _ in range(600):  # wait (at most 30 s) until the page request hangs
            if torch_index.index.count("/whl/cpu/torch/"):
                break
            subprocess.run(["sleep", "0.05"], check=True)
        proc.send_signal(2)  # SIGINT, as Ctrl-C sends it
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert err.splitlines()[-1] == (
        "wheelcache: interrupted; partial downloads are kept and resume on the next run"
    )
    assert out == ""


def test_v_and_q_work_anywhere_and_v_shows_the_version(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    loud = _cli("ls", "--cache-dir", str(missing), "-v")
    assert loud.exit_code == 1 and "Traceback" in loud.stderr  # -v after the command
    quiet = _cli("-q", "config", "show", "-q")
    assert quiet.exit_code == 0
    version = _cli("-V")
    assert version.exit_code == 0 and version.stdout.startswith("wheelcache, version ")


def test_q_silences_warnings(torch_index: TorchIndex, tmp_path: Path) -> None:
    args = ["fetch", "--cpu", "--py", "39", "--platform", "win_amd64", "--dry-run"]
    args += ["--torch-index", torch_index.torch_index_url, "--index-url"]
    args += [
        torch_index.deps_index_url,
        "--cache-dir",
        str(tmp_path / "c"),
        "torch; python_version < '3'",
    ]
    # A requirement whose marker does not hold is left out with a warning; -q hides it.
    plain = _cli(*args, "jinja2")
    assert plain.exit_code == 0 and "leaving out" in plain.stderr
    quiet = _cli(*args, "jinja2", "-q")
    assert quiet.exit_code == 0 and quiet.stderr == ""


def test_the_command_list_has_whole_summaries() -> None:
    result = CliRunner().invoke(main, ["--help"], terminal_width=80)
    commands = result.stdout.split("Commands:\n", 1)[1].splitlines()
    assert len(commands) == len(main.commands)
    for line in commands:
        assert len(line) <= 80 and not line.endswith("..."), line
        name = line.split()[0]
        assert line.split(None, 1)[1] == main.commands[name].short_help, line


def test_without_pip_the_standard_public_index_is_used_and_shown(tmp_path: Path) -> None:
    """An environment made by uv has no pip: its default index is read from the pip wheel
    Python bundles (``ensurepip``), and ``config show`` says so."""
    from pip._internal.models.index import PyPI  # the expected URL, from pip itself

    code = "import sys; sys.modules['pip'] = None; from wheelcache.cli.main import main; main()"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WHEELCACHE_", "PIP_"))}
    env.update(PIP_CONFIG_FILE=os.devnull, WHEELCACHE_CONFIG=os.devnull)
    proc = subprocess.run(
        [sys.executable, "-c", code, "config", "show", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    rows = {r["setting"]: r for r in json.loads(proc.stdout)}
    assert rows["fetch.index-url"]["value"] == [PyPI.simple_url]
    assert rows["fetch.index-url"]["origin"] == (
        "the standard public index (no pip here: pip's default, read from ensurepip)"
    )
