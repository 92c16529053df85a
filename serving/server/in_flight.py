"""Count the requests being answered, to wait for them at shutdown."""

import threading
import time


class InFlight:
    """A thread-safe count of running requests with a bounded wait for zero.

    Example:
        >>> in_flight = InFlight()
        >>> with in_flight:
        ...     in_flight.count
        1
        >>> in_flight.wait_idle(timeout=1.0)
        True
    """

    def __init__(self):
        self._cond = threading.Condition()
        self._count = 0

    @property
    def count(self) -> int:
        """Requests running right now."""
        with self._cond:
            return self._count

    def __enter__(self) -> "InFlight":
        with self._cond:
            self._count += 1
        return self

    def __exit__(self, *exc) -> None:
        with self._cond:
            self._count -= 1
            self._cond.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s for the count to reach 0; True if it did."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._count:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True
