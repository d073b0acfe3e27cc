"""FastAPI dependencies: the catalog session, the caller, the orchestrator."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from functools import lru_cache
from typing import Annotated

from anyio import CancelScope
from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from datalake.catalog.db import Session, session_scope
from datalake.config import get_settings
from datalake.domain.limits import CORRELATION_ID_MAX, text_problem
from datalake.errors import InvalidInput
from datalake.ports import ObjectReader, ObjectSweeper, Orchestrator
from datalake.services.verify import Publisher
from datalake_api.auth import Principal, authenticate


async def get_session(request: Request) -> AsyncIterator[Session]:
    # GET only reads: a read replica may serve it, and SQLite takes no write lock.
    readonly = request.method == "GET"
    scope = session_scope(readonly=readonly, fail_fast=True)
    # Opening a session does no I/O (it connects on its first statement), so it happens
    # here, on the event loop, sparing a thread-pool hop per request; a write's end
    # commits (or rolls back and translates the error) on a worker thread.
    session = scope.__enter__()
    try:
        yield session
    except BaseException as e:
        # Shielded: a cancelled request (the client left) still gives its connection back.
        with CancelScope(shield=True):
            handled = await run_in_threadpool(scope.__exit__, type(e), e, e.__traceback__)
        if not handled:
            raise
    else:
        if readonly:
            # A read commits nothing: its end only hands the connection back, cheaper
            # than the hop (psycopg's reads run in autocommit, with no round trip; on
            # pg8000 and SQLite it is one short COMMIT of a read-only transaction).
            scope.__exit__(None, None, None)
        else:
            await run_in_threadpool(scope.__exit__, None, None, None)


#: Declares the bearer scheme in the OpenAPI document; the token is checked below.
_bearer = HTTPBearer(
    auto_error=False, bearerFormat="JWT", description="A token from `datalake token --role R`."
)


# Pure-CPU dependencies are async: FastAPI runs a sync one in the thread pool, and each
# such hop costs more than the work (JWT checks take ~50 us) under concurrency.
async def get_principal(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if credentials is None:
        return authenticate(None)
    return authenticate(f"Bearer {credentials.credentials}")


async def correlation_id(request: Request) -> str:
    cid = request.headers.get("x-correlation-id") or request.headers.get("x-amzn-trace-id")
    if not cid:
        event = request.scope.get("aws.event") or {}
        cid = (event.get("requestContext") or {}).get("requestId")
    # The one the request middleware chose (and logs with), when nothing else names one.
    cid = str(cid or getattr(request.state, "correlation_id", None) or uuid.uuid4())
    # Refused up front: the audit row written with it commits with the change itself.
    if len(cid) > CORRELATION_ID_MAX or text_problem(cid):
        raise InvalidInput(
            f"X-Correlation-Id must be at most {CORRELATION_ID_MAX} characters of plain text"
        )
    return cid


@lru_cache(maxsize=1)
def _orchestrator() -> Orchestrator:
    from datalake.aws.sfn import StepFunctionsOrchestrator

    return StepFunctionsOrchestrator(get_settings().state_machine_arn or "")


def get_orchestrator() -> Orchestrator:
    return _orchestrator()


def get_sweeper() -> ObjectSweeper:
    from datalake.aws.s3 import S3ObjectStore

    return S3ObjectStore()


def get_object_reader() -> ObjectReader:
    from datalake.aws.s3 import S3ObjectStore

    return S3ObjectStore()


def get_iceberg_publisher() -> Publisher | None:
    """Who publishes a table as Iceberg for the API (None: Iceberg is off): the optimize
    function when one is configured (the deployed API carries no pyiceberg), else this
    process (a local API run from the full virtual environment)."""
    settings = get_settings()
    if settings.iceberg_catalog == "none":
        return None
    if settings.optimize_function:
        from datalake.aws.lambdas import LambdaIcebergPublisher

        return LambdaIcebergPublisher(settings.optimize_function)

    def publish(table_id: str) -> None:
        from datalake.services.jobs import publish_iceberg

        publish_iceberg(table_id)

    return publish


# scope="function": the session commits when the route returns, before the response is
# sent, so a 2xx is never an answer whose commit failed afterwards.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]
PrincipalDep = Annotated[Principal, Depends(get_principal)]
CorrelationDep = Annotated[str, Depends(correlation_id)]
OrchestratorDep = Annotated[Orchestrator, Depends(get_orchestrator)]
SweeperDep = Annotated[ObjectSweeper, Depends(get_sweeper)]
ReaderDep = Annotated[ObjectReader, Depends(get_object_reader)]
PublisherDep = Annotated[Publisher | None, Depends(get_iceberg_publisher)]


