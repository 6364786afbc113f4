"""No secret appears in a repr, a log record (at DEBUG) or an exception's text."""

from __future__ import annotations

import logging
from pathlib import Path

import fsspec
import pytest
from fsspec.implementations.memory import MemoryFileSystem

from fsblob import (
    BlobConfigError,
    BlobError,
    FsspecBlobManager,
    HDFSBlobManager,
    OssBlobManager,
    S3BlobManager,
)
from tests.conftest import Case
from tests.test_contract import _file

KEY_ID, SECRET, TOKEN = "FsblobKeyId0001", "fsblob-secret-value-0002", "fsblob-session-token-0003"


def _secret_config(case: Case) -> dict:
    if case.name == "s3":
        return {**case.config, "access_key_id": KEY_ID, "secret_access_key": SECRET,
                "session_token": TOKEN}
    if case.name == "oss":
        return {**case.config, "access_key_id": KEY_ID, "access_key_secret": SECRET}
    return {**case.config, "storage_options": {"token": TOKEN, "password": SECRET}}


@pytest.mark.parametrize("backend", ["s3", "oss", "memory"])
def test_secrets_stay_out_of_reprs_logs_and_errors(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    case: Case = request.getfixturevalue(f"{backend}_case")
    caplog.set_level(logging.DEBUG)
    manager_class = {"s3": S3BlobManager, "oss": OssBlobManager, "memory": FsspecBlobManager}[backend]
    manager = manager_class({**_secret_config(case), "retries": 1, "retry_deadline": 2})
    texts = [repr(manager), str(manager), repr(manager._store)]

    uri = manager.upload(_file(tmp_path / "a.bin", 20_000))
    manager.download(uri, tmp_path / "out")
    manager.ls()
    failures = [lambda: manager.download("missing.bin", tmp_path / "out"),
                lambda: manager.download("../x", tmp_path / "out"),
                lambda: manager.upload(tmp_path / "missing")]
    if case.server is not None:
        def dead_server() -> None:
            case.server.stop()
            try:
                manager.download(uri, tmp_path / "again")
            finally:
                case.server.start()
        failures.append(dead_server)
        case.server.fail_next(1000)
        failures.append(lambda: manager.upload(tmp_path / "a.bin"))
    for fail in failures:
        with pytest.raises(BlobError) as info:
            fail()
        texts.append(str(info.value))
        texts.append(repr(info.value))
    if case.server is not None:
        case.server.fail_next(0)

    records = [r.getMessage() + (r.exc_text or "") for r in caplog.records]
    assert len(records) > 5, "the test should see the libraries' DEBUG logs"
    for secret in (KEY_ID, SECRET, TOKEN):
        for text in texts + records:
            assert secret not in text
    if backend == "s3":
        assert any("***" in r for r in records), "botocore logs credentials: they must show redacted"


class CarelessFileSystem(MemoryFileSystem):
    """A filesystem whose errors echo its credentials, as careless clients' do."""

    protocol = "careless"

    @classmethod
    def _strip_protocol(cls, path: str) -> str:
        return super()._strip_protocol(path.removeprefix("careless://"))

    def info(self, path: str, **kwargs: object) -> dict:
        raise PermissionError(f"token {self.storage_options['token']} refused for {path}")


def test_library_errors_that_echo_secrets_are_redacted(tmp_path: Path,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    fsspec.register_implementation("careless", CarelessFileSystem, clobber=True)
    caplog.set_level(logging.DEBUG)
    manager = FsspecBlobManager({"root_directory": "careless://root",
                                 "storage_options": {"token": TOKEN}})
    for call in (lambda: manager.download("a.bin", tmp_path), lambda: manager.exists("a.bin")):
        with pytest.raises(BlobError) as info:
            call()
        assert "refused for /root/a.bin" in str(info.value)
        assert TOKEN not in str(info.value) and "***" in str(info.value)
    assert all(TOKEN not in r.getMessage() for r in caplog.records)


def test_hdfs_url_with_a_password_is_refused_without_repeating_it() -> None:
    with pytest.raises(BlobConfigError) as info:
        HDFSBlobManager({"hdfs_url": f"http://alice:{SECRET}@127.0.0.1:9870", "root_directory": "/a"})
    assert "hdfs_user" in str(info.value) and SECRET not in str(info.value)
