"""Liveness (no auth)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from sqlalchemy import text

from datalake import __version__
from datalake.catalog.db import get_engine

router = APIRouter(tags=["health"])


@router.get("/health")
def health() -> dict[str, Any]:
    catalog = "ok"
    try:
        with get_engine().connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as e:  # health reports, it does not fail
        catalog = f"unavailable: {type(e).__name__}"
    return {
        "status": "ok" if catalog == "ok" else "degraded",
        "catalog": catalog,
        "version": __version__,
    }
