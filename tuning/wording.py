"""Counts in messages: `1 trial`, `3 trials`."""

from __future__ import annotations


def counted(count: int, noun: str) -> str:
    """A count with its noun, singular for one."""
    return f"{count:,} {noun if count == 1 else noun + 's'}"
