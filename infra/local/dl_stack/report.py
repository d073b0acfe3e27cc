"""What the local stack tells its caller: progress lines on stderr, and its one error."""

from __future__ import annotations

import sys


class StackError(RuntimeError):
    """Anything that keeps the local stack from coming up or deploying."""


def say(msg: str) -> None:
    """Print a progress line on stderr (stdout is kept for JSON answers)."""
    print(f"[local-stack] {msg}", file=sys.stderr, flush=True)
