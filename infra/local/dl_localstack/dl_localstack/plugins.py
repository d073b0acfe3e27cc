"""Entry points loaded by LocalStack (see pyproject.toml). Keep imports lazy."""

from __future__ import annotations

from typing import Any

from localstack.runtime import hooks
from localstack.services.lambda_.invocation.plugins import RuntimeExecutorPlugin


class LocalProcessRuntimeExecutorPlugin(RuntimeExecutorPlugin):
    name = "local-process"

    def load(self, *args: Any, **kwargs: Any) -> Any:
        from dl_localstack.executor import LocalProcessRuntimeExecutor

        return LocalProcessRuntimeExecutor


@hooks.on_infra_start()
def apply_patches() -> None:
    from dl_localstack.patches import apply_all

    apply_all()
