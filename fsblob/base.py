"""The blob manager contract of AIFlow, which every manager implements."""

from __future__ import annotations

import abc
import os
from collections.abc import Mapping
from typing import Any

from fsblob.errors import BlobConfigError


class BlobManager(abc.ABC):
    """The blob manager contract of AIFlow: upload and download artifacts.

    Args:
        config: the ``blob_manager_config`` mapping of ``project.yaml``.
    """

    def __init__(self, config: Mapping[str, Any]) -> None:
        if not isinstance(config, Mapping):
            raise BlobConfigError(
                f"{type(self).__name__}: blob_manager_config must be a mapping of keys, "
                f"not {type(config).__name__}"
            )

    @property
    @abc.abstractmethod
    def root_dir(self) -> str:
        """Where artifacts are stored: a local directory or a URL."""

    @abc.abstractmethod
    def upload(self, local_file_path: str | os.PathLike[str]) -> str:
        """Store a local file or directory under the root; return its URI."""

    @abc.abstractmethod
    def download(
        self, remote_file_path: str, local_dir: str | os.PathLike[str] | None = None
    ) -> str:
        """Fetch a stored artifact into ``local_dir``; return its local path."""
