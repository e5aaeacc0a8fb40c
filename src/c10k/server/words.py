"""Counts in the words an operator reads: "1 request", "2 requests", "12,345 connections"."""

from __future__ import annotations


def plural(n: int, noun: str, many: str | None = None) -> str:
    """``n`` with thousands separators and ``noun`` in the number it needs.

    >>> plural(1, "request"), plural(0, "request"), plural(12345, "connection")
    ('1 request', '0 requests', '12,345 connections')
    >>> plural(2, "process", "processes")
    '2 processes'
    """
    return f"{n:,} {noun if n == 1 else (many or noun + 's')}"
