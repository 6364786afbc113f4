"""Retries of transient failures, with exponential backoff, jitter and a deadline.

fsblob owns the retries of every backend: it turns the client libraries' own
retries off where they have them (see the backends), so one policy with one
budget applies everywhere. Only transient failures are retried: a refused or
reset connection, a timeout, a request that stopped making progress
(:class:`~fsblob.stall.TransferStalled`), HTTP 408/429/5xx. "Not found", "access
denied", bad configuration and TLS failures (a certificate that does not verify,
https spoken to a plain-http port) fail at once.

The bound. An attempt ends when it stops making progress: fewer than
:attr:`~fsblob.stall.Limits.floor` bytes per second moved for ``stall_timeout``
seconds, or a connection not made within the connect timeout (see
:mod:`fsblob.stall`). No *new* attempt starts after ``retry_deadline`` seconds;
a running attempt that keeps moving bytes is never cut. So an operation against
a server that is silent, trickles, or stops reading ends within::

    retry_deadline + connect timeout + stall_timeout     (60 + 10 + 30 s by default)

plus, after a failed upload, one cleanup request's own short budget.
"""

from __future__ import annotations

import errno
import logging
import ssl
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import TypeVar

import tenacity

from fsblob import stall

log = logging.getLogger("fsblob")

T = TypeVar("T")

TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})
TRANSIENT_ERRNO = frozenset(
    {errno.ECONNRESET, errno.ECONNREFUSED, errno.ECONNABORTED, errno.ETIMEDOUT,
     errno.EPIPE, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EAGAIN}
)
# Transport errors of the client libraries, matched by class name so that none of
# them has to be imported: botocore, aiohttp, requests/urllib3, http.client, oss2.
TRANSIENT_TYPES = frozenset(
    {"EndpointConnectionError", "ConnectionClosedError", "ReadTimeoutError",
     "ConnectTimeoutError", "ResponseStreamingError", "ClientConnectionError",
     "ClientPayloadError", "ServerDisconnectedError", "ServerTimeoutError",
     "ProtocolError", "ChunkedEncodingError", "IncompleteRead", "RemoteDisconnected",
     "RequestError", "ReadTimeout", "ConnectTimeout",
     "FlexibleChecksumError", "InconsistentError"}  # bytes damaged in transit
)
#: Client errors saying the bytes did not match the store's checksum.
INTEGRITY_TYPES = frozenset({"FlexibleChecksumError", "InconsistentError"})
# TLS failures that no retry can mend (class names, as above).
PERMANENT_TLS_TYPES = frozenset(
    {"SSLError", "SSLCertVerificationError", "CertificateError", "ClientSSLError",
     "ClientConnectorCertificateError", "ClientConnectorSSLError"}
)
PERMANENT_TYPES = (FileNotFoundError, PermissionError, IsADirectoryError,
                   NotADirectoryError, FileExistsError, ValueError, TypeError)


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry.

    Attributes:
        retries: retries after the first attempt (0 disables retrying).
        deadline: seconds after which no new attempt starts.
        backoff: the first wait in seconds; each next one doubles, with jitter,
            up to ``max_backoff``.
        max_backoff: the longest single wait in seconds.
        limits: when an attempt has stopped making progress (``stall_timeout``).
    """

    retries: int = 4
    deadline: float = 60.0
    backoff: float = 0.25
    max_backoff: float = 8.0
    limits: stall.Limits = field(default_factory=stall.Limits)

    def call(
        self,
        fn: Callable[[], T],
        what: str,
        fail: Callable[[Exception, int], Exception],
    ) -> T:
        """Run ``fn``, retrying it on transient errors.

        When it finally fails, raise ``fail(last_error, attempts)`` instead.
        """
        start = time.monotonic()
        limits = replace(self.limits, retry_until=start + self.deadline)
        try:  # the first attempt runs bare: tenacity's machinery only once one failed
            with stall.attempt(limits):
                return fn()
        except Exception as exc:  # noqa: BLE001 (tenacity decides what it was)
            first: list[Exception] = [exc]

        def attempt() -> T:
            if first:  # tenacity's attempt 1 is the one that just failed: same decisions
                raise first.pop()
            with stall.attempt(limits):
                return fn()

        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.retries + 1)  # no attempt starts after
            | tenacity.stop_before_delay(self.deadline - (time.monotonic() - start)),
            wait=tenacity.wait_random_exponential(multiplier=self.backoff, max=self.max_backoff),
            retry=tenacity.retry_if_exception(is_transient),
            before_sleep=lambda state: log.warning(
                "%s failed (attempt %d), retrying: %s", what, state.attempt_number,
                type(state.outcome.exception()).__name__ if state.outcome else "?",
            ),
            reraise=True,
        )
        try:
            return retrying(attempt)
        except Exception as exc:
            raise fail(exc, retrying.statistics.get("attempt_number", 1)) from None


def find_stall(exc: BaseException) -> stall.TransferStalled | None:
    """The :class:`~fsblob.stall.TransferStalled` behind ``exc``, if one is."""
    return next((link for link in _chain(exc) if isinstance(link, stall.TransferStalled)), None)


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) is a failure worth retrying."""
    if is_tls_failure(exc):
        return False
    for link in _chain(exc):
        declared = getattr(link, "transient", None)  # an fsblob error says which it is
        if declared is not None:
            return bool(declared)
        status = _http_status(link)
        if status is not None:
            return status in TRANSIENT_STATUS
        if isinstance(link, (ConnectionError, TimeoutError)):
            return True
        if isinstance(link, OSError) and link.errno in TRANSIENT_ERRNO:
            return True
        if any(cls.__name__ in TRANSIENT_TYPES for cls in type(link).__mro__):
            return True
        if isinstance(link, PERMANENT_TYPES):
            return False
    return False


def is_tls_failure(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) is a TLS failure: a certificate that does
    not verify, or a handshake with a server that does not speak TLS."""
    for link in _chain(exc):
        if isinstance(link, (ssl.SSLEOFError, ssl.SSLZeroReturnError)):
            return False  # the server closed the connection: worth another try
        if isinstance(link, ssl.SSLError) or any(
                cls.__name__ in PERMANENT_TLS_TYPES for cls in type(link).__mro__):
            return True
    return False


def is_integrity_failure(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) is a client's checksum mismatch."""
    return any(cls.__name__ in INTEGRITY_TYPES for link in _chain(exc)
               for cls in type(link).__mro__)


def is_not_found(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) says "no such object/bucket" (HTTP 404)."""
    return any(isinstance(link, FileNotFoundError) or _http_status(link) == 404
               for link in _chain(exc))


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    link: BaseException | None = exc
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        yield link
        link = link.__cause__ or link.__context__


def _http_status(exc: BaseException) -> int | None:
    """The HTTP status an exception carries, in any of the client libraries' ways."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):  # botocore ClientError
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return status if isinstance(status, int) else None
    for holder in (exc, response):
        for attr in ("status_code", "status"):
            status = getattr(holder, attr, None)
            if isinstance(status, int) and 100 <= status < 600:
                return status
    return None
