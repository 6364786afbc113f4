"""project.yaml, the factory, backend key mappings, the registry, and config errors."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import fsspec
import pytest

import fsblob
from fsblob import (
    BlobConfig,
    BlobConfigError,
    BlobManagerFactory,
    FsspecBlobManager,
    Store,
    load_project_config,
    register_backend,
)


def test_import_loads_no_cloud_client() -> None:
    code = "import sys, fsblob; print(sorted(m for m in ('s3fs','ossfs','oss2','pyarrow','botocore') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_legacy_project_yaml_works_with_only_the_class_path_changed(tmp_path: Path) -> None:
    legacy = textwrap.dedent(f"""
        project_name: demo
        blob:
          blob_manager_class: ai_flow_plugins.blob_manager_plugins.local_blob_manager.LocalBlobManager
          blob_manager_config:
            root_directory: {tmp_path / 'store'}
    """)
    (tmp_path / "project.yaml").write_text(legacy.replace(
        "ai_flow_plugins.blob_manager_plugins.local_blob_manager.LocalBlobManager",
        "fsblob.LocalBlobManager"))
    blob = load_project_config(tmp_path / "project.yaml")
    manager = BlobManagerFactory.create_blob_manager(blob.blob_manager_class(), blob.blob_manager_config())
    assert isinstance(manager, fsblob.LocalBlobManager)
    (tmp_path / "a.txt").write_text("artifact")
    assert manager.upload(tmp_path / "a.txt") == str(tmp_path / "store" / "a.txt")


@pytest.mark.parametrize("name", ["LocalBlobManager", "S3BlobManager", "OssBlobManager",
                                  "HDFSBlobManager", "FsspecBlobManager"])
def test_every_manager_is_importable_by_class_path(name: str) -> None:
    configs = {
        "LocalBlobManager": {"root_directory": "/tmp/x"},
        "S3BlobManager": {"bucket_name": "b"},
        "OssBlobManager": {"endpoint": "http://127.0.0.1:1", "bucket": "bkt"},
        "HDFSBlobManager": {"hdfs_url": "http://127.0.0.1:1", "root_directory": "/a"},
        "FsspecBlobManager": {"root_directory": "memory://x"},
    }
    manager = BlobManagerFactory.create_blob_manager(f"fsblob.{name}", configs[name])
    assert type(manager).__name__ == name


def test_blob_config_accessors_and_errors() -> None:
    config = BlobConfig({"blob_manager_class": "fsblob.LocalBlobManager",
                         "blob_manager_config": {"root_directory": "/r"}})
    assert config.blob_manager_class() == "fsblob.LocalBlobManager"
    assert config.blob_manager_config() == {"root_directory": "/r"}
    config.set_blob_manager_config({"root_directory": "/s"})
    assert config.blob_manager_config() == {"root_directory": "/s"}
    with pytest.raises(BlobConfigError, match="blob_manager_class"):
        BlobConfig({}).blob_manager_class()
    with pytest.raises(BlobConfigError, match="mapping"):
        BlobConfig(["not", "a", "mapping"])  # type: ignore[arg-type]
    with pytest.raises(BlobConfigError, match="nowhere.Manager"):
        BlobManagerFactory.create_blob_manager("nowhere.Manager", {})
    with pytest.raises(BlobConfigError, match="not a class path"):
        BlobManagerFactory.create_blob_manager("LocalBlobManager", {})


def test_env_references_are_expanded_and_undefined_ones_named(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    project = tmp_path / "project.yaml"
    project.write_text(textwrap.dedent("""
        blob:
          blob_manager_class: fsblob.S3BlobManager
          blob_manager_config:
            bucket_name: b
            access_key_id: ${FSBLOB_T_KEY}
            secret_access_key: prefix-${FSBLOB_T_SECRET}
    """))
    monkeypatch.setenv("FSBLOB_T_KEY", "id")
    monkeypatch.setenv("FSBLOB_T_SECRET", "s3cr3t")
    config = load_project_config(project).blob_manager_config()
    assert config["access_key_id"] == "id" and config["secret_access_key"] == "prefix-s3cr3t"
    monkeypatch.delenv("FSBLOB_T_SECRET")
    with pytest.raises(BlobConfigError, match=r"FSBLOB_T_SECRET.*not set") as info:
        load_project_config(project)
    assert "secret_access_key" in str(info.value)


@pytest.mark.parametrize("text, message", [
    ("project_name: x\n", "no 'blob' section"),
    ("blob: [unclosed\n", "not valid YAML"),
])
def test_bad_project_files(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "p.yaml").write_text(text)
    with pytest.raises(BlobConfigError, match=message):
        load_project_config(tmp_path / "p.yaml")
    with pytest.raises(BlobConfigError, match="cannot read"):
        load_project_config(tmp_path / "missing.yaml")


@pytest.mark.parametrize("manager, config, fragment", [
    (fsblob.LocalBlobManager, {}, "'root_directory' is missing"),
    (fsblob.LocalBlobManager, {"root_dir": "/x"}, "unknown blob_manager_config key 'root_dir'; did you mean 'root_directory'"),
    (fsblob.S3BlobManager, {}, "'bucket_name' is missing"),
    (fsblob.S3BlobManager, {"bucket_name": "b", "service_name": "ec2"}, "service_name 'ec2'"),
    (fsblob.S3BlobManager, {"bucket_name": "s3://b/p"}, "bucket_name 's3://b/p' is not a bucket name"),
    (fsblob.S3BlobManager, {"bucket_name": "b", "access_key_id": "k"}, "'secret_access_key' is missing"),
    (fsblob.S3BlobManager, {"bucket_name": "b", "use_ssl": "maybe"}, "'use_ssl' must be true or false"),
    (fsblob.S3BlobManager, {"bucket_name": "b", "config": "x"}, "'config' must be a mapping"),
    (fsblob.OssBlobManager, {"bucket": "b"}, "'endpoint' is missing"),
    (fsblob.OssBlobManager, {"endpoint": "http://e"}, "'bucket' is missing"),
    (fsblob.HDFSBlobManager, {"root_directory": "/a"}, "'hdfs_url' is missing"),
    (fsblob.HDFSBlobManager, {"hdfs_url": "ftp://h:1", "root_directory": "/a"}, "hdfs_url 'ftp://h:1'"),
    (fsblob.HDFSBlobManager, {"hdfs_url": "http://h:1/data", "root_directory": "/a"}, "has a path"),
    (fsblob.FsspecBlobManager, {"root_directory": "nosuchproto://x"}, "'nosuchproto'"),
    (fsblob.FsspecBlobManager, {"root_directory": "memory://x", "protocol": "s3"}, "contradicts"),
    (fsblob.FsspecBlobManager, {"backend": "nosuch"}, "no fsblob backend named 'nosuch'"),
    (fsblob.FsspecBlobManager, {"root_directory": "memory://x", "retries": -1}, "'retries'"),
])
def test_config_errors_name_the_key_and_the_backend(manager: type, config: dict, fragment: str) -> None:
    with pytest.raises(BlobConfigError) as info:
        manager(config)
    assert fragment in str(info.value)
    assert isinstance(info.value, ValueError)


def test_s3_keys_map_to_s3fs_arguments() -> None:
    manager = fsblob.S3BlobManager({
        "service_name": "s3", "region_name": "eu-west-1", "api_version": "2006-03-01",
        "use_ssl": "false", "verify": "/etc/ssl/ca.pem", "endpoint_url": "http://127.0.0.1:9",
        "access_key_id": "AK", "secret_access_key": "SK", "session_token": "ST",
        "config": {"connect_timeout": 5}, "bucket_name": "bkt", "root_directory": "/a/b/",
    })
    assert manager.root_url == "s3://bkt/a/b"
    assert manager.storage_options == {
        "key": "AK", "secret": "SK", "token": "ST", "endpoint_url": "http://127.0.0.1:9",
        "use_ssl": False, "client_kwargs": {"region_name": "eu-west-1", "api_version": "2006-03-01",
                                            "verify": "/etc/ssl/ca.pem"},
        "config_kwargs": {"connect_timeout": 5},
    }
    assert fsblob.S3BlobManager({"bucket_name": "b", "verify": "0"}).storage_options == {
        "client_kwargs": {"verify": False}}


def test_hdfs_url_picks_webhdfs_or_libhdfs() -> None:
    web = fsblob.HDFSBlobManager({"hdfs_url": "https://nn:9871", "hdfs_user": "al", "root_directory": "art"})
    assert web.root_url == "webhdfs://nn:9871/user/al/art"
    assert web.storage_options == {"host": "nn", "port": 9871, "user": "al", "use_https": True}
    native = fsblob.HDFSBlobManager({"hdfs_url": "hdfs://nn:8020", "root_directory": "/art"})
    assert native.root_url == "hdfs://nn:8020/art"
    assert native.storage_options == {"host": "nn", "port": 8020, "user": "default"}


def test_libhdfs_without_a_jvm_is_a_config_error_that_says_what_to_install(tmp_path: Path) -> None:
    manager = fsblob.HDFSBlobManager({"hdfs_url": "hdfs://127.0.0.1:1", "root_directory": "/a"})
    (tmp_path / "f").write_text("x")
    for _ in range(2):  # pyarrow's second failure says only "Prior attempt ... failed"
        with pytest.raises(BlobConfigError) as info:
            manager.upload(tmp_path / "f")
        for needed in ("JAVA_HOME", "HADOOP_HOME", "ARROW_LIBHDFS_DIR", "hadoop classpath --glob",
                       "WebHDFS"):
            assert needed in str(info.value)


def test_any_fsspec_protocol_works_without_registration(tmp_path: Path) -> None:
    manager = FsspecBlobManager({"root_directory": "/proto-test", "protocol": "memory"})
    (tmp_path / "a.txt").write_text("hello")
    uri = manager.upload(tmp_path / "a.txt")
    assert uri == "memory:///proto-test/a.txt"
    assert fsspec.open(uri, "rt").open().read() == "hello"


def _team_backend(config):  # a third party's backend: its own keys -> a Store
    return Store(protocol="memory", root=f"/team/{config['team']}")


def test_register_backend_adds_a_named_backend(tmp_path: Path) -> None:
    register_backend("team-store", _team_backend)
    manager = FsspecBlobManager({"backend": "team-store", "team": "vision", "retries": 1})
    (tmp_path / "m.bin").write_bytes(b"w")
    assert manager.upload(tmp_path / "m.bin") == "memory:///team/vision/m.bin"


def test_entry_point_backend_is_found_by_name(tmp_path: Path) -> None:
    dist = tmp_path / "site" / "teamstore-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: teamstore\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[fsblob.backends]\nteamep = tests.test_config:_team_backend\n")
    code = textwrap.dedent(f"""
        import sys; sys.path[:0] = [{str(tmp_path / 'site')!r}, {str(Path(__file__).parents[1])!r}]
        from fsblob import FsspecBlobManager
        print(FsspecBlobManager({{"backend": "teamep", "team": "nlp"}}).root_url)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "memory:///team/nlp", out.stderr


def test_repr_shows_where_not_secrets() -> None:
    manager = fsblob.S3BlobManager({"bucket_name": "b", "access_key_id": "AKIDVISIBLE1",
                                    "secret_access_key": "VERYSECRET1", "session_token": "TOKEN1"})
    blob = BlobConfig({"blob_manager_class": "fsblob.S3BlobManager",
                       "blob_manager_config": {"secret_access_key": "VERYSECRET1"}})
    for text in (repr(manager), str(manager), repr(blob)):
        assert "VERYSECRET1" not in text and "TOKEN1" not in text and "AKIDVISIBLE1" not in text
    assert "s3://b" in repr(manager)
