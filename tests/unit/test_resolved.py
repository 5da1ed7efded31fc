"""The remembered resolution's record: its key is the same in every process, and a record is
read back only when it is whole and every value in it is one a resolution could have made."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from wheelcache.core.resolved import (
    MAX_RECORD,
    ChosenFile,
    PageSeen,
    ResolvedRecord,
    decode_record,
    encode_record,
    request_key,
)

SHA = "ab" * 32
KEY = "cd" * 32


def _record() -> ResolvedRecord:
    return ResolvedRecord(
        KEY,
        (
            PageSeen(
                "http://127.0.0.1:1/simple/app/",
                "text/html",
                200,
                SHA,
                "http://127.0.0.1:1/simple/app/",
                "text/html",
            ),
        ),  # type: ignore[arg-type]
        (
            ChosenFile("app", "1.0", "app-1.0-py3-none-any.whl", "http://h/app.whl", SHA, 10),  # type: ignore[arg-type]
            ChosenFile(
                "lib",
                "2.0",
                "lib-2.0-py3-none-any.whl",
                "http://h/lib.whl",
                SHA,
                None,
                "2024-01-01T00:00:00Z",
                ("app",),
            ),  # type: ignore[arg-type]
        ),
        ("a warning",),
        ("a note",),
    )


def test_a_record_reads_back_as_written() -> None:
    record = _record()
    assert decode_record(encode_record(record), KEY) == record


def _with(change: str, value: object) -> bytes:
    raw = json.loads(encode_record(_record()))
    where, _, name = change.partition(".")
    if where == "file":
        raw["files"][0][name] = value
    elif where == "page":
        raw["pages"][0][int(name)] = value
    else:
        raw[where] = value
    return json.dumps(raw).encode()


@pytest.mark.parametrize(
    ("change", "value"),
    [
        ("file.filename", "../../outside.whl"),
        ("file.filename", "C:\\evil.whl"),
        ("file.sha256", "../" * 21 + "x"),
        ("file.sha256", "ab" * 31),
        ("file.version", "not a version"),
        ("file.project", "App"),  # not the normalized name a resolution records
        ("file.project", "lib"),  # the filename is app's: the lock would name another wheel
        ("file.version", "1.1"),  # … or another version
        ("file.filename", "app-1.0.tar.gz"),  # not a wheel
        ("file.size", -1),
        ("file.size", True),
        ("file.url", "http://h/x\n--find-links /elsewhere"),
        ("file.required_by", "app"),
        ("page.3", "zz" * 32),
        ("page.2", "200"),
        ("page.4", "two\nlines"),
        ("warnings", ["two\nlines"]),
        ("format", 2),
        ("key", "ef" * 32),
        ("files", []),
        ("pages", []),
    ],
)
def test_a_record_with_one_bad_value_is_not_used(change: str, value: object) -> None:
    assert decode_record(_with(change, value), KEY) is None


def test_a_torn_duplicated_or_oversized_record_is_not_used() -> None:
    data = encode_record(_record())
    assert decode_record(data[:-1], KEY) is None
    raw = json.loads(data)
    raw["files"][1]["project"] = "app"
    assert decode_record(json.dumps(raw).encode(), KEY) is None
    assert decode_record(data + b" " * MAX_RECORD, KEY) is None
    assert decode_record(b"[]", KEY) is None


KEY_OF_A_SET = """
from wheelcache.core.resolved import request_key
print(request_key({"hashes": frozenset(f"{c}" * 64 for c in "0123456789abcdef")}))
"""


def test_the_key_is_the_same_in_every_process() -> None:
    """A set's order changes with each process's string hashing; the key must not."""
    keys = {
        subprocess.run(
            [sys.executable, "-c", KEY_OF_A_SET],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
        ).stdout
        for seed in ("1", "2", "3")
    }
    assert len(keys) == 1
    assert request_key({"a": (1, 2)}) != request_key({"a": (2, 1)})
