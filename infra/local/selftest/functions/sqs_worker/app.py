"""SQS batch handler with partial batch failures."""

import json

from selftest_shared import put_result


def lambda_handler(event, context):
    failures = []
    for record in event["Records"]:
        body = json.loads(record["body"])
        if body.get("fail"):
            print(f"failing message {record['messageId']}")
            failures.append({"itemIdentifier": record["messageId"]})
            continue
        put_result(f"sqs/{body['id']}.json", {"id": body["id"], "messageId": record["messageId"]})
    return {"batchItemFailures": failures}
