"""Final state: sum the Map's results."""


def lambda_handler(event, context):
    results = event["results"]
    return {
        "count": len(results),
        "total": sum(r["doubled"] for r in results),
        "function": context.function_name,
    }
