"""LocalStack Lambda runtime executor running each execution environment as a local process.

Selected with ``LAMBDA_RUNTIME_EXECUTOR=local-process``. Every execution environment is a
``python shim.py`` subprocess (interpreter: ``DATALAKE_LAMBDA_PYTHON``) in its own process
group, listening on its own free port. ``PYTHONPATH`` is the function's unzipped code, then
each layer's ``python/`` folder (what Lambda mounts as ``/opt/python``), nothing else.

Settings (environment of the LocalStack process):

* ``DATALAKE_LAMBDA_PYTHON``: absolute path of the interpreter (default: LocalStack's own);
* ``DATALAKE_LAMBDA_LOG_DIR``: per-function log files ``<function>.log`` (stdout/stderr);
* ``DATALAKE_LAMBDA_STATE_DIR``: pid files of live environments and their TMPDIRs.

This executor enforces the function timeout (it kills the process and answers
``Sandbox.Timedout``) and turns a crashed process into ``Runtime.ExitError``; the next
invocation on that environment starts a fresh process.
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import CancelledError, Future
from concurrent.futures import TimeoutError as FutureTimeout
from http import HTTPStatus
from pathlib import Path
from typing import Any

from localstack import config
from localstack.aws.api.lambda_ import PackageType
from localstack.http import Response
from localstack.services.lambda_.invocation.executor_endpoint import (
    ExecutorEndpoint,
    InvokeSendError,
    ShutdownDuringStartup,
    StatusErrorException,
)
from localstack.services.lambda_.invocation.lambda_models import (
    FunctionVersion,
    InvocationResult,
)
from localstack.services.lambda_.invocation.runtime_executor import (
    LambdaRuntimeException,
    RuntimeExecutor,
)
from localstack.utils.strings import to_str

LOG = logging.getLogger(__name__)

SHIM_PATH = str(Path(__file__).with_name("shim.py"))
HOST = "127.0.0.1"
TIMEOUT_GRACE_S = 0.25
KILL_WAIT_S = 2.0
# host variables a Python process reasonably needs; nothing else leaks in from LocalStack
PASS_THROUGH = (
    "HOME",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "USER",
    "LOGNAME",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "NO_PROXY",
    "no_proxy",
)


def lambda_python() -> str:
    return os.environ.get("DATALAKE_LAMBDA_PYTHON") or sys.executable


def _state_dir() -> Path:
    base = os.environ.get("DATALAKE_LAMBDA_STATE_DIR") or os.path.join(
        tempfile.gettempdir(), "dl-lambda"
    )
    return Path(base)


def _log_dir() -> Path:
    return Path(os.environ.get("DATALAKE_LAMBDA_LOG_DIR") or _state_dir() / "logs")


def _layer_paths(function_version: FunctionVersion) -> list[str]:
    """Python import roots of the function's layers, as Lambda puts them on sys.path."""
    paths: list[str] = []
    # Lambda extracts layers into /opt in order, later ones overwriting earlier ones:
    # on a search path the later layer must therefore come first.
    for layer in reversed(function_version.config.layers or []):
        if not layer.code:
            continue
        root = Path(layer.code.get_unzipped_code_location())
        py = root / "python"
        if not py.is_dir():
            # hot-reloaded layer folder without the python/ level
            paths.append(str(root))
            continue
        paths.append(str(py))
        paths.extend(str(p) for p in sorted(py.glob("lib/python3*/site-packages")))
    return paths


def _error_payload(error_type: str, message: str, trace: list[str] | None = None) -> bytes:
    return json.dumps(
        {"errorMessage": message, "errorType": error_type, "stackTrace": trace or []}
    ).encode()


