"""Answers Step Functions callback tasks delivered through SQS."""

import json

import boto3

sfn = boto3.client("stepfunctions")


def lambda_handler(event, context):
    for record in event["Records"]:
        msg = json.loads(record["body"])
        item = msg["item"]
        sfn.send_task_success(
            taskToken=msg["token"], output=json.dumps({"item": item, "doubled": item["n"] * 2})
        )
