"""A PyTorch-style wheel universe served from three local origins, like the real index.

* ``index``: ``/whl/{variant}/`` and ``/whl/{variant}/{project}/`` PEP 503 pages whose links
  point to absolute URLs on ``cdn`` (``%2B`` in hrefs, ``+`` in text, PEP 658 attributes on
  some files, ``#sha256`` missing on the aarch64 files, root-level wheels on every variant).
* ``cdn``: the torch-family wheels, their ``.metadata`` files and ``/flat/{variant}/``
  find-links listings.
* ``deps``: a PyPI-like ``/simple/`` index (PEP 503 HTML + PEP 691 JSON) with everything else.

The tables below are the single source of truth; tests may read them (``FILES`` lists every
file with its page/URL properties, ``newest_complete_release`` answers the torch/vision/audio
question from the same data).
"""

from __future__ import annotations

import hashlib
import html
import json
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import quote

from packaging.utils import canonicalize_name
from packaging.version import Version

from .httpserver import FileServer
from .wheels import build_sdist, build_wheel, metadata_bytes, sdist_filename, wheel_filename

MiB = 1024 * 1024
BIG_PAYLOAD = 4 * MiB  # the two cut-able torch wheels below
MEDIUM_PAYLOAD = 1 * MiB  # one deps wheel without .metadata, for range-read tests
TIMESTAMP = 1722470400  # <!--TIMESTAMP n--> trailer on index pages
UPLOAD_TIME = "2026-04-06T12:00:00Z"

VARIANTS = ("cu118", "cu121", "cpu")
PYTHONS = ("cp38", "cp39", "cp310", "cp311", "cp312")
TORCH_PLATFORMS = ("win_amd64", "linux_x86_64")  # local-version wheels on every variant
MAC_PLATFORM = "macosx_11_0_arm64"  # cpu page only, no local version
ROOT_PLATFORM = "manylinux2014_aarch64"  # under /whl/, no local version, on every variant page
FAMILY = ("torch", "torchvision", "torchaudio")

# torch version -> (torchvision, torchaudio, Pythons with wheels)
RELEASES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "2.3.1": ("0.18.1", "2.3.1", PYTHONS),
    "2.4.0": ("0.19.0", "2.4.0", PYTHONS),
    "2.5.1": ("0.20.1", "2.5.1", PYTHONS[1:]),  # no cp38 at all
}
#: The closure a cu118 / cp39 / win_amd64 fetch of torch 2.4.0 must produce (no nvidia, no triton).
WIN_CU118_PY39 = {
    "torch-2.4.0+cu118-cp39-cp39-win_amd64.whl",
    "torchvision-0.19.0+cu118-cp39-cp39-win_amd64.whl",
    "torchaudio-2.4.0+cu118-cp39-cp39-win_amd64.whl",
    "filelock-3.16.1-py3-none-any.whl",
    "typing_extensions-4.12.2-py3-none-any.whl",
    "sympy-1.13.1-py3-none-any.whl",
    "mpmath-1.3.0-py3-none-any.whl",
    "networkx-3.2.1-py3-none-any.whl",
    "jinja2-3.1.4-py3-none-any.whl",
    "MarkupSafe-2.1.5-cp39-cp39-win_amd64.whl",
    "fsspec-2024.6.1-py3-none-any.whl",
    "numpy-2.0.2-cp39-cp39-win_amd64.whl",
    "pillow-10.4.0-cp39-cp39-win_amd64.whl",
}
# (project, torch release, variant, python, platform) that do NOT exist
MISSING: frozenset[tuple[str, str, str, str, str]] = frozenset(
    {
        ("torchaudio", "2.5.1", "cu118", "cp39", "win_amd64"),
    }
)
# (torch release, variant, python, platform) of torch wheels padded to BIG_PAYLOAD
BIG_TORCH: frozenset[tuple[str, str, str, str]] = frozenset(
    {
        ("2.4.0", "cu118", "cp39", "win_amd64"),
        ("2.4.0", "cu118", "cp39", "linux_x86_64"),
    }
)
PEP658_RELEASES = frozenset({"2.4.0", "2.5.1"})  # torch-family files with .metadata
UPLOAD_TIME_RELEASES = frozenset({"2.5.1"})  # links carrying data-upload-time

