"""The local stack itself: LocalStack in host mode + the dl_localstack Lambda executor.

Deploys the self-test SAM template (infra/local/selftest/, not the project's template) as
its own stack and drives every path the project's template relies on: a layer, direct
invokes (context, environment, errors, timeouts, crashes, concurrency, logs), a REST API
proxy, SQS with partial batch failures, S3 -> SQS -> Lambda, and a state machine with a
Map of SQS callback tasks followed by lambda:invoke. Also a code update.

Starts LocalStack if it is not running, and stops it again only if it started it.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import shutil
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.localstack

REPO = Path(__file__).resolve().parents[2]
STACK_PY = REPO / "infra" / "local" / "stack.py"
SELFTEST = REPO / "infra" / "local" / "selftest"
STACK = "dl-selftest"


def _load_stack_module() -> Any:
    spec = importlib.util.spec_from_file_location("datalake_local_stack", STACK_PY)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


stack = _load_stack_module()


def wait_for(check: Callable[[], Any], timeout: float = 30.0, every: float = 0.3) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(every)


class Deployed:
    def __init__(self, source: Path, outputs: dict[str, str]) -> None:
        self.source = source
        self.outputs = outputs

    def redeploy(self) -> dict[str, str]:
        self.outputs = stack.deploy(self.source / "template.yaml", STACK)
        return self.outputs


@pytest.fixture(scope="module")
def selftest(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployed]:
    source = tmp_path_factory.mktemp("selftest") / "selftest"
    shutil.copytree(SELFTEST, source, ignore=shutil.ignore_patterns("__pycache__"))
    try:  # the suite's session fixture (tests/conftest.py) starts LocalStack once per run
        request.getfixturevalue("localstack")
        started_here = False
    except pytest.FixtureLookupError:
        started_here = not stack.is_up()
    t0 = time.monotonic()
    outputs = stack.up(template=source / "template.yaml", stack_name=STACK, write_env=False)
    print(f"local stack up + deploy: {time.monotonic() - t0:.1f}s")
    try:
        yield Deployed(source, outputs)
    finally:
        if started_here:
            stack.down()
        else:
            stack.delete_stack(STACK)


@pytest.fixture(scope="module")
def lam(selftest: Deployed) -> Any:
    return stack.client("lambda")


def invoke(lam: Any, fn: str, payload: dict[str, Any]) -> tuple[dict[str, Any], str | None, str]:
    resp = lam.invoke(FunctionName=fn, Payload=json.dumps(payload).encode(), LogType="Tail")
    body = json.loads(resp["Payload"].read() or b"null")
    tail = base64.b64decode(resp.get("LogResult") or b"").decode()
    return body, resp.get("FunctionError"), tail


def results(bucket: str, prefix: str) -> dict[str, Any]:
    s3 = stack.client("s3")
    found = {}
    for obj in s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", []):
        found[obj["Key"]] = json.loads(s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read())
    return found


# ------------------------------------------------------------------------------- deploy
def test_redeploy_unchanged_is_a_no_op(selftest: Deployed) -> None:
    t0 = time.monotonic()
    outputs = selftest.redeploy()
    assert outputs == selftest.outputs
    assert time.monotonic() - t0 < 15
    cfn = stack.client("cloudformation")
    assert cfn.describe_stacks(StackName=STACK)["Stacks"][0]["StackStatus"] in (
        "CREATE_COMPLETE",
        "UPDATE_COMPLETE",
    )


def test_outputs_and_env_names(selftest: Deployed, tmp_path: Path) -> None:
    out = selftest.outputs
    assert out["ApiUrl"].startswith(f"{stack.ENDPOINT}/_aws/execute-api/")
    assert out["ApiUrl"].endswith("/v1")
    env = stack.write_local_env(
        {"DATABASE_URL": "postgresql://x"}, STACK, path=tmp_path / "local.env", outputs=out
    )
    assert env["DATALAKE_API_URL"] == out["ApiUrl"]
    assert env["DATALAKE_RESULTS_BUCKET"] == out["ResultsBucket"]
    assert env["DATALAKE_PIPELINE_ARN"] == out["PipelineArn"]
    assert env["AWS_ENDPOINT_URL"] == stack.ENDPOINT
    # caller extras survive a rewrite without them
    stack.write_local_env(None, STACK, path=tmp_path / "local.env", outputs=out)
    again = stack.read_local_env(tmp_path / "local.env")
    assert again["DATABASE_URL"] == "postgresql://x"
    assert again["DATALAKE_WORK_QUEUE_URL"] == out["WorkQueueUrl"]


# ------------------------------------------------------------------------------- direct invoke
def test_invoke_context_environment_and_layer(selftest: Deployed, lam: Any) -> None:
    fn = selftest.outputs["ProbeFunctionName"]
    body, err, tail = invoke(lam, fn, {"action": "describe", "x": [1, 2]})
    assert err is None, body
    assert body["event"] == {"action": "describe", "x": [1, 2]}
    assert body["greeting"] == "hello, probe"  # layer module + template parameter default
    code_dir = body["env"]["LAMBDA_TASK_ROOT"]
    assert body["cwd"] == code_dir
    assert body["sys_path"][0] == code_dir
    assert body["sys_path"][1].endswith("/python")
    assert body["layer_file"].startswith(body["sys_path"][1])
    env = body["env"]
    assert env["AWS_ENDPOINT_URL"] == stack.ENDPOINT
    assert env["AWS_ACCESS_KEY_ID"] == "test"
    assert env["AWS_REGION"] == env["AWS_DEFAULT_REGION"] == "us-east-1"
    assert env["AWS_LAMBDA_FUNCTION_NAME"] == fn
    assert env["PROBE_SETTING"] == "from-template"
    ctx = body["context"]
    assert ctx["function_name"] == fn
    assert ctx["invoked_function_arn"].endswith(f":function:{fn}")
    assert ctx["memory_limit_in_mb"] == "256"
    assert 0 < ctx["remaining_ms"] <= 2000
    assert ctx["aws_request_id"] in tail
    assert "probe action=describe" in tail


def test_handler_error_is_reported_like_aws(selftest: Deployed, lam: Any) -> None:
    body, err, tail = invoke(lam, selftest.outputs["ProbeFunctionName"], {"action": "raise"})
    assert err == "Unhandled"
    assert body["errorType"] == "ValueError"
    assert body["errorMessage"] == "boom from probe"
    assert any("app.py" in frame and "lambda_handler" in frame for frame in body["stackTrace"])
    assert "shim.py" not in "".join(body["stackTrace"])
    assert "[ERROR] ValueError: boom from probe" in tail
    body, err, _ = invoke(lam, selftest.outputs["ProbeFunctionName"], {"action": "unserializable"})
    assert err == "Unhandled" and body["errorType"] == "Runtime.MarshalError"


def test_init_error_is_reported(selftest: Deployed, lam: Any) -> None:
    for _ in range(2):
        body, err, _ = invoke(lam, selftest.outputs["BrokenFunctionName"], {})
        assert err == "Unhandled"
        assert body["errorType"] == "Runtime.ImportModuleError", body
        assert "No module named 'missing_module'" in body["errorMessage"]


def test_timeout_and_crash_then_recover(selftest: Deployed, lam: Any) -> None:
    fn = selftest.outputs["ProbeFunctionName"]
    before, _, _ = invoke(lam, fn, {})
    t0 = time.monotonic()
    body, err, _ = invoke(lam, fn, {"action": "sleep", "seconds": 10})
    elapsed = time.monotonic() - t0
    assert err == "Unhandled"
    assert body["errorType"] == "Sandbox.Timedout"
    assert "Task timed out after 2.00 seconds" in body["errorMessage"]
    assert 1.9 < elapsed < 6
    body, err, _ = invoke(lam, fn, {"action": "exit"})
    assert err == "Unhandled" and body["errorType"] == "Runtime.ExitError", body
    after, err, _ = invoke(lam, fn, {})
    assert err is None and after["greeting"] == "hello, probe"
    assert after["pid"] != before["pid"]


def test_concurrent_environments(selftest: Deployed, lam: Any) -> None:
    fn = selftest.outputs["ProbeFunctionName"]
    t0 = time.monotonic()
    with ThreadPoolExecutor(4) as pool:
        bodies = list(
            pool.map(lambda _: invoke(lam, fn, {"action": "sleep", "seconds": 1.2}), range(4))
        )
    assert all(err is None for _, err, _ in bodies), bodies
    assert len({b["pid"] for b, _, _ in bodies}) == 4
    assert time.monotonic() - t0 < 1.2 * 3


def test_logs_reach_file_and_cloudwatch(selftest: Deployed, lam: Any) -> None:
    fn = selftest.outputs["ProbeFunctionName"]
    marker = uuid.uuid4().hex
    invoke(lam, fn, {"action": marker})
    log_file = stack.LAMBDA_LOG_DIR / f"{fn}.log"
    wait_for(lambda: log_file.exists() and f"probe action={marker}" in log_file.read_text())
    logs = stack.client("logs")

    def in_cloudwatch() -> bool:
        try:
            events = logs.filter_log_events(logGroupName=f"/aws/lambda/{fn}")["events"]
        except logs.exceptions.ResourceNotFoundException:
            return False
        return any(marker in e["message"] for e in events)

    wait_for(in_cloudwatch, timeout=15)


# ------------------------------------------------------------------------------- REST API
def _http(method: str, url: str, body: Any = None) -> tuple[int, dict[str, str], Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(req, timeout=30) as resp:
            return resp.status, dict(resp.headers), json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), json.loads(e.read() or b"null")


def test_rest_api_proxy(selftest: Deployed) -> None:
    api = selftest.outputs["ApiUrl"]
    status, headers, doc = _http("POST", f"{api}/items/42?x=1", {"a": 1})
    assert status == 200, doc
    assert headers.get("X-Selftest") == "1"
    assert doc["path"] == "/items/42" and doc["proxy"] == "items/42"
    assert doc["method"] == "POST" and doc["query"] == {"x": "1"} and doc["body"] == {"a": 1}
    assert doc["greeting"] == "hello, api"
    status, _, doc = _http("GET", f"{api}/missing")
    assert status == 404 and doc["method"] == "GET"
    # the legacy path format works too
    api_id = api.split("/")[-2]
    status, _, doc = _http("GET", f"{stack.ENDPOINT}/restapis/{api_id}/v1/_user_request_/legacy")
    assert status == 200 and doc["path"] == "/legacy"


# ------------------------------------------------------------------------------- SQS / S3
def test_sqs_partial_batch_failure(selftest: Deployed) -> None:
    sqs = stack.client("sqs")
    out = selftest.outputs
    run = uuid.uuid4().hex[:8]
    sqs.send_message_batch(
        QueueUrl=out["WorkQueueUrl"],
        Entries=[
            {"Id": "a", "MessageBody": json.dumps({"id": f"{run}-a"})},
            {"Id": "b", "MessageBody": json.dumps({"id": f"{run}-b"})},
            {"Id": "c", "MessageBody": json.dumps({"id": f"{run}-bad", "fail": True})},
        ],
    )
    got = wait_for(lambda: len(r := results(out["ResultsBucket"], f"sqs/{run}-")) == 2 and r)
    assert set(got) == {f"sqs/{run}-a.json", f"sqs/{run}-b.json"}

    def dead_lettered() -> list[dict[str, Any]]:
        msgs = sqs.receive_message(
            QueueUrl=out["WorkDlqUrl"], MaxNumberOfMessages=10, WaitTimeSeconds=1
        ).get("Messages", [])
        return [m for m in msgs if run in m["Body"]]

    dead = wait_for(dead_lettered, timeout=40, every=0)
    assert [json.loads(m["Body"])["id"] for m in dead] == [f"{run}-bad"]


def test_s3_notification_to_lambda(selftest: Deployed) -> None:
    out = selftest.outputs
    key = f"in/{uuid.uuid4().hex[:6]} hello.txt"
    stack.client("s3").put_object(Bucket=out["UploadBucket"], Key=key, Body=b"hello lake")
    got = wait_for(lambda: results(out["ResultsBucket"], f"uploads/{key}"))
    doc = got[f"uploads/{key}.json"]
    assert doc["key"] == key and doc["size"] == 10 and doc["upper"] == "HELLO LAKE"
    assert doc["event"].startswith("ObjectCreated:")


# ------------------------------------------------------------------------------- Step Functions
def test_state_machine_map_callbacks_then_lambda(selftest: Deployed) -> None:
    sfn = stack.client("stepfunctions")
    arn = sfn.start_execution(
        stateMachineArn=selftest.outputs["PipelineArn"],
        name=f"run-{uuid.uuid4().hex[:8]}",
        input=json.dumps({"items": [{"n": 1}, {"n": 2}, {"n": 3}, {"n": 4}]}),
    )["executionArn"]

    def finished() -> dict[str, Any] | None:
        ex = sfn.describe_execution(executionArn=arn)
        return None if ex["status"] == "RUNNING" else ex

    ex = wait_for(finished, timeout=60, every=0.5)
    assert ex["status"] == "SUCCEEDED", ex
    out = json.loads(ex["output"])
    assert out["count"] == 4 and out["total"] == 20
    assert out["function"].startswith(f"{STACK}-FinishFunction")


# ------------------------------------------------------------------------------- code update
def test_code_update_is_picked_up(selftest: Deployed, lam: Any) -> None:
    app = selftest.source / "functions" / "probe" / "app.py"
    app.write_text(app.read_text().replace('"action": action,', '"action": action, "v": 2,'))
    layer = selftest.source / "layer" / "selftest_shared" / "__init__.py"
    layer.write_text(layer.read_text().replace('f"{os.environ', 'f"v2 {os.environ'))
    old_layer = selftest.outputs["LayerVersionArn"]
    t0 = time.monotonic()
    outputs = selftest.redeploy()
    print(f"update deploy: {time.monotonic() - t0:.1f}s")
    assert outputs["LayerVersionArn"] != old_layer
    body, err, _ = invoke(lam, outputs["ProbeFunctionName"], {})
    assert err is None, body
    assert body.get("v") == 2
    assert body["greeting"] == "v2 hello, probe"
    # the API function got the new layer version too
    status, _, doc = _http("GET", f"{outputs['ApiUrl']}/after-update")
    assert status == 200 and doc["greeting"] == "v2 hello, api"
