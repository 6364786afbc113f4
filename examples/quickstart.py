"""The main job: ship an artifact through a blob manager and read it back with pandas.

    python examples/quickstart.py                  # the embedded local store, ./fsblob-store
    python examples/quickstart.py project.yaml     # the store of a project.yaml's 'blob' section

It writes a CSV artifact, uploads it, downloads it as a worker would, checks the
bytes, and reads the returned URI directly with pandas, as a data scientist would;
then the same with a Parquet file (pandas needs pyarrow for it: ``pip install
'fsblob[examples]'`` installs both).

The S3 project file reads its endpoint and credentials from the environment and
stores in the bucket ``my-artifacts``; the README's Quickstart shows how to run it
against a local S3 (moto's server).
"""

from __future__ import annotations

import hashlib
import sys
import tempfile
from pathlib import Path

import pandas as pd

from fsblob import BlobManagerFactory, LocalBlobManager, load_project_config


def main(argv: list[str]) -> int:
    if argv:
        blob = load_project_config(argv[0])
        manager = BlobManagerFactory.create_blob_manager(
            blob.blob_manager_class(), blob.blob_manager_config())
    else:
        manager = LocalBlobManager({"root_directory": "fsblob-store"})
    print(f"store: {manager!r}")

    with tempfile.TemporaryDirectory() as work:
        artifact = Path(work, "features.csv")
        frame = pd.DataFrame({"user": range(1000), "score": [i * 0.5 for i in range(1000)]})
        frame.to_csv(artifact, index=False)

        uri = manager.upload(artifact)
        print(f"uploaded {artifact.name} ({artifact.stat().st_size} bytes) -> {uri}")

        local = manager.download(uri, Path(work, "worker"))
        same = hashlib.sha256(Path(local).read_bytes()).digest() == hashlib.sha256(
            artifact.read_bytes()).digest()
        print(f"downloaded -> {local} (identical: {same})")

        table = pd.read_csv(uri, storage_options=manager.storage_options or None)
        print(f"pandas read {len(table)} rows from {uri}")

        frame.to_parquet(Path(work, "features.parquet"))  # needs pyarrow: the [examples] extra
        parquet_uri = manager.upload(Path(work, "features.parquet"))
        columns = pd.read_parquet(parquet_uri, storage_options=manager.storage_options or None)
        print(f"pandas read {len(columns)} rows from {parquet_uri}")
        if not same or not table.equals(frame) or not columns.equals(frame):
            print("MISMATCH: the artifact did not survive the round trip", file=sys.stderr)
            return 1
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
