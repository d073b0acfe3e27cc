#!/usr/bin/env python3
"""The local stack: LocalStack in host mode (no Docker) + the SAM template deployed into it.

Run with the project's virtual environment (needs boto3 and PyYAML):

    python infra/local/stack.py up        # venv + LocalStack + deploy + .datalake/local.env
    python infra/local/stack.py deploy    # (re)deploy infra/template.yaml as stack `datalake`
    python infra/local/stack.py env --set DATABASE_URL=... --set DATALAKE_TOKEN=...
    python infra/local/stack.py status
    python infra/local/stack.py down

Importable (tests, project.py, demo.py): ``up()``, ``deploy()``, ``down()``, ``is_up()``,
``stack_outputs()``, ``write_local_env()``, ``read_local_env()``, ``client()``,
``delete_stack()`` and the rest of ``__all__``; they live in the ``dl_stack`` package
beside this file, one module per concern.

State lives under ``<repo>/.datalake`` (``DATALAKE_STATE_DIR`` overrides it):
``localstack-venv/`` (LocalStack's own Python 3.13 venv + the dl_localstack plugin),
``localstack/`` (FILESYSTEM_ROOT, TMPDIR, Lambda environment state), ``localstack.pid``,
``localstack.log``, ``lambda-logs/<function>.log``, ``local.env``.

Environment knobs: ``DATALAKE_LAMBDA_PYTHON`` (interpreter running the Lambda handlers;
default ``.datalake/lambda-runtime``, Python 3.13 with boto3 only), ``DATALAKE_LOCALSTACK_PORT``
(default 4566), ``DATALAKE_PARAM_<NAME>`` or ``<NAME>`` in UPPER_SNAKE (template
parameter values, e.g. ``DATABASE_URL`` for ``DatabaseUrl``).
"""

from __future__ import annotations

import sys
from pathlib import Path

# Loaded by path too (tests/integration): the package beside it must be importable.
_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

from dl_stack.aws import client  # noqa: E402
from dl_stack.cli import main  # noqa: E402
from dl_stack.deploy import (  # noqa: E402
    delete_stack,
    deploy,
    local_api_url,
    resolve_parameters,
    stack_outputs,
)
from dl_stack.envfile import iceberg_env, output_env, read_local_env, write_local_env  # noqa: E402
from dl_stack.lifecycle import down, status, up  # noqa: E402
from dl_stack.package import built_template_for, package_template  # noqa: E402
from dl_stack.process import is_up, start, stop  # noqa: E402
from dl_stack.report import StackError  # noqa: E402
from dl_stack.settings import (  # noqa: E402
    ACCOUNT,
    DEFAULT_STACK,
    DEFAULT_TEMPLATE,
    ENDPOINT,
    ENV_FILE,
    LAMBDA_LOG_DIR,
    LOG_FILE,
    PORT,
    REGION,
    REPO,
    STATE,
)
from dl_stack.template import load_template, upper_snake  # noqa: E402
from dl_stack.venvs import ensure_lambda_runtime, ensure_venv  # noqa: E402

__all__ = [
    "ACCOUNT",
    "DEFAULT_STACK",
    "DEFAULT_TEMPLATE",
    "ENDPOINT",
    "ENV_FILE",
    "LAMBDA_LOG_DIR",
    "LOG_FILE",
    "PORT",
    "REGION",
    "REPO",
    "STATE",
    "StackError",
    "built_template_for",
    "client",
    "delete_stack",
    "deploy",
    "down",
    "ensure_lambda_runtime",
    "ensure_venv",
    "iceberg_env",
    "is_up",
    "load_template",
    "local_api_url",
    "main",
    "output_env",
    "package_template",
    "read_local_env",
    "resolve_parameters",
    "stack_outputs",
    "start",
    "status",
    "stop",
    "up",
    "upper_snake",
    "write_local_env",
]

if __name__ == "__main__":
    sys.exit(main())
