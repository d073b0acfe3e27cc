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


def _run(code: str, env: dict[str, str], extra_path: Path | None = None) -> None:
    paths = [ROOT / "functions" / "api", ROOT / "layers" / "datalake"]
    if extra_path is not None:
        paths.insert(0, extra_path)
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": ":".join(map(str, paths)), "PATH": "/usr/bin:/bin", **env},
        cwd=ROOT / "functions" / "api",
    )
    assert result.returncode == 0, result.stderr + result.stdout


def test_snapstart_hook_imports_the_driver_before_the_snapshot_and_connects_to_nothing(
    tmp_path: Path,
) -> None:
    # Lambda's Python runtimes ship snapshot_restore_py; this stand-in records the hooks.
    (tmp_path / "snapshot_restore_py.py").write_text(
        "hooks = []\n"
        "def register_before_snapshot(func, *args, **kwargs):\n"
        "    hooks.append(func)\n"
        "    return func\n"
    )
    code = (
        "import sys, app, snapshot_restore_py as hooks\n"
        "from datalake.catalog import db\n"
        "assert len(hooks.hooks) == 1, hooks.hooks\n"
        "assert 'psycopg' not in sys.modules  # the first request's import, unprimed\n"
        "hooks.hooks[0]()\n"
        "assert 'psycopg' in sys.modules and 'sqlalchemy.dialects.postgresql' in sys.modules\n"
        # No engine (so no connection) and no secret read: both belong after the restore.
        "assert db.get_engine.cache_info().currsize == 0\n"
        "assert 'boto3' not in sys.modules\n"
    )
    secret_env = {
        "DATABASE_SECRET_ARN": "arn:aws:secretsmanager:us-east-1:000000000000:secret:db",
        "DATALAKE_DB_DRIVER": "psycopg",
    }
    _run(code, secret_env, tmp_path)


def test_preload_driver_follows_the_url_and_is_a_no_op_hook_off_lambda() -> None:
    code = (
        "import sys\n"
        "from datalake.catalog.db import preload_driver\n"
        "from datalake_api import snapstart\n"
        "assert snapstart.register() is False  # no snapshot_restore_py: not on Lambda\n"
        "assert preload_driver() == 'postgresql+pg8000', preload_driver()\n"
        "assert 'pg8000' in sys.modules and 'psycopg' not in sys.modules\n"
    )
    _run(code, {"DATABASE_URL": "postgresql+pg8000://nobody@127.0.0.1:1/none"})
