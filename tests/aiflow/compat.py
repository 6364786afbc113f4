"""How AIFlow's code builds a blob manager, in each generation, with fsblob's class paths.

The ported tests call these instead of AIFlow's modules; the only change from
AIFlow's calls is the class path (:data:`CLASS_PATHS`).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fsblob import (
    BlobConfig,
    BlobManager,
    BlobManagerConfig,
    BlobManagerFactory,
    BlobTransferError,
)

#: backend -> (AIFlow 0.3 class path, AIFlow master class path, fsblob class path)
CLASS_PATHS = {
    "local": ("ai_flow_plugins.blob_manager_plugins.local_blob_manager.LocalBlobManager",
              "ai_flow.blob_manager.impl.local_blob_manager.LocalBlobManager",
              "fsblob.LocalBlobManager"),
    "oss": ("ai_flow_plugins.blob_manager_plugins.oss_blob_manager.OssBlobManager",
            "ai_flow.blob_manager.impl.oss_blob_manager.OssBlobManager",
            "fsblob.OssBlobManager"),
    "hdfs": ("ai_flow_plugins.blob_manager_plugins.hdfs_blob_manager.HDFSBlobManager",
             "ai_flow.blob_manager.impl.hdfs_blob_manager.HDFSBlobManager",
             "fsblob.HDFSBlobManager"),
    "s3": ("ai_flow_plugins.blob_manager_plugins.s3_blob_manager.S3BlobManager",
           "ai_flow.blob_manager.impl.s3_blob_manager.S3BlobManager",
           "fsblob.S3BlobManager"),
}


def fsblob_class(backend: str) -> str:
    """The class path that replaces AIFlow's for ``backend``."""
    return CLASS_PATHS[backend][2]


def section(backend: str, config: Mapping[str, Any] | None) -> dict[str, Any]:
    """A ``blob`` section of ``project.yaml``; without ``blob_manager_config`` when ``None``."""
    blob: dict[str, Any] = {"blob_manager_class": fsblob_class(backend)}
    if config is not None:
        blob["blob_manager_config"] = dict(config)
    return blob


def create_0_3(backend: str, config: Mapping[str, Any] | None) -> BlobManager:
    """AIFlow 0.3: ``BlobConfig`` and ``create_blob_manager(class_name, config)``."""
    blob_config = BlobConfig(section(backend, config))
    return BlobManagerFactory.create_blob_manager(blob_config.blob_manager_class(),
                                                  blob_config.blob_manager_config())


def create_master(backend: str, config: Mapping[str, Any] | None) -> BlobManager:
    """AIFlow master: ``create_blob_manager(BlobManagerConfig(section))``."""
    return BlobManagerFactory.create_blob_manager(BlobManagerConfig(section(backend, config)))


def create_master_by_class(backend: str, config: Mapping[str, Any]) -> BlobManager:
    """AIFlow master's tests also call ``create_blob_manager(class_name, config)``."""
    return BlobManagerFactory.create_blob_manager(fsblob_class(backend), config)


def assert_retried_like_aiflow(manager_class: type, config: Mapping[str, Any], uri: str,
                               server: Any, tmp_path: Path) -> None:
    """AIFlow's ``_get_*_object`` retry test, end to end instead of on a mocked client.

    AIFlow: three failures raise after three calls; one failure, then success,
    makes two calls. Here: with ``retries: 2``, a server failing every request
    sees three attempts (three times the requests of one attempt with
    ``retries: 0``) and the download raises; a server failing one request sees
    exactly one request more than a clean download, which succeeds.
    """

    def download(retries: int, dest: str, fail: int) -> tuple[int, BlobTransferError | None]:
        manager = manager_class({**config, 'retries': retries, 'retry_deadline': 30})
        manager.fs  # noqa: B018  (opened first: its bucket check is not the download's)
        before, error = len(server.requests), None
        server.fail_next(fail)
        try:
            manager.download(uri, str(tmp_path / dest))
        except BlobTransferError as exc:
            error = exc
        finally:
            server.fail_next(0)
        return len(server.requests) - before, error

    one_attempt, error = download(0, 'failed', 1000)
    assert error is not None and one_attempt > 0
    three_attempts, error = download(2, 'failed', 1000)
    assert error is not None and 'after 3 attempts' in str(error)
    assert three_attempts == 3 * one_attempt
    assert not list((tmp_path / 'failed').iterdir()), 'a failed download left a file'
    clean, error = download(2, 'clean', 0)
    assert error is None
    once, error = download(2, 'retried', 1)
    assert error is None and once == clean + 1
    name = uri.rsplit('/', 1)[1]
    assert (tmp_path / 'retried' / name).read_bytes() == (tmp_path / 'clean' / name).read_bytes()


def download_from_two_threads(manager: Any, uri: str, out: Path, loops: int) -> None:
    """AIFlow's concurrent-download scenario: two threads each download ``uri``
    into ``out`` ``loops`` times; neither may fail."""
    errors: list[BaseException] = []

    def download_loop() -> None:
        try:
            for _ in range(loops):
                manager.download(uri, str(out))
        except BaseException as exc:  # reported below
            errors.append(exc)

    other = threading.Thread(target=download_loop)
    other.start()
    download_loop()
    other.join(timeout=120)
    assert errors == [] and not other.is_alive()
