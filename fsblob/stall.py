"""Bounded by progress: an attempt ends when its bytes stop moving, not at a set time.

Like curl's ``--speed-limit``/``--speed-time``: a request (or, on S3, a call of the
client) that moves fewer than :attr:`Limits.floor` bytes per second over the last
:attr:`Limits.stall` seconds (``stall_timeout``) is cut with :class:`TransferStalled`.
Every byte on the wire counts, in both directions: headers, listings, bodies.
A transfer that keeps moving runs to completion whatever its size.

The limits are data: the retry policy sets them for each attempt
(:func:`attempt`), and the backends' request layers read them (:func:`limits`)
where the request starts; see :mod:`fsblob.backends.timeouts` for how each client
is watched.
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, replace

#: Seconds without progress after which a request is cut (``stall_timeout``).
STALL_TIMEOUT = 30.0
#: Seconds to connect.
CONNECT_TIMEOUT = 10.0
#: Bytes per second below which a request is not making progress.
LOW_SPEED = 1024.0
#: The longest budget of a cleanup request (abort a multipart upload, remove a temporary).
CLEANUP_TIMEOUT = 5.0


@dataclass(frozen=True)
class Limits:
    """When a request has stopped making progress.

    Attributes:
        stall: seconds over which fewer than ``floor`` bytes per second moved
            (``stall_timeout``); also each socket read's and write's timeout.
        connect: seconds to connect.
        floor: bytes per second below which a request is stalled.
        retry_until: the ``time.monotonic()`` after which no retry starts (the
            operation's ``retry_deadline``), also for a part or range tried again
            alone; ``None`` outside an operation.
    """

    stall: float = STALL_TIMEOUT
    connect: float = CONNECT_TIMEOUT
    floor: float = LOW_SPEED
    retry_until: float | None = None

    @property
    def cleanup(self) -> Limits:
        """The limits of a cleanup after a failure: a budget of its own, short."""
        short = min(self.stall, CLEANUP_TIMEOUT)
        return replace(self, stall=short, connect=min(self.connect, short))


class TransferStalled(Exception):
    """No progress (fewer than the floor's bytes) for ``stall_timeout`` seconds.

    Transient: retried like a timeout, while the retry deadline allows. Not an
    ``OSError``, so that the client libraries' own retry loops let it through.
    """

    transient = True


_LIMITS: contextvars.ContextVar[Limits] = contextvars.ContextVar(
    "fsblob_limits", default=Limits())  # noqa: B039 (Limits is frozen)


def limits() -> Limits:
    """The limits of the attempt running in this context (defaults outside one)."""
    return _LIMITS.get()


@contextlib.contextmanager
def attempt(given: Limits) -> Iterator[None]:
    """Run the block (one attempt of an operation) under ``given`` limits."""
    token = _LIMITS.set(given)
    try:
        yield
    finally:
        _LIMITS.reset(token)


@contextlib.contextmanager
def cleanup() -> Iterator[None]:
    """Run the block (a cleanup after a failure) under its own short limits."""
    with attempt(limits().cleanup):
        yield


class Meter:
    """Bytes moved over time, thread-safe; tells whether they stopped moving."""

    #: Samples closer than this (seconds) are merged.
    GRAIN = 0.1

    def __init__(self, keep: float = 2 * STALL_TIMEOUT) -> None:
        self.start = time.monotonic()
        self.total = 0
        self._keep = keep
        self._samples: deque[tuple[float, int]] = deque([(self.start, 0)])
        self._lock = threading.Lock()
        self._checked = self.start

    def restart(self) -> None:
        """Count from now, as if nothing had been asked before: a connection just
        made (its time is bounded by the connect timeout, not by the floor)."""
        with self._lock:
            self.start = self._checked = time.monotonic()
            self._samples = deque([(self.start, self.total)])

    def moved(self, n: int) -> None:
        """Record ``n`` bytes moved now."""
        if n <= 0:
            return
        now = time.monotonic()
        with self._lock:
            self.total += n
            if now - self._samples[-1][0] < self.GRAIN and len(self._samples) > 1:
                self._samples[-1] = (self._samples[-1][0], self.total)
            else:
                self._samples.append((now, self.total))
            while len(self._samples) > 2 and self._samples[1][0] < now - self._keep:
                self._samples.popleft()

    def recent(self, seconds: float, now: float) -> int:
        """Bytes moved in the last ``seconds`` before ``now``."""
        with self._lock:
            base = 0
            for t, total in self._samples:
                if t > now - seconds:
                    break
                base = total
            return self.total - base

    def stalled(self, given: Limits, since: float | None = None) -> bool:
        """Whether fewer than ``given.floor`` bytes per second moved over the last
        ``given.stall`` seconds, counting from ``since`` (default: the meter's start)."""
        self._keep = max(self._keep, 2 * given.stall)
        now = time.monotonic()
        if now - max(self.start, since or self.start) < given.stall or (
                now - self._checked < self.GRAIN):  # a check costs a walk of the samples
            return False
        self._checked = now
        return self.recent(given.stall, now) < given.floor * given.stall


def stalled_error(given: Limits, endpoint: str, moved: int | None = None) -> TransferStalled:
    """The error of a request to ``endpoint`` that stopped making progress."""
    detail = (f": {moved} bytes moved, below the floor of {given.floor:g} bytes/s"
              if moved else "")
    return TransferStalled(f"no progress for {given.stall:g} s (stall_timeout) from "
                           f"{endpoint}{detail}")
