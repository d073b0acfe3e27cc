"""The API Lambda's import never loads pyarrow, fastavro or pyiceberg, nor boto3 (about
120 ms; only the routes that call AWS import it, on first use): cheap cold starts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_api_module_does_not_import_pyarrow() -> None:
    code = (
        "import sys, app\n"
        "heavy = sorted(m for m in sys.modules\n"
        "               if m.split('.')[0] in ('pyarrow', 'fastavro', 'pyiceberg', 'boto3'))\n"
        "print(heavy)\n"
        "assert not heavy, heavy\n"
        "assert callable(app.lambda_handler)\n"
    )
    env_path = f"{ROOT / 'functions' / 'api'}:{ROOT / 'layers' / 'datalake'}"
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": env_path, "PATH": "/usr/bin:/bin"},
        cwd=ROOT / "functions" / "api",
    )
    assert result.returncode == 0, result.stderr + result.stdout
