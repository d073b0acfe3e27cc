"""Liveness (no auth)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from datalake import __version__
from datalake.catalog.health import ping

router = APIRouter(tags=["health"])


@router.get("/health")
def health() -> dict[str, Any]:
    catalog = "ok"
    try:
        ping()
    except Exception as e:  # health reports, it does not fail
        catalog = f"unavailable: {type(e).__name__}"
    return {
        "status": "ok" if catalog == "ok" else "degraded",
        "catalog": catalog,
        "version": __version__,
    }
