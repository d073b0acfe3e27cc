"""REST API proxy handler returning JSON."""

import json

import selftest_shared


def lambda_handler(event, context):
    body = event.get("body")
    doc = {
        "path": event.get("path"),
        "method": event.get("httpMethod"),
        "proxy": (event.get("pathParameters") or {}).get("proxy"),
        "query": event.get("queryStringParameters"),
        "body": json.loads(body) if body else None,
        "greeting": selftest_shared.greet("api"),
        "function": context.function_name,
    }
    status = 404 if doc["proxy"] == "missing" else 200
    return {
        "statusCode": status,
        "headers": {"Content-Type": "application/json", "X-Selftest": "1"},
        "body": json.dumps(doc),
    }
