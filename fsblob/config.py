"""``project.yaml``: the ``blob`` section, and creating a manager from it.

The calls are AIFlow's, so an existing project only changes its class path::

    blob_config = BlobConfig(project_config["blob"])
    manager = BlobManagerFactory.create_blob_manager(
        blob_config.blob_manager_class(), blob_config.blob_manager_config())
"""

from __future__ import annotations

import importlib
import os
import re
from collections.abc import Mapping
from typing import Any

import yaml

from fsblob.errors import BlobConfigError
from fsblob.base import BlobManager

_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class BlobConfig:
    """The ``blob`` section of ``project.yaml``.

    Args:
        config: the mapping under the ``blob`` key, holding ``blob_manager_class``
            and ``blob_manager_config``.
    """

    def __init__(self, config: Mapping[str, Any] | None) -> None:
        if config is None:
            config = {}
        if not isinstance(config, Mapping):
            raise BlobConfigError(
                f"the 'blob' section must be a mapping with blob_manager_class and "
                f"blob_manager_config, not {type(config).__name__}"
            )
        self.config = dict(config)

    def blob_manager_class(self) -> str:
        """The dotted class path of the blob manager."""
        value = self.config.get("blob_manager_class")
        if not value or not isinstance(value, str):
            raise BlobConfigError(
                "the 'blob' section has no blob_manager_class; set it to a class path "
                "such as fsblob.LocalBlobManager or fsblob.S3BlobManager"
            )
        return value

    def set_blob_manager_class(self, value: str) -> None:
        """Replace the class path."""
        self.config["blob_manager_class"] = value

    def blob_manager_config(self) -> dict[str, Any]:
        """The ``blob_manager_config`` mapping (empty when absent)."""
        value = self.config.get("blob_manager_config") or {}
        if not isinstance(value, Mapping):
            raise BlobConfigError(
                f"blob_manager_config must be a mapping of keys, not {type(value).__name__}"
            )
        return dict(value)

    def set_blob_manager_config(self, value: Mapping[str, Any]) -> None:
        """Replace the ``blob_manager_config`` mapping."""
        self.config["blob_manager_config"] = dict(value)

    def __repr__(self) -> str:  # the config holds secrets: show the class only
        return f"BlobConfig(blob_manager_class={self.config.get('blob_manager_class')!r})"


class BlobManagerFactory:
    """Creates blob managers by class path."""

    @classmethod
    def create_blob_manager(cls, class_name: str, config: Mapping[str, Any]) -> BlobManager:
        """Import ``class_name`` (``package.module.Class``) and build it with ``config``."""
        if not class_name or not isinstance(class_name, str) or "." not in class_name:
            raise BlobConfigError(
                f"blob_manager_class {class_name!r} is not a class path; "
                "use e.g. fsblob.LocalBlobManager"
            )
        module_name, _, attr = class_name.rpartition(".")
        try:
            blob_class = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise BlobConfigError(
                f"cannot import blob_manager_class {class_name!r}: {exc}. Check the spelling, "
                "and that its package is installed"
            ) from None
        return blob_class(config)


def load_project_config(path: str | os.PathLike[str]) -> BlobConfig:
    """Read the ``blob`` section of a ``project.yaml`` file.

    ``${NAME}`` in any string value is replaced by the environment variable
    ``NAME``, so secrets need not be written in the file.

    Raises:
        BlobConfigError: the file cannot be read or parsed, has no ``blob``
            section, or refers to an undefined variable.
    """
    try:
        with open(path, encoding="utf-8") as f:
            document = yaml.safe_load(f)
    except OSError as exc:
        raise BlobConfigError(f"cannot read project file {os.fspath(path)}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise BlobConfigError(f"project file {os.fspath(path)} is not valid YAML: {exc}") from None
    if not isinstance(document, Mapping) or "blob" not in document:
        raise BlobConfigError(
            f"project file {os.fspath(path)} has no 'blob' section; add one with "
            "blob_manager_class and blob_manager_config"
        )
    return BlobConfig(_expand(document["blob"], "blob"))


def _expand(value: Any, where: str) -> Any:
    if isinstance(value, str):
        def substitute(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in os.environ:
                raise BlobConfigError(
                    f"{where} refers to ${{{name}}}, but the environment variable {name} "
                    "is not set; export it or write the value in the file"
                )
            return os.environ[name]

        return _ENV_REFERENCE.sub(substitute, value)
    if isinstance(value, Mapping):
        return {k: _expand(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, f"{where}[{i}]") for i, v in enumerate(value)]
    return value
