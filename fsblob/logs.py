"""Keeping secrets out of log records, fsblob's and its client libraries'.

botocore, for one, logs the canonical request at DEBUG, session token included.
When a manager opens its filesystem, fsblob adds a filter to the loggers of the
libraries involved that replaces any known secret value in a record by ``***``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable

from fsblob.errors import redact

#: Top-level logger names of fsblob and the libraries it drives.
LIBRARIES = frozenset({"fsblob", "fsspec", "s3fs", "botocore", "aiobotocore", "boto3",
                       "urllib3", "requests", "aiohttp", "ossfs", "oss2", "aiooss2", "pyarrow"})


class _Redactor(logging.Filter):
    """Rewrites a record whose message holds a registered secret."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: frozenset[str] = frozenset()
        self.lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        secrets = self.secrets
        if secrets:
            message = record.getMessage()
            cleaned = redact(message, secrets)
            if cleaned != message:
                record.msg, record.args = cleaned, ()
            if record.exc_info and record.exc_info[1] is not None:
                text = redact(logging.Formatter().formatException(record.exc_info), secrets)
                record.exc_info, record.exc_text = None, text
        return True


_REDACTOR = _Redactor()


def hide_secrets(secrets: Iterable[str]) -> None:
    """Keep ``secrets`` out of the records of fsblob's and its libraries' loggers.

    Call it after the libraries are imported: it guards the loggers that exist.
    """
    with _REDACTOR.lock:
        _REDACTOR.secrets = _REDACTOR.secrets | {s for s in secrets if s}
        for name, logger in list(logging.Logger.manager.loggerDict.items()):
            if (isinstance(logger, logging.Logger) and name.split(".")[0] in LIBRARIES
                    and _REDACTOR not in logger.filters):
                logger.addFilter(_REDACTOR)


def known_secrets() -> frozenset[str]:
    """Every secret registered with :func:`hide_secrets` so far (for error texts)."""
    return _REDACTOR.secrets
