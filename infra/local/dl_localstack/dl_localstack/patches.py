"""Patches applied inside the LocalStack process at start-up (on_infra_start hook)."""

from __future__ import annotations

import faulthandler
import logging
import os
import signal
import sys
import tempfile

LOG = logging.getLogger(__name__)


def apply_all() -> None:
    _dump_threads_on_sigusr1()
    _private_s3_storage()


def _dump_threads_on_sigusr1() -> None:
    """`kill -USR1 <pid>` writes every thread's stack to the LocalStack log."""
    try:
        faulthandler.register(signal.SIGUSR1, file=sys.stderr, all_threads=True)
    except (AttributeError, ValueError, RuntimeError):
        pass


def _private_s3_storage() -> None:
    """S3 spools objects under a hard-coded /tmp/localstack-s3-storage shared by all
    instances (and DeleteBucket removes the bucket's folder there): use our TMPDIR."""
    from localstack.services.s3 import provider

    path = os.path.join(tempfile.gettempdir(), "s3-storage")
    os.makedirs(path, exist_ok=True)
    provider.DEFAULT_S3_TMP_DIR = path
