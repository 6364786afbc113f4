"""Trees as immutable versions: each upload a new version, one pointer per name.

Deterministic races pause an upload at a chosen step through its progress
callback (a public argument: the callback blocks, or raises, after the first
bytes are sent), then act from another process while it waits (another process,
because a blocked callback of an asynchronous client blocks fsspec's one event
loop for the whole process). Natural races run writers and readers in separate
processes for a few seconds and count.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import threading
import time
from pathlib import Path
from typing import Any

import boto3
import fsspec
import pytest
from fsspec.callbacks import Callback

from fsblob import (
    BlobError,
    BlobIntegrityError,
    InvalidPathError,
    PathOutsideRootError,
    versions,
)
from fsblob.retry import is_transient
from tests.conftest import S3_BUCKET, Case, Meter
from tests.test_contract import _leftovers
from tests.workers import (
    churn,
    delete,
    download_files,
    gc,
    tree_tags,
    upload,
    upload_rounds,
)

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


def _root(manager: Any) -> str:
    return manager._resolve(manager.root_url + "/x").rsplit("/", 1)[0]


def _plain(manager: Any, uri: str) -> dict[str, bytes]:
    """The directory at ``uri`` as other tools see it: relative path -> bytes."""
    fs = manager.fs
    fs.invalidate_cache()
    base = manager._resolve(uri)
    found = fs.find(base)
    return {p[len(base) + 1:]: fs.cat_file(p) for p in found if not p.endswith("/")}


def _files(tree: Path) -> dict[str, bytes]:
    return {p.relative_to(tree).as_posix(): p.read_bytes() for p in tree.rglob("*") if p.is_file()}


def _name_uri(manager: Any, name: str = "model") -> str:
    return f"{manager.root_url}/{name}"


class Pause(Callback):
    """Blocks (or raises) the transfer it watches at its first bytes, until released."""

    def __init__(self, fail: bool = False) -> None:
        super().__init__()
        self.reached, self.release, self.fail = threading.Event(), threading.Event(), fail

    def relative_update(self, inc: int | None = 1) -> None:
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


# -- the shape --------------------------------------------------------------------------------


def test_an_upload_returns_a_version_that_never_changes(case: Case, tmp_path: Path) -> None:
    manager = case.make()
    v1, v2 = _tree(tmp_path, "v1", V1), _tree(tmp_path, "v2", V2)
    uri1 = manager.upload(v1)
    assert "/.fsblob/trees/model/" in uri1 and uri1 != _name_uri(manager)
    uri2 = manager.upload(v2)
    assert uri2 != uri1
    assert _plain(manager, uri1) == _files(v1), "a stored version changed"
    assert _plain(manager, uri2) == _files(v2)
    assert _files(Path(manager.download(uri1, tmp_path / "o1"))) == _files(v1)
    assert Path(manager.download(uri1, tmp_path / "o1")).name == "model"
    assert _files(Path(manager.download("model", tmp_path / "latest"))) == _files(v2)
    assert manager.ls() == [_name_uri(manager)]
    assert manager.exists(uri1) and manager.exists("model")
    one = manager.download(f"{uri1}/sub/b.txt", tmp_path / "one")
    assert Path(one).read_bytes() == (v1 / "sub" / "b.txt").read_bytes()


def test_storage_after_one_tree_upload_is_the_trees_bytes(case: Case, tmp_path: Path) -> None:
    manager = case.make()
    tree = _tree(tmp_path, "v1", V1)
    manager.upload(tree)
    fs = manager.fs
    fs.invalidate_cache()
    root = _root(manager)
    stored = {p: i["size"] for p, i in fs.find(root, detail=True).items() if i["type"] == "file"}
    bookkeeping = [p for p in stored if p.endswith(".json") and "/.fsblob/trees/" in p
                   or p == f"{root}/model"]
    assert len(bookkeeping) == 2, "one manifest and one pointer"
    data = sum(size for p, size in stored.items() if p not in bookkeeping)
    assert data == sum(len(b) for b in _files(tree).values()), "not 1.0x the tree's bytes"


def test_pandas_reads_a_version_uri_as_it_is(s3_case: Case, tmp_path: Path) -> None:
    pd = pytest.importorskip("pandas")
    manager = s3_case.make()
    tree = tmp_path / "table"
    tree.mkdir()
    frame = pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"]})
    frame.to_parquet(tree / "part-0.parquet")
    frame.to_csv(tree / "data.csv", index=False)
    uri = manager.upload(tree)
    options = manager.storage_options
    assert pd.read_csv(f"{uri}/data.csv", storage_options=options).equals(frame)
    got = pd.read_parquet(f"{uri}/part-0.parquet", storage_options=options)
    assert got.equals(frame)


# -- deterministic races -----------------------------------------------------------------


def test_reader_during_a_reupload_gets_the_previous_version_whole(
        shared: Case, tmp_path: Path, pool: Any) -> None:
    case = shared
    manager = case.make()
    v1, v2 = _tree(tmp_path, "v1", V1), _tree(tmp_path, "v2", V2)
    uri1 = manager.upload(v1)
    pause = Pause()
    thread, result = _in_thread(lambda: manager.upload(v2, callback=pause))
    assert pause.reached.wait(30)
    # the upload is half-way: a reader elsewhere gets the previous version, whole
    during = _elsewhere(pool, download_files, _class_path(manager), case.config,
                        _name_uri(manager), str(tmp_path / "during"))
    pause.release.set()
    assert during == _files(v1)
    thread.join(60)
    assert len(result) == 1 and isinstance(result[0], str), result
    got = manager.download(_name_uri(manager), tmp_path / "after")
    assert _files(Path(got)) == _files(v2)
    assert _plain(manager, result[0]) == _files(v2)
    assert _plain(manager, uri1) == _files(v1), "the previous version changed"


def test_an_upload_cut_off_half_way_leaves_the_previous_version(case: Case, tmp_path: Path) -> None:
    manager = case.make(retries=0)
    v1, v2 = _tree(tmp_path, "v1", V1), _tree(tmp_path, "v2", V2)
    uri = manager.upload(v1)
    with pytest.raises(BlobError, match="cut off"):
        manager.upload(v2, callback=Pause(fail=True))
    assert _files(Path(manager.download("model", tmp_path / "out"))) == _files(v1)
    assert _plain(manager, uri) == _files(v1), "other tools see a mix"
    assert manager.ls() == [_name_uri(manager)]


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
        uri_b = _elsewhere(pool, upload, _class_path(manager), case.config, str(v2))
    finally:
        pause.release.set()
    thread.join(60)
    uri_a = result[0]
    assert isinstance(uri_a, str) and uri_a != uri_b
    # A finished last: its pointer stands; each version is exactly its own tree
    assert _files(Path(manager.download("model", tmp_path / "out"))) == _files(v1)
    assert _plain(manager, uri_a) == _files(v1), "merged or mixed version"
    assert _plain(manager, uri_b) == _files(v2), "merged or mixed version"
    assert manager.ls() == [_name_uri(manager)]
    assert _leftovers(tmp_path) == []


def test_a_delete_racing_an_upload_leaves_nothing_or_a_whole_version(
        shared: Case, tmp_path: Path, pool: Any) -> None:
    case = shared
    manager = case.make()
    v1 = _tree(tmp_path, "v1", {f"f{i}.txt": 100 for i in range(30)})
    v2 = _tree(tmp_path, "v2", {f"f{i}.txt": 100 for i in range(30)})
    manager.upload(v1)
    pause = Pause()
    thread, result = _in_thread(lambda: manager.upload(v2, callback=pause))
    assert pause.reached.wait(30)
    try:
        _elsewhere(pool, delete, _class_path(manager), case.config, "model")
    finally:
        pause.release.set()
    thread.join(60)
    assert isinstance(result[0], str), result
    # the upload's pointer came after the delete: the name holds its whole version
    assert _files(Path(manager.download("model", tmp_path / "out"))) == _files(v2)
    manager.delete("model")
    assert not manager.exists("model") and manager.ls() == []
    with pytest.raises(BlobError, match="no such artifact|not found"):
        manager.download("model", tmp_path / "gone")


def test_gc_during_an_upload_never_loses_what_the_upload_commits(
        shared: Case, tmp_path: Path, pool: Any) -> None:
    """The upload copies unchanged files from the version gc removes under it, and gc
    also takes the upload's first files (a zero grace period): it sends them again."""
    case = shared
    manager = case.make(retries=2)
    v1 = _tree(tmp_path, "v1", {f"f{i}.txt": 200 for i in range(8)})
    manager.upload(v1)
    (v1 / "f0.txt").write_bytes(b"changed:" + os.urandom(300))
    pause = Pause()
    thread, result = _in_thread(lambda: manager.upload(v1, callback=pause))
    assert pause.reached.wait(30)
    try:  # the name deleted and every version collected while the upload waits
        _elsewhere(pool, delete, _class_path(manager), case.config, "model")
        removed = _elsewhere(pool, gc, _class_path(manager), case.config, 0.0, 0)
    finally:
        pause.release.set()
    thread.join(60)
    assert any("/.fsblob/trees/model/" in r for r in removed), removed
    assert isinstance(result[0], str), result
    assert _files(Path(manager.download("model", tmp_path / "out"))) == _files(v1)
    assert _plain(manager, result[0]) == _files(v1)


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
    assert _files(Path(manager.download("model", tmp_path / "out"))) == _files(v1)
    assert _plain(manager, uri) == _files(v1)
    assert Path(manager.download(file_uri, tmp_path / "out")).read_bytes() == b"first"


