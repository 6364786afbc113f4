"""Functions run in child processes (spawned: they import only fsblob)."""

from __future__ import annotations

import hashlib
import os
import sys
from typing import Any

reads = 0


def download(class_path: str, config: dict[str, Any], uri: str, local_dir: str,
             watch: str | None = None) -> tuple[str, str, int]:
    """Download ``uri``; return (path, sha256 of the file, local reads below ``watch``)."""
    from fsblob import BlobManagerFactory

    global reads
    reads = 0
    if watch:
        def hook(event: str, args: tuple[Any, ...]) -> None:
            global reads
            if event == "open" and isinstance(args[0], str) and args[0].startswith(watch + "/") \
                    and "r" in str(args[1]) and not os.path.basename(args[0]).startswith("."):
                reads += 1
        sys.addaudithook(hook)
    manager = BlobManagerFactory.create_blob_manager(class_path, config)
    path = manager.download(uri, local_dir)
    with open(path, "rb") as f:
        digest = hashlib.file_digest(f, "sha256").hexdigest()
    return path, digest, reads


def upload(class_path: str, config: dict[str, Any], path: str) -> str:
    """Upload ``path``; return the URI."""
    from fsblob import BlobManagerFactory

    return BlobManagerFactory.create_blob_manager(class_path, config).upload(path)
