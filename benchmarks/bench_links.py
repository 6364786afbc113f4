"""fsblob against the clients users know, on bare loopback and through a shaped link.

    python benchmarks/bench_links.py                          # 128 MiB, 3 rounds, both links
    python benchmarks/bench_links.py --size 64 --rounds 1     # quick
    python benchmarks/bench_links.py --links shaped --stores s3

Servers: moto (S3), the OSS dialect over moto and the WebHDFS emulator from
``tests/servers``. The shaped link is ``benchmarks/shaper.py`` in its own process
(default 12 MiB/s per connection and direction, 10 ms one way), in front of each
server. Every measurement runs in a fresh process (its peak RSS is its own); the
time is the transfer only, after imports and client set-up. Rounds alternate the
order of the contenders; the table gives medians and the ratio to the first
baseline of each row.

Contenders: S3 uploads: boto3 ``upload_file`` (default ``TransferConfig``), s3fs
``put_file``, obstore ``put``; S3 downloads: boto3 ``download_file``, s3fs
``get_file``, and on loopback one streamed ``get_object`` and obstore's streamed
``get``; OSS: ossfs ``put_file``/``get_file``; WebHDFS: fsspec's ``webhdfs``
``put_file``/``get_file``. A directory (``s3dir``: ``--files`` of ``--file-size``):
boto3's transfer manager (every file queued on one ``TransferManager``, parts and
files sharing its default concurrency of 10), a boto3 ``put_object``/``get_object``
loop, s3fs recursive ``put``/``get``, and obstore with 10 files in flight.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
BUCKET = "bench"
OSS_BUCKET = "bench-oss"
MiB = 2**20

#: (store, direction) -> contenders, fsblob first, then the baseline the ratio is to.
CONTENDERS: dict[tuple[str, str], list[str]] = {
    ("s3", "upload"): ["fsblob", "boto3_upload_file", "s3fs_put_file", "obstore_put"],
    ("s3", "download"): ["fsblob", "boto3_download_file", "s3fs_get_file", "boto3_get_object",
                         "obstore_get"],
    ("oss", "upload"): ["fsblob", "ossfs_put_file"],
    ("oss", "download"): ["fsblob", "ossfs_get_file"],
    ("webhdfs", "upload"): ["fsblob", "webhdfs_put_file"],
    ("webhdfs", "download"): ["fsblob", "webhdfs_get_file"],
    # a directory of --files small files on S3
    ("s3dir", "upload"): ["fsblob", "boto3_transfer_dir", "boto3_put_loop", "s3fs_put_recursive",
                          "obstore_put_dir"],
    ("s3dir", "download"): ["fsblob", "boto3_transfer_dir", "boto3_get_loop",
                            "s3fs_get_recursive", "obstore_get_dir"],
}
#: Single-stream contenders left out of the shaped link (one 12 MiB/s stream: slow to
#: run, and not what the target compares with there).
LOOPBACK_ONLY = {"boto3_get_object", "obstore_get"}


def _env() -> None:
    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench",
                      AWS_DEFAULT_REGION="us-east-1", AWS_EC2_METADATA_DISABLED="true",
                      NO_PROXY="127.0.0.1,localhost")


def measure(store: str, direction: str, who: str, ends: dict[str, Any], data: Path,
            out: Path, extra: dict[str, Any]) -> dict[str, float]:
    """Run one contender in this process; return seconds and RSS (MiB)."""
    _env()
    os.environ["FSBLOB_CACHE_DIR"] = str(out / "cache")
    for stale in (out / "dl", out / "cache"):
        shutil.rmtree(stale, ignore_errors=True)
    (out / "dl").mkdir(parents=True)
    big, dest = data / "big.bin", out / "dl" / "big.bin"
    key = f"{who}/big.bin" if direction == "upload" else "fsblob/big.bin"
    if store == "s3dir":
        big, dest = data / "small", out / "dl" / "small"
        # fsblob reads its tree by name; the others read the plain keys boto3's loop put
        key = f"{who}/small" if direction == "upload" else "boto3_put_loop/small"
        if direction == "upload":  # new bytes every time: fsblob skips objects it already has
            big = out / "src" / "small"
            shutil.rmtree(big.parent, ignore_errors=True)
            big.mkdir(parents=True)
            for path in (data / "small").iterdir():
                (big / path.name).write_bytes(os.urandom(path.stat().st_size))
    run = _setup(store, direction, who, ends, big, dest, key, extra)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    run()
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if store == "s3dir":
        if direction == "download" and len(list(dest.iterdir())) != len(list(big.iterdir())):
            raise SystemExit(f"{who} downloaded {len(list(dest.iterdir()))} files")
    elif direction == "download" and dest.stat().st_size != big.stat().st_size:
        raise SystemExit(f"{who} downloaded {dest.stat().st_size} bytes")
    return {"seconds": seconds, "base_rss": base, "peak_rss": peak}


def _setup(store: str, direction: str, who: str, ends: dict[str, Any], big: Path, dest: Path,
           key: str, extra: dict[str, Any]) -> Callable[[], Any]:
    """Client set-up (timed out of the measurement) and the transfer to time."""
    up = direction == "upload"
    if who == "fsblob":
        from fsblob import HDFSBlobManager, OssBlobManager, S3BlobManager

        if store in ("s3", "s3dir"):
            manager: Any = S3BlobManager({"bucket_name": BUCKET, "endpoint_url": ends["s3"],
                                          "root_directory": "fsblob", **extra})
            manager.fs.ls(BUCKET)
        elif store == "oss":
            manager = OssBlobManager({"endpoint": ends["oss"], "bucket": OSS_BUCKET,
                                      "root_directory": "fsblob", "access_key_id": "bench-id",
                                      "access_key_secret": "bench-secret", **extra})
            manager.fs.ls(OSS_BUCKET)
        else:
            manager = HDFSBlobManager({"hdfs_url": ends["webhdfs"], "hdfs_user": "bench",
                                       "root_directory": "/fsblob", **extra})
            manager.fs.ls("/")
        if up:
            return lambda: manager.upload(big)
        return lambda: manager.download(big.name, dest.parent)
    if who.startswith("boto3"):
        import boto3

        client = boto3.client("s3", endpoint_url=ends["s3"])
        client.head_bucket(Bucket=BUCKET)

        def get_object() -> None:
            body = client.get_object(Bucket=BUCKET, Key=key)["Body"]
            with open(dest, "wb") as f:
                for piece in body.iter_chunks(MiB):
                    f.write(piece)

        def put_loop() -> None:
            for path in sorted(big.iterdir()):
                client.put_object(Bucket=BUCKET, Key=f"{key}/{path.name}", Body=path.read_bytes())

        def get_loop() -> None:
            dest.mkdir()
            for name in sorted(p.name for p in big.iterdir()):
                body = client.get_object(Bucket=BUCKET, Key=f"{key}/{name}")["Body"].read()
                (dest / name).write_bytes(body)

        def transfer_dir() -> None:
            from boto3.s3.transfer import TransferConfig, create_transfer_manager

            names = sorted(p.name for p in big.iterdir())
            if not up:
                dest.mkdir()
            with create_transfer_manager(client, TransferConfig()) as manager:
                futures = [manager.upload(str(big / n), BUCKET, f"{key}/{n}") if up else
                           manager.download(BUCKET, f"{key}/{n}", str(dest / n)) for n in names]
                for future in futures:
                    future.result()

        return {"boto3_upload_file": lambda: client.upload_file(str(big), BUCKET, key),
                "boto3_transfer_dir": transfer_dir,
                "boto3_download_file": lambda: client.download_file(BUCKET, key, str(dest)),
                "boto3_get_object": get_object, "boto3_put_loop": put_loop,
                "boto3_get_loop": get_loop}[who]
    if who.startswith("s3fs"):
        import s3fs

        fs = s3fs.S3FileSystem(endpoint_url=ends["s3"], skip_instance_cache=True)
        fs.ls(BUCKET)
        if store == "s3dir":  # recursive put/get: s3fs sends the files concurrently
            if up:
                return lambda: fs.put(str(big), f"{BUCKET}/{key}", recursive=True)
            return lambda: fs.get(f"{BUCKET}/{key}", str(dest), recursive=True)
        if up:
            return lambda: fs.put_file(str(big), f"{BUCKET}/{key}")
        return lambda: fs.get_file(f"{BUCKET}/{key}", str(dest))
    if who.startswith("obstore"):
        import obstore
        from obstore.store import S3Store

        ob = S3Store(BUCKET, endpoint=ends["s3"], region="us-east-1", access_key_id="bench",
                     secret_access_key="bench", client_options={"allow_http": True})
        obstore.list(ob, prefix="none").collect()

        def get() -> None:
            with open(dest, "wb") as f:
                for piece in obstore.get(ob, key).stream():
                    f.write(piece)

        def each_file() -> None:
            import asyncio

            names = sorted(p.name for p in big.iterdir())
            if not up:
                dest.mkdir()

            async def one(name: str, slots: asyncio.Semaphore) -> None:
                async with slots:
                    if up:
                        await obstore.put_async(ob, f"{key}/{name}", big / name)
                    else:
                        got = await obstore.get_async(ob, f"{key}/{name}")
                        (dest / name).write_bytes(bytes(await got.bytes_async()))

            async def every() -> None:
                slots = asyncio.Semaphore(10)
                await asyncio.gather(*(one(n, slots) for n in names))

            asyncio.run(every())

        if who.endswith("_dir"):
            return each_file
        return (lambda: obstore.put(ob, key, big)) if up else get
    if who.startswith("ossfs"):
        import ossfs

        fs = ossfs.OSSFileSystem(endpoint=ends["oss"], key="bench-id", secret="bench-secret",
                                 skip_instance_cache=True)
        fs.ls(OSS_BUCKET)
        if up:
            return lambda: fs.put_file(str(big), f"{OSS_BUCKET}/{key}")
        return lambda: fs.get_file(f"{OSS_BUCKET}/{key}", str(dest))
    import fsspec

    host, port = ends["webhdfs"].removeprefix("http://").split(":")
    fs = fsspec.filesystem("webhdfs", host=host, port=int(port), user="bench",
                           skip_instance_cache=True)
    fs.ls("/")
    if up:
        return lambda: fs.put_file(str(big), f"/{key}")
    return lambda: fs.get_file(f"/{key}", str(dest))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def _shaper(upstream: str, rate: str, delay_ms: float) -> Iterator[str]:
    """``benchmarks/shaper.py`` in its own process in front of ``upstream``."""
    port = _free_port()
    proc = subprocess.Popen([sys.executable, str(Path(__file__).with_name("shaper.py")),
                             "--upstream", upstream.removeprefix("http://"), "--port", str(port),
                             "--rate", rate, "--delay-ms", str(delay_ms)],
                            stdout=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


def _one(store: str, direction: str, who: str, ends: dict[str, Any], data: Path,
         extra: dict[str, Any]) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--one", json.dumps([store, direction, who, ends, str(data),
                                                        extra])],
        capture_output=True, text=True, timeout=600)
    if out.returncode:
        raise RuntimeError(f"{store} {direction} {who} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=128, help="object size, MiB")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds")
    parser.add_argument("--links", default="loopback,shaped", help="loopback, shaped or both")
    parser.add_argument("--stores", default="s3,oss,webhdfs",
                        help="which stores: s3, oss, webhdfs, s3dir (a directory of small files)")
    parser.add_argument("--files", type=int, default=200, help="s3dir: files in the directory")
    parser.add_argument("--file-size", type=int, default=16, help="s3dir: KiB per file")
    parser.add_argument("--rate", default="12MiB", help="shaped: bandwidth per connection")
    parser.add_argument("--delay-ms", type=float, default=10.0, help="shaped: one-way delay")
    parser.add_argument("--fsblob", default="{}", help="extra blob_manager_config, JSON")
    parser.add_argument("--transfers", default="upload,download", help="upload, download or both")
    parser.add_argument("--contenders", default="",
                        help="only these contenders (comma-separated; fsblob always runs)")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        store, direction, who, ends, data, extra = json.loads(args.one)
        print(json.dumps(measure(store, direction, who, ends, Path(data),
                                 Path(data) / "out" / who, extra)), flush=True)
        os._exit(0)  # obstore's runtime can abort at interpreter exit after asyncio.run

    _env()
    from tests.servers.moto import MotoServer
    from tests.servers.oss import OssServer
    from tests.servers.proxy import Upstream
    from tests.servers.webhdfs import WebHdfsServer

    stores = args.stores.split(",")
    links = args.links.split(",")
    extra = json.loads(args.fsblob)
    results: dict[tuple[str, str, str, str], list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp, MotoServer() as moto, \
            OssServer(moto.url) as oss, WebHdfsServer(Path(tmp) / "hdfs") as hdfs, \
            WebHdfsServer(Path(tmp) / "hdfs") as hdfs_shaped:
        data = Path(tmp) / "data"
        data.mkdir()
        with open(data / "big.bin", "wb") as f:
            block = os.urandom(MiB)
            for i in range(args.size):
                f.write(block[i:] + block[:i])
        (data / "small").mkdir()
        for i in range(args.files if "s3dir" in stores else 0):
            (data / "small" / f"f{i:05d}.bin").write_bytes(os.urandom(args.file_size * 1024))
        for bucket in (BUCKET, OSS_BUCKET):
            Upstream(moto.url).call("PUT", f"/{bucket}")
        for link in links:
            with _maybe_shaped(link, moto.url, oss.endpoint, hdfs_shaped, args) as ends:
                if link == "loopback":
                    ends["webhdfs"] = hdfs.url
                if link == links[0] and "download" in args.transfers:  # what the downloads fetch (the same servers after)
                    for store in stores:
                        _one(store, "upload", "fsblob", ends, data, extra)
                        if store == "s3dir":  # the other clients fetch plain objects
                            _one(store, "upload", "boto3_put_loop", ends, data, extra)
                for store in stores:
                    for direction in args.transfers.split(","):
                        who = [w for w in CONTENDERS[(store, direction)]
                               if (link == "loopback" or w not in LOOPBACK_ONLY) and (
                                   not args.contenders or w == "fsblob"
                                   or w in args.contenders.split(","))]
                        for round_ in range(args.rounds):
                            for w in who if round_ % 2 == 0 else who[::-1]:
                                r = _one(store, direction, w, ends, data, extra)
                                results.setdefault((link, store, direction, w), []).append(r)
                                print(f"{link} {store} {direction} {w}: {r['seconds']:.2f} s "
                                      f"{r['peak_rss']:.0f} MiB", file=sys.stderr, flush=True)
    _table(results, args, extra)
    return 0


@contextmanager
def _maybe_shaped(link: str, s3: str, oss: str, hdfs_shaped: Any,
                  args: argparse.Namespace) -> Iterator[dict[str, Any]]:
    if link == "loopback":
        yield {"s3": s3, "oss": oss}
        return
    with _shaper(s3, args.rate, args.delay_ms) as s3_url, \
            _shaper(oss, args.rate, args.delay_ms) as oss_url, \
            _shaper(hdfs_shaped.url, args.rate, args.delay_ms) as hdfs_url:
        # the namenode redirects to its datanode by its own address: advertise the shaper's
        hdfs_shaped.port = int(hdfs_url.rsplit(":", 1)[1])
        yield {"s3": s3_url, "oss": oss_url, "webhdfs": hdfs_url}


def _table(results: dict[tuple[str, str, str, str], list[dict[str, float]]],
           args: argparse.Namespace, extra: dict[str, Any]) -> None:
    def med(rows: list[dict[str, float]], key: str) -> float:
        return statistics.median(r[key] for r in rows)

    settings = f", fsblob config {json.dumps(extra)}" if extra else ""
    what = f"{args.size} MiB object" if set(args.stores.split(",")) - {"s3dir"} else ""
    if "s3dir" in args.stores.split(","):
        what += ("; " if what else "") + f"s3dir: {args.files} files of {args.file_size} KiB"
    print(f"\n{what}; shaped = {args.rate}/s per connection and direction, "
          f"{args.delay_ms:g} ms one way; median of {args.rounds} alternating rounds{settings}\n")
    print("| link | store | transfer | contender | seconds | fsblob time / this | peak RSS MiB |")
    print("|---|---|---|---|---|---|---|")
    seen: list[tuple[str, str, str]] = []
    for link, store, direction, _ in results:
        if (link, store, direction) not in seen:
            seen.append((link, store, direction))
    for link, store, direction in seen:
        who = [w for w in CONTENDERS[(store, direction)] if (link, store, direction, w) in results]
        mine = med(results[(link, store, direction, "fsblob")], "seconds")
        for w in who:
            rows = results[(link, store, direction, w)]
            ratio = mine / med(rows, "seconds")
            label = "" if w == "fsblob" else f"{ratio:.2f}"
            print(f"| {link} | {store} | {direction} | {w} | {med(rows, 'seconds'):.2f} | "
                  f"{label} | {med(rows, 'peak_rss'):.0f} |")


if __name__ == "__main__":
    sys.exit(main())
