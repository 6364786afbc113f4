"""Reading ``blob_manager_config`` values, with errors that name key, backend and fix."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import Any

from fsblob.errors import BlobConfigError

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def check_keys(config: Mapping[str, Any], known: Iterable[str], backend: str) -> None:
    """Refuse keys the backend does not document (most often a typo)."""
    known = sorted(known)
    for key in config:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise BlobConfigError(
                f"{backend}: unknown blob_manager_config key {key!r}; {hint}"
                f"the keys this backend takes are: {', '.join(known)}"
            )


def text(config: Mapping[str, Any], key: str, backend: str, *, required: str = "") -> str | None:
    """A string value; ``required`` (if given) explains what to set when it is missing."""
    value = config.get(key)
    if value is None or value == "":
        if required:
            raise BlobConfigError(f"{backend}: blob_manager_config key {key!r} is missing; {required}")
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise BlobConfigError(
            f"{backend}: blob_manager_config key {key!r} must be a string, "
            f"not {type(value).__name__}"
        )
    return str(value)


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
