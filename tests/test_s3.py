"""S3 specifics, on moto's server: large files, pandas, credentials, buckets, legacy keys."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fsspec
import pandas as pd
import pytest

from fsblob import BlobConfigError, BlobTransferError, S3BlobManager
from tests.conftest import S3_BUCKET, Case
from tests.servers.moto import MotoServer
from tests.servers.proxy import FaultProxy
from tests.test_contract import _file

MiB = 2**20


@pytest.fixture(scope="module")
def strict_moto() -> Iterator[MotoServer]:
    """A moto server that checks credentials (none are known to it)."""
    with MotoServer(env={"INITIAL_NO_AUTH_ACTION_COUNT": "0"}) as server:
        yield server


def test_multipart_size_file_round_trip(s3_case: Case, tmp_path: Path) -> None:
    manager = s3_case.make()
    src = tmp_path / "big.bin"
    with open(src, "wb") as f:
        for i in range(72):  # 72 MiB: past s3fs's and boto3's multipart thresholds
            f.write(os.urandom(MiB) if i % 24 == 0 else bytes([i]) * MiB)
    uri = manager.upload(src)
    assert uri == f"s3://{S3_BUCKET}/{s3_case.config['root_directory']}/big.bin"
    assert manager.fs.info(uri)["size"] == 72 * MiB
    path = manager.download(uri, tmp_path / "out")
    assert Path(path).read_bytes() == src.read_bytes()


def test_pandas_writes_and_fsblob_reads_and_back(s3_case: Case, tmp_path: Path) -> None:
    manager = s3_case.make()
    frame = pd.DataFrame({"a": range(50), "b": [f"v{i}" for i in range(50)]})
    target = f"{manager.root_url}/from-pandas.parquet"
    frame.to_parquet(target, storage_options=manager.storage_options)
    local = manager.download("from-pandas.parquet", tmp_path)
    pd.testing.assert_frame_equal(pd.read_parquet(local), frame)
    frame.to_csv(tmp_path / "t.csv", index=False)
    uri = manager.upload(tmp_path / "t.csv")
    pd.testing.assert_frame_equal(pd.read_csv(uri, storage_options=manager.storage_options), frame)


def test_legacy_bare_key_downloads_relative_to_the_root(s3_case: Case, tmp_path: Path) -> None:
    manager = s3_case.make()
    manager.upload(_file(tmp_path / "legacy.zip", 4000))
    path = manager.download("legacy.zip", tmp_path / "out")  # what AIFlow's S3 upload returned
    assert Path(path).read_bytes() == (tmp_path / "legacy.zip").read_bytes()


def test_missing_bucket_is_a_clear_error(s3_case: Case, tmp_path: Path) -> None:
    manager = S3BlobManager({**s3_case.config, "bucket_name": "no-such-bucket"})
    with pytest.raises(BlobConfigError) as info:  # a typo in the config, not a missing artifact
        manager.upload(_file(tmp_path / "a.bin"))
    assert "no-such-bucket" in str(info.value) and "bucket_name" in str(info.value)


def test_wrong_credentials_are_a_clear_error(strict_moto: MotoServer, tmp_path: Path) -> None:
    manager = S3BlobManager({"bucket_name": "any", "endpoint_url": strict_moto.url,
                             "access_key_id": "UNKNOWNKEY01", "secret_access_key": "unknown-secret-1"})
    with pytest.raises(BlobTransferError) as info:
        manager.upload(_file(tmp_path / "a.bin"))
    message = str(info.value)
    assert "access denied" in message and "check the credentials" in message
    assert "Access Key Id" in message
    assert "unknown-secret-1" not in message and "UNKNOWNKEY01" not in message


def test_fsspec_open_uses_the_same_options(s3_case: Case, tmp_path: Path) -> None:
    manager = s3_case.make()
    uri = manager.upload(_file(tmp_path / "x.bin", 123_456))
    with fsspec.open(uri, "rb", **manager.storage_options) as f:
        f.seek(100_000)
        assert f.read(10) == (tmp_path / "x.bin").read_bytes()[100_000:100_010]


def test_large_uploads_go_multipart_streamed_and_abort_on_failure(s3_case: Case, tmp_path: Path) -> None:
    """The multipart path (S3 needs it past 5 GiB), with a small limit to reach it here."""
    from fsspec.callbacks import NoOpCallback

    from fsblob.backends import s3_upload
    from fsblob.chunks import TransferSettings

    manager = s3_case.make()
    proxy = s3_case.server
    src = tmp_path / "parts.bin"
    src.write_bytes(os.urandom(3 * MiB) + bytes(20 * MiB))
    rpath = f"{S3_BUCKET}/{s3_case.config['root_directory']}/parts.bin"
    s3_upload.put_file(manager.fs, str(src), rpath, NoOpCallback(),
                       settings=TransferSettings(8 * MiB, 5 * MiB, 5))
    assert proxy.count("PUT", "partNumber=") == 5
    assert manager.fs.cat_file(rpath) == src.read_bytes()

    proxy.reset_stats()
    proxy.kill_after(12 * MiB)
    with pytest.raises(Exception):  # noqa: B017 (aiohttp or botocore, by where the cut lands)
        s3_upload.put_file(manager.fs, str(src), rpath + ".2", NoOpCallback(),
                           settings=TransferSettings(8 * MiB, 5 * MiB, 5))
    proxy.start()
    assert not manager.fs.exists(rpath + ".2")
    assert manager.fs.cat_file(rpath) == src.read_bytes(), "the stored object was damaged"


class OpaqueKmsEtags:
    """Real S3's answer for an object encrypted with SSE-KMS: its ETag is not the MD5
    of its bytes (moto's always is). Objects stored with that encryption get an
    ETag that is a digest of something else, as on S3, and conditions on it
    (If-Match) hold as they do there."""

    def __init__(self) -> None:
        self.real: dict[str, str] = {}

    def on_request(self, req: Any, upstream: object) -> None:
        if req.headers.get("if-match") in self.real:
            req.headers["if-match"] = self.real[req.headers["if-match"]]
        return None

    def on_response(self, req: object, resp: Any, upstream: object) -> None:
        if resp.headers.get("x-amz-server-side-encryption") == "aws:kms" and "etag" in resp.headers:
            opaque = f'"{hashlib.md5(b"kms" + resp.headers["etag"].encode()).hexdigest()}"'
            self.real[opaque] = resp.headers["etag"]
            resp.headers["etag"] = opaque


def test_kms_encrypted_objects_download_without_an_md5_check(
        moto_server: MotoServer, s3_case: Case, tmp_path: Path) -> None:
    with FaultProxy(moto_server.url, translator=OpaqueKmsEtags()) as proxy:
        manager = S3BlobManager({**s3_case.config, "endpoint_url": proxy.url})
        key = f"{s3_case.config['root_directory']}/secret.bin"
        data = os.urandom(50_000)
        manager.fs.pipe_file(f"{S3_BUCKET}/{key}", data, ServerSideEncryption="aws:kms")
        head = manager.fs.info(f"{S3_BUCKET}/{key}")
        assert head["ETag"].strip('"') != hashlib.md5(data).hexdigest(), "the emulation is off"
        got = Path(manager.download("secret.bin", tmp_path / "out"))
        assert got.read_bytes() == data
        plain = manager.upload(_file(tmp_path / "plain.bin", 1000))  # not encrypted: MD5 checked
        proxy.corrupt_next(1)
        with pytest.raises(BlobTransferError):
            S3BlobManager({**s3_case.config, "endpoint_url": proxy.url, "retries": 0}).download(
                plain, tmp_path / "out2")


class _PayloadHashes:
    """A store that checks a signed payload as S3 does (the body's SHA256 against
    ``x-amz-content-sha256``), and notes each body's headers."""

    def __init__(self) -> None:
        self.bodies: list[tuple[str, str, set[str]]] = []  # (request, payload header, checksums)

    def on_request(self, req: Any, upstream: Any) -> Any:
        if req.method not in ("PUT", "POST") or req.headers.get("content-length") in (None, "0"):
            return None
        data = b"".join(req.body)
        req.body = iter([data])
        payload = req.headers.get("x-amz-content-sha256", "")
        checksums = {k for k in req.headers if k == "content-md5" or k.startswith("x-amz-checksum-")
                     and k != "x-amz-checksum-type"}
        self.bodies.append((f"{req.method} {req.path}", payload, checksums))
        if payload not in ("UNSIGNED-PAYLOAD", hashlib.sha256(data).hexdigest()):
            from tests.servers.proxy import error_response
            return error_response(400, "XAmzContentSHA256Mismatch")
        return None

    def on_response(self, req: Any, resp: Any, upstream: Any) -> None:
        return None


@pytest.mark.parametrize("signing", [None, True], ids=["default", "payload_signing_enabled"])
def test_bodies_over_plain_http_carry_checksums_instead_of_a_sha256_pass(
        moto_server: MotoServer, s3_case: Case, signing: bool | None, tmp_path: Path) -> None:
    """botocore hashes every body with SHA256 for the signature over http (not https),
    in the event loop's thread: fsblob's bodies carry checksums the store checks, so
    that pass is skipped, unless ``config`` asks for it. Every body sent unsigned
    carries a checksum (files, parts, a tree's bookkeeping)."""
    (tmp_path / "tree").mkdir()
    _file(tmp_path / "tree" / "a.bin", 3000)
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(12 * MiB + 5))
    translator = _PayloadHashes()
    with FaultProxy(moto_server.url, translator=translator) as proxy:
        config = {**s3_case.config, "endpoint_url": proxy.url, "multipart_threshold": "6MiB",
                  "multipart_chunksize": "5MiB"}
        if signing is not None:
            config["config"] = {"s3": {"payload_signing_enabled": signing}}
        manager = S3BlobManager(config)
        uris = [manager.upload(big), manager.upload(_file(tmp_path / "small.bin", 3000)),
                manager.upload(tmp_path / "tree")]
        assert Path(manager.download(uris[0], tmp_path / "out")).read_bytes() == big.read_bytes()
    sent = {(request.split("?")[0].rsplit("/", 1)[-1], "partNumber=" in request)
            for request, _, _ in translator.bodies if request.startswith("PUT")}
    assert {("big.bin", True), ("small.bin", False)} <= sent, translator.bodies
    for request, payload, checksums in translator.bodies:
        if signing:
            assert payload not in ("", "UNSIGNED-PAYLOAD"), request  # and the store checked it
        else:
            assert payload == "UNSIGNED-PAYLOAD", request
            assert checksums, f"{request} went unsigned and without a checksum"
        if request.startswith("PUT") and request.split("?")[0].endswith(".bin"):  # file bytes
            assert {"content-md5", "x-amz-checksum-crc32"} <= checksums, request


