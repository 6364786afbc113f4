"""Misconfiguration is a configuration error naming the key, never "not found";
failures that no retry can mend are not retried; the raised types are public."""

from __future__ import annotations

import http.server
import logging
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

import fsblob
from fsblob import (
    BlobConfigError,
    BlobError,
    BlobIntegrityError,
    BlobTransferError,
    HDFSBlobManager,
    OssBlobManager,
    S3BlobManager,
)
from fsblob.errors import redact
from tests.conftest import Case
from tests.servers.moto import MotoServer
from tests.servers.tls import self_signed_context
from tests.test_contract import _file


class _Counting(http.server.ThreadingHTTPServer):
    """An HTTP server answering 404 to everything, counting the connections."""

    def __init__(self, context: ssl.SSLContext | None = None) -> None:
        self.connections = 0
        self.context = context
        super().__init__(("127.0.0.1", 0), _NotFound)

    def get_request(self):  # type: ignore[no-untyped-def]
        sock, address = super().get_request()
        self.connections += 1
        if self.context is not None:
            sock = self.context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
            sock.settimeout(2)
        return sock, address


class _NotFound(http.server.BaseHTTPRequestHandler):
    def _answer(self) -> None:
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _answer

    def log_message(self, format: str, *args: object) -> None:
        pass


def _serve(server: _Counting) -> Iterator[_Counting]:
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                              daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def web404() -> Iterator[_Counting]:
    yield from _serve(_Counting())


@pytest.fixture
def self_signed(tmp_path: Path) -> Iterator[_Counting]:
    """An https server whose certificate no CA bundle vouches for."""
    context = self_signed_context(tmp_path, "fsblob-test")
    yield from _serve(_Counting(context))


def _s3(url: str, **extra: object) -> S3BlobManager:
    return S3BlobManager({"bucket_name": "artifacts", "endpoint_url": url, "retries": 4,
                          "retry_deadline": 20, "access_key_id": "testing",
                          "secret_access_key": "testing", **extra})


# -- misconfiguration is not "not found" --------------------------------------------

def test_a_missing_ca_bundle_is_a_config_error_naming_verify(s3_case: Case, tmp_path: Path) -> None:
    manager = s3_case.make(verify=str(tmp_path / "no-such-ca.pem"))
    for attempt in (lambda: manager.exists("a.bin"),
                    lambda: manager.download("a.bin", tmp_path / "out"), manager.ls):
        with pytest.raises(BlobConfigError, match="verify") as info:
            attempt()
        assert "no-such-ca.pem" in str(info.value)


@pytest.mark.parametrize("bucket", ["ab", "My_Artifacts", "-bucket", "a" * 64])
def test_an_invalid_oss_bucket_name_is_a_config_error(bucket: str) -> None:
    with pytest.raises(BlobConfigError, match="bucket") as info:
        OssBlobManager({"endpoint": "http://127.0.0.1:9", "bucket": bucket})
    assert repr(bucket) in str(info.value)


def test_a_missing_s3_bucket_is_a_config_error(s3_case: Case, tmp_path: Path) -> None:
    manager = s3_case.make(bucket_name="no-such-bucket")
    with pytest.raises(BlobConfigError, match="bucket_name 'no-such-bucket'"):
        manager.ls()
    with pytest.raises(BlobConfigError, match="bucket_name"):
        manager.upload(_file(tmp_path / "a.bin"))


def test_a_missing_oss_bucket_is_a_config_error(oss_case: Case, tmp_path: Path) -> None:
    manager = oss_case.make(bucket="no-such-bucket")
    with pytest.raises(BlobConfigError, match="bucket 'no-such-bucket'"):
        manager.ls()
    with pytest.raises(BlobConfigError, match="bucket"):
        manager.exists("a.bin")


def test_a_plain_web_server_answering_404_is_a_config_error(web404: _Counting) -> None:
    manager = _s3(f"http://127.0.0.1:{web404.server_address[1]}")
    with pytest.raises(BlobConfigError, match="bucket_name 'artifacts'") as info:
        manager.ls()
    assert f"127.0.0.1:{web404.server_address[1]}" in str(info.value)


def test_only_a_missing_artifact_is_not_found(s3_case: Case, tmp_path: Path) -> None:
    with pytest.raises(fsblob.BlobNotFoundError):
        s3_case.make().download("missing.bin", tmp_path / "out")


@pytest.mark.parametrize(("manager_class", "config", "key"), [
    (S3BlobManager, {"bucket_name": "b", "endpoint_url": "127.0.0.1:5123"}, "endpoint_url"),
    (S3BlobManager, {"bucket_name": "b", "endpoint_url": "localhost:5123"}, "endpoint_url"),
    (OssBlobManager, {"bucket": "bkt", "endpoint": "ftp://127.0.0.1:5123"}, "endpoint"),
    (OssBlobManager, {"bucket": "bkt", "endpoint": "127.0.0.1:5123/x?y"}, "endpoint"),
    (HDFSBlobManager, {"hdfs_url": "127.0.0.1:5123", "root_directory": "/a"}, "hdfs_url"),
    (HDFSBlobManager, {"hdfs_url": "localhost:5123", "root_directory": "/a"}, "hdfs_url"),
])
def test_an_endpoint_without_a_scheme_is_a_config_error(manager_class: type, config: dict,
                                                        key: str) -> None:
    with pytest.raises(BlobConfigError, match=key):
        manager_class(config)