def test_a_503_during_an_upload_is_retried_into_a_whole_version(s3_case: Case, tmp_path: Path) -> None:
    manager = s3_case.make(retries=4)
    v1, v2 = _tree(tmp_path, "v1", V1), _tree(tmp_path, "v2", V2)
    manager.upload(v1)
    s3_case.server.fail_next(2, status=503)
    uri = manager.upload(v2)
    assert _plain(manager, uri) == _files(v2), "the version mixes two uploads"
    assert _files(Path(manager.download("model", tmp_path / "out"))) == _files(v2)


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
    with multiprocessing.get_context("spawn").Pool(len(jobs)) as workers:
        results = workers.starmap_async(churn, jobs).get(timeout=180)
    writers, readers = results[:2], results[2:]
    uploads = sum(w["ok"] for w in writers)
    downloads = sum(r["ok"] for r in readers)
    print(f"{case.name}: {uploads} uploads, {downloads} downloads of one version, "
          f"{sum(r['mixed'] for r in readers)} mixed, {sum(r['not_found'] for r in readers)} not found")
    assert [w["errors"] for w in writers] == [[], []]
    assert [(r["mixed"], r["not_found"], r["errors"]) for r in readers] == [(0, 0, [])] * 2
    assert uploads >= 4 and downloads >= 4, "too little happened to count"
    final = Path(manager.download("model", tmp_path / "final"))
    tags, _ = tree_tags(str(final))
    assert len(tags) == 1
    winner = next(t for t in trees if tree_tags(str(t))[0] == tags)
    assert _files(final) == _files(winner)
    for uri in writers[0]["uris"] + writers[1]["uris"]:  # every version stays exactly its tree
        got = _plain(manager, uri)
        tags = {data.split(b":", 1)[0] for data in got.values()}
        assert len(tags) == 1, f"{uri} mixes versions"


