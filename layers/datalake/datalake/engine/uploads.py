"""Concurrent uploads of finished data files.

A split of a day-partitioned table finishes hundreds of small files. Put one after the
other, each pays a round trip (S3: tens of milliseconds; a local disk: a metadata write)
while the encoder waits. ``Uploader`` hands the puts to a small thread pool instead, so
their latency overlaps with encoding the next files, and bounds what is in flight in bytes
so memory stays bounded however fast the encoder runs.

The writer records a file only once it is handed over; ``wait`` must return before the
files are reported, and ``drain`` must return before a failed split deletes what it
wrote, so that no put lands after the delete.
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from datalake.engine.store import ObjectStore

DEFAULT_CONCURRENCY = 8
DEFAULT_MAX_INFLIGHT_BYTES = 32 * 2**20


class Uploader:
    """Puts objects to ``store`` on up to ``concurrency`` threads.

    Parameters
    ----------
    store, bucket
        Where the objects go.
    concurrency
        Puts in flight at once; ``1`` puts synchronously on the caller's thread.
    max_inflight_bytes
        Bytes handed over and not yet stored; past it, ``put_*`` waits for the oldest put.
    """

    def __init__(self, store: ObjectStore, bucket: str, *,
                 concurrency: int = DEFAULT_CONCURRENCY,
                 max_inflight_bytes: int = DEFAULT_MAX_INFLIGHT_BYTES) -> None:
        self.store = store
        self.bucket = bucket
        self.max_inflight = max(1, int(max_inflight_bytes))
        self._pool = (ThreadPoolExecutor(int(concurrency), thread_name_prefix="datalake-put")
                      if int(concurrency) > 1 else None)
        self._pending: deque[tuple[Future[None], int]] = deque()
        self._inflight = 0

    def put_bytes(self, key: str, data: bytes | memoryview | object, size: int) -> None:
        """Store ``data`` (bytes-like) under ``key``."""
        self._submit(lambda: self.store.put_bytes(self.bucket, key, data), size)

    def put_file(self, key: str, path: str, size: int,
                 cleanup: Callable[[], None] | None = None) -> None:
        """Store the local file ``path`` under ``key``, then run ``cleanup`` (even when
        the put fails)."""
        def task() -> None:
            try:
                self.store.put_file(self.bucket, key, path)
            finally:
                if cleanup is not None:
                    cleanup()

        self._submit(task, size)

    def _submit(self, task: Callable[[], None], size: int) -> None:
        if self._pool is None:
            task()
            return
        while self._pending and self._inflight + size > self.max_inflight:
            self._retire()
        self._pending.append((self._pool.submit(task), size))
        self._inflight += size

    def _retire(self) -> None:
        fut, size = self._pending.popleft()
        try:
            fut.result()
        finally:
            self._inflight -= size

    def wait(self) -> None:
        """Return when every put has been stored; raise the first put's error."""
        while self._pending:
            self._retire()

    def drain(self) -> None:
        """Let every put in flight end, ignoring their errors (a failing split's clean-up
        runs after this)."""
        while self._pending:
            with contextlib.suppress(Exception):
                self._retire()

    def close(self) -> None:
        self.drain()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
