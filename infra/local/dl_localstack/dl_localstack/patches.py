"""Patches applied inside the LocalStack process at start-up (on_infra_start hook)."""

from __future__ import annotations

import contextlib
import faulthandler
import logging
import os
import signal
import sys
import tempfile
import threading
from typing import Any

LOG = logging.getLogger(__name__)


# hard limit for an orderly shutdown (stack.py sends SIGKILL after 10 s anyway)
SHUTDOWN_DEADLINE_S = float(os.environ.get("DATALAKE_LOCALSTACK_SHUTDOWN_DEADLINE") or 8)


def apply_all() -> None:
    _dump_threads_on_sigusr1()
    _private_s3_storage()
    _exit_promptly()
    _cache_jsonpath_parsing()
    _heartbeat_without_heartbeat_seconds()


def _heartbeat_without_heartbeat_seconds() -> None:
    """AWS accepts SendTaskHeartbeat for a callback task that sets no HeartbeatSeconds
    (the token is live: there is just no heartbeat timer to reset). LocalStack answers
    InvalidToken, so a worker would take its live token for a dead one. Accept it, as
    AWS does; a dead or unknown token still fails as before."""
    from localstack.services.stepfunctions.asl.eval.callback import callback

    Endpoint: Any = callback.CallbackEndpoint
    if getattr(Endpoint, "_dl_patched", False):
        return
    original = Endpoint.notify_heartbeat

    def notify_heartbeat(self: Any) -> bool:
        if self._heartbeat_endpoint is None:
            return True
        return bool(original(self))

    Endpoint.notify_heartbeat = notify_heartbeat
    Endpoint._dl_patched = True


def _cache_jsonpath_parsing() -> None:
    """Step Functions speed: LocalStack calls ``jsonpath_ng.ext.parse`` on every JSONPath
    evaluation, which rebuilds the PLY parser each time (about 10 per Map item, under one
    interpreter lock): a Distributed Map ran ~1 item/s. Parsed expressions are immutable,
    so memoising the parse by its text changes nothing but the time (2,500 items: ~35 min
    -> ~6 min in a measurement with answering threads in place of workers)."""
    import functools

    import jsonpath_ng
    import jsonpath_ng.ext
    import jsonpath_ng.ext.parser

    if getattr(jsonpath_ng.ext.parse, "_dl_cached", False):
        return
    cached_ext: Any = functools.lru_cache(maxsize=8192)(jsonpath_ng.ext.parser.parse)
    cached_plain: Any = functools.lru_cache(maxsize=8192)(jsonpath_ng.parse)
    cached_ext._dl_cached = cached_plain._dl_cached = True
    jsonpath_ng.ext.parse = jsonpath_ng.ext.parser.parse = cached_ext
    jsonpath_ng.parse = cached_plain
    # modules that bound the name before this hook ran
    for name, attr, fn in (
        ("localstack.services.stepfunctions.asl.utils.json_path", "parse", cached_ext),
        ("localstack.services.stepfunctions.asl.component.common.path.result_path", "parse",
         cached_plain),
    ):
        module = sys.modules.get(name)
        if module is not None:
            setattr(module, attr, fn)


def _exit_promptly() -> None:
    """Shutdown hang: on SIGTERM the runtime stops Hypercorn's event loop while a gateway
    worker thread may still wait for it to send a response (an SQS long poll, a Lambda
    invoke). The main thread then returns, and the interpreter blocks forever at exit
    joining that worker (concurrent.futures' _python_exit). So: once the runtime has run
    its shutdown hooks and cleanup, leave with os._exit; and never take longer than
    SHUTDOWN_DEADLINE_S from the first shutdown request."""
    from localstack.runtime import runtime

    LocalstackRuntime: Any = runtime.LocalstackRuntime
    if getattr(LocalstackRuntime, "_dl_patched", False):
        return
    original_on_return = LocalstackRuntime._on_return
    original_shutdown = LocalstackRuntime.shutdown

    def _leave(code: int) -> None:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(code)

    def _on_return(self: Any) -> None:
        try:
            original_on_return(self)
        finally:
            _leave(self.exit_code)

    def shutdown(self: Any) -> None:
        def overdue() -> None:
            LOG.warning("[shutdown] not done after %.0fs: exiting now", SHUTDOWN_DEADLINE_S)
            _leave(self.exit_code)

        timer = threading.Timer(SHUTDOWN_DEADLINE_S, overdue)
        timer.daemon = True
        timer.start()
        original_shutdown(self)

    LocalstackRuntime._on_return = _on_return
    LocalstackRuntime.shutdown = shutdown
    LocalstackRuntime._dl_patched = True


def _dump_threads_on_sigusr1() -> None:
    """`kill -USR1 <pid>` writes every thread's stack to the LocalStack log."""
    with contextlib.suppress(AttributeError, ValueError, RuntimeError):
        faulthandler.register(signal.SIGUSR1, file=sys.stderr, all_threads=True)


def _private_s3_storage() -> None:
    """S3 spools objects under a hard-coded /tmp/localstack-s3-storage shared by all
    instances (and DeleteBucket removes the bucket's folder there): use our TMPDIR."""
    from localstack.services.s3 import provider

    path = os.path.join(tempfile.gettempdir(), "s3-storage")
    os.makedirs(path, exist_ok=True)
    provider.DEFAULT_S3_TMP_DIR = path
