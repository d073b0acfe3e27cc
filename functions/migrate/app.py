"""Catalog migrations at deploy time: a CloudFormation custom resource (Alembic upgrade).

Create and Update run ``alembic upgrade head`` (idempotent: a catalog already at head is
left as it is, so a re-run or a rollback's re-apply is safe); Delete changes nothing (the
catalog outlives the stack). The functions depend on this resource, so a new version of
them is deployed only after the catalog has its new schema.
"""

from __future__ import annotations

import json
import urllib.request
from typing import Any

from aws_lambda_powertools import Logger

from datalake.catalog.migrate import upgrade

logger = Logger()


def _respond(event: dict[str, Any], status: str, reason: str, data: dict[str, str]) -> None:
    body = json.dumps(
        {
            "Status": status,
            "Reason": reason[:3000],
            "PhysicalResourceId": event.get("PhysicalResourceId") or "datalake-catalog",
            "StackId": event["StackId"],
            "RequestId": event["RequestId"],
            "LogicalResourceId": event["LogicalResourceId"],
            "Data": data,
        }
    ).encode()
    req = urllib.request.Request(
        event["ResponseURL"], data=body, method="PUT", headers={"Content-Type": ""}
    )
    with urllib.request.urlopen(req, timeout=30) as resp:  # CloudFormation's pre-signed URL
        resp.read()


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, str]:
    """Migrate on Create/Update, answer CloudFormation; a direct invoke just migrates."""
    request = event.get("RequestType")
    try:
        if request in (None, "Create", "Update"):
            upgrade()
            logger.info("catalog migrated to head", extra={"request": request})
        data = {"Revision": "head"}
    except Exception as e:
        logger.exception("catalog migration failed")
        if request is None:
            raise
        _respond(event, "FAILED", f"migration failed: {e}", {})
        return {"status": "FAILED"}
    if request is not None:
        _respond(event, "SUCCESS", "catalog at head", data)
    return {"status": "SUCCESS", **data}
