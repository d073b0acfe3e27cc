"""Direct-invoke probe: reports its environment, or misbehaves on request."""

import json
import os
import sys
import time

import selftest_shared

print("probe module imported")


def lambda_handler(event, context):
    action = event.get("action", "describe")
    print(f"probe action={action}")
    if action == "raise":
        raise ValueError("boom from probe")
    if action == "sleep":
        time.sleep(float(event.get("seconds", 1)))
    if action == "exit":
        os._exit(3)
    if action == "unserializable":
        return {"value": object()}
    return {
        "action": action,
        "greeting": selftest_shared.greet("probe"),
        "layer_file": selftest_shared.__file__,
        "sys_path": sys.path[:4],
        "cwd": os.getcwd(),
        "pid": os.getpid(),
        "env": {
            k: os.environ.get(k)
            for k in (
                "AWS_ENDPOINT_URL",
                "AWS_ACCESS_KEY_ID",
                "AWS_REGION",
                "AWS_DEFAULT_REGION",
                "AWS_LAMBDA_FUNCTION_NAME",
                "PROBE_SETTING",
                "GREETING",
                "LAMBDA_TASK_ROOT",
                "_HANDLER",
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
            )
        },
        "context": {
            "aws_request_id": context.aws_request_id,
            "function_name": context.function_name,
            "invoked_function_arn": context.invoked_function_arn,
            "memory_limit_in_mb": context.memory_limit_in_mb,
            "remaining_ms": context.get_remaining_time_in_millis(),
        },
        "event": json.loads(json.dumps(event)),
    }
