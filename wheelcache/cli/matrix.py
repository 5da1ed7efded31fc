"""``wheelcache matrix``: which torch/torchvision/torchaudio sets the index has for a target."""

from __future__ import annotations

import json
from pathlib import Path

import click

from wheelcache.cli.options import CUDA, PLATFORM, PYTHON, VARIANT, cache_dir_option
from wheelcache.config import default_cache_dir
from wheelcache.core.target import parse_python
from wheelcache.core.variants import DEFAULT_TORCH_INDEX, KNOWN_VARIANTS
from wheelcache.jobs.matrix import VariantMatrix, build_matrix, filter_rows, platform_family
from wheelcache.net.client import HttpSettings, http_session
from wheelcache.store.cache import Cache

__all__ = ["register"]


def _pythons(pys: tuple[str, ...]) -> str:
    """``cp38, cp39, cp310`` → ``cp38–cp310`` (runs of consecutive minors joined)."""
    parts: list[list[str]] = []
    last: int | None = None
    for p in pys:
        minor = (
            int(p[3:].rstrip("t")) if p.startswith("cp3") and p[3:].rstrip("t").isdigit() else None
        )
        if (
            parts
            and minor is not None
            and last is not None
            and minor == last + 1
            and not p.endswith("t")
            and not parts[-1][-1].endswith("t")
        ):
            parts[-1].append(p)
        else:
            parts.append([p])
        last = minor
    return ", ".join(run[0] if len(run) == 1 else f"{run[0]}–{run[-1]}" for run in parts)


def _render(matrices: list[VariantMatrix]) -> None:
    if not any(m.rows for m in matrices):
        click.echo("No torch/torchvision/torchaudio set matches these filters.")
        return
    for m in matrices:
        if not m.rows:
            continue
        plats = sorted({p for r in m.rows for p in r.available})
        click.echo(f"{m.variant}  ({m.index})" if m.variant else m.index)
        head = ["torch", "torchvision", "torchaudio", *plats]
        table = [head] + [
            [
                r.torch,
                r.torchvision or "-",
                r.torchaudio or "-",
                *(_pythons(r.available[p]) if p in r.available else "-" for p in plats),
            ]
            for r in m.rows
        ]
        widths = [max(len(row[i]) for row in table) for i in range(len(head))]
        for row in table:
            click.echo("  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))
        click.echo()


@click.command("matrix", short_help="Which torch/torchvision/torchaudio sets exist.")
@click.option(
    "--cuda", type=CUDA, multiple=True, metavar="VER", help="CUDA variant(s): 118, 12.1 …"
)
@click.option("--cpu", is_flag=True, help="The CPU variant.")
@click.option("--variant", type=VARIANT, multiple=True, metavar="NAME", help="Any variant(s).")
@click.option(
    "--py", "python", type=PYTHON, metavar="VER", help="Only sets with wheels for this Python."
)
@click.option(
    "--platform",
    "platform_tag",
    type=PLATFORM,
    metavar="TAG",
    help="Only sets for this platform (win_amd64, linux_x86_64, …).",
)
@click.option(
    "--torch-index",
    metavar="URL",
    default=DEFAULT_TORCH_INDEX,
    show_default=True,
    envvar="WHEELCACHE_TORCH_INDEX",
)
@cache_dir_option
@click.option("--offline", is_flag=True, help="From cached pages only.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object on stdout.")
def matrix_command(
    cuda: tuple[str, ...],
    cpu: bool,
    variant: tuple[str, ...],
    python: str | None,
    platform_tag: str | None,
    torch_index: str,
    cache_dir: Path | None,
    offline: bool,
    as_json: bool,
) -> None:
    """Which torch/torchvision/torchaudio sets exist (versions × Pythons × platforms)."""
    variants = [*cuda, *variant]
    variants += ["cpu"] if cpu else []
    explicit = bool(variants)
    if not variants:
        variants = list(KNOWN_VARIANTS)  # every variant the index turns out to have
    py = None
    if python:
        (major, minor), free = parse_python(python)
        py = f"cp{major}{minor}{'t' if free else ''}"
    plat = platform_family(platform_tag.strip().lower()) if platform_tag else None
    with http_session(HttpSettings(), offline=offline) as http:  # one per command
        matrices = build_matrix(
            list(dict.fromkeys(variants)),
            torch_index=torch_index,
            cache=Cache(cache_dir or default_cache_dir()),
            http=http,
            explicit=explicit,
        )
    matrices = filter_rows(matrices, python=py, platform=plat)
    if as_json:
        data = {
            "filters": {"python": py, "platform": plat},
            "variants": [m.to_dict() for m in matrices],
        }
        click.echo(json.dumps(data, indent=2))
    else:
        _render(matrices)


def register(group: click.Group) -> None:
    """Add ``matrix`` to *group*."""
    group.add_command(matrix_command)
