"""Process configuration: one pydantic-settings object, read from the environment once."""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

#: The local development signing secret; deployments set DATALAKE_JWT_SECRET.
LOCAL_JWT_SECRET = "datalake-local-dev-secret-change-me-0123456789"


class Settings(BaseSettings):
    """Everything a function or the CLI reads from its environment."""

    model_config = SettingsConfigDict(env_prefix="DATALAKE_", extra="ignore")

    database_url: str | None = Field(default=None, validation_alias="DATABASE_URL")
    lake_bucket: str = "datalake-lake"
    landing_bucket: str = "datalake-landing"
    quarantine_prefix: str = "_quarantine"
    state_machine_arn: str | None = None
    batch_queue_url: str | None = None
    jwt_secret: str = LOCAL_JWT_SECRET
    jwt_algorithm: str = "HS256"
    default_batch_size: int = 10_000
    default_split_size_mb: int = 128
    default_max_retries: int = 2
    default_timeout_seconds: int = 900
    #: Batches of one job in flight at once (the Map's MaxConcurrency, from the template).
    map_concurrency: int = Field(default=8, ge=1, le=1000)
    #: How long a batch message may wait in the queue before a worker takes it: added to
    #: the attempt's budget for the task's backstop timers (the worker times the attempt).
    batch_queue_allowance_seconds: int = Field(default=3600, ge=60)
    service_name: str = "datalake"
    #: How long compaction keeps the objects of the files it replaced, and how long a file
    #: listing's snapshot is served (0: delete at once; snapshots then last until then).
    replaced_file_retention_seconds: int = Field(default=900, ge=0)
    #: Where tables are published as Apache Iceberg: ``sql`` (the JDBC catalog's tables
    #: in ``iceberg_catalog_uri``, by default this deployment's own database), ``glue``
    #: (the AWS Glue Data Catalog) or ``none``. Iceberg snapshots are expired after
    #: ``replaced_file_retention_seconds`` too (time travel reaches back that far).
    iceberg_catalog: Literal["sql", "glue", "none"] = "sql"
    iceberg_catalog_uri: str | None = None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, created once."""
    return Settings()
