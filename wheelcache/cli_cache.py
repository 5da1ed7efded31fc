"""Commands that look after the cache and carry it to offline hosts; registered by cli."""

from __future__ import annotations

import click

__all__ = ["register"]


def register(group: click.Group) -> None:
    """Add this module's commands to *group*."""
