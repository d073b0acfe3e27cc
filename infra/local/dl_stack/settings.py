"""Where the local stack keeps its state, and how it is reached (port, endpoint, region).

Read once at import: ``DATALAKE_STATE_DIR`` (default ``<repo>/.datalake``) and
``DATALAKE_LOCALSTACK_PORT`` (default 4566).
"""

from __future__ import annotations

import os
from pathlib import Path

#: infra/local, the folder of stack.py, sam_build.py and the dl_localstack plugin.
HERE = Path(__file__).resolve().parents[1]
REPO = HERE.parents[1]
STATE = Path(os.environ.get("DATALAKE_STATE_DIR") or REPO / ".datalake").resolve()
LS_VENV = STATE / "localstack-venv"
LS_DIR = STATE / "localstack"
PID_FILE = STATE / "localstack.pid"
LOG_FILE = STATE / "localstack.log"
ENV_FILE = STATE / "local.env"
LAMBDA_LOG_DIR = STATE / "lambda-logs"
LAMBDA_STATE_DIR = LS_DIR / "lambda"
PLUGIN_DIR = HERE / "dl_localstack"

PINS = ("localstack-core[runtime]==2026.3.0", "cbor2<6", "pyopenssl<26")
#: What Lambda's python3.13 runtime provides besides the function's code and layers.
LAMBDA_RUNTIME_PINS = ("boto3==1.44.8",)
LAMBDA_RUNTIME = STATE / "lambda-runtime"
EXECUTOR = "local-process"
PORT = int(os.environ.get("DATALAKE_LOCALSTACK_PORT") or 4566)
ENDPOINT = f"http://127.0.0.1:{PORT}"
REGION = "us-east-1"
ACCOUNT = "000000000000"
DEFAULT_TEMPLATE = REPO / "infra" / "template.yaml"
DEFAULT_STACK = "datalake"
DEPLOY_BUCKET = "datalake-local-deploy"
CAPABILITIES = ["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"]
