"""Lambda runtime shim: runs one Python Lambda execution environment as a local process.

Started by ``dl_localstack.executor.LocalProcessRuntimeExecutor`` with the function's
interpreter (``DATALAKE_LAMBDA_PYTHON``). Standard library only: it must not import
anything from the LocalStack venv, and it must not shadow the function's own modules.

Protocol (LocalStack's init protocol, as the Go ``init`` binary speaks it):

* environment: ``LOCALSTACK_RUNTIME_ENDPOINT`` (``http://host:port/_localstack_lambda/<id>``),
  ``LOCALSTACK_RUNTIME_ID``, ``_HANDLER``, the function's environment;
* after importing the handler: ``POST {endpoint}/status/{id}/ready`` with
  ``{"port": <port of our HTTP server>}``, or ``POST {endpoint}/status/{id}/error``
  with an AWS-shaped error document (then exit);
* ``POST /invoke`` on our port with ``{"invoke-id", "invoked-function-arn", "payload",
  "trace-id", "deadline-ms"}`` -> answered 202 at once; the handler runs on the main
  thread, then ``POST {endpoint}/invocations/{id}/logs`` (``{"logs": ...}``) and
  ``POST {endpoint}/invocations/{id}/response`` (or ``/error``).

Timeouts and crashes are enforced by the executor (it kills this process).
"""

from __future__ import annotations

import contextlib
import decimal
import http.server
import importlib
import json
import logging
import os
import queue
import sys
import threading
import time
import traceback
import urllib.request
from typing import Any

_SHIM_FILE = os.path.abspath(__file__)
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
_INVOCATIONS: queue.Queue[dict[str, Any]] = queue.Queue()


