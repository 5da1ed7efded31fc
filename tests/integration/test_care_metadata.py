"""``wheelcache verify`` checks the METADATA files ``serve`` and ``index`` extracted.

The publisher extracts each wheel's METADATA once into ``metadata-v1/<sha256>.metadata`` and
serves it from there; pip compares it with the hash on the page and then trusts its
dependencies.  A damaged one must be named and repaired by ``verify``, as a damaged blob is.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from click.testing import CliRunner

from tests.integration.test_care import make_cache
from wheelcache.cli.main import main
from wheelcache.core.layout import METADATA_BUCKET
from wheelcache.serve.publish import CacheView


def test_verify_repairs_a_damaged_extracted_metadata_file(tmp_path: Path) -> None:
    cache, wheels = make_cache(tmp_path)
    snap = CacheView(cache).snapshot()  # the publisher extracts every METADATA, as serve does
    mdir = cache.root / METADATA_BUCKET
    a = wheels["a-1.0"]
    md = mdir / f"{a.sha256}.metadata"
    with zipfile.ZipFile(a.blob) as zf:
        good = zf.read("a-1.0.dist-info/METADATA")
    assert md.read_bytes() == good and len(snap.files) == 4
    md.write_bytes(good.replace(b"Name: a", b"Name: b"))  # bit rot, or a bad write
    orphan = mdir / f"{'0' * 64}.metadata"
    orphan.write_bytes(b"Name: gone\n")

    res = CliRunner().invoke(main, ["verify", "--cache-dir", str(cache.root)])
    assert res.exit_code == 0, res.stdout  # repaired, nothing lost
    assert (
        f"REPAIRED  a-1.0-py3-none-any.whl: {METADATA_BUCKET}/{a.sha256}.metadata differed "
        "from the METADATA in the wheel; rewrote it from the wheel"
    ) in res.stdout
    assert f"EXTRA     {METADATA_BUCKET}/{orphan.name}: METADATA of a wheel" in res.stdout
    assert md.read_bytes() == good
    again = CliRunner().invoke(main, ["verify", "--cache-dir", str(cache.root)])
    assert "REPAIRED" not in again.stdout  # the other three were right all along
