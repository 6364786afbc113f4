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

import datetime
import difflib
import importlib
import os
import re
from collections.abc import Mapping
from typing import Any

import yaml
from fsspec.core import split_protocol

from fsblob.backends import keys
from fsblob.backends.generic import LOCAL_PROTOCOLS
from fsblob.errors import BlobConfigError
from fsblob.base import BlobManager
from fsblob.manager import FsspecBlobManager

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
    ``NAME``, so secrets need not be written in the file. A YAML date (such as
    ``api_version: 2006-03-01`` unquoted) is read back as its ISO text. A
    relative ``root_directory`` of a local store is taken relative to the
    file's own directory, so the project works from any working directory
    (a config given to a manager in Python keeps AIFlow's reading: relative to
    the current directory).

    Raises:
        BlobConfigError: the file cannot be read or parsed (the message gives
            the line and column), has no ``blob`` section, has a misspelled key
            in it, or refers to an undefined variable.
    """
    where = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            document = yaml.safe_load(f)
    except OSError as exc:
        raise BlobConfigError(f"cannot read project file {where}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise BlobConfigError(f"project file {where} is not valid YAML: {_yaml_problem(exc)}") from None
    if not isinstance(document, Mapping) or "blob" not in document:
        close = _close(document.keys() if isinstance(document, Mapping) else (), "blob")
        hint = f" (is {close!r} a misspelling of 'blob'?)" if close else ""
        raise BlobConfigError(
            f"project file {where} has no 'blob' section{hint}; add one with "
            "blob_manager_class and blob_manager_config"
        )
    blob = _expand(document["blob"], "blob")
    if isinstance(blob, Mapping):
        _check_section_keys(blob, where)
        blob = _anchor_local_root(blob, os.path.dirname(os.path.abspath(where)))
    return BlobConfig(blob)


_SECTION_KEYS = ("blob_manager_class", "blob_manager_config")


def _check_section_keys(blob: Mapping[str, Any], where: str) -> None:
    """Refuse a key of the ``blob`` section other than its two (most often a typo)."""
    for key in blob:
        if key not in _SECTION_KEYS:
            raise BlobConfigError(
                f"project file {where}: unknown key {key!r} in the 'blob' section; "
                f"{keys.suggestion(key, _SECTION_KEYS)}"
                f"the section takes {' and '.join(_SECTION_KEYS)}"
            )


def _close(names: Any, wanted: str) -> str | None:
    """A key of ``names`` that looks like a misspelling of ``wanted``."""
    for key in names:
        if isinstance(key, str) and difflib.get_close_matches(wanted, [key], n=1, cutoff=0.75):
            return key
    return None


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """``line L, column C: <problem>``, from PyYAML's multi-line message."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or " ".join(str(exc).split())
    if mark is None:
        return problem
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}"


def _anchor_local_root(blob: Mapping[str, Any], base_dir: str) -> dict[str, Any]:
    """The section with a local store's relative ``root_directory`` made absolute
    against ``base_dir`` (the project file's directory)."""
    blob = dict(blob)
    config = blob.get("blob_manager_config")
    if not isinstance(config, Mapping):
        return blob
    root = config.get("root_directory")
    if (not isinstance(root, str) or not root or split_protocol(root)[0]
            or os.path.isabs(os.path.expanduser(root))
            or not _is_local(blob.get("blob_manager_class"), config)):
        return blob
    blob["blob_manager_config"] = {**config, "root_directory": os.path.join(base_dir, root)}
    return blob


def _is_local(class_path: Any, config: Mapping[str, Any]) -> bool:
    """Whether ``class_path`` with ``config`` stores on the local filesystem."""
    if not isinstance(class_path, str) or "." not in class_path:
        return False
    module_name, _, attr = class_path.rpartition(".")
    try:
        blob_class = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError):
        return False  # the factory reports it, with the fix
    if not isinstance(blob_class, type) or not issubclass(blob_class, FsspecBlobManager):
        return False
    backend = blob_class.backend or config.get("backend") or "fsspec"
    return backend == "local" or (
        backend == "fsspec" and (config.get("protocol") or "file") in LOCAL_PROTOCOLS)


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
    if isinstance(value, datetime.date):  # YAML reads 2006-03-01 as a date: give the text back
        return value.isoformat()
    if isinstance(value, Mapping):
        return {k: _expand(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, f"{where}[{i}]") for i, v in enumerate(value)]
    return value
