"""How often a large download's first read chooses one stream: timed against untimed.

    python benchmarks/bench_first_read.py                  # 40 reads each, S3 and OSS
    python benchmarks/bench_first_read.py --reads 20 --stores oss

A download reads its first MiB in one ``GetObject`` and, from the rate at which it
came, chooses one stream or ranges (``TransferSettings.streams``). fsblob times that
read (``read_start``'s ``within``: it stops once the MiB can no longer come at
``one_stream_rate``). The baseline is the same read untimed (``within=None``: the
whole MiB, then the rate), alternated with it in the same run on the same object:
timing must not change the decision. For each store and each way: how many of the
reads chose one stream, and the median, lowest and highest rate in MiB/s.

The stores are the test servers on 127.0.0.1 (moto; the OSS translator in front of
it). On loopback their rate is near the 512 MiB/s threshold, so the counts show
whether the timed read measures the link or its own calls. The machine is shared:
compare the two ways of one run, not runs of different days.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
MiB = 2**20
BUCKET = "first-read"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reads", type=int, default=40, help="first reads of each way")
    parser.add_argument("--size", type=int, default=128, help="object size, MiB")
    parser.add_argument("--stores", default="s3,oss", help="s3, oss or both")
    args = parser.parse_args()
    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench",
                      AWS_DEFAULT_REGION="us-east-1", AWS_EC2_METADATA_DISABLED="true",
                      NO_PROXY="127.0.0.1,localhost")
    from fsblob import OssBlobManager, S3BlobManager
    from fsblob.backends import oss, s3
    from fsblob.chunks import TransferSettings
    from fsblob.transfer import FIRST_READ
    from tests.servers.moto import MotoServer
    from tests.servers.oss import OssServer
    from tests.servers.proxy import Upstream

    settings = TransferSettings()
    timed = settings.first_read_within(FIRST_READ)
    rows = []
    with tempfile.TemporaryDirectory() as tmp, MotoServer() as moto, OssServer(moto.url) as server:
        Upstream(moto.url).call("PUT", f"/{BUCKET}")
        source = Path(tmp) / "big.bin"
        with open(source, "wb") as f:
            f.writelines(os.urandom(MiB) for _ in range(args.size))
        managers = {
            "s3": (S3BlobManager({"bucket_name": BUCKET, "endpoint_url": moto.url,
                                  "root_directory": "bench"}), s3.read_start),
            "oss": (OssBlobManager({"endpoint": server.endpoint, "bucket": BUCKET,
                                    "root_directory": "bench", "access_key_id": "bench",
                                    "access_key_secret": "bench"}), oss.read_start),
        }
        for store in args.stores.split(","):
            manager, read_start = managers[store]
            manager.upload(source)
            path = f"{BUCKET}/bench/{source.name}"
            rates: dict[str, list[float]] = {"timed": [], "untimed": []}
            for i in range(args.reads):
                for way in ("timed", "untimed") if i % 2 == 0 else ("untimed", "timed"):
                    start = read_start(manager.fs, path, FIRST_READ, "",
                                       timed if way == "timed" else None)
                    start.close()
                    rates[way].append(start.rate or 0.0)
            for way, got in rates.items():
                chose = sum(settings.streams(args.size * MiB, rate) for rate in got)
                rows.append((store, way, chose, len(got), statistics.median(got) / MiB,
                             min(got) / MiB, max(got) / MiB))
    print(f"\n{args.size} MiB object; first read {FIRST_READ // 1024} KiB; timed: "
          f"within {timed * 1000:.1f} ms (one_stream_rate {settings.one_stream_rate // MiB} MiB/s)\n")
    print("| store | first read | chose one stream | median MiB/s | lowest | highest |")
    print("|---|---|---|---|---|---|")
    for store, way, chose, total, median, low, high in rows:
        print(f"| {store} | {way} | {chose} of {total} | {median:.0f} | {low:.0f} | {high:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
