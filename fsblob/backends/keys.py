"""Reading ``blob_manager_config`` values, with errors that name key, backend and fix."""

from __future__ import annotations

import datetime
import difflib
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

from fsblob import paths
from fsblob.errors import BlobConfigError

_BUCKET = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.\-_]{0,254}$")

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}
#: AIFlow's message for a missing key, where it differs from the usual one.
_AIFLOW_MISSING = {"hdfs_url": "`hdfs_url` is not configured"}
_AIFLOW_ROOT_MISSING = "`root_directory` option of blob manager config is not configured"


#: Keys every backend takes: the engine reads them before the backend sees the config.
ENGINE_KEYS = ("retries", "retry_deadline", "stall_timeout", "cache_directory",
               "multipart_threshold", "multipart_chunksize", "max_concurrency",
               "one_stream_rate")  # chunks.TransferSettings


def check_keys(config: Mapping[str, Any], known: Iterable[str], backend: str) -> None:
    """Refuse keys the backend does not document (most often a typo).

    The error names the key and the backend, suggests the closest valid key, and
    lists them all, the engine's own (:data:`ENGINE_KEYS`) included. A backend
    of your own calls it first, as the built-in ones do::

        def team_store(config):
            fsblob.check_keys(config, ("team", "profile"), "team")
            ...

    Raises:
        BlobConfigError: a key of ``config`` is neither in ``known`` nor an engine key.
    """
    known = sorted({*known, *ENGINE_KEYS})
    for key in config:
        if key not in known:
            raise BlobConfigError(
                f"{backend}: unknown blob_manager_config key {key!r}; {suggestion(key, known)}"
                f"the keys this backend takes are: {', '.join(known)}"
            )


def suggestion(key: Any, known: Iterable[str]) -> str:
    """``"did you mean 'x'? "`` for the known key closest to a mistyped one, or ``""``."""
    close = difflib.get_close_matches(str(key), list(known), n=1)
    return f"did you mean {close[0]!r}? " if close else ""


def text(config: Mapping[str, Any], key: str, backend: str) -> str | None:
    """A string value, or ``None`` when the key is absent or empty.

    Values that YAML (``yaml.safe_load``, AIFlow's own loader) reads as something
    else but that have one obvious text form are taken as that text: a number
    (``bucket_name: 2024``) and a date (``api_version: 2006-03-01`` unquoted is a
    ``datetime.date``; its ISO text is what was written). A boolean is refused:
    YAML turns ``yes``, ``no``, ``on`` and ``off`` into ``True``/``False``, so the
    text that was written cannot be told back.
    """
    value = config.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise BlobConfigError(
            f"{backend}: blob_manager_config key {key!r} must be a string, not the boolean "
            f"{value}; YAML reads an unquoted yes/no/on/off/true/false as a boolean, so "
            "quote the value"
        )
    if isinstance(value, datetime.date) and not isinstance(value, datetime.datetime):  # YAML's reading of 2006-03-01: the text written
        return value.isoformat()
    if not isinstance(value, (str, int, float)):
        raise BlobConfigError(
            f"{backend}: blob_manager_config key {key!r} must be a string, "
            f"not {type(value).__name__}"
        )
    return str(value)


def url(config: Mapping[str, Any], key: str, backend: str) -> str | None:
    """An ``http://`` or ``https://`` URL with a host (``127.0.0.1:5123`` alone is not one)."""
    value = text(config, key, backend)
    if value is None:
        return None
    parts = urlsplit(value)
    try:
        parts.port  # noqa: B018 (raises on a bad port)
    except ValueError:
        parts = parts._replace(netloc="")
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise BlobConfigError(
            f"{backend}: blob_manager_config key {key!r} is {value!r}, not an http:// or "
            f"https:// URL with a host; give e.g. https://{value.split('://')[-1].strip('/') or 'host'}"
        )
    return value


def required(config: Mapping[str, Any], key: str, backend: str, *, fix: str) -> str:
    """A string value that must be there; ``fix`` says what to set it to."""
    value = text(config, key, backend)
    if value is None:  # AIFlow's words inside, for code and runbooks that match on them
        aiflow = _AIFLOW_MISSING.get(key, f"`{key}` option of blob manager config is not configured")
        if not config:  # AIFlow's base class checked root_directory before any other key
            aiflow = f"the config is empty: {_AIFLOW_ROOT_MISSING}"
        raise BlobConfigError(f"{backend}: blob_manager_config key {key!r} is missing ({aiflow}); {fix}")
    return value


def flag(config: Mapping[str, Any], key: str, backend: str) -> bool | None:
    """A boolean value; YAML and ``${ENV}`` strings such as ``"false"`` or ``"0"`` count."""
    value = config.get(key)
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise BlobConfigError(
        f"{backend}: blob_manager_config key {key!r} must be true or false, not {value!r}"
    )


def mapping(config: Mapping[str, Any], key: str, backend: str) -> dict[str, Any]:
    """A dict value (empty when the key is absent)."""
    value = config.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise BlobConfigError(
            f"{backend}: blob_manager_config key {key!r} must be a mapping of options, "
            f"not {type(value).__name__}"
        )
    return dict(value)


def bucket_root(config: Mapping[str, Any], bucket_key: str, backend: str) -> str:
    """``<bucket>/<root_directory>`` (or ``<bucket>``), from a bucket key and the
    optional ``root_directory`` key prefix."""
    bucket = required(config, bucket_key, backend, fix="set it to the bucket to store in")
    if not _BUCKET.match(bucket):
        raise BlobConfigError(
            f"{backend}: {bucket_key} {bucket!r} is not a bucket name; give the bare name "
            "(no scheme and no '/'), and put a directory in root_directory"
        )
    prefix = (text(config, "root_directory", backend) or "").strip("/")
    if prefix:
        paths.check_segments(prefix, what=f"{backend}: root_directory")
    return f"{bucket}/{prefix}" if prefix else bucket


def pair(config: Mapping[str, Any], first: str, second: str, backend: str,
         *, otherwise: str) -> tuple[str | None, str | None]:
    """Two keys that go together (an access key id and its secret); ``otherwise``
    says what giving neither means."""
    one, two = text(config, first, backend), text(config, second, backend)
    if bool(one) != bool(two):
        missing = second if one else first
        raise BlobConfigError(
            f"{backend}: blob_manager_config key {missing!r} is missing; give {first} "
            f"and {second} together, or neither {otherwise}"
        )
    return one, two
