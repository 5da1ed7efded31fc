"""Commands that carry wheels to offline hosts: ``export``, ``import`` and ``verify`` (of a
bundle, or of the cache).  Thin: parse, call one library function of :mod:`wheelcache.bundle`,
render.  Findings (a corrupt file, a refused wheel) print one per line and end in exit 1.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from wheelcache.bundle.export import ExportResult, export_bundle
from wheelcache.bundle.importer import import_bundle, verify_bundle
from wheelcache.bundle.select import read_inventory, select_wheels
from wheelcache.bundle.verify_script import (
    INCOMPLETE_MARKER,
    MANIFEST,
    REPAIR,
    format_problem,
    short_fingerprint,
)
from wheelcache.cli.options import (
    CUDA_OR_AUTO,
    VARIANT,
    cache_dir_option,
    command_line,
    existing_cache,
    requirement_option,
    variant_choice,
    writable_cache,
)
from wheelcache.config import host_platform, host_python
from wheelcache.core.layout import CacheLayout
from wheelcache.core.target import Target, make_target
from wheelcache.core.units import human_size
from wheelcache.errors import BundleError
from wheelcache.host.targetfile import TargetDescription, read_target_description
from wheelcache.store.cache import Cache
from wheelcache.store.maintenance import verify_cache

__all__ = ["register"]

F = TypeVar("F", bound=Callable[..., Any])


def _this_machine() -> Target:
    plat, glibc = host_platform()
    return make_target(python=host_python(), platform=plat, glibc=glibc)


def _target_arg(value: str | None) -> tuple[TargetDescription | None, str | None]:
    """``--target``: a probe file (exact tags), else the text of a target the cache recorded."""
    if value is None:
        return None, None
    if Path(value).is_file() or value.lower().endswith(".json"):  # a missing file is named
        return read_target_description(value), None
    return None, value


def _expect_option(func: F) -> F:
    return click.option(
        "--expect",
        metavar="FINGERPRINT",
        help="The bundle fingerprint `wheelcache export` printed; a bundle that differs is "
        "refused.",
    )(func)


def _render_export(result: ExportResult, requested: tuple[str, ...]) -> None:
    out = click.echo
    delta = f", {result.left_out} left out (the other side has them)" if result.left_out else ""
    out(
        f"Bundle in {result.dest}: {result.wheels} wheels{delta}, {result.files} files, "
        f"{human_size(result.size)}; {result.copied} written, {result.reused} already there "
        "and verified; every file read back and checked."
    )
    if result.removed:
        out(f"Removed {result.removed} files of an earlier export that are no longer selected.")
    short = short_fingerprint(result.fingerprint)
    out(
        f"\nBundle fingerprint: {short}\n  Write it down or send it apart from the stick (a "
        "note, a message, a phone call): whoever holds it can tell this bundle from one "
        "changed on the way."
    )
    out("\nOn the offline host:")
    out(f"  python verify.py --expect {short}   check the copy (Python 3.8+, no wheelcache)")
    extra = " --find-links DIR" if result.left_out else ""
    if result.install_scripts:
        out(f"  install.bat | install.ps1 | sh install.sh{extra}   install with pip alone")
    else:
        out(
            "  python -m pip install --no-index --find-links wheels --require-hashes "
            f"-r FILE{extra}"
        )
        out(
            f"        FILE: the host's own of {', '.join(result.requirement_files)} (wheels for "
            "several targets, so no install scripts; see README.txt)"
        )
    for lock in result.lock_files:
        out(f"  python -m pip install --no-index -r {lock}   or uv pip install --offline -r …")
    if result.left_out:
        out(
            f"        DIR: a folder with the {result.left_out} wheel(s) left out, such as that "
            "host's <cache>/wheels-v1 after wheelcache import of this bundle"
        )
    out(f"  wheelcache import DIR --expect {short}   or add the wheels to that host's cache")
    if requested:
        out(f"\nSelected: {' '.join(requested)}")


@click.command("export", short_help="Write a self-checking bundle for an offline host.")
@click.argument("dest", type=click.Path(file_okay=False, path_type=Path))
@click.argument("requirements", nargs=-1)
@requirement_option(
    "The wheels FILE names: a requirements file (fetch writes a hash-pinned one per target) "
    "or a PEP 751 lock (for a known target, the wheels it gives that target). Repeatable.",
    old="--lock",
)
@click.option("--all", "everything", is_flag=True, help="Every wheel in the cache.")
@click.option(
    "--target",
    "target_value",
    metavar="FILE|TEXT",
    help="A target file from `wheelcache probe`, or a target the cache recorded "
    "(as `wheelcache ls` shows it, e.g. 'cp39-win_amd64 (cu118)').",
)
@click.option(
    "--cuda",
    type=CUDA_OR_AUTO,
    metavar="VER",
    help="The PyTorch CUDA variant: 118, 11.8 or cu118; "
    "'auto' picks the newest build in the cache that the target file's driver "
    "runs.",
)
@click.option("--cpu", is_flag=True, help="The CPU-only PyTorch variant.")
@click.option(
    "--variant", type=VARIANT, metavar="NAME", help="Any PyTorch variant: cu118, cpu, rocm6.1 …"
)
@click.option(
    "--exclude-present",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    metavar="INVENTORY",
    help="`wheelcache ls --json` from the offline host: leave out what it has.",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object on stdout.")
@cache_dir_option
def export_command(
    dest: Path,
    requirements: tuple[str, ...],
    requirement_files: tuple[Path, ...],
    everything: bool,
    target_value: str | None,
    cuda: str | None,
    cpu: bool,
    variant: str | None,
    exclude_present: Path | None,
    as_json: bool,
    cache_dir: Path | None,
) -> None:
    """Write a self-checking bundle of cached wheels to DEST (a folder, e.g. a USB stick).

    REQUIREMENTs are pins like torch==2.4.0+cu118; their whole dependency closure comes
    along, resolved over the cache (no network).  When the cache holds several PyTorch
    variants that fit the target, name one (--cuda, --cpu, --variant).
    """
    if sum(map(bool, (requirements, requirement_files, everything))) != 1:
        raise click.UsageError("give REQUIREMENTs, -r FILE or --all (one of them)")
    chosen_variant = variant_choice(cuda, cpu, variant)
    cache = existing_cache(cache_dir)
    description, text = _target_arg(target_value)
    selection = select_wheels(
        cache,
        requirements=requirements,
        lock=requirement_files,
        everything=everything,
        description=description,
        target_text=text,
        variant=chosen_variant,
        fallback=_this_machine() if requirements else None,
    )
    exclude = read_inventory(exclude_present) if exclude_present else frozenset()

    def progress(rel: str, done: int, total: int) -> None:
        if done == 0 and rel.startswith("wheels/") and rel.endswith(".whl") and not as_json:
            click.echo(f"copying {rel[7:]} ({human_size(total)})", err=True)

    result = export_bundle(
        cache,
        dest,
        selection,
        exclude=exclude,
        progress=progress,
        inventory_name=exclude_present.name if exclude_present else None,
    )
    if as_json:
        data = {k: str(v) if isinstance(v, Path) else v for k, v in vars(result).items()}
        click.echo(
            json.dumps(
                {
                    **data,
                    "requested": list(selection.requested),
                    "targets": list(selection.targets),
                },
                indent=2,
            )
        )
    else:
        _render_export(result, selection.requested)


@click.command("import", short_help="Add a bundle's wheels to this machine's cache.")
@click.argument("src", type=click.Path(file_okay=False, exists=True, path_type=Path))
@_expect_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object on stdout.")
@cache_dir_option
@click.pass_context
def import_command(
    ctx: click.Context, src: Path, expect: str | None, as_json: bool, cache_dir: Path | None
) -> None:
    """Verify the bundle SRC and add its wheels to this machine's cache.

    Damaged wheels are refused and named; the good ones are still imported (exit 1 if
    any was refused).  With --expect, a bundle whose fingerprint differs is refused whole.
    """
    cache = writable_cache(cache_dir)
    res = import_bundle(cache, src, expect=expect)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "imported": list(res.imported),
                    "present": list(res.present),
                    "refused": [p._asdict() for p in res.refused],
                    "problems": [p._asdict() for p in res.problems],
                    "absent": list(res.absent),
                },
                indent=2,
            )
        )
    else:
        for p in res.refused:
            click.echo(f"REFUSED   {format_problem(p)}")
        for p in res.problems:
            click.echo(format_problem(p))
        click.echo(
            f"Imported {len(res.imported)} wheels into {cache.root}; "
            f"{len(res.present)} were already there; {len(res.refused)} refused."
        )
        if res.absent:
            click.echo(
                f"Warning: this delta bundle expects {len(res.absent)} wheel(s) this "
                f"cache lacks: {', '.join(res.absent[:5])}"
            )
        if res.requirements is not None and res.ok:  # not after a refusal: it would fail
            cmd = [
                "pip",
                "install",
                "--no-index",
                "--find-links",
                str(cache.layout.wheels),
                "--require-hashes",
                "-r",
                str(res.requirements),
            ]
            click.echo("Install from the cache with:\n  " + command_line(cmd))
    if not res.ok:
        click.echo(f"wheelcache: error: {len(res.refused)} wheel(s) refused", err=True)
        ctx.exit(1)


@click.command("verify", short_help="Check a bundle or the cache, file by file.")
@click.argument("path", required=False, type=click.Path(path_type=Path))
@_expect_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object on stdout.")
@cache_dir_option
@click.pass_context
def verify_command(
    ctx: click.Context,
    path: Path | None,
    expect: str | None,
    as_json: bool,
    cache_dir: Path | None,
) -> None:
    """Check a bundle (PATH) or the cache (no PATH): every missing, extra, truncated or
    corrupt file is named; corrupt cache blobs are moved to quarantine-v1/."""
    if path is not None and not os.path.lexists(path):
        raise BundleError(f"{path} does not exist; give the folder of a bundle or a cache")
    is_bundle = path is not None and (
        os.path.lexists(path / MANIFEST) or os.path.lexists(path / INCOMPLETE_MARKER)
    )
    if expect is not None and not is_bundle:
        raise click.UsageError("--expect checks a bundle: give the bundle's folder as PATH")
    if path is not None and is_bundle:
        report = verify_bundle(path, expect=expect)
        if as_json:
            click.echo(
                json.dumps(
                    {
                        "ok": report.ok,
                        "files": report.files,
                        "size": report.size,
                        "fingerprint": report.fingerprint,
                        "checked": ["size", "sha256", "blake3"],
                        "problems": [p._asdict() for p in report.problems],
                    },
                    indent=2,
                )
            )
        else:
            for p in report.problems:
                click.echo(format_problem(p))
            if report.ok:
                click.echo(
                    f"OK: all {report.files} files ({human_size(report.size)}) of "
                    f"{path} match the manifest (size, sha256, blake3); bundle fingerprint "
                    f"{short_fingerprint(report.fingerprint)}"
                    + (" matches --expect" if expect else "")
                )
        if not report.ok:
            click.echo(
                f"wheelcache: error: {len(report.problems)} problem(s) in {path}; {REPAIR}",
                err=True,
            )
            ctx.exit(1)
        return
    if path is not None and not Path(CacheLayout(path).catalog).is_file():
        raise BundleError(
            f"{path} is neither a wheelcache bundle (no {MANIFEST}) nor a wheelcache cache"
        )
    cache = Cache(path.resolve()) if path is not None else existing_cache(cache_dir)
    res = verify_cache(cache)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "ok": res.ok,
                    "checked": res.checked,
                    "size": res.size,
                    "problems": [vars(p) for p in res.problems],
                },
                indent=2,
            )
        )
    else:
        for cp in res.problems:
            click.echo(f"{cp.kind.upper():<9} {cp.filename}: {cp.detail}")
        bad = sum(p.is_error for p in res.problems)
        click.echo(
            f"{'OK' if res.ok else 'FAILED'}: checked {res.checked} wheels "
            f"({human_size(res.size)}) in {cache.root}" + (f"; {bad} bad" if bad else "")
        )
    if not res.ok:
        ctx.exit(1)


def _register_bundle_commands(group: click.Group) -> None:
    group.add_command(export_command)
    group.add_command(import_command)
    group.add_command(verify_command)


def register(group: click.Group) -> None:
    """Add this module's commands to *group*."""
    _register_bundle_commands(group)