# --------------------------------------------------------------------------- output capture
class _Capture:
    """Collects what the handler writes to stdout/stderr during one invocation."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.parts: list[str] | None = None
        self.request_id = ""

    def begin(self, request_id: str) -> None:
        with self.lock:
            self.parts = []
            self.request_id = request_id

    def add(self, text: str) -> None:
        with self.lock:
            if self.parts is not None:
                self.parts.append(text)

    def end(self) -> str:
        with self.lock:
            text = "".join(self.parts or [])
            self.parts = None
            self.request_id = ""
            return text


_CAPTURE = _Capture()


class _TeeStream:
    """Text stream writing through to the real stream and into the invocation capture."""

    def __init__(self, real: Any) -> None:
        self._real = real

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        try:
            self._real.write(text)
            self._real.flush()
        except (OSError, ValueError):
            pass
        _CAPTURE.add(text)
        return len(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self._real.flush()

    def isatty(self) -> bool:
        return False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


class _RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.aws_request_id = _CAPTURE.request_id
        return True


def _setup_output() -> None:
    sys.stdout = _TeeStream(sys.__stdout__)
    sys.stderr = _TeeStream(sys.__stderr__)
    # Like the AWS Python runtime: a root handler writing to stdout, level WARNING unless
    # AWS_LAMBDA_LOG_LEVEL says otherwise.
    fmt = logging.Formatter(
        "[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(aws_request_id)s\t%(message)s",
        "%Y-%m-%dT%H:%M:%S",
    )
    fmt.converter = time.gmtime
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(fmt)
    handler.addFilter(_RequestIdFilter())
    root = logging.getLogger()
    root.addHandler(handler)
    level = os.environ.get("AWS_LAMBDA_LOG_LEVEL")
    if level:
        root.setLevel(level.upper())


# --------------------------------------------------------------------------- talking to LocalStack
def _endpoint() -> str:
    return os.environ["LOCALSTACK_RUNTIME_ENDPOINT"].rstrip("/")


def _post(path: str, body: bytes) -> None:
    req = urllib.request.Request(
        _endpoint() + path, data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    with _OPENER.open(req, timeout=30) as resp:
        resp.read()


def _post_json(path: str, doc: Any) -> None:
    _post(path, json.dumps(doc).encode())


# --------------------------------------------------------------------------- errors
def _user_frames(tb: Any) -> list[str]:
    frames = [
        f
        for f in traceback.extract_tb(tb)
        if os.path.abspath(f.filename) != _SHIM_FILE
        and not f.filename.startswith("<frozen importlib")
        and os.path.abspath(f.filename) != os.path.abspath(importlib.__file__ or "")
    ]
    return traceback.format_list(frames)


def _error_doc(
    exc: BaseException,
    error_type: str | None = None,
    message: str | None = None,
    request_id: str | None = None,
) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "errorMessage": str(exc) if message is None else message,
        "errorType": error_type or type(exc).__name__,
    }
    if request_id:
        doc["requestId"] = request_id
    doc["stackTrace"] = _user_frames(exc.__traceback__)
    return doc


def _log_error(doc: dict[str, Any]) -> None:
    lines = [f"[ERROR] {doc['errorType']}: {doc['errorMessage']}"]
    if doc.get("stackTrace"):
        lines.append("Traceback (most recent call last):")
        lines.extend(s.rstrip("\n") for s in doc["stackTrace"])
    sys.stdout.write("\n".join(lines) + "\n")


class _InitError(Exception):
    def __init__(self, doc: dict[str, Any]) -> None:
        super().__init__(doc["errorMessage"])
        self.doc = doc


def _load_handler(spec: str) -> Any:
    if "." not in spec:
        raise _InitError(
            {
                "errorMessage": f"Bad handler '{spec}': not enough values to unpack "
                "(expected 2, got 1)",
                "errorType": "Runtime.MalformedHandlerName",
                "stackTrace": [],
            }
        )
    modname, fname = spec.rsplit(".", 1)
    modname = modname.replace("/", ".")
    try:
        module = importlib.import_module(modname)
    except ImportError as e:
        raise _InitError(
            _error_doc(e, "Runtime.ImportModuleError", f"Unable to import module '{modname}': {e}")
        ) from e
    except SyntaxError as e:
        raise _InitError(
            _error_doc(e, "Runtime.UserCodeSyntaxError", f"Syntax error in module '{modname}': {e}")
        ) from e
    except Exception as e:
        raise _InitError(_error_doc(e)) from e
    handler = getattr(module, fname, None)
    if handler is None:
        raise _InitError(
            {
                "errorMessage": f"Handler '{fname}' missing on module '{modname}'",
                "errorType": "Runtime.HandlerNotFound",
                "stackTrace": [],
            }
        )
    return handler


# --------------------------------------------------------------------------- context
class _CognitoIdentity:
    cognito_identity_id = None
    cognito_identity_pool_id = None


class LambdaContext:
    """The attributes the AWS Python runtime's context object has."""

    def __init__(
        self, request_id: str, invoked_arn: str, deadline_ms: int, client_context: Any = None
    ) -> None:
        env = os.environ
        self.aws_request_id = request_id
        self.invoked_function_arn = invoked_arn
        self.function_name = env.get("AWS_LAMBDA_FUNCTION_NAME", "")
        self.function_version = env.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        # a string, as in awslambdaric
        self.memory_limit_in_mb = env.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        self.log_group_name = env.get("AWS_LAMBDA_LOG_GROUP_NAME", "")
        self.log_stream_name = env.get("AWS_LAMBDA_LOG_STREAM_NAME", "")
        self.identity = _CognitoIdentity()
        self.client_context = client_context
        self.tenant_id = None
        self._deadline_ms = deadline_ms

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int(self._deadline_ms - time.time() * 1000))

    def log(self, msg: str) -> None:
        sys.stdout.write(msg)

    def __repr__(self) -> str:
        return (
            f"LambdaContext([aws_request_id={self.aws_request_id},"
            f"function_name={self.function_name},"
            f"invoked_function_arn={self.invoked_function_arn}])"
        )


def _json_default(obj: Any) -> Any:
    if isinstance(obj, decimal.Decimal):
        return int(obj) if obj == obj.to_integral_value() else float(obj)
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


