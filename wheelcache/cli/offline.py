"""Commands of the offline family; registered on the main group by :mod:`wheelcache.cli.main`.

``probe`` describes this machine as a target file (or writes the standalone probe script for
hosts without wheelcache); ``detect`` shows this machine as a target and the ``fetch`` flags it
implies.  Both run the very functions of
:mod:`wheelcache.host.probe_script`, so what wheelcache says
here is what the script says on a host without it.
"""

from __future__ import annotations

import json
import os
from importlib import resources
from pathlib import Path
from typing import Any

import click

from wheelcache.cli.options import command_line
from wheelcache.core.cuda import auto_variant, gpu_warning
from wheelcache.errors import TargetError
from wheelcache.host import probe_script
from wheelcache.host.targetfile import (
    TargetDescription,
    parse_target_description,
)

__all__ = ["SCRIPT_NAME", "register", "write_probe_script"]

#: File name of the standalone probe (``wheelcache probe --write-script DIR``).
SCRIPT_NAME = "wheelcache-probe.py"


def write_probe_script(path: str | os.PathLike[str]) -> Path:
    """Write the standalone probe to *path*; a directory (or a path ending in a separator,
    created if missing) gets ``wheelcache-probe.py``."""
    text_path = os.fspath(path)
    dest = Path(text_path)
    if text_path.endswith(("/", os.sep)) or dest.is_dir():
        try:
            dest.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise TargetError(f"cannot create {dest}: {exc.strerror or exc}") from exc
        dest = dest / SCRIPT_NAME
    text = (
        resources.files("wheelcache.host").joinpath("probe_script.py").read_text(encoding="utf-8")
    )
    _write_text(dest, text)
    if os.name != "nt":
        dest.chmod(0o755)  # it has a shebang: ./wheelcache-probe.py works too
    return dest


def _write_text(dest: Path, text: str) -> None:
    """Write through a temporary file and rename, so a full disk never leaves half a file."""
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
        os.replace(tmp, dest)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise TargetError(f"cannot write {dest}: {exc.strerror or exc}") from exc


def _describe(desc: TargetDescription) -> list[tuple[str, str]]:
    py = f"CPython {desc.python_version} ({desc.abi})"
    system = {"linux": "Linux", "windows": "Windows", "macos": "macOS"}[desc.system]
    if desc.macos:
        system += f" {desc.macos[0]}.{desc.macos[1]}"
    libc = ""
    if desc.glibc:
        libc = f", glibc {desc.glibc[0]}.{desc.glibc[1]}"
    elif desc.musl:
        libc = f", musl {desc.musl[0]}.{desc.musl[1]}"
    plat = f"{system} {desc.machine}{libc} (best tag {desc.tags[0]}; {len(desc.tags)} tags)"
    if desc.driver_version:
        gpus = ", ".join(
            f"{g.name} (compute capability {g.compute_capability or '?'})" for g in desc.gpus
        )
        nvidia = f"driver {desc.driver_version}: {gpus}"
    elif desc.nvidia_error:
        nvidia = f"no driver version: {desc.nvidia_error}"
    else:
        nvidia = "no NVIDIA driver (nvidia-smi not found)"
    return [("Python", py), ("Platform", plat), ("NVIDIA", nvidia)]


def _fetch_args(desc: TargetDescription) -> tuple[list[str], str, str]:
    """The ``wheelcache fetch`` flags that describe *desc*: (flags, variant, why that variant)."""
    py = f"{desc.python[0]}.{desc.python[1]}" + ("t" if desc.abi.endswith("t") else "")
    args = ["--py", py]
    linux_plat = next((p for p in desc.platforms if p.startswith("linux_")), None)
    if desc.system == "linux" and desc.glibc is not None and linux_plat:
        args += ["--platform", linux_plat, "--glibc", f"{desc.glibc[0]}.{desc.glibc[1]}"]
    elif desc.platform_tag or desc.platforms:
        args += ["--platform", desc.platform_tag or desc.platforms[0]]
    variant, reason = auto_variant(desc.system, desc.driver_version, desc.nvidia_error)
    if variant == "cpu":
        return [*args, "--cpu"], variant, reason
    return [*args, "--cuda", variant[2:]], variant, reason


@click.command("probe", short_help="Describe this machine as a target file.")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the target description here (default: stdout).",
)
@click.option(
    "--write-script",
    type=click.Path(),
    metavar="PATH",
    help=f"Write the standalone probe ({SCRIPT_NAME}, Python 3.8+, standard library only) "
    "to PATH (a file or a directory) for a host without wheelcache.",
)
@click.option("--no-nvidia", is_flag=True, help="Do not run nvidia-smi.")
def probe_command(output: Path | None, write_script: str | None, no_nvidia: bool) -> None:
    """Describe this machine as a target file for `wheelcache fetch --target`."""
    if write_script is not None:
        dest = write_probe_script(write_script)
        click.echo(
            f"Wrote {dest}. On the target run: python {dest.name} --output target.json",
            err=True,
        )
        if output is None:
            return
    text = probe_script.dumps(probe_script.probe(nvidia=not no_nvidia))
    if output is None:
        click.echo(text, nl=False)
        return
    _write_text(output, text)
    click.echo(f"Wrote {output}; fetch for it with: wheelcache fetch --target {output}", err=True)


@click.command("detect", short_help="Show this machine as a target, and its fetch flags.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object on stdout.")
def detect_command(as_json: bool) -> None:
    """Show this machine as a target and the `wheelcache fetch` flags it implies."""
    data = probe_script.probe()
    desc = parse_target_description(data, source="this machine")
    args, variant, reason = _fetch_args(desc)
    warning = gpu_warning(desc.gpus, None, variant)
    if as_json:
        result: dict[str, Any] = {
            "target": data,
            "fetch_args": args,
            "variant": variant,
            "reason": reason,
            "warning": warning,
        }
        click.echo(json.dumps(result, indent=2))
        return
    for label, text in [*_describe(desc), ("Variant", f"{variant}: {reason}")]:
        click.echo(f"{label + ':':<10}{text}")
    if warning:
        click.echo(f"{'Warning:':<10}{warning}")
    click.echo("\nFetch for this machine with:")
    click.echo("  " + command_line(["wheelcache", "fetch", *args]))
    click.echo("or carry a target file: wheelcache probe --output target.json")


def register(group: click.Group) -> None:
    """Add this module's commands to *group*."""
    group.add_command(probe_command)
    group.add_command(detect_command)
