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
