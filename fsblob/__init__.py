"""fsblob: AIFlow's blob manager, rebuilt on fsspec.

Upload and download artifacts on any fsspec filesystem, with atomic writes, one
fetch per host, fresh local copies, confined paths, retries and kept secrets.
``import fsblob`` loads no cloud client library; a backend's library loads when
that backend is first used.
"""

from fsblob.backends import register_backend
from fsblob.backends.keys import check_keys
from fsblob.config import BlobConfig, BlobManagerConfig, BlobManagerFactory, load_project_config
from fsblob.errors import (
    BlobConfigError,
    BlobError,
    BlobIntegrityError,
    BlobNotFoundError,
    BlobTransferError,
    InvalidPathError,
    PathOutsideRootError,
)
from fsblob.base import BlobManager
from fsblob.manager import (
    FsspecBlobManager,
    HDFSBlobManager,
    LocalBlobManager,
    OssBlobManager,
    S3BlobManager,
)
from fsblob.store import Store

__all__ = [
    "BlobConfig",
    "BlobConfigError",
    "BlobError",
    "BlobIntegrityError",
    "BlobManager",
    "BlobManagerConfig",
    "BlobManagerFactory",
    "BlobNotFoundError",
    "BlobTransferError",
    "FsspecBlobManager",
    "HDFSBlobManager",
    "InvalidPathError",
    "LocalBlobManager",
    "OssBlobManager",
    "PathOutsideRootError",
    "S3BlobManager",
    "Store",
    "check_keys",
    "load_project_config",
    "register_backend",
]
__version__ = "0.1.0"
