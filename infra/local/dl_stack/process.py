"""The LocalStack process: started in the background from its own venv, found again by
its pid file (or its working folder), probed by its health check, stopped by its group."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from dl_stack.host import FileLock
from dl_stack.report import StackError, say
from dl_stack.settings import (
    ENDPOINT,
    EXECUTOR,
    LAMBDA_LOG_DIR,
    LAMBDA_STATE_DIR,
    LOG_FILE,
    LS_DIR,
    PID_FILE,
    PORT,
    STATE,
)
from dl_stack.venvs import ensure_venv, lambda_python


def read_pid() -> int | None:
    """The pid of our LocalStack: the pid file's, else a live one started from our folder."""
    try:
        pid = int(PID_FILE.read_text().strip())
    except (OSError, ValueError):
        pid = None
    if pid and our_localstack(pid):
        return pid
    return _find_our_localstack() or pid


def _find_our_localstack() -> int | None:
    """A LocalStack runtime started by us (cwd = our LocalStack dir) without a pid file."""
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            if (
                "localstack.runtime.main" in _cmdline(int(entry.name))
                and Path(os.readlink(entry / "cwd")) == LS_DIR
            ):
                return int(entry.name)
        except (OSError, ValueError):
            continue
    return None


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie (our own child that exited) does not count
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def our_localstack(pid: int | None) -> bool:
    """``pid`` is alive and runs LocalStack's runtime."""
    if not pid:
        return False
    return _alive(pid) and "localstack.runtime.main" in _cmdline(pid)


def healthy(timeout: float = 2.0) -> bool:
    """Something answers LocalStack's health check on our endpoint."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(f"{ENDPOINT}/_localstack/health", timeout=timeout) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def is_up() -> bool:
    """Our LocalStack process is alive and answers its health check."""
    return our_localstack(read_pid()) and healthy()


def _localstack_env() -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYENV_VERSION"}
    }
    env.update(
        {
            "GATEWAY_LISTEN": f"127.0.0.1:{PORT}",
            "GATEWAY_SERVER": "hypercorn",
            "OVERRIDE_IN_DOCKER": "0",
            "LOCALSTACK_HOST": f"127.0.0.1:{PORT}",
            "SQS_ENDPOINT_STRATEGY": "path",
            "DNS_ADDRESS": "0",
            "FILESYSTEM_ROOT": str(LS_DIR / "fs"),
            "TMPDIR": str(LS_DIR / "tmp"),
            "DISABLE_EVENTS": "1",
            "SKIP_SSL_CERT_DOWNLOAD": "1",
            # event sources poll an empty queue at least every second (default: back off to 10 s)
            "LAMBDA_EVENT_SOURCE_MAPPING_MAX_BACKOFF_ON_EMPTY_POLL_SEC": os.environ.get(
                "LAMBDA_EVENT_SOURCE_MAPPING_MAX_BACKOFF_ON_EMPTY_POLL_SEC", "1"
            ),
            "LAMBDA_RUNTIME_EXECUTOR": EXECUTOR,
            "DATALAKE_LAMBDA_PYTHON": lambda_python(),
            "DATALAKE_LAMBDA_LOG_DIR": str(LAMBDA_LOG_DIR),
            "DATALAKE_LAMBDA_STATE_DIR": str(LAMBDA_STATE_DIR),
        }
    )
    return env


def start(timeout: float = 120.0) -> bool:
    """Start LocalStack in the background unless ours is already up. True if started."""
    if is_up():
        return False
    with FileLock(STATE / "localstack.lock"):
        return _start_locked(timeout)


def _start_locked(timeout: float) -> bool:
    if is_up():
        return False
    python = ensure_venv()
    pid = read_pid()
    if our_localstack(pid):
        # alive but not healthy: maybe still starting, else restart it
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and our_localstack(pid):
            if healthy():
                return False
            time.sleep(0.5)
        stop()
    if healthy():
        raise StackError(
            f"{ENDPOINT} is served by a process that is not ours "
            f"(no live pid in {PID_FILE}); stop it or set DATALAKE_LOCALSTACK_PORT"
        )
    handler_python = lambda_python()
    if not os.access(handler_python, os.X_OK):
        raise StackError(f"DATALAKE_LAMBDA_PYTHON={handler_python} is not executable")
    _kill_lambda_processes()
    for sub in ("tmp", "lambda"):
        shutil.rmtree(LS_DIR / sub, ignore_errors=True)
    for sub in ("fs", "tmp", "lambda"):
        (LS_DIR / sub).mkdir(parents=True, exist_ok=True)
    LAMBDA_LOG_DIR.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with open(LOG_FILE, "wb") as log:
        proc = subprocess.Popen(
            [str(python), "-m", "localstack.runtime.main"],
            env=_localstack_env(),
            cwd=str(LS_DIR),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    PID_FILE.write_text(str(proc.pid))
    deadline = time.monotonic() + timeout
    while True:
        text = LOG_FILE.read_text(errors="replace")
        if re.search(r"^Ready\.", text, re.M):
            break
        if proc.poll() is not None:
            PID_FILE.unlink(missing_ok=True)
            raise StackError(f"LocalStack exited with code {proc.returncode}:\n{_tail(text)}")
        if time.monotonic() > deadline:
            stop()
            raise StackError(f"LocalStack not ready after {timeout:.0f}s:\n{_tail(text)}")
        time.sleep(0.2)
    say(
        f"LocalStack ready on {ENDPOINT} (pid {proc.pid}, {time.monotonic() - started:.1f}s, "
        f"lambda python {handler_python})"
    )
    return True


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.splitlines()[-lines:])


def _kill_lambda_processes() -> int:
    """Kill Lambda environment processes left by the executor (each leads its own group)."""
    killed = 0
    for f in (LAMBDA_STATE_DIR / "pids").glob("*"):
        try:
            pid = int(f.name)
        except ValueError:
            continue
        if _alive(pid) and "shim.py" in _cmdline(pid):
            for kill in (os.killpg, os.kill):
                try:
                    kill(pid, signal.SIGKILL)
                    killed += 1
                    break
                except (ProcessLookupError, PermissionError):
                    continue
        f.unlink(missing_ok=True)
    return killed


def stop(timeout: float = 10.0) -> None:
    """Stop our LocalStack: SIGTERM to its process group, SIGKILL after ``timeout``."""
    pid = read_pid()
    if our_localstack(pid):
        assert pid is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _alive(pid):
            _reap(pid)
            time.sleep(0.1)
        if _alive(pid):
            say(f"LocalStack did not stop within {timeout:.0f}s: SIGKILL")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            for _ in range(50):
                _reap(pid)
                if not _alive(pid):
                    break
                time.sleep(0.1)
    _kill_lambda_processes()
    PID_FILE.unlink(missing_ok=True)


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)