_LINUX_X86 = 'platform_system == "Linux" and platform_machine == "x86_64"'
CUDA_DEPS: dict[tuple[str, str], tuple[str, ...]] = {  # (torch release, variant) -> pins
    ("2.3.1", "cu118"): (
        "nvidia-cuda-nvrtc-cu11==11.8.89",
        "nvidia-cuda-runtime-cu11==11.8.89",
        "nvidia-cuda-cupti-cu11==11.8.87",
        "nvidia-cudnn-cu11==8.7.0.84",
        "nvidia-cublas-cu11==11.11.3.6",
        "nvidia-cufft-cu11==10.9.0.58",
        "nvidia-curand-cu11==10.3.0.86",
        "nvidia-cusolver-cu11==11.4.1.48",
        "nvidia-cusparse-cu11==11.7.5.86",
        "nvidia-nccl-cu11==2.20.5",
        "nvidia-nvtx-cu11==11.8.86",
    ),
    ("2.4.0", "cu118"): (
        "nvidia-cuda-nvrtc-cu11==11.8.89",
        "nvidia-cuda-runtime-cu11==11.8.89",
        "nvidia-cuda-cupti-cu11==11.8.87",
        "nvidia-cudnn-cu11==9.1.0.70",
        "nvidia-cublas-cu11==11.11.3.6",
        "nvidia-cufft-cu11==10.9.0.58",
        "nvidia-curand-cu11==10.3.0.86",
        "nvidia-cusolver-cu11==11.4.1.48",
        "nvidia-cusparse-cu11==11.7.5.86",
        "nvidia-nccl-cu11==2.20.5",
        "nvidia-nvtx-cu11==11.8.86",
    ),
    ("2.5.1", "cu118"): (
        "nvidia-cuda-nvrtc-cu11==11.8.89",
        "nvidia-cuda-runtime-cu11==11.8.89",
        "nvidia-cuda-cupti-cu11==11.8.87",
        "nvidia-cudnn-cu11==9.1.0.70",
        "nvidia-cublas-cu11==11.11.3.6",
        "nvidia-cufft-cu11==10.9.0.58",
        "nvidia-curand-cu11==10.3.0.86",
        "nvidia-cusolver-cu11==11.4.1.48",
        "nvidia-cusparse-cu11==11.7.5.86",
        "nvidia-nccl-cu11==2.21.5",
        "nvidia-nvtx-cu11==11.8.86",
    ),
    ("2.3.1", "cu121"): (
        "nvidia-cuda-nvrtc-cu12==12.1.105",
        "nvidia-cuda-runtime-cu12==12.1.105",
        "nvidia-cuda-cupti-cu12==12.1.105",
        "nvidia-cudnn-cu12==8.9.2.26",
        "nvidia-cublas-cu12==12.1.3.1",
        "nvidia-cufft-cu12==11.0.2.54",
        "nvidia-curand-cu12==10.3.2.106",
        "nvidia-cusolver-cu12==11.4.5.107",
        "nvidia-cusparse-cu12==12.1.0.106",
        "nvidia-nccl-cu12==2.20.5",
        "nvidia-nvtx-cu12==12.1.105",
    ),
    ("2.4.0", "cu121"): (
        "nvidia-cuda-nvrtc-cu12==12.1.105",
        "nvidia-cuda-runtime-cu12==12.1.105",
        "nvidia-cuda-cupti-cu12==12.1.105",
        "nvidia-cudnn-cu12==9.1.0.70",
        "nvidia-cublas-cu12==12.1.3.1",
        "nvidia-cufft-cu12==11.0.2.54",
        "nvidia-curand-cu12==10.3.2.106",
        "nvidia-cusolver-cu12==11.4.5.107",
        "nvidia-cusparse-cu12==12.1.0.106",
        "nvidia-nccl-cu12==2.20.5",
        "nvidia-nvtx-cu12==12.1.105",
    ),
    ("2.5.1", "cu121"): (
        "nvidia-cuda-nvrtc-cu12==12.1.105",
        "nvidia-cuda-runtime-cu12==12.1.105",
        "nvidia-cuda-cupti-cu12==12.1.105",
        "nvidia-cudnn-cu12==9.1.0.70",
        "nvidia-cublas-cu12==12.1.3.1",
        "nvidia-cufft-cu12==11.0.2.54",
        "nvidia-curand-cu12==10.3.2.106",
        "nvidia-cusolver-cu12==11.4.5.107",
        "nvidia-cusparse-cu12==12.1.0.106",
        "nvidia-nccl-cu12==2.21.5",
        "nvidia-nvtx-cu12==12.1.105",
    ),
}
TRITON = {"2.3.1": ("2.3.1", "3.12"), "2.4.0": ("3.0.0", "3.13"), "2.5.1": ("3.1.0", "3.13")}
TORCH_EXTRAS = {"2.3.1": "0.9.1", "2.4.0": "0.11.0", "2.5.1": "0.12.0"}  # optree minimum


