"""Commands that look after the cache: ``ls``, ``rm``, ``gc`` and ``info``
(:mod:`wheelcache.store.maintenance`, :mod:`wheelcache.store.gc`); registered by cli.

Thin, as every command: parse, call one library function, render.  Commands that only look at
a cache refuse a ``--cache-dir`` that is not a cache instead of creating an empty one there
(:func:`~wheelcache.cli.options.existing_cache`): a typo would otherwise show "0 wheels".
Paths are shown resolved, so a relative ``--cache-dir`` says where it really is.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from wheelcache.cli.options import (
    AGE,
    SIZE,
    cache_dir_option,
    existing_cache,
)
from wheelcache.core.units import human_size
from wheelcache.store.gc import GcResult, collect_garbage
from wheelcache.store.maintenance import cache_info, list_wheels, remove_wheels

__all__ = ["register"]


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts))


@click.command("ls", short_help="List the cached wheels and their targets.")
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="One JSON object on stdout (an inventory for `export --exclude-present`).",
)
@click.option("--project", metavar="NAME", help="Only this project.")
@click.option(
    "--target",
    "target_text",
    metavar="TEXT",
    help="Only wheels fetched for a target containing TEXT (e.g. cu118).",
)
@click.option("-l", "--long", "long_", is_flag=True, help="Origin URL, digests, dates.")
@cache_dir_option
def ls_command(
    as_json: bool,
    project: str | None,
    target_text: str | None,
    long_: bool,
    cache_dir: Path | None,
) -> None:
    """List the cached wheels and the targets they were fetched for."""
    cache = existing_cache(cache_dir)
    wheels = list_wheels(cache, project=project, target=target_text)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "format": "wheelcache-inventory",
                    "version": 1,
                    "cache": str(cache.root),
                    "wheels": [w.to_dict() for w in wheels],
                },
                indent=2,
            )
        )
        return
    width = max((len(w.row.filename) for w in wheels), default=8)
    for w in wheels:
        r = w.row
        missing = "" if w.present else "  (blob missing: run wheelcache verify)"
        click.echo(
            f"{r.filename:<{width}}  {human_size(r.size):>10}  {_when(r.fetched_at)}"
            f"  {', '.join(w.targets) or '-'}{missing}"
        )
        if long_:
            click.echo(f"    {r.project} {r.version}; from {r.url}; used {_when(r.used_at)}")
            click.echo(f"    sha256 {r.sha256}  blake3 {r.blake3}  ({r.hash_origin} hash)")
    total = sum(w.row.size for w in wheels)
    click.echo(f"{len(wheels)} wheels, {human_size(total)}", err=True)


@click.command("rm", short_help="Remove wheels from the cache.")
@click.argument("specs", nargs=-1, required=True, metavar="SPEC...")
@click.option("--dry-run", is_flag=True, help="Show what would be removed.")
@cache_dir_option
def rm_command(specs: tuple[str, ...], dry_run: bool, cache_dir: Path | None) -> None:
    """Remove wheels: SPEC is a filename, a project name, or name==version."""
    cache = existing_cache(cache_dir)
    for spec in specs:
        res = remove_wheels(cache, spec, dry_run=dry_run)
        verb = "would remove" if dry_run else "removed"
        for row in res.removed:
            click.echo(f"{verb} {row.filename} ({human_size(row.size)})")
        for row in res.busy:
            click.echo(f"kept {row.filename}: another wheelcache process is using it")


@click.command("gc", short_help="Remove stale partials and least recently used wheels.")
@click.option(
    "--max-size",
    type=SIZE,
    metavar="SIZE",
    help="Evict least recently used wheels until they fit (e.g. 20G).",
)
@click.option(
    "--older-than",
    type=AGE,
    metavar="AGE",
    help="Remove wheels unused and partial downloads untouched for AGE (90d, "
    "12h); partials default to 30d.",
)
@click.option("--dry-run", is_flag=True, help="Show what would be removed.")
@cache_dir_option
def gc_command(
    max_size: int | None, older_than: float | None, dry_run: bool, cache_dir: Path | None
) -> None:
    """Remove stale partial downloads, unreferenced blobs, then least recently used
    wheels; safe while fetch or serve run."""
    res = collect_garbage(
        existing_cache(cache_dir), max_size=max_size, older_than=older_than, dry_run=dry_run
    )
    _render_gc(res, dry_run)


@click.command("info", short_help="Where the cache is, its size and what it holds.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object on stdout.")
@cache_dir_option
def info_command(as_json: bool, cache_dir: Path | None) -> None:
    """Where the cache is, its size, and how many wheels, blobs, partials and pages."""
    i = cache_info(existing_cache(cache_dir))
    if as_json:
        click.echo(json.dumps(i.to_dict(), indent=2))
        return
    free = f" ({human_size(i.free)} free on that disk)" if i.free is not None else ""
    for label, text in (
        ("Location", str(i.root)),
        ("Size", f"{human_size(i.total_size)} on disk{free}"),
        ("Wheels", f"{i.wheels} ({human_size(i.wheels_size)})"),
        ("Blobs", f"{i.blobs} ({human_size(i.blobs_size)})"),
        ("Partials", f"{i.partials} ({human_size(i.partials_size)}) resumable downloads"),
        ("Pages", f"{i.pages} cached index pages ({human_size(i.pages_size)})"),
        ("Quarantine", f"{i.quarantined} damaged files moved aside by verify"),
    ):
        click.echo(f"{label + ':':<12}{text}")


def _register_care_commands(group: click.Group) -> None:
    group.add_command(ls_command)
    group.add_command(rm_command)
    group.add_command(gc_command)
    group.add_command(info_command)


def _render_gc(res: GcResult, dry_run: bool) -> None:
    verb = "Would remove" if dry_run else "Removed"
    parts = [
        f"{len(res.partials)} stale partial download(s)",
        f"{len(res.orphans)} unreferenced blob(s)",
        f"{len(res.evicted)} wheel(s)",
    ]
    if res.temp_files or res.views or res.metadata:
        parts.append(f"{res.temp_files + res.views + res.metadata} leftover file(s)")
    if res.records:
        parts.append(f"{res.records} remembered resolution(s) of wheels now gone")
    click.echo(
        f"{verb} {', '.join(parts)}; {'would free' if dry_run else 'freed'} "
        f"{human_size(res.freed)}. Wheels now take {human_size(res.size_after)}."
    )
    for row in res.evicted:
        click.echo(f"  {row.filename} (last used {_when(row.used_at)})")
    if res.partials_busy:
        click.echo(f"Kept {len(res.partials_busy)} partial download(s) a running fetch holds.")
    if res.kept_recent:
        click.echo(
            f"Kept {res.kept_recent} wheel(s) used in the last 15 minutes (a running "
            "fetch may be handing them out)."
        )


def register(group: click.Group) -> None:
    """Add this module's commands to *group*."""
    _register_care_commands(group)
