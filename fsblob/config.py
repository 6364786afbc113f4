"""``project.yaml``: the ``blob`` section, and creating a manager from it.

The calls are AIFlow's, of both its generations, so an existing project only
changes its class path::

    # AIFlow 0.3 (ai_flow.plugin_interface.blob_manager_interface)
    blob_config = BlobConfig(project_config["blob"])
    manager = BlobManagerFactory.create_blob_manager(
        blob_config.blob_manager_class(), blob_config.blob_manager_config())

    # AIFlow master (ai_flow.blob_manager.blob_manager_interface)
    manager = BlobManagerFactory.create_blob_manager(BlobManagerConfig(blob_section))
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


class BlobConfig(dict):
    """AIFlow 0.3's ``BlobConfig``: the ``blob`` section of ``project.yaml``, as a dict.

    Holds ``blob_manager_class`` and ``blob_manager_config`` (an empty dict when
    the section has none), so ``blob_config["blob_manager_config"]`` works as it
    did in AIFlow.

    Args:
        config: the mapping under the ``blob`` key.

    Raises:
        BlobConfigError: ``config`` is ``None`` or not a mapping, has no
            ``blob_manager_class``, or its ``blob_manager_config`` is not a mapping.
            The message keeps AIFlow's words.
    """

    def __init__(self, config: Mapping[str, Any] | None) -> None:
        super().__init__()
        section = _blob_section(
            config, missing="The `blob` option is not configured in the project.yaml option")
        self["blob_manager_class"] = section["blob_manager_class"]
        self["blob_manager_config"] = _customized(section) or {}

    def blob_manager_class(self) -> str:
        """The dotted class path of the blob manager."""
        return self["blob_manager_class"]

    def set_blob_manager_class(self, value: str) -> None:
        """Replace the class path."""
        self["blob_manager_class"] = value

    def blob_manager_config(self) -> dict[str, Any]:
        """The ``blob_manager_config`` mapping itself (changes to it are kept)."""
        return self["blob_manager_config"]

    def set_blob_manager_config(self, value: Mapping[str, Any]) -> None:
        """Replace the ``blob_manager_config`` mapping."""
        self["blob_manager_config"] = value

    def __repr__(self) -> str:  # the config holds secrets: show the class only
        return f"BlobConfig(blob_manager_class={self.get('blob_manager_class')!r})"


class BlobManagerConfig:
    """AIFlow's second generation (``ai_flow.blob_manager``): the blob manager section.

    Args:
        config: a mapping with ``blob_manager_class`` and, optionally,
            ``blob_manager_config``; kept as :attr:`config`.

    Raises:
        BlobConfigError: ``config`` is ``None`` or not a mapping, or has no
            ``blob_manager_class``. The message keeps AIFlow's words.
    """

    def __init__(self, config: Mapping[str, Any] | None) -> None:
        self.config = _blob_section(config, missing="The blob manager option is not configured")

    def get_class(self) -> str:
        """The dotted class path of the blob manager."""
        return self.config["blob_manager_class"]

    def get_customized_config(self) -> Mapping[str, Any] | None:
        """The ``blob_manager_config`` mapping, or ``None`` when the section has none."""
        return _customized(self.config)

    def __repr__(self) -> str:  # the config holds secrets: show the class only
        return f"BlobManagerConfig(blob_manager_class={self.get_class()!r})"


def _blob_section(config: Any, *, missing: str) -> Mapping[str, Any]:
    """``config`` if it is a blob section with a class path; ``missing`` is
    AIFlow's message for an absent section."""
    if config is None:
        raise BlobConfigError(
            f"{missing}: the blob manager section is empty; give it blob_manager_class "
            "(e.g. fsblob.LocalBlobManager) and blob_manager_config"
        )
    if not isinstance(config, Mapping):
        raise BlobConfigError(
            f"the 'blob' section must be a mapping with blob_manager_class and "
            f"blob_manager_config, not {type(config).__name__}"
        )
    value = config.get("blob_manager_class")
    if value is not None and not isinstance(value, str):
        raise BlobConfigError(
            f"blob_manager_class must be a class path such as fsblob.LocalBlobManager, "
            f"not {type(value).__name__}"
        )
    if not value:
        raise BlobConfigError(
            "The `blob_manager_class` option of blob config is not configured: the 'blob' "
            "section has no blob_manager_class; set it to a class path such as "
            "fsblob.LocalBlobManager or fsblob.S3BlobManager"
        )
    _customized(config)  # refuse a blob_manager_config that is not a mapping, now
    return config


def _customized(section: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The section's ``blob_manager_config``: a mapping, or ``None`` when absent."""
    value = section.get("blob_manager_config")
    if value is not None and not isinstance(value, Mapping):
        raise BlobConfigError(
            f"blob_manager_config must be a mapping of keys, not {type(value).__name__}"
        )
    return value


class BlobManagerFactory:
    """Creates blob managers by class path, in both of AIFlow's call forms::

        create_blob_manager(class_name, config)     # AIFlow 0.3
        create_blob_manager(blob_manager_config)    # AIFlow master: a BlobManagerConfig,
                                                    # or the mapping it would wrap
    """

    @classmethod
    def create_blob_manager(
        cls,
        class_name: str | BlobManagerConfig | Mapping[str, Any] | None = None,
        config: Mapping[str, Any] | BlobManagerConfig | None = None,
    ) -> BlobManager:
        """Import the manager class (``package.module.Class``) and build it with its
        ``blob_manager_config``.

        Args:
            class_name: the class path (with ``config``), or, alone, the whole blob
                section: a :class:`BlobManagerConfig` or a mapping with
                ``blob_manager_class`` and ``blob_manager_config``.
            config: the ``blob_manager_config`` mapping; or, when ``class_name`` is
                not given, the blob section (AIFlow master's keyword ``config``).

        Raises:
            BlobConfigError: no class path, a class that cannot be imported, or a
                section AIFlow would have refused.
        """
        if isinstance(class_name, str):
            return _instantiate(class_name, config)
        if class_name is not None and config is not None:
            raise BlobConfigError(
                "create_blob_manager takes a class path and its blob_manager_config, or "
                f"one blob section; got a {type(class_name).__name__} and a config"
            )
        section = class_name if class_name is not None else config
        if not isinstance(section, BlobManagerConfig):
            section = BlobManagerConfig(section)
        return _instantiate(section.get_class(), section.get_customized_config() or {})


def _instantiate(class_name: str, config: Any) -> BlobManager:
    """Import ``class_name`` and build it with ``config``."""
    if not class_name or "." not in class_name:
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