def torch_requires(release: str, variant: str | None) -> tuple[str, ...]:
    """Requires-Dist of torch ``release`` (variant None: mac/aarch64 wheels, like cpu)."""
    reqs = ["filelock", "typing-extensions>=4.8.0"]
    reqs.append('sympy==1.13.1; python_version >= "3.9"' if release == "2.5.1" else "sympy")
    reqs += ["networkx", "jinja2", "fsspec"]
    if variant and variant != "cpu":
        reqs += [f"{pin}; {_LINUX_X86}" for pin in CUDA_DEPS[(release, variant)]]
        triton, below = TRITON[release]
        reqs.append(f'triton=={triton}; {_LINUX_X86} and python_version < "{below}"')
    if release == "2.5.1":
        reqs.append('setuptools; python_version >= "3.12"')
    reqs += [
        'opt-einsum>=3.3; extra == "opt-einsum"',
        f'optree>={TORCH_EXTRAS[release]}; extra == "optree"',
    ]
    return tuple(reqs)


def torchvision_requires(release: str, variant: str | None, platform: str) -> tuple[str, ...]:
    """Windows CUDA wheels pin torch with the local version; the rest pin the public one."""
    pin = release
    if variant not in (None, "cpu") and platform == "win_amd64":
        pin = f"{release}+{variant}"
    # scipy is only an extra: it is NOT on the deps index, so following it is a bug.
    return ("numpy", f"torch=={pin}", "pillow!=8.3.*,>=5.3.0", 'scipy; extra == "scipy"')


def _cp(pythons: tuple[str, ...], *plats: str) -> tuple[str, ...]:
    return tuple(f"{py}-{py}-{plat}" for py in pythons for plat in plats)


_ML = "manylinux_2_17_x86_64.manylinux2014_x86_64"
_NP_PLATS = ("win_amd64", _ML, "macosx_11_0_arm64")


@dataclass(frozen=True)
class Rel:
    """One release of a deps project: wheels (tags), optional sdist, yank reason."""

    version: str
    requires_python: str | None = None
    requires_dist: tuple[str, ...] = ()
    tags: tuple[str, ...] = ("py3-none-any",)
    sdist: bool = False
    yanked: str | None = None
    build: str | None = None


@dataclass(frozen=True)
class Project:
    """A deps-origin project and how its page is written."""

    name: str  # as in METADATA
    releases: tuple[Rel, ...]
    pep658: bool = True  # False: no .metadata files, tools must range-read the wheel
    relative_links: bool = False  # ../../files/... instead of absolute URLs
    legacy_case: bool = False  # MarkupSafe-2.1.5-... filenames
    provides_extra: tuple[str, ...] = ()


def _nv(name: str, versions: dict[str, tuple[str, ...]], plat: str, win: bool = True) -> Project:
    tags = (f"py3-none-{plat}",) + (("py3-none-win_amd64",) if win else ())
    return Project(name, tuple(Rel(v, ">=3", reqs, tags) for v, reqs in versions.items()))