class _UserAgents:
    """Notes the User-Agent of every request."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def on_request(self, req: Any, upstream: Any) -> None:
        self.seen.append(req.headers.get("user-agent", ""))

    def on_response(self, req: Any, resp: Any, upstream: Any) -> None:
        return None


@pytest.mark.parametrize("given", [None, "their-tool/2.0"], ids=["default", "configured"])
def test_requests_name_fsblob_in_their_user_agent_unless_config_names_another(
        moto_server: MotoServer, s3_case: Case, given: str | None, tmp_path: Path) -> None:
    """botocore rebuilds its default User-Agent from a dozen sanitized parts twice per
    request; fsblob's is fixed, names fsblob and the libraries, and a configured
    ``user_agent`` (and ``user_agent_extra``) is the user's to set."""
    translator = _UserAgents()
    with FaultProxy(moto_server.url, translator=translator) as proxy:
        config = {**s3_case.config, "endpoint_url": proxy.url}
        if given:
            config["config"] = {"user_agent": given, "user_agent_extra": "team/ml"}
        manager = S3BlobManager(config)
        uri = manager.upload(_file(tmp_path / "a.bin", 3000))
        manager.download(uri, tmp_path / "out")
    assert len(translator.seen) >= 3  # HeadBucket, PutObject, GetObject
    import botocore

    for agent in translator.seen:
        if given:
            assert agent.startswith("their-tool/2.0 ") and agent.endswith(" team/ml"), agent
        else:
            assert agent.startswith("fsblob/") and f"Botocore/{botocore.__version__}" in agent
