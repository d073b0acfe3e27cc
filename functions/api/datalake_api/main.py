"""The FastAPI application: routers under /api/v1, errors mapped in one place."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from datalake.errors import DatalakeError
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

log = logging.getLogger("datalake.api")
PREFIX = "/api/v1"


def create_app() -> FastAPI:
    """Build the API application."""
    app = FastAPI(
        title="datalake",
        version="0.1.0",
        openapi_url=f"{PREFIX}/openapi.json",
        docs_url=f"{PREFIX}/docs",
        redoc_url=None,
    )
    app.include_router(health.router)
    app.include_router(health.router, prefix=PREFIX)
    for module in (tables, sources, jobs, schemas, partitions, audit):
        app.include_router(module.router, prefix=PREFIX)
    app.include_router(iceberg_rest.router, prefix=PREFIX)  # the Iceberg REST catalog (reads)

    @app.exception_handler(DatalakeError)
    async def _domain_error(_: Request, exc: DatalakeError) -> JSONResponse:
        detail: object = (
            exc.message if exc.details is None else {"message": exc.message, "errors": exc.details}
        )
        return JSONResponse(status_code=exc.status_code, content={"detail": detail})

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg"), "type": e.get("type")}
            for e in exc.errors()
        ]
        return JSONResponse(status_code=422, content={"detail": errors})

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(status_code=exc.status_code, content={"detail": exc.detail})

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # Never a stack trace as the answer: log it, return an opaque message.
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse(status_code=500, content={"detail": "internal error"})

    return app
