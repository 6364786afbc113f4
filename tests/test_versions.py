"""Every artifact is one committed version: no mixed trees, no lost versions, no merged uploads.

Deterministic races pause an upload at a chosen step through its progress
callback (a public argument: the callback blocks, or raises, after the first
bytes of an object are sent), then act from another process while it waits
(another process, because a blocked callback of an asynchronous client blocks
fsspec's one event loop for the whole process). Natural races run writers and
readers in separate processes for a few seconds and count.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import threading
from pathlib import Path
from typing import Any

import fsspec
import pytest
from fsspec.callbacks import Callback

from fsblob import BlobError, InvalidPathError, PathOutsideRootError
from tests.conftest import Case, Meter
from tests.test_contract import _leftovers
from tests.workers import churn, download_files, tree_tags, upload

SHARED = ["local", "s3", "oss", "webhdfs"]


@pytest.fixture(params=SHARED)
def shared(request: pytest.FixtureRequest) -> Case:
    """The backends that other processes can reach too."""
    return request.getfixturevalue(f"{request.param}_case")


def _tree(base: Path, tag: str, files: dict[str, int]) -> Path:
    """A tree ``base/model`` whose every file starts with ``<tag>:``."""
    root = base / tag / "model"
    for rel, size in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(f"{tag}:{rel}:".encode() + os.urandom(size))
    return root


V1 = {"a.txt": 100, "sub/b.txt": 200, "sub/deep/c.bin": 300_000, "only1.txt": 10}
V2 = {"a.txt": 150, "sub/b.txt": 250, "sub/deep/c.bin": 310_000, "only2.txt": 10}


def _plain(manager: Any, uri: str) -> dict[str, bytes]:
    """The plain tree at ``uri`` as other tools see it: relative path -> bytes."""
    fs = manager.fs
    base = manager._resolve(uri)
    found = fs.find(base)
    return {p[len(base) + 1:]: fs.cat_file(p) for p in found if not p.endswith("/")}


def _files(tree: Path) -> dict[str, bytes]:
    return {p.relative_to(tree).as_posix(): p.read_bytes() for p in tree.rglob("*") if p.is_file()}


class Pause(Callback):
    """Blocks (or raises) the transfer it watches at its first bytes, until released."""

    def __init__(self, fail: bool = False) -> None:
        super().__init__()
        self.reached, self.release, self.fail = threading.Event(), threading.Event(), fail

    def relative_update(self, inc: int = 1) -> None:
        if not self.reached.is_set():
            self.reached.set()
            if self.fail:
                raise ConnectionResetError("cut off half-way (injected)")
            assert self.release.wait(60)


@pytest.fixture(scope="module")
def pool() -> Any:
    with multiprocessing.get_context("spawn").Pool(2) as workers:
        yield workers


def _elsewhere(pool: Any, fn: Any, *args: Any) -> Any:
    """Run ``fn(*args)`` in another process and wait for it."""
    return pool.apply_async(fn, args).get(timeout=120)


def _class_path(manager: Any) -> str:
    return f"fsblob.{type(manager).__name__}"


def _in_thread(fn: Any) -> tuple[threading.Thread, list[Any]]:
    result: list[Any] = []

    def run() -> None:
        try:
            result.append(fn())
        except BaseException as exc:  # reported by the test
            result.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, result


# -- deterministic races -----------------------------------------------------------------


def test_reader_during_a_reupload_gets_the_previous_version_whole(
        shared: Case, tmp_path: Path, pool: Any) -> None:
    case = shared
    manager = case.make()
    v1, v2 = _tree(tmp_path, "v1", V1), _tree(tmp_path, "v2", V2)
    uri = manager.upload(v1)
    pause = Pause()
    thread, result = _in_thread(lambda: manager.upload(v2, callback=pause))
    assert pause.reached.wait(30)
    # the upload is half-way: a reader elsewhere gets the previous version, whole
    during = _elsewhere(pool, download_files, _class_path(manager), case.config, uri,
                        str(tmp_path / "during"))
    pause.release.set()
    assert during == _files(v1)
    thread.join(60)
    assert result == [uri]
    got = manager.download(uri, tmp_path / "after")
    assert _files(Path(got)) == _files(v2)
    assert _plain(manager, uri) == _files(v2), "the plain tree is not the new version"


def test_an_upload_cut_off_half_way_leaves_the_previous_version(case: Case, tmp_path: Path) -> None:
    manager = case.make(retries=0)
    v1, v2 = _tree(tmp_path, "v1", V1), _tree(tmp_path, "v2", V2)
    uri = manager.upload(v1)
    with pytest.raises(BlobError, match="cut off"):
        manager.upload(v2, callback=Pause(fail=True))
    assert _files(Path(manager.download(uri, tmp_path / "out"))) == _files(v1)
    assert _plain(manager, uri) == _files(v1), "other tools see a mix"
    assert manager.ls() == [uri]


def test_concurrent_uploaders_leave_one_complete_version(
        shared: Case, tmp_path: Path, pool: Any) -> None:
    case = shared
    manager = case.make()
    v1, v2 = _tree(tmp_path, "v1", V1), _tree(tmp_path, "v2", V2)
    manager.upload(_tree(tmp_path, "v0", {"old.txt": 5, "a.txt": 5}))
    pause = Pause()
    thread, result = _in_thread(lambda: manager.upload(v1, callback=pause))
    assert pause.reached.wait(30)
    try:  # B, elsewhere, completes while A is half-way
        uri = _elsewhere(pool, upload, _class_path(manager), case.config, str(v2))
    finally:
        pause.release.set()
    thread.join(60)
    assert result == [uri]  # A finished last: its version stands, whole
    assert _files(Path(manager.download(uri, tmp_path / "out"))) == _files(v1)
    assert _plain(manager, uri) == _files(v1), "merged or mixed plain tree"
    assert manager.ls() == [uri]
    assert _leftovers(tmp_path) == []


def test_a_failed_final_rename_keeps_the_previous_version_on_webhdfs(
        webhdfs_case: Case, tmp_path: Path) -> None:
    """HDFS renames never overwrite: fsblob must never delete first and then fail."""
    manager = webhdfs_case.make(retries=1, retry_deadline=2)
    v1, v2 = _tree(tmp_path, "v1", V1), _tree(tmp_path, "v2", V2)
    uri = manager.upload(v1)
    single = tmp_path / "one" / "f.bin"
    single.parent.mkdir()
    single.write_bytes(b"first")
    file_uri = manager.upload(single)
    webhdfs_case.server.fail_next(50, status=403, exception="AccessControlException", op="RENAME")
    with pytest.raises(BlobError):
        manager.upload(v2)
    single.write_bytes(b"second")
    with pytest.raises(BlobError):
        manager.upload(single)
    webhdfs_case.server.fail_next(0)
    assert _files(Path(manager.download(uri, tmp_path / "out"))) == _files(v1)
    assert _plain(manager, uri) == _files(v1)
    assert Path(manager.download(file_uri, tmp_path / "out")).read_bytes() == b"first"


# -- natural races -----------------------------------------------------------------------


def test_writers_and_readers_at_once_never_see_a_mix(shared: Case, tmp_path: Path) -> None:
    case = shared
    manager = case.make()
    trees = [_tree(tmp_path, tag, {**V1, f"only-{tag}.txt": 10}) for tag in ("A", "B", "C")]
    manager.upload(trees[0])
    class_path = f"fsblob.{type(manager).__name__}"
    config = {**case.config, "retries": 8, "retry_deadline": 60}
    seconds = 6.0
    jobs = [(class_path, config, [str(t) for t in trees[i::2]] + [str(t) for t in trees[:i]],
             seconds, "writer", "") for i in range(2)]
    jobs += [(class_path, config, [str(t) for t in trees], seconds, "reader", str(tmp_path / f"r{i}"))
             for i in range(2)]
    with multiprocessing.get_context("spawn").Pool(len(jobs)) as pool:
        results = pool.starmap_async(churn, jobs).get(timeout=180)
    writers, readers = results[:2], results[2:]
    uploads = sum(w["ok"] for w in writers)
    downloads = sum(r["ok"] for r in readers)
    print(f"{case.name}: {uploads} uploads, {downloads} downloads of one version, "
          f"{sum(r['mixed'] for r in readers)} mixed, {sum(r['not_found'] for r in readers)} not found")
    assert [w["errors"] for w in writers] == [[], []]
    assert [(r["mixed"], r["not_found"], r["errors"]) for r in readers] == [(0, 0, [])] * 2
    assert uploads >= 4 and downloads >= 4, "too little happened to count"
    final = Path(manager.download(manager.ls()[0], tmp_path / "final"))
    tags, files = tree_tags(str(final))
    assert len(tags) == 1
    winner = next(t for t in trees if tree_tags(str(t))[0] == tags)
    assert _files(final) == _files(winner)
    assert _plain(manager, manager.ls()[0]) == _files(winner), "the plain tree is a mix"


# -- what other tools leave in a store ------------------------------------------------------


def test_s3_directory_markers_are_ignored(s3_case: Case, tmp_path: Path) -> None:
    manager = s3_case.make()
    root = manager._resolve(manager.root_url + "/x").rsplit("/", 1)[0]
    v1 = _tree(tmp_path, "v1", V1)
    for marker in ("model/", "model/sub/", "foreign/", "foreign/empty/"):
        manager.fs.pipe_file(f"{root}/{marker}", b"")  # as the S3 console and Hadoop S3A make
    uri = manager.upload(v1)
    assert _files(Path(manager.download(uri, tmp_path / "out"))) == _files(v1)
    manager.fs.pipe_file(f"{root}/foreign/data.csv", b"a,b\n1,2\n")  # another tool's tree
    got = Path(manager.download("foreign", tmp_path / "out"))
    assert _files(got) == {"data.csv": b"a,b\n1,2\n"}
    assert [u.rsplit("/", 1)[1] for u in manager.ls()] == ["foreign", "model"]


def test_a_tree_written_by_another_tool_is_read_from_its_plain_files(case: Case, tmp_path: Path) -> None:
    manager = case.make()
    root = manager._resolve(manager.root_url + "/x").rsplit("/", 1)[0]
    fs = manager.fs
    for rel, data in {"t/a.txt": b"alpha", "t/b/c.txt": b"gamma"}.items():
        fs.makedirs(f"{root}/{rel}".rsplit("/", 1)[0], exist_ok=True)
        fs.pipe_file(f"{root}/{rel}", data)
    got = Path(manager.download("t", tmp_path / "out"))
    assert _files(got) == {"a.txt": b"alpha", "b/c.txt": b"gamma"}


# -- incremental transfers -----------------------------------------------------------------


def test_reuploads_and_redownloads_move_only_what_changed(case: Case, tmp_path: Path) -> None:
    manager = case.make()
    v1 = _tree(tmp_path, "v1", {f"f{i}.bin": 20_000 for i in range(6)})
    uri = manager.upload(v1)
    meter = Meter()
    manager.download(uri, tmp_path / "out", callback=meter)
    (v1 / "f3.bin").write_bytes(b"changed:" + os.urandom(20_000))
    sent = Meter()
    manager.upload(v1, callback=sent)
    assert sent.bytes == 20_008, "unchanged files were sent again"
    before = case.reads()
    manager.download(uri, tmp_path / "out2")  # fetched whole: 6 objects (plus reading the record)
    whole = case.reads() - before
    before = case.reads()
    meter = Meter()
    got = Path(manager.download(uri, tmp_path / "out", callback=meter))
    assert _files(got) == _files(v1)
    if before >= 0:
        assert case.reads() - before == whole - 5, "unchanged files were fetched again"
    else:
        assert meter.bytes == 1, "unchanged files were fetched again"  # one file fetched


# -- symbolic links --------------------------------------------------------------------------


def test_uploads_follow_symlinks_like_cp_L_and_refuse_loops(case: Case, tmp_path: Path) -> None:
    manager = case.make()
    outside = tmp_path / "outside"
    (outside / "lib").mkdir(parents=True)
    (outside / "lib" / "util.py").write_bytes(b"util")
    (outside / "data.bin").write_bytes(b"data")
    tree = tmp_path / "proj"
    tree.mkdir()
    (tree / "main.py").write_bytes(b"main")
    (tree / "lib").symlink_to(outside / "lib")
    (tree / "data.bin").symlink_to(outside / "data.bin")
    uri = manager.upload(tree)
    assert _files(Path(manager.download(uri, tmp_path / "out"))) == {
        "main.py": b"main", "lib/util.py": b"util", "data.bin": b"data"}
    (tree / "lib" / "loop").symlink_to(outside)  # outside/lib/loop -> outside: a cycle via lib
    with pytest.raises(InvalidPathError, match="loop"):
        manager.upload(tree)
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(InvalidPathError, match="regular file"):
        manager.upload(tmp_path / "pipe")


def test_a_symlink_planted_in_a_local_store_is_never_followed_out(local_case: Case, tmp_path: Path) -> None:
    manager = local_case.make()
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"outside the root")
    tree = _tree(tmp_path, "v1", {"a.txt": 10})
    uri = manager.upload(tree)
    os.symlink(secret, Path(uri) / "leak.txt")  # planted by someone with access to the root
    got = Path(manager.download(uri, tmp_path / "out"))  # the record names no leak.txt
    assert "leak.txt" not in _files(got)
    os.unlink(Path(manager.root_url) / ".fsblob" / "commits" / "model")  # now a foreign tree
    with pytest.raises(PathOutsideRootError):
        manager.download(uri, tmp_path / "out2")
    assert not list((tmp_path / "out2").rglob("leak.txt"))
    with fsspec.open(str(secret), "rb") as f:
        assert f.read() == b"outside the root"


# -- garbage -----------------------------------------------------------------------------------


def test_gc_removes_only_what_no_version_needs(case: Case, tmp_path: Path) -> None:
    manager = case.make()
    v1 = _tree(tmp_path, "v1", {"keep.bin": 100, "change.bin": 100})
    uri = manager.upload(v1)
    objects = manager._resolve(uri).rsplit("/", 1)[0] + "/.fsblob/objects"
    before = set(manager.fs.find(objects))
    superseded = hashlib.md5((v1 / "change.bin").read_bytes()).hexdigest()
    (v1 / "change.bin").write_bytes(b"v2:" + os.urandom(100))
    manager.upload(v1)
    assert len(set(manager.fs.find(objects)) - before) == 1
    assert manager.gc(older_than=3600) == [], "a young object was removed"
    removed = manager.gc(older_than=0)
    assert len(removed) == 1 and removed[0].endswith(f"/.fsblob/objects/{superseded[:2]}/{superseded}")
    assert len(set(manager.fs.find(objects))) == len(before), "referenced objects must stay"
    assert _files(Path(manager.download(uri, tmp_path / "out"))) == _files(v1)
    manager.delete(uri)
    assert len(manager.gc(older_than=0)) == 2
    manager.fs.invalidate_cache()
    assert not manager.fs.find(objects)


def test_gc_command_removes_a_dead_uploads_temporary(tmp_path: Path) -> None:
    import subprocess
    import sys
    import time

    store = tmp_path / "fsblob-store"
    store.mkdir()
    dead = store / ".model.bin.0123456789ab.fsblob-part"
    dead.write_bytes(b"half")
    old = time.time() - 7200
    os.utime(dead, (old, old))
    live = store / ".other.bin.ba9876543210.fsblob-part"
    live.write_bytes(b"in flight")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    done = subprocess.run([sys.executable, "-m", "fsblob", "gc", "--older-than", "1h"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "removed 1" in done.stdout
    assert not dead.exists() and live.exists()


@pytest.mark.parametrize("backend", ["local", "webhdfs"])
def test_an_upload_sweeps_a_dead_uploads_temporary_of_its_name(
        backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """Rename stores write temporaries next to the name; one a killed upload left
    is removed by the next upload of that name, once it is old enough to be dead."""
    import time

    case: Case = request.getfixturevalue(f"{backend}_case")
    manager = case.make()
    src = tmp_path / "m.bin"
    src.write_bytes(b"one")
    manager.upload(src)
    root = manager._resolve(manager.root_url + "/m.bin").rsplit("/", 1)[0]
    dead, live = f"{root}/.m.bin.0123456789ab.fsblob-part", f"{root}/.m.bin.ba9876543210.fsblob-part"
    for path in (dead, live):
        manager.fs.pipe_file(path, b"half")
    local = Path(dead) if backend == "local" else case.server.local(dead)
    old = time.time() - 7200
    os.utime(local, (old, old))
    src.write_bytes(b"two")
    manager.upload(src)
    names = {p.rsplit("/", 1)[1] for p in manager.fs.ls(root, detail=False)}
    assert ".m.bin.0123456789ab.fsblob-part" not in names, "the dead temporary stayed"
    assert ".m.bin.ba9876543210.fsblob-part" in names, "a live upload's temporary was taken"
