"""S3 ObjectCreated notifications (via SQS): copy each new object, upper-cased, to results."""

import json
from urllib.parse import unquote_plus

import boto3
from selftest_shared import put_result

s3 = boto3.client("s3")


def lambda_handler(event, context):
    for record in event["Records"]:
        note = json.loads(record["body"])
        for rec in note.get("Records", []):  # s3:TestEvent has none
            bucket = rec["s3"]["bucket"]["name"]
            key = unquote_plus(rec["s3"]["object"]["key"])
            data = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
            put_result(
                f"uploads/{key}.json",
                {
                    "bucket": bucket,
                    "key": key,
                    "size": len(data),
                    "upper": data.decode().upper(),
                    "event": rec["eventName"],
                },
            )
