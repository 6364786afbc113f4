"""Retries of transient failures, with exponential backoff, jitter and a deadline.

fsblob owns the retries of every backend: it turns the client libraries' own
retries off where they have them (see the backends), so one policy with one
budget applies everywhere. Only transient failures are retried: a refused or
reset connection, a timeout, HTTP 408/429/5xx. "Not found", "access denied",
bad configuration and TLS failures (a certificate that does not verify, https
spoken to a plain-http port) fail at once.

The bound. No attempt starts after ``retry_deadline`` seconds, and every request
gives up after :data:`CONNECT_TIMEOUT` seconds to connect and :data:`READ_TIMEOUT`
seconds without a byte arriving. So against a server that accepts connections and
never answers, every operation ends within::

    retry_deadline + CONNECT_TIMEOUT + READ_TIMEOUT     (60 + 10 + 30 = 100 s by default)

S3: botocore's own retries are off, s3fs's are limited to one try, and botocore's
timeouts default to these (a ``config`` with ``connect_timeout``/``read_timeout``
replaces them). OSS and WebHDFS: every request of fsblob's filesystem goes
through :class:`~fsblob.backends.timeouts.TimeoutAdapter`, which also cuts the
requests that oss2's and ossfs's own retries make once the operation's end
(:func:`operation_end`) has passed.
"""

from __future__ import annotations

import errno
import logging
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import tenacity

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
#: Seconds to connect, and seconds without a byte arriving, for every request.
CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 30.0
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
    """

    retries: int = 4
    deadline: float = 60.0
    backoff: float = 0.25
    max_backoff: float = 8.0

    def call(
        self,
        fn: Callable[[], T],
        what: str,
        fail: Callable[[Exception, int], Exception],
    ) -> T:
        """Run ``fn``, retrying it on transient errors.

        When it finally fails, raise ``fail(last_error, attempts)`` instead.
        """
        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.retries + 1)
            | tenacity.stop_before_delay(self.deadline),  # no attempt starts after it
            wait=tenacity.wait_random_exponential(multiplier=self.backoff, max=self.max_backoff),
            retry=tenacity.retry_if_exception(is_transient),
            before_sleep=lambda state: log.warning(
                "%s failed (attempt %d), retrying: %s", what, state.attempt_number,
                type(state.outcome.exception()).__name__ if state.outcome else "?",
            ),
            reraise=True,
        )
        end = time.monotonic() + self.deadline + CONNECT_TIMEOUT + READ_TIMEOUT
        outer = getattr(_OPERATION, "end", None)
        _OPERATION.end = end if outer is None else min(outer, end)
        try:
            return retrying(fn)
        except Exception as exc:
            raise fail(exc, retrying.statistics.get("attempt_number", 1)) from None
        finally:
            _OPERATION.end = outer


_OPERATION = threading.local()


def operation_end() -> float | None:
    """When the operation running in this thread must be over (``time.monotonic()``),
    or ``None`` outside one: its retry deadline plus one request's timeout."""
    return getattr(_OPERATION, "end", None)


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) is a failure worth retrying."""
    if is_tls_failure(exc):
        return False
    for link in _chain(exc):
        if getattr(link, "transient", False):
            return True
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
