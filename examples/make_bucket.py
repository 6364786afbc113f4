"""Create a bucket on the S3 endpoint ``$S3_ENDPOINT_URL`` (the README's local S3 steps).

    python examples/make_bucket.py my-artifacts

A server started a moment ago may not answer yet: this waits for it (up to 30 s)
instead of failing, and is content when the bucket is already there. Credentials
come from the environment (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``).
"""

from __future__ import annotations

import os
import sys
import time

import boto3  # installed with moto[server]
from botocore.exceptions import EndpointConnectionError


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: make_bucket.py BUCKET  (with S3_ENDPOINT_URL set)", file=sys.stderr)
        return 2
    bucket, endpoint = argv[0], os.environ["S3_ENDPOINT_URL"]
    s3 = boto3.client("s3", endpoint_url=endpoint,
                      region_name=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"))
    deadline = time.monotonic() + 30
    while True:
        try:
            s3.create_bucket(Bucket=bucket)
            break
        except s3.exceptions.BucketAlreadyOwnedByYou:
            break
        except EndpointConnectionError:
            if time.monotonic() > deadline:
                print(f"make_bucket: no S3 server answers at {endpoint}", file=sys.stderr)
                return 1
            time.sleep(0.2)
    print(f"bucket {bucket} is ready at {endpoint}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
