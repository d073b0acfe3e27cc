"""The FastAPI application: routers under /api/v1, errors mapped in one place."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from datalake.config import get_settings
from datalake.errors import DatalakeError, TransientError
from datalake_api.correlation import Correlation
from datalake_api.guard import EdgeGuard
from datalake_api.models import ErrorOut, IcebergErrorOut
from datalake_api.routes import (
    audit,
    health,
    iceberg_rest,
    jobs,
    partitions,
    schemas,
    sources,
    tables,
)
from datalake_api.stage import StagePrefix

log = logging.getLogger("datalake.api")
PREFIX = "/api/v1"
#: Seconds a client should wait before retrying a 503 (the catalog is unavailable).
RETRY_AFTER_SECONDS = 1

_ERRORS = {
    400: "The request is malformed.",
    401: "Missing, invalid or expired bearer token.",
    403: "The token lacks the role this operation needs.",
    404: "No such entity (or it is deleted).",
    409: "The request conflicts with the entity's current state.",
    413: "The request body is too large.",
    422: "A field of the request is invalid; `detail` names it.",
    503: "The catalog is unavailable; retry after `Retry-After` seconds.",
}
#: Every route may answer these; documented once so the OpenAPI document is true.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorOut, "description": text} for code, text in _ERRORS.items()
}


def create_app() -> FastAPI:
    """Build the API application."""
    app = FastAPI(
        title="datalake",
        version="0.1.0",
        openapi_url=f"{PREFIX}/openapi.json",
        docs_url=f"{PREFIX}/docs",
        redoc_url=None,
        # Collections answer with and without the trailing slash; a redirect would drop
        # API Gateway's stage prefix from the Location.
        redirect_slashes=False,
    )
    app.include_router(health.router, responses={503: ERROR_RESPONSES[503]})
    app.include_router(health.router, prefix=PREFIX, responses={503: ERROR_RESPONSES[503]})
    for module in (tables, sources, jobs, schemas, partitions, audit):
        app.include_router(module.router, prefix=PREFIX, responses=ERROR_RESPONSES)
    # The Iceberg REST catalog (reads): its 404s take the specification's error model.
    iceberg_errors = {
        **{c: r for c, r in ERROR_RESPONSES.items() if c != 404},
        404: {"model": IcebergErrorOut, "description": "No such namespace or table."},
        204: {"description": "HEAD: the namespace or table exists."},
    }
    app.include_router(iceberg_rest.router, prefix=PREFIX, responses=iceberg_errors)

    @app.exception_handler(DatalakeError)
    async def _domain_error(_: Request, exc: DatalakeError) -> JSONResponse:
        detail: object = (
            exc.message if exc.details is None else {"message": exc.message, "errors": exc.details}
        )
        headers = None
        if isinstance(exc, TransientError):
            headers = {"Retry-After": str(RETRY_AFTER_SECONDS)}
        return JSONResponse(
            status_code=exc.status_code, content={"detail": detail}, headers=headers
        )

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": list(e.get("loc", ())), "msg": str(e.get("msg")), "type": str(e.get("type"))}
            for e in exc.errors()
        ]
        return JSONResponse(status_code=422, content={"detail": errors})

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(
            status_code=exc.status_code, content={"detail": exc.detail}, headers=exc.headers
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # Never a stack trace as the answer: log it, return an opaque message.
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse(status_code=500, content={"detail": "internal error"})

    _add_cors(app)
    app.add_middleware(EdgeGuard)
    app.add_middleware(StagePrefix)
    app.add_middleware(Correlation)  # outermost: every answer, refusals included
    return app


def _add_cors(app: FastAPI) -> None:
    origins = [o.strip() for o in get_settings().cors_origins.split(",") if o.strip()]
    if not origins:
        return
    from starlette.middleware.cors import CORSMiddleware

    # Bearer tokens, not cookies: no credentials mode, so "*" exposes nothing a page
    # could not already send with the user's own token.
    app.add_middleware(
        CORSMiddleware,
        allow_origins=origins,
        allow_methods=["GET", "POST", "PUT", "DELETE", "OPTIONS"],
        allow_headers=["Authorization", "Content-Type", "Idempotency-Key", "X-Correlation-Id"],
        expose_headers=["Retry-After", "Location"],
        max_age=600,
    )