def test_four_uploaders_of_one_local_name_leave_whole_versions(local_case: Case, tmp_path: Path) -> None:
    manager = local_case.make()
    trees = [_tree(tmp_path, tag, {**V1, f"only-{tag}.txt": 10}) for tag in "ABCD"]
    rounds = 12
    ctx = multiprocessing.get_context("spawn")
    with ctx.Manager() as sync:
        barrier = sync.Barrier(4)
        with ctx.Pool(4) as workers:
            jobs = [(_class_path(manager), local_case.config, str(t), rounds, barrier) for t in trees]
            uris = workers.starmap_async(upload_rounds, jobs).get(timeout=240)
    for tree, made in zip(trees, uris):
        assert len(set(made)) == rounds
        for uri in made:
            assert _plain(manager, uri) == _files(tree), f"{uri} is not its uploader's tree"
    final = _files(Path(manager.download("model", tmp_path / "final")))
    assert final in [_files(t) for t in trees]


# -- damage, loss and repair ------------------------------------------------------------------


def test_a_lost_file_of_a_version_is_healed_by_the_next_upload(case: Case, tmp_path: Path) -> None:
    manager = case.make(retries=1)
    v1 = _tree(tmp_path, "v1", {f"f{i}.txt": 1000 for i in range(4)})
    uri = manager.upload(v1)
    manager.fs.rm_file(f"{manager._resolve(uri)}/f2.txt")  # lost in an outage, or by hand
    with pytest.raises(BlobIntegrityError):
        manager.download("model", tmp_path / "broken")
    assert not (tmp_path / "broken" / "model").exists()
    uri2 = manager.upload(v1)  # the same directory again: the lost file is sent
    assert uri2 != uri
    assert _files(Path(manager.download("model", tmp_path / "out"))) == _files(v1)


def test_a_damaged_file_of_a_version_is_refused_and_healed(case: Case, tmp_path: Path) -> None:
    manager = case.make(retries=1)
    v1 = _tree(tmp_path, "v1", {f"f{i}.txt": 1000 for i in range(4)})
    uri = manager.upload(v1)
    victim = f"{manager._resolve(uri)}/f1.txt"
    data = manager.fs.cat_file(victim)
    manager.fs.pipe_file(victim, bytes([data[0] ^ 1]) + data[1:])  # same size, one bit
    with pytest.raises(BlobIntegrityError, match="does not match its manifest"):
        manager.download("model", tmp_path / "broken")
    manager.upload(v1)
    assert _files(Path(manager.download("model", tmp_path / "out"))) == _files(v1)


class _Once:
    """A translator for the S3 test proxy: before the first request ``match(req,
    body)`` picks is forwarded, ``act(body, upstream)`` runs against moto (what
    another process would do at that very moment)."""

    def __init__(self, match: Any, act: Any) -> None:
        self.match, self.act, self.done = match, act, False

    def on_request(self, req: Any, upstream: Any) -> None:
        if self.done or req.method not in ("PUT", "POST", "DELETE"):
            return
        body = b"".join(req.body)
        req.body = iter([body])
        if self.match(req, body):
            self.done = True
            self.act(body, upstream)

    def on_response(self, req: Any, resp: Any, upstream: Any) -> None:
        """Answers pass as they are."""


