"""Lambda SnapStart: what the API prepares before its snapshot is taken.

The snapshot holds the initialised process, so what a container's first request would
import after a restore is imported before the snapshot instead. Connections and secrets
are not: a snapshot may be restored long after it was taken, by many containers at once.
"""

from __future__ import annotations

import logging

from datalake.catalog.db import preload_driver

log = logging.getLogger("datalake.api")


def before_snapshot() -> None:
    """Import the catalog's database driver and dialect (see ``preload_driver``)."""
    log.info("snapstart: preloaded %s", preload_driver())


def register() -> bool:
    """Register :func:`before_snapshot` with Lambda's runtime hooks.

    Returns
    -------
    bool
        False outside Lambda's Python runtimes, which alone ship ``snapshot_restore_py``
        (locally, under uvicorn or LocalStack, there is no snapshot to prepare).
    """
    try:
        from snapshot_restore_py import register_before_snapshot
    except ImportError:
        return False
    register_before_snapshot(before_snapshot)
    return True
