"""The ``fsblob`` command: upload, download, list and remove artifacts.

Every subcommand takes ``--config project.yaml`` (its ``blob`` section picks the
manager); without it, artifacts go to an embedded local store, ``./fsblob-store``.
Errors print one line on stderr and exit with status 1 (2 for a bad config).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from fsspec.callbacks import Callback, TqdmCallback

from fsblob.config import BlobConfig, BlobManagerFactory, load_project_config
from fsblob.errors import BlobConfigError, BlobError
from fsblob.manager import FsspecBlobManager, LocalBlobManager

DEFAULT_STORE = "fsblob-store"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="fsblob: %(message)s")
    try:
        manager = _manager(args.config)
        if args.command == "upload":
            print(manager.upload(args.path, callback=_progress(args.path)))
        elif args.command == "download":
            print(manager.download(args.uri, args.dir, callback=_progress(args.uri)))
        elif args.command == "ls":
            for uri in manager.ls():
                print(uri)
        elif args.command == "rm":
            manager.delete(args.uri)
    except BlobConfigError as exc:
        print(f"fsblob: configuration error: {exc}", file=sys.stderr)
        return 2
    except BlobError as exc:
        print(f"fsblob: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("fsblob: interrupted", file=sys.stderr)
        return 130
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fsblob", description="Upload, download, list and remove artifacts in a blob store.")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", metavar="PROJECT_YAML",
                        help=f"project.yaml with a 'blob' section (default: ./{DEFAULT_STORE})")
    common.add_argument("-v", "--verbose", action="store_true", help="log what happens")
    commands = parser.add_subparsers(dest="command", required=True)
    upload = commands.add_parser("upload", parents=[common], help="store a file or directory")
    upload.add_argument("path")
    download = commands.add_parser("download", parents=[common], help="fetch an artifact")
    download.add_argument("uri")
    download.add_argument("dir", nargs="?", help="local directory (default: the cache)")
    commands.add_parser("ls", parents=[common], help="list stored artifacts")
    remove = commands.add_parser("rm", parents=[common], help="delete an artifact")
    remove.add_argument("uri")
    return parser


def _manager(config_path: str | None) -> FsspecBlobManager:
    if config_path is None:
        return LocalBlobManager({"root_directory": os.path.abspath(DEFAULT_STORE)})
    blob: BlobConfig = load_project_config(config_path)
    manager = BlobManagerFactory.create_blob_manager(
        blob.blob_manager_class(), blob.blob_manager_config())
    if not isinstance(manager, FsspecBlobManager):
        raise BlobConfigError(f"{blob.blob_manager_class()} is not an fsblob manager")
    return manager


def _progress(label: str) -> Callback:
    """A tqdm progress bar on stderr, shown only on a terminal and after 1 s."""
    return TqdmCallback(tqdm_kwargs={
        "desc": os.path.basename(label.rstrip("/")), "unit": "B", "unit_scale": True,
        "unit_divisor": 1024, "delay": 1.0, "leave": False, "file": sys.stderr,
        "disable": not sys.stderr.isatty(),
    })


if __name__ == "__main__":
    sys.exit(main())