_CU11_PLAT, _CU12_PLAT = "manylinux1_x86_64", "manylinux2014_x86_64"
DEPS: tuple[Project, ...] = (
    Project(
        "filelock",
        (
            Rel("3.15.4", ">=3.8", sdist=True),
            Rel("3.16.1", ">=3.8", sdist=True),
            Rel("3.16.2", ">=3.8", sdist=True, yanked="broken"),
        ),
        relative_links=True,
    ),
    Project("typing_extensions", (Rel("4.12.2", ">=3.8", sdist=True),)),
    Project(
        "sympy",
        (
            Rel("1.12.1", ">=3.8", ("mpmath<1.4.0,>=1.1.0",), sdist=True),
            Rel("1.13.1", ">=3.8", ("mpmath<1.4,>=1.1.0",), sdist=True),
        ),
        relative_links=True,
    ),
    Project("mpmath", (Rel("1.3.0", None, sdist=True),)),
    Project(
        "networkx",
        (
            Rel("3.1", ">=3.8", sdist=True),
            Rel("3.2.1", ">=3.9", sdist=True),
            Rel("3.3", ">=3.10", sdist=True),
            Rel("3.4rc1", ">=3.10", sdist=True),
        ),
    ),
    Project("Jinja2", (Rel("3.1.4", ">=3.7", ("MarkupSafe>=2.0",), sdist=True),)),
    Project(
        "MarkupSafe",
        (Rel("2.1.5", ">=3.7", tags=_cp(PYTHONS, "win_amd64", _ML), sdist=True),),
        pep658=False,
        relative_links=True,
        legacy_case=True,
    ),
    Project("fsspec", (Rel("2024.6.1", ">=3.8"),)),
    Project(
        "numpy",
        (
            Rel("1.24.4", ">=3.8", tags=_cp(PYTHONS[:4], *_NP_PLATS), sdist=True),
            Rel("2.0.2", ">=3.9", tags=_cp(PYTHONS[1:], *_NP_PLATS), sdist=True),
            Rel("2.1.1", ">=3.10", tags=_cp(PYTHONS[2:], *_NP_PLATS), sdist=True),
        ),
        relative_links=True,
    ),
    Project(
        "pillow", (Rel("10.4.0", ">=3.8", tags=_cp(PYTHONS, *_NP_PLATS), sdist=True),), pep658=False
    ),
    Project("opt_einsum", (Rel("3.3.0", ">=3.5", ("numpy>=1.7",), sdist=True),), pep658=False),
    Project(
        "optree",
        (Rel("0.12.1", ">=3.7", ("typing-extensions>=4.5.0",), tags=_cp(PYTHONS, *_NP_PLATS)),),
        pep658=False,
    ),
    Project("setuptools", (Rel("75.1.0", ">=3.8"),)),
    Project(
        "triton",
        (
            Rel("2.3.1", None, ("filelock",), tags=_cp(PYTHONS[:4], _ML)),
            Rel(
                "3.0.0",
                None,
                ("filelock",),
                tags=_cp(PYTHONS, "manylinux2014_x86_64.manylinux_2_17_x86_64"),
                build="1",
            ),
            Rel("3.1.0", None, ("filelock",), tags=_cp(PYTHONS, _ML)),
        ),
        pep658=False,
    ),
    _nv("nvidia-cuda-nvrtc-cu11", {"11.8.89": ()}, _CU11_PLAT),
    _nv("nvidia-cuda-runtime-cu11", {"11.8.89": ()}, _CU11_PLAT),
    _nv("nvidia-cuda-cupti-cu11", {"11.8.87": ()}, _CU11_PLAT),
    _nv("nvidia-cudnn-cu11", {"8.7.0.84": (), "9.1.0.70": ("nvidia-cublas-cu11",)}, _CU11_PLAT),
    _nv("nvidia-cublas-cu11", {"11.11.3.6": ()}, _CU11_PLAT),
    _nv("nvidia-cufft-cu11", {"10.9.0.58": ()}, _CU11_PLAT),
    _nv("nvidia-curand-cu11", {"10.3.0.86": ()}, _CU11_PLAT),
    _nv("nvidia-cusolver-cu11", {"11.4.1.48": ("nvidia-cublas-cu11",)}, _CU11_PLAT),
    _nv("nvidia-cusparse-cu11", {"11.7.5.86": ()}, _CU11_PLAT),
    _nv("nvidia-nccl-cu11", {"2.20.5": (), "2.21.5": ()}, _CU11_PLAT, win=False),
    _nv("nvidia-nvtx-cu11", {"11.8.86": ()}, _CU11_PLAT),
    _nv("nvidia-cuda-nvrtc-cu12", {"12.1.105": ()}, _CU12_PLAT),
    _nv("nvidia-cuda-runtime-cu12", {"12.1.105": ()}, _CU12_PLAT),
    _nv("nvidia-cuda-cupti-cu12", {"12.1.105": ()}, _CU12_PLAT),
    _nv(
        "nvidia-cudnn-cu12",
        {"8.9.2.26": ("nvidia-cublas-cu12",), "9.1.0.70": ("nvidia-cublas-cu12",)},
        _CU12_PLAT,
    ),
    _nv("nvidia-cublas-cu12", {"12.1.3.1": ()}, _CU12_PLAT),
    _nv("nvidia-cufft-cu12", {"11.0.2.54": ()}, _CU12_PLAT),
    _nv("nvidia-curand-cu12", {"10.3.2.106": ()}, _CU12_PLAT),
    _nv(
        "nvidia-cusolver-cu12",
        {"11.4.5.107": ("nvidia-cublas-cu12", "nvidia-nvjitlink-cu12", "nvidia-cusparse-cu12")},
        _CU12_PLAT,
    ),
    _nv("nvidia-cusparse-cu12", {"12.1.0.106": ("nvidia-nvjitlink-cu12",)}, _CU12_PLAT),
    _nv("nvidia-nccl-cu12", {"2.20.5": (), "2.21.5": ()}, _CU12_PLAT, win=False),
    _nv("nvidia-nvtx-cu12", {"12.1.105": ()}, _CU12_PLAT),
    _nv("nvidia-nvjitlink-cu12", {"12.1.105": (), "12.6.77": ()}, _CU12_PLAT),
)
NO_PEP658 = frozenset(canonicalize_name(p.name) for p in DEPS if not p.pep658)
# deps wheel padded to MEDIUM_PAYLOAD (no .metadata: metadata must come from a range read)
MEDIUM_DEPS = frozenset({"triton-3.0.0-1-cp39-cp39-manylinux2014_x86_64.manylinux_2_17_x86_64.whl"})


