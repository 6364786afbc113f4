"""The blob manager contract of AIFlow, which every manager implements.

It is AIFlow's base class, in both its generations
(``ai_flow.plugin_interface.blob_manager_interface.BlobManager`` and
``ai_flow.blob_manager.blob_manager_interface.BlobManager``): a plugin written for
AIFlow subclasses :class:`BlobManager`, takes ``__init__(self, config)``, calls
``super().__init__(config)``, implements :meth:`~BlobManager.upload` and
:meth:`~BlobManager.download`, and works unchanged.
"""

from __future__ import annotations

import abc
import inspect
import logging
import os
from collections.abc import Mapping
from typing import Any

from fsblob.errors import BlobConfigError


class BlobManager(abc.ABC):
    """The blob manager contract of AIFlow: upload and download artifacts.

    After ``__init__`` a manager has, as AIFlow's had:

    * ``config``: the ``blob_manager_config`` mapping it was given;
    * ``root_dir``: its ``root_directory`` key (``None`` when absent). A subclass
      may define ``root_dir`` itself, as a property: :class:`fsblob.FsspecBlobManager`
      does, and gives the URI of its root;
    * ``log``: a logger named after the subclass (``<module>.<class>``).

    Args:
        config: the ``blob_manager_config`` mapping of ``project.yaml``.

    Raises:
        BlobConfigError: ``config`` is not a mapping.
    """

    root_dir: str | None

    def __init__(self, config: Mapping[str, Any]) -> None:
        if not isinstance(config, Mapping):
            raise BlobConfigError(
                f"{type(self).__name__}: blob_manager_config must be a mapping of keys, "
                f"not {type(config).__name__}; give at least root_directory"
            )
        self._log = logging.getLogger(f"{type(self).__module__}.{type(self).__name__}")
        self.config = config
        if not isinstance(inspect.getattr_static(type(self), "root_dir", None), property):
            self.root_dir = config.get("root_directory")

    @property
    def log(self) -> logging.Logger:
        """The logger of this manager's class."""
        return self._log

    @abc.abstractmethod
    def upload(self, local_file_path: str | os.PathLike[str]) -> str:
        """Store a local file or directory under the root; return its URI."""

    @abc.abstractmethod
    def download(
        self, remote_file_path: str, local_dir: str | os.PathLike[str] | None = None
    ) -> str:
        """Fetch a stored artifact into ``local_dir``; return its local path."""
