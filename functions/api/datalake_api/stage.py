"""API Gateway's stage prefix as the ASGI ``root_path``.

Behind a REST API's default endpoint every URL starts with the stage (``/Prod``), but the
event's ``path`` does not. Setting ``root_path`` from the event makes the links the app
builds (the docs page's OpenAPI URL, the OpenAPI ``servers``) carry the stage; routing is
unchanged because the path does not start with it. Behind a custom domain the request
context's path has no stage prefix and nothing is set.
"""

from __future__ import annotations

from datalake_api.guard import ASGIApp, Receive, Scope, Send


class StagePrefix:
    """ASGI middleware: ``root_path = "/<stage>"`` when the request came through one."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        event = scope.get("aws.event")
        if scope["type"] == "http" and isinstance(event, dict) and not scope.get("root_path"):
            context = event.get("requestContext") or {}
            stage = context.get("stage")
            public_path = str(context.get("path") or "")
            if stage and stage != "$default" and public_path.startswith(f"/{stage}/"):
                scope = {**scope, "root_path": f"/{stage}"}
        await self.app(scope, receive, send)
