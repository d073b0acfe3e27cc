"""The catalog's HTTP API (FastAPI), served through Mangum on Lambda."""