@dataclass(frozen=True)
class FileSpec:
    """Everything needed to build one file and list it on its page."""

    origin: str  # "cdn" or "deps"
    project: str  # METADATA name
    version: str
    tag: str | None  # None for an sdist
    url_path: str  # decoded path on its origin, e.g. /whl/cu118/torch-2.4.0+cu118-....whl
    requires_dist: tuple[str, ...] = ()
    requires_python: str | None = None
    provides_extra: tuple[str, ...] = ()
    build: str | None = None
    payload_size: int = 0
    legacy_case: bool = False
    pages: tuple[str, ...] = ()  # cdn: variants whose page lists it
    release: str | None = None  # torch release this torch-family file belongs to
    pep658: bool = False
    sha_in_link: bool = True
    upload_time: bool = False
    yanked: str | None = None
    relative_link: bool = False

    @property
    def filename(self) -> str:
        return self.url_path.rsplit("/", 1)[1]

    @property
    def project_key(self) -> str:
        return str(canonicalize_name(self.project))


def _family_meta(
    proj: str, release: str, variant: str | None, plat: str
) -> tuple[tuple[str, ...], tuple[str, ...], str | None]:
    """(Requires-Dist, Provides-Extra, Requires-Python) of one torch-family wheel."""
    if proj == "torch":
        return torch_requires(release, variant), ("opt-einsum", "optree"), ">=3.8.0"
    if proj == "torchvision":
        rp = ">=3.9" if release == "2.5.1" else ">=3.8"
        return torchvision_requires(release, variant, plat), ("scipy",), rp
    return (f"torch=={release}",), (), None  # torchaudio: no Requires-Python at all


def _family_specs() -> list[FileSpec]:
    out: list[FileSpec] = []
    for release, (vision, audio, pythons) in RELEASES.items():
        versions = {"torch": release, "torchvision": vision, "torchaudio": audio}
        for proj, py in ((p, py) for p in FAMILY for py in pythons):
            # (variant or None for no local version, platform, abi, pages, directory)
            combos: list[tuple[str | None, str, str, tuple[str, ...], str]] = [
                (v, p, py, (v,), f"/whl/{v}") for v in VARIANTS for p in TORCH_PLATFORMS
            ]
            combos.append(
                (None, MAC_PLATFORM, "none" if proj == "torch" else py, ("cpu",), "/whl/cpu")
            )
            combos.append((None, ROOT_PLATFORM, py, VARIANTS, "/whl"))
            for variant, plat, abi, pages, directory in combos:
                if (proj, release, variant, py, plat) in MISSING:
                    continue
                version = versions[proj] + (f"+{variant}" if variant else "")
                tag = f"{py}-{abi}-{plat}"
                reqs, extras, rp = _family_meta(proj, release, variant, plat)
                big = proj == "torch" and (release, variant, py, plat) in BIG_TORCH
                out.append(
                    FileSpec(
                        "cdn",
                        proj,
                        version,
                        tag,
                        f"{directory}/{wheel_filename(proj, version, tag)}",
                        reqs,
                        rp,
                        extras,
                        payload_size=BIG_PAYLOAD if big else 0,
                        pages=pages,
                        release=release,
                        pep658=release in PEP658_RELEASES,
                        sha_in_link=plat != ROOT_PLATFORM,
                        upload_time=release in UPLOAD_TIME_RELEASES,
                    )
                )
    return out


