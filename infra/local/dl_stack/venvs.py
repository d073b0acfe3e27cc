"""The interpreters the local stack runs: LocalStack's own venv (with the dl_localstack
plugin) and the Lambda runtime's (Python 3.13 with boto3 only)."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import time
from pathlib import Path

from dl_stack.host import FileLock, find_python313, is_current, run
from dl_stack.package import ZIP_EXCLUDE_DIRS, source_files
from dl_stack.report import StackError, say
from dl_stack.settings import LAMBDA_RUNTIME, LAMBDA_RUNTIME_PINS, LS_VENV, PINS, PLUGIN_DIR, STATE


def _plugin_files() -> list[Path]:
    return source_files(PLUGIN_DIR, ZIP_EXCLUDE_DIRS | {"build"})


def _venv_stamp() -> str:
    h = hashlib.sha256("\n".join(PINS).encode())
    for p in _plugin_files():
        h.update(p.relative_to(PLUGIN_DIR).as_posix().encode() + b"\0" + p.read_bytes())
    return h.hexdigest()


def _run(cmd: list[str]) -> None:
    run(cmd, error=StackError)


def ensure_venv() -> Path:
    """Create/refresh LocalStack's own venv; ~instant when the stamp matches."""
    python = LS_VENV / "bin" / "python"
    stamp = LS_VENV / ".datalake-stamp"
    want = _venv_stamp()
    if is_current(python, stamp, want):
        return python
    started = time.monotonic()
    if not python.exists():
        base = find_python313(StackError)
        say(f"creating LocalStack venv at {LS_VENV} with {base}")
        shutil.rmtree(LS_VENV, ignore_errors=True)
        _run([base, "-m", "venv", str(LS_VENV)])
    say("installing " + " ".join(PINS))
    pip = [str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    _run([*pip, *PINS])
    # build from a copy so setuptools leaves no build/ or egg-info in the repo
    with tempfile.TemporaryDirectory(prefix="dl-plugin-") as tmp:
        src = Path(tmp) / "src"
        shutil.copytree(
            PLUGIN_DIR,
            src,
            ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "build", "*.egg-info"),
        )
        _run([*pip, "--no-deps", "--force-reinstall", str(src)])
    stamp.write_text(want)
    say(f"LocalStack venv ready in {time.monotonic() - started:.1f}s")
    return python


def ensure_lambda_runtime() -> Path:
    """The interpreter that runs the Lambda handlers: Python 3.13 with boto3 only.

    That is what Lambda's python3.13 runtime offers a function besides its code and
    layers, so a dependency missing from a layer fails here as it would on AWS (the
    project's .venv, which has everything, would hide it).
    """
    python = LAMBDA_RUNTIME / "bin" / "python"
    stamp = LAMBDA_RUNTIME / ".datalake-stamp"
    want = "\n".join(LAMBDA_RUNTIME_PINS)
    if is_current(python, stamp, want):
        return python
    with FileLock(STATE / "lambda-runtime.lock"):
        if is_current(python, stamp, want):
            return python
        if not python.exists():
            say(f"creating the Lambda runtime interpreter at {LAMBDA_RUNTIME}")
            _run([find_python313(StackError), "-m", "venv", str(LAMBDA_RUNTIME)])
        _run([str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q",
              *LAMBDA_RUNTIME_PINS])
        stamp.write_text(want)
    return python


def lambda_python() -> str:
    """``DATALAKE_LAMBDA_PYTHON`` when set, else :func:`ensure_lambda_runtime`'s."""
    if os.environ.get("DATALAKE_LAMBDA_PYTHON"):
        return os.environ["DATALAKE_LAMBDA_PYTHON"]
    return str(ensure_lambda_runtime())