def test_libhdfs_missing_says_the_fix_first(tmp_path: Path) -> None:
    manager = HDFSBlobManager({"hdfs_url": "hdfs://127.0.0.1:8020", "root_directory": "/a",
                               "retries": 0})
    with pytest.raises(BlobConfigError) as info:
        manager.download("a.bin", tmp_path)
    message = str(info.value)
    assert message.index("JVM") < message.index("cause:"), "the fix comes after the detail"
    assert len(message) < 900, f"{len(message)} characters"


# -- permanent failures are not retried ------------------------------------------------

def test_a_certificate_that_does_not_verify_is_not_retried(self_signed: _Counting) -> None:
    manager = _s3(f"https://127.0.0.1:{self_signed.server_address[1]}")
    with pytest.raises(BlobConfigError, match="TLS|certificate") as info:
        manager.ls()
    assert self_signed.connections == 1, f"retried: {self_signed.connections} connections"
    assert "verify" in str(info.value)


def test_https_to_a_plain_http_port_is_not_retried(web404: _Counting) -> None:
    manager = _s3(f"https://127.0.0.1:{web404.server_address[1]}")
    with pytest.raises(BlobConfigError, match="TLS"):
        manager.ls()
    assert web404.connections == 1, f"retried: {web404.connections} connections"


def test_a_failed_verification_raises_the_public_integrity_error(s3_case: Case,
                                                                tmp_path: Path) -> None:
    manager = s3_case.make(retries=1, retry_deadline=5)
    uri = manager.upload(_file(tmp_path / "c.bin", 200_000))
    s3_case.server.corrupt_next(100)
    try:
        with pytest.raises(BlobIntegrityError) as info:
            manager.download(uri, tmp_path / "out")
    finally:
        s3_case.server.corrupt_next(0)
    assert isinstance(info.value, BlobTransferError) and "BlobIntegrityError" in fsblob.__all__
    assert type(info.value).__module__ == "fsblob.errors"


# -- secrets the credential chain resolved --------------------------------------------

def test_secrets_from_the_credential_chain_are_redacted(moto_server: MotoServer,
                                                        monkeypatch: pytest.MonkeyPatch,
                                                        caplog: pytest.LogCaptureFixture,
                                                        tmp_path: Path) -> None:
    key_id, secret, token = "ASIACHAINKEY0001", "chain-secret/key+0001=", "IQoJb3Jp/Z2luX+2VjEC=="
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    monkeypatch.setenv("AWS_SESSION_TOKEN", token)
    manager = S3BlobManager({"bucket_name": "fsblob-test", "endpoint_url": moto_server.url,
                             "root_directory": "chain", "retries": 0})
    with caplog.at_level(logging.DEBUG):
        manager.upload(_file(tmp_path / "a.bin", 1000))
        with pytest.raises(BlobError) as info:
            manager.download("missing.bin", tmp_path / "out")
    shown = "\n".join(r.getMessage() for r in caplog.records) + str(info.value)
    assert any("Authorization" in r.getMessage() or "x-amz" in r.getMessage()
               for r in caplog.records), "botocore logged no request: the test shows nothing"
    for value in (key_id, secret, token):
        for form in (value, quote(value, safe=""), quote(value)):
            assert form not in shown, f"{form!r} was shown"


def test_a_percent_encoded_token_is_redacted() -> None:
    token = "IQoJb3Jp/Z2luX+2VjEC=="
    text = f"GET /b?X-Amz-Security-Token={quote(token, safe='')} and {token}"
    assert "***" in redact(text, [token]) and quote(token, safe="") not in redact(text, [token])
    assert token not in redact(text, [token])


# -- the cache directory ---------------------------------------------------------------

def test_an_unusable_cache_directory_is_one_clear_error(s3_case: Case, tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the cache directory should be")
    manager = s3_case.make(cache_directory=str(blocker))
    uri = manager.upload(_file(tmp_path / "a.bin", 1000))
    with pytest.raises(BlobConfigError) as info:
        manager.download(uri, tmp_path / "out")
    assert "cache_directory" in str(info.value) and str(blocker) in str(info.value)


def test_no_credentials_anywhere_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch,
                                                         s3_case: Case) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    config = {k: v for k, v in s3_case.config.items()
              if k not in ("access_key_id", "secret_access_key")}
    with pytest.raises(BlobConfigError, match="no credentials.*access_key_id"):
        S3BlobManager({**config, "retries": 0}).ls()
