"""Commands of the offline family; registered on the main group by :mod:`wheelcache.cli`."""

from __future__ import annotations

import click

__all__ = ["register"]


def register(group: click.Group) -> None:
    """Add this module's commands to *group*."""
