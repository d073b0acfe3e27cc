"""Column statistics: merging per-file ``{"min", "max", "null_count"}`` into a roll-up."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


def merge_stats(
    current: Mapping[str, Any] | None, new: Iterable[Mapping[str, Any] | None]
) -> dict[str, Any]:
    """Merge per-column ``{"min", "max", "null_count"}`` statistics.

    Parameters
    ----------
    current:
        The roll-up so far (not modified), or None.
    new:
        Further files' column statistics; non-dict entries for a column are ignored.

    Returns
    -------
    dict
        ``{column: {"min", "max", "null_count"}}``: null counts add up, a missing
        min/max leaves the other side's, and values that do not compare (a column whose
        type changed) take the newer one.
    """
    out: dict[str, Any] = {k: dict(v) for k, v in (current or {}).items()}
    for stats in new:
        for column, s in (stats or {}).items():
            if not isinstance(s, dict):
                continue
            cur = out.setdefault(column, {"min": None, "max": None, "null_count": 0})
            cur["null_count"] = int(cur.get("null_count") or 0) + int(s.get("null_count") or 0)
            for key, pick in (("min", min), ("max", max)):
                value = s.get(key)
                if value is None:
                    continue
                try:
                    cur[key] = value if cur.get(key) is None else pick(cur[key], value)
                except TypeError:
                    cur[key] = value
    return out
