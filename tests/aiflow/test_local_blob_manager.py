"""AIFlow's LocalBlobManager tests, ported to fsblob.LocalBlobManager.

Ported from flink-extended/ai-flow (Apache License 2.0):
``ai_flow_plugins/tests/blob_manager_plugins/test_local_blob_manager.py`` (0.3 line)
and ``tests/blob_manager/impl/test_local_blob_manager.py`` (master). Each test runs
in both generations' call forms (``create``); the class path is fsblob's, and the
fixed folders under /tmp became pytest's per-test directories.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from tests.aiflow.compat import create_0_3, create_master_by_class

GENERATIONS = pytest.mark.parametrize("create", [create_0_3, create_master_by_class],
                                      ids=["0.3", "master"])


@pytest.fixture
def folders(tmp_path: Path) -> tuple[str, str, str]:
    """(upload folder, download folder, an empty file.txt), as AIFlow's setUp made them."""
    upload, download = tmp_path / 'upload', tmp_path / 'download'
    upload.mkdir()
    download.mkdir()
    tmp_file = tmp_path / 'file.txt'
    tmp_file.touch()
    return str(upload), str(download), str(tmp_file)


@GENERATIONS
def test_without_root_directory_set(create) -> None:
    with pytest.raises(Exception, match='`root_directory` option of blob manager config is not configured'):
        create('local', None if create is create_0_3 else {})


@GENERATIONS
def test_project_upload_download_local(create, folders) -> None:
    upload_folder, download_folder, tmp_file = folders
    blob_manager = create('local', {'root_directory': upload_folder})
    uploaded_path = blob_manager.upload(tmp_file)
    assert os.path.join(upload_folder, os.path.basename(tmp_file), uploaded_path) == uploaded_path

    downloaded_path = blob_manager.download(uploaded_path, download_folder)
    assert os.path.join(download_folder, os.path.basename(tmp_file)) == downloaded_path


@GENERATIONS
def test_project_upload_download_local_2(create, folders) -> None:
    upload_folder, _, tmp_file = folders
    blob_manager = create('local', {'root_directory': upload_folder})
    uploaded_path = blob_manager.upload(tmp_file)
    downloaded_path = blob_manager.download(uploaded_path)
    assert uploaded_path == downloaded_path


@GENERATIONS
def test_project_download_local_same_time(create, folders) -> None:
    upload_folder, download_folder, tmp_file = folders
    blob_manager = create('local', {'root_directory': upload_folder})
    uploaded_path = blob_manager.upload(tmp_file)
    errors: list[BaseException] = []

    def download_project() -> None:
        try:
            blob_manager.download(uploaded_path)
        except BaseException as exc:  # a thread's failure must fail the test
            errors.append(exc)

    threads = [threading.Thread(target=download_project, daemon=True) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert errors == [] and not any(t.is_alive() for t in threads)
    downloaded_path = blob_manager.download(uploaded_path, download_folder)
    assert os.path.join(download_folder, os.path.basename(tmp_file)) == downloaded_path
