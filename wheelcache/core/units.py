"""Sizes and ages as people write and read them (pure)."""

from __future__ import annotations

import re

__all__ = ["human_size", "parse_age", "parse_size"]


def human_size(n: int) -> str:
    """``2.5 GB``: decimal units, as disk makers and file managers show them.

    >>> human_size(999), human_size(2_500_000_000)
    ('999 bytes', '2.5 GB')
    """
    value = float(n)
    for unit in ("bytes", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{n} bytes" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"


def parse_size(text: str) -> int:
    """``20G``, ``500M``, ``1.5T``, ``0`` → bytes (binary units).

    >>> parse_size("20G"), parse_size("512k"), parse_size("0")
    (21474836480, 524288, 0)
    """
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:I?B)?\s*", text, re.IGNORECASE)
    if not m:
        raise ValueError(f"{text!r} is not a size like 20G or 500M")
    factor = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}[m.group(2).upper()]
    return int(float(m.group(1)) * factor)


def parse_age(text: str) -> float:
    """``90d``, ``12h``, ``30m``, ``45s``, ``2w`` → seconds.

    >>> parse_age("90d"), parse_age("12h"), parse_age("0s")
    (7776000.0, 43200.0, 0.0)
    """
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", text, re.IGNORECASE)
    if not m:
        raise ValueError(f"{text!r} is not an age like 90d, 12h or 30m")
    unit = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[m.group(2).lower()]
    return float(m.group(1)) * unit
