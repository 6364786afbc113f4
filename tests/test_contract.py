"""The transfer contract, on every backend (see ``conftest.case``)."""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

import fsspec
import pandas as pd
import pytest

from fsblob import BlobNotFoundError
from fsblob.local_copy import PART_SUFFIX
from tests.conftest import Case, Meter


def _file(path: Path, size: int = 1000, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(hashlib.sha256(str(seed).encode()).digest() * (size // 32) + b"x" * (size % 32))
    return path


def _snapshot(path: Path) -> dict[str, tuple[bytes, int]]:
    """Every file below ``path`` (or ``path`` itself): its bytes and mtime."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return {str(p.relative_to(path.parent)): (p.read_bytes(), p.stat().st_mtime_ns) for p in files}


def _transfers(case: Case, meter: Meter) -> int:
    reads = case.reads()
    return meter.transfers if reads < 0 else reads


def _leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.rglob("*") if PART_SUFFIX in p.name]


def test_upload_stores_basename_under_root_and_fsspec_reads_it(case: Case, tmp_path: Path) -> None:
    src = _file(tmp_path / "src" / "model.bin", 300_000)
    before = _snapshot(src)
    manager = case.make()
    uri = manager.upload(src)
    if case.name == "local":
        assert uri == os.path.join(manager.root_url, "model.bin") and os.path.isabs(uri)
    else:
        assert uri.startswith(manager.root_url + "/") and "://" in uri
    assert uri.endswith("/model.bin")
    with fsspec.open(uri, "rb", **manager.storage_options) as f:
        assert f.read() == src.read_bytes()
    assert _snapshot(src) == before, "upload changed the caller's file"


def test_upload_replaces_an_existing_artifact(case: Case, tmp_path: Path) -> None:
    manager = case.make()
    src = _file(tmp_path / "a.bin", 5000, seed=1)
    uri = manager.upload(src)
    _file(src, 3000, seed=2)
    assert manager.upload(src) == uri
    with fsspec.open(uri, "rb", **manager.storage_options) as f:
        assert f.read() == src.read_bytes()
    assert [u.rsplit("/", 1)[1] for u in manager.ls()] == ["a.bin"], "a temporary was left behind"


def test_download_returns_local_dir_basename_with_the_same_bytes(case: Case, tmp_path: Path) -> None:
    manager = case.make()
    src = _file(tmp_path / "data.csv", 70_000)
    uri = manager.upload(src)
    out = tmp_path / "out"
    path = manager.download(uri, out)
    assert path == str(out / "data.csv")
    assert Path(path).read_bytes() == src.read_bytes()
    again = manager.download("data.csv", tmp_path / "out2")  # relative to the root
    assert Path(again).read_bytes() == src.read_bytes()
    assert _leftovers(tmp_path) == []


def test_download_without_local_dir(case: Case, tmp_path: Path) -> None:
    manager = case.make()
    src = _file(tmp_path / "w.bin", 2000)
    uri = manager.upload(src)
    path = manager.download(uri)
    if case.name == "local":
        assert path == uri, "Local returns the stored path itself, as AIFlow's did"
    else:
        assert path.startswith(os.environ["FSBLOB_CACHE_DIR"]) and path.endswith("/w.bin")
    assert Path(path).read_bytes() == src.read_bytes()


def test_directory_round_trip_and_reupload_drops_removed_files(case: Case, tmp_path: Path) -> None:
    manager = case.make()
    tree = tmp_path / "project"
    _file(tree / "main.py", 100, seed=1)
    _file(tree / "pkg" / "util.py", 200, seed=2)
    _file(tree / "pkg" / "deep" / "data.bin", 40_000, seed=3)
    before = _snapshot(tree)
    uri = manager.upload(tree)
    assert "/.fsblob/trees/project/" in uri  # the version stored
    assert _snapshot(tree) == before, "upload changed the caller's directory"
    got = Path(manager.download(uri, tmp_path / "out"))
    assert got == tmp_path / "out" / "project"
    assert {k: v[0] for k, v in _snapshot(got).items()} == {k: v[0] for k, v in before.items()}

    (tree / "pkg" / "util.py").unlink()
    _file(tree / "main.py", 150, seed=4)
    manager.upload(tree)
    got = Path(manager.download("project", tmp_path / "out"))  # the name: its latest version
    assert sorted(p.relative_to(got).as_posix() for p in got.rglob("*") if p.is_file()) == [
        "main.py", "pkg/deep/data.bin"]
    assert (got / "main.py").read_bytes() == (tree / "main.py").read_bytes()
    old = Path(manager.download(uri, tmp_path / "old"))  # the first version, as it was
    assert {k: v[0] for k, v in _snapshot(old).items()} == {k: v[0] for k, v in before.items()}
    assert _leftovers(tmp_path) == []


def test_missing_artifact_raises_not_found_and_leaves_nothing(case: Case, tmp_path: Path) -> None:
    manager = case.make()
    _file(tmp_path / "exists.bin")
    manager.upload(tmp_path / "exists.bin")
    out = tmp_path / "out"
    with pytest.raises(BlobNotFoundError) as info:
        manager.download("nope.bin", out)
    assert isinstance(info.value, FileNotFoundError)
    assert "nope.bin" in str(info.value)
    assert not (out / "nope.bin").exists() and _leftovers(out) == []


def test_upload_of_a_missing_file_is_not_found(case: Case, tmp_path: Path) -> None:
    with pytest.raises(BlobNotFoundError, match="ghost.bin"):
        case.make().upload(tmp_path / "ghost.bin")


def test_intact_copy_is_reused_changed_copies_are_fetched_again(case: Case, tmp_path: Path) -> None:
    manager = case.make()
    src = _file(tmp_path / "m.bin", 50_000, seed=1)
    uri = manager.upload(src)
    meter = Meter()
    path = Path(manager.download(uri, tmp_path / "out", callback=meter))
    first = _transfers(case, meter)
    assert first >= 1
    inode = path.stat().st_ino

    manager.download(uri, tmp_path / "out", callback=meter)
    assert _transfers(case, meter) == first, "an intact copy was fetched again"
    assert path.stat().st_ino == inode

    with open(path, "r+b") as f:  # truncated, as by a crash of something else
        f.truncate(1000)
    manager.download(uri, tmp_path / "out", callback=meter)
    assert path.read_bytes() == src.read_bytes()
    second = _transfers(case, meter)
    assert second == 2 * first

    _file(src, 50_000, seed=2)  # same size, different bytes
    manager.upload(src)
    manager.download(uri, tmp_path / "out", callback=meter)
    assert path.read_bytes() == src.read_bytes(), "a stale copy was reused"
    assert _transfers(case, meter) == 3 * first


def test_threads_downloading_one_uri_fetch_it_once(case: Case, tmp_path: Path) -> None:
    manager = case.make()
    src = _file(tmp_path / "shared.bin", 2_000_000)
    uri = manager.upload(src)
    meter = Meter()
    manager.download(uri, tmp_path / "warm", callback=meter)
    one = _transfers(case, meter)

    results: list[str] = []
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def worker() -> None:
        try:
            start.wait()
            results.append(manager.download(uri, tmp_path / "out", callback=meter))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert results == [str(tmp_path / "out" / "shared.bin")] * 8
    assert Path(results[0]).read_bytes() == src.read_bytes()
    assert _transfers(case, meter) == 2 * one, "more than one thread fetched the file"


def test_exists_ls_and_delete(case: Case, tmp_path: Path) -> None:
    manager = case.make()
    assert manager.ls() == []
    a = manager.upload(_file(tmp_path / "a.bin"))
    _file(tmp_path / "tree" / "b.bin")
    t = manager.upload(tmp_path / "tree")
    name = f"{manager.root_url}/tree"
    assert manager.ls() == sorted([a, name])
    assert manager.exists(a) and manager.exists("tree") and manager.exists(t)
    assert not manager.exists("c.bin")
    manager.delete(name)
    assert manager.ls() == [a] and not manager.exists(name)
    with pytest.raises(BlobNotFoundError):
        manager.delete(name)


def test_pandas_reads_returned_uris(case: Case, tmp_path: Path) -> None:
    manager = case.make()
    frame = pd.DataFrame({"id": range(200), "name": [f"row{i}" for i in range(200)]})
    frame.to_csv(tmp_path / "table.csv", index=False)
    frame.to_parquet(tmp_path / "table.parquet")
    csv_uri = manager.upload(tmp_path / "table.csv")
    parquet_uri = manager.upload(tmp_path / "table.parquet")
    options = manager.storage_options
    pd.testing.assert_frame_equal(pd.read_csv(csv_uri, storage_options=options), frame)
    pd.testing.assert_frame_equal(pd.read_parquet(parquet_uri, storage_options=options), frame)


def test_a_name_can_switch_between_file_and_tree_both_ways(case: Case, tmp_path: Path) -> None:
    manager = case.make()
    _file(tmp_path / "tree" / "thing" / "inner.bin", seed=1)
    _file(tmp_path / "file" / "thing", 10, seed=2)
    uri = manager.upload(tmp_path / "file" / "thing")
    assert "/.fsblob/trees/thing/" in manager.upload(tmp_path / "tree" / "thing")
    got = Path(manager.download(uri, tmp_path / "out1"))
    assert got.is_dir() and sorted(p.name for p in got.iterdir()) == ["inner.bin"]
    assert manager.ls() == [uri], "the name is listed once"

    assert manager.upload(tmp_path / "file" / "thing") == uri
    got = Path(manager.download(uri, tmp_path / "out2"))
    assert got.is_file() and got.read_bytes() == (tmp_path / "file" / "thing").read_bytes()
    assert manager.ls() == [uri]
    with fsspec.open(uri, "rb", **manager.storage_options) as f:
        assert f.read() == got.read_bytes()
    assert _leftovers(tmp_path) == []
