"""CloudFormation custom resources: the answer to a request's pre-signed response URL."""

from __future__ import annotations

import json
import urllib.request

from datalake.aws.events import CustomResourceEvent

#: The physical id of a resource whose request named none (a Create).
DEFAULT_PHYSICAL_ID = "datalake-catalog"


def respond(event: CustomResourceEvent, status: str, reason: str, data: dict[str, str]) -> None:
    """PUT the resource's outcome to CloudFormation, which waits for it.

    Parameters
    ----------
    event:
        The request answered.
    status:
        ``SUCCESS`` or ``FAILED``.
    reason:
        Shown in the stack's events (cut to CloudFormation's limit).
    data:
        The resource's attributes (``Fn::GetAtt``).
    """
    body = json.dumps(
        {
            "Status": status,
            "Reason": reason[:3000],
            "PhysicalResourceId": event.physical_resource_id or DEFAULT_PHYSICAL_ID,
            "StackId": event.stack_id,
            "RequestId": event.request_id,
            "LogicalResourceId": event.logical_resource_id,
            "Data": data,
        }
    ).encode()
    req = urllib.request.Request(
        event.response_url, data=body, method="PUT", headers={"Content-Type": ""}
    )
    with urllib.request.urlopen(req, timeout=30) as resp:  # CloudFormation's pre-signed URL
        resp.read()
