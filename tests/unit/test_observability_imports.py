"""Observability costs nothing it need not: tracing is off locally, and then the X-Ray
SDK is never imported (it would add about half a second to every cold start)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _python(code: str) -> None:
    """Run ``code`` in a fresh interpreter as the API function's import path sees it."""
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True,
        env={"PYTHONPATH": f"{ROOT / 'functions' / 'api'}:{ROOT / 'layers' / 'datalake'}",
             "PATH": "/usr/bin:/bin"},
        cwd=ROOT / "functions" / "api",
    )
    assert result.returncode == 0, result.stderr + result.stdout


def test_tracing_is_off_locally_and_costs_no_import() -> None:
    # The Tracer imports aws_xray_sdk (about 0.5 s of every cold start): not unless enabled.
    code = (
        "import sys, app\n"
        "from datalake.aws import observability as o\n"
        "assert 'aws_xray_sdk.core' not in sys.modules, 'xray imported'\n"
        "assert o._TRACER is None and not o.tracing_enabled()\n"
    )
    _python(code)


def test_tracing_switches_by_configuration() -> None:
    # DATALAKE_TRACING turns the Tracer on anywhere; POWERTOOLS_TRACE_DISABLED wins over it;
    # DATALAKE_ENVIRONMENT=aws turns it on by default.
    code = (
        "import os, sys\n"
        "from datalake.config import get_settings\n"
        "from datalake.aws import observability as o\n"
        "def on(**env):\n"
        "    for k in ('DATALAKE_TRACING', 'POWERTOOLS_TRACE_DISABLED', 'DATALAKE_ENVIRONMENT'):\n"
        "        os.environ.pop(k, None)\n"
        "    os.environ.update(env)\n"
        "    get_settings.cache_clear()\n"
        "    return o.tracing_enabled()\n"
        "assert not on()\n"
        "assert on(DATALAKE_TRACING='true')\n"
        "assert not on(DATALAKE_TRACING='true', POWERTOOLS_TRACE_DISABLED='true')\n"
        "assert on(DATALAKE_ENVIRONMENT='aws')\n"
        "assert not on(DATALAKE_ENVIRONMENT='aws', DATALAKE_TRACING='false')\n"
        "os.environ['DATALAKE_TRACING'] = 'true'; get_settings.cache_clear()\n"
        "assert not o.get_tracer().disabled, 'tracer stayed disabled'\n"
    )
    _python(code)