class _Endpoint(ExecutorEndpoint):
    """Executor endpoint that learns the environment's port from its ready report."""

    current_request_id: str | None = None

    def status_ready(self, request: Any, executor_id: str) -> Response:
        try:
            doc: dict[str, Any] = request.get_json(silent=True, force=True) or {}
            port = int(doc.get("port") or 0)
        except (TypeError, ValueError):
            port = 0
        if port:
            self.container_port = port
        if self.startup_future is None or self.startup_future.done():
            return Response(status=HTTPStatus.BAD_REQUEST)
        self.startup_future.set_result(True)
        return Response(status=HTTPStatus.ACCEPTED)

    def status_error(self, request: Any, executor_id: str) -> Response:
        LOG.warning(
            "Execution environment %s failed to start: %s", executor_id, to_str(request.data)
        )
        if self.startup_future is None or self.startup_future.done():
            return Response(status=HTTPStatus.BAD_REQUEST)
        self.startup_future.set_exception(
            StatusErrorException("Environment startup failed", payload=request.data)
        )
        return Response(status=HTTPStatus.ACCEPTED)

    def _current(self, req_id: str) -> Future[InvocationResult] | None:
        fut = self.invocation_future
        if fut is None or fut.done() or req_id != self.current_request_id:
            LOG.debug("Ignoring late result for invocation %s", req_id)
            return None
        return fut

    def invocation_response(self, request: Any, req_id: str) -> Response:
        fut = self._current(req_id)
        if fut is not None:
            fut.set_result(InvocationResult(req_id, request.data, is_error=False, logs=self.logs))
        return Response(status=HTTPStatus.ACCEPTED)

    def invocation_error(self, request: Any, req_id: str) -> Response:
        fut = self._current(req_id)
        if fut is not None:
            fut.set_result(InvocationResult(req_id, request.data, is_error=True, logs=self.logs))
        return Response(status=HTTPStatus.ACCEPTED)


