"""Step Functions adapters: the job orchestrator and the task-token callbacks."""

from __future__ import annotations

import contextlib
import json
from functools import lru_cache
from typing import Any

from botocore.exceptions import ClientError

from datalake.aws.clients import client
from datalake.errors import DatalakeError


class StepFunctionsOrchestrator:
    """Starts one execution per job, named by the job id (a second start is refused)."""

    def __init__(self, state_machine_arn: str, sfn: Any = None) -> None:
        if not state_machine_arn:
            raise DatalakeError("the ingest state machine is not configured")
        self.arn = state_machine_arn
        self._sfn = sfn

    @property
    def sfn(self) -> Any:
        return self._sfn or client("stepfunctions")

    def start(self, job_id: str, payload: dict[str, Any]) -> str:
        try:
            resp = self.sfn.start_execution(
                stateMachineArn=self.arn, name=job_id, input=json.dumps(payload)
            )
        except ClientError as e:
            if e.response["Error"]["Code"] == "ExecutionAlreadyExists":
                return self.arn.replace(":stateMachine:", ":execution:", 1) + ":" + job_id
            raise DatalakeError(f"could not start the job's workflow: {e}") from e
        return str(resp["executionArn"])

    def stop(self, execution_id: str, *, reason: str) -> None:
        # Finished or unknown executions cannot be stopped; the catalog already says
        # CANCELLED and every worker and Commit honours it.
        with contextlib.suppress(ClientError):
            self.sfn.stop_execution(executionArn=execution_id, cause=reason[:32000])


@lru_cache(maxsize=4)
def job_orchestrator(state_machine_arn: str | None) -> StepFunctionsOrchestrator:
    """The orchestrator of ``state_machine_arn``, built once per process (container).

    Raises
    ------
    DatalakeError
        When no state machine is configured (nothing is cached then).
    """
    return StepFunctionsOrchestrator(state_machine_arn or "")


DEAD_TOKEN_ERRORS = frozenset({"TaskTimedOut", "InvalidToken", "TaskDoesNotExist"})


class StepFunctionsCallbacks:
    """Answers ``waitForTaskToken`` tasks; a dead token (retried or stopped task) is ignored."""

    def __init__(self, sfn: Any = None) -> None:
        self._sfn = sfn

    @property
    def sfn(self) -> Any:
        return self._sfn or client("stepfunctions")

    def heartbeat(self, token: str) -> bool:
        """Tell the workflow the task is being worked on; False when nobody waits for it."""
        try:
            self.sfn.send_task_heartbeat(taskToken=token)
        except ClientError as e:
            if e.response["Error"]["Code"] in DEAD_TOKEN_ERRORS:
                return False
            raise
        return True

    def success(self, token: str, output: dict[str, Any]) -> None:
        self._answer(self.sfn.send_task_success, taskToken=token, output=json.dumps(output))

    def failure(self, token: str, *, error: str, cause: str) -> None:
        self._answer(
            self.sfn.send_task_failure, taskToken=token, error=error[:256], cause=cause[:32000]
        )

    @staticmethod
    def _answer(call: Any, **kwargs: Any) -> None:
        try:
            call(**kwargs)
        except ClientError as e:
            # The task was retried (new token), timed out or stopped: nobody is waiting.
            if e.response["Error"]["Code"] not in DEAD_TOKEN_ERRORS:
                raise

