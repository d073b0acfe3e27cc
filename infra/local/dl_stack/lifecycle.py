"""The local stack as a whole: ``up`` (LocalStack, the deployed template, local.env),
``down`` and ``status``."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dl_stack.aws import client
from dl_stack.deploy import deploy
from dl_stack.envfile import write_local_env
from dl_stack.process import is_up, our_localstack, read_pid, start, stop
from dl_stack.report import say
from dl_stack.settings import DEFAULT_STACK, DEFAULT_TEMPLATE, ENDPOINT, ENV_FILE


def up(
    template: str | os.PathLike[str] | None = None,
    stack_name: str = DEFAULT_STACK,
    params: Mapping[str, str] | None = None,
    extra_env: Mapping[str, str] | None = None,
    write_env: bool | None = None,
    deploy_stack: bool = True,
) -> dict[str, str]:
    """Start LocalStack if needed, deploy the template, write local.env. Returns outputs.

    ``write_env`` defaults to True for the default stack only.
    """
    start()
    outputs: dict[str, str] = {}
    if deploy_stack:
        path = Path(template or DEFAULT_TEMPLATE)
        if template is None and not path.exists():
            say(f"{path} does not exist yet: nothing to deploy")
        else:
            outputs = deploy(path, stack_name, params)
    if write_env is None:
        write_env = stack_name == DEFAULT_STACK
    if write_env:
        write_local_env(extra_env, stack_name, outputs=outputs if deploy_stack else None)
        say(f"wrote {ENV_FILE}")
    return outputs


def down() -> None:
    """Stop LocalStack and forget the stack's env file. Idempotent."""
    was_up = our_localstack(read_pid())
    stop()
    ENV_FILE.unlink(missing_ok=True)
    say("LocalStack stopped" if was_up else "LocalStack was not running")


def status() -> dict[str, Any]:
    """Whether our LocalStack is up, its pid and endpoint, and its stacks' statuses."""
    pid = read_pid()
    info: dict[str, Any] = {
        "up": is_up(),
        "pid": pid if our_localstack(pid) else None,
        "endpoint": ENDPOINT,
    }
    if info["up"]:
        try:
            stacks = client("cloudformation").describe_stacks()["Stacks"]
            info["stacks"] = {s["StackName"]: s["StackStatus"] for s in stacks}
        except Exception as e:
            info["stacks_error"] = str(e)
    return info

