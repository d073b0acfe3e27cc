"""API Lambda entry point: FastAPI through Mangum. Never imports pyarrow (cold starts)."""

from __future__ import annotations

from datalake_api.main import create_app
from mangum import Mangum

app = create_app()
lambda_handler = Mangum(app, lifespan="off")
