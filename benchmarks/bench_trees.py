"""What one tree upload costs per backend: requests sent and bytes stored.

    python benchmarks/bench_trees.py                 # 50 files of 20 KiB in 5 folders
    python benchmarks/bench_trees.py --files 200 --size 4096

For S3 (moto behind a counting proxy), OSS (moto behind the OSS-dialect
translator) and WebHDFS (the test WebHDFS server): the requests of a first
upload of a tree, of a re-upload with one file changed, and of a download of the
name, by kind (method, or WebHDFS operation); and the bytes stored under the root
after the first upload and after gc, against the tree's own bytes.
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _tree(base: Path, files: int, size: int) -> Path:
    tree = base / "model"
    for i in range(files):
        path = tree / f"part{i % 5}" / f"f{i:04d}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(size))
    return tree


def _stored(manager: Any) -> int:
    fs = manager.fs
    fs.invalidate_cache()
    root = manager._store.root
    return sum(i["size"] for i in fs.find(root, detail=True).values() if i["type"] == "file")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=50)
    parser.add_argument("--size", type=int, default=20 * 1024, help="bytes per file")
    args = parser.parse_args()
    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench",
                      AWS_DEFAULT_REGION="us-east-1", AWS_EC2_METADATA_DISABLED="true")
    from fsblob import HDFSBlobManager, OssBlobManager, S3BlobManager
    from tests.servers.moto import MotoServer
    from tests.servers.oss import OssServer
    from tests.servers.proxy import FaultProxy, Upstream
    from tests.servers.webhdfs import WebHdfsServer

    with tempfile.TemporaryDirectory() as tmp, MotoServer() as moto, \
            FaultProxy(moto.url) as proxy, OssServer(moto.url) as oss, \
            WebHdfsServer(Path(tmp) / "hdfs") as hdfs:
        os.environ["FSBLOB_CACHE_DIR"] = str(Path(tmp) / "cache")
        for bucket in ("trees-s3", "trees-oss"):
            Upstream(moto.url).call("PUT", f"/{bucket}")
        tree = _tree(Path(tmp) / "src", args.files, args.size)
        total = sum(p.stat().st_size for p in tree.rglob("*") if p.is_file())
        s3_kinds = lambda: collections.Counter(m for m, _ in proxy.requests)
        oss_proxy = oss.proxy
        assert oss_proxy is not None
        oss_kinds = lambda: collections.Counter(m for m, _ in oss_proxy.requests)
        hdfs_kinds = lambda: collections.Counter(op for _, op, _ in hdfs.requests)
        backends = [
            ("S3", S3BlobManager({"bucket_name": "trees-s3", "root_directory": "r",
                                  "endpoint_url": proxy.url, "access_key_id": "bench",
                                  "secret_access_key": "bench"}), proxy, s3_kinds),
            ("OSS", OssBlobManager({"endpoint": oss.endpoint, "bucket": "trees-oss",
                                    "root_directory": "r", "access_key_id": "bench",
                                    "access_key_secret": "bench"}), oss_proxy, oss_kinds),
            ("WebHDFS", HDFSBlobManager({"hdfs_url": hdfs.url, "hdfs_user": "bench",
                                         "root_directory": "/r"}), hdfs, hdfs_kinds),
        ]
        print(f"tree: {args.files} files, {total:,} bytes\n")
        print("| backend | step | requests | by kind | stored / tree bytes |")
        print("|---|---|---|---|---|")
        for name, manager, server, kinds in backends:
            manager.fs  # noqa: B018  (open the filesystem outside the counts)
            steps = []
            server.reset_stats()
            manager.upload(tree)
            steps.append(("first upload", kinds(), _stored(manager)))
            (tree / "part0" / "f0000.bin").write_bytes(os.urandom(args.size))
            server.reset_stats()
            manager.upload(tree)
            steps.append(("re-upload, 1 file changed", kinds(), _stored(manager)))
            server.reset_stats()
            manager.download("model", Path(tmp) / f"out-{name}")
            steps.append(("download of the name", kinds(), None))
            manager.gc(older_than=0, keep=0)
            steps.append(("after gc (keep=0)", collections.Counter(), _stored(manager)))
            for step, counted, stored in steps:
                ratio = f"{stored / total:.3f}x" if stored is not None else ""
                detail = ", ".join(f"{k} {v}" for k, v in sorted(counted.items()))
                print(f"| {name} | {step} | {sum(counted.values()) or ''} | {detail} | {ratio} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
