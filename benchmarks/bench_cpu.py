"""Client CPU per call and per request: fsblob against s3fs, boto3 and obstore.

    python benchmarks/bench_cpu.py                       # 1 KiB, 60 calls, 5 rounds
    python benchmarks/bench_cpu.py --calls 30 --rounds 3 --only fsblob,s3fs

S3 on moto, which runs in its own process (``tests/servers/moto.py``), so the CPU
time measured here (``time.process_time``: every thread of this process, the
event-loop thread of s3fs and obstore's Rust runtime included) is the client's
alone. For each operation (upload a 1 KiB file, download a file not yet
here, exists, ls of a folder of ``--calls`` files) and each client: CPU ms per
call (and of it, the calling thread's: fsblob's own work and the client's sync
wrapper, while the request itself runs in the client's event-loop thread), wall ms
per call, requests per call and CPU ms per request. Re-download:
fsblob's download of a file whose local copy is unchanged (one HEAD, the copy
reused), against what the others need to learn the same: one HEAD.

Requests are counted in a separate pass through a proxy in front of moto (the
proxy runs in this process: its CPU is kept out of the timed pass). Rounds
alternate the order of the clients; the tables give medians over rounds of the
per-round mean. The machine is shared: compare the clients of one run, not
runs of different days.
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
BUCKET = "cpu"
OPS = ("upload", "download", "re-download", "exists", "ls")
CLIENTS = ("fsblob", "s3fs", "boto3", "obstore")


class Clients:
    """One client of each kind on ``url``; ``op(client, what)`` gives a call(i)."""

    def __init__(self, url: str, src: Path, dl: Path, calls: int, only: list[str]) -> None:
        self.src, self.dl, self.calls = src, dl, calls
        self.ops: dict[tuple[str, str], Callable[[int], Any]] = {}
        if "fsblob" in only:
            from fsblob import S3BlobManager

            m = S3BlobManager({"bucket_name": BUCKET, "endpoint_url": url,
                               "root_directory": "fsblob"})
            m.fs.ls(BUCKET)
            self._add("fsblob", {
                "upload": lambda i: m.upload(src / f"f{i:04d}.bin"),
                # download: a name never fetched to this folder; re-download: the same again
                "download": lambda i: m.download(f"f{i:04d}.bin", self._fresh("fsblob")),
                "re-download": lambda i: m.download(f"f{i:04d}.bin", self._same("fsblob")),
                "exists": lambda i: m.exists(f"f{i:04d}.bin"),
                "ls": lambda i: m.ls(),
            })
        if "s3fs" in only:
            import s3fs

            fs = s3fs.S3FileSystem(endpoint_url=url, skip_instance_cache=True)
            fs.ls(BUCKET)

            def s3fs_ls(i: int) -> Any:
                return fs.ls(f"{BUCKET}/fsblob", refresh=True)

            def s3fs_exists(i: int) -> Any:
                fs.invalidate_cache()  # as fsblob, ask the store, not a listing cache
                return fs.exists(f"{BUCKET}/fsblob/f{i:04d}.bin")

            self._add("s3fs", {
                "upload": lambda i: fs.put_file(str(src / f"f{i:04d}.bin"),
                                                f"{BUCKET}/s3fs/f{i:04d}.bin"),
                "download": lambda i: fs.get_file(f"{BUCKET}/fsblob/f{i:04d}.bin",
                                                  str(self._fresh("s3fs") / f"f{i:04d}.bin")),
                "re-download": lambda i: fs.info(f"{BUCKET}/fsblob/f{i:04d}.bin", refresh=True),
                "exists": s3fs_exists,
                "ls": s3fs_ls,
            })
        if "boto3" in only:
            import boto3

            client = boto3.client("s3", endpoint_url=url)
            client.head_bucket(Bucket=BUCKET)

            def boto3_get(i: int) -> None:
                body = client.get_object(Bucket=BUCKET, Key=f"fsblob/f{i:04d}.bin")["Body"]
                (self._fresh("boto3") / f"f{i:04d}.bin").write_bytes(body.read())

            def boto3_exists(i: int) -> bool:
                client.head_object(Bucket=BUCKET, Key=f"fsblob/f{i:04d}.bin")
                return True

            self._add("boto3", {
                "upload": lambda i: client.put_object(
                    Bucket=BUCKET, Key=f"boto3/f{i:04d}.bin",
                    Body=(src / f"f{i:04d}.bin").read_bytes()),
                "download": boto3_get,
                "re-download": boto3_exists,
                "exists": boto3_exists,
                "ls": lambda i: client.list_objects_v2(Bucket=BUCKET, Prefix="fsblob/",
                                                       Delimiter="/"),
            })
        if "obstore" in only:
            import obstore
            from obstore.store import S3Store

            ob = S3Store(BUCKET, endpoint=url, region="us-east-1", access_key_id="bench",
                         secret_access_key="bench", client_options={"allow_http": True})
            obstore.list(ob, prefix="none").collect()

            def ob_get(i: int) -> None:
                got = obstore.get(ob, f"fsblob/f{i:04d}.bin")
                (self._fresh("obstore") / f"f{i:04d}.bin").write_bytes(bytes(got.bytes()))

            self._add("obstore", {
                "upload": lambda i: obstore.put(ob, f"obstore/f{i:04d}.bin",
                                                src / f"f{i:04d}.bin"),
                "download": ob_get,
                "re-download": lambda i: obstore.head(ob, f"fsblob/f{i:04d}.bin"),
                "exists": lambda i: obstore.head(ob, f"fsblob/f{i:04d}.bin"),
                "ls": lambda i: obstore.list_with_delimiter(ob, prefix="fsblob/"),
            })
        self.round = 0

    def _add(self, who: str, ops: dict[str, Callable[[int], Any]]) -> None:
        for what, fn in ops.items():
            self.ops[(what, who)] = fn

    def _fresh(self, who: str) -> Path:
        folder = self.dl / f"{who}-{self.round}"
        folder.mkdir(exist_ok=True)
        return folder

    def _same(self, who: str) -> Path:
        return self.dl / f"{who}-{self.round}"


def _timed(fn: Callable[[int], Any], calls: int) -> tuple[float, float, float]:
    """Process CPU ms, calling-thread CPU ms and wall ms per call, means over ``calls``."""
    cpu, mine, wall = time.process_time(), time.thread_time(), time.perf_counter()
    for i in range(calls):
        fn(i)
    return ((time.process_time() - cpu) / calls * 1000,
            (time.thread_time() - mine) / calls * 1000,
            (time.perf_counter() - wall) / calls * 1000)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=60, help="calls per measurement")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds")
    parser.add_argument("--size", type=int, default=1024, help="bytes per file")
    parser.add_argument("--only", default=",".join(CLIENTS), help="clients, comma-separated")
    args = parser.parse_args()
    only = args.only.split(",")
    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench",
                      AWS_DEFAULT_REGION="us-east-1", AWS_EC2_METADATA_DISABLED="true",
                      NO_PROXY="127.0.0.1,localhost")
    from tests.servers.moto import MotoServer
    from tests.servers.proxy import FaultProxy, Upstream

    with tempfile.TemporaryDirectory() as tmp, MotoServer() as moto, \
            FaultProxy(moto.url) as proxy:
        os.environ["FSBLOB_CACHE_DIR"] = str(Path(tmp) / "cache")
        Upstream(moto.url).call("PUT", f"/{BUCKET}")
        src, dl = Path(tmp) / "src", Path(tmp) / "dl"
        src.mkdir()
        dl.mkdir()
        for i in range(args.calls):
            (src / f"f{i:04d}.bin").write_bytes(os.urandom(args.size))
        direct = Clients(moto.url, src, dl, args.calls, only)
        counted = Clients(proxy.url, src, Path(tmp) / "dl-counted", args.calls, only)
        counted.dl.mkdir()
        if "fsblob" in only:  # what every download, exists and ls reads
            for i in range(args.calls):
                direct.ops[("upload", "fsblob")](i)
        pairs = [(what, who) for what in OPS for who in only if (what, who) in direct.ops]
        requests: dict[tuple[str, str], float] = {}
        for key in pairs:
            counted.round -= 1  # a new folder: "download" finds no copy there
            if key[0] == "re-download":  # the copies it finds unchanged
                for i in range(3):
                    counted.ops[("download", key[1])](i)
            proxy.reset_stats()
            for i in range(3):
                counted.ops[key](i)
            requests[key] = len(proxy.requests) / 3
        results: dict[tuple[str, str], list[tuple[float, float, float]]] = {}
        for round_ in range(args.rounds + 1):  # round 0 warms every path up, not kept
            direct.round = round_
            for what in OPS:
                who = [w for w in only if (what, w) in direct.ops]
                for w in who if round_ % 2 == 0 else who[::-1]:
                    got = _timed(direct.ops[(what, w)], args.calls)
                    if round_:
                        results.setdefault((what, w), []).append(got)
            print(f"round {round_} done", file=sys.stderr, flush=True)
    print(f"\nClient CPU per call, S3 on moto (own process, loopback), {args.size}-byte files; "
          f"median over {args.rounds} alternating rounds of the mean of {args.calls} calls\n")
    print("| operation | client | CPU ms / call | caller-thread CPU ms | wall ms / call "
          "| requests / call | CPU ms / request | CPU vs fastest |")
    print("|---|---|---|---|---|---|---|---|")
    for what in OPS:
        rows = [(w, *(statistics.median(r[k] for r in results[(what, w)]) for k in range(3)))
                for w in only if (what, w) in results]
        best = min(row[1] for row in rows)
        for w, cpu, mine, wall in rows:
            n = requests[(what, w)]
            per = f"{cpu / n:.2f}" if n else "-"
            print(f"| {what} | {w} | {cpu:.2f} | {mine:.2f} | {wall:.1f} | {n:.1f} | {per} | "
                  f"{cpu / best:.2f}x |")
    sys.stdout.flush()
    os._exit(0)  # obstore's runtime can abort at interpreter exit


if __name__ == "__main__":
    sys.exit(main())
