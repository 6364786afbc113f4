"""fsblob on S3 against the best baseline client, on one moto server in one run.

    python benchmarks/bench_s3.py                 # 256 MiB file, 1000 small files, 3 rounds
    python benchmarks/bench_s3.py --size 64 --small 200 --rounds 1   # quick

Each measurement runs in a fresh process (so its peak RSS is its own); the time
is the transfer only, after imports and client set-up. Rounds alternate the
order of the strategies; the report gives medians and fsblob/baseline ratios,
which mean more than seconds on a shared, noisy machine. Targets (issue 3):

* upload 256 MiB: no slower than boto3 ``upload_file``, peak RSS < 1.5x boto3's;
* download 256 MiB: no slower than s3fs's default ``get``, peak RSS < 128 MiB;
* 1000 small files, up and down: faster than a sequential boto3 loop.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
BUCKET = "bench"
MiB = 2**20

PAIRS = [  # (what, fsblob strategy, baseline strategy)
    ("upload big", "fsblob_upload", "boto3_upload_file"),
    ("download big", "fsblob_download", "s3fs_get_default"),
    ("upload small files", "fsblob_upload_dir", "boto3_put_loop"),
    ("download small files", "fsblob_download_dir", "boto3_get_loop"),
]


def measure(strategy: str, endpoint: str, data: Path, out: Path) -> dict[str, float]:
    """Run one strategy in this process; return seconds and RSS."""
    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench",
                      AWS_DEFAULT_REGION="us-east-1", AWS_EC2_METADATA_DISABLED="true",
                      FSBLOB_CACHE_DIR=str(out / "cache"))
    big, small = data / "big.bin", data / "small"
    names = sorted(os.listdir(small))
    for stale in (out / "dl", out / "cache"):
        shutil.rmtree(stale, ignore_errors=True)
    (out / "dl").mkdir(parents=True)
    if strategy.startswith("fsblob"):
        from fsblob import S3BlobManager

        manager = S3BlobManager({"bucket_name": BUCKET, "endpoint_url": endpoint,
                                 "root_directory": "fsblob"})
        manager.fs.ls(BUCKET)  # client set-up and a warm connection
        run = {
            "fsblob_upload": lambda: manager.upload(big),
            "fsblob_download": lambda: manager.download("big.bin", out / "dl"),
            "fsblob_upload_dir": lambda: manager.upload(small),
            "fsblob_download_dir": lambda: manager.download("small", out / "dl"),
        }[strategy]
    elif strategy.startswith("boto3"):
        import boto3

        client = boto3.client("s3", endpoint_url=endpoint)
        client.head_bucket(Bucket=BUCKET)

        def put_loop() -> None:
            for name in names:
                client.put_object(Bucket=BUCKET, Key=f"boto3/small/{name}", Body=(small / name).read_bytes())

        def get_loop() -> None:
            for name in names:
                body = client.get_object(Bucket=BUCKET, Key=f"boto3/small/{name}")["Body"].read()
                (out / "dl" / name).write_bytes(body)

        run = {
            "boto3_upload_file": lambda: client.upload_file(str(big), BUCKET, "boto3/big.bin"),
            "boto3_put_loop": put_loop,
            "boto3_get_loop": get_loop,
        }[strategy]
    else:  # s3fs_get_default
        import s3fs

        fs = s3fs.S3FileSystem(endpoint_url=endpoint, skip_instance_cache=True)
        fs.ls(BUCKET)
        run = lambda: fs.get_file(f"{BUCKET}/fsblob/big.bin", str(out / "dl" / "big.bin"))  # noqa: E731
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    run()
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"seconds": seconds, "base_rss": base, "peak_rss": peak}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=256, help="big file size, MiB")
    parser.add_argument("--small", type=int, default=1000, help="number of 1 KiB files")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--endpoint", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args.endpoint, Path(args.data), Path(args.data) / "out")))
        return 0

    from tests.servers.moto import MotoServer
    from tests.servers.proxy import Upstream

    with tempfile.TemporaryDirectory() as tmp, MotoServer() as moto:
        data = Path(tmp)
        with open(data / "big.bin", "wb") as f:
            for _ in range(args.size):
                f.write(os.urandom(MiB))
        (data / "small").mkdir()
        for i in range(args.small):
            (data / "small" / f"f{i:05d}.bin").write_bytes(os.urandom(1024))
        Upstream(moto.url).call("PUT", f"/{BUCKET}")
        # what the download strategies fetch: the same objects for every round
        for strategy in ("fsblob_upload", "fsblob_upload_dir", "boto3_put_loop"):
            subprocess.run([sys.executable, __file__, "--one", strategy, "--endpoint", moto.url,
                            "--data", str(data)], capture_output=True, check=True)
        results: dict[str, list[dict[str, float]]] = {}
        strategies = [s for _, a, b in PAIRS for s in (a, b)]
        for round_ in range(args.rounds):
            for strategy in strategies if round_ % 2 == 0 else strategies[::-1]:
                out = subprocess.run(
                    [sys.executable, __file__, "--one", strategy, "--endpoint", moto.url,
                     "--data", str(data)], capture_output=True, text=True, check=True)
                results.setdefault(strategy, []).append(json.loads(out.stdout.splitlines()[-1]))
                print(f"round {round_ + 1}: {strategy}: {results[strategy][-1]['seconds']:.2f} s",
                      file=sys.stderr)

    def median(strategy: str, key: str) -> float:
        return statistics.median(r[key] for r in results[strategy])

    print(f"\nS3 on moto, {args.size} MiB file, {args.small} x 1 KiB files, "
          f"median of {args.rounds} alternating rounds\n")
    print("| transfer | fsblob s | baseline | baseline s | time ratio | fsblob peak RSS MiB | baseline peak RSS MiB |")
    print("|---|---|---|---|---|---|---|")
    for what, mine, theirs in PAIRS:
        ratio = median(mine, "seconds") / median(theirs, "seconds")
        print(f"| {what} | {median(mine, 'seconds'):.2f} | {theirs} | {median(theirs, 'seconds'):.2f} "
              f"| {ratio:.2f} | {median(mine, 'peak_rss'):.0f} | {median(theirs, 'peak_rss'):.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
