"""``wheelcache config show``: every setting, its value and where the value comes from."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

import click

from wheelcache.cli.options import config_keys
from wheelcache.config import (
    DATA_TABLES,
    config_default_map,
    config_file_path,
    default_cache_dir,
    pip_index_urls,
    read_config_file,
)
from wheelcache.errors import WheelcacheError

__all__ = ["register", "settings_report"]


def _origin_of(
    param: click.Option, section: Mapping[str, Any], path: str, environ: Mapping[str, str]
) -> tuple[Any, str]:
    """The value the option would take without a flag, and its origin."""
    assert param.name is not None
    raw = param.envvar
    envvars: list[str] = [raw] if isinstance(raw, str) else list(raw or [])
    for var in envvars:
        if var and var in environ:
            return environ[var], f"environment {var}"
    if param.name in section:
        return section[param.name], f"config file {path}"
    default = param.default
    if callable(default):
        default = default()
    if default is None or type(default).__name__ == "Sentinel":  # click's "no default"
        return None, "not set"
    return default, "default"


def settings_report(
    group: click.Group, environ: Mapping[str, str] = os.environ
) -> list[dict[str, Any]]:
    """One entry per (command, option): name, value, origin (flags win over all of these)."""
    path = config_file_path(environ)
    data = read_config_file(path)
    sections = config_default_map(data, path, config_keys(group))
    rows: list[dict[str, Any]] = []
    ctx = click.Context(group)
    for cmd_name in group.list_commands(ctx):  # a lazy group imports each command here
        cmd = group.get_command(ctx, cmd_name)
        if cmd is None:
            continue
        section = sections.get(cmd_name, {})
        for param in cmd.params:
            if not isinstance(param, click.Option) or param.name in ("help", "as_json"):
                continue
            key = next((o[2:] for o in param.opts if o.startswith("--")), str(param.name))
            if param.is_flag and not param.envvar and param.name not in section:
                continue  # plain switches have nothing to configure
            value, origin = _origin_of(param, section, str(path), environ)
            if param.name == "cache_dir" and value is None:
                value, origin = str(default_cache_dir()), "default (platformdirs)"
            if cmd_name in ("fetch", "serve") and param.name == "index_url" and value is None:
                try:
                    urls, pip_origin = pip_index_urls(environ)
                    value, origin = urls, pip_origin
                except WheelcacheError as exc:
                    value, origin = None, str(exc)
            if isinstance(value, tuple):
                value = list(value)
            rows.append(
                {
                    "setting": f"{cmd_name}.{key}",
                    "value": value,
                    "origin": origin,
                }
            )
    rows.append(
        {
            "setting": "config-file",
            "value": str(path),
            "origin": "environment WHEELCACHE_CONFIG"
            if "WHEELCACHE_CONFIG" in environ
            else "default (platformdirs)",
        }
    )
    mirrors = data.get(DATA_TABLES[0], {})
    for name, table in sorted(mirrors.items() if isinstance(mirrors, dict) else ()):
        if isinstance(table, dict):
            rows.append(
                {"setting": f"mirrors.{name}", "value": table, "origin": f"config file {path}"}
            )
    return rows + _proxy_rows(environ)


def _proxy_rows(environ: Mapping[str, str]) -> list[dict[str, Any]]:
    """The proxy variables set, read as the transport reads them (a lower-case one wins over
    its upper case, even set empty) and shown without their passwords."""
    from wheelcache.net.http11 import environment_proxies, without_credentials

    used = environment_proxies(environ)
    rows: list[dict[str, Any]] = []
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        lower, short = var.lower(), var.lower().removesuffix("_proxy")
        for key in (var, lower):
            if key not in environ:
                continue
            value = environ[key].strip()
            if value and used.get(short) == value:
                origin = f"environment {key}"
            elif value:
                origin = f"environment {key} (not used: {lower} is set)"
            elif key == lower:
                origin = f"environment {key} (set empty: no {short} proxy)"
            else:
                continue
            rows.append(
                {"setting": f"proxy.{key}", "value": without_credentials(value), "origin": origin}
            )
    return rows


def register(group: click.Group) -> None:
    """Add ``config show`` to *group*."""

    @group.group("config", short_help="Show every setting and where it comes from.")
    def config_group() -> None:
        """Show the settings and where they come from."""

    @config_group.command("show")
    @click.option("--json", "as_json", is_flag=True, help="One JSON list on stdout.")
    def show_command(as_json: bool) -> None:
        """Every setting with its value and origin (flag > environment > config file >
        default; flags are per run, so they are not shown)."""
        rows = settings_report(group)
        if as_json:
            click.echo(json.dumps(rows, indent=2))
            return
        width = max(len(r["setting"]) for r in rows)
        for r in rows:
            value = r["value"]
            shown = " ".join(map(str, value)) if isinstance(value, list) else value
            shown = "-" if shown is None else shown
            click.echo(f"{r['setting']:<{width}}  {shown}   ({r['origin']})")
