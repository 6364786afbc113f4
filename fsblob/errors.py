"""The exceptions fsblob raises.

Every error derives from :class:`BlobError`, and each one also derives from the
built-in exception a caller would naturally catch (``ValueError`` for bad
configuration or paths, ``FileNotFoundError`` for a missing artifact, ``OSError``
for a failed transfer). Messages name the key or path at fault, the backend, and
what would fix it. They never contain a secret: see :func:`redact`.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import quote, quote_plus, urlsplit

__all__ = [
    "BlobConfigError",
    "BlobError",
    "BlobIntegrityError",
    "BlobNotFoundError",
    "BlobTransferError",
    "InvalidPathError",
    "PathOutsideRootError",
]


class BlobError(Exception):
    """Base class of every error fsblob raises."""


class BlobConfigError(BlobError, ValueError):
    """A ``blob_manager_config`` (or ``project.yaml``) is wrong.

    The message names the key, the backend, and the fix.
    """


class BlobNotFoundError(BlobError, FileNotFoundError):
    """The artifact (or a local file to upload) does not exist."""


class BlobTransferError(BlobError, OSError):
    """A transfer failed: the store was unreachable after every retry, refused the
    request, or delivered bytes that failed verification. Nothing was left at the
    destination."""


class BlobIntegrityError(BlobTransferError):
    """What was transferred does not match what was expected: short, corrupt, or
    not renamed into place. Worth another attempt, so it is retried."""

    transient = True


class StoreError(OSError):
    """The store refused a request: the message names the operation and the store's
    error code (``"CompleteMultipartUpload: InvalidPart: ..."``). Raised by backends;
    the manager reports it as a :class:`BlobTransferError` naming it, after retrying
    it when the status is one worth retrying (5xx, 429, 408).

    Attributes:
        operation: the store's name of the request (``"UploadPart 3"``).
        code: the store's error code (``"InvalidPart"``, ``"NoSuchUpload"``).
        http_status: the HTTP status, if known (not ``status``: a 404 of an upload,
            ``NoSuchUpload``, is not a missing artifact).

    Raise it outside the ``except`` block that caught the client's error, so that
    the client's 404 is not its context either.
    """

    def __init__(self, message: str, *, operation: str, code: str, status: int | None) -> None:
        super().__init__(message)
        self.operation, self.code, self.http_status = operation, code, status

    @property
    def transient(self) -> bool:  # read by fsblob.retry.is_transient
        return self.http_status in (408, 429, 500, 502, 503, 504)


class InvalidPathError(BlobError, ValueError):
    """A path or URI is malformed (empty, NUL bytes, ``..`` segments, too long)."""


class PathOutsideRootError(InvalidPathError):
    """A path or URI resolves outside the manager's root; refused before any I/O."""


def redact(text: str, secrets: Iterable[str]) -> str:
    """Return ``text`` with every secret value replaced by ``***``, also where it
    appears percent-encoded (a token with ``/+=`` in a URL or a signed request).

    Secrets shorter than 4 characters are ignored: replacing them would mangle
    ordinary text while protecting nothing.
    """
    forms = {form for s in secrets if s and len(s) >= 4
             for form in (s, quote(s, safe=""), quote(s), quote_plus(s))}
    for secret in sorted(forms, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def describe(exc: BaseException, secrets: Iterable[str] = (), limit: int = 400) -> str:
    """One line naming an exception's type and its (redacted) message, cut at ``limit``."""
    message = redact(" ".join(str(exc).split()) or "no details", secrets)
    if len(message) > limit:
        message = message[:limit] + "..."
    return f"{type(exc).__name__}: {message}"


def describe_endpoint(url: str, secrets: Iterable[str] = ()) -> str:
    """An endpoint URL as errors show it: without a user or password in it."""
    parts = urlsplit(url)
    if parts.hostname and (parts.username or parts.password):
        port = f":{parts.port}" if parts.port else ""
        url = parts._replace(netloc=f"{parts.hostname}{port}").geturl()
    return redact(url, secrets)
