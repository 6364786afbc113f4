"""The Python surface: project.yaml reading, key checking, engine keys, missing
extras, pickling into worker processes, signed URLs, and the shipped package."""

from __future__ import annotations

import base64
import hashlib
import hmac
import multiprocessing
import pickle
import shutil
import subprocess
import sys
import textwrap
import time
import urllib.request
import zipfile
from collections.abc import Mapping
from concurrent.futures import ProcessPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

import fsblob
from fsblob import (
    BlobConfigError,
    BlobManagerFactory,
    BlobNotFoundError,
    FsspecBlobManager,
    InvalidPathError,
    LocalBlobManager,
    PathOutsideRootError,
    S3BlobManager,
    Store,
    load_project_config,
)
from tests.conftest import Case
from tests.test_contract import _file

ROOT = Path(__file__).resolve().parents[1]


def _build(project: Path) -> FsspecBlobManager:
    blob = load_project_config(project)
    manager = BlobManagerFactory.create_blob_manager(blob.blob_manager_class(), blob.blob_manager_config())
    assert isinstance(manager, FsspecBlobManager)
    return manager


# -- project.yaml -------------------------------------------------------------------


def test_yaml_date_for_a_string_key_reads_back_as_its_text(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(textwrap.dedent("""
        blob:
          blob_manager_class: fsblob.S3BlobManager
          blob_manager_config:
            bucket_name: b
            api_version: 2006-03-01
    """))
    assert load_project_config(tmp_path / "p.yaml").blob_manager_config()["api_version"] == "2006-03-01"
    manager = _build(tmp_path / "p.yaml")
    assert manager.storage_options["client_kwargs"]["api_version"] == "2006-03-01"


@pytest.mark.parametrize("text, fragment", [
    ("blob:\n  blob_manager_class: fsblob.LocalBlobManager\n  blob_manager_confg: {root_directory: x}\n",
     "unknown key 'blob_manager_confg' in the 'blob' section; did you mean 'blob_manager_config'?"),
    ("blob:\n  blob_manager_clas: fsblob.LocalBlobManager\n",
     "did you mean 'blob_manager_class'?"),
    ("blobs:\n  blob_manager_class: fsblob.LocalBlobManager\n",
     "has no 'blob' section (is 'blobs' a misspelling of 'blob'?)"),
    ("blob:\n  blob_manager_class: [\n", "line 3, column 1"),
])
def test_project_file_mistakes_are_named_with_the_fix(tmp_path: Path, text: str, fragment: str) -> None:
    (tmp_path / "p.yaml").write_text(text)
    with pytest.raises(BlobConfigError) as info:
        load_project_config(tmp_path / "p.yaml")
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)


