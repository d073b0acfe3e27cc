"""LocalStack plugins for running the data lake's Lambda functions without Docker."""
