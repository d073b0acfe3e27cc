"""Catalog migrations at deploy time: a CloudFormation custom resource (Alembic upgrade).

Create and Update run ``alembic upgrade head`` (idempotent: a catalog already at head is
left as it is, so a re-run or a rollback's re-apply is safe); Delete changes nothing (the
catalog outlives the stack). The functions depend on this resource, so a new version of
them is deployed only after the catalog has its new schema.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger

from datalake.aws.cloudformation import respond
from datalake.aws.events import CustomResourceEvent
from datalake.catalog.migrate import upgrade

logger = Logger()


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, str]:
    """Migrate on Create/Update, answer CloudFormation; a direct invoke just migrates."""
    request = CustomResourceEvent.model_validate(event)
    try:
        if request.request_type in (None, "Create", "Update"):
            upgrade()
            logger.info("catalog migrated to head", extra={"request": request.request_type})
    except Exception as e:
        logger.exception("catalog migration failed")
        if not request.from_cloudformation:
            raise
        respond(request, "FAILED", f"migration failed: {e}", {})
        return {"status": "FAILED"}
    if request.from_cloudformation:
        respond(request, "SUCCESS", "catalog at head", {"Revision": "head"})
    return {"status": "SUCCESS", "Revision": "head"}
