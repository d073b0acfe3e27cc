"""A circuit breaker for the catalog database: fail fast while it is known to be down.

After a transient fault (see :func:`datalake.catalog.db.is_transient`) the breaker opens
for :attr:`CircuitBreaker.cooldown_seconds`: sessions fail at once with
:class:`~datalake.errors.TransientError` (the API's 503 with ``Retry-After``) instead of
each waiting on a dead server. When the cool-down ends, the next session is let through
as a probe; its success closes the breaker, its failure opens it again. No restart is
needed either way.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from datalake.errors import TransientError


class CircuitBreaker:
    """Open after a failure, half-open after a cool-down, closed after a success."""

    def __init__(
        self, cooldown_seconds: float = 1.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.cooldown_seconds = cooldown_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._open_until = 0.0
        self._probing = False

    @property
    def is_open(self) -> bool:
        """Whether sessions are refused right now."""
        return self._clock() < self._open_until

    def check(self) -> None:
        """Raise :class:`TransientError` while open; let one probe through after.

        Raises
        ------
        TransientError
            While the breaker is open, or a probe after the cool-down is still running.
        """
        if self._open_until == 0.0:
            return  # closed: the common case takes no lock
        with self._lock:
            now = self._clock()
            if now < self._open_until or self._probing:
                raise TransientError(
                    "the catalog database is unavailable (failing fast after an error); "
                    "retry shortly"
                )
            self._probing = True

    def record_failure(self) -> None:
        """A transient fault: open (again) for the cool-down."""
        with self._lock:
            self._open_until = self._clock() + self.cooldown_seconds
            self._probing = False

    def record_success(self) -> None:
        """A session committed: close."""
        if self._open_until == 0.0:
            return
        with self._lock:
            self._open_until = 0.0
            self._probing = False


#: The process's breaker, shared by every session of the catalog.
breaker = CircuitBreaker()
