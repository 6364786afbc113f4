"""AIFlow's own loader (``yaml.safe_load``) feeding fsblob: "change only the class path".

AIFlow reads ``project.yaml`` with ``yaml.safe_load`` and hands the ``blob`` section to
``BlobConfig`` and the factory as it is, with YAML's types: an unquoted
``api_version: 2006-03-01`` is a ``datetime.date``, ``use_ssl: true`` a bool,
``hdfs_user: 1001`` an int. No fsblob loader is involved here.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

import fsblob
from fsblob import BlobConfig, BlobConfigError, BlobManagerConfig, BlobManagerFactory

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("project-*.yaml"))
ENV = {"S3_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_ACCESS_KEY_ID": "k",
       "AWS_SECRET_ACCESS_KEY": "s", "OSS_ACCESS_KEY_ID": "k", "OSS_ACCESS_KEY_SECRET": "s"}


def _aiflow_load(text: str) -> dict[str, Any]:
    """What AIFlow does with a project file (its ${VAR}s written out first)."""
    for name, value in ENV.items():
        text = text.replace("${" + name + "}", value)
    return yaml.safe_load(text)


def test_every_example_is_read_by_aiflows_loader() -> None:
    assert {p.name for p in EXAMPLES} == {"project-local.yaml", "project-s3.yaml",
                                          "project-oss.yaml", "project-hdfs.yaml"}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_safe_load_output_builds_each_manager_in_both_generations(path: Path) -> None:
    document = _aiflow_load(path.read_text())
    blob = BlobConfig(document["blob"])  # AIFlow 0.3
    manager = BlobManagerFactory.create_blob_manager(blob.blob_manager_class(),
                                                     blob.blob_manager_config())
    assert isinstance(manager, fsblob.FsspecBlobManager)
    master = BlobManagerFactory.create_blob_manager(BlobManagerConfig(document["blob"]))
    assert type(master) is type(manager) and master.root_url == manager.root_url


def test_the_s3_example_keeps_aiflows_unquoted_api_version() -> None:
    document = _aiflow_load((ROOT / "examples" / "project-s3.yaml").read_text())
    config = document["blob"]["blob_manager_config"]
    assert repr(config["api_version"]) == "datetime.date(2006, 3, 1)", "the example is AIFlow's form"
    manager = fsblob.S3BlobManager(config)
    assert manager.storage_options["client_kwargs"]["api_version"] == "2006-03-01"


@pytest.mark.parametrize("manager_class, text, option, expected", [
    (fsblob.S3BlobManager, "bucket_name: b\napi_version: 2006-03-01\n",
     ("client_kwargs", "api_version"), "2006-03-01"),
    (fsblob.S3BlobManager, "bucket_name: 2024\nuse_ssl: true\nverify: false\n",
     ("use_ssl",), True),
    (fsblob.S3BlobManager, "bucket_name: b\nverify: false\n", ("client_kwargs", "verify"), False),
    (fsblob.S3BlobManager, "bucket_name: b\nregion_name: 1\nconfig: {connect_timeout: 10}\n",
     ("client_kwargs", "region_name"), "1"),
    (fsblob.HDFSBlobManager, "hdfs_url: http://nn:9870\nhdfs_user: 1001\nroot_directory: /a\n",
     ("user",), "1001"),
])
def test_yaml_types_with_an_obvious_text_form_are_taken(manager_class: type, text: str,
                                                         option: tuple[str, ...], expected: Any) -> None:
    value: Any = manager_class(yaml.safe_load(text)).storage_options
    for key in option:
        value = value[key]
    assert value == expected


def test_s3_bucket_given_as_a_yaml_number_is_its_text() -> None:
    manager = fsblob.S3BlobManager(yaml.safe_load("bucket_name: 2024\nroot_directory: 7\n"))
    assert manager.root_url == "s3://2024/7"


def test_engine_keys_take_yaml_numbers() -> None:
    manager = fsblob.LocalBlobManager(yaml.safe_load(
        f"root_directory: {os.getcwd()}\nretries: 3\nretry_deadline: 2.5\n"))
    assert manager._retry.retries == 3 and manager._retry.deadline == 2.5


def test_a_yaml_boolean_for_a_text_key_asks_for_quotes() -> None:
    with pytest.raises(BlobConfigError, match=r"'hdfs_user' must be a string.*quote the value"):
        fsblob.HDFSBlobManager(yaml.safe_load("hdfs_url: http://nn:9870\nhdfs_user: yes\n"
                                              "root_directory: /a\n"))
