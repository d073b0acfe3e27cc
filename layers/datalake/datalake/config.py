"""Process configuration: one pydantic-settings object, read from the environment once."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field, model_validator
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
    #: Secrets Manager secret holding the signing key; read once, it replaces jwt_secret.
    jwt_secret_arn: str | None = None
    #: Secrets Manager secret with the catalog's credentials (RDS shape; aws/secrets.py).
    database_secret_arn: str | None = Field(default=None, validation_alias="DATABASE_SECRET_ARN")
    jwt_algorithm: str = "HS256"
    default_batch_size: int = 10_000
    default_split_size_mb: int = 128
    default_max_retries: int = 2
    default_timeout_seconds: int = 900
    #: Batches of one job in flight at once (the Map's MaxConcurrency, from the template).
    map_concurrency: int = Field(default=5, ge=1, le=1000)
    #: How long a batch message may wait in the queue before a worker takes it: added to
    #: the attempt's budget for the task's backstop timers (the worker times the attempt).
    batch_queue_allowance_seconds: int = Field(default=3600, ge=60)
    service_name: str = "datalake"
    #: How long compaction keeps the objects of the files it replaced, and how long a file
    #: listing's snapshot is served (0: delete at once; snapshots then last until then).
    replaced_file_retention_seconds: int = Field(default=900, ge=0)


    @model_validator(mode="after")
    def _jwt_secret_from_secrets_manager(self) -> Settings:
        # Deployed functions get the key's ARN, never the key, in their environment.
        if self.jwt_secret_arn:
            from datalake.aws.secrets import jwt_secret

            self.jwt_secret = jwt_secret(self.jwt_secret_arn)
        return self


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, created once."""
    return Settings()