def test_relative_local_root_follows_the_file_in_yaml_and_the_cwd_in_python(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project = tmp_path / "project"
    project.mkdir()
    for name, manager, extra in [("local.yaml", "fsblob.LocalBlobManager", ""),
                                 ("generic.yaml", "fsblob.FsspecBlobManager", "")]:
        (project / name).write_text(f"blob:\n  blob_manager_class: {manager}\n"
                                    f"  blob_manager_config:\n    root_directory: store{extra}\n")
    (project / "s3.yaml").write_text("blob:\n  blob_manager_class: fsblob.S3BlobManager\n"
                                     "  blob_manager_config: {bucket_name: b, root_directory: store}\n")
    monkeypatch.chdir(tmp_path)
    assert _build(project / "local.yaml").root_url == str(project / "store")
    assert _build(project / "generic.yaml").root_url == f"file://{project / 'store'}"
    assert _build(project / "s3.yaml").root_url == "s3://b/store", "a key prefix is not a local path"
    assert LocalBlobManager({"root_directory": "store"}).root_url == str(tmp_path / "store")


# -- keys -----------------------------------------------------------------------------


@pytest.mark.parametrize("manager_class, config", [
    (LocalBlobManager, {"root_directory": "/tmp/x"}),
    (S3BlobManager, {"bucket_name": "b"}),
    (FsspecBlobManager, {"root_directory": "memory://x"}),
])
def test_misspelled_engine_key_is_suggested_and_engine_keys_are_listed(
        manager_class: type, config: dict[str, Any]) -> None:
    with pytest.raises(BlobConfigError) as info:
        manager_class({**config, "retry_dedline": 5})
    message = str(info.value)
    assert "unknown blob_manager_config key 'retry_dedline'; did you mean 'retry_deadline'?" in message
    for key in ("retries", "retry_deadline", "cache_directory"):
        assert key in message.split("takes are:")[1]


def test_check_keys_is_public_for_backend_authors(tmp_path: Path) -> None:
    assert "check_keys" in fsblob.__all__

    def team_store(config: Mapping[str, Any]) -> Store:
        fsblob.check_keys(config, ("team", "root_directory"), "team")
        return Store(protocol="file", root=str(tmp_path / config["team"]))

    fsblob.register_backend("team-checked", team_store)
    manager = FsspecBlobManager({"backend": "team-checked", "team": "vision", "retries": 1})
    assert manager.root_url.endswith("/vision")
    with pytest.raises(BlobConfigError, match="unknown blob_manager_config key 'taem'; did you mean 'team'"):
        FsspecBlobManager({"backend": "team-checked", "taem": "vision"})


def test_custom_backend_with_an_unknown_protocol_fails_when_built() -> None:
    fsblob.register_backend("no-such-protocol", lambda config: Store(protocol="nosuchfs", root="/x"))
    with pytest.raises(BlobConfigError, match="'nosuchfs' is not a known fsspec protocol"):
        FsspecBlobManager({"backend": "no-such-protocol"})


@pytest.mark.parametrize("value, seconds", [(2.5, 2.5), ("2.5", 2.5), (3, 3.0), ("0", 0.0)])
def test_retry_deadline_takes_seconds_as_a_number(value: Any, seconds: float) -> None:
    manager = FsspecBlobManager({"root_directory": "memory://x", "retry_deadline": value})
    assert manager._retry.deadline == seconds


@pytest.mark.parametrize("key, value", [("retry_deadline", "soon"), ("retry_deadline", -1),
                                        ("retry_deadline", True), ("retry_deadline", float("nan")),
                                        ("retries", 2.5)])
def test_bad_retry_settings_are_refused(key: str, value: Any) -> None:
    with pytest.raises(BlobConfigError, match=f"'{key}'"):
        FsspecBlobManager({"root_directory": "memory://x", key: value})


@pytest.mark.parametrize("module, config, extra", [
    ("s3fs", "{'bucket_name': 'b'}", "s3"),
    ("ossfs", "{'bucket': 'bkt', 'endpoint': 'http://127.0.0.1:1'}", "oss"),
    # a package the backend's own modules import (a fresh venv without the extra has none)
    ("requests", "{'bucket': 'bkt', 'endpoint': 'http://127.0.0.1:1'}", "oss"),
    ("requests", "{'hdfs_url': 'http://127.0.0.1:1', 'hdfs_user': 'u'}", "hdfs"),
])
def test_missing_extra_is_reported_when_the_manager_is_built(module: str, config: str, extra: str) -> None:
    manager = {"s3": "S3BlobManager", "oss": "OssBlobManager", "hdfs": "HDFSBlobManager"}[extra]
    code = textwrap.dedent(f"""
        import sys
        sys.modules[{module!r}] = None  # as if the package were not installed
        import fsblob
        try:
            fsblob.{manager}({config})
        except fsblob.BlobConfigError as exc:
            print(exc)
        else:
            print("built")
    """)
    out = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=60,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    assert f"pip install 'fsblob[{extra}]'" in out.stdout, out.stdout


def test_memory_uris_in_either_form_name_the_same_artifact(tmp_path: Path) -> None:
    manager = FsspecBlobManager({"root_directory": "memory://team-bucket/models"})
    uri = manager.upload(_file(tmp_path / "m.bin", 300))
    assert uri == "memory:///team-bucket/models/m.bin"
    for form in (uri, "memory://team-bucket/models/m.bin", "m.bin"):
        assert Path(manager.download(form, tmp_path / "out")).read_bytes() == (tmp_path / "m.bin").read_bytes()
    with pytest.raises(PathOutsideRootError):
        manager.download("memory://other-bucket/m.bin", tmp_path / "out")


def test_store_is_never_uploaded_into_itself(tmp_path: Path) -> None:
    manager = LocalBlobManager({"root_directory": str(tmp_path / "work" / "deep" / "store")})
    manager.upload(_file(tmp_path / "work" / "a.bin"))
    for folder in (tmp_path / "work", tmp_path / "work" / "deep", tmp_path / "work" / "deep" / "store"):
        with pytest.raises(InvalidPathError, match="contains the store's root"):
            manager.upload(folder)
    store = tmp_path / "work" / "deep" / "store"
    assert sorted(p.name for p in store.iterdir()) == [".fsblob", "a.bin"]
    assert not list((store / ".fsblob").rglob("*.fsblob-part")), "a temporary was left behind"
    (tmp_path / "work" / "sibling").mkdir()
    _file(tmp_path / "work" / "sibling" / "b.bin")
    assert "/store/.fsblob/trees/sibling/" in manager.upload(tmp_path / "work" / "sibling")


# -- pickling -------------------------------------------------------------------------


def _fetch_in_worker(manager: FsspecBlobManager, uri: str, folder: str) -> str:
    """Run in a worker process: download with an unpickled manager, return the digest."""
    return hashlib.sha256(Path(manager.download(uri, folder)).read_bytes()).hexdigest()


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_managers_pickle_into_a_process_pool(backend: str, request: pytest.FixtureRequest,
                                             tmp_path: Path) -> None:
    case: Case = request.getfixturevalue(f"{backend}_case")
    manager = case.make(retries=1, retry_deadline=2.5)
    src = _file(tmp_path / "weights.bin", 50_000)
    uri = manager.upload(src)
    manager.ls()  # the filesystem and its locks now exist
    clone = pickle.loads(pickle.dumps(manager))
    assert clone.root_url == manager.root_url and clone._retry == manager._retry
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        digests = list(pool.map(_fetch_in_worker, [manager] * 2, [uri] * 2,
                                [str(tmp_path / f"w{i}") for i in range(2)]))
    assert digests == [hashlib.sha256(src.read_bytes()).hexdigest()] * 2


# -- signed URLs ------------------------------------------------------------------------


def test_signed_url_fetches_without_credentials(s3_case: Case, tmp_path: Path) -> None:
    manager = s3_case.make()
    src = _file(tmp_path / "report.bin", 40_000)
    uri = manager.upload(src)
    before = time.time()
    url = manager.sign(uri, expires=90)
    with urllib.request.urlopen(url, timeout=10) as response:  # a plain client, no credentials
        assert response.read() == src.read_bytes()

    # The URL carries this manager's signature, valid for the time asked (SigV2 query auth).
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    assert query["AWSAccessKeyId"] == s3_case.config["access_key_id"]
    assert 85 <= int(query["Expires"]) - before <= 95
    to_sign = f"GET\n\n\n{query['Expires']}\n{unquote(parts.path)}"
    digest = hmac.new(s3_case.config["secret_access_key"].encode(), to_sign.encode(), hashlib.sha1).digest()
    assert query["Signature"] == base64.b64encode(digest).decode()

    v4 = s3_case.make(config={"signature_version": "s3v4"}).sign(uri, expires=timedelta(minutes=2))
    assert parse_qs(urlsplit(v4).query)["X-Amz-Expires"] == ["120"]
    # a plain client sends no x-amz-* header: the URL must not require one
    assert parse_qs(urlsplit(v4).query)["X-Amz-SignedHeaders"] == ["host"]
    with urllib.request.urlopen(v4, timeout=10) as response:
        assert response.read() == src.read_bytes()


def test_sign_refuses_what_it_cannot_sign(s3_case: Case, oss_case: Case, tmp_path: Path) -> None:
    manager = s3_case.make()
    _file(tmp_path / "tree" / "a.bin")
    version = manager.upload(tmp_path / "tree")
    with pytest.raises(BlobNotFoundError):
        manager.sign("missing.bin")
    with pytest.raises(InvalidPathError, match="is a tree"):
        manager.sign("tree")
    with pytest.raises(InvalidPathError, match="is a tree"):
        manager.sign(version)
    with pytest.raises(PathOutsideRootError):
        manager.sign("s3://other-bucket/x")
    with pytest.raises(InvalidPathError, match="expires"):
        manager.sign(f"{version}/a.bin", expires=0)
    for other in (LocalBlobManager({"root_directory": str(tmp_path / "store")}),
                  FsspecBlobManager({"root_directory": "memory://signing"}), oss_case.make()):
        uri = other.upload(tmp_path / "tree" / "a.bin")
        with pytest.raises(BlobConfigError, match="makes no signed URLs"):
            other.sign(uri)


# -- the package -------------------------------------------------------------------------


def test_wheel_ships_py_typed_and_the_examples_extra_has_pyarrow(tmp_path: Path) -> None:
    source = tmp_path / "src"  # a copy: the build writes next to its sources
    shutil.copytree(ROOT / "fsblob", source / "fsblob", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                          "-q", "-w", str(tmp_path), str(source)],
                         check=False, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr
    (wheel,) = tmp_path.glob("fsblob-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        metadata = archive.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert "fsblob/py.typed" in names and "fsblob/__main__.py" in names
    assert "Requires-Dist: pyarrow>=14; extra == \"examples\"" in metadata
