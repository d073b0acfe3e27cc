"""Apply the catalog's Alembic migrations (the only way its schema changes)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from datalake.catalog.db import normalise_url

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(url: str | None = None) -> Config:
    """An Alembic config pointing at the packaged migrations and the given database."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", normalise_url(url).replace("%", "%%"))
    return cfg


def upgrade(url: str | None = None, revision: str = "head") -> None:
    """Bring the catalog at ``url`` (default: ``DATABASE_URL`` or SQLite) up to ``revision``.

    Parameters
    ----------
    url:
        A database URL; ``None`` reads ``DATABASE_URL`` and falls back to SQLite.
    revision:
        The Alembic revision to reach.
    """
    import os

    command.upgrade(
        alembic_config(url if url is not None else os.environ.get("DATABASE_URL")), revision
    )


def display_url(url: str) -> str:
    """The database URL as it may be shown: any password masked."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url


def revision(message: str, url: str | None = None) -> None:
    """Autogenerate a new migration from the models (a developer command)."""
    command.revision(alembic_config(url), message=message, autogenerate=True)
