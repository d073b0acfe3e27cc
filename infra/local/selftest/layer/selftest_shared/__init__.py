"""Shared code shipped as the self-test's Lambda layer."""

import json
import os

import boto3

LAYER_MARKER = "selftest-shared-layer"


def greet(name: str) -> str:
    return f"{os.environ.get('GREETING', 'hi')}, {name}"


def put_result(key: str, doc: dict) -> None:
    boto3.client("s3").put_object(
        Bucket=os.environ["RESULTS_BUCKET"], Key=key, Body=json.dumps(doc).encode()
    )