def _deps_specs() -> list[FileSpec]:
    out: list[FileSpec] = []
    for proj in DEPS:
        for rel in proj.releases:
            # What a release's files share; each wheel adds its own fields to it.
            release = FileSpec(
                "deps",
                proj.name,
                rel.version,
                None,
                "",
                requires_dist=rel.requires_dist,
                requires_python=rel.requires_python,
                legacy_case=proj.legacy_case,
                yanked=rel.yanked,
                relative_link=proj.relative_links,
            )
            for tag in rel.tags:
                fn = wheel_filename(
                    proj.name, rel.version, tag, rel.build, legacy_case=proj.legacy_case
                )
                out.append(
                    replace(
                        release,
                        tag=tag,
                        url_path=f"/files/{fn}",
                        provides_extra=proj.provides_extra,
                        build=rel.build,
                        payload_size=MEDIUM_PAYLOAD if fn in MEDIUM_DEPS else 0,
                        pep658=proj.pep658,
                    )
                )
            if rel.sdist:
                fn = sdist_filename(proj.name, rel.version, legacy_case=proj.legacy_case)
                out.append(replace(release, url_path=f"/files/{fn}"))
    return out


FILES: tuple[FileSpec, ...] = tuple(_family_specs() + _deps_specs())


def newest_complete_release(variant: str, python: str, platform: str) -> str | None:
    """Newest torch release whose torch, torchvision and torchaudio all have a wheel listed on
    the ``variant`` page for ``python`` (``cp39``) and ``platform`` (``win_amd64``)."""
    have = {
        (f.project, f.release)
        for f in FILES
        if f.origin == "cdn"
        and variant in f.pages
        and f.tag is not None
        and f.tag.startswith(f"{python}-")
        and f.tag.endswith(f"-{platform}")
    }
    for release in sorted(RELEASES, key=Version, reverse=True):
        if all((proj, release) in have for proj in FAMILY):
            return release
    return None


@dataclass(frozen=True)
class BuiltFile:
    spec: FileSpec
    path: Path
    sha256: str
    size: int
    metadata_sha256: str | None  # of the served .metadata file (None: not served)


@dataclass
class Universe:
    """Files built on disk, keyed by filename (unique across origins)."""

    root: Path
    files: dict[str, BuiltFile] = field(default_factory=dict)

    def on_page(self, variant: str, project: str) -> list[BuiltFile]:
        return sorted(
            (
                b
                for b in self.files.values()
                if b.spec.origin == "cdn" and b.spec.project == project and variant in b.spec.pages
            ),
            key=lambda b: b.spec.url_path,
        )

    def deps_project(self, key: str) -> list[BuiltFile]:
        return sorted(
            (
                b
                for b in self.files.values()
                if b.spec.origin == "deps" and b.spec.project_key == key
            ),
            key=lambda b: (Version(b.spec.version), b.spec.filename),
        )


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def build_universe(dest: Path, payload_sizes: Mapping[str, int] | None = None) -> Universe:
    """Build every file in ``FILES`` under ``dest`` (``cdn/…`` and ``deps/…``); deterministic.

    *payload_sizes* (filename → bytes) pads chosen wheels, so a benchmark gets realistic sizes
    (``scripts/bench_closure.py``) from the same tables the tests use.
    """
    dest = Path(dest)
    uni = Universe(dest)
    for spec in FILES:
        if payload_sizes and spec.filename in payload_sizes:
            spec = replace(spec, payload_size=payload_sizes[spec.filename])
        target = dest / spec.origin / spec.url_path.lstrip("/").rsplit("/", 1)[0]
        if spec.tag is None:
            path = build_sdist(
                target,
                spec.project,
                spec.version,
                requires_dist=spec.requires_dist,
                requires_python=spec.requires_python,
                legacy_case=spec.legacy_case,
            )
        else:
            path = build_wheel(
                target,
                spec.project,
                spec.version,
                spec.tag,
                requires_dist=spec.requires_dist,
                requires_python=spec.requires_python,
                provides_extra=spec.provides_extra,
                build=spec.build,
                payload_size=spec.payload_size,
                legacy_case=spec.legacy_case,
            )
        assert path.name == spec.filename, (path.name, spec.filename)
        meta_sha = None
        if spec.pep658 and spec.tag is not None:
            meta = metadata_bytes(
                spec.project,
                spec.version,
                requires_dist=spec.requires_dist,
                requires_python=spec.requires_python,
                provides_extra=spec.provides_extra,
            )
            path.with_name(path.name + ".metadata").write_bytes(meta)
            meta_sha = _sha(meta)
        data = path.read_bytes()
        uni.files[spec.filename] = BuiltFile(spec, path, _sha(data), len(data), meta_sha)
    return uni


