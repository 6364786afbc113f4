"""Per-call cost of one small file on S3 (moto, loopback): fsblob against raw s3fs.

    python benchmarks/bench_calls.py                  # 1 KiB, 40 calls, 20,000 neighbours
    python benchmarks/bench_calls.py --calls 20 --crowd 0

For each of upload and download: the median time of one call, with an empty
destination directory and with ``--crowd`` files already in it (one-by-one
downloads into one directory must not slow down with every file). Also shown:
the requests each call makes, counted at a proxy in front of moto in a separate
pass (the proxy's own cost stays out of the times).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
BUCKET = "calls"


def _median_ms(fn: Callable[[int], object], calls: int) -> float:
    times = []
    for i in range(calls):
        start = time.perf_counter()
        fn(i)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=40)
    parser.add_argument("--size", type=int, default=1024, help="bytes")
    parser.add_argument("--crowd", type=int, default=20_000, help="files already in the directory")
    args = parser.parse_args()
    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench",
                      AWS_DEFAULT_REGION="us-east-1", AWS_EC2_METADATA_DISABLED="true")
    import s3fs

    from fsblob import S3BlobManager
    from tests.servers.moto import MotoServer
    from tests.servers.proxy import FaultProxy, Upstream

    with tempfile.TemporaryDirectory() as tmp, MotoServer() as moto, FaultProxy(moto.url) as proxy:
        os.environ["FSBLOB_CACHE_DIR"] = str(Path(tmp) / "cache")
        Upstream(moto.url).call("PUT", f"/{BUCKET}")
        src = Path(tmp) / "src"
        src.mkdir()
        for i in range(args.calls):
            (src / f"f{i:03d}.bin").write_bytes(os.urandom(args.size))
        clients = {}
        for where, url in (("direct", moto.url), ("counted", proxy.url)):
            manager = S3BlobManager({"bucket_name": BUCKET, "endpoint_url": url,
                                     "root_directory": "fsblob"})
            fs = s3fs.S3FileSystem(endpoint_url=url, skip_instance_cache=True)
            manager.fs.ls(BUCKET)
            fs.ls(BUCKET)
            clients[where] = (manager, fs)
        rows = []

        def per_call(what: str, call: Callable[[Any, Any, int, str], object]) -> None:
            manager, fs = clients["direct"]
            ms = _median_ms(lambda i: call(manager, fs, i, "t"), args.calls)
            manager, fs = clients["counted"]
            proxy.reset_stats()
            for i in range(3):
                call(manager, fs, i, "c")
            rows.append((what, ms, len(proxy.requests) / 3))

        per_call("upload: fsblob", lambda m, fs, i, tag: m.upload(src / f"f{i:03d}.bin"))
        per_call("upload: s3fs put_file", lambda m, fs, i, tag: fs.put_file(
            str(src / f"f{i:03d}.bin"), f"{BUCKET}/s3fs/f{i:03d}.bin"))
        for crowd in sorted({0, args.crowd}):
            dest = Path(tmp) / f"dl-{crowd}"
            for tag in ("t", "c"):  # timed, counted
                (dest / tag).mkdir(parents=True)
            for i in range(crowd):
                (dest / "t" / f"n{i:05d}").touch()
            per_call(f"download into {crowd} files: fsblob", lambda m, fs, i, tag, d=dest:
                     m.download(f"f{i:03d}.bin", d / tag))
            per_call(f"download into {crowd} files: s3fs get_file", lambda m, fs, i, tag, d=dest:
                     fs.get_file(f"{BUCKET}/s3fs/f{i:03d}.bin", str(d / tag / f"s{i:03d}")))
            per_call(f"re-download, unchanged, into {crowd} files: fsblob",
                     lambda m, fs, i, tag, d=dest: m.download(f"f{i:03d}.bin", d / tag))
        print(f"\nOne {args.size}-byte file per call, S3 on moto (loopback), median of {args.calls}\n")
        print("| call | ms | requests per call |")
        print("|---|---|---|")
        for what, ms, requests in rows:
            print(f"| {what} | {ms:.1f} | {requests:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