def _moto(moto_server: Any) -> Any:
    return boto3.client("s3", endpoint_url=moto_server.url, region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def test_a_gc_that_removes_a_version_as_its_pointer_is_written_makes_the_upload_go_again(
        s3_case: Case, moto_server: Any, tmp_path: Path) -> None:
    """gc (no grace period) looked before the upload's pointer was written, and removed
    the new version between that look and the pointer: before, the upload returned
    that removed version and the name named it; now the upload sees its manifest gone
    and goes again."""
    manager = s3_case.make(retries=1)
    manager.upload(_tree(tmp_path, "v1", V1))
    v2 = _tree(tmp_path, "v2", V2)
    base = f"/{S3_BUCKET}/{s3_case.config['root_directory']}"
    moto, trees = _moto(moto_server), f"{s3_case.config['root_directory']}/.fsblob/trees/model"
    removed: list[str] = []

    def gc_removes_the_version(body: bytes, _: Any) -> None:
        version = json.loads(body[len(versions.POINTER_MAGIC):])["version"]
        removed.append(version)
        for key in [f"{version}.json", *(f"{version}/{rel}" for rel in V2)]:
            moto.delete_object(Bucket=S3_BUCKET, Key=f"{trees}/{key}")

    proxy = s3_case.server
    proxy.translator = _Once(lambda req, body: req.method == "PUT" and versions.POINTER_MAGIC
                             in body and req.path.split("?")[0] == f"{base}/model",
                             gc_removes_the_version)
    try:
        uri = manager.upload(v2)
    finally:
        proxy.translator = None
    assert removed and not uri.endswith(removed[0]), (uri, removed)
    assert _files(Path(manager.download("model", tmp_path / "out"))) == _files(v2)


def test_a_gc_that_sees_the_name_pointed_at_a_version_it_removes_puts_it_back(
        s3_case: Case, moto_server: Any, tmp_path: Path) -> None:
    """An upload committed a version (its manifest written) and pointed the name at it
    just as gc, which judged it superseded before the pointer came, removed its
    manifest: before, gc went on to remove its files and the name named nothing;
    now gc sees the pointer, puts the manifest back and keeps the version."""
    manager = s3_case.make(retries=0)
    manager.upload(_tree(tmp_path, "v1", V1))
    proxy = s3_case.server
    base = f"/{S3_BUCKET}/{s3_case.config['root_directory']}"
    proxy.fail_next(1, when=lambda method, path: method == "PUT" and path == f"{base}/model")
    v2 = _tree(tmp_path, "v2", V2)
    with pytest.raises(BlobError):  # committed, not yet pointed: the pointer is to come
        manager.upload(v2)
    folder = f"{_root(manager)}/.fsblob/trees/model"
    manager.fs.invalidate_cache()
    made = sorted(p.rsplit("/", 1)[-1][:-5] for p in manager.fs.ls(folder, detail=False)
                  if p.endswith(".json"))
    assert len(made) == 2, made
    new = made[-1]  # versions sort by time

    moto = _moto(moto_server)

    def the_upload_points_the_name(body: bytes, _: Any) -> None:
        moto.put_object(Bucket=S3_BUCKET, Key=f"{s3_case.config['root_directory']}/model",
                        Body=versions.Pointer(new).to_bytes())

    hook = _Once(lambda req, body: f"{new}.json".encode() in body or (  # DeleteObjects
        req.method == "DELETE" and req.path.split("?")[0].endswith(f"/{new}.json")),
        the_upload_points_the_name)
    proxy.translator = hook
    try:
        manager.gc(older_than=0, keep=0)
    finally:
        proxy.translator = None
    assert hook.done
    assert _files(Path(manager.download("model", tmp_path / "out"))) == _files(v2)


def test_a_file_changed_while_its_tree_is_sent_commits_nothing(case: Case, tmp_path: Path) -> None:
    """Another program rewrites the files in place (same sizes) once the first bytes
    are sent. Before, on every store but S3 the upload committed a version whose
    bytes did not match its manifest, and every download of the name then failed.
    Now nothing is committed and the name still gives the previous version whole."""
    manager = case.make(retries=1)
    sizes = {"a.txt": 1000, "sub/big.bin": 9 * 2**20 + 5, "z.txt": 2000}  # big: in pieces
    v1 = _tree(tmp_path, "v1", sizes)
    manager.upload(v1)
    v2 = _tree(tmp_path, "v2", sizes)

    class Rewrite(Callback):
        done = False

        def call(self, *args: Any, **kwargs: Any) -> None:
            if self.value and not self.done:
                self.done = True
                for path in sorted(p for p in v2.rglob("*") if p.is_file()):
                    fd = os.open(path, os.O_WRONLY)  # in place: no moment of a short file
                    try:
                        os.pwrite(fd, os.urandom(path.stat().st_size), 0)
                    finally:
                        os.close(fd)

    rewrite = Rewrite()
    with pytest.raises(BlobIntegrityError) as raised:
        manager.upload(v2, callback=rewrite)
    assert rewrite.done
    message = str(raised.value)  # on S3 too, where the store refused a body first
    assert "changed while it was being uploaded" in message, message
    assert "nothing was committed" in message and "damaged" not in message, message
    assert not is_transient(raised.value)  # the same manifest again cannot succeed
    assert _files(Path(manager.download("model", tmp_path / "out"))) == _files(v1)


def test_local_versions_share_no_file_with_each_other_or_with_downloads(
        local_case: Case, tmp_path: Path) -> None:
    manager = local_case.make()
    for tag in ("a", "b"):
        tree = tmp_path / tag / f"art-{tag}"
        (tree / "conf").mkdir(parents=True)
        (tree / "conf" / "dev.yaml").write_bytes(b"same: 1\n")
        (tree / "conf" / "prod.yaml").write_bytes(b"same: 1\n")
        (tree / "empty1").write_bytes(b"")
        (tree / "empty2").write_bytes(b"")
    uri_a = manager.upload(tmp_path / "a" / "art-a")
    uri_b = manager.upload(tmp_path / "b" / "art-b")
    stored = [p for p in Path(manager.root_url).rglob("*") if p.is_file()]
    assert all(p.stat().st_nlink == 1 for p in stored), "stored files share inodes"
    assert manager.download("art-b") == uri_b  # Local: the stored version itself
    with open(Path(manager.download(uri_b)) / "conf" / "dev.yaml", "ab") as f:
        f.write(b"appended: 2\n")  # at the path download() returns on Local
    got = Path(manager.download(uri_a, tmp_path / "out"))
    assert _files(got)["conf/dev.yaml"] == b"same: 1\n", "versions share a file"
    (got / "conf" / "dev.yaml").write_bytes(b"edited\n")
    assert (got / "conf" / "prod.yaml").read_bytes() == b"same: 1\n", "downloaded files are linked"
    assert (got / "empty1").stat().st_ino != (got / "empty2").stat().st_ino


def test_a_crafted_manifest_is_refused_before_any_request(case: Case, tmp_path: Path) -> None:
    manager = case.make()
    uri = manager.upload(_tree(tmp_path, "v1", {"a.txt": 10}))
    vdir = manager._resolve(uri)
    manifest_path = vdir + ".json"
    doc = json.loads(manager.fs.cat_file(manifest_path))
    for field, bad in (("md5", "../../../../outside/secret"), ("size", -1), ("size", "10")):
        crafted = json.loads(json.dumps(doc))
        crafted["files"]["a.txt"][field] = bad
        manager.fs.pipe_file(manifest_path, json.dumps(crafted).encode())
        before = case.reads()
        with pytest.raises(InvalidPathError, match="manifest .* is damaged"):
            manager.download(uri, tmp_path / "out")
        assert case.reads() == before, "a file was read on the say-so of a damaged manifest"
        if case.name in ("s3", "oss"):
            assert not any("outside" in p for _, p in case.server.requests)
    crafted = json.loads(json.dumps(doc))
    crafted["files"] = {"../../escape.txt": doc["files"]["a.txt"]}
    manager.fs.pipe_file(manifest_path, json.dumps(crafted).encode())
    with pytest.raises(InvalidPathError, match="damaged"):
        manager.download(uri, tmp_path / "out")
    assert not (tmp_path / "escape.txt").exists()


def test_a_damaged_pointer_blocks_nothing_but_its_own_download(case: Case, tmp_path: Path) -> None:
    manager = case.make()
    tree = _tree(tmp_path, "v1", V1)
    manager.upload(tree)
    other = tmp_path / "o" / "other"
    other.mkdir(parents=True)
    (other / "x.txt").write_bytes(b"x")
    manager.upload(other)
    manager.upload(other)  # a superseded version of another name, for gc
    pointer = f"{_root(manager)}/model"
    manager.fs.pipe_file(pointer, versions.POINTER_MAGIC + b'{"version": "../../etc/pass-w0rd"}\n'
                         .ljust(versions.POINTER_SIZE - len(versions.POINTER_MAGIC), b" "))
    with pytest.raises(InvalidPathError, match="pointer .* is damaged"):
        manager.download("model", tmp_path / "out")
    removed = manager.gc(older_than=0, keep=0)  # other names are still collected
    assert any("/.fsblob/trees/other/" in r for r in removed)
    assert not any("/.fsblob/trees/model/" in r for r in removed), "judged a damaged name"
    manager.upload(tree)  # repairs it
    assert _files(Path(manager.download("model", tmp_path / "out"))) == _files(tree)
    manager.fs.pipe_file(pointer, versions.POINTER_MAGIC.ljust(versions.POINTER_SIZE, b"!"))
    manager.delete("model")
    assert manager.ls() == [_name_uri(manager, "other")]


# -- names ---------------------------------------------------------------------------------------


def test_reserved_names_are_refused(case: Case, tmp_path: Path) -> None:
    manager = case.make()
    manager.upload(_tree(tmp_path, "v1", {"a.txt": 10}))
    for name in (".fsblob", "x.fsblob-part"):
        folder = tmp_path / "d" / name
        folder.mkdir(parents=True)
        (folder / "f").write_bytes(b"f")
        with pytest.raises(InvalidPathError, match="reserved"):
            manager.upload(folder)
        single = tmp_path / "f" / name
        single.parent.mkdir(exist_ok=True)
        single.write_bytes(b"f")
        with pytest.raises(InvalidPathError, match="reserved"):
            manager.upload(single)
    for bad in (".fsblob", ".fsblob/trees", ".fsblob/trees/model"):
        with pytest.raises(InvalidPathError, match="bookkeeping"):
            manager.delete(bad)
    assert _files(Path(manager.download("model", tmp_path / "out")))["a.txt"].startswith(b"v1:")


def test_reserved_names_inside_a_tree_are_ordinary_files(case: Case, tmp_path: Path) -> None:
    manager = case.make()
    tree = tmp_path / "model"
    (tree / ".fsblob").mkdir(parents=True)
    (tree / ".fsblob" / "inner.txt").write_bytes(b"inner")
    (tree / "run-42.fsblob-part").write_bytes(b"part")
    uri = manager.upload(tree)
    assert _files(Path(manager.download(uri, tmp_path / "out"))) == _files(tree)
    assert _plain(manager, uri) == _files(tree)


def test_a_file_starting_like_a_pointer_is_refused(memory_case: Case, tmp_path: Path) -> None:
    manager = memory_case.make()
    forged = tmp_path / "forged"
    forged.write_bytes(versions.Pointer("0" * 16 + "-" + "0" * 8).to_bytes())
    with pytest.raises(InvalidPathError, match="pointer marker"):
        manager.upload(forged)


def test_a_name_can_switch_between_file_and_tree_both_ways(case: Case, tmp_path: Path) -> None:
    manager = case.make()
    tree = _tree(tmp_path, "v1", V1)
    single = tmp_path / "f" / "model"
    single.parent.mkdir()
    single.write_bytes(b"a plain file")
    manager.upload(tree)
    manager.upload(single)
    assert Path(manager.download("model", tmp_path / "o1")).read_bytes() == b"a plain file"
    manager.upload(tree)
    assert _files(Path(manager.download("model", tmp_path / "o2"))) == _files(tree)
    assert manager.ls() == [_name_uri(manager)]


# -- what other tools (and fsblob 0.x) leave in a store -----------------------------------------


def test_s3_directory_markers_are_ignored(s3_case: Case, tmp_path: Path) -> None:
    manager = s3_case.make()
    root = _root(manager)
    v1 = _tree(tmp_path, "v1", V1)
    for marker in ("foreign/", "foreign/empty/"):
        manager.fs.pipe_file(f"{root}/{marker}", b"")  # as the S3 console and Hadoop S3A make
    uri = manager.upload(v1)
    assert _files(Path(manager.download(uri, tmp_path / "out"))) == _files(v1)
    manager.fs.pipe_file(f"{root}/foreign/data.csv", b"a,b\n1,2\n")  # another tool's tree
    got = Path(manager.download("foreign", tmp_path / "out"))
    assert _files(got) == {"data.csv": b"a,b\n1,2\n"}
    assert [u.rsplit("/", 1)[1] for u in manager.ls()] == ["foreign", "model"]


def test_a_tree_written_by_another_tool_is_read_from_its_plain_files(case: Case, tmp_path: Path) -> None:
    manager = case.make()
    root = _root(manager)
    fs = manager.fs
    for rel, data in {"t/a.txt": b"alpha", "t/b/c.txt": b"gamma"}.items():
        fs.makedirs(f"{root}/{rel}".rsplit("/", 1)[0], exist_ok=True)
        fs.pipe_file(f"{root}/{rel}", data)
    got = Path(manager.download("t", tmp_path / "out"))
    assert _files(got) == {"a.txt": b"alpha", "b/c.txt": b"gamma"}


def test_a_store_written_by_fsblob_0x_downloads_and_converts(case: Case, tmp_path: Path) -> None:
    """fsblob 0.x kept a commit record and content-addressed objects, and published a
    plain tree at the name: that plain tree downloads, and the next upload replaces it."""
    manager = case.make()
    root, fs = _root(manager), manager.fs
    old = {"a.txt": b"old-a", "sub/b.txt": b"old-b"}
    record = {"format": "fsblob-tree/1", "version": "1-2", "created": 1.0,
              "files": {rel: {"size": len(d), "md5": "0" * 32} for rel, d in old.items()}}
    for path, data in {f"{root}/.fsblob/commits/model": json.dumps(record).encode(),
                       f"{root}/.fsblob/objects/00/{'0' * 32}": b"old-a",
                       **{f"{root}/model/{rel}": d for rel, d in old.items()}}.items():
        fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        fs.pipe_file(path, data)
    assert _files(Path(manager.download("model", tmp_path / "legacy"))) == old
    tree = _tree(tmp_path, "v1", V1)
    manager.upload(tree)
    assert _files(Path(manager.download("model", tmp_path / "new"))) == _files(tree)
    fs.invalidate_cache()
    assert [p for p in fs.find(root) if "/.fsblob/" not in p] == [f"{root}/model"], \
        "the old plain tree was left beside the pointer"
    removed = manager.gc(older_than=0)
    assert any("/.fsblob/objects/" in r for r in removed) and any("/.fsblob/commits/" in r
                                                                  for r in removed)
    assert manager.ls() == [_name_uri(manager)]


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
    whole = sum(len(b) for b in _files(v1).values())
    # stores that copy server-side (and check the copy by its MD5 ETag) send only
    # the changed file; the others send the tree from the local files
    store = manager._store
    assert sent.bytes == (20_008 if store.server_copy and store.md5_etag else whole)
    before = case.reads()
    manager.download("model", tmp_path / "out2")  # fetched whole
    whole_reads = case.reads() - before
    before = case.reads()
    meter = Meter()
    got = Path(manager.download("model", tmp_path / "out", callback=meter))
    assert _files(got) == _files(v1)
    if before >= 0:
        assert case.reads() - before == whole_reads - 5, "unchanged files were fetched again"
    else:
        assert meter.bytes == 20_008, "unchanged files were fetched again"


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
    got = Path(manager.download(uri, tmp_path / "out"))  # the manifest names no leak.txt
    assert "leak.txt" not in _files(got)
    foreign = Path(manager.root_url) / "foreign"
    foreign.mkdir()
    (foreign / "a.txt").write_bytes(b"a")
    os.symlink(secret, foreign / "leak.txt")  # a tree no fsblob version describes
    with pytest.raises(PathOutsideRootError):
        manager.download("foreign", tmp_path / "out2")
    assert not list((tmp_path / "out2").rglob("leak.txt"))
    with fsspec.open(str(secret), "rb") as f:
        assert f.read() == b"outside the root"


# -- garbage -----------------------------------------------------------------------------------


def test_gc_keeps_the_current_and_the_newest_superseded_versions(case: Case, tmp_path: Path) -> None:
    manager = case.make()
    tree = _tree(tmp_path, "v1", {"a.txt": 100})
    made = []
    for i in range(5):
        (tree / "a.txt").write_bytes(f"v1:{i}".encode())
        made.append(manager.upload(tree))
    assert manager.gc(older_than=3600) == [], "a version superseded a moment ago was removed"
    removed = manager.gc(older_than=0, keep=2)
    assert sorted(removed) == sorted(made[:2])
    for uri in made[2:]:
        assert manager.exists(uri)
        assert _plain(manager, uri)["a.txt"] == f"v1:{made.index(uri)}".encode()
    assert sorted(manager.gc(older_than=0, keep=0)) == sorted(made[2:4])
    assert _files(Path(manager.download("model", tmp_path / "out")))["a.txt"] == b"v1:4"
    manager.delete("model")
    assert manager.gc(older_than=0) == [made[4]], "a deleted name keeps no version"
    with pytest.raises(BlobError, match="no such version"):
        manager.download(made[4], tmp_path / "gone")


def test_gc_in_a_long_lived_process_sees_what_others_committed(
        request: pytest.FixtureRequest, tmp_path: Path, pool: Any) -> None:
    for backend in ("s3", "oss"):
        case: Case = request.getfixturevalue(f"{backend}_case")
        manager = case.make()
        tree = _tree(tmp_path / backend, "v1", {"a.txt": 100})
        manager.upload(tree)
        manager.gc(older_than=0, keep=0)  # fills the client's listing caches
        assert manager.ls() == [_name_uri(manager)]
        (tree / "a.txt").write_bytes(b"v1:newer")
        newer = _elsewhere(pool, upload, _class_path(manager), case.config, str(tree))
        other = tmp_path / backend / "more" / "other"
        other.mkdir(parents=True)
        (other / "b.txt").write_bytes(b"b")
        _elsewhere(pool, upload, _class_path(manager), case.config, str(other))
        removed = manager.gc(older_than=0, keep=0)
        assert newer not in removed and not any("/other/" in r for r in removed), removed
        assert manager.ls() == [_name_uri(manager), _name_uri(manager, "other")], "stale listing"
        fresh = case.make()
        assert _files(Path(fresh.download("model", tmp_path / backend / "out"))) == {
            "a.txt": b"v1:newer"}
        assert _files(Path(fresh.download("other", tmp_path / backend / "out"))) == {"b.txt": b"b"}


def test_gc_touches_nothing_outside_fsblobs_folder(case: Case, tmp_path: Path) -> None:
    manager = case.make()
    manager.upload(_tree(tmp_path, "v1", {"a.txt": 10}))
    root, fs = _root(manager), manager.fs
    users = [f"{root}/run-42.fsblob-part", f"{root}/.hidden.0123456789ab.fsblob-part"]
    for path in users:
        fs.pipe_file(path, b"a user's file")
    assert all(".fsblob/" in r for r in manager.gc(older_than=0, keep=0))
    fs.invalidate_cache()
    assert all(fs.exists(p) for p in users), "gc removed a user's file"


def test_gc_removes_dead_temporaries_and_the_cli_runs_it(tmp_path: Path) -> None:
    import subprocess
    import sys

    store = tmp_path / "fsblob-store"
    tmp = store / ".fsblob" / "tmp"
    tmp.mkdir(parents=True)
    dead = tmp / "model.bin.0123456789ab.fsblob-part"
    dead.write_bytes(b"half")
    old = time.time() - 7200
    os.utime(dead, (old, old))
    live = tmp / "other.bin.ba9876543210.fsblob-part"
    live.write_bytes(b"in flight")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    done = subprocess.run([sys.executable, "-m", "fsblob", "gc", "--older-than", "1h"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "removed 1" in done.stdout
    assert not dead.exists() and live.exists()


@pytest.mark.parametrize("backend", ["s3", "oss"])
def test_gc_aborts_abandoned_multipart_uploads_under_the_root(
        backend: str, request: pytest.FixtureRequest) -> None:
    case: Case = request.getfixturevalue(f"{backend}_case")
    manager = case.make()
    store, fs = manager._store, manager.fs
    key = f"{_root(manager)}/big.bin"
    if backend == "s3":
        from fsspec.asyn import sync

        bucket, path, _ = fs.split_path(key)
        sync(fs.loop, fs._call_s3, "create_multipart_upload", fs.kwargs, Bucket=bucket, Key=path)
    else:
        bucket, path = fs.split_path(key)
        fs._get_bucket(bucket).init_multipart_upload(path)
    assert len(store.list_uploads(fs, store.root)) == 1
    # moto reports every upload as begun in 2010: a grace of a century keeps it
    assert manager.gc(older_than=100 * 365 * 86400) == []
    removed = manager.gc(older_than=0)
    assert len(removed) == 1 and "multipart upload" in removed[0]
    assert store.list_uploads(fs, store.root) == []


def test_gc_command_keeps_the_newest_superseded_versions(tmp_path: Path) -> None:
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}

    def fsblob(*args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([sys.executable, "-m", "fsblob", *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stderr
        return done

    (tmp_path / "proj").mkdir()
    made = []
    for i in range(3):
        (tmp_path / "proj" / "a.txt").write_text(f"v{i}")
        made.append(fsblob("upload", "proj").stdout.strip())
    assert "removed 0" in fsblob("gc", "--older-than", "0", "--keep", "2").stdout
    assert "removed 1" in fsblob("gc", "--older-than", "0", "--keep", "1").stdout
    assert not Path(made[0]).exists() and Path(made[1]).exists() and Path(made[2]).exists()
    assert fsblob("download", "proj", "out").stdout.strip().endswith("out/proj")
    assert (tmp_path / "out" / "proj" / "a.txt").read_text() == "v2"


def test_gc_leaves_a_version_a_writer_is_still_filling(
        local_case: Case, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A version that never committed, older than the grace period, while a slow
    uploader still adds files to it: gc takes what it can and leaves the folder
    for next time instead of failing (or reporting it removed)."""
    manager = local_case.make()
    v1 = manager.upload(_tree(tmp_path, "v1", {"a.txt": 10})).rsplit("/", 1)[-1]
    root = Path(_root(manager))
    version = versions.new_version()
    folder = Path(versions.version_dir(str(root), "model", version))
    stop = threading.Event()

    def writer() -> None:  # deep folders make rmtree's window wide
        i = 0
        while not stop.is_set():
            deep = folder / f"d{i % 5}" / "e" / "f"
            i += 1
            try:
                deep.mkdir(parents=True, exist_ok=True)
                (deep / f"{i}.bin").write_bytes(b"x")
            except FileNotFoundError:
                pass  # gc took the folder between the two steps: write again

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        with caplog.at_level(logging.WARNING, logger="fsblob"):
            for _ in range(200):
                removed = manager.gc(older_than=0, keep=0)
                assert not any(v1 in r for r in removed), "gc removed the current version"
    finally:
        stop.set()
        thread.join(10)
    assert "a writer is still at work there" in caplog.text, "gc and the writer never raced"
    assert _files(Path(manager.download("model", tmp_path / "out"))) == _files(tmp_path / "v1" / "model")
    manager.gc(older_than=0, keep=0)
    assert not folder.exists(), "left for good"