# -- pages -----------------------------------------------------------------------------------
def _attrs(b: BuiltFile, *, requires_python: bool) -> str:
    out = ""
    if requires_python and b.spec.requires_python:
        out += f' data-requires-python="{html.escape(b.spec.requires_python)}"'
    if b.metadata_sha256:
        out += (
            f' data-dist-info-metadata="sha256={b.metadata_sha256}"'
            f' data-core-metadata="sha256={b.metadata_sha256}"'
        )
    if b.spec.yanked is not None:
        out += f' data-yanked="{html.escape(b.spec.yanked)}"'
    if b.spec.upload_time:
        out += f' data-upload-time="{UPLOAD_TIME}"'
    return out


def torch_page(uni: Universe, variant: str, project: str, cdn_url: str) -> bytes:
    """``/whl/{variant}/{project}/`` in the index generator's exact skeleton."""
    lines = ["<!DOCTYPE html>", "<html>", "  <body>", f"    <h1>Links for {project}</h1>"]
    for b in uni.on_page(variant, project):
        href = cdn_url + quote(b.spec.url_path)
        if b.spec.sha_in_link:
            href += f"#sha256={b.sha256}"
        lines.append(
            f'    <a href="{href}"{_attrs(b, requires_python=False)}>{b.spec.filename}</a><br/>'
        )
    lines += ["  </body>", "</html>", f"<!--TIMESTAMP {TIMESTAMP}-->"]
    return ("\n".join(lines) + "\n").encode()


def torch_root_page(variant: str) -> bytes:
    links = [f'    <a href="/whl/{variant}/{p}/">{p}</a><br/>' for p in FAMILY]
    return (
        "\n".join(
            [
                "<!DOCTYPE html>",
                "<html>",
                "  <body>",
                "    <h1>Simple Index</h1>",
                *links,
                "  </body>",
                "</html>",
                f"<!--TIMESTAMP {TIMESTAMP}-->",
            ]
        )
        + "\n"
    ).encode()


def flat_page(uni: Universe, variant: str) -> bytes:
    """nginx-style directory listing (``/flat/{variant}/``): relative links, no hashes,
    ``+`` written as ``&#43;`` in every other href and as ``%2B`` in the rest."""
    files = sorted(
        (b for b in uni.files.values() if b.spec.origin == "cdn" and variant in b.spec.pages),
        key=lambda b: b.spec.filename,
    )
    rows = []
    for i, b in enumerate(files):
        name = b.spec.filename
        href = name.replace("+", "&#43;") if i % 2 else quote(name)
        rows.append(f'<a href="{href}">{name}</a>'.ljust(90) + f" 06-Apr-2026 12:00 {b.size:>12}")
    title = f"Index of /flat/{variant}/"
    return (
        "<html>\n<head><title>"
        + title
        + "</title></head>\n<body>\n<h1>"
        + title
        + '</h1><hr><pre><a href="../">../</a>\n'
        + "\n".join(rows)
        + "\n</pre><hr></body>\n</html>\n"
    ).encode()


def _deps_href(b: BuiltFile, deps_url: str) -> str:
    base = "../.." if b.spec.relative_link else deps_url
    return f"{base}{quote(b.spec.url_path)}#sha256={b.sha256}"


def simple_project_pages(uni: Universe, key: str, deps_url: str) -> tuple[bytes, bytes]:
    """(PEP 503 HTML, PEP 691 JSON) for ``/simple/{key}/`` on the deps origin."""
    files = uni.deps_project(key)
    lines = [
        "<!DOCTYPE html>",
        "<html>",
        "  <head>",
        '    <meta name="pypi:repository-version" content="1.1">',
        f"    <title>Links for {key}</title>",
        "  </head>",
        "  <body>",
        f"    <h1>Links for {key}</h1>",
    ]
    jfiles = []
    for b in files:
        href = _deps_href(b, deps_url)
        lines.append(
            f'    <a href="{href}"{_attrs(b, requires_python=True)}>{b.spec.filename}</a><br />'
        )
        meta: dict[str, str] | bool = {"sha256": b.metadata_sha256} if b.metadata_sha256 else False
        jfiles.append(
            {
                "filename": b.spec.filename,
                "url": href.split("#", 1)[0],
                "hashes": {"sha256": b.sha256},
                "requires-python": b.spec.requires_python,
                "core-metadata": meta,
                "dist-info-metadata": meta,
                "yanked": b.spec.yanked if b.spec.yanked is not None else False,
                "size": b.size,
                "upload-time": "2024-07-01T00:00:00.000000Z",
            }
        )
    lines += ["  </body>", "</html>", "<!--SERIAL 24681357-->"]
    versions = sorted({b.spec.version for b in files}, key=Version)
    doc = {"meta": {"api-version": "1.1"}, "name": key, "versions": versions, "files": jfiles}
    return ("\n".join(lines) + "\n").encode(), json.dumps(doc, indent=1).encode()


