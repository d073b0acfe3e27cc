"""Deploying a SAM template to LocalStack's CloudFormation: create, update (skipped when
nothing changed), delete, and the stack's outputs as URLs that work locally."""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dl_stack.aws import client
from dl_stack.package import Uploader, built_template_for, package_template
from dl_stack.report import StackError, say
from dl_stack.settings import CAPABILITIES, DEFAULT_STACK, DEFAULT_TEMPLATE, ENDPOINT, LOG_FILE
from dl_stack.template import load_template, upper_snake

_DONE_OK = {"CREATE_COMPLETE", "UPDATE_COMPLETE", "IMPORT_COMPLETE"}



def resolve_parameters(
    template: Mapping[str, Any],
    params: Mapping[str, str] | None,
    environ: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Values for the template's declared parameters: explicit > DATALAKE_PARAM_X > X."""
    environ = os.environ if environ is None else environ
    declared = template.get("Parameters") or {}
    unknown = set(params or {}) - set(declared)
    if unknown:
        raise StackError(
            f"template declares no parameter(s) {sorted(unknown)}; declared: {sorted(declared)}"
        )
    values: dict[str, str] = {}
    for name in declared:
        if params and name in params:
            values[name] = str(params[name])
            continue
        snake = upper_snake(name)
        for key in (f"DATALAKE_PARAM_{snake}", snake):
            if key in environ:
                values[name] = environ[key]
                break
    return values


def describe(cfn: Any, stack_name: str) -> dict[str, Any] | None:
    """The stack's description, or None when it does not exist."""
    try:
        return cfn.describe_stacks(StackName=stack_name)["Stacks"][0]
    except Exception as e:
        if "does not exist" in str(e):
            return None
        raise


def wait(cfn: Any, stack_name: str, timeout: float) -> dict[str, Any]:
    """Poll until the stack is no longer ``*_IN_PROGRESS``; its description."""
    deadline = time.monotonic() + timeout
    while True:
        stack = describe(cfn, stack_name)
        if stack is None:
            return {"StackStatus": "DELETE_COMPLETE"}
        if not stack["StackStatus"].endswith("_IN_PROGRESS"):
            return stack
        if time.monotonic() > deadline:
            raise StackError(
                f"stack {stack_name} still {stack['StackStatus']} after {timeout:.0f}s"
            )
        time.sleep(0.5)


def _failure_report(cfn: Any, stack_name: str, since: float) -> str:
    lines = []
    try:
        events = cfn.describe_stack_events(StackName=stack_name)["StackEvents"]
    except Exception as e:
        return f"(no events: {e})"
    for ev in reversed(events):
        ts = ev.get("Timestamp")
        if ts is not None and ts.timestamp() < since - 5:
            continue
        if ev.get("ResourceStatus", "").endswith("FAILED"):
            lines.append(
                f"  {ev.get('LogicalResourceId')} ({ev.get('ResourceType')}): "
                f"{ev.get('ResourceStatus')}: {ev.get('ResourceStatusReason')}"
            )
    return "\n".join(lines) or "  (no failed resource events)"


def _unchanged(
    cfn: Any,
    stack_name: str,
    packaged: Mapping[str, Any],
    existing: Mapping[str, Any],
    values: Mapping[str, str],
) -> bool:
    """Same template and parameter values as deployed (LocalStack updates anyway)."""
    current = {p["ParameterKey"]: p.get("ParameterValue") for p in existing.get("Parameters") or []}
    if any(current.get(k) != v for k, v in values.items()):
        return False
    try:
        body = cfn.get_template(StackName=stack_name, TemplateStage="Original")["TemplateBody"]
    except Exception:
        return False
    if isinstance(body, str):
        try:
            body = json.loads(body)
        except ValueError:
            return False
    return bool(json.loads(json.dumps(body)) == json.loads(json.dumps(packaged)))


def _log_hint() -> str:
    """The last LocalStack error lines, for errors LocalStack reports only as InternalError."""
    try:
        lines = LOG_FILE.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    errors = [line for line in lines if " ERROR " in line or "Error:" in line][-3:]
    hint = f"\n(see {LOG_FILE}; DEBUG=1 in the environment of `up` logs tracebacks)"
    return ("\nLocalStack log:\n  " + "\n  ".join(errors) if errors else "") + hint


def _no_changes(stack_name: str, started: float) -> dict[str, str]:
    say(f"stack {stack_name}: no changes ({time.monotonic() - started:.1f}s)")
    return stack_outputs(stack_name)


def delete_stack(stack_name: str, timeout: float = 300.0) -> None:
    """Delete ``stack_name`` and wait for it to go; nothing when it does not exist."""
    cfn = client("cloudformation")
    if describe(cfn, stack_name) is None:
        return
    cfn.delete_stack(StackName=stack_name)
    final = wait(cfn, stack_name, timeout)
    if final["StackStatus"] not in ("DELETE_COMPLETE",):
        raise StackError(f"deleting {stack_name}: {final['StackStatus']}")


def deploy(
    template: str | os.PathLike[str] | None = None,
    stack_name: str = DEFAULT_STACK,
    params: Mapping[str, str] | None = None,
    timeout: float = 600.0,
    build: bool | None = None,
) -> dict[str, str]:
    """Package and deploy a SAM template as ``stack_name`` (create or update). Returns outputs.

    Parameters
    ----------
    template:
        The SAM template (default infra/template.yaml).
    stack_name:
        The CloudFormation stack to create or update.
    params:
        Template parameter values (others come from the environment, see
        :func:`resolve_parameters`).
    timeout:
        Seconds to wait for the stack to settle.
    build:
        Deploy ``sam build``'s output of the template (cached by input hash) instead of its
        source folders; default: for the project's own template only.
    """
    path = Path(template or DEFAULT_TEMPLATE).resolve()
    if not path.exists():
        raise StackError(f"template not found: {path}")
    started = time.monotonic()
    since = time.time()
    if build is None:
        build = path == DEFAULT_TEMPLATE.resolve()
    if build:
        # What AWS would run: `sam build`'s output (layers with their dependencies
        # installed and trimmed), not the source folders.
        path = built_template_for(path)
    tpl = load_template(path)
    uploader = Uploader(stack_name)
    packaged = package_template(tpl, path.parent, uploader)
    values = resolve_parameters(tpl, params)
    if "Environment" in (tpl.get("Parameters") or {}):
        # the template's switch for what LocalStack community cannot run (CodeDeploy,
        # SnapStart, the migration custom resource, VPC): always local here
        values.setdefault("Environment", "local")
    body = json.dumps(packaged)
    cfn = client("cloudformation")
    kwargs: dict[str, Any] = {"StackName": stack_name, "Capabilities": CAPABILITIES}
    if len(body) > 51_200:
        key = uploader.put("template", body.encode(), ".json")
        kwargs["TemplateURL"] = f"{ENDPOINT}/{uploader.bucket}/{key}"
    else:
        kwargs["TemplateBody"] = body

    existing = describe(cfn, stack_name)
    if existing and existing["StackStatus"].endswith("_IN_PROGRESS"):
        existing = wait(cfn, stack_name, timeout)
    if existing and existing["StackStatus"] in {
        "ROLLBACK_COMPLETE",
        "ROLLBACK_FAILED",
        "CREATE_FAILED",
        "DELETE_FAILED",
        "DELETE_COMPLETE",
    }:
        if existing["StackStatus"] != "DELETE_COMPLETE":
            say(f"stack {stack_name} is {existing['StackStatus']}: deleting it first")
            delete_stack(stack_name, timeout)
        existing = None

    if existing is None:
        kwargs["Parameters"] = [{"ParameterKey": k, "ParameterValue": v} for k, v in values.items()]
        try:
            # one attempt: a retried CreateStack after a 500 only says "already exists"
            client("cloudformation", attempts=1).create_stack(**kwargs)
        except Exception as e:
            # LocalStack leaves a stack that failed this early CREATE_IN_PROGRESS forever
            with contextlib.suppress(Exception):
                cfn.delete_stack(StackName=stack_name)
            raise StackError(f"create of stack {stack_name} refused: {e}{_log_hint()}") from e
        action = "create"
    else:
        previous = {p["ParameterKey"] for p in existing.get("Parameters") or []}
        declared = set(tpl.get("Parameters") or {})
        plist: list[dict[str, Any]] = [
            {"ParameterKey": k, "ParameterValue": v} for k, v in values.items()
        ]
        plist += [
            {"ParameterKey": k, "UsePreviousValue": True}
            for k in sorted((previous & declared) - set(values))
        ]
        kwargs["Parameters"] = plist
        if _unchanged(cfn, stack_name, packaged, existing, values):
            return _no_changes(stack_name, started)
        try:
            client("cloudformation", attempts=1).update_stack(**kwargs)
            action = "update"
        except Exception as e:
            if "No updates are to be performed" in str(e):
                return _no_changes(stack_name, started)
            raise StackError(f"update of stack {stack_name} refused: {e}{_log_hint()}") from e
    final = wait(cfn, stack_name, timeout)
    if final["StackStatus"] not in _DONE_OK:
        raise StackError(
            f"{action} of stack {stack_name} ended {final['StackStatus']}"
            f" ({final.get('StackStatusReason') or 'no reason given'}):\n"
            + _failure_report(cfn, stack_name, since)
        )
    say(f"stack {stack_name}: {final['StackStatus']} in {time.monotonic() - started:.1f}s")
    return stack_outputs(stack_name)



_EXECUTE_API = re.compile(
    r"^https?://(?P<api>[a-z0-9]+)\.execute-api\.[A-Za-z0-9.-]+(?::\d+)?"
    r"/(?P<stage>[^/?#]+)(?P<rest>[^?#]*)(?P<tail>.*)$"
)


def local_api_url(url: str) -> str:
    """Rewrite an AWS-style REST API stage URL to LocalStack's path-style one."""
    m = _EXECUTE_API.match(url)
    if not m:
        return url
    rest = m["rest"].rstrip("/")
    return f"{ENDPOINT}/_aws/execute-api/{m['api']}/{m['stage']}{rest}{m['tail']}"


def stack_outputs(stack_name: str = DEFAULT_STACK) -> dict[str, str]:
    """The stack's outputs, API URLs rewritten by :func:`local_api_url`."""
    stack = describe(client("cloudformation"), stack_name)
    if stack is None:
        raise StackError(f"stack {stack_name} does not exist")
    return {
        o["OutputKey"]: local_api_url(str(o["OutputValue"])) for o in stack.get("Outputs") or []
    }

