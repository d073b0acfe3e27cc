"""Task-token answers: a dead token is ignored, any other error is raised."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from datalake.aws.sfn import StepFunctionsCallbacks


class FakeSfn:
    def __init__(self, code: str | None) -> None:
        self.code = code
        self.calls: list[dict[str, Any]] = []

    def _call(self, **kwargs: Any) -> None:
        self.calls.append(kwargs)
        if self.code:
            raise ClientError({"Error": {"Code": self.code, "Message": ""}}, "SendTask")

    send_task_success = _call
    send_task_failure = _call


@pytest.mark.parametrize("code", ["TaskTimedOut", "InvalidToken", "TaskDoesNotExist"])
def test_dead_tokens_are_ignored(code: str) -> None:
    sfn = FakeSfn(code)
    StepFunctionsCallbacks(sfn).success("t", {"n": 1})
    StepFunctionsCallbacks(sfn).failure("t", error="E" * 300, cause="c")
    assert sfn.calls[0] == {"taskToken": "t", "output": '{"n": 1}'}
    assert len(sfn.calls[1]["error"]) == 256


def test_other_errors_raise() -> None:
    with pytest.raises(ClientError):
        StepFunctionsCallbacks(FakeSfn("AccessDeniedException")).success("t", {})