def simple_root_pages() -> tuple[bytes, bytes]:
    names = sorted({p.name for p in DEPS}, key=canonicalize_name)
    links = [f'    <a href="/simple/{canonicalize_name(n)}/">{n}</a>' for n in names]
    page = (
        "\n".join(
            [
                "<!DOCTYPE html>",
                "<html>",
                "  <head>",
                '    <meta name="pypi:repository-version" content="1.1">',
                "    <title>Simple index</title>",
                "  </head>",
                "  <body>",
                *links,
                "  </body>",
                "</html>",
            ]
        )
        + "\n"
    )
    doc = {"meta": {"api-version": "1.1"}, "projects": [{"name": n} for n in names]}
    return page.encode(), json.dumps(doc).encode()


# -- serving ---------------------------------------------------------------------------------
@dataclass
class TorchIndex:
    """The three running origins plus lookups into the built universe."""

    root: Path
    index: FileServer
    cdn: FileServer
    deps: FileServer
    universe: Universe

    @property
    def torch_index_url(self) -> str:
        """``{index}/whl/{variant}`` with a literal ``{variant}`` placeholder."""
        return f"{self.index.url}/whl/{{variant}}"

    def variant_url(self, variant: str) -> str:
        return f"{self.index.url}/whl/{variant}"

    @property
    def deps_index_url(self) -> str:
        return f"{self.deps.url}/simple"

    def flat_url(self, variant: str) -> str:
        return f"{self.cdn.url}/flat/{variant}/"

    @property
    def servers(self) -> tuple[FileServer, FileServer, FileServer]:
        return (self.index, self.cdn, self.deps)

    def built(self, filename: str) -> BuiltFile:
        return self.universe.files[filename]

    def file_path(self, filename: str) -> Path:
        return self.universe.files[filename].path

    def sha256(self, filename: str) -> str:
        return self.universe.files[filename].sha256

    def url(self, filename: str) -> str:
        """Canonical (percent-encoded) URL of a file on its origin."""
        spec = self.universe.files[filename].spec
        return (self.cdn if spec.origin == "cdn" else self.deps).url_for(spec.url_path)

    def clear(self) -> None:
        """Forget logs and faults on all three origins (between tests)."""
        for srv in self.servers:
            srv.clear_log()
            srv.clear_faults()


@contextmanager
def serve_universe(
    universe: Universe, server: Callable[[], FileServer] = FileServer
) -> Iterator[TorchIndex]:
    """Start index, cdn and deps servers for ``universe`` and register every route.

    *server* makes each of the three origins: a benchmark passes a ``FileServer`` subclass
    (``scripts/bench_pull.py`` sends every body through one shared, throttled link).
    """
    with ExitStack() as stack:
        index, cdn, deps = (stack.enter_context(server()) for _ in range(3))
        for b in universe.files.values():
            srv = cdn if b.spec.origin == "cdn" else deps
            srv.add(b.spec.url_path, b.path)
            if b.metadata_sha256:
                srv.add(b.spec.url_path + ".metadata", b.path.with_name(b.path.name + ".metadata"))
            for variant in b.spec.pages:
                cdn.add(f"/flat/{variant}/{b.spec.filename}", b.path)
        for variant in VARIANTS:
            index.add(f"/whl/{variant}/", torch_root_page(variant))
            cdn.add(f"/flat/{variant}/", flat_page(universe, variant))
            for name in FAMILY:
                index.add(f"/whl/{variant}/{name}/", torch_page(universe, variant, name, cdn.url))
        deps.add_negotiated("/simple/", *simple_root_pages())
        for dep in DEPS:
            key = str(canonicalize_name(dep.name))
            deps.add_negotiated(f"/simple/{key}/", *simple_project_pages(universe, key, deps.url))
            for alias in {dep.name, dep.name.replace("-", "_")} - {key}:
                deps.add_redirect(f"/simple/{alias}/", f"/simple/{key}/")
        yield TorchIndex(universe.root, index, cdn, deps, universe)