# --------------------------------------------------------------------------- invoke loop
class _InvokeHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if self.path.rstrip("/") != "/invoke":
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        try:
            inv = json.loads(body)
        except ValueError:
            self.send_response(400)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        _INVOCATIONS.put(inv)
        self.send_response(202)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _run_one(handler: Any, inv: dict[str, Any], init_ms: float | None) -> None:
    request_id = inv.get("invoke-id") or ""
    arn = inv.get("invoked-function-arn") or ""
    timeout_s = float(os.environ.get("AWS_LAMBDA_FUNCTION_TIMEOUT") or 3)
    deadline_ms = int(inv.get("deadline-ms") or time.time() * 1000 + timeout_s * 1000)
    if inv.get("trace-id"):
        os.environ["_X_AMZN_TRACE_ID"] = inv["trace-id"]
    max_size = int(os.environ.get("LOCALSTACK_MAX_PAYLOAD_SIZE") or 6 * 1024 * 1024)

    _CAPTURE.begin(request_id)
    version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
    sys.stdout.write(f"START RequestId: {request_id} Version: {version}\n")
    started = time.monotonic()
    error: dict[str, Any] | None = None
    body = b""
    try:
        raw = inv.get("payload")
        event = json.loads(raw) if raw else {}
        client_context = None
        if inv.get("client-context"):
            try:
                client_context = json.loads(inv["client-context"])
            except ValueError:
                client_context = None
        context = LambdaContext(request_id, arn, deadline_ms, client_context)
        result = handler(event, context)
        try:
            body = json.dumps(result, default=_json_default).encode()
        except (TypeError, ValueError) as e:
            error = _error_doc(
                e, "Runtime.MarshalError", f"Unable to marshal response: {e}", request_id
            )
            error["stackTrace"] = []
        else:
            if len(body) > max_size:
                error = {
                    "errorMessage": "Response payload size exceeded maximum allowed payload "
                    f"size ({max_size} bytes).",
                    "errorType": "Function.ResponseSizeTooLarge",
                    "requestId": request_id,
                    "stackTrace": [],
                }
    except Exception as e:
        error = _error_doc(e, request_id=request_id)
    if error is not None:
        _log_error(error)
    sys.stdout.flush()
    duration = (time.monotonic() - started) * 1000
    report = (
        f"REPORT RequestId: {request_id}\tDuration: {duration:.2f} ms\t"
        f"Billed Duration: {int(duration) + 1} ms\t"
        f"Memory Size: {os.environ.get('AWS_LAMBDA_FUNCTION_MEMORY_SIZE', '128')} MB\t"
        f"Max Memory Used: {_max_rss_mb()} MB\t"
    )
    if init_ms is not None:
        report += f"Init Duration: {init_ms:.2f} ms\t"
    sys.stdout.write(f"END RequestId: {request_id}\n{report}\n")
    logs = _CAPTURE.end()

    _post_json(f"/invocations/{request_id}/logs", {"logs": logs})
    if error is None:
        _post(f"/invocations/{request_id}/response", body)
    else:
        _post_json(f"/invocations/{request_id}/error", error)


def _max_rss_mb() -> int:
    # VmHWM: peak RSS of this program (ru_maxrss would include the forking parent's)
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) // 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _watch_parent() -> None:
    """Exit when LocalStack (our parent) goes away, so no environment outlives it."""
    parent = int(os.environ.get("DATALAKE_SHIM_PARENT_PID") or os.getppid())
    while True:
        time.sleep(1.0)
        if os.getppid() != parent:
            os._exit(0)


def main() -> None:
    # never let our own directory shadow the function's modules
    here = os.path.dirname(_SHIM_FILE)
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here]
    threading.Thread(target=_watch_parent, name="parent-watch", daemon=True).start()
    _setup_output()

    init_started = time.monotonic()
    try:
        handler = _load_handler(os.environ.get("_HANDLER", ""))
    except _InitError as e:
        _log_error(e.doc)
        sys.stdout.flush()
        try:
            _post_json(f"/status/{os.environ['LOCALSTACK_RUNTIME_ID']}/error", e.doc)
        finally:
            os._exit(1)
    init_ms: float | None = (time.monotonic() - init_started) * 1000

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _InvokeHandler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="invoke-server", daemon=True).start()
    _post_json(
        f"/status/{os.environ['LOCALSTACK_RUNTIME_ID']}/ready", {"port": server.server_address[1]}
    )

    while True:
        inv = _INVOCATIONS.get()
        try:
            _run_one(handler, inv, init_ms)
        except Exception:
            print("dl_localstack shim: could not report an invocation:", file=sys.stderr)
            traceback.print_exc()
        init_ms = None


if __name__ == "__main__":
    main()
