"""Request timeouts for the ``requests`` sessions of fsblob's filesystems (WebHDFS, OSS).

fsspec's WebHDFS client sends its requests without a timeout, and oss2 waits 60 s
per request and retries it (as ossfs does around it). :class:`TimeoutAdapter`,
mounted on the session of fsblob's own filesystem instance, gives every request
:data:`fsblob.retry.CONNECT_TIMEOUT` and :data:`fsblob.retry.READ_TIMEOUT`, and
never lets one outlive the operation it belongs to (:func:`fsblob.retry.operation_end`):
once that has passed, a request fails at once instead of being sent, so the
clients' own retries cannot stretch the bound.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter

from fsblob import retry


class OperationTimeout(requests.exceptions.Timeout):
    """The operation's time (retry deadline plus one request timeout) is up."""


class TimeoutAdapter(HTTPAdapter):
    """An ``HTTPAdapter`` whose requests always have a timeout, cut to what is
    left of the running operation."""

    def send(self, request: requests.PreparedRequest, stream: bool = False,  # type: ignore[override]
             timeout: Any = None, verify: Any = True, cert: Any = None,
             proxies: Any = None) -> requests.Response:
        connect, read = retry.CONNECT_TIMEOUT, retry.READ_TIMEOUT
        given = timeout if isinstance(timeout, tuple) else (timeout, timeout)
        connect = min(connect, given[0]) if given[0] else connect
        read = min(read, given[1]) if given[1] else read
        end = retry.operation_end()
        if end is not None:
            left = end - time.monotonic()
            if left <= 0:
                raise OperationTimeout(
                    f"no time left for a request to {_endpoint(request.url)}: the retry "
                    "deadline plus one request timeout has passed", request=request)
            connect, read = min(connect, left), min(read, left)
        return super().send(request, stream=stream, timeout=(connect, read), verify=verify,
                            cert=cert, proxies=proxies)


def mount(session: requests.Session) -> None:
    """Send every http(s) request of ``session`` through a :class:`TimeoutAdapter`
    (once; later calls keep it)."""
    if not isinstance(session.get_adapter("http://x"), TimeoutAdapter):
        pool = getattr(session.get_adapter("http://x"), "_pool_maxsize", 10)
        for prefix in ("http://", "https://"):
            session.mount(prefix, TimeoutAdapter(pool_connections=pool, pool_maxsize=pool))


def _endpoint(url: str | None) -> str:
    parts = urlsplit(url or "")
    return f"{parts.scheme}://{parts.hostname}:{parts.port or ''}".rstrip(":")
