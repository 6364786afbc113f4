"""The exceptions fsblob raises.

Every error derives from :class:`BlobError`, and each one also derives from the
built-in exception a caller would naturally catch (``ValueError`` for bad
configuration or paths, ``FileNotFoundError`` for a missing artifact, ``OSError``
for a failed transfer). Messages name the key or path at fault, the backend, and
what would fix it. They never contain a secret: see :func:`redact`.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = [
    "BlobError",
    "BlobConfigError",
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


class InvalidPathError(BlobError, ValueError):
    """A path or URI is malformed (empty, NUL bytes, ``..`` segments, too long)."""


class PathOutsideRootError(InvalidPathError):
    """A path or URI resolves outside the manager's root; refused before any I/O."""


def redact(text: str, secrets: Iterable[str]) -> str:
    """Return ``text`` with every secret value replaced by ``***``.

    Secrets shorter than 4 characters are ignored: replacing them would mangle
    ordinary text while protecting nothing.
    """
    for secret in sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def describe(exc: BaseException, secrets: Iterable[str] = (), limit: int = 400) -> str:
    """One line naming an exception's type and its (redacted) message, cut at ``limit``."""
    message = redact(" ".join(str(exc).split()) or "no details", secrets)
    if len(message) > limit:
        message = message[:limit] + "..."
    return f"{type(exc).__name__}: {message}"
