"""Per-column statistics of partitions and files: merging what new files add."""

from __future__ import annotations

from typing import Any


def merge_stats(current: dict[str, Any], new: list[dict[str, Any]]) -> dict[str, Any]:
    """Merge per-column ``{"min", "max", "null_count"}`` statistics.

    Parameters
    ----------
    current:
        The statistics so far (a partition's), by column; not modified.
    new:
        The statistics of the files being added, each by column.

    Returns
    -------
    dict
        By column: the smallest ``min``, the largest ``max`` and the summed
        ``null_count``. Values that cannot be ordered against each other (a column whose
        type changed) keep the newer value; entries that are not objects are ignored.
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
