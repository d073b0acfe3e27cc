"""API Lambda entry point: FastAPI through Mangum. Never imports pyarrow (cold starts)."""

from __future__ import annotations

from mangum import Mangum

from datalake_api.main import create_app

app = create_app()
lambda_handler = Mangum(app, lifespan="off")
