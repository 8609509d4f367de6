"""Back-pressure: rate limits per key and a bounded queue in front of the model.

Both answer at once with an error the caller can act on (``RequestLimitExceeded``,
``ServerBusy``) instead of letting work and memory pile up. They hold per-process state:
several server processes on one data dir each enforce their own share.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Hashable, Iterator
from contextlib import contextmanager

from lookalike import errors


class RateLimiter:
    """Token buckets by key: ``qps`` requests a second, bursts of up to one second's worth."""

    def __init__(self, *, max_keys: int = 100_000, clock=time.monotonic) -> None:
        self._buckets: dict[Hashable, tuple[float, float]] = {}  # key -> (tokens, last refill)
        self._lock = threading.Lock()
        self._max_keys = max_keys
        self._clock = clock

    def acquire(self, key: Hashable, qps: float, what: str) -> None:
        """Takes one token or raises RequestLimitExceeded naming ``what``; qps <= 0 is no limit."""
        if qps <= 0:
            return
        capacity = max(float(qps), 1.0)
        now = self._clock()
        with self._lock:
            tokens, last = self._buckets.get(key, (capacity, now))
            tokens = min(capacity, tokens + (now - last) * qps)
            if tokens < 1.0:
                self._buckets[key] = (tokens, now)
                wait = (1.0 - tokens) / qps
                raise errors.RequestLimitExceeded(f"{what} allows {qps:g} requests a second; retry in {wait:.2f} s")
            self._buckets[key] = (tokens - 1.0, now)
            if len(self._buckets) > self._max_keys:  # forget full buckets: they hold no state
                full = [k for k, (t, at) in self._buckets.items() if t + (now - at) * qps >= capacity]
                for k in full[: len(full) // 2 or 1]:
                    self._buckets.pop(k, None)


class ModelGate:
    """At most ``concurrency`` model runs at once and at most ``queue`` waiting; the rest are shed.

    A request that cannot start within ``timeout_s`` is shed too, so a queue never holds work
    its caller has long given up on.
    """

    def __init__(self, concurrency: int, queue: int, timeout_s: float) -> None:
        self.concurrency = max(1, concurrency)
        self.queue = max(0, queue)
        self.timeout_s = timeout_s
        self._cond = threading.Condition()
        self._running = 0
        self._waiting = 0
        self.shed = 0

    @property
    def running(self) -> int:
        return self._running

    @property
    def waiting(self) -> int:
        return self._waiting

    @contextmanager
    def slot(self) -> Iterator[None]:
        with self._cond:
            if self._running >= self.concurrency:
                if self._waiting >= self.queue:
                    self.shed += 1
                    raise errors.ServerBusy(
                        f"the server is busy: {self._running} model runs and {self._waiting} queued; retry later"
                    )
                self._waiting += 1
                try:
                    deadline = time.monotonic() + self.timeout_s
                    while self._running >= self.concurrency:
                        left = deadline - time.monotonic()
                        if left <= 0:
                            self.shed += 1
                            raise errors.ServerBusy(f"the server is busy: no model slot within {self.timeout_s:g} s")
                        self._cond.wait(left)
                finally:
                    self._waiting -= 1
            self._running += 1
        try:
            yield
        finally:
            with self._cond:
                self._running -= 1
                self._cond.notify()
