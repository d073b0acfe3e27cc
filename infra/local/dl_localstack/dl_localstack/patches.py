"""Patches applied inside the LocalStack process at start-up."""

from __future__ import annotations


def patch_hypercorn_shutdown() -> None:
    """Placeholder, filled in below."""
