"""Process configuration: one pydantic-settings object, read from the environment once."""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import AliasChoices, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from datalake.domain.vocabulary import DEFAULT_BATCH_SIZE, DEFAULT_SPLIT_SIZE_MB

#: The local development signing secret; deployments set DATALAKE_JWT_SECRET.
LOCAL_JWT_SECRET = "datalake-local-dev-secret-change-me-0123456789"
#: Replaced files and Iceberg snapshots are kept 5 days by default, as Iceberg keeps
#: snapshots (``history.expire.max-snapshot-age-ms``).
DEFAULT_RETENTION_SECONDS = 5 * 24 * 3600


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
    #: Tokens must name this issuer and audience (``iss``, ``aud``; "" skips the check)
    #: and carry ``exp``.
    jwt_issuer: str = "datalake"
    jwt_audience: str = "datalake-api"
    #: RS256 tokens checked against this JWKS URL (e.g. a Cognito user pool's) instead of
    #: HS256 with ``jwt_secret``.
    jwt_jwks_url: str = ""
    #: The claim holding the role names (Cognito: ``cognito:groups``).
    jwt_roles_claim: str = "roles"
    #: Origins allowed by CORS, comma-separated ("*": any; "": none, the default).
    cors_origins: str = ""
    default_batch_size: int = DEFAULT_BATCH_SIZE
    default_split_size_mb: int = DEFAULT_SPLIT_SIZE_MB
    default_max_retries: int = 2
    default_timeout_seconds: int = 900
    #: Batches of one job in flight at once (the Map's MaxConcurrency, from the template).
    map_concurrency: int = Field(default=5, ge=1, le=1000)
    #: How long a batch message may wait in the queue before a worker takes it: added to
    #: the attempt's budget for the task's backstop timers (the worker times the attempt).
    batch_queue_allowance_seconds: int = Field(default=3600, ge=60)
    service_name: str = "datalake"
    #: ``local`` (a laptop, LocalStack, tests) or ``aws``. Outside ``local`` the published
    #: development token secret is refused, so a stack deployed without a secret of its
    #: own accepts no token.
    environment: str = "local"
    #: Buckets a source or job may read from, comma-separated, besides the landing bucket
    #: ("*": any bucket). The lake bucket is never one: ingesting the lake's own objects
    #: (its quarantine, say) would let a writer copy what it cannot read.
    source_buckets: str = ""
    #: How long compaction keeps the objects of the files it replaced, and how long a file
    #: listing's snapshot is served (0: delete at once; snapshots then last until then).
    #: Iceberg snapshots expire after it too: time travel reaches back that far.
    replaced_file_retention_seconds: int = Field(default=DEFAULT_RETENTION_SECONDS, ge=0)
    #: Where tables are published as Apache Iceberg: ``sql`` (the JDBC catalog's tables
    #: in ``iceberg_catalog_uri``, by default this deployment's own database), ``glue``
    #: (the AWS Glue Data Catalog) or ``none``. Iceberg snapshots are expired after
    #: ``replaced_file_retention_seconds`` too (time travel reaches back that far).
    iceberg_catalog: Literal["sql", "glue", "none"] = "sql"
    iceberg_catalog_uri: str | None = None
    #: The optimize function the API invokes for a compaction request (the template's).
    optimize_function: str | None = None
    #: The region (Lambda sets ``AWS_REGION``; elsewhere ``AWS_DEFAULT_REGION``).
    aws_region: str = Field(
        default="us-east-1", validation_alias=AliasChoices("AWS_REGION", "AWS_DEFAULT_REGION")
    )
    #: S3's endpoint when it is not AWS's own (LocalStack), as boto3 reads it.
    s3_endpoint_url: str | None = Field(
        default=None, validation_alias=AliasChoices("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
    )
    #: X-Ray tracing of the functions (Powertools Tracer): None = on for ``aws`` only.
    #: ``POWERTOOLS_TRACE_DISABLED=true`` switches it off whatever this says.
    tracing: bool | None = None

    @property
    def allows_dev_secret(self) -> bool:
        """Whether the published development token secret may sign and verify tokens."""
        return self.environment == "local"

    def source_bucket_allowed(self, bucket: str) -> bool:
        """Whether sources and jobs may read ``bucket`` (never the lake bucket)."""
        if bucket == self.lake_bucket:
            return False
        allowed = {b.strip() for b in self.source_buckets.split(",") if b.strip()}
        return "*" in allowed or bucket == self.landing_bucket or bucket in allowed

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