class LocalProcessRuntimeExecutor(RuntimeExecutor):
    executor_endpoint: _Endpoint

    def __init__(self, id: str, function_version: FunctionVersion) -> None:
        super().__init__(id=id, function_version=function_version)
        self.executor_endpoint = _Endpoint(self.id, container_address=HOST)
        self.process: subprocess.Popen[bytes] | None = None
        self._env: dict[str, str] = {}
        self._cwd = ""
        self._lock = threading.RLock()
        self._stopped = False
        self._output: collections.deque[str] = collections.deque(maxlen=5000)
        self._capture: list[str] | None = None
        self._readers: list[threading.Thread] = []
        self._tmp = _state_dir() / "envs" / self.id

    # ------------------------------------------------------------------ lifecycle
    def start(self, env_vars: dict[str, str]) -> None:
        self.executor_endpoint.start()
        self._env = self._build_env(env_vars)
        with self._lock:
            self._spawn_and_wait()

    def _build_env(self, env_vars: dict[str, Any]) -> dict[str, str]:
        fv = self.function_version
        code_dir = str(fv.config.code.get_unzipped_code_location()) if fv.config.code else ""
        self._cwd = code_dir or str(self._tmp)
        python = lambda_python()
        env = {k: os.environ[k] for k in PASS_THROUGH if k in os.environ}
        env["PATH"] = os.pathsep.join(
            [os.path.dirname(python), os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin")]
        )
        env.setdefault("LANG", "C.UTF-8")
        env.update({k: str(v) for k, v in env_vars.items() if v is not None})
        env.pop("AWS_SESSION_TOKEN", None)
        env.pop("LOCALSTACK_CHMOD_PATHS", None)
        port = config.GATEWAY_LISTEN[0].port
        tmp = self._tmp / "tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        env.update(
            {
                "AWS_ENDPOINT_URL": f"http://{HOST}:{port}",
                "AWS_ACCESS_KEY_ID": "test",
                "AWS_SECRET_ACCESS_KEY": "test",
                "AWS_EXECUTION_ENV": f"AWS_Lambda_{fv.config.runtime or 'python'}",
                "LAMBDA_TASK_ROOT": code_dir,
                "LAMBDA_RUNTIME_DIR": os.path.dirname(SHIM_PATH),
                "PYTHONPATH": os.pathsep.join([p for p in [code_dir, *_layer_paths(fv)] if p]),
                "PYTHONUNBUFFERED": "1",
                "TMPDIR": str(tmp),
                "DATALAKE_SHIM_PARENT_PID": str(os.getpid()),
                "DATALAKE_LAMBDA_ENV_ID": self.id,
            }
        )
        for k in ("PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "PYTHONNOUSERSITE"):
            env.pop(k, None)
        # the function's own configuration wins, as on AWS
        env.update({k: str(v) for k, v in (fv.config.environment or {}).items()})
        return env

    def _spawn(self) -> None:
        python = lambda_python()
        log_dir = _log_dir()
        log_dir.mkdir(parents=True, exist_ok=True)
        pid_dir = _state_dir() / "pids"
        pid_dir.mkdir(parents=True, exist_ok=True)
        proc = subprocess.Popen(
            [python, "-u", SHIM_PATH],
            env=self._env,
            cwd=self._cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )
        self.process = proc
        (pid_dir / str(proc.pid)).write_text(
            json.dumps({"env": self.id, "function": self.function_version.qualified_arn})
        )
        log_path = log_dir / f"{self.function_version.id.function_name}.log"
        reader = threading.Thread(
            target=self._read_output,
            args=(proc, log_path),
            name=f"lambda-output-{self.id[:8]}",
            daemon=True,
        )
        reader.start()
        self._readers.append(reader)
        LOG.debug(
            "Started Lambda environment %s (pid %s) for %s",
            self.id,
            proc.pid,
            self.function_version.qualified_arn,
        )

    def _read_output(self, proc: subprocess.Popen[bytes], log_path: Path) -> None:
        assert proc.stdout is not None
        with open(log_path, "ab", buffering=0) as log:
            for raw in iter(proc.stdout.readline, b""):
                with contextlib.suppress(OSError):
                    log.write(raw)
                line = raw.decode("utf-8", "replace")
                self._output.append(line)
                capture = self._capture
                if capture is not None:
                    capture.append(line)
        proc.stdout.close()

    def _spawn_and_wait(self) -> None:
        ep = self.executor_endpoint
        if ep.startup_future is None or ep.startup_future.done():
            ep.startup_future = Future()
        self._spawn()
        proc = self.process
        assert proc is not None
        while True:
            try:
                ep.startup_future.result(timeout=0.1)
                return
            except FutureTimeout:
                pass
            except CancelledError as e:
                raise ShutdownDuringStartup("Environment stopped during startup") from e
            if self._stopped:
                raise ShutdownDuringStartup("Environment stopped during startup")
            code = proc.poll()
            if code is not None:
                try:
                    ep.startup_future.result(timeout=0.5)  # a report may still be in flight
                    return
                except FutureTimeout:
                    pass
                self._join_readers()
                tail = [line.rstrip("\n") for line in list(self._output)[-30:]]
                LOG.warning(
                    "Lambda environment %s exited during init (code %s):\n%s",
                    self.id,
                    code,
                    "\n".join(tail),
                )
                raise StatusErrorException(
                    "Environment startup failed",
                    payload=_error_payload(
                        "Runtime.ExitError",
                        f"RequestId: {self.id} Error: Runtime exited with error: "
                        f"{self._describe_exit(code)}",
                        tail,
                    ),
                )

    @staticmethod
    def _describe_exit(code: int) -> str:
        if code < 0:
            try:
                return f"signal: {signal.Signals(-code).name.lower().removeprefix('sig')}"
            except ValueError:
                return f"signal: {-code}"
        return f"exit status {code}"

    def _join_readers(self, timeout: float = 1.0) -> None:
        for reader in self._readers:
            reader.join(timeout)
        self._readers = [r for r in self._readers if r.is_alive()]

    def _kill(self) -> None:
        proc = self.process
        if proc is None:
            return
        if proc.poll() is None:
            for sig, wait in ((signal.SIGTERM, 1.0), (signal.SIGKILL, KILL_WAIT_S)):
                try:
                    os.killpg(proc.pid, sig)
                except (ProcessLookupError, PermissionError):
                    break
                try:
                    proc.wait(wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        else:
            # the leader is gone; take down whatever it left in its group
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(FileNotFoundError):
            (_state_dir() / "pids" / str(proc.pid)).unlink()
        self._join_readers()

    def stop(self) -> None:
        self._stopped = True
        with self._lock:
            self._kill()
        try:
            self.executor_endpoint.shutdown()
        except Exception as e:
            LOG.debug("Error while stopping executor endpoint of %s: %s", self.id, e)
        shutil.rmtree(self._tmp, ignore_errors=True)

    # ------------------------------------------------------------------ invoke
    def invoke(self, payload: dict[str, str]) -> InvocationResult:
        with self._lock:
            proc = self.process
            if proc is None or proc.poll() is not None:
                LOG.debug("Lambda environment %s restarts its process", self.id)
                self._kill()
                self._spawn_and_wait()
            return self._invoke(payload)

    def _invoke(self, payload: dict[str, str]) -> InvocationResult:
        ep = self.executor_endpoint
        proc = self.process
        assert proc is not None
        request_id = payload["invoke-id"]
        timeout_s = float(self.function_version.config.timeout or 3)
        started = time.time()
        body: dict[str, Any] = dict(payload)
        body["deadline-ms"] = int((started + timeout_s) * 1000)
        self._capture = []
        ep.logs = None
        ep.current_request_id = request_id
        ep.invocation_future = Future()
        try:
            url = f"http://{HOST}:{ep.container_port}/invoke"
            response = ExecutorEndpoint._perform_invoke(
                invocation_url=url, proxies={"http": "", "https": ""}, payload=body
            )
            if not response.ok:
                raise InvokeSendError(
                    f"Error while sending invocation to {url}: {response.status_code}"
                )
            deadline = time.monotonic() + timeout_s + TIMEOUT_GRACE_S
            while True:
                try:
                    return ep.invocation_future.result(timeout=0.05)
                except FutureTimeout:
                    pass
                code = proc.poll()
                if code is not None:
                    try:
                        return ep.invocation_future.result(timeout=0.3)
                    except FutureTimeout:
                        pass
                    self._join_readers()
                    message = (
                        f"RequestId: {request_id} Error: Runtime exited with error: "
                        f"{self._describe_exit(code)}"
                    )
                    return self._failed(request_id, "Runtime.ExitError", message, started)
                if time.monotonic() > deadline:
                    self._kill()
                    message = (
                        f"RequestId: {request_id} Error: Task timed out after "
                        f"{timeout_s:.2f} seconds"
                    )
                    return self._failed(request_id, "Sandbox.Timedout", message, started)
        finally:
            self._capture = None
            ep.current_request_id = None

    def _failed(
        self, request_id: str, error_type: str, message: str, started: float
    ) -> InvocationResult:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
        lines = "".join(self._capture or [])
        duration = (time.time() - started) * 1000
        logs = (
            f"{lines}{ts}Z {request_id} {message}\nEND RequestId: {request_id}\n"
            f"REPORT RequestId: {request_id}\tDuration: {duration:.2f} ms\t"
            f"Status: {'timeout' if error_type == 'Sandbox.Timedout' else 'error'}\n"
        )
        self._append_log(f"{ts}Z {request_id} {message}\n")
        return InvocationResult(
            request_id, _error_payload(error_type, message), is_error=True, logs=logs
        )

    def _append_log(self, text: str) -> None:
        try:
            path = _log_dir() / f"{self.function_version.id.function_name}.log"
            with open(path, "a", encoding="utf-8") as f:
                f.write(text)
        except OSError:
            pass

    # ------------------------------------------------------------------ addresses / logs
    def get_address(self) -> str:
        return HOST

    def get_endpoint_from_executor(self) -> str:
        return HOST

    def get_runtime_endpoint(self) -> str:
        port = config.GATEWAY_LISTEN[0].port
        return f"http://{HOST}:{port}{self.executor_endpoint.get_endpoint_prefix()}"

    def get_logs(self) -> str:
        return "".join(self._output)

    # ------------------------------------------------------------------ versions
    @classmethod
    def prepare_version(cls, function_version: FunctionVersion) -> None:
        cfg = function_version.config
        if cfg.package_type != PackageType.Zip:
            raise LambdaRuntimeException("local-process executor: only Zip packages run")
        if cfg.runtime and not str(cfg.runtime).startswith("python"):
            raise LambdaRuntimeException(
                f"local-process executor: runtime {cfg.runtime} is not supported (python only)"
            )
        python = lambda_python()
        if not os.access(python, os.X_OK):
            raise LambdaRuntimeException(
                f"local-process executor: DATALAKE_LAMBDA_PYTHON={python} is not executable"
            )
        if cfg.code:
            cfg.code.prepare_for_execution()
        for layer in cfg.layers or []:
            if layer.code:
                layer.code.prepare_for_execution()

    @classmethod
    def cleanup_version(cls, function_version: FunctionVersion) -> None:
        pass

    @classmethod
    def validate_environment(cls) -> bool:
        python = lambda_python()
        if not os.access(python, os.X_OK):
            LOG.warning("local-process executor: %s is not an executable interpreter", python)
            return False
        return True
