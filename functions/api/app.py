"""API Lambda entry point: FastAPI through Mangum. Never imports pyarrow (cold starts)."""

from __future__ import annotations

from mangum import Mangum

from datalake.aws.observability import get_logger, instrument
from datalake_api import snapstart
from datalake_api.main import create_app

# Created before the app, so every ``datalake.*`` logger writes JSON through it; the
# request middleware binds each request's correlation id.
logger = get_logger()
app = create_app()
snapstart.register()  # SnapStart (the API's published versions): a hook, nothing else
lambda_handler = instrument("api", correlation_id_path=None)(Mangum(app, lifespan="off"))
